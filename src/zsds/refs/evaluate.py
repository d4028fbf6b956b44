"""Science quality of reference images, measured against the simulator's ground truth.

For every reference version under ``HOME/products/ref`` (``*_refimg.fits``) this reads its header,
``refpsfcat`` and the input ``pid``\\ s listed in ``refimlog.txt``, and the truth of the inputs
(``HOME/truth/YYYYMMDD/<expid>/cCC_sources.parquet`` and ``cCC_quadrants.parquet``):

* **depth:** co-add MAGLIM against the median MAGLIM of its inputs (``INMAGLIM``): ``depth_gain``;
* **flux:** median of (refpsfcat mag - truth mag) of bright (S/N > 50), unsaturated, isolated,
  unflagged stars: ``zp_offset``;
* **transients/asteroids:** truth sources of kind 3 (transient) or 4 (asteroid) that are bright in
  an input (mag < median input MAGLIM - 0.75, i.e. S/N >~ 10) but present in fewer than half of
  the inputs; a refpsfcat source within 1.5" of such a position with no static truth source
  (star/galaxy) within 3" is a *survivor*: ``n_minority`` checked, ``n_survivors``;
* **registration:** rms per axis of refpsfcat positions minus truth positions of bright stars
  (arcsec): ``astrom_rms_ra``, ``astrom_rms_dec``.

Only evaluation code reads the truth; the pipeline never does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.stats import mad_std
from scipy.spatial import cKDTree

from zsds.core.home import Home
from zsds.core.instrument import amplifier
from zsds.core.masks import clean_flags
from zsds.instcal.photcal import match_sky


def _input_pids(log: Path) -> list[int]:
    for line in log.read_text().splitlines():
        if line.startswith("inputs ("):
            return [int(p) for p in line.split(":", 1)[1].split()]
    return []


def _truth_dir(home: Home, expid: int) -> Path | None:
    hits = sorted(home.truth.glob(f"*/{expid}"))
    return hits[0] if hits else None


def evaluate_reference(home: Home, refimg: Path) -> dict[str, float]:
    """Quality figures of one reference version (see the module docstring)."""
    hdr = fits.getheader(refimg)
    ccdid, qid = int(hdr["CCD_ID"]), int(hdr["QID"])
    cat = fits.getdata(refimg.with_name(refimg.name.replace("_refimg.fits", "_refpsfcat.fits")))
    cat = pd.DataFrame({c: np.asarray(cat[c]).astype(float) for c in cat.columns.names})
    pids = _input_pids(refimg.with_name(refimg.name.replace("_refimg.fits", "_refimlog.txt")))
    srcs, zps = [], []
    for k, pid in enumerate(pids):
        tdir = _truth_dir(home, pid // 10_000)
        if tdir is None:
            continue
        s = pd.read_parquet(tdir / f"c{ccdid:02d}_sources.parquet")
        quads = pd.read_parquet(tdir / f"c{ccdid:02d}_quadrants.parquet").set_index("qid")
        zps.append(float(quads.loc[qid, "magzp"]))
        srcs.append(s[s.qid == qid].assign(epoch=k))
    out: dict[str, float] = {
        "rfid": int(hdr["RFID"]), "nframes": int(hdr["NFRAMES"]), "n_truth_inputs": len(srcs),
        "maglim": float(hdr["MAGLIM"]), "input_maglim": float(hdr.get("INMAGLIM", np.nan)),
        "seeing": float(hdr["SEEING"]), "magzp": float(hdr["MAGZP"]),
    }
    out["depth_gain"] = out["maglim"] - out["input_maglim"]
    if not srcs or not len(cat):
        return out
    truth = pd.concat(srcs, ignore_index=True)
    first = truth[truth.epoch == truth.epoch.min()]
    amp = amplifier(ccdid, qid)
    # Brightest unsaturated magnitude in the deepest-zero-point input, with a margin.
    sat_mag = max(zps) - 2.5 * np.log10(0.25 * amp.full_well / amp.gain) + 0.5
    stars = first[first.kind == 1]
    static = first[first.kind <= 2]
    tree = cKDTree(np.column_stack([static.x, static.y]))
    iso = np.array([len(n) == 1 for n in tree.query_ball_point(
        np.column_stack([stars.x, stars.y]), 8.0)], bool)
    bright = stars[iso & (stars.mag > sat_mag) & (stars.mag < 18.5)]
    i, j, _ = match_sky(bright.ra.to_numpy(), bright.dec.to_numpy(), cat.ra.to_numpy(),
                        cat.dec.to_numpy(), 1.5)
    b, c = bright.iloc[i], cat.iloc[j]
    good = (c["snr"].to_numpy() > 50) & clean_flags(c["flags"].to_numpy())
    b, c = b[good], c[good]
    dm = c.mag.to_numpy() - b.mag.to_numpy()
    cosd = np.cos(np.deg2rad(b.dec.to_numpy()))
    dra = (c.ra.to_numpy() - b.ra.to_numpy()) * cosd * 3600.0
    ddec = (c.dec.to_numpy() - b.dec.to_numpy()) * 3600.0
    out.update({
        "n_stars": len(b),
        "zp_offset": float(np.median(dm)) if len(dm) else np.nan,
        "phot_rms": float(mad_std(dm)) if len(dm) else np.nan,
        "astrom_rms_ra": float(np.sqrt(np.mean(dra**2))) if len(dra) else np.nan,
        "astrom_rms_dec": float(np.sqrt(np.mean(ddec**2))) if len(ddec) else np.nan,
    })
    # Transients and asteroids present (and bright) in a minority of the inputs.
    movers = truth[truth.kind.isin([3, 4])]
    n_in = len(srcs)
    counts = movers.groupby("id").epoch.nunique()
    minority = movers[movers.id.map(counts) < n_in / 2]
    minority = minority[minority.mag < out["input_maglim"] - 0.75]
    n_surv = 0
    if len(minority):
        near_static = np.zeros(len(minority), bool)
        si, _, _ = match_sky(minority.ra.to_numpy(), minority.dec.to_numpy(),
                             static.ra.to_numpy(), static.dec.to_numpy(), 3.0)
        near_static[si] = True
        ci, _, _ = match_sky(minority.ra.to_numpy(), minority.dec.to_numpy(), cat.ra.to_numpy(),
                             cat.dec.to_numpy(), 1.5)
        hit = np.zeros(len(minority), bool)
        hit[ci] = True
        n_surv = int((hit & ~near_static).sum())
    out["n_minority"] = len(minority)
    out["n_survivors"] = n_surv
    return out


def evaluate_references(home: Home, field: int | None = None) -> pd.DataFrame:
    """Quality of every reference version under ``HOME/products/ref`` (one row each)."""
    rows = []
    root = home.products / "ref"
    for refimg in sorted(root.rglob("*_refimg.fits")):
        if field is not None and int(fits.getheader(refimg)["FIELDID"]) != field:
            continue
        rows.append({"path": str(refimg.relative_to(home.root)),
                     **evaluate_reference(home, refimg)})
    return pd.DataFrame(rows)


__all__ = ["evaluate_reference", "evaluate_references"]
