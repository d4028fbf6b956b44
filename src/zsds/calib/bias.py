"""Master bias: a sigma-clipped stack of overscan-corrected bias frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.stats import mad_std, sigma_clip


@dataclass(frozen=True)
class BiasConfig:
    """Options of :func:`make_master_bias`.

    A pixel enters the calibration mask (``cmask``) when its level, after removing the column
    and row structure, or its frame-to-frame scatter lies ``cmask_sigma`` robust sigmas from
    the norm.
    """

    clip_sigma: float = 4.0  #: per-pixel clip of the stack (median centre, MAD width), sigma
    clip_iters: int = 2  #: most clipping iterations per pixel (``sigma_clip`` maxiters)
    cmask_sigma: float = 5.0  #: robust sigmas off the norm (level or scatter) for the cmask


@dataclass(frozen=True)
class BiasResult:
    """Master bias products (science orientation, DN)."""

    bias: np.ndarray  #: float32 master bias, clipped mean of the frames (DN)
    bias_unc: np.ndarray  #: float32 clipped std / sqrt(frames kept) (DN)
    cmask: np.ndarray  #: bool: hot or noisy pixels
    qa: dict[str, float]  #: frame count, bias level/rms, pixel noise (DN), cmask fraction


def clipped_stack(
    frames: np.ndarray, sigma: float, maxiters: int, block_rows: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sigma-clipped mean, standard deviation (ddof 1) and count along axis 0.

    The clip uses the median and the MAD-based width, which, unlike the plain standard deviation,
    can reject a single outlier among a handful of frames. Every pixel is clipped on its own, so
    the cube is processed in blocks of ``block_rows`` rows: astropy's masked-array clipping
    makes several float64 copies of what it is given, which for a full quadrant stack would be
    gigabytes.
    """
    ny = frames.shape[1]
    mean = np.empty(frames.shape[1:], np.float64)
    std = np.empty(frames.shape[1:], np.float64)
    n = np.empty(frames.shape[1:], np.int64)
    for y0 in range(0, ny, block_rows):
        sl = slice(y0, min(y0 + block_rows, ny))
        mean[sl], std[sl], n[sl] = _clipped_block(frames[:, sl], sigma, maxiters)
    return mean, std, n


def _clipped_block(
    frames: np.ndarray, sigma: float, maxiters: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    clipped = sigma_clip(
        frames, sigma=sigma, maxiters=maxiters, axis=0, cenfunc="median", stdfunc="mad_std"
    )
    n = np.ma.count(clipped, axis=0)
    mean = np.ma.mean(clipped, axis=0).filled(np.nan)
    std = np.ma.std(clipped, axis=0, ddof=1).filled(np.nan) if frames.shape[0] > 1 else None
    if std is None:
        std = np.full(mean.shape, np.nan)
    # Where everything was clipped fall back to the plain median.
    empty = n == 0
    if empty.any():
        mean[empty] = np.median(frames, axis=0)[empty]
    return mean, std, n


def _robust_outliers(values: np.ndarray, k: float) -> np.ndarray:
    """True where ``values`` lie more than ``k`` robust sigmas from their median."""
    finite = np.isfinite(values)
    centre = np.median(values[finite])
    width = mad_std(values[finite])
    if not width > 0:
        return ~finite
    return ~finite | (np.abs(values - centre) > k * width)


def make_master_bias(frames: list[np.ndarray], config: BiasConfig | None = None) -> BiasResult:
    """Combine overscan-corrected bias frames into a master bias.

    Parameters
    ----------
    frames : list of ndarray (ny, nx)
        Overscan-corrected bias frames (DN) of one quadrant.
    config : BiasConfig or None

    Returns
    -------
    BiasResult
    """
    cfg = config or BiasConfig()
    if len(frames) < 2:
        raise ValueError("a master bias needs at least 2 frames")
    cube = np.stack([np.asarray(f, np.float32) for f in frames])
    mean, std, n = clipped_stack(cube, cfg.clip_sigma, cfg.clip_iters)
    unc = std / np.sqrt(np.maximum(n, 1))
    # Level outliers relative to the fixed column/row structure (hot pixels).
    resid = mean - np.median(mean, axis=0)[None, :]
    resid -= np.median(resid, axis=1)[:, None]
    hot = _robust_outliers(resid, cfg.cmask_sigma)
    noisy = _robust_outliers(std, cfg.cmask_sigma) & (std > np.nanmedian(std))
    cmask = hot | noisy
    good = ~cmask
    qa = {
        "n_frames": float(len(frames)),
        "bias_median": float(np.median(mean[good])),
        "bias_rms": float(mad_std(mean[good])),
        "bias_unc_mean": float(np.mean(unc[good])),
        "pixel_noise": float(np.median(std[good])),
        "cmask_fraction": float(cmask.mean()),
    }
    return BiasResult(mean.astype(np.float32), unc.astype(np.float32), cmask, qa)
