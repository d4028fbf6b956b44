"""Settings and small helpers shared by every streak module (:mod:`zsds.streaks.detect`,
:mod:`~zsds.streaks.fit`, :mod:`~zsds.streaks.radon`...), which all import from here and never
from each other's internals: the streak modules form no import cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["DEFAULT_CONFIG", "FWHM_TO_SIGMA", "SEGMENT_COLUMNS", "StreakConfig", "bin_image",
           "canonical_segments"]

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


@dataclass(frozen=True)
class StreakConfig:
    """Settings of streak detection, fitting and scoring (all lengths in native pixels).

    ``method`` "frt" is a partial fast Radon transform (all slopes, lengths ``2**k``), "bank"
    an FFT correlation with an explicit kernel bank. ``point_excess`` guards against noise on
    long lines through moderately bright point sources. The Radon pass
    (:func:`zsds.streaks.radon.radon_candidates`) finds lines crossing most of the image (e.g.
    satellites). Cosmic rays and hot pixels are dropped before the search
    (:func:`sharp_pixels`): pixels above ``sharp_snr`` sigma and ``sharp_ratio`` times the mean
    of their neighbours along both axes (off automatically for FWHM < 1.5 px).
    ``rb_threshold`` is used by :func:`zsds.streaks.evaluate.evaluate_streaks`;
    :func:`zsds.streaks.find.find_streaks` reports every streak with its score.
    """

    threshold: float = 5.5  #: detection threshold on a segment's matched-filter S/N
    method: Literal["frt", "bank"] = "frt"  #: "frt": fast Radon transform; "bank": FFT kernel bank
    binning: int = 2  #: block-sum factor of the image searched (1: native pixels)
    min_segment_fwhm: float = 2.0  #: shortest bank segment (FWHM; frt: rounded up to 2**k binned)
    max_length: float = 512.0  #: longest segment of the bank (px); longer: merged fragments
    n_angles: int = 36  #: angles of the "bank" method, uniform in [0, 180) deg
    bank_lengths: tuple[float, ...] = (8.0, 20.0, 40.0)  #: segment lengths of "bank" (px)
    point_veto: float = 1.1  #: factor over the ideal point-source line/point ratio needed
    point_excess: float = 2.5  #: S/N a candidate must beat a point source of its peak by
    merge_perp_fwhm: float = 2.0  #: perpendicular grouping tolerance (FWHM, >= 2 * binning px)
    min_length_fwhm: float = 2.0  #: shorter streaks (FWHM) are point-like: rejected
    snr_min: float = 7.0  #: least fitted S/N (flux / flux error) of a reported streak
    max_candidates: int = 20000  #: candidate segments kept per transform level (brightest first)
    max_streaks: int = 200  #: groups refined and fitted per image (brightest first)
    merge_angle_deg: float = 10.0  #: angle tolerance for merging fitted collinear streaks (deg)
    merge_gap_fwhm: float = 4.0  #: largest gap merged between collinear streaks (FWHM, >= 10 px)
    radon: bool = False  #: also run the Radon pass for very long, faint streaks
    radon_binning: int = 8  #: block-sum factor of the Radon pass
    radon_threshold: float = 8.0  #: threshold of the Radon pass (robust z-score of the sinogram)
    rb_threshold: float = 0.5  #: streak real-bogus score at or above which a streak is real
    sharp_ratio: float = 2.5  #: times the neighbours' mean for a sharp pixel; <= 0: off
    sharp_snr: float = 5.0  #: least S/N (sigma) of a sharp pixel ignored by the search

    def __post_init__(self) -> None:
        if self.method not in ("frt", "bank"):
            raise ValueError(f"method must be 'frt' or 'bank', got {self.method!r}")
        if self.binning < 1:
            raise ValueError("binning must be >= 1")
        if self.threshold <= 0:
            raise ValueError("threshold must be positive")


DEFAULT_CONFIG = StreakConfig()
"""The default settings (a module-level singleton used as default argument)."""

SEGMENT_COLUMNS: tuple[str, ...] = ("x0", "y0", "x1", "y1", "xmid", "ymid", "length", "angle")
"""Geometry of a streak: end points, midpoint (px), length (px), angle (deg)."""


def bin_image(z: np.ndarray, b: int) -> np.ndarray:
    """Block sums over ``b x b`` pixels divided by ``b`` (zero-padded to a multiple of ``b``).

    Unit-variance white noise stays unit-variance white noise.
    """
    if b == 1:
        return z.astype(np.float32, copy=False)
    ny, nx = z.shape
    py, px = -ny % b, -nx % b
    if py or px:
        z = np.pad(z, ((0, py), (0, px)))
    nyb, nxb = z.shape[0] // b, z.shape[1] // b
    out = z.reshape(nyb, b, nxb, b).sum(axis=(1, 3), dtype=np.float32)
    out *= np.float32(1.0 / b)
    return out


def canonical_segments(
    x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Order end points so the angle of ``(x1 - x0, y1 - y0)`` lies in ``[0, 180)`` degrees.

    Returns
    -------
    x0, y0, x1, y1, angle : ndarray
    """
    x0, y0, x1, y1 = (np.asarray(a, float).copy() for a in (x0, y0, x1, y1))
    ang = np.degrees(np.arctan2(y1 - y0, x1 - x0))
    flip = (ang < 0) | (ang >= 180)
    x0[flip], x1[flip] = x1[flip].copy(), x0[flip].copy()
    y0[flip], y1[flip] = y1[flip].copy(), y0[flip].copy()
    ang = np.mod(ang, 180.0)
    ang = np.where(ang >= 180.0, 0.0, ang)
    return x0, y0, x1, y1, ang
