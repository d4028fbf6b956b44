"""Known-object tagging measured on a processed night against the simulator's truth.

For every difference image of the night, the simulated asteroids in its quadrant
(``truth/<night>/<expid>/cNN_sources.parquet``, kind 4) that the simulated MPC knows
(``refcat/MPCORB.DAT``) and that are brighter than the image's limit are matched to the
positive candidates within 2" of their mid-exposure position (detected), and each detected
one is checked for the right ``ssnamenr`` with ``ssdistnr`` <= 2". Candidates tagged with an
object that is not there are counted as false tags.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from sqlalchemy import select
from sqlalchemy.engine import Engine

from zsds.core.geometry import clip_segment
from zsds.core.home import Home
from zsds.core.naming import nid_of, parse_night
from zsds.core.sphere import chord_length
from zsds.db.engine import session
from zsds.db.schema import Candidate, DiffImageRecord
from zsds.moving.run import known_orbits
from zsds.moving.tracklets import radec_to_unit

KIND_ASTEROID = 4


def evaluate_known_night(home: Home, engine: Engine, night: str | dt.date,
                         tol_arcsec: float = 2.0, margin_mag: float = 0.0) -> dict[str, Any]:
    """Tagging completeness and false tags of a processed night (see the module docstring).

    Returns
    -------
    dict
        ``n_images``, ``n_known_bright`` (known asteroids brighter than the limit on an
        image), ``n_detected``, ``n_tagged`` (right name within ``tol_arcsec``),
        ``frac_tagged`` (of detected), ``n_mistagged``, ``n_false_tags`` and
        ``median_ssdistnr`` (arcsec).
    """
    date = parse_night(night)
    orbits = known_orbits(home)
    known = set(orbits.designation) if orbits is not None else set()
    with session(engine) as s:
        images = s.execute(select(DiffImageRecord.pid, DiffImageRecord.expid,
                                  DiffImageRecord.ccdid, DiffImageRecord.qid,
                                  DiffImageRecord.diffmaglim)
                           .where(DiffImageRecord.nid == nid_of(date))).all()
        cands = pd.DataFrame(s.execute(
            select(Candidate.pid, Candidate.candid, Candidate.ra, Candidate.dec,
                   Candidate.isdiffpos, Candidate.ssnamenr, Candidate.record)
            .where(Candidate.nid == nid_of(date))).all(),
            columns=["pid", "candid", "ra", "dec", "isdiffpos", "ssnamenr", "record"])
    res = {"n_images": len(images), "n_known_bright": 0, "n_detected": 0, "n_tagged": 0,
           "n_mistagged": 0, "n_false_tags": 0}
    dists: list[float] = []
    chord = chord_length(tol_arcsec)
    for pid, expid, ccdid, qid, lim in images:
        hits = sorted(home.truth.glob(f"*/{expid}/c{ccdid:02d}_sources.parquet"))
        truth = pd.read_parquet(hits[0]) if hits else pd.DataFrame(columns=["kind"])
        ast = truth[(truth["kind"] == KIND_ASTEROID) & (truth.get("qid", qid) == qid)]
        if lim is not None:
            ast = ast[ast["mag"] <= lim - margin_mag]
        ast = ast[ast["id"].astype(str).isin(known)]
        c = cands[(cands["pid"] == pid) & (cands["isdiffpos"] == "t")]
        tagged = c[c["ssnamenr"].notna()]
        res["n_known_bright"] += len(ast)
        if len(ast) and len(c):
            ra = np.where(ast["ra1"].notna(), 0.5 * (ast["ra"] + ast["ra1"]), ast["ra"]) \
                if "ra1" in ast else ast["ra"].to_numpy()
            dec = np.where(ast["dec1"].notna(), 0.5 * (ast["dec"] + ast["dec1"]), ast["dec"]) \
                if "dec1" in ast else ast["dec"].to_numpy()
            tree = cKDTree(radec_to_unit(c["ra"].to_numpy(), c["dec"].to_numpy()))
            d, j = tree.query(radec_to_unit(np.asarray(ra), np.asarray(dec)),
                              distance_upper_bound=chord)
            det = np.isfinite(d)
            res["n_detected"] += int(det.sum())
            for name, jj in zip(ast["id"].astype(str).to_numpy()[det], j[det], strict=True):
                row = c.iloc[int(jj)]
                ssd = float((row["record"] or {}).get("ssdistnr", -999.0))
                if row["ssnamenr"] == name and 0.0 <= ssd <= tol_arcsec:
                    res["n_tagged"] += 1
                    dists.append(ssd)
                elif row["ssnamenr"] is not None:
                    res["n_mistagged"] += 1
        # A tag is false when its object is not in this image's truth at all.
        present = set(truth[truth["kind"] == KIND_ASTEROID]["id"].astype(str))
        res["n_false_tags"] += int((~tagged["ssnamenr"].isin(present)).sum())
    res["frac_tagged"] = res["n_tagged"] / res["n_detected"] if res["n_detected"] else None
    res["median_ssdistnr"] = float(np.median(dists)) if dists else None
    return res


def _clip_segment(x0: float, y0: float, x1: float, y1: float, nx: int, ny: int
                  ) -> tuple[float, float, float, float] | None:
    """The part of a segment on the image [0, nx-1] x [0, ny-1] (None if outside)."""
    t = clip_segment(x0, y0, x1, y1, (0.0, nx - 1.0), (0.0, ny - 1.0))
    if t is None:
        return None
    dx, dy = x1 - x0, y1 - y0
    return x0 + t[0] * dx, y0 + t[0] * dy, x0 + t[1] * dx, y0 + t[1] * dy


def evaluate_streaks_night(home: Home, engine: Engine, night: str | dt.date,
                           rb_min: float = 0.5, min_snr: float = 10.0) -> dict[str, Any]:
    """Streaks found on a processed night's difference images against the simulator's truth.

    Every truth trail (``truth/<night>/<expid>/cNN_streaks.parquet``: asteroids, satellites,
    airplane dashes) is clipped to its quadrant; those at least 2 FWHM long get an ideal
    integrated S/N from their flux in the image, the quadrant's gain and the difference
    image's noise at their midpoint. A found streak (``rb >= rb_min``) matches a trail by the
    rule of :mod:`zsds.streaks.quality`.

    Returns
    -------
    dict
        ``n_images``, ``n_true`` (S/N >= ``min_snr``), ``n_found`` of them, ``completeness``,
        ``n_false`` (found, matching no trail), ``false_per_image`` and
        ``false_per_quadrant`` (scaled to a full 3072 x 3080 quadrant by area).
    """
    from astropy.io import fits

    from zsds.core.instrument import QUAD_NX, QUAD_NY
    from zsds.db.schema import StreakRecord
    from zsds.streaks.fit import trail_norm
    from zsds.streaks.quality import match_trails

    date = parse_night(night)
    with session(engine) as s:
        images = s.execute(select(DiffImageRecord.pid, DiffImageRecord.expid,
                                  DiffImageRecord.ccdid, DiffImageRecord.qid,
                                  DiffImageRecord.relpath)
                           .where(DiffImageRecord.nid == nid_of(date))).all()
        found = pd.DataFrame(s.execute(select(StreakRecord.pid, StreakRecord.rb,
                                              StreakRecord.record)
                                       .where(StreakRecord.nid == nid_of(date))).all(),
                             columns=["pid", "rb", "record"])
    n_true = n_found = n_false = 0
    area = 0.0
    for pid, expid, ccdid, qid, relpath in images:
        with fits.open(home.path(relpath)) as f:
            h = f[0].header
            ny, nx = f[0].data.shape
        unc = fits.getdata(home.path(relpath.replace("scimrefdiffimg.fits",
                                                      "scimrefdiffimgunc.fits")))
        area += nx * ny
        fwhm = float(h.get("DIFFFWHM", 2.5))
        gain = float(h.get("GAIN", 1.0))
        hits = sorted(home.truth.glob(f"*/{expid}/c{ccdid:02d}_streaks.parquet"))
        truth = pd.read_parquet(hits[0]) if hits else pd.DataFrame(columns=["qid"])
        truth = truth[truth["qid"] == qid]
        segs, strong = [], []
        for t in truth.itertuples():
            c = _clip_segment(t.x0, t.y0, t.x1, t.y1, nx, ny)
            if c is None:
                continue
            L_all = float(np.hypot(t.x1 - t.x0, t.y1 - t.y0))
            L = float(np.hypot(c[2] - c[0], c[3] - c[1]))
            segs.append(c)
            if L < 2.0 * fwhm:
                strong.append(False)
                continue
            xm, ym = round(0.5 * (c[0] + c[2])), round(0.5 * (c[1] + c[3]))
            sig = float(unc[min(max(ym, 0), ny - 1), min(max(xm, 0), nx - 1)])
            flux = float(t.flux_e) / gain * (L / max(L_all, 1e-9))
            snr = flux * float(trail_norm(L, fwhm / 2.3548)) / sig if sig > 0 else 0.0
            strong.append(bool(snr >= min_snr))
        fs = found[(found["pid"] == pid) & (found["rb"].fillna(0.0) >= rb_min)]
        segs_df = pd.DataFrame(segs, columns=["x0", "y0", "x1", "y1"])
        found_df = pd.DataFrame([{k: float(r[k]) for k in ("xmid", "ymid", "angle")}
                                 for r in fs["record"]], columns=["xmid", "ymid", "angle"])
        matched, real = match_trails(found_df, segs_df)
        n_false += int((~real).sum())
        strong_arr = np.array(strong, bool)
        n_true += int(strong_arr.sum())
        n_found += int((matched & strong_arr).sum())
    quads = area / (QUAD_NX * QUAD_NY) if area else 0.0
    return {"n_images": len(images), "n_true": n_true, "n_found": n_found,
            "completeness": n_found / n_true if n_true else None, "n_false": n_false,
            "false_per_image": n_false / len(images) if images else None,
            "false_per_quadrant": n_false / quads if quads else None}
