"""Small plane-geometry helpers shared by the image stages."""

from __future__ import annotations


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
