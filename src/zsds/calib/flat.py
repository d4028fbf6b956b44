"""High-frequency flat: stacked, normalised dome flats with the low-nu illumination removed."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from astropy.stats import mad_std
from scipy.interpolate import RectBivariateSpline

from zsds.calib.bias import clipped_stack
from zsds.core.masks import MASK_DTYPE, MaskBit


@dataclass(frozen=True)
class FlatConfig:
    """Options of :func:`make_hifreq_flat`.

    A bicubic spline through the ``block`` medians is the smooth illumination model divided
    out of the stack.
    """

    clip_sigma: float = 2.5  #: per-pixel clip of the stack (median centre, MAD width), sigma
    clip_iters: int = 3  #: most clipping iterations per pixel (``sigma_clip`` maxiters)
    block: int = 64  #: tile side (pixels) whose medians sample the low-nu illumination
    dead: float = 0.1  #: responsivity below which a pixel is DEAD
    low: float = 0.8  #: below: LOW_RESPONSIVITY (and out of the illumination model)
    high: float = 1.2  #: above: HIGH_RESPONSIVITY (and out of the illumination model)
    noisy_sigma: float = 6.0  #: stack scatter this many robust sigmas over the median: NOISY


@dataclass(frozen=True)
class FlatResult:
    """High-frequency flat products (science orientation)."""

    flat: np.ndarray  #: float32 responsivity relative to the local mean (median 1)
    flat_unc: np.ndarray  #: float32 uncertainty of ``flat`` (same relative units)
    mask: np.ndarray  #: int16 MaskBit DEAD, LOW/HIGH_RESPONSIVITY and NOISY
    qa: dict[str, float]  #: frame count, levels, flat rms, illumination range, defect counts


def block_median(image: np.ndarray, bad: np.ndarray, block: int) -> tuple[np.ndarray, ...]:
    """Median of good pixels in ``block`` x ``block`` tiles (edge tiles may be partial).

    Returns
    -------
    (yc, xc, medians)
        Tile centres (pixels) and the tile medians (NaN where a tile has no good pixel).
    """
    ny, nx = image.shape
    my, mx = -(-ny // block), -(-nx // block)
    padded = np.full((my * block, mx * block), np.nan)
    padded[:ny, :nx] = np.where(bad, np.nan, image)
    tiles = padded.reshape(my, block, mx, block).transpose(0, 2, 1, 3).reshape(my, mx, -1)
    with warnings.catch_warnings():  # all-NaN tiles are expected (fully masked)
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(tiles, axis=2)
    yc = np.array([(i * block + min((i + 1) * block, ny) - 1) / 2.0 for i in range(my)])
    xc = np.array([(i * block + min((i + 1) * block, nx) - 1) / 2.0 for i in range(mx)])
    return yc, xc, med


def smooth_model(image: np.ndarray, bad: np.ndarray, block: int) -> np.ndarray:
    """Low-nu model of ``image``: block medians (defects excluded) through a spline."""
    ny, nx = image.shape
    yc, xc, med = block_median(image, bad, block)
    holes = ~np.isfinite(med)
    if holes.all():
        raise ValueError("no good pixels to model the illumination")
    if holes.any():
        med[holes] = np.nanmedian(med)
    if med.size == 1:
        return np.full(image.shape, float(med[0, 0]), np.float32)
    ky, kx = min(3, len(yc) - 1), min(3, len(xc) - 1)
    if ky == 0 or kx == 0:  # a single row or column of tiles: interpolate along the other axis
        line = med.ravel()
        centres = yc if kx == 0 else xc
        n = ny if kx == 0 else nx
        prof = np.interp(np.arange(n), centres, line)
        return np.broadcast_to(prof[:, None] if kx == 0 else prof[None, :], image.shape).astype(
            np.float32
        )
    spline = RectBivariateSpline(yc, xc, med, kx=ky, ky=kx, bbox=[0, ny - 1, 0, nx - 1])
    return spline(np.arange(ny), np.arange(nx)).astype(np.float32)


def make_hifreq_flat(
    frames: list[np.ndarray],
    master_bias: np.ndarray,
    bias_cmask: np.ndarray | None = None,
    config: FlatConfig | None = None,
) -> FlatResult:
    """Combine overscan-corrected dome flats of one filter into a high-frequency flat.

    Each frame is bias-subtracted and divided by its robust median; the frames are stacked
    with a per-pixel sigma clip; the stack is divided by a smooth model of the illumination
    (block medians excluding defects, bicubic spline) and renormalised to median 1.

    Parameters
    ----------
    frames : list of ndarray (ny, nx)
        Overscan-corrected dome flats (DN).
    master_bias : ndarray (ny, nx)
    bias_cmask : ndarray bool or None
        Hot/noisy pixels of the bias; flagged NOISY and ignored by the illumination model.
    config : FlatConfig or None

    Returns
    -------
    FlatResult
    """
    cfg = config or FlatConfig()
    if not frames:
        raise ValueError("no flat frames given")
    bias = np.asarray(master_bias, np.float32)
    cmask = np.zeros(bias.shape, bool) if bias_cmask is None else np.asarray(bias_cmask, bool)
    norm = []
    levels = []
    for frame in frames:
        sub = np.asarray(frame, np.float32) - bias
        level = float(np.median(sub[~cmask]))
        if not level > 0:
            raise ValueError("flat frame has a non-positive median after bias subtraction")
        levels.append(level)
        norm.append(sub / np.float32(level))
    cube = np.stack(norm)
    if cube.shape[0] > 1:
        stack, std, n = clipped_stack(cube, cfg.clip_sigma, cfg.clip_iters)
        unc = std / np.sqrt(np.maximum(n, 1))
    else:
        stack = cube[0].astype(np.float64)
        unc = np.sqrt(np.maximum(frames[0] - bias, 1.0)) / levels[0]  # Poisson, gain ~1 (bound)
    # Pixels far from unity (defects) must not pull the illumination model.
    defect = cmask | (stack < cfg.low) | (stack > cfg.high) | ~np.isfinite(stack)
    model = smooth_model(stack, defect, cfg.block)
    flat = stack / model
    flat_unc = unc / model
    good = ~defect
    scale = float(np.median(flat[good]))
    flat /= scale
    flat_unc /= scale
    mask = np.zeros(flat.shape, MASK_DTYPE)
    dead = flat < cfg.dead
    low = (flat < cfg.low) & ~dead
    high = flat > cfg.high
    finite_unc = np.isfinite(flat_unc)
    unc_med = np.median(flat_unc[finite_unc & good])
    unc_wid = mad_std(flat_unc[finite_unc & good])
    noisy = cmask | (finite_unc & (flat_unc > unc_med + cfg.noisy_sigma * unc_wid))
    for sel, bit in (
        (dead, MaskBit.DEAD),
        (low, MaskBit.LOW_RESPONSIVITY),
        (high, MaskBit.HIGH_RESPONSIVITY),
        (noisy, MaskBit.NOISY),
    ):
        mask[sel] |= MASK_DTYPE(int(bit))
    ok = mask == 0
    qa = {
        "n_frames": float(len(frames)),
        "level_median": float(np.median(levels)),
        "flat_rms": float(mad_std(flat[ok])),
        "flat_unc_mean": float(np.mean(flat_unc[ok & finite_unc])),
        "illum_min": float(model.min() / scale),
        "illum_max": float(model.max() / scale),
        "n_dead": float(dead.sum()),
        "n_low": float(low.sum()),
        "n_high": float(high.sum()),
        "n_noisy": float(noisy.sum()),
        "mask_fraction": float((~ok).mean()),
    }
    return FlatResult(flat.astype(np.float32), flat_unc.astype(np.float32), mask, qa)
