"""The simulator's true PSF: exact pixel integrals, its FWHM, and that it is not a Moffat."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.optimize import least_squares
from scipy.special import j0

from zsds.core.instrument import PIXEL_SCALE
from zsds.core.psf import PSFModel, moffat_stamps
from zsds.sim.observing import SEEING_RANGE
from zsds.sim.optics import KOLMOGOROV_FWHM, FocalPlanePSF, QuadrantTruePSF
from zsds.sim.render import render_points

# A quadrant near the optical axis (CCD 6), 512 px: the optics term is ~ its on-axis value.
CCD, QID, SIZE = 6, 1, 512


class _RoundPSF(QuadrantTruePSF):
    """The true PSF with the optical ellipticity switched off (q = 1), for a round oracle."""

    def params(self, x, y):
        w_atm, w_opt, q, theta = super().params(x, y)
        return w_atm, w_opt, np.ones_like(q), np.zeros_like(theta)


def _round_psf(seeing: float, optics: float = 0.5) -> QuadrantTruePSF:
    return _RoundPSF(FocalPlanePSF(seeing, optics, 0.0, 0.0), CCD, QID, SIZE, SIZE)


def _radial_sky_profile(w_atm: float, w_opt: float) -> tuple[np.ndarray, np.ndarray]:
    """Independent oracle: the round PSF on the sky (per px^2) by a Hankel transform of its
    OTF, p(r) = 2 pi int T(k) J0(2 pi k r) k dk, on a dense radius grid."""
    k = np.linspace(0.0, 12.0, 12001)
    sig = w_opt / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    t = np.exp(-3.44 * (k * w_atm / KOLMOGOROV_FWHM) ** (5 / 3) - 2 * np.pi**2 * sig**2 * k**2)
    r = np.linspace(0.0, 12.0, 2401)
    p = np.array([np.trapezoid(t * j0(2 * np.pi * k * ri) * k, k) for ri in r]) * 2 * np.pi
    return r, p


@pytest.mark.parametrize("seeing", [SEEING_RANGE[0], 2.0])
def test_stamps_are_pixel_integrals(seeing):
    """Stamp pixels = the sky profile integrated over each pixel (40 x 40 midpoint samples of
    an independently computed radial profile), at random sub-pixel phases."""
    psf = _round_psf(seeing)
    w_atm, w_opt, *_ = (float(a[0]) for a in psf.params(np.array([256.0]), np.array([256.0])))
    r, p = _radial_sky_profile(w_atm, w_opt)
    rng = np.random.default_rng(4)
    x = 256 + rng.uniform(-0.5, 0.5, 5)
    y = 256 + rng.uniform(-0.5, 0.5, 5)
    stamps = psf.stamps(x, y, 9)
    sub = (np.arange(40) + 0.5) / 40 - 0.5
    grid = np.arange(-4, 5)
    for xs, ys, st in zip(x, y, stamps, strict=True):
        dx, dy = xs - round(xs), ys - round(ys)
        u = grid[None, :, None, None] + sub[None, None, None, :] - dx
        v = grid[:, None, None, None] + sub[None, None, :, None] - dy
        expected = np.interp(np.hypot(u, v), r, p).mean(axis=(2, 3))
        assert np.abs(st - expected).max() < 1e-3 * expected.max()


def test_stamp_protocol_and_centroid():
    """The truth implements PSFModel: unit sum, and its centroid is the star's position."""
    psf = _round_psf(1.5)
    assert isinstance(psf, PSFModel)
    for x, y in [(100.0, 100.0), (200.31, 300.77), (50.5, 60.25)]:
        st = psf.stamp(x, y, 41)
        assert st.sum() == pytest.approx(1.0)
        g = np.arange(-20, 21)
        # The wing beyond the stamp is cut off-centre by the offset: a bias of < 0.01 px.
        assert (st.sum(axis=0) * g).sum() == pytest.approx(x - round(x), abs=0.01)
        assert (st.sum(axis=1) * g).sum() == pytest.approx(y - round(y), abs=0.01)


def test_render_points_uses_the_truth_stamps():
    psf = _round_psf(1.2)
    img = np.zeros((64, 100), np.float32)
    x, y, flux = np.array([20.3, 70.8]), np.array([30.6, 31.1]), np.array([2e4, 2e4])
    render_points(img, x, y, flux, psf)
    st = psf.stamps(x, y, 23) * np.float32(2e4)
    np.testing.assert_allclose(img[20:43, 9:32], st[0], atol=2e-3)
    np.testing.assert_allclose(img[20:43, 60:83], st[1], atol=2e-3)
    # The wing beyond the stamp (~0.5% at this flux tier) is dropped, not folded in.
    assert 0.99 < img.sum() / flux.sum() < 0.999


def test_render_any_offsets_and_derivatives():
    """render() on pixel grids equals the stamps, on a fine grid it interpolates the same
    tables, and its derivatives match finite differences."""
    psf = QuadrantTruePSF(FocalPlanePSF(1.0, 0.5, 0.05, 0.7), CCD, QID, SIZE, SIZE)
    x, y = np.array([100.37, 300.9]), np.array([200.61, 50.02])
    st, dx, dy = psf.stamps(x, y, 15, deriv=True)
    g = np.arange(15) - 7
    ux = g[None, :] - (x - np.round(x))[:, None]
    uy = g[None, :] - (y - np.round(y))[:, None]
    np.testing.assert_allclose(psf.render(x, y, ux, uy), st, atol=1e-7)
    e = 1e-3
    fd_x = (psf.stamps(x + e, y, 15) - psf.stamps(x - e, y, 15)) / (2 * e)
    fd_y = (psf.stamps(x, y + e, 15) - psf.stamps(x, y - e, 15)) / (2 * e)
    assert np.abs(dx - fd_x).max() < 2e-3 * np.abs(fd_x).max()
    assert np.abs(dy - fd_y).max() < 2e-3 * np.abs(fd_y).max()
    # A half-pixel grid (the slow path, value by value) agrees with the stamps on the pixels.
    half = np.arange(-14, 15) / 2.0
    img, ddx, _ = psf.render(x, y, half[None, :] - (x - np.round(x))[:, None],
                             half[None, :] - (y - np.round(y))[:, None], deriv=True)
    np.testing.assert_allclose(img[:, ::2, ::2], st, atol=1e-6)
    np.testing.assert_allclose(ddx[:, ::2, ::2], dx, atol=1e-5)
    assert np.isfinite(ddx).all()
    assert psf.measured_fwhm(100.0, 200.0) == psf.fwhm_at(100.0, 200.0)


@pytest.mark.parametrize("seeing", [SEEING_RANGE[0], 1.5, 3.0])
def test_fwhm_at_is_the_rendered_fwhm(seeing):
    """fwhm_at = FWHM of the pixel-convolved profile: here measured independently, as
    2 sqrt(area / pi) of the radial oracle box-filtered over one pixel on a 1/40 px grid."""
    psf = _round_psf(seeing)
    w_atm, w_opt, *_ = (float(a[0]) for a in psf.params(np.array([256.0]), np.array([256.0])))
    r, p = _radial_sky_profile(w_atm, w_opt)
    step = 1 / 40
    g = np.arange(-6.0, 6.0 + step / 2, step)
    sky = np.interp(np.hypot(g[None, :], g[:, None]), r, p)
    pix = ndimage.uniform_filter(sky, size=40, mode="constant")
    area = np.count_nonzero(pix > 0.5 * pix.max()) * step**2
    measured = 2 * np.sqrt(area / np.pi)
    assert psf.fwhm_at(256.0, 256.0) == pytest.approx(measured, rel=0.01)
    sky_area = np.count_nonzero(sky > 0.5 * sky.max()) * step**2
    assert psf.sky_fwhm_at(256.0, 256.0) == pytest.approx(2 * np.sqrt(sky_area / np.pi), rel=0.01)


def test_best_seeing_is_1p2_px():
    """At the simulator's best seeing the rendered FWHM is ZTF's sharpest, ~1.2 px."""
    for optics in (0.4, 0.6):
        fwhm = _round_psf(SEEING_RANGE[0], optics).fwhm_at(256.0, 256.0)
        assert 1.15 < fwhm < 1.3, fwhm
    # and the seeing maps to it as documented: sqrt(seeing^2 + optics^2 + ~0.6 px^2)
    psf = _round_psf(2.0)
    approx = np.sqrt((2.0**2 + 0.5**2) / PIXEL_SCALE**2 + 0.58)
    assert psf.fwhm_at(256.0, 256.0) == pytest.approx(approx, rel=0.01)


@pytest.mark.parametrize("seeing", [SEEING_RANGE[0], 2.0])
def test_not_a_moffat(seeing):
    """The best pixel-integrated Moffat fits the core to < 1% of the peak but not the wing: the
    truth falls as r^-3.7 (Kolmogorov's r^-11/3) where the fitted Moffat falls as r^-2beta
    with beta > 4, so it holds > 10x less light beyond 4 FWHM and misses > 1.5% of the flux.
    A pipeline that models the PSF as a Moffat is therefore not fitting its own mirror."""
    psf = _round_psf(seeing)
    x, y, s = 256.3, 255.8, 61
    st = psf.stamps(np.array([x]), np.array([y]), s)[0].astype(float)
    dx, dy = x - round(x), y - round(y)

    def moffat(prm):
        f, fwhm, beta = prm
        one = moffat_stamps(np.array([dx]), np.array([dy]), np.array([fwhm]), beta, 1.0, 0.0,
                            s, np.float64, oversample=5)  # fmt: skip
        return f * one[0]

    fit = least_squares(lambda prm: (moffat(prm) - st).ravel(), [1.0, psf.sky_fwhm_at(x, y), 3.0],
                        bounds=([0.5, 0.3, 1.01], [2.0, 10.0, 20.0]))  # fmt: skip
    model = moffat(fit.x)
    flux, _, beta = fit.x
    h = s // 2
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
    rr = np.hypot(xx - dx, yy - dy)
    fwhm = psf.fwhm_at(x, y)
    wing = (rr > 4 * fwhm) & (rr < h)
    print(f"seeing {seeing}: Moffat beta {beta:.2f}, flux {flux:.4f}, core residual "
          f"{np.abs(st - model).max() / st.max():.4f} of the peak, wing light truth/Moffat "
          f"{st[wing].sum() / model[wing].sum():.0f}")
    assert beta > 4.0
    assert st[wing].sum() > 10 * model[wing].sum()
    assert flux < 0.985
    # The wing's log slope between 4 and 12 FWHM, from ring means.
    rings = [st[(rr > 0.9 * ri) & (rr < 1.1 * ri)].mean() for ri in (4 * fwhm, 12 * fwhm)]
    slope = np.log(rings[1] / rings[0]) / np.log(3.0)
    assert -4.2 < slope < -3.4, slope
    assert -2 * beta < -8.0
