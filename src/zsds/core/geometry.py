"""Small plane-geometry helpers shared by the image stages."""

from __future__ import annotations

import math


def clip_segment(x0: float, y0: float, x1: float, y1: float,
                 xlim: tuple[float, float], ylim: tuple[float, float]
                 ) -> tuple[float, float] | None:
    """Liang-Barsky clip of the segment (x0, y0)-(x1, y1) to a rectangle.

    Parameters
    ----------
    x0, y0, x1, y1 : float
        End points.
    xlim, ylim : (float, float)
        The rectangle's bounds (inclusive).

    Returns
    -------
    (t0, t1) or None
        The kept part as fractions along the segment (0 <= t0 <= t1 <= 1: the points
        ``(x0 + t dx, y0 + t dy)``), or None when the segment misses the rectangle.
    """
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x0 - xlim[0]), (dx, xlim[1] - x0), (-dy, y0 - ylim[0]),
                 (dy, ylim[1] - y0)):
        if p == 0:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
    return None if t0 > t1 else (t0, t1)


def point_segment_distance(px: float, py: float, seg: tuple[float, float, float, float]
                           ) -> float:
    """Distance from the point (px, py) to the segment ``(x0, y0, x1, y1)`` (same units)."""
    x0, y0, x1, y1 = seg
    vx, vy = x1 - x0, y1 - y0
    L2 = vx * vx + vy * vy
    t = 0.0 if L2 == 0 else min(1.0, max(0.0, ((px - x0) * vx + (py - y0) * vy) / L2))
    return float(math.hypot(px - x0 - t * vx, py - y0 - t * vy))
