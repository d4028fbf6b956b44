"""Synthetic difference images with streaks and streak-like artefacts (pure, seeded).

:func:`simulate_difference` draws a noise image and adds

* **streaks** (the truth): trailed Gaussian PSFs rendered the way the camera simulator renders
  trails (:func:`zsds.sim.render.trail_points`: PSF points every 0.5 px sharing the flux),
  each point pixel-integrated; lengths log-uniform, angles uniform, and an integrated S/N
  drawn log-uniformly, where the integrated S/N is the ideal matched-filter S/N
  ``flux * trail_norm(L, s) / sigma`` (the S/N of a perfect trailed-PSF fit with known shape);
* **cosmic rays**: sharp 1-3 pixel hits and short sharp muon tracks (not PSF-convolved);
* **bright-star residuals**: dipoles (a PSF minus a slightly shifted copy) and rings (a PSF
  minus a broader PSF of the same flux);
* **variable-star residuals**: positive or negative point sources;
* **bad columns**: a hot column segment, masked or not;
* **masked blobs**: saturated cores, masked, filled with garbage.

All generators take a :class:`numpy.random.Generator`; nothing is global.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import ndtr

from zsds.sim.render import trail_points
from zsds.streaks.detect import FWHM_TO_SIGMA
from zsds.streaks.fit import trail_norm

__all__ = [
    "ARTEFACT_KINDS",
    "MASK_BADCOL",
    "MASK_SATURATED",
    "SimConfig",
    "SimulatedDiff",
    "random_streaks",
    "render_points",
    "render_trails",
    "simulate_difference",
    "streak_flux_for_snr",
]

MASK_BADCOL = 1
"""Mask bit of a flagged bad column."""
MASK_SATURATED = 2
"""Mask bit of a saturated (garbage-filled) blob."""

ARTEFACT_KINDS: tuple[str, ...] = ("cosmic", "track", "dipole", "ring", "variable", "badcol")
"""Values of the ``kind`` column of :attr:`SimulatedDiff.artefacts`."""


@dataclass(frozen=True)
class SimConfig:
    """What :func:`simulate_difference` puts in an image (counts are per 512 x 512 pixels).

    Every ``*_range`` is drawn log-uniform. Counts are Poisson means when ``poisson``, exact
    counts otherwise.
    """

    shape: tuple[int, int] = (512, 512)  #: (ny, nx) of the image (px)
    sigma: float = 1.0  #: noise per pixel (the map varies by ``sigma_gradient``)
    sigma_gradient: float = 0.2  #: fractional linear change of the noise across the image
    fwhm: float = 2.5  #: PSF FWHM (px)
    n_streaks: float = 4.0  #: streaks per 512^2 (Poisson mean, or exact count)
    snr_range: tuple[float, float] = (5.0, 100.0)  #: log-uniform range of a streak's integrated S/N
    length_range: tuple[float, float] = (8.0, 300.0)  #: log-uniform range of a streak's length (px)
    edge_margin: float = 5.0  #: least distance of streak ends from the image edge (px)
    min_gap: float = 15.0  #: least distance between streaks (px; 0: touching, crossing)
    n_cosmics: float = 20.0  #: cosmic-ray hits per 512^2 (Poisson mean)
    n_tracks: float = 3.0  #: short sharp muon tracks per 512^2 (Poisson mean)
    n_dipoles: float = 2.0  #: bright-star dipole residuals per 512^2 (Poisson mean)
    n_rings: float = 1.0  #: bright-star ring residuals per 512^2 (Poisson mean)
    n_variables: float = 4.0  #: variable-star residuals per 512^2 (Poisson mean)
    n_badcols: float = 0.5  #: bad columns per 512^2 (Poisson mean)
    n_saturated: float = 0.5  #: masked saturated cores per 512^2 (Poisson mean)
    cosmic_peak_range: tuple[float, float] = (5.0, 300.0)  #: peak of cosmic-ray pixels (sigma)
    star_snr_range: tuple[float, float] = (100.0, 3000.0)  #: S/N of stars behind dipoles and rings
    variable_snr_range: tuple[float, float] = (5.0, 300.0)  #: |S/N| of variable-star residuals
    badcol_masked: float = 0.8  #: probability that a bad column is flagged in the mask
    poisson: bool = True  #: draw the counts from Poisson distributions


@dataclass
class SimulatedDiff:
    """A synthetic difference image and its truth.

    ``truth`` has one row per streak: ``x0, y0, x1, y1`` (px), ``length`` (px), ``angle``
    (deg, [0, 180)), ``flux`` (summed counts), ``snr_integrated``. ``artefacts`` one per
    non-streak feature: ``kind`` (one of :data:`ARTEFACT_KINDS`), ``x0, y0, x1, y1`` (extent;
    a point has ``x0 == x1``), ``amp`` (peak or S/N, see the module docstring), ``masked``.
    """

    image: np.ndarray  #: (ny, nx) float32 difference image
    sigma: np.ndarray  #: (ny, nx) float32 1-sigma noise per pixel
    mask: np.ndarray  #: (ny, nx) uint8 MASK_BADCOL / MASK_SATURATED bits
    truth: pd.DataFrame  #: streaks: x0, y0, x1, y1, length (px), angle (deg), flux, S/N
    artefacts: pd.DataFrame  #: non-streak features: kind, extent, amp, masked
    fwhm: float  #: PSF FWHM (px)
    meta: dict[str, float] = field(default_factory=dict)


def _pix_integrated(centres: np.ndarray, s: float, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer stamp origins and per-pixel integrals of a 1-D Gaussian, (N, 2 half + 1)."""
    ic = np.round(centres).astype(np.int64)
    off = np.arange(-half, half + 1)
    edges_lo = (ic[:, None] + off[None, :] - 0.5 - centres[:, None]) / s
    edges_hi = edges_lo + 1.0 / s
    return ic, ndtr(edges_hi) - ndtr(edges_lo)


def render_points(
    shape: tuple[int, int], x: np.ndarray, y: np.ndarray, flux: np.ndarray, fwhm: float
) -> np.ndarray:
    """Pixel-integrated circular Gaussian point sources (float64 image)."""
    ny, nx = shape
    x, y, flux = (np.atleast_1d(np.asarray(a, float)) for a in (x, y, flux))
    out = np.zeros(ny * nx)
    if len(x) == 0:
        return out.reshape(shape)
    s = fwhm * FWHM_TO_SIGMA
    half = math.ceil(4.5 * s) + 1
    ix, gx = _pix_integrated(x, s, half)
    iy, gy = _pix_integrated(y, s, half)
    off = np.arange(-half, half + 1)
    xx = ix[:, None, None] + off[None, None, :]
    yy = iy[:, None, None] + off[None, :, None]
    val = flux[:, None, None] * gy[:, :, None] * gx[:, None, :]
    ok = (xx >= 0) & (xx < nx) & (yy >= 0) & (yy < ny)
    yyb, xxb = np.broadcast_arrays(yy, xx)
    out += np.bincount((yyb * nx + xxb)[ok], weights=val[ok], minlength=nx * ny)
    return out.reshape(shape)


def render_trails(
    shape: tuple[int, int],
    x0: np.ndarray,
    y0: np.ndarray,
    x1: np.ndarray,
    y1: np.ndarray,
    flux: np.ndarray,
    fwhm: float,
    step: float = 0.5,
) -> np.ndarray:
    """Trails as PSF points every ``step`` px from ``(x0, y0)`` to ``(x1, y1)``, inclusive.

    The same points as the camera simulator (:func:`zsds.sim.render.trail_points`).
    """
    x0, y0, x1, y1, flux = (np.atleast_1d(np.asarray(a, float)) for a in (x0, y0, x1, y1, flux))
    if len(x0) == 0:
        return np.zeros(shape)
    px, py, pf = trail_points(x0, y0, x1, y1, flux, step=step)
    return render_points(shape, px, py, pf, fwhm)


def streak_flux_for_snr(
    snr: np.ndarray | float, length: np.ndarray | float, fwhm: float, sigma: np.ndarray | float
) -> np.ndarray:
    """Flux giving an ideal matched-filter S/N ``snr`` in white noise ``sigma`` per pixel."""
    s = math.sqrt((fwhm * FWHM_TO_SIGMA) ** 2 + 1.0 / 12.0)
    return np.asarray(snr, float) * np.asarray(sigma, float) / trail_norm(length, s)


def _segment_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Shortest distance between segments ``a`` and ``b`` (each ``[x0, y0, x1, y1]``)."""

    def pt_seg(px: float, py: float, s: np.ndarray) -> float:
        dx, dy = s[2] - s[0], s[3] - s[1]
        l2 = dx * dx + dy * dy
        t = 0.0 if l2 == 0 else min(1.0, max(0.0, ((px - s[0]) * dx + (py - s[1]) * dy) / l2))
        return math.hypot(px - s[0] - t * dx, py - s[1] - t * dy)

    def cross(p: np.ndarray, q: np.ndarray) -> bool:
        def orient(ax: float, ay: float, bx: float, by: float, cx: float, cy: float) -> float:
            return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)

        d1 = orient(*q[:2], *q[2:], *p[:2])
        d2 = orient(*q[:2], *q[2:], *p[2:])
        d3 = orient(*p[:2], *p[2:], *q[:2])
        d4 = orient(*p[:2], *p[2:], *q[2:])
        return (d1 * d2 < 0) and (d3 * d4 < 0)

    if cross(a, b):
        return 0.0
    return min(pt_seg(a[0], a[1], b), pt_seg(a[2], a[3], b), pt_seg(b[0], b[1], a),
               pt_seg(b[2], b[3], a))


def random_streaks(
    rng: np.random.Generator,
    n: int,
    shape: tuple[int, int],
    length_range: tuple[float, float],
    margin: float,
    min_gap: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random segments fully inside the image (log-uniform length, uniform angle and centre).

    With ``min_gap > 0`` a segment closer than that to an earlier one is redrawn (up to 50
    times, then kept), so that injected streaks do not touch or cross.
    """
    if min_gap > 0 and n > 1:
        out: list[np.ndarray] = []
        for _ in range(n):
            for _try in range(50):
                seg = np.array(random_streaks(rng, 1, shape, length_range, margin)).ravel()
                if all(_segment_gap(seg, o) >= min_gap for o in out):
                    break
            out.append(seg)
        a = np.array(out)
        return a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    ny, nx = shape
    Lmax_fit = math.hypot(nx, ny) * 0.9
    lo, hi = length_range
    L = np.exp(rng.uniform(math.log(lo), math.log(min(hi, Lmax_fit)), n))
    th = rng.uniform(0.0, math.pi, n)
    hx = 0.5 * L * np.cos(th)
    hy = 0.5 * L * np.sin(th)
    # Shrink where the segment cannot fit at that angle.
    fx = (nx - 1 - 2 * margin) / np.maximum(2 * np.abs(hx), 1e-9)
    fy = (ny - 1 - 2 * margin) / np.maximum(2 * np.abs(hy), 1e-9)
    f = np.minimum(1.0, np.minimum(fx, fy)) * 0.999
    hx, hy = hx * f, hy * f
    cx = rng.uniform(margin + np.abs(hx), nx - 1 - margin - np.abs(hx))
    cy = rng.uniform(margin + np.abs(hy), ny - 1 - margin - np.abs(hy))
    return cx - hx, cy - hy, cx + hx, cy + hy


def _count(rng: np.random.Generator, mean_per_512: float, area: float, poisson: bool) -> int:
    m = mean_per_512 * area / 512.0**2
    return int(rng.poisson(m)) if poisson else round(m)


def _loguniform(rng: np.random.Generator, lo_hi: tuple[float, float], n: int) -> np.ndarray:
    lo, hi = lo_hi
    return np.exp(rng.uniform(math.log(lo), math.log(hi), n))


def simulate_difference(
    rng: np.random.Generator,
    config: SimConfig = SimConfig(),
    streaks: pd.DataFrame | None = None,
) -> SimulatedDiff:
    """Draw one synthetic difference image.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (the only one).
    config : SimConfig
        Content and noise.
    streaks : pandas.DataFrame, optional
        Explicit streaks (``x0, y0, x1, y1`` and either ``flux`` or ``snr``) instead of random
        ones.

    Returns
    -------
    SimulatedDiff
    """
    ny, nx = config.shape
    area = float(nx * ny)
    fwhm = config.fwhm
    s_psf = fwhm * FWHM_TO_SIGMA
    yy = np.linspace(-0.5, 0.5, ny)[:, None]
    xx = np.linspace(-0.5, 0.5, nx)[None, :]
    sig = config.sigma * (1.0 + config.sigma_gradient * (0.6 * xx + 0.4 * yy))
    sig = np.broadcast_to(sig, (ny, nx)).astype(np.float32)
    signal = np.zeros((ny, nx))
    mask = np.zeros((ny, nx), np.uint8)
    art: list[dict[str, object]] = []

    # --- streaks (truth)
    if streaks is None:
        n = _count(rng, config.n_streaks, area, config.poisson)
        x0, y0, x1, y1 = random_streaks(rng, n, (ny, nx), config.length_range, config.edge_margin,
                                        config.min_gap)
        snr = _loguniform(rng, config.snr_range, n)
        flux = None
    else:
        x0, y0, x1, y1 = (streaks[k].to_numpy(float) for k in ("x0", "y0", "x1", "y1"))
        flux = streaks["flux"].to_numpy(float) if "flux" in streaks else None
        snr = streaks["snr"].to_numpy(float) if flux is None else None
    L = np.hypot(x1 - x0, y1 - y0)
    xm = np.clip(np.round(0.5 * (x0 + x1)).astype(int), 0, nx - 1)
    ym = np.clip(np.round(0.5 * (y0 + y1)).astype(int), 0, ny - 1)
    sig_mid = sig[ym, xm].astype(float)
    if flux is None:
        flux = streak_flux_for_snr(snr, L, fwhm, sig_mid)
    snr_int = flux * trail_norm(L, math.sqrt(s_psf**2 + 1.0 / 12.0)) / sig_mid
    signal += render_trails((ny, nx), x0, y0, x1, y1, flux, fwhm)

    # --- variable-star residuals (+/- point sources)
    n = _count(rng, config.n_variables, area, config.poisson)
    if n:
        vx, vy = rng.uniform(3, nx - 4, n), rng.uniform(3, ny - 4, n)
        vs = _loguniform(rng, config.variable_snr_range, n) * rng.choice([-1.0, 1.0], n)
        pnorm = float(trail_norm(0.0, math.sqrt(s_psf**2 + 1 / 12)))
        vf = vs * config.sigma / pnorm
        signal += render_points((ny, nx), vx, vy, vf, fwhm)
        art += [
            {"kind": "variable", "x0": a, "y0": b, "x1": a, "y1": b, "amp": c}
            for a, b, c in zip(vx, vy, vs, strict=True)
        ]

    # --- bright-star dipoles and rings
    pnorm = float(trail_norm(0.0, math.sqrt(s_psf**2 + 1 / 12)))
    n = _count(rng, config.n_dipoles, area, config.poisson)
    if n:
        dx, dy = rng.uniform(8, nx - 9, n), rng.uniform(8, ny - 9, n)
        f = _loguniform(rng, config.star_snr_range, n) * config.sigma / pnorm
        shift = rng.uniform(0.05, 0.4, n)
        th = rng.uniform(0, 2 * math.pi, n)
        sx, sy = 0.5 * shift * np.cos(th), 0.5 * shift * np.sin(th)
        signal += render_points((ny, nx), dx + sx, dy + sy, f, fwhm)
        signal -= render_points((ny, nx), dx - sx, dy - sy, f, fwhm)
        art += [
            {"kind": "dipole", "x0": a, "y0": b, "x1": a, "y1": b, "amp": c}
            for a, b, c in zip(dx, dy, f * pnorm / config.sigma, strict=True)
        ]
    n = _count(rng, config.n_rings, area, config.poisson)
    if n:
        rx, ry = rng.uniform(12, nx - 13, n), rng.uniform(12, ny - 13, n)
        f = _loguniform(rng, config.star_snr_range, n) * config.sigma / pnorm
        wide = rng.uniform(1.05, 1.3, n)
        sign = rng.choice([-1.0, 1.0], n)
        for a, b, c, w, sg in zip(rx, ry, f, wide, sign, strict=True):
            signal += sg * (
                render_points((ny, nx), [a], [b], [c], fwhm)
                - render_points((ny, nx), [a], [b], [c], fwhm * w)
            )
        art += [
            {"kind": "ring", "x0": a, "y0": b, "x1": a, "y1": b, "amp": c}
            for a, b, c in zip(rx, ry, f * pnorm / config.sigma, strict=True)
        ]

    noise = rng.standard_normal((ny, nx)) * sig
    image = signal + noise

    # --- cosmic rays: sharp 1-3 pixel hits
    n = _count(rng, config.n_cosmics, area, config.poisson)
    if n:
        cx, cy = rng.integers(1, nx - 2, n), rng.integers(1, ny - 2, n)
        peak = _loguniform(rng, config.cosmic_peak_range, n)
        npx = rng.integers(1, 4, n)
        for k in range(3):
            use = npx > k
            ox = np.where(k == 1, rng.integers(-1, 2, n), 0) if k else np.zeros(n, int)
            oy = np.where(k == 2, rng.integers(-1, 2, n), 0) if k else np.zeros(n, int)
            frac = 1.0 if k == 0 else rng.uniform(0.2, 0.8, n)
            np.add.at(image, (cy[use] + oy[use], cx[use] + ox[use]),
                      (peak * frac * sig[cy, cx])[use])
        art += [
            {"kind": "cosmic", "x0": float(a), "y0": float(b), "x1": float(a), "y1": float(b),
             "amp": float(c)}
            for a, b, c in zip(cx, cy, peak, strict=True)
        ]
    # --- muon tracks: short sharp lines (deposited on the nearest pixel, as the simulator)
    n = _count(rng, config.n_tracks, area, config.poisson)
    if n:
        tx0, ty0, tx1, ty1 = random_streaks(rng, n, (ny, nx), (3.0, 25.0), 2.0)
        per_px = _loguniform(rng, (5.0, 100.0), n)
        tl = np.hypot(tx1 - tx0, ty1 - ty0)
        px, py, pf = trail_points(tx0, ty0, tx1, ty1, per_px * np.maximum(tl, 1.0), step=0.7)
        idx = np.round(py).astype(np.int64) * nx + np.round(px).astype(np.int64)
        image += (np.bincount(idx, weights=pf, minlength=nx * ny).reshape(ny, nx)
                  * sig.astype(float))
        art += [
            {"kind": "track", "x0": a, "y0": b, "x1": c, "y1": d, "amp": e}
            for a, b, c, d, e in zip(tx0, ty0, tx1, ty1, per_px, strict=True)
        ]
    # --- bad columns (hot segments), masked with probability badcol_masked
    n = _count(rng, config.n_badcols, area, config.poisson)
    for _ in range(n):
        col = int(rng.integers(2, nx - 2))
        ya = int(rng.integers(0, ny // 2))
        yb = int(rng.integers(ya + min(30, ny // 4), ny))
        level = float(np.exp(rng.uniform(math.log(1.0), math.log(20.0))))
        image[ya:yb, col] += level * sig[ya:yb, col]
        masked = bool(rng.random() < config.badcol_masked)
        if masked:
            mask[ya:yb, col] |= MASK_BADCOL
        art.append({"kind": "badcol", "x0": float(col), "y0": float(ya), "x1": float(col),
                    "y1": float(yb - 1), "amp": level, "masked": masked})
    # --- saturated blobs: masked, garbage inside
    n = _count(rng, config.n_saturated, area, config.poisson)
    for _ in range(n):
        bx, by = rng.uniform(0, nx), rng.uniform(0, ny)
        r = rng.uniform(3.0, 10.0)
        xa, xb = max(0, int(bx - r)), min(nx, int(bx + r) + 2)
        ya, yb = max(0, int(by - r)), min(ny, int(by + r) + 2)
        gy, gx = np.mgrid[ya:yb, xa:xb]
        blob = (gx - bx) ** 2 + (gy - by) ** 2 <= r * r
        sub = image[ya:yb, xa:xb]
        sub[blob] = rng.uniform(-1e3, 1e4, int(blob.sum())) * config.sigma
        mask[ya:yb, xa:xb][blob] |= MASK_SATURATED

    from zsds.streaks.detect import canonical_segments

    cx0, cy0, cx1, cy1, ang = canonical_segments(x0, y0, x1, y1)
    truth = pd.DataFrame(
        {
            "x0": cx0,
            "y0": cy0,
            "x1": cx1,
            "y1": cy1,
            "length": L,
            "angle": ang,
            "flux": flux,
            "snr_integrated": snr_int,
        }
    )
    for row in art:
        row.setdefault("masked", False)
    artefacts = pd.DataFrame(art, columns=["kind", "x0", "y0", "x1", "y1", "amp", "masked"])
    artefacts["masked"] = artefacts["masked"].astype(bool)
    return SimulatedDiff(
        image=image.astype(np.float32),
        sigma=sig.copy(),
        mask=mask,
        truth=truth,
        artefacts=artefacts,
        fwhm=fwhm,
    )
