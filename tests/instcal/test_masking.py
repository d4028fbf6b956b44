"""Column defects found in the image itself (hot dark-current columns, low columns)."""

from __future__ import annotations

import numpy as np
import pytest

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


def _star_field(rng: np.random.Generator, n: int, fwhm: float, shape=(512, 512)):
    """Stars integrated over their pixels (a core-and-halo double Gaussian, not the pipeline's
    Moffat), at random sub-pixel phases, in e-; returns the image and the star positions."""
    ny, nx = shape
    img = np.zeros(shape)  # the fluxes are returned too
    x = rng.uniform(8, nx - 8, n)
    y = rng.uniform(8, ny - 8, n)
    flux = 10 ** rng.uniform(3.5, 6.3, n)  # peaks below ZTF's full well at this seeing
    sub = (np.arange(8) + 0.5) / 8 - 0.5  # 8 x 8 samples per pixel
    for xs, ys, f in zip(x, y, flux, strict=True):
        ix, iy = int(xs), int(ys)
        gy, gx = np.mgrid[iy - 6:iy + 7, ix - 6:ix + 7]
        u = gx[..., None, None] + sub[None, None, None, :] - xs
        v = gy[..., None, None] + sub[None, None, :, None] - ys
        r2 = u**2 + v**2
        s1, s2 = fwhm / 2.355, 2.0 * fwhm / 2.355
        prof = (0.8 * np.exp(-r2 / (2 * s1**2)) / (2 * np.pi * s1**2)
                + 0.2 * np.exp(-r2 / (2 * s2**2)) / (2 * np.pi * s2**2)).mean(axis=(2, 3))
        img[iy - 6:iy + 7, ix - 6:ix + 7] += f * prof
    return img, x, y, flux


@pytest.mark.parametrize("fwhm", [1.25, 2.0, 3.0])
def test_cosmic_rays_found_and_star_cores_left_alone(fwhm):
    """>= 90% of simulated hits flagged (91-94% measured); no core of a star with S/N > 50
    flagged, down to ZTF's sharpest seeing (effective FWHM ~1.2 px, as on the real quadrant
    that ``tests/instcal/test_real_quadrant.py`` checks)."""
    from zsds.instcal.masking import cosmic_ray_mask
    from zsds.sim.render import add_cosmic_rays

    rng = np.random.default_rng(11)
    gain, rn, sky = 6.0, 9.0, 150.0
    stars, sx, sy, flux = _star_field(rng, 300, fwhm)
    e = (stars + sky * gain).astype(np.float32)
    crs = add_cosmic_rays(e, rng, 6000.0)  # 200 times a 30 s exposure's hits
    e = rng.poisson(np.maximum(e, 0)).astype(np.float32) + rng.normal(0, rn, e.shape)
    dn = (e / gain).astype(np.float32)
    cr = cosmic_ray_mask(dn, np.zeros(dn.shape, bool), gain, rn, 60000.0, MaskConfig(), 2.0)
    hit = [cr[max(round(y) - 1, 0):round(y) + 2, max(round(x) - 1, 0):round(x) + 2].any()
           for x, y in zip(crs.x0, crs.y0, strict=True)]
    assert len(crs) > 100 and np.mean(hit) >= 0.90
    # No core of a star with S/N > 50 (> 5,000 e- here) is flagged, unless a hit's track
    # passes within 4 px of it.
    t = np.linspace(0.0, 1.0, 40)[:, None]
    tx = (crs.x0.to_numpy() + t * (crs.x1 - crs.x0).to_numpy()).ravel()
    ty = (crs.y0.to_numpy() + t * (crs.y1 - crs.y0).to_numpy()).ravel()
    clean = [f > 5000 and np.hypot(tx - x, ty - y).min() > 4
             for x, y, f in zip(sx, sy, flux, strict=True)]
    cores = [cr[round(y) - 1:round(y) + 2, round(x) - 1:round(x) + 2].any()
             for x, y in zip(sx, sy, strict=True)]
    assert sum(clean) > 150
    assert not any(c for c, ok in zip(cores, clean, strict=True) if ok)
