"""Candidate extraction and measurement on a difference image.

Events are peaks of |Scorr| >= 5 (both signs; negative events are reference-minus-science and
get ``isdiffpos = 'f'``). Each is measured on the difference image D with its PSF P_D as the
IPAC pipeline does (``shared/reference/ZTF_REFERENCE.md`` section 2.4 items 5-6): PSF-fit flux
and chi-square, aperture fluxes in 14 and 18 px diameters, shape from isophotal moments, 5x5
stamp statistics (nneg, nbad, sumrat), dsnrms/ssnrms, distance to the image edge. Column names
and units are those of the ZTF alert ``candidate`` record. Pure functions on a
:class:`~zsds.diffim.stage.DiffImage`; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import sep
from scipy import ndimage

from zsds.core.instrument import PIXEL_SCALE
from zsds.core.masks import BAD_PIXEL_BITS
from zsds.core.photometry import flux_to_mag
from zsds.diffim.stage import DiffImage

__all__ = ["CandidateConfig", "find_peaks", "measure_candidates"]



@dataclass(frozen=True)
class CandidateConfig:
    """Settings of candidate extraction.

    Attributes
    ----------
    threshold : float
        Detection threshold on |Scorr| (IPAC: 5).
    fit_half : int
        Half-size of the PSF-fit box (pixels).
    ap_diameters : tuple of float
        Aperture diameters (pixels) of ``magap`` and ``magapbig`` (IPAC: 14 and 18).
    box : int
        Side of the stamp of ``nneg``, ``nbad`` and ``sumrat`` (IPAC: 5).
    bad_bits : int
        Mask bits counted by ``nbad``.
    max_candidates : int
        Most events kept per sign (the highest |Scorr|); a broken subtraction must not flood the
        database.
    """

    threshold: float = 5.0
    fit_half: int = 7
    ap_diameters: tuple[float, float] = (14.0, 18.0)
    box: int = 5
    bad_bits: int = BAD_PIXEL_BITS
    max_candidates: int = 3000


def find_peaks(scorr: np.ndarray, threshold: float, max_n: int, min_sep: int = 3,
               per_region: int = 3) -> pd.DataFrame:
    """Local maxima of ``sign * Scorr >= threshold`` for both signs.

    A peak is the maximum of its ``(2 min_sep + 1)^2`` neighbourhood, so two events a few
    pixels apart in one connected region above the threshold are both kept (a simple
    deblending; Scorr is already PSF-smoothed, so noise makes no extra maxima on a bright
    event). At most ``per_region`` maxima (the highest) are kept per connected region, so an
    extended artefact (a bad column, a satellite trail) does not become dozens of candidates.
    Returns ``x, y`` (integer peak pixel, 0-based), ``sign`` (+1/-1), ``scorr`` (signed
    peak value) and ``npix`` (area of the connected region above the threshold).
    """
    rows = []
    s = np.nan_to_num(scorr, nan=0.0)
    size = 2 * min_sep + 1
    for sign in (1, -1):
        v = sign * s
        above = v >= threshold
        lab, n = ndimage.label(above, structure=np.ones((3, 3), bool))
        if n == 0:
            continue
        peak_mask = above & (v == ndimage.maximum_filter(v, size=size, mode="nearest"))
        py, px = np.nonzero(peak_mask)
        reg = lab[py, px]
        area = np.bincount(lab.ravel())[reg]
        peak = v[py, px]
        order = np.lexsort((-peak, reg))  # by region, highest first within a region
        first = np.r_[0, np.flatnonzero(np.diff(reg[order])) + 1]
        rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
        sel = order[rank < per_region]
        keep = sel[np.argsort(-peak[sel], kind="stable")][:max_n]
        rows.append(pd.DataFrame({"x": px[keep], "y": py[keep], "sign": sign,
                                  "scorr": sign * peak[keep], "npix": area[keep].astype(int)}))
    if not rows:
        return pd.DataFrame({"x": [], "y": [], "sign": [], "scorr": [], "npix": []})
    return pd.concat(rows, ignore_index=True)


def _subpixel(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Peak position refined by a parabola through the 3 pixels along each axis."""
    ny, nx = img.shape
    xi = np.clip(x, 1, nx - 2)
    yi = np.clip(y, 1, ny - 2)
    c = img[yi, xi]
    xm, xp = img[yi, xi - 1], img[yi, xi + 1]
    ym, yp = img[yi - 1, xi], img[yi + 1, xi]
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = 0.5 * (xm - xp) / (xm - 2 * c + xp)
        dy = 0.5 * (ym - yp) / (ym - 2 * c + yp)
    dx = np.where(np.isfinite(dx), np.clip(dx, -0.5, 0.5), 0.0)
    dy = np.where(np.isfinite(dy), np.clip(dy, -0.5, 0.5), 0.0)
    return xi + dx, yi + dy


def _box(a: np.ndarray, x: int, y: int, half: int, fill: float = np.nan) -> np.ndarray:
    """(2 half + 1)^2 stamp of ``a`` centred on (x, y), padded with ``fill`` off the edges."""
    ny, nx = a.shape
    out = np.full((2 * half + 1, 2 * half + 1), fill, dtype=np.float64)
    ys, ye = max(y - half, 0), min(y + half + 1, ny)
    xs, xe = max(x - half, 0), min(x + half + 1, nx)
    if ys < ye and xs < xe:
        out[ys - y + half:ye - y + half, xs - x + half:xe - x + half] = a[ys:ye, xs:xe]
    return out


def _shifted_psf(psf: np.ndarray, dx: float, dy: float, half: int) -> np.ndarray:
    """P_D moved by a sub-pixel (dx, dy) (cubic spline) and cut to (2 half + 1)^2."""
    sh = ndimage.shift(psf.astype(np.float64), (dy, dx), order=3, mode="constant")
    c = psf.shape[0] // 2
    return sh[c - half:c + half + 1, c - half:c + half + 1]


def _shape(stamp: np.ndarray, thresh: np.ndarray) -> tuple[float, float, float, float]:
    """Isophotal shape of the central object of a sign-corrected stamp.

    Returns ``(fwhm, a, b, theta)`` from the intensity-weighted second moments of the connected
    pixels above ``thresh`` (as SExtractor's A_IMAGE, B_IMAGE, THETA_IMAGE); the FWHM is the
    Gaussian-core equivalent ``2.3548 sqrt((a^2 + b^2) / 2)`` (smoother than SExtractor's
    half-maximum area on undersampled events).
    """
    n = stamp.shape[0]
    c = n // 2
    s = np.nan_to_num(stamp, nan=0.0)
    lab, _ = ndimage.label(s > thresh)
    k = lab[c, c]
    if k == 0:
        return np.nan, np.nan, np.nan, np.nan
    sel = lab == k
    w = np.where(sel, s, 0.0)
    yy, xx = np.mgrid[0:n, 0:n]
    tot = w.sum()
    mx, my = (w * xx).sum() / tot, (w * yy).sum() / tot
    x2 = (w * (xx - mx) ** 2).sum() / tot + 1.0 / 12
    y2 = (w * (yy - my) ** 2).sum() / tot + 1.0 / 12
    xy = (w * (xx - mx) * (yy - my)).sum() / tot
    t1, t2 = 0.5 * (x2 + y2), np.sqrt(0.25 * (x2 - y2) ** 2 + xy**2)
    a, b = np.sqrt(t1 + t2), np.sqrt(max(t1 - t2, 1e-6))
    theta = 0.5 * np.degrees(np.arctan2(2 * xy, x2 - y2))
    fwhm = 2.3548 * np.sqrt(0.5 * (a * a + b * b))
    return float(fwhm), float(a), float(b), float(theta)


def measure_candidates(diff: DiffImage, config: CandidateConfig = CandidateConfig()
                       ) -> pd.DataFrame:
    """Find and measure the events of a difference image.

    Returns one row per event with 0-based ``x, y`` and ZTF candidate columns: ``xpos, ypos``
    (1-based), ``ra, dec``, ``isdiffpos``, ``scorr``, ``flux``/``fluxerr`` (PSF fit, DN,
    sign-corrected), ``magpsf``, ``sigmapsf``, ``chipsf``, ``magap``, ``sigmagap``, ``magapbig``,
    ``sigmagapbig``, ``magdiff``, ``fwhm``, ``aimage``, ``bimage``, ``aimagerat``, ``bimagerat``,
    ``elong``, ``classtar``, ``nneg``, ``nbad``, ``sumrat``, ``dsnrms``, ``ssnrms``, ``dsdiff``,
    ``seeratio``, ``mindtoedge``, ``magfromlim``, ``sky``, ``diffmaglim``, ``snr``.
    """
    hdr = diff.header
    zp = float(hdr["MAGZP"])
    peaks = find_peaks(diff.scorr, config.threshold, config.max_candidates)
    n = len(peaks)
    ny, nx = diff.shape
    if n == 0:
        return pd.DataFrame()
    score = np.nan_to_num(diff.score, nan=0.0)
    xs, ys = _subpixel(np.abs(score), peaks.x.to_numpy(), peaks.y.to_numpy())
    d_img = np.nan_to_num(diff.diff, nan=0.0)
    sig = diff.diff_sigma
    bad = (diff.mask & config.bad_bits) != 0
    g = np.isfinite(diff.diff)
    d_rms = float(np.nanstd(np.where(g, diff.diff, np.nan)[::2, ::2]))
    s_rms = float(np.nanstd(np.where(g, diff.score, np.nan)[::2, ::2]))
    diffmaglim = float(hdr.get("DIFFMLIM", np.nan))
    sci_fwhm = float(hdr.get("SEEING", np.nan)) / PIXEL_SCALE if "SEEING" in hdr else np.nan
    h = config.fit_half
    cols: dict[str, list] = {k: [] for k in (
        "flux", "fluxerr", "chipsf", "fwhm", "aimage", "bimage", "theta", "nneg", "nbad",
        "sumrat", "dsnrms", "ssnrms", "difffwhm", "sky")}
    sky_img = diff.science
    for k in range(n):
        sign = int(peaks.sign.iat[k])
        xi, yi = round(xs[k]), round(ys[k])
        tile = diff.tile_of(xs[k], ys[k])
        psf = _shifted_psf(tile.psf, xs[k] - xi, ys[k] - yi, h)
        dat = _box(d_img, xi, yi, h, 0.0) * sign
        var = _box(sig, xi, yi, h) ** 2
        ok = np.isfinite(var) & (var > 0) & (_box(bad.view(np.uint8), xi, yi, h, 1) == 0)
        # Unweighted fit: per-pixel weights that include the event's own photon noise would
        # bias bright fluxes low; the error propagates the full per-pixel variance.
        p = np.where(ok, psf, 0.0)
        spp = (p * p).sum()
        if spp > 0:
            flux = (p * dat).sum() / spp
            ferr = np.sqrt((p * p * np.where(ok, var, 0.0)).sum()) / spp
            core = ok & (psf > 0.01 * psf.max())
            resid = (dat - flux * psf) ** 2 / np.where(ok, var, 1.0)
            chi = resid[core].sum() / max(core.sum() - 1, 1)
        else:
            flux, ferr, chi = np.nan, np.nan, np.nan
        cols["flux"].append(flux)
        cols["fluxerr"].append(ferr)
        cols["chipsf"].append(chi)
        st = _box(d_img, xi, yi, h, 0.0) * sign
        sg = np.sqrt(np.where(np.isfinite(var), var, np.nanmedian(var)))
        fwhm, a, b, th = _shape(st, 1.5 * sg)
        cols["fwhm"].append(fwhm)
        cols["aimage"].append(a)
        cols["bimage"].append(b)
        cols["theta"].append(th)
        q = config.box // 2
        b5 = _box(d_img, xi, yi, q, 0.0) * sign
        cols["nneg"].append(int((b5 < 0).sum()))
        cols["nbad"].append(int(_box(bad.view(np.uint8), xi, yi, q, 1).sum()))
        # IPAC median-filters the stamp first to be robust to single hot pixels.
        b5m = ndimage.median_filter(_box(d_img, xi, yi, q + 1, 0.0) * sign, size=3)[1:-1, 1:-1]
        den = np.abs(b5m).sum()
        cols["sumrat"].append(float(b5m.sum() / den) if den > 0 else np.nan)
        cols["dsnrms"].append(float(sign * d_img[yi, xi] / d_rms) if d_rms > 0 else np.nan)
        cols["ssnrms"].append(float(sign * score[yi, xi] / s_rms) if s_rms > 0 else np.nan)
        cols["difffwhm"].append(tile.fwhm)
        skyb = _box(sky_img, xi, yi, 3 * h)
        cols["sky"].append(float(np.nanmedian(skyb)) if np.isfinite(skyb).any() else np.nan)
    out = peaks.copy()
    out["x"], out["y"] = xs, ys
    for k, v in cols.items():
        out[k] = np.asarray(v, float)
    out["nneg"] = out["nneg"].astype(int)
    out["nbad"] = out["nbad"].astype(int)
    out["xpos"], out["ypos"] = xs + 1.0, ys + 1.0
    ra, dec = diff_wcs_radec(diff, xs, ys)
    out["ra"], out["dec"] = ra, dec
    out["isdiffpos"] = np.where(peaks.sign.to_numpy() > 0, "t", "f")
    with np.errstate(invalid="ignore", divide="ignore"):
        f, fe = out["flux"].to_numpy(), out["fluxerr"].to_numpy()
        out["magpsf"], out["sigmapsf"] = flux_to_mag(f, fe, zp)
        out["snr"] = f / fe
        for name, diam in zip(("magap", "magapbig"), config.ap_diameters, strict=True):
            af, ae = _aperture(d_img, sig, bad, xs, ys, diam / 2.0)
            af = af * peaks.sign.to_numpy()
            out[name], out["sig" + name] = flux_to_mag(af, ae, zp)
        out["magdiff"] = out["magap"] - out["magpsf"]
        out["elong"] = out["aimage"] / out["bimage"]
        out["aimagerat"] = out["aimage"] / out["fwhm"]
        out["bimagerat"] = out["bimage"] / out["fwhm"]
        out["seeratio"] = out["difffwhm"] / out["fwhm"]
        # No SExtractor neural network here: a stellarity proxy from how well the event's FWHM
        # matches the difference PSF's (1 = point-like); documented as such.
        out["classtar"] = np.exp(-0.5 * ((out["fwhm"] / out["difffwhm"] - 1.0) / 0.2) ** 2)
    out["dsdiff"] = out["dsnrms"] - out["ssnrms"]
    out["mindtoedge"] = np.minimum.reduce([xs, ys, nx - 1 - xs, ny - 1 - ys])
    out["diffmaglim"] = diffmaglim
    out["magfromlim"] = diffmaglim - out["magap"]
    out["seeing_px"] = sci_fwhm
    return out.reset_index(drop=True)


def _aperture(d: np.ndarray, sig: np.ndarray, bad: np.ndarray, x: np.ndarray, y: np.ndarray,
              r: float) -> tuple[np.ndarray, np.ndarray]:
    err = np.where(np.isfinite(sig), sig, 0.0).astype(np.float64)
    flux, ferr, _ = sep.sum_circle(np.ascontiguousarray(d, dtype=np.float64), x, y, r,
                                   err=err, mask=bad, subpix=5)
    return np.asarray(flux), np.asarray(ferr)


def diff_wcs_radec(diff: DiffImage, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sky positions of 0-based pixels through the science WCS in the header."""
    from astropy.wcs import WCS

    ra, dec = WCS(diff.header).all_pix2world(x, y, 0)
    return np.asarray(ra, float), np.asarray(dec, float)
