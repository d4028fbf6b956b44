"""Fixed detector properties of each amplifier: responsivity, defects and bias structure.

These are properties of the hardware, identical in every exposure: the pixel-to-pixel (high-nu)
responsivity with dust donuts, dead and low-responsivity pixels, hot pixels and bad columns, and
the two-dimensional bias pattern. They are drawn once per amplifier from a fixed seed (the
"instrument seed"), so calibration pipelines can learn them from bias and flat stacks and tests
can compare against them. Low-frequency illumination (vignetting, dome-lamp pattern) is a
function of focal-plane position and lives in :func:`sky_illumination` / :func:`dome_illumination`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from zsds.core.instrument import Filter, quadrant_pixel_to_focal_plane, rcid_of
from zsds.core.resample import upsample_grid

INSTRUMENT_SEED = 20171101


@dataclass(frozen=True)
class DetectorDefects:
    """Fixed properties of one amplifier at one image size (science orientation).

    Attributes
    ----------
    response : ndarray float32
        High-nu responsivity (mean ~1); 0 for dead pixels.
    dark : ndarray float32
        Dark current, e- / s (hot pixels and hot columns; 0 elsewhere).
    bias2d : ndarray float32
        Fixed two-dimensional bias pattern, ADU (column pattern plus the readout-start ramp).
    dead : ndarray bool
    hot : ndarray bool
    low_response : ndarray bool
    """

    response: np.ndarray
    dark: np.ndarray
    bias2d: np.ndarray
    dead: np.ndarray
    hot: np.ndarray
    low_response: np.ndarray


@functools.lru_cache(maxsize=8)
def detector_defects(ccdid: int, qid: int, nx: int, ny: int) -> DetectorDefects:
    """Fixed detector properties of a quadrant, deterministic in (ccd, quadrant, size)."""
    from zsds.core.instrument import to_raw_orientation

    rcid = rcid_of(ccdid, qid)
    rng = np.random.default_rng(np.random.SeedSequence([INSTRUMENT_SEED, 2, rcid, nx, ny]))
    area = nx * ny
    # Pixel-to-pixel responsivity: 0.8% rms white pattern.
    response = rng.standard_normal(size=(ny, nx), dtype=np.float32)
    response *= np.float32(0.008)
    response += np.float32(1.0)
    # Dust donuts: ring-shaped 3-6% depressions, ~1 per 2 Mpix.
    n_donut = rng.poisson(max(area / 2.0e6, 0.5))
    for _ in range(n_donut):  # a handful of donuts, each applied in its own small box
        cx, cy = rng.uniform(0, nx), rng.uniform(0, ny)
        rad, width, depth = rng.uniform(12, 35), rng.uniform(2, 5), rng.uniform(0.03, 0.06)
        ext = int(rad + 5 * width) + 1
        x0, x1 = max(int(cx) - ext, 0), min(int(cx) + ext, nx)
        y0, y1 = max(int(cy) - ext, 0), min(int(cy) + ext, ny)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        r = np.hypot(xx - cx, yy - cy)
        response[y0:y1, x0:x1] *= (1.0 - depth * np.exp(-0.5 * ((r - rad) / width) ** 2)).astype(
            np.float32
        )
    # Low-responsivity pixels (~2e-5) and a partially dead column now and then.
    low = np.zeros((ny, nx), bool)
    n_low = rng.poisson(2e-5 * area) + 1
    low.flat[rng.choice(area, n_low, replace=False)] = True
    response[low] *= rng.uniform(0.3, 0.7, n_low).astype(np.float32)
    if rng.random() < 0.5:
        col = rng.integers(0, nx)
        y0 = rng.integers(0, ny // 2)
        low[y0:, col] = True
        response[y0:, col] *= np.float32(0.5)
    dead = np.zeros((ny, nx), bool)
    n_dead = rng.poisson(1e-5 * area) + 1
    dead.flat[rng.choice(area, n_dead, replace=False)] = True
    response[dead] = 0.0
    # Hot pixels (~5e-5 of pixels) and one hot column segment per amplifier.
    dark = np.zeros((ny, nx), np.float32)
    hot = np.zeros((ny, nx), bool)
    n_hot = rng.poisson(5e-5 * area) + 1
    idx = rng.choice(area, n_hot, replace=False)
    hot.flat[idx] = True
    dark.flat[idx] = (10 ** rng.uniform(1.3, 3.3, n_hot)).astype(np.float32)
    col = rng.integers(0, nx)
    y0 = rng.integers(0, ny - 1)
    dark[y0:, col] += np.float32(rng.uniform(3, 15))
    hot[y0:, col] = True
    # Bias structure in readout orientation: per-column offsets and an exponential ramp at the
    # start of each serial readout; then returned in science orientation.
    raw_cols = rng.normal(0.0, 1.2, nx).astype(np.float32)
    ramp = (8.0 * np.exp(-np.arange(nx) / 40.0)).astype(np.float32)
    raw_rows = np.linspace(0.0, rng.normal(0, 1.0), ny, dtype=np.float32)
    bias_raw = raw_cols[None, :] + ramp[None, :] + raw_rows[:, None]
    # to_raw_orientation is its own inverse.
    bias2d = np.ascontiguousarray(to_raw_orientation(bias_raw, qid))
    return DetectorDefects(response, dark, bias2d, dead, hot, low)


def _fp_grid(ccdid: int, qid: int, nx: int, ny: int, step: int = 32):
    """Focal-plane coordinates on a coarse grid (low-nu maps are smooth, so interpolate)."""
    gx = np.arange(0, nx + step, step, dtype=float)
    gy = np.arange(0, ny + step, step, dtype=float)
    ew, ns = quadrant_pixel_to_focal_plane(ccdid, qid, gx[None, :], gy[:, None], nx, ny)
    return gx, gy, ew, ns


def sky_illumination_fp(ew: np.ndarray, ns: np.ndarray, filt: Filter) -> np.ndarray:
    """Low-nu illumination of the sky on the focal plane (vignetting, ~3% at the corners)."""
    r2 = (ew**2 + ns**2) / 25.0
    tilt = {Filter.g: 0.004, Filter.r: 0.003, Filter.i: 0.002}[filt]
    return 1.0 - 0.03 * r2 + tilt * ew / 4.0


def dome_illumination_fp(ew: np.ndarray, ns: np.ndarray, filt: Filter) -> np.ndarray:
    """Low-nu illumination of the dome screen: a lamp gradient unlike the sky's."""
    return 1.0 + 0.05 * ew / 4.0 + 0.03 * (ns / 4.0) ** 2 - 0.01 * filt.fid * ns / 4.0


@functools.lru_cache(maxsize=8)
def illumination(ccdid: int, qid: int, nx: int, ny: int, filt: Filter, kind: str) -> np.ndarray:
    """Low-nu illumination map of a quadrant, ``kind`` ``"sky"`` or ``"dome"``."""
    gx, gy, ew, ns = _fp_grid(ccdid, qid, nx, ny)
    fn = sky_illumination_fp if kind == "sky" else dome_illumination_fp
    return upsample_grid(gx, gy, fn(ew, ns, filt), nx, ny)
