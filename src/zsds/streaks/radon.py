"""Optional Radon-transform pass for very long, faint streaks (e.g. satellites).

The line-segment search of :mod:`zsds.streaks.detect` integrates at most ``max_length`` pixels
(512 by default). A faint trail crossing the whole quadrant can have too little S/N per 512 px
yet be significant over its full length. :func:`radon_candidates` block-sums the S/N image by
``radon_binning`` (8: a 3080 x 3072 quadrant becomes 385 x 384, the PSF is sub-pixel and no
smoothing is needed), takes its Radon transform with :func:`skimage.transform.radon` (one
projection every 0.5 deg), turns every projection into a robust z-score (median and MAD per
angle; this absorbs the varying ray lengths) and returns the lines of the local maxima above
``radon_threshold`` as candidate segments spanning the image. The usual grouping, 1-D profile
refinement and fit then find where along each line the trail actually is.

Cost: ~2-4 s per quadrant on one core, which is why the pass is off by default
(``StreakConfig(radon=True)`` turns it on). Binning by 8 keeps ~70 % of the optimal S/N of a
thin trail (a Hough transform on a thresholded image finds nothing at that S/N; see
``shared/reference/SOLAR.md`` section 5).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

from zsds.core.stats import MAD_TO_SIGMA
from zsds.streaks.base import bin_image

if TYPE_CHECKING:
    from zsds.streaks.base import StreakConfig

__all__ = ["radon_candidates", "radon_lines"]


def radon_lines(
    zb: np.ndarray, threshold: float, n_theta: int = 360, max_lines: int = 20
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Significant lines of an S/N image from its Radon transform.

    Parameters
    ----------
    zb : ndarray (ny, nx)
        S/N image (unit white noise).
    threshold : float
        Robust z-score threshold of a projection value.
    n_theta : int
        Projection angles in [0, 180).
    max_lines : int
        Keep at most this many (highest z first).

    Returns
    -------
    theta, offset, z : ndarray
        For each line, the projection angle (radians), its signed offset from the centre of
        skimage's padded image (pixels) and its z-score. The line is the set
        ``c + offset * (cos t, -sin t) + s * (sin t, cos t)`` in padded ``(x, y)`` coordinates,
        see :func:`_line_endpoints`.
    """
    from skimage.transform import radon

    theta = np.arange(n_theta) * (180.0 / n_theta)
    sino = radon(zb.astype(float), theta=theta, circle=False)
    med = np.median(sino, axis=0, keepdims=True)
    mad = np.median(np.abs(sino - med), axis=0, keepdims=True) * MAD_TO_SIGMA
    zs = (sino - med) / np.maximum(mad, 1e-9)
    peaks = (zs >= ndi.maximum_filter(zs, size=(5, 5), mode="nearest")) & (zs > threshold)
    r, t = np.nonzero(peaks)
    order = np.argsort(-zs[r, t])[:max_lines]
    c = sino.shape[0] // 2
    return np.radians(theta[t[order]]), (r[order] - c).astype(float), zs[r[order], t[order]]


def _line_endpoints(
    theta: float, offset: float, shape: tuple[int, int]
) -> tuple[float, float, float, float] | None:
    """End points (image pixel coordinates) of a Radon line clipped to the image."""
    ny, nx = shape
    # skimage's padding (circle=False): a square of side ceil(sqrt(2) max(shape)).
    pad = [int(np.ceil(math.sqrt(2) * max(shape) - s)) for s in shape]
    pad_before = [(s + p) // 2 - s // 2 for s, p in zip(shape, pad, strict=True)]
    cx = cy = float((ny + pad[0]) // 2)
    nxv, nyv = math.cos(theta), -math.sin(theta)
    dxv, dyv = math.sin(theta), math.cos(theta)
    px, py = cx + offset * nxv - pad_before[1], cy + offset * nyv - pad_before[0]
    # Parameter range of s keeping the point inside [0, nx-1] x [0, ny-1].
    lo, hi = -math.inf, math.inf
    for p0, d, n in ((px, dxv, nx), (py, dyv, ny)):
        if abs(d) < 1e-12:
            if not 0 <= p0 <= n - 1:
                return None
            continue
        a, b = (0 - p0) / d, (n - 1 - p0) / d
        lo, hi = max(lo, min(a, b)), min(hi, max(a, b))
    if hi <= lo:
        return None
    return px + lo * dxv, py + lo * dyv, px + hi * dxv, py + hi * dyv


def radon_candidates(
    z: np.ndarray, fwhm_px: float, config: StreakConfig
) -> dict[str, np.ndarray]:
    """Candidate segments (native pixels) for :func:`zsds.streaks.detect.detect_streaks`.

    Keys ``x0, y0, x1, y1`` (the line clipped to the image), ``snr`` (the Radon z-score),
    ``ratio`` (inf: no point-source veto) and ``w`` (the segment length).
    """
    b = max(1, int(config.radon_binning))
    zb = bin_image(z, b)
    th, off, zs = radon_lines(zb, config.radon_threshold)
    rows = []
    for t, o, s in zip(th, off, zs, strict=True):
        seg = _line_endpoints(float(t), float(o), zb.shape)
        if seg is None:
            continue
        # Binned pixel centres -> native pixel coordinates.
        x0, y0, x1, y1 = (v * b + (b - 1) / 2.0 for v in seg)
        rows.append((x0, y0, x1, y1, float(s), math.inf, math.hypot(x1 - x0, y1 - y0)))
    keys = ("x0", "y0", "x1", "y1", "snr", "ratio", "w")
    if not rows:
        return {k: np.zeros(0) for k in keys}
    a = np.array(rows)
    return {k: a[:, i] for i, k in enumerate(keys)}
