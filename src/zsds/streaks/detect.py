"""Streak detection in (ZOGY) difference images: a bank of PSF-broadened line-segment filters.

Pipeline of :func:`detect_streaks` (all steps vectorised with numpy/scipy; no per-pixel loops):

1. **Normalise**: ``z = diff / sigma``; masked (``mask != 0``), non-finite or ``sigma <= 0``
   pixels get ``z = 0`` (no signal, no noise).
2. **Sharp artefacts**: cosmic-ray hits, hot pixels (:func:`sharp_pixels`) and bad columns or
   rows (:func:`sharp_lines`), all much sharper than the PSF, are set to 0.
3. **Bin** ``z`` by ``binning x binning`` block sums divided by ``binning`` (unit noise stays
   unit noise), which cuts the cost by ``binning**2`` for ~5 % S/N loss at FWHM ~ 2.5 px.
4. **Matched-filter bank**. Two interchangeable implementations (``StreakConfig.method``):

   * ``"frt"`` (default): smooth the binned image with the Gaussian PSF, then sum it along every
     digital line segment of length ``2**k`` binned pixels, every slope and every position with
     the partial fast Radon transform (:mod:`zsds.streaks.frt`; Nir, Zackay & Ofek 2018). All
     angles and lengths from ``min_segment_fwhm * fwhm`` to ``max_length`` cost ~1 s on a full
     quadrant. Above-threshold local maxima are candidate segments.
   * ``"bank"``: the classic bank of unit-norm kernels (PSF-convolved line segments at
     ``n_angles`` angles x ``bank_lengths``) correlated with the image by real FFT (the image
     transform is computed once and reused, float32). Per pixel the maximum S/N over the bank is
     kept, thresholded and labelled with :func:`scipy.ndimage.label`; each region's peak gives a
     candidate segment (the best kernel's angle and length). Much slower for long streaks (the
     number of angles needed grows with the length).

5. **Point-source veto**: a segment through a point source (variable-star residual, bright-star
   core) never responds more than ``rho`` times the point filter does. A candidate is kept
   only when its S/N exceeds ``point_veto * rho`` times the largest point-filter S/N along it
   and that prediction by ``point_excess``.
6. **Group** (:func:`_group`): brightest first, the candidate's line is refined to the part
   where the signal is (1-D matched filter, :func:`_refine`); candidates running along it
   within ``merge_perp_fwhm * fwhm`` join (fragments, other slopes and lengths of the same
   trail), and so do candidates crossing it that are no longer significant without its pixels
   (side lobes; "explaining away", :func:`_explainer`).
7. **Refine** each group's extent with the 1-D matched filter (its ends are the initial end
   points), merge collinear overlapping results and drop groups shorter than
   ``min_length_fwhm * fwhm`` (point-like).
8. Optionally (``radon=True``) add full-image line candidates from a Radon transform of the
   8x8-binned image before grouping (:mod:`zsds.streaks.radon`).

Conventions: pixel ``(x, y)`` = (column, row), 0-based, pixel centres at integers. Angles are
degrees counter-clockwise from the +x axis (with +y up, as the image is displayed with the
origin at the lower left), in ``[0, 180)``. End points are ordered so that the direction from
``(x0, y0)`` to ``(x1, y1)`` has that angle (a single exposure cannot tell the direction of
motion).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import fft as sfft
from scipy import ndimage as ndi

from zsds.streaks.base import (
    DEFAULT_CONFIG,
    FWHM_TO_SIGMA,
    SEGMENT_COLUMNS,
    StreakConfig,
    bin_image,
    canonical_segments,
)
from zsds.streaks.fit import trailed_psf
from zsds.streaks.frt import (
    frt_levels,
    line_noise,
    line_offsets,
    octant_to_image,
    octant_views,
    threshold_level,
)
from zsds.streaks.radon import radon_candidates

__all__ = [
    "DEFAULT_CONFIG",
    "DETECT_COLUMNS",
    "StreakConfig",
    "bin_image",
    "canonical_segments",
    "detect_streaks",
    "gaussian_kernel1d",
    "normalised_image",
    "sharp_lines",
    "sharp_pixels",
]

DETECT_COLUMNS: tuple[str, ...] = (
    *SEGMENT_COLUMNS,
    "snr_det",
    "snr_prof",
    "n_seg",
    "seg_length",
    "pt_ratio",
)
"""Columns of :func:`detect_streaks` (see ``docs/streaks.md``)."""


# --------------------------------------------------------------------------------- helpers


def normalised_image(
    diff: np.ndarray, sigma: np.ndarray | float, mask: np.ndarray | None = None
) -> np.ndarray:
    """``diff / sigma`` as float32 with 0 at masked, non-finite or ``sigma <= 0`` pixels.

    Parameters
    ----------
    diff : ndarray (ny, nx)
        Difference image.
    sigma : ndarray (ny, nx) or float
        Its 1-sigma noise per pixel (same unit).
    mask : ndarray (ny, nx), optional
        Pixels with a nonzero value are ignored.

    Returns
    -------
    ndarray (ny, nx) float32
    """
    d = np.asarray(diff, np.float32)
    s = np.asarray(sigma, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = d / s
    bad = ~np.isfinite(z) | ~(np.broadcast_to(s, d.shape) > 0)
    if mask is not None:
        bad |= np.asarray(mask) != 0
    z[bad] = 0.0
    return z.astype(np.float32, copy=False)


def sharp_pixels(z: np.ndarray, ratio: float = 2.5, min_snr: float = 5.0, passes: int = 2
                 ) -> np.ndarray:
    """Pixels much sharper than any PSF: cosmic-ray hits and hot pixels.

    A pixel is sharp when ``z > min_snr`` and ``z > ratio * max(mean of its left/right
    neighbours, mean of its upper/lower neighbours)``. A well-sampled PSF (FWHM >= 1.5 px) or a
    trail has neighbours at >= ~50 % of the peak along at least one axis, so it is never
    flagged; a hit covering 2-3 pixels is peeled off over ``passes`` iterations. Lines of sharp
    pixels (muon tracks, bad columns) survive by design (see :func:`sharp_lines`).

    Parameters
    ----------
    z : ndarray (ny, nx)
        S/N image (``diff / sigma``).

    Returns
    -------
    ndarray (ny, nx) bool
    """
    ny, nx = z.shape
    out = np.zeros(z.shape, bool)
    iy, ix = np.nonzero(z > min_snr)
    if len(iy) == 0:
        return out
    for _ in range(passes):
        def val(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
            ok = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
            v = z[np.clip(yy, 0, ny - 1), np.clip(xx, 0, nx - 1)]
            return np.where(ok & ~out[np.clip(yy, 0, ny - 1), np.clip(xx, 0, nx - 1)], v, 0.0)

        c = z[iy, ix]
        lr = 0.5 * (val(iy, ix - 1) + val(iy, ix + 1))
        ud = 0.5 * (val(iy - 1, ix) + val(iy + 1, ix))
        new = c > ratio * np.maximum(np.maximum(lr, ud), 0.0)
        if not new.any():
            break
        out[iy[new], ix[new]] = True
        iy, ix = iy[~new], ix[~new]
    return out


def sharp_lines(
    z: np.ndarray, window: int = 32, min_snr: float = 5.0, ratio: float = 3.0
) -> np.ndarray:
    """Pixels of column or row segments much sharper than the PSF (bad columns or rows).

    Along each axis, ``z`` is summed in blocks of ``window / 4`` pixels and the S/N of running
    sums over ``window`` pixels is compared with that of the two adjacent columns (rows): a
    segment is flagged when its S/N exceeds ``min_snr`` and ``ratio`` times the mean of its
    neighbours. A trail along a column, blurred by a PSF of FWHM >= 1.5 px, always puts
    >= ~50 % of its signal in a neighbouring column and is not flagged. Flagged segments are
    widened by one block on each side; only pixels with ``z > 0`` are returned.

    Returns
    -------
    ndarray (ny, nx) bool
    """
    out = np.zeros(z.shape, bool)
    blk = max(1, window // 4)
    for axis in (0, 1):
        a = z if axis == 0 else z.T
        n, m = a.shape
        nb = n // blk
        if nb < 4:
            continue
        bs = a[: nb * blk].reshape(nb, blk, m).sum(axis=1)
        run = (bs[:-3] + bs[1:-2] + bs[2:-1] + bs[3:]) / np.float32(math.sqrt(4 * blk))
        pad = np.pad(run, ((0, 0), (1, 1)))
        nbm = 0.5 * (pad[:, :-2] + pad[:, 2:])
        hit = (run > min_snr) & (run > ratio * np.maximum(nbm, 0.0))
        if not hit.any():
            continue
        blocks = np.zeros((nb, m), bool)
        for k in range(-1, 5):  # the 4 blocks of each run, plus one on each side
            lo, hi = max(0, k), min(nb, nb - 3 + k)
            blocks[lo:hi] |= hit[lo - k : hi - k]
        flag = np.repeat(blocks, blk, axis=0)
        view = out if axis == 0 else out.T
        view[: nb * blk] |= flag & (a[: nb * blk] > 0)
    return out


def gaussian_kernel1d(sigma: float, truncate: float = 3.5) -> np.ndarray:
    """Unit-sum sampled 1-D Gaussian of standard deviation ``sigma`` (odd length)."""
    r = max(1, math.ceil(truncate * sigma))
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _smooth(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    out = ndi.correlate1d(img, g.astype(np.float32), axis=0, mode="constant")
    return ndi.correlate1d(out, g.astype(np.float32), axis=1, mode="constant")


def binned_psf_sigma(fwhm_px: float, b: int) -> float:
    """Gaussian sigma (binned pixels) of a PSF of ``fwhm_px`` after ``b x b`` block summing."""
    s = fwhm_px * FWHM_TO_SIGMA
    return math.sqrt(s * s + (b * b - 1) / 12.0) / b


# ------------------------------------------------------------------ point/line response ratio


def _point_ratio(offsets: np.ndarray, g: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Largest line/point S/N ratio of an ideal point source (profile ``g``), per rise."""
    c = np.correlate(g, g, mode="full")  # 1-D autocorrelation; 2-D is outer(c, c)
    r = len(g) - 1
    w = offsets.shape[1]
    best = np.zeros(offsets.shape[0])
    centres = np.unique(np.linspace(0, w - 1, min(w, 9)).astype(int))
    for i0 in centres:
        dx = np.arange(w) - i0
        dy = offsets - offsets[:, i0 : i0 + 1]
        ok = (np.abs(dx)[None, :] <= r) & (np.abs(dy) <= r)
        cx = c[r + np.clip(dx, -r, r)][None, :]
        cy = c[r + np.clip(dy, -r, r)]
        resp = np.where(ok, cx * cy, 0.0).sum(axis=1)
        best = np.maximum(best, resp)
    c0 = c[r] * c[r]
    return best / (noise * math.sqrt(c0))


# ------------------------------------------------------------------------------ FRT search


def _frt_candidates(
    zb: np.ndarray, sig_b: float, kmin: int, kmax: int, config: StreakConfig
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Candidate segments (binned-image coordinates) from the partial fast Radon transform."""
    g = gaussian_kernel1d(sig_b)
    sm = _smooth(zb, g)
    gnorm = float(np.sum(g**2))  # ||outer(g, g)||_2 = sum(g^2)
    pt = point_peak_map(sm * np.float32(1.0 / gnorm))  # point-source S/N (peaks within 1 px)
    offs = line_offsets(kmax)
    noise = {k: line_noise(offs[k], g) for k in range(kmin, kmax + 1)}
    rho = {k: _point_ratio(offs[k], g, noise[k]) for k in range(kmin, kmax + 1)}
    parts: list[dict[str, np.ndarray]] = []
    views = octant_views(sm)
    pviews = octant_views(pt)
    for v, (img, pimg) in enumerate(zip(views, pviews, strict=True)):
        nyv, nxv = img.shape
        for lv in frt_levels(img, kmax, kmin):
            w = 1 << lv.k
            b, s, j, snr = threshold_level(lv, noise[lv.k], config.threshold, config.max_candidates)
            if len(b) == 0:
                continue
            xs = lv.offset + b * w
            ys = j - lv.pad
            # Largest point-filter S/N along each candidate line (point-source veto).
            px = xs[:, None] + np.arange(w)[None, :]
            py = ys[:, None] + offs[lv.k][s]
            ok = (px >= 0) & (px < nxv) & (py >= 0) & (py < nyv)
            vals = np.where(ok, pimg[np.clip(py, 0, nyv - 1), np.clip(px, 0, nxv - 1)], 0.0)
            ptmax = np.maximum(vals.max(axis=1), 1e-6)
            expect = rho[lv.k][s] * ptmax  # line S/N a point source of this peak would give
            ratio = snr / expect
            keep = (ratio >= config.point_veto) & (snr - expect >= config.point_excess)
            if not keep.any():
                continue
            xs, ys, s, snr, ratio = xs[keep], ys[keep], s[keep], snr[keep], ratio[keep]
            xa, ya = octant_to_image(v, xs.astype(float), ys.astype(float), zb.shape)
            xe, ye = octant_to_image(
                v, (xs + w - 1).astype(float), (ys + s).astype(float), zb.shape
            )
            parts.append(
                {
                    "x0": xa,
                    "y0": ya,
                    "x1": xe,
                    "y1": ye,
                    "snr": snr.astype(float),
                    "ratio": ratio.astype(float),
                    "w": np.full(len(xs), float(w)),
                }
            )
    return _concat(parts), sm


def point_peak_map(pt: np.ndarray, floor: float = 3.0) -> np.ndarray:
    """Point-filter S/N map with sampling-corrected peaks spread over their 3 x 3 pixels.

    Local maxima above ``floor`` are corrected for pixel sampling with a Gaussian (log-
    parabola) interpolation along each axis, so a source centred between pixels is not
    underestimated, and the corrected peak is written to the 3 x 3 pixels around it (so a line
    passing within one pixel of a source's peak sees that peak).
    """
    out = pt.copy()
    iy, ix = np.nonzero(pt[1:-1, 1:-1] > floor)
    if len(iy) == 0:
        return out
    iy += 1
    ix += 1
    c = pt[iy, ix].astype(float)
    nbmax = np.max([pt[iy + dy, ix + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                    if dy or dx], axis=0)
    keep = c >= nbmax
    iy, ix, c = iy[keep], ix[keep], c[keep]
    fac = np.ones(len(c))
    for a, b in ((pt[iy, ix - 1], pt[iy, ix + 1]), (pt[iy - 1, ix], pt[iy + 1, ix])):
        a = a.astype(float)
        b = b.astype(float)
        ok = (a > 0) & (b > 0)
        la = np.log(np.where(ok, a, 1.0) / c)
        lb = np.log(np.where(ok, b, 1.0) / c)
        den = la + lb
        with np.errstate(divide="ignore", invalid="ignore"):
            lpk = np.where(ok & (den < 0), -((lb - la) ** 2) / (8.0 * den), 0.0)
        fac *= np.exp(np.clip(lpk, 0.0, math.log(2.0)))
    peak = (c * fac).astype(out.dtype)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            yy, xx = iy + dy, ix + dx
            np.maximum.at(out, (yy, xx), peak)
    return out


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    keys = ("x0", "y0", "x1", "y1", "snr", "ratio", "w")
    if not parts:
        return {k: np.zeros(0) for k in keys}
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


# ----------------------------------------------------------------------------- FFT bank


def line_kernel(length: float, angle_deg: float, sigma: float, size: int) -> np.ndarray:
    """Unit-L2-norm Gaussian-broadened line segment centred in a ``size x size`` stamp.

    Closed form (see :func:`zsds.streaks.fit.trailed_psf`), sampled at pixel centres.
    """

    h = size // 2
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1].astype(float)
    t = math.radians(angle_deg)
    dx, dy = 0.5 * length * math.cos(t), 0.5 * length * math.sin(t)
    k = trailed_psf(xx, yy, -dx, -dy, dx, dy, 1.0, sigma)
    return (k / np.sqrt(np.sum(k**2))).astype(np.float32)


def _bank_candidates(
    zb: np.ndarray, sig_b: float, config: StreakConfig
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Candidates (binned coordinates) from an explicit FFT-correlated kernel bank."""
    b = config.binning
    ny, nx = zb.shape
    lengths = [max(1.0, L / b) for L in config.bank_lengths]
    size = 2 * math.ceil(0.5 * max(lengths) + 4 * sig_b) + 1
    shape = (sfft.next_fast_len(ny + size, real=True), sfft.next_fast_len(nx + size, real=True))
    fz = sfft.rfft2(zb, s=shape, workers=1)
    best = np.full((ny, nx), -np.inf, np.float32)
    arg = np.zeros((ny, nx), np.int16)
    angles = np.arange(config.n_angles) * (180.0 / config.n_angles)
    bank = [(L, a) for L in lengths for a in angles]
    h = size // 2
    for i, (L, a) in enumerate(bank):
        k = line_kernel(L, a, sig_b, size)
        kp = np.zeros(shape, np.float32)
        kp[:size, :size] = k[::-1, ::-1]  # correlation = convolution with the flipped kernel
        resp = sfft.irfft2(fz * sfft.rfft2(kp, workers=1), s=shape, workers=1)
        resp = resp[h : h + ny, h : h + nx]
        better = resp > best
        best[better] = resp[better]
        arg[better] = i
    g = gaussian_kernel1d(sig_b)
    sm = _smooth(zb, g)
    pt = point_peak_map(sm * np.float32(1.0 / float(np.sum(g**2))))
    hit = best > config.threshold
    lab, n = ndi.label(hit)
    if n == 0:
        return _concat([]), sm
    idx = np.arange(1, n + 1)
    peaks = np.asarray(ndi.maximum_position(best, lab, idx), dtype=np.int64).reshape(-1, 2)
    snr = best[peaks[:, 0], peaks[:, 1]].astype(float)
    kk = arg[peaks[:, 0], peaks[:, 1]]
    L = np.array([bank[i][0] for i in kk])
    a = np.radians([bank[i][1] for i in kk])
    xc, yc = peaks[:, 1].astype(float), peaks[:, 0].astype(float)
    dx, dy = 0.5 * L * np.cos(a), 0.5 * L * np.sin(a)
    # Point-source veto: compare with the point filter's best S/N along the segment.
    tt = np.linspace(-1.0, 1.0, 9)
    sx = np.clip(np.round(xc[:, None] + tt[None, :] * dx[:, None]).astype(int), 0, nx - 1)
    sy = np.clip(np.round(yc[:, None] + tt[None, :] * dy[:, None]).astype(int), 0, ny - 1)
    ptmax = np.maximum(pt[sy, sx].max(axis=1), 1e-6)
    rho = np.array([_bank_point_ratio(Li, sig_b) for Li in L])
    ratio = snr / (rho * ptmax)
    keep = (ratio >= config.point_veto) & (snr - rho * ptmax >= config.point_excess)
    return {
        "x0": (xc - dx)[keep],
        "y0": (yc - dy)[keep],
        "x1": (xc + dx)[keep],
        "y1": (yc + dy)[keep],
        "snr": snr[keep],
        "ratio": ratio[keep],
        "w": L[keep],
    }, sm


def _bank_point_ratio(length: float, sig: float) -> float:
    """Line/point S/N ratio of a centred point source for a Gaussian line kernel.

    ``<T, P> / (||T|| ||P||)`` with ``T`` the unit-flux trailed PSF and ``P`` the PSF,
    evaluated on a pixel grid.
    """

    h = math.ceil(0.5 * length + 5 * sig)
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1].astype(float)
    t = trailed_psf(xx, yy, -0.5 * length, 0.0, 0.5 * length, 0.0, 1.0, sig)
    p = trailed_psf(xx, yy, 0.0, 0.0, 0.0, 0.0, 1.0, sig)
    return float(np.sum(t * p) / math.sqrt(np.sum(t * t) * np.sum(p * p)))


# ----------------------------------------------------------------------------- grouping


def _explainer(sm: np.ndarray, b: int, tol: float) -> Any:
    """S/N of candidate segments once the pixels within ``tol`` of a top segment are removed.

    ``sm`` is the PSF-smoothed binned S/N image searched; segments are in native pixels. The
    line sum is sampled at one point per binned pixel; its noise is calibrated by the
    candidate's own S/N (``noise = full sum / snr``) and scaled by the square root of the
    fraction of samples kept.
    """
    nyb, nxb = sm.shape

    def rem(
        x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, snr: np.ndarray,
        cx: float, cy: float, ux: float, uy: float, h: float,
    ) -> np.ndarray:
        L = np.hypot(x1 - x0, y1 - y0)
        n = int(np.clip(np.ceil(L.max() / b) + 1, 2, 256))
        f = np.linspace(0.0, 1.0, n)[None, :]
        px = x0[:, None] + f * (x1 - x0)[:, None]
        py = y0[:, None] + f * (y1 - y0)[:, None]
        # Keep one sample per binned pixel of each segment (shorter ones repeat samples).
        ix = np.clip(np.round((px - (b - 1) / 2.0) / b).astype(np.int64), 0, nxb - 1)
        iy = np.clip(np.round((py - (b - 1) / 2.0) / b).astype(np.int64), 0, nyb - 1)
        vals = sm[iy, ix].astype(float)
        t = (px - cx) * ux + (py - cy) * uy
        v = -(px - cx) * uy + (py - cy) * ux
        d = np.hypot(t - np.clip(t, -h, h), v)
        keep = d > tol
        full = vals.sum(axis=1)
        part = np.where(keep, vals, 0.0).sum(axis=1)
        frac = keep.mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(
                (full > 0) & (frac > 0), part / full * snr / np.sqrt(np.maximum(frac, 1e-9)), 0.0
            )
        return out

    return rem


def _segment_distance(
    t0: np.ndarray, v0: np.ndarray, t1: np.ndarray, v1: np.ndarray, h: float
) -> np.ndarray:
    """Shortest distance between segments (t0, v0)-(t1, v1) and the segment |t| <= h, v = 0."""
    dt, dv = t1 - t0, v1 - v0
    # Crossing of v = 0 inside both segments.
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(np.abs(dv) > 1e-12, -v0 / dv, -1.0)
    tc = t0 + lam * dt
    cross = (lam >= 0) & (lam <= 1) & (np.abs(tc) <= h)
    # End points of the candidates to the top segment.
    d0 = np.hypot(t0 - np.clip(t0, -h, h), v0)
    d1 = np.hypot(t1 - np.clip(t1, -h, h), v1)
    # End points of the top segment to the candidates.
    l2 = dt * dt + dv * dv
    out = np.minimum(d0, d1)
    for te in (-h, h):
        with np.errstate(divide="ignore", invalid="ignore"):
            mu = np.where(l2 > 0, ((te - t0) * dt + (0.0 - v0) * dv) / np.where(l2 > 0, l2, 1.0),
                          0.0)
        mu = np.clip(mu, 0.0, 1.0)
        out = np.minimum(out, np.hypot(t0 + mu * dt - te, v0 + mu * dv))
    return np.where(cross, 0.0, out)


def _group(
    c: dict[str, np.ndarray],
    tol: float,
    gap: float,
    max_groups: int,
    threshold: float,
    explain: Any,
    refine: Any,
    angle_px: float = 1.0,
) -> list[tuple[int, np.ndarray, tuple[float, float, float, float], float, float, float]]:
    """Greedy grouping of candidate segments, brightest first (non-maximum suppression).

    For the brightest remaining candidate (the "top"), ``refine(cx, cy, ux, uy, tlo, thi)``
    (the 1-D profile search of :func:`_refine`) first finds where along its line the signal
    actually lies: the "core" segment (for segments up to ``32 angle_px`` long the line is
    also rotated by up to +-2 steps of ``angle_px`` pixels over its length, keeping the best
    profile S/N, since the slopes of short segments are coarse). Then a candidate joins the
    group when

    * over the part of it alongside the core (extended by ``gap``) it stays within ``tol`` of
      the core's line (fragments, other lengths and slopes of the same trail); collinear
      members extend the group; or
    * it crosses the core and ``explain(...)`` (:func:`_explainer`) says that its S/N without
      the pixels near the core falls below ``threshold`` (side lobes of a bright object).

    Returns
    -------
    list of (top, members, (cx, cy, ux, uy), t_lo, t_hi, h)
        Brightest group first; the line through ``(cx, cy)`` (the core's centre) along
        ``(ux, uy)``, the group extent ``[t_lo, t_hi]`` along it and the core half-length.
    """
    order = np.argsort(-c["snr"], kind="stable")
    idx = order.copy()  # original indices of the candidates still unassigned
    x0, y0, x1, y1, snr = (c[k][order] for k in ("x0", "y0", "x1", "y1", "snr"))
    groups: list[tuple[int, np.ndarray, tuple[float, float, float, float], float, float, float]]
    groups = []
    while len(idx) and len(groups) < max_groups:
        cx, cy = 0.5 * (x0[0] + x1[0]), 0.5 * (y0[0] + y1[0])
        L = math.hypot(x1[0] - x0[0], y1[0] - y0[0])
        ux, uy = ((x1[0] - x0[0]) / L, (y1[0] - y0[0]) / L) if L > 0 else (1.0, 0.0)
        # The segment's slope is quantised (to ~1 px over its length): try small rotations.
        core = None
        step = math.atan2(angle_px, max(L, 1.0))
        th0 = math.atan2(uy, ux)
        for k in (0, -1, 1, -2, 2) if L <= 32.0 * angle_px else (0,):
            th = th0 + k * step
            r = refine(cx, cy, math.cos(th), math.sin(th), -0.5 * L - gap, 0.5 * L + gap)
            if r is not None and (core is None or r[2] > core[2]):
                core, ux, uy = r, math.cos(th), math.sin(th)
        if core is not None:
            ta, tb, _ = core
            cx, cy = cx + 0.5 * (ta + tb) * ux, cy + 0.5 * (ta + tb) * uy
            h = max(0.5 * (tb - ta), 0.5)
        else:
            h = 0.5 * L
        t0 = (x0 - cx) * ux + (y0 - cy) * uy
        t1 = (x1 - cx) * ux + (y1 - cy) * uy
        v0 = -(x0 - cx) * uy + (y0 - cy) * ux
        v1 = -(x1 - cx) * uy + (y1 - cy) * ux
        dt = t1 - t0
        lo_h, hi_h = -h - gap, h + gap
        # Parameter interval [la, lb] of each candidate alongside the core.
        with np.errstate(divide="ignore", invalid="ignore"):
            la = np.where(dt > 0, (lo_h - t0) / dt, (hi_h - t0) / dt)
            lb = np.where(dt > 0, (hi_h - t0) / dt, (lo_h - t0) / dt)
        flat = np.abs(dt) <= 1e-9
        inside_const = flat & (t0 >= lo_h) & (t0 <= hi_h)
        la = np.where(flat, 0.0, np.clip(la, 0.0, 1.0))
        lb = np.where(flat, 1.0, np.clip(lb, 0.0, 1.0))
        overlap = np.where(flat, inside_const, lb > la)
        va = v0 + la * (v1 - v0)
        vb = v0 + lb * (v1 - v0)
        near = overlap & (np.abs(va) <= tol) & (np.abs(vb) <= tol)
        # Candidates crossing the core are its side lobes when, without the pixels near the
        # core, they would no longer pass the threshold ("explaining away").
        cross = ~near & (_segment_distance(t0, v0, t1, v1, h) <= tol)
        if cross.any():
            ci = np.nonzero(cross)[0]
            rem = explain(x0[ci], y0[ci], x1[ci], y1[ci], snr[ci], cx, cy, ux, uy, h)
            cross[ci] = rem < threshold
        near |= cross
        near[0] = True
        # Collinear members extend the group only where they carry signal beyond the core.
        coll = near & (np.abs(v0) <= tol) & (np.abs(v1) <= tol)
        coll &= (np.minimum(t0, t1) < -h - gap) | (np.maximum(t0, t1) > h + gap)
        if coll.any():
            ci = np.nonzero(coll)[0]
            rem = explain(x0[ci], y0[ci], x1[ci], y1[ci], snr[ci], cx, cy, ux, uy, h)
            coll[ci] = rem >= threshold
        lo_all = np.where(coll, np.minimum(t0, t1), np.inf)
        hi_all = np.where(coll, np.maximum(t0, t1), -np.inf)
        tlo = min(float(lo_all.min()), -h)
        thi = max(float(hi_all.max()), h)
        groups.append((int(idx[0]), idx[near], (cx, cy, ux, uy), tlo, thi, h))
        keep = ~near
        idx = idx[keep]
        x0, y0, x1, y1, snr = x0[keep], y0[keep], x1[keep], y1[keep], snr[keep]
    return groups


def _interval_scores(P: np.ndarray, Q: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    num = P[ib][None, :] - P[ia][:, None]
    den = Q[ib][None, :] - Q[ia][:, None]
    ok = (ib[None, :] > ia[:, None]) & (den > 1e-12)
    score = np.full(num.shape, -np.inf)
    score[ok] = num[ok] / np.sqrt(den[ok])
    return score


def _best_interval(
    p: np.ndarray, q: np.ndarray, coarse: int = 96, cover: tuple[int, int] | None = None
) -> tuple[int, int, float]:
    """Bins ``[ia, ib)`` maximising ``sum(p) / sqrt(sum(q))`` (coarse grid, then local refine).

    With ``cover = (ca, cb)`` the interval must overlap bins ``[ca, cb)``.
    """
    P = np.concatenate([[0.0], np.cumsum(p)])
    Q = np.concatenate([[0.0], np.cumsum(q)])
    n = len(p)
    f = max(1, math.ceil(n / coarse))
    grid = np.unique(np.append(np.arange(0, n + 1, f), n))
    sc = _interval_scores(P, Q, grid, grid)
    if cover is not None:
        ca, cb = cover
        sc[(grid[:, None] >= cb) | (grid[None, :] <= ca)] = -np.inf
    i, j = np.unravel_index(int(np.argmax(sc)), sc.shape)
    ia, ib = int(grid[i]), int(grid[j])
    if f > 1:
        ra = np.arange(max(0, ia - f), min(n, ia + f) + 1)
        rb = np.arange(max(0, ib - f), min(n, ib + f) + 1)
        sc = _interval_scores(P, Q, ra, rb)
        i, j = np.unravel_index(int(np.argmax(sc)), sc.shape)
        ia, ib = int(ra[i]), int(rb[j])
    num, den = P[ib] - P[ia], Q[ib] - Q[ia]
    best = num / math.sqrt(den) if den > 1e-12 and ib > ia else -math.inf
    return ia, ib, float(best)


def _refine(
    z: np.ndarray,
    cx: float,
    cy: float,
    ux: float,
    uy: float,
    tlo: float,
    thi: float,
    sigma_psf: float,
    cover: tuple[float, float] | None = None,
) -> tuple[float, float, float] | None:
    """Best interval ``[ta, tb]`` along the line (1-D matched filter) and its S/N.

    With ``cover = (ca, cb)`` (positions along the line) the interval must overlap it.
    """
    ny, nx = z.shape
    band = 3.0 * sigma_psf + 1.5
    ex = np.array([cx + tlo * ux, cx + thi * ux])
    ey = np.array([cy + tlo * uy, cy + thi * uy])
    xa = max(0, math.floor(ex.min() - band))
    xb = min(nx, math.ceil(ex.max() + band) + 1)
    ya = max(0, math.floor(ey.min() - band))
    yb = min(ny, math.ceil(ey.max() + band) + 1)
    if xa >= xb or ya >= yb:
        return None
    zz = z[ya:yb, xa:xb]
    yy, xx = np.mgrid[ya:yb, xa:xb]
    dx, dy = xx - cx, yy - cy
    t = dx * ux + dy * uy
    v = -dx * uy + dy * ux
    sel = (np.abs(v) <= band) & (t >= tlo) & (t <= thi)
    if not sel.any():
        return None
    sw = math.hypot(sigma_psf, 0.7)
    wt = np.exp(-0.5 * (v[sel] / sw) ** 2)
    good = zz[sel] != 0.0
    k = np.floor(t[sel] - tlo).astype(np.int64)
    nb = int(k.max()) + 1
    p = np.bincount(k, weights=wt * zz[sel], minlength=nb)
    q = np.bincount(k, weights=wt * wt * good, minlength=nb)
    cov = None
    if cover is not None:
        cov = (math.floor(cover[0] - tlo), math.ceil(cover[1] - tlo) + 1)
    ia, ib, best = _best_interval(p, q, cover=cov)
    if not np.isfinite(best):
        return None
    # Bin edges -> positions of the first/last sample centres.
    ta = tlo + ia + 0.5
    tb = tlo + ib - 0.5
    # The boxcar captures the PSF wings; pull the ends in by ~half the PSF core.
    shrink = min(0.5 * sigma_psf, 0.25 * max(tb - ta, 0.0))
    return ta + shrink, tb - shrink, best


# ------------------------------------------------------------------------------ main entry


def detect_streaks(
    diff: np.ndarray,
    sigma: np.ndarray | float,
    fwhm_px: float,
    mask: np.ndarray | None = None,
    config: StreakConfig = DEFAULT_CONFIG,
) -> pd.DataFrame:
    """Find streak candidates in a difference image.

    Parameters
    ----------
    diff : ndarray (ny, nx)
        Difference image (any flux unit).
    sigma : ndarray (ny, nx) or float
        1-sigma noise of ``diff`` per pixel (same unit).
    fwhm_px : float
        FWHM of the difference-image PSF (pixels); the PSF is modelled as a Gaussian.
    mask : ndarray (ny, nx), optional
        Nonzero pixels are ignored (treated as zero signal).
    config : StreakConfig
        Settings.

    Returns
    -------
    pandas.DataFrame
        One row per candidate, brightest first, with :data:`DETECT_COLUMNS`: initial end points
        ``x0, y0, x1, y1`` (px), ``xmid, ymid``, ``length`` (px), ``angle`` (deg, see module
        docstring), ``snr_det`` (best filter S/N), ``snr_prof`` (S/N of the refined 1-D
        profile), ``n_seg`` (bank responses merged), ``seg_length`` (px, length of the best
        kernel) and ``pt_ratio`` (line/point response relative to a point source; > 1 is
        streak-like). Pass rows to :func:`zsds.streaks.fit.fit_streak`.
    """
    if fwhm_px <= 0:
        raise ValueError("fwhm_px must be positive")
    z = normalised_image(diff, sigma, mask)
    if config.sharp_ratio > 0 and fwhm_px >= 1.5:
        z[sharp_pixels(z, config.sharp_ratio, config.sharp_snr)] = 0.0
        z[sharp_lines(z, min_snr=config.sharp_snr)] = 0.0
    b = config.binning
    zb = bin_image(z, b)
    sig_b = binned_psf_sigma(fwhm_px, b)
    sigma_psf = fwhm_px * FWHM_TO_SIGMA
    if config.method == "frt":
        wmin = max(2.0, config.min_segment_fwhm * fwhm_px / b)
        kmin = max(1, math.ceil(math.log2(wmin)))
        longest = max(zb.shape)
        kmax = max(kmin, math.ceil(math.log2(max(2.0, min(config.max_length / b, longest)))))
        cand, smb = _frt_candidates(zb, sig_b, kmin, kmax, config)
    else:
        cand, smb = _bank_candidates(zb, sig_b, config)
    if config.radon:

        rc = radon_candidates(z, fwhm_px, config)
        if len(rc["snr"]):
            # Radon lines are in native pixels; express them in binned pixels like the rest.
            conv = {k: (rc[k] - (b - 1) / 2.0) / b for k in ("x0", "y0", "x1", "y1")}
            rc = {**rc, **conv}
            cand = {k: np.concatenate([cand[k], rc[k]]) for k in cand}
    # Binned -> native pixel coordinates.
    for key in ("x0", "y0", "x1", "y1"):
        cand[key] = cand[key] * b + (b - 1) / 2.0
    cand["w"] = cand["w"] * b
    tol = max(config.merge_perp_fwhm * fwhm_px, 2.0 * b)
    gap = max(fwhm_px, 2.0 * b)
    margin = 2.0 * fwhm_px + b

    def refine(cx: float, cy: float, ux: float, uy: float, lo: float, hi: float,
               cover: tuple[float, float] | None = None) -> Any:
        return _refine(z, cx, cy, ux, uy, lo - margin, hi + margin, sigma_psf, cover)

    groups = _group(cand, tol, gap, config.max_streaks, config.threshold,
                    _explainer(smb, b, tol), refine, angle_px=float(b))
    segs: list[list[float]] = []
    for i, members, (cx, cy, ux, uy), tlo, thi, h in groups:
        ref = refine(cx, cy, ux, uy, tlo, thi, (-h, h))
        if ref is None:
            continue
        segs.append(_segment_row(cx, cy, ux, uy, ref, float(cand["snr"][i]),
                                 float(len(members)), float(cand["w"][i]),
                                 float(cand["ratio"][i])))
    segs = _merge_refined(z, segs, tol, config.merge_angle_deg, max(gap, 2.0 * fwhm_px),
                          margin, sigma_psf)
    min_len = config.min_length_fwhm * fwhm_px
    rows = [tuple(r) for r in segs if math.hypot(r[2] - r[0], r[3] - r[1]) >= min_len]
    return _detections_frame(rows)


def _segment_row(cx: float, cy: float, ux: float, uy: float,
                 refined: tuple[float, float, float], snr_det: float, n_seg: float,
                 seg_length: float, pt_ratio: float) -> list[float]:
    """One detection row (the order :func:`_detections_frame` reads) of a line through
    (``cx``, ``cy``) along the unit vector (``ux``, ``uy``), refined to ``(ta, tb, snr_prof)``:
    its ends at ``ta`` and ``tb`` along the line and its profile S/N."""
    ta, tb, snr_prof = refined
    return [cx + ta * ux, cy + ta * uy, cx + tb * ux, cy + tb * uy, snr_det, snr_prof, n_seg,
            seg_length, pt_ratio]


def _merge_refined(
    z: np.ndarray,
    segs: list[list[float]],
    tol: float,
    angle_tol: float,
    gap: float,
    margin: float,
    sigma_psf: float,
) -> list[list[float]]:
    """Merge refined segments that are collinear and overlap or nearly touch; re-refine."""
    for _ in range(4):
        if len(segs) < 2:
            return segs
        a = np.array(segs)
        order = np.argsort(-a[:, 5])
        a = a[order]
        used = np.zeros(len(a), bool)
        out: list[list[float]] = []
        merged_any = False
        for i in range(len(a)):
            if used[i]:
                continue
            x0, y0, x1, y1 = a[i, :4]
            L = math.hypot(x1 - x0, y1 - y0)
            cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
            ux, uy = ((x1 - x0) / L, (y1 - y0) / L) if L > 0 else (1.0, 0.0)
            t0 = (a[:, 0] - cx) * ux + (a[:, 1] - cy) * uy
            t1 = (a[:, 2] - cx) * ux + (a[:, 3] - cy) * uy
            v0 = -(a[:, 0] - cx) * uy + (a[:, 1] - cy) * ux
            v1 = -(a[:, 2] - cx) * uy + (a[:, 3] - cy) * ux
            ang = np.degrees(np.arctan2(a[:, 3] - a[:, 1], a[:, 2] - a[:, 0]))
            ang_i = math.degrees(math.atan2(y1 - y0, x1 - x0))
            dang = np.abs((ang - ang_i + 90.0) % 180.0 - 90.0)
            lj = np.hypot(a[:, 2] - a[:, 0], a[:, 3] - a[:, 1])
            short = lj <= 2.0 * tol
            lo, hi = np.minimum(t0, t1), np.maximum(t0, t1)
            along = (hi >= -0.5 * L - gap) & (lo <= 0.5 * L + gap)
            coll = (np.abs(v0) <= tol) & (np.abs(v1) <= tol) & ((dang <= angle_tol) | short)
            m = coll & along & ~used
            # Segments lying within tol of this (brighter) segment are duplicates.
            d0 = np.hypot(np.clip(t0, -0.5 * L, 0.5 * L) - t0, v0)
            d1 = np.hypot(np.clip(t1, -0.5 * L, 0.5 * L) - t1, v1)
            inside = (d0 <= tol) & (d1 <= tol) & ~used
            m[i] = True
            used |= m | inside
            if m.sum() == 1:
                out.append(list(a[i]))
                continue
            merged_any = True
            tlo, thi = float(lo[m].min()), float(hi[m].max())
            ref = _refine(z, cx, cy, ux, uy, tlo - margin, thi + margin, sigma_psf)
            if ref is None:
                out.append(list(a[i]))
                continue
            out.append(_segment_row(cx, cy, ux, uy, ref, float(a[m, 4].max()),
                                    float(a[m, 6].sum()), float(a[i, 7]), float(a[i, 8])))
        segs = out
        if not merged_any:
            break
    return segs


def _detections_frame(rows: list[tuple[float, ...]]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in DETECT_COLUMNS}).astype(
            {"n_seg": np.int64}
        )
    a = np.array(rows, dtype=float)
    x0, y0, x1, y1, ang = canonical_segments(a[:, 0], a[:, 1], a[:, 2], a[:, 3])
    df = pd.DataFrame(
        {
            "x0": x0,
            "y0": y0,
            "x1": x1,
            "y1": y1,
            "xmid": 0.5 * (x0 + x1),
            "ymid": 0.5 * (y0 + y1),
            "length": np.hypot(x1 - x0, y1 - y0),
            "angle": ang,
            "snr_det": a[:, 4],
            "snr_prof": a[:, 5],
            "n_seg": a[:, 6].astype(np.int64),
            "seg_length": a[:, 7],
            "pt_ratio": a[:, 8],
        }
    )
    return df.sort_values("snr_det", ascending=False, ignore_index=True)
