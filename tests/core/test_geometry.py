"""Segment clipping."""

from __future__ import annotations

import pytest

from zsds.core.geometry import clip_segment


def test_clip_segment() -> None:
    box = ((0.0, 10.0), (0.0, 5.0))
    assert clip_segment(1, 1, 9, 4, *box) == (0.0, 1.0)
    assert clip_segment(-10, 2, 20, 2, *box) == pytest.approx((1 / 3, 2 / 3))
    assert clip_segment(5, -3, 5, 8, *box) == pytest.approx((3 / 11, 8 / 11))
    assert clip_segment(-5, -5, -1, -1, *box) is None
    assert clip_segment(11, 1, 11, 4, *box) is None  # parallel to an edge, outside
