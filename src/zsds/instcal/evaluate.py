"""Science quality of instrumental calibration, measured against the simulator's ground truth.

For every calibrated quadrant of a night this compares the archived products (``sciimg`` header
and ``psfcat``) with ``HOME/truth``:

* astrometric rms per axis of bright unsaturated stars: the truth pixel positions mapped through
  the calibrated WCS against the true sky positions;
* zero point: MAGZP minus the true zero point;
* PSF-fit photometry of S/N > 50 isolated stars: scatter of (m_psf - m_true) in units of the
  reported errors, around its median;
* completeness: the fraction of truth stars with expected S/N >= 10 present in psfcat.

Only evaluation code reads the truth; the pipeline never does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from zsds.core.home import Home
from zsds.core.instrument import PIXEL_SCALE, amplifier
from zsds.core.masks import clean_flags
from zsds.core.naming import parse_night, pid_of
from zsds.core.stats import robust_std


@dataclass
class QuadrantQuality:
    """Quality figures of one calibrated quadrant."""

    pid: int
    infobits: int
    n_astrom: int
    astrom_rms_ra: float
    astrom_rms_dec: float
    zp_error: float
    clrcoeff_error: float
    n_phot: int
    psf_pull_scatter: float
    psf_median_offset: float
    n_complete: int
    completeness: float
    seeing: float
    maglim: float


def _light_within(sources: pd.DataFrame, stars: pd.DataFrame, radius: float) -> np.ndarray:
    """Flux (DN) of the other truth ``sources`` within ``radius`` px of each of ``stars``."""
    ts = cKDTree(np.column_stack([stars.x, stars.y]))
    ta = cKDTree(np.column_stack([sources.x, sources.y]))
    pairs = ts.sparse_distance_matrix(ta, radius, output_type="ndarray")
    if not len(pairs):
        return np.zeros(len(stars))
    flux = sources.flux_dn.to_numpy()[pairs["j"]]
    # Each star finds itself (distance 0) among the sources: remove its own light.
    total = np.bincount(pairs["i"], weights=flux, minlength=len(stars))
    return np.maximum(total - stars.flux_dn.to_numpy(), 0.0)


def evaluate_quadrant(sciimg: Path, psfcat: Path, truth_dir: Path, ccdid: int, qid: int,
                      pid: int) -> QuadrantQuality:
    """Compare one quadrant's products with its truth."""
    hdr = fits.getheader(sciimg)
    cat = fits.getdata(psfcat)
    cat = pd.DataFrame({c: np.asarray(cat[c]).astype(float) for c in cat.columns.names})
    src = pd.read_parquet(truth_dir / f"c{ccdid:02d}_sources.parquet")
    quads = pd.read_parquet(truth_dir / f"c{ccdid:02d}_quadrants.parquet").set_index("qid")
    t = src[src.qid == qid]
    stars = t[t.kind == 1]
    ny, nx = int(hdr["NAXIS2"]), int(hdr["NAXIS1"])
    amp = amplifier(ccdid, qid)
    inside = (stars.x > 3) & (stars.x < nx - 4) & (stars.y > 3) & (stars.y < ny - 4)
    stars = stars[inside]
    # Astrometry: bright, unsaturated, isolated truth stars through the calibrated WCS.
    wcs = WCS(hdr)
    sat_mag = float(quads.loc[qid, "magzp"]) - 2.5 * np.log10(0.25 * amp.full_well / amp.gain)
    bright = stars[(stars.mag > sat_mag + 0.5) & (stars.mag < 18.5)]
    tree_all = cKDTree(np.column_stack([t.x, t.y]))
    iso = np.array([len(n) == 1 for n in tree_all.query_ball_point(
        np.column_stack([bright.x, bright.y]), 6.0)], bool) if len(bright) else np.array([], bool)
    bright = bright[iso] if len(bright) else bright
    ra, dec = wcs.all_pix2world(bright.x.to_numpy(), bright.y.to_numpy(), 0)
    dra = (ra - bright.ra.to_numpy()) * np.cos(np.deg2rad(bright.dec.to_numpy())) * 3600
    ddec = (dec - bright.dec.to_numpy()) * 3600
    rms_ra = float(np.sqrt(np.mean(dra**2))) if len(dra) else np.nan
    rms_dec = float(np.sqrt(np.mean(ddec**2))) if len(ddec) else np.nan
    zp = float(hdr.get("MAGZP", np.nan))
    zp_err = zp - float(quads.loc[qid, "magzp"]) if zp > -900 else np.nan
    clr = float(hdr.get("CLRCOEFF", np.nan))
    clr_err = clr - float(quads.loc[qid, "clrcoeff"]) if clr > -900 else np.nan
    # PSF-fit photometry and completeness: nearest psfcat source within 1.5 px.
    n_phot, scatter, offset, n_compl, compl = 0, np.nan, np.nan, 0, np.nan
    if len(cat) and np.isfinite(zp):
        ctree = cKDTree(np.column_stack([cat.xpos - 1.0, cat.ypos - 1.0]))
        dist, j = ctree.query(np.column_stack([stars.x, stars.y]), distance_upper_bound=1.5)
        found = np.isfinite(dist)
        skysig = float(hdr.get("SKYSIG", np.nan))
        fwhm = float(hdr.get("SEEING", 2.0)) / PIXEL_SCALE
        n_eff = 4 * np.pi * (fwhm / 2.3548) ** 2 * 1.3  # Moffat-ish noise-equivalent area
        f = stars.flux_dn.to_numpy()
        snr_exp = f / np.sqrt(f / amp.gain + n_eff * skysig**2)
        sat_ok = stars.mag.to_numpy() > sat_mag + 0.5
        sel10 = (snr_exp >= 10) & sat_ok
        n_compl = int(sel10.sum())
        compl = float(found[sel10].mean()) if n_compl else np.nan
        jj = np.where(found, j, 0)
        flags = cat["flags"].to_numpy()[jj]
        snr = cat.snr.to_numpy()[jj]
        iso_all = np.array([len(n) == 1 for n in tree_all.query_ball_point(
            np.column_stack([stars.x, stars.y]), 8.0)], bool)
        good = found & (snr > 50) & sat_ok & clean_flags(flags)
        # Dominant: the other truth sources within 8 px hold < 2% of the star's light. In the
        # Galactic plane no star is isolated; the median offset is taken over dominant stars
        # (faint neighbours bias it by well under 1%), the pull scatter over isolated ones.
        near = _light_within(t, stars, 8.0)
        sel = good & (near <= 0.02 * stars.flux_dn.to_numpy())
        dm = cat.mag.to_numpy()[jj] - stars.mag.to_numpy()
        if sel.any():
            offset = float(np.median(dm[sel]))
            n_phot = int(sel.sum())
        iso = good & iso_all
        if iso.any():
            scatter = robust_std((dm[iso] - np.median(dm[iso])) / cat.sigmag.to_numpy()[jj[iso]])
    return QuadrantQuality(
        pid=pid, infobits=int(hdr.get("INFOBITS", -1)), n_astrom=len(bright),
        astrom_rms_ra=rms_ra, astrom_rms_dec=rms_dec, zp_error=zp_err,
        clrcoeff_error=clr_err, n_phot=n_phot, psf_pull_scatter=scatter,
        psf_median_offset=offset, n_complete=n_compl, completeness=compl,
        seeing=float(hdr.get("SEEING", np.nan)), maglim=float(hdr.get("MAGLIM", np.nan)),
    )


def evaluate_night(home: Home, night: str) -> pd.DataFrame:
    """Quality of every calibrated quadrant of a night (one row each)."""
    date = parse_night(night)
    rows = []
    for sci in sorted((home.products / "sci" / f"{date:%Y}" / f"{date:%m%d}").rglob(
            "*_sciimg.fits")):
        hdr = fits.getheader(sci)
        expid, ccdid, qid = int(hdr["EXPID"]), int(hdr["CCD_ID"]), int(hdr["QID"])
        tdir = home.truth / f"{date:%Y%m%d}" / str(expid)
        if not (tdir / "exposure.json").exists():
            continue
        psfcat = sci.with_name(sci.name.replace("_sciimg.fits", "_psfcat.fits"))
        rows.append(asdict(evaluate_quadrant(sci, psfcat, tdir, ccdid, qid,
                                             pid_of(expid, ccdid, qid))))
    return pd.DataFrame(rows)
