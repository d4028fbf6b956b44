"""Point-spread-function models.

Every PSF model answers one question -- the normalised PSF image at a position -- through the
:class:`PSFModel` protocol, so stages never care whether a PSF is analytic (the simulator's truth,
an elliptical Moffat that varies over the focal plane) or empirical (a pixel grid estimated by
the pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class PSFModel(Protocol):
    """A PSF that can be rendered at any image position."""

    def stamp(self, x: float, y: float, size: int = 25) -> np.ndarray:
        """PSF image of shape (size, size), odd size, centred on pixel ``size // 2`` plus the
        sub-pixel offset of (x, y), normalised to unit sum."""
        ...

    def fwhm_at(self, x: float, y: float) -> float:
        """FWHM in pixels at a position."""
        ...


def moffat_alpha(fwhm: np.ndarray | float, beta: np.ndarray | float) -> np.ndarray:
    """Moffat core width alpha from FWHM: FWHM = 2 alpha sqrt(2^(1/beta) - 1)."""
    return np.asarray(fwhm) / (2.0 * np.sqrt(2.0 ** (1.0 / np.asarray(beta)) - 1.0))


def moffat_stamps(
    dx: np.ndarray,
    dy: np.ndarray,
    fwhm: np.ndarray,
    beta: np.ndarray | float,
    q: np.ndarray | float,
    theta: np.ndarray | float,
    size: int,
    dtype: type = np.float32,
    oversample: int = 1,
) -> np.ndarray:
    """Render N elliptical Moffat stamps at once (vectorised, no per-star loop).

    Parameters
    ----------
    dx, dy : ndarray (N,)
        Position of each source relative to the centre pixel of its stamp (pixels).
    fwhm : ndarray (N,)
        Geometric-mean FWHM (pixels).
    beta : float or ndarray
        Moffat power index.
    q : float or ndarray
        Axis ratio b/a (<= 1).
    theta : float or ndarray
        Position angle of the major axis, radians from +x toward +y.
    size : int
        Odd stamp size.
    oversample : int
        Samples per pixel and axis (midpoint rule): 1 samples the profile at pixel centres;
        more integrates it over each pixel, as a detector does (the simulator's stars use 5).

    Returns
    -------
    ndarray (N, size, size)
        Stamps normalised to unit sum (the flux that falls on the stamp is the whole flux; stamp
        sizes are chosen by the caller so that the truncated wing is negligible).
    """
    if size % 2 != 1:
        raise ValueError("stamp size must be odd")
    n = len(dx)
    half = size // 2
    grid = np.arange(-half, half + 1, dtype=dtype)
    beta = np.broadcast_to(np.asarray(beta, dtype), (n,))
    q = np.broadcast_to(np.asarray(q, dtype), (n,))
    theta = np.broadcast_to(np.asarray(theta, dtype), (n,))
    alpha = moffat_alpha(np.asarray(fwhm, dtype), beta).astype(dtype)
    a2 = (alpha**2 / q)[:, None, None]
    b2 = (alpha**2 * q)[:, None, None]
    c = np.cos(theta)[:, None, None]
    s = np.sin(theta)[:, None, None]
    xx0 = grid[None, None, :] - np.asarray(dx, dtype)[:, None, None]
    yy0 = grid[None, :, None] - np.asarray(dy, dtype)[:, None, None]
    mb = -beta[:, None, None]
    sub = [float(t) for t in (np.arange(oversample) + 0.5) / oversample - 0.5]
    img = None
    for oy in sub:  # accumulate sub-pixel samples: memory stays that of one stamp set
        yy = yy0 + dtype(oy)
        for ox in sub:
            xx = xx0 + dtype(ox)
            u = xx * c + yy * s
            v = -xx * s + yy * c
            term = (1.0 + u * u / a2 + v * v / b2) ** mb
            img = term if img is None else img + term
    img /= img.sum(axis=(1, 2), keepdims=True)
    return img.astype(dtype, copy=False)


@dataclass(frozen=True)
class MoffatPSF:
    """A constant elliptical Moffat PSF (implements :class:`PSFModel`)."""

    fwhm: float
    beta: float = 3.0
    q: float = 1.0
    theta: float = 0.0

    def stamp(self, x: float, y: float, size: int = 25) -> np.ndarray:
        dx = np.array([x - np.round(x)])
        dy = np.array([y - np.round(y)])
        return moffat_stamps(
            dx, dy, np.array([self.fwhm]), self.beta, self.q, self.theta, size, np.float64
        )[0]

    def fwhm_at(self, x: float, y: float) -> float:
        return self.fwhm


@dataclass(frozen=True)
class PixelPSF:
    """An empirical PSF sampled on the pixel grid (constant over the image).

    Sub-pixel positions are applied with a Fourier shift, which preserves the flux.
    """

    image: np.ndarray
    fwhm: float

    def stamp(self, x: float, y: float, size: int = 25) -> np.ndarray:
        from scipy.ndimage import fourier_shift

        img = self.image
        n = img.shape[0]
        if size > n:
            pad = (size - n) // 2
            img = np.pad(img, pad)
        elif size < n:
            cut = (n - size) // 2
            img = img[cut : cut + size, cut : cut + size]
        shifted = np.fft.ifft2(fourier_shift(np.fft.fft2(img), (y - np.round(y), x - np.round(x))))
        out = shifted.real
        return out / out.sum()

    def fwhm_at(self, x: float, y: float) -> float:
        return self.fwhm
