"""Tests of the trailed-PSF model and its least-squares fit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zsds.sim.render import trail_points
from zsds.streaks import fit_streak, trail_norm, trailed_psf
from zsds.streaks.detect import FWHM_TO_SIGMA
from zsds.streaks.fit import FIT_KEYS, _model_and_jac, clip_to_image
from zsds.streaks.simulate import render_points, render_trails, streak_flux_for_snr

FWHM = 2.5
SIG = FWHM * FWHM_TO_SIGMA
SEG = (60.4, 80.2, 121.7, 101.9)


def _grid(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:n, 0:n]
    return xx.astype(float), yy.astype(float)


def test_trailed_psf_normalisation_and_limits() -> None:
    xx, yy = _grid()
    t = trailed_psf(xx, yy, *SEG, 1000.0, SIG)
    assert t.sum() == pytest.approx(1000.0, rel=1e-3)
    # Order of the end points does not matter.
    t2 = trailed_psf(xx, yy, SEG[2], SEG[3], SEG[0], SEG[1], 1000.0, SIG)
    np.testing.assert_allclose(t, t2, atol=1e-9)
    # Zero length is the Gaussian PSF.
    p = trailed_psf(xx, yy, 50.0, 60.0, 50.0, 60.0, 1.0, SIG)
    g = np.exp(-((xx - 50) ** 2 + (yy - 60) ** 2) / (2 * SIG**2)) / (2 * math.pi * SIG**2)
    np.testing.assert_allclose(p, g, atol=1e-8)


def test_model_matches_the_camera_simulator_rendering() -> None:
    """A line of PSF points every 0.5 px (zsds.sim.render.trail_points) is the closed form.

    The simulator's points include both end points, so its light spans half a step more at
    each end; with that and the pixel response (1/12 px^2) the two agree to < 1 % of the peak.
    """
    n = 200
    img = render_trails((n, n), [SEG[0]], [SEG[1]], [SEG[2]], [SEG[3]], [1000.0], FWHM)
    px, _, pf = trail_points(*(np.array([v]) for v in SEG), np.array([1000.0]), step=0.5)
    assert len(px) == math.ceil(math.hypot(SEG[2] - SEG[0], SEG[3] - SEG[1]) / 0.5) + 1
    np.testing.assert_allclose(pf.sum(), 1000.0)
    L = math.hypot(SEG[2] - SEG[0], SEG[3] - SEG[1])
    ux, uy = (SEG[2] - SEG[0]) / L, (SEG[3] - SEG[1]) / L
    ext = 0.25  # half the simulator's step
    xx, yy = _grid(n)
    model = trailed_psf(
        xx, yy, SEG[0] - ext * ux, SEG[1] - ext * uy, SEG[2] + ext * ux, SEG[3] + ext * uy,
        1000.0, math.sqrt(SIG**2 + 1 / 12),
    )
    assert np.abs(img - model).max() < 0.01 * img.max()


def test_analytic_jacobian() -> None:
    rng = np.random.default_rng(0)
    X, Y = rng.uniform(0, 40, 300), rng.uniform(0, 40, 300)
    q = np.array([20.0, 19.0, 14.0, 0.6, 150.0, 0.2, 1.3])
    _, J = _model_and_jac(X, Y, q, True)
    for k in range(7):
        dq = np.zeros(7)
        dq[k] = 1e-6 * max(1.0, abs(q[k]))
        num = (_model_and_jac(X, Y, q + dq, False)[0] - _model_and_jac(X, Y, q - dq, False)[0])
        np.testing.assert_allclose(J[:, k], num / (2 * dq[k]), atol=1e-6 * np.abs(num).max()
                                   / dq[k] + 1e-12)


@pytest.mark.parametrize("length", [0.0, 8.0, 40.0, 150.0])
def test_trail_norm_matches_pixel_sum(length: float) -> None:
    n = 256
    img = render_trails((n, n), [128 - length / 2], [128.0], [128 + length / 2], [128.0], [1.0],
                        FWHM, step=0.05)
    s_eff = math.sqrt(SIG**2 + 1 / 12)
    assert float(trail_norm(length, s_eff)) == pytest.approx(math.sqrt((img**2).sum()), rel=0.03)


def test_fit_recovers_end_points_flux_and_errors() -> None:
    flux = float(streak_flux_for_snr(30.0, math.hypot(61.3, 21.7), FWHM, 1.0))
    tr = render_trails((160, 180), [SEG[0]], [SEG[1]], [SEG[2]], [SEG[3]], [flux], FWHM)
    init = {"x0": SEG[0] + 2.0, "y0": SEG[1] - 1.5, "x1": SEG[2] - 3.0, "y1": SEG[3] + 1.0}
    res = []
    for seed in range(12):
        img = tr + np.random.default_rng(seed).standard_normal(tr.shape)
        res.append(fit_streak(img, 1.0, FWHM, init))
    assert set(FIT_KEYS) <= set(res[0])
    assert all(r["success"] == 1.0 and r["edge"] == 0.0 for r in res)
    fl = np.array([r["flux"] for r in res])
    err = np.array([r["fluxerr"] for r in res])
    assert np.mean(fl) == pytest.approx(flux, rel=0.03)
    # The reported error describes the scatter (loose: 12 draws).
    assert 0.5 < np.std(fl) / np.mean(err) < 1.6
    snr = np.array([r["snr"] for r in res])
    assert np.median(snr) == pytest.approx(30.0, rel=0.15)
    for r in res:
        assert math.hypot(r["x0"] - SEG[0], r["y0"] - SEG[1]) < 2.0
        assert math.hypot(r["x1"] - SEG[2], r["y1"] - SEG[3]) < 2.0
        assert r["angle"] == pytest.approx(math.degrees(math.atan2(21.7, 61.3)), abs=1.5)
        assert r["width"] == pytest.approx(FWHM, rel=0.25)
        assert 0.8 < r["chi2dof"] < 1.2


def test_clip_to_image() -> None:
    assert clip_to_image(10, 20, 30, 40, (100, 100)) == (10, 20, 30, 40, 1.0, 0)
    x0, y0, x1, y1, keep, edge = clip_to_image(-20.5, 10, 79.5, 10, (50, 60))  # nx = 60
    assert (x0, y0, x1, y1, edge) == (-0.5, 10, 59.5, 10, 2) and keep == pytest.approx(0.6)
    assert clip_to_image(10, -5, 10, -1, (50, 60))[4:] == (0.0, 2)  # misses the image


def test_trail_leaving_the_image_is_cut_at_the_edge() -> None:
    """Beyond the edge only the flux per unit length is measured: the fit reports the part
    on the image (end point on the edge, its length, its share of the flux)."""
    seg = (110.0, 60.0, 240.0, 95.0)
    flux = 40000.0
    full = render_trails((160, 300), [seg[0]], [seg[1]], [seg[2]], [seg[3]], [flux], FWHM)
    img = full[:, :180] + np.random.default_rng(1).standard_normal((160, 180))
    r = fit_streak(img, 1.0, FWHM, {"x0": 112.0, "y0": 61.0, "x1": 179.0, "y1": 79.0})
    frac = (179.5 - seg[0]) / (seg[2] - seg[0])
    assert r["success"] == 1.0 and r["edge"] == 1.0
    assert r["x1"] == pytest.approx(179.5) and r["y1"] == pytest.approx(
        seg[1] + frac * (seg[3] - seg[1]), abs=1.5)
    assert math.hypot(r["x0"] - seg[0], r["y0"] - seg[1]) < 2.0
    assert r["length"] == pytest.approx(frac * math.hypot(130.0, 35.0), abs=2.0)
    assert r["flux"] == pytest.approx(frac * flux, rel=0.05)
    assert r["xmid"] == pytest.approx(0.5 * (r["x0"] + r["x1"]))


def test_fit_ignores_masked_pixels_and_flags_sharp_width() -> None:
    flux = 3000.0
    img = render_trails((160, 180), [SEG[0]], [SEG[1]], [SEG[2]], [SEG[3]], [flux], FWHM)
    img = img + np.random.default_rng(3).standard_normal(img.shape)
    mask = np.zeros(img.shape, np.uint8)
    img[85:95, 80:90] = 1e5
    mask[85:95, 80:90] = 1
    r = fit_streak(img, 1.0, FWHM, dict(zip(("x0", "y0", "x1", "y1"), SEG, strict=True)), mask)
    assert r["nmask"] > 0
    assert r["flux"] == pytest.approx(flux, rel=0.05)
    # A sharp (unconvolved) line fits with a width well below the PSF's.
    sharp = np.random.default_rng(4).standard_normal((100, 100))
    sharp[50, 20:80] += 20.0
    r2 = fit_streak(sharp, 1.0, FWHM, {"x0": 20, "y0": 50, "x1": 79, "y1": 50})
    assert r2["width"] < 0.5 * FWHM
    assert r2["chi2dof"] > 2.0


def test_fit_of_a_point_source_has_short_length() -> None:
    img = render_points((80, 80), [40.2], [39.7], [2000.0], FWHM)
    img = img + np.random.default_rng(5).standard_normal(img.shape)
    r = fit_streak(img, 1.0, FWHM, {"x0": 36.0, "y0": 38.0, "x1": 44.0, "y1": 41.0})
    assert r["length"] < 1.5
    assert math.hypot(r["xmid"] - 40.2, r["ymid"] - 39.7) < 0.3


def test_fit_failure_is_reported() -> None:
    img = np.zeros((50, 50))
    r = fit_streak(img, 1.0, FWHM, {"x0": 10, "y0": 10, "x1": 30, "y1": 30},
                   np.ones((50, 50), np.uint8))
    assert r["status"] < 0 and r["success"] == 0.0 and math.isnan(r["flux"])


def test_flux_correction_for_a_moffat_psf() -> None:
    """The camera simulator's Moffat PSF loses ~15 % of the flux to the Gaussian model;
    trail_flux_correction, measured from the PSF image, restores it."""
    from zsds.core.psf import moffat_stamps
    from zsds.streaks.fit import trail_flux_correction

    beta, flux = 3.0, 5000.0
    x0, y0, x1, y1 = 40.3, 50.2, 95.1, 74.6
    px, py, pf = trail_points(*(np.array([v]) for v in (x0, y0, x1, y1)), np.array([flux]),
                              step=0.5)
    ix, iy = np.round(px).astype(int), np.round(py).astype(int)
    st = moffat_stamps(px - ix, py - iy, np.full(len(px), FWHM), beta, 1.0, 0.0, 41, np.float64)
    img = np.zeros((140, 150))
    for k in range(len(px)):
        img[iy[k] - 20 : iy[k] + 21, ix[k] - 20 : ix[k] + 21] += pf[k] * st[k]
    img += np.random.default_rng(6).standard_normal(img.shape) * 0.5
    r = fit_streak(img, 0.5, FWHM, {"x0": x0, "y0": y0, "x1": x1, "y1": y1})
    assert r["flux"] < 0.9 * flux
    psf = moffat_stamps(np.zeros(1), np.zeros(1), np.array([FWHM]), beta, 1.0, 0.0, 41,
                        np.float64)[0]
    c = trail_flux_correction(psf, FWHM, r["length"], r["angle"])
    assert r["flux"] * c == pytest.approx(flux, rel=0.02)
    # A Gaussian PSF needs (almost) no correction.
    yy, xx = np.mgrid[-15:16, -15:16]
    g = np.exp(-(xx**2 + yy**2) / (2 * (SIG**2 + 1 / 12)))
    assert trail_flux_correction(g, FWHM, 40.0, 30.0) == pytest.approx(1.0, abs=0.01)
    # Through the one-call driver (what the pipeline does with the difference-image PSF).
    from zsds.streaks import find_streaks

    found = find_streaks(img, 0.5, FWHM, psf=psf)
    assert len(found) == 1
    assert found["flux_corr"].iloc[0] == pytest.approx(c, rel=0.02)
    assert found["flux"].iloc[0] == pytest.approx(flux, rel=0.03)
    assert (find_streaks(img, 0.5, FWHM, psf=-psf)["flux_corr"] == 1.0).all()
