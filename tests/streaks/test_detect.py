"""Tests of streak detection: the partial Radon transform, the search and artefact rejection."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from zsds.streaks import StreakConfig, detect_streaks, find_streaks
from zsds.streaks.detect import (
    bin_image,
    canonical_segments,
    gaussian_kernel1d,
    normalised_image,
    sharp_lines,
    sharp_pixels,
)
from zsds.streaks.frt import frt_levels, line_noise, line_offsets
from zsds.streaks.simulate import SimConfig, render_points, render_trails, simulate_difference

FWHM = 2.5
QUIET = {  # a SimConfig with nothing but noise
    "n_streaks": 0.0,
    "n_cosmics": 0.0,
    "n_tracks": 0.0,
    "n_dipoles": 0.0,
    "n_rings": 0.0,
    "n_variables": 0.0,
    "n_badcols": 0.0,
    "n_saturated": 0.0,
}


def _noise(seed: int, shape: tuple[int, int] = (512, 512)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _with_streak(img: np.ndarray, seg: tuple[float, float, float, float], flux: float,
                 fwhm: float = FWHM) -> np.ndarray:
    x0, y0, x1, y1 = seg
    return (img + render_trails(img.shape, [x0], [y0], [x1], [y1], [flux], fwhm)).astype(
        np.float32
    )


# ----------------------------------------------------------------------------------- FRT


def test_frt_sums_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    img = rng.standard_normal((23, 21)).astype(np.float32)
    kmax = 3
    offs = line_offsets(kmax)
    pad = (1 << kmax) - 1
    for lv in frt_levels(img, kmax, 1):
        w = 1 << lv.k
        nb, _, rows = lv.sums.shape
        # Brute force: sum the image along every digital line of this level.
        ii = np.arange(w)
        for b in range(nb):
            xs = lv.offset + b * w + ii
            for s in range(w):
                ys = (np.arange(rows)[:, None] - pad) + offs[lv.k][s][None, :]
                ok = (xs[None, :] < 21) & (ys >= 0) & (ys < 23)
                vals = np.where(ok, img[np.clip(ys, 0, 22), np.clip(xs, 0, 20)[None, :]], 0.0)
                np.testing.assert_allclose(lv.sums[b, s], vals.sum(axis=1), atol=1e-4)


def test_line_offsets_end_at_rise() -> None:
    offs = line_offsets(5)
    for k, o in enumerate(offs):
        w = 1 << k
        assert o.shape == (w, w)
        np.testing.assert_array_equal(o[:, -1], np.arange(w))
        assert (np.diff(o, axis=1) >= 0).all() and (np.diff(o, axis=1) <= 1).all()


def test_line_noise_matches_empirical() -> None:
    rng = np.random.default_rng(2)
    g = gaussian_kernel1d(0.8)
    z = ndi.correlate1d(rng.standard_normal((700, 700)), g, axis=0, mode="constant")
    z = ndi.correlate1d(z, g, axis=1, mode="constant").astype(np.float32)
    k = 4
    expected = line_noise(line_offsets(k)[k], g)
    for lv in frt_levels(z, k, k):
        if lv.offset == 0:
            emp = lv.sums[2:-2, :, 40:-40].std(axis=(0, 2))
            np.testing.assert_allclose(emp, expected, rtol=0.05)


# ------------------------------------------------------------------------------- helpers


def test_normalised_image_masks_and_bad_sigma() -> None:
    d = np.ones((4, 4), np.float32) * 3.0
    s = np.full((4, 4), 1.5, np.float32)
    s[0, 0] = 0.0
    d[1, 1] = np.nan
    m = np.zeros((4, 4), np.uint8)
    m[2, 2] = 4
    z = normalised_image(d, s, m)
    assert z[0, 0] == 0 and z[1, 1] == 0 and z[2, 2] == 0
    assert z[3, 3] == pytest.approx(2.0)


def test_bin_image_keeps_unit_noise() -> None:
    z = _noise(3, (600, 602))
    zb = bin_image(z, 2)
    assert zb.shape == (300, 301)
    assert zb.std() == pytest.approx(1.0, abs=0.02)


def test_canonical_angle_convention() -> None:
    # Up-left segment: reordered so the angle lies in [0, 180).
    x0, y0, x1, y1, ang = canonical_segments(
        np.array([10.0, 0.0]), np.array([0.0, 0.0]), np.array([0.0, 10.0]), np.array([10.0, 0.0])
    )
    assert ang[0] == pytest.approx(135.0) and (x0[0], y0[0], x1[0], y1[0]) == (10, 0, 0, 10)
    assert ang[1] == pytest.approx(0.0)


def test_sharp_pixels_flags_hits_not_psfs_or_trails() -> None:
    img = _noise(4, (128, 128))
    img[20, 30] += 80.0  # single-pixel hit
    img[60, 60] += 50.0  # two-pixel hit
    img[60, 61] += 30.0
    img += render_points(img.shape, [90.3], [40.7], [5000.0], FWHM).astype(np.float32)
    img = _with_streak(img, (20, 100, 100, 110), 8000.0)
    flags = sharp_pixels(normalised_image(img, 1.0))
    assert flags[20, 30] and flags[60, 60] and flags[60, 61]
    assert not flags[35:47, 85:97].any()  # the star
    assert not flags[95:115, 15:105].any()  # the trail


def test_sharp_lines_flags_bad_column_not_vertical_trail() -> None:
    img = _noise(5, (256, 256))
    img[40:200, 50] += 3.0  # hot column, 3 sigma per pixel
    img = _with_streak(img, (150.4, 30.0, 150.6, 220.0), 3000.0)  # vertical trail
    flags = sharp_lines(normalised_image(img, 1.0))
    assert flags[60:180, 50].mean() > 0.5
    assert not flags[:, 145:156].any()


# --------------------------------------------------------------------------- detection


def test_single_streak_detected_and_fitted() -> None:
    seg = (100.3, 200.7, 180.9, 240.2)
    img = _with_streak(_noise(6), seg, 600.0)
    det = detect_streaks(img, 1.0, FWHM)
    assert len(det) == 1
    d = det.iloc[0]
    assert d["angle"] == pytest.approx(math.degrees(math.atan2(39.5, 80.6)), abs=2.0)
    found = find_streaks(img, 1.0, FWHM)
    assert len(found) == 1
    f = found.iloc[0]
    # S/N ~ 30: end points good to ~0.6 px (plus the simulator's +0.25 px trail overhang).
    assert math.hypot(f["x0"] - seg[0], f["y0"] - seg[1]) < 2.0
    assert math.hypot(f["x1"] - seg[2], f["y1"] - seg[3]) < 2.0
    assert f["flux"] == pytest.approx(600.0, rel=0.10)
    assert f["rb"] >= StreakConfig().rb_threshold
    assert f["length"] == pytest.approx(math.hypot(80.6, 39.5) + 0.5, abs=2.5)  # sd ~0.8 px


@pytest.mark.parametrize("method", ["frt", "bank"])
def test_methods_agree_on_a_short_streak(method: str) -> None:
    seg = (300.0, 300.0, 318.0, 290.0)
    img = _with_streak(_noise(7, (400, 400)), seg, 300.0)
    det = detect_streaks(img, 1.0, FWHM, config=StreakConfig(method=method))
    assert len(det) == 1
    assert det["xmid"].iloc[0] == pytest.approx(309.0, abs=2.0)
    assert det["ymid"].iloc[0] == pytest.approx(295.0, abs=2.0)


def test_pure_noise_gives_no_streaks() -> None:
    for seed in (10, 11):
        img = _noise(seed, (1024, 1024))
        assert len(detect_streaks(img, 1.0, FWHM)) <= 1
        assert len(find_streaks(img, 1.0, FWHM)) == 0


def test_cosmic_rays_point_residuals_and_hot_pixels_are_not_streaks() -> None:
    cfg = SimConfig(
        shape=(768, 768),
        fwhm=FWHM,
        **{**QUIET, "n_cosmics": 60.0, "n_variables": 20.0, "n_dipoles": 4.0},
        variable_snr_range=(10.0, 500.0),
        cosmic_peak_range=(10.0, 1000.0),
    )
    sim = simulate_difference(np.random.default_rng(12), cfg)
    sim.image[100, 200] += 500.0  # a hot pixel
    found = find_streaks(sim.image, sim.sigma, FWHM, sim.mask)
    real = found[found["rb"] >= StreakConfig().rb_threshold] if len(found) else found
    assert len(real) == 0, real


def test_masked_pixels_are_ignored() -> None:
    seg = (50.0, 60.0, 150.0, 80.0)
    img = _with_streak(_noise(13, (256, 256)), seg, 2000.0)
    img[200:210, 200:210] = 1e6  # garbage, masked
    mask = np.zeros(img.shape, np.uint8)
    mask[200:210, 200:210] = 1
    mask[40:100, 40:160] = 1  # hides the streak
    assert len(detect_streaks(img, 1.0, FWHM, mask)) == 0
    assert len(detect_streaks(img, 1.0, FWHM)) >= 1  # without the mask both show up


def test_long_faint_streak_found_as_one() -> None:
    # 400 px at integrated S/N 14 (0.7 sigma per FWHM of trail): only a long filter finds it.
    seg = (40.0, 100.0, 430.0, 188.0)
    from zsds.streaks.simulate import streak_flux_for_snr

    L = math.hypot(seg[2] - seg[0], seg[3] - seg[1])
    flux = float(streak_flux_for_snr(14.0, L, FWHM, 1.0))
    img = _with_streak(_noise(14), seg, flux)
    found = find_streaks(img, 1.0, FWHM)
    assert len(found) == 1
    assert found["length"].iloc[0] == pytest.approx(L, rel=0.1)


def test_detect_output_columns_and_types() -> None:
    det = detect_streaks(_noise(15, (128, 128)), 1.0, FWHM)
    assert isinstance(det, pd.DataFrame)
    assert list(det.columns) == [
        "x0", "y0", "x1", "y1", "xmid", "ymid", "length", "angle", "snr_det", "snr_prof",
        "n_seg", "seg_length", "pt_ratio",
    ]


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        StreakConfig(method="hough")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        StreakConfig(binning=0)
    with pytest.raises(ValueError):
        detect_streaks(np.zeros((8, 8)), 1.0, 0.0)


def test_optional_radon_pass_finds_a_line_across_the_image() -> None:
    from zsds.streaks.radon import _line_endpoints, radon_lines

    n = 512
    seg = (-40.0, 100.0, 560.0, 330.0)  # longer than the image
    img = _with_streak(_noise(16, (n, n)), seg, 4000.0)
    zb = bin_image(img, 8)
    th, off, z = radon_lines(zb, 8.0)
    assert len(z) >= 1 and z[0] > 8.0
    x0, y0, x1, y1 = (v * 8 + 3.5 for v in _line_endpoints(th[0], off[0], zb.shape))
    slope = (seg[3] - seg[1]) / (seg[2] - seg[0])
    for x, y in ((x0, y0), (x1, y1)):
        assert y == pytest.approx(seg[1] + slope * (x - seg[0]), abs=8.0)
    found = find_streaks(img, 1.0, FWHM, config=StreakConfig(radon=True))
    assert len(found) == 1
    assert found["length"].iloc[0] > 0.9 * math.hypot(n, n * slope)
