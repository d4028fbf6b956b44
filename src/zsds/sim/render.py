"""Pixel rendering kernels: point sources, trails, galaxies, cosmic rays, saturation and bleeding.

All kernels are vectorised over sources (stamps are rendered as one (N, s, s) array and added to
the image with ``np.bincount``), work on float32 electron images and take their random generator
as an argument.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import fft as sfft
from scipy.special import gammaincinv

from zsds.sim.optics import STAMP_SIZES, QuadrantTruePSF

#: Stamp size by total flux (e-) at FWHM <= 2 px (sizes grow in proportion for wider PSFs):
#: most stars are faint and small. The Kolmogorov wing beyond the stamp is dropped, not folded
#: into the core (the stamp holds the exact pixel values): at FWHM 2 px that is 6% of a 300 e-
#: star (18 e-), 0.5% of a 3e4 e- star (150 e-), 0.05% of a 3e6 e- star, spread over hundreds of
#: pixels outside the stamp, far below the sky noise of each.
_TIERS = ((300, 7), (1e3, 9), (3e3, 13), (3e4, 23), (3e5, 41), (3e6, 71), (np.inf, 129))


def stamp_size(base: int, fwhm: float) -> int:
    """The tabulated stamp size (:data:`~zsds.sim.optics.STAMP_SIZES`) at least ``base``
    scaled by ``fwhm / 2`` (px), so that wide PSFs keep the same wing fraction."""
    need = base * max(1.0, fwhm / 2.0)
    for s in STAMP_SIZES:
        if s >= need:
            return s
    return STAMP_SIZES[-1]


def _stamp_indices(
    shape: tuple[int, int], ix: np.ndarray, iy: np.ndarray, stamps: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Flat image indices and values of (N, s, s) stamps centred on integer pixels (ix, iy),
    dropping the parts that fall off the image."""
    ny, nx = shape
    s = stamps.shape[1]
    h = s // 2
    off = np.arange(-h, h + 1)
    xx = ix[:, None, None] + off[None, None, :]
    yy = iy[:, None, None] + off[None, :, None]
    ok = (xx >= 0) & (xx < nx) & (yy >= 0) & (yy < ny)
    return (yy * nx + xx)[ok], stamps[ok]


def _accumulate(image: np.ndarray, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Add all (indices, values) parts to the image with a single bincount."""
    if not parts:
        return
    idx = np.concatenate([p[0] for p in parts])
    val = np.concatenate([p[1] for p in parts])
    ny, nx = image.shape
    image += np.bincount(idx, weights=val, minlength=nx * ny).reshape(ny, nx).astype(np.float32)


def render_points(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    psf: QuadrantTruePSF,
    chunk: int = 20000,
) -> None:
    """Add point sources of total ``flux`` (e-) at pixel positions (x, y) to ``image``.

    Each star is the true PSF integrated over the pixels at its own sub-pixel phase
    (:meth:`QuadrantTruePSF.stamps`), in a stamp whose size grows with its flux.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    flux = np.asarray(flux, float)
    ny, nx = image.shape
    parts = []
    lo = 0.0
    fwhm = psf.typical_fwhm
    for hi, base in _TIERS:
        sel = np.nonzero((flux > lo) & (flux <= hi))[0]
        lo = hi
        size = stamp_size(base, fwhm)
        h = size // 2
        sel = sel[(x[sel] > -h) & (x[sel] < nx + h) & (y[sel] > -h) & (y[sel] < ny + h)]
        # Memory bound: at most ~20M stamp pixels at once.
        step = max(1, min(chunk, int(2e7 // (size * size))))
        for k in range(0, len(sel), step):
            s = sel[k : k + step]
            ix = np.round(x[s]).astype(np.int64)
            iy = np.round(y[s]).astype(np.int64)
            st = psf.stamps(x[s], y[s], size)
            st *= flux[s].astype(np.float32)[:, None, None]
            parts.append(_stamp_indices(image.shape, ix, iy, st))
    _accumulate(image, parts)


def trail_points(
    x0: np.ndarray,
    y0: np.ndarray,
    x1: np.ndarray,
    y1: np.ndarray,
    flux: np.ndarray,
    step: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split trails from (x0, y0) to (x1, y1) into points every ``step`` pixels sharing the flux."""
    length = np.hypot(x1 - x0, y1 - y0)
    n = np.maximum(1, np.ceil(length / step).astype(int) + 1)
    owner = np.repeat(np.arange(len(n)), n)
    start = np.repeat(np.cumsum(n) - n, n)
    t = (np.arange(n.sum()) - start) / np.maximum(n[owner] - 1, 1)
    t = np.where(n[owner] == 1, 0.5, t)
    px = x0[owner] + t * (x1 - x0)[owner]
    py = y0[owner] + t * (y1 - y0)[owner]
    return px, py, flux[owner] / n[owner]


def sersic_bn(n: np.ndarray) -> np.ndarray:
    """Sersic b_n such that r_eff encloses half of the light (exact, via the incomplete gamma)."""
    return gammaincinv(2.0 * n, 0.5)


def render_galaxies(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    sersic_n: np.ndarray,
    r_eff_px: np.ndarray,
    axis_ratio: np.ndarray,
    pa_rad: np.ndarray,
    psf: QuadrantTruePSF,
) -> None:
    """Add PSF-convolved Sersic galaxies (flux in e-) to ``image``.

    Galaxies are grouped by stamp size; within a group the Sersic images and PSF stamps are
    built as (N, s, s) arrays and convolved with one batched real FFT.
    """
    ny, nx = image.shape
    if len(x) == 0:
        return
    parts = []
    size = np.clip(2 * np.ceil(4.0 * r_eff_px + 6.0).astype(int) + 1, 21, 129)
    for s in np.unique(size):
        sel = np.nonzero(size == s)[0]
        sel = sel[(x[sel] > -s) & (x[sel] < nx + s) & (y[sel] > -s) & (y[sel] < ny + s)]
        if len(sel) == 0:
            continue
        h = s // 2
        ix = np.round(x[sel]).astype(np.int64)
        iy = np.round(y[sel]).astype(np.int64)
        dx = (x[sel] - ix)[:, None, None]
        dy = (y[sel] - iy)[:, None, None]
        g = np.arange(-h, h + 1, dtype=np.float32)
        xx = g[None, None, :] - dx
        yy = g[None, :, None] - dy
        c = np.cos(pa_rad[sel])[:, None, None]
        sn = np.sin(pa_rad[sel])[:, None, None]
        u = xx * c + yy * sn
        v = -xx * sn + yy * c
        q = axis_ratio[sel][:, None, None]
        r = np.sqrt(u * u * q + v * v / q) / np.maximum(r_eff_px[sel], 0.3)[:, None, None]
        n = sersic_n[sel][:, None, None]
        gal = np.exp(-sersic_bn(n) * (np.power(r + 1e-6, 1.0 / n) - 1.0)).astype(np.float32)
        # The pixel-integrated PSF at the galaxy's pixel (phase 0: the Sersic profile itself is
        # sampled relative to the galaxy's sub-pixel centre).
        kern = psf.stamps(ix.astype(float), iy.astype(float), int(s))
        kern = sfft.ifftshift(kern, axes=(1, 2))
        conv = sfft.irfft2(
            sfft.rfft2(gal, axes=(1, 2)) * sfft.rfft2(kern, axes=(1, 2)), s=(s, s), axes=(1, 2)
        ).astype(np.float32)
        conv = np.clip(conv, 0.0, None)
        conv /= conv.sum(axis=(1, 2), keepdims=True)
        conv *= flux[sel].astype(np.float32)[:, None, None]
        parts.append(_stamp_indices(image.shape, ix, iy, conv))
    _accumulate(image, parts)


def add_cosmic_rays(
    image: np.ndarray, rng: np.random.Generator, seconds: float, rate_per_cm2_min: float = 2.5
) -> pd.DataFrame:
    """Deposit cosmic-ray hits and short muon tracks (e-); returns their truth table."""
    ny, nx = image.shape
    area_cm2 = nx * ny * (15e-4) ** 2
    n = rng.poisson(rate_per_cm2_min * area_cm2 * seconds / 60.0)
    x0 = rng.uniform(0, nx - 1, n)
    y0 = rng.uniform(0, ny - 1, n)
    length = np.where(rng.random(n) < 0.7, rng.uniform(0, 3, n), rng.uniform(3, 25, n))
    ang = rng.uniform(0, 2 * np.pi, n)
    x1 = np.clip(x0 + length * np.cos(ang), 0, nx - 1)
    y1 = np.clip(y0 + length * np.sin(ang), 0, ny - 1)
    energy = rng.lognormal(np.log(3000.0), 0.6, n) * np.maximum(length, 1.0) ** 0.8
    px, py, pf = trail_points(x0, y0, x1, y1, energy, step=0.7)
    idx = np.round(py).astype(np.int64) * nx + np.round(px).astype(np.int64)
    image += np.bincount(idx, weights=pf, minlength=nx * ny).reshape(ny, nx).astype(np.float32)
    return pd.DataFrame({"x0": x0, "y0": y0, "x1": x1, "y1": y1, "energy_e": energy})


def bleed(image: np.ndarray, full_well: float) -> np.ndarray:
    """Cap pixels at the full well and spill the excess charge up and down the column.

    Returns the boolean mask of saturated (capped or bled-into) pixels. Loops run over the few
    affected columns only; a column's runs of saturated pixels are grown symmetrically until the
    charge they hold fits in full wells (charge is conserved).
    """
    sat = image > full_well
    out = np.zeros(image.shape, bool)
    ny = image.shape[0]
    for col in np.nonzero(sat.any(axis=0))[0]:
        column = image[:, col].astype(np.float64)
        over = column > full_well
        edges = np.flatnonzero(np.diff(np.concatenate([[0], over.astype(np.int8), [0]])))
        for y0, y1 in zip(edges[::2], edges[1::2], strict=True):
            charge = column[y0:y1].sum()
            need = int(np.ceil(charge / full_well))
            extra = need - (y1 - y0)
            a = max(0, y0 - extra // 2 - extra % 2)
            b = min(ny, y1 + extra // 2)
            column[a:b] = full_well
            out[a:b, col] = True
        image[:, col] = column.astype(np.float32)
    return out
