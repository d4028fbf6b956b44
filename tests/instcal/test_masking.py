"""Column defects found in the image itself (hot dark-current columns, low columns)."""

from __future__ import annotations

import numpy as np

from zsds.instcal.masking import MaskConfig, column_defect_mask


def _sky(seed: int, ny: int = 512, nx: int = 512) -> np.ndarray:
    """Sky + noise + stars + one big smooth galaxy (none of which is a column defect)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(200.0, 6.0, (ny, nx))
    yy, xx = np.mgrid[0:ny, 0:nx]
    for x, y, f in zip(rng.uniform(5, nx - 5, 300), rng.uniform(5, ny - 5, 300),
                       10 ** rng.uniform(2, 5.5, 300), strict=True):
        sl = (slice(int(y) - 8, int(y) + 9), slice(int(x) - 8, int(x) + 9))
        img[sl] += f / (2 * np.pi * 1.2**2) * np.exp(
            -((xx[sl] - x) ** 2 + (yy[sl] - y) ** 2) / (2 * 1.2**2))
    img += 400.0 * np.exp(-((xx - 300) ** 2 + (yy - 200) ** 2) / (2 * 25.0**2))
    return img


def test_hot_and_low_segments_are_flagged_exactly():
    img = _sky(1)
    img[250:, 203] += 40.0  # a hot column segment from row 250 up (about 6.7 sigma per pixel)
    img[:150, 77] -= 30.0   # a low column segment
    bad = np.zeros(img.shape, bool)
    hot, low = column_defect_mask(img, bad, 6.0, MaskConfig())
    assert set(np.flatnonzero(hot.any(axis=0))) == {203}
    assert set(np.flatnonzero(low.any(axis=0))) == {77}
    # The whole segment is covered; beyond its ends at most the rest of the block holding the
    # end and one more block (32 rows each).
    assert hot[250:, 203].all() and not hot[:250 - 64, 203].any()
    assert low[:150, 77].all() and not low[150 + 64:, 77].any()


def test_clean_image_with_stars_and_galaxy_has_no_defect():
    for seed in range(3):
        hot, low = column_defect_mask(_sky(seed), np.zeros((512, 512), bool), 6.0,
                                      MaskConfig())
        assert not hot.any() and not low.any()


def test_short_excess_is_not_a_defect():
    """One block (a star's short bleed below saturation) is not enough."""
    img = _sky(4)
    img[100:130, 50] += 80.0
    hot, _ = column_defect_mask(img, np.zeros(img.shape, bool), 6.0, MaskConfig())
    assert not hot[:, 50].any()
