"""Tests of the ZOGY kernels on synthetic 256x256 Moffat-star images (deterministic seeds)."""

from __future__ import annotations

import numpy as np
import pytest

from zsds.core.psf import moffat_stamps
from zsds.diffim import ZogyConfig, psf_flux, psf_flux_error, zogy
from zsds.diffim.zogy import difference_zero_point, psf_hat

SIZE = 256
STAMP = 31
SIGMA_NEW = 10.0
SIGMA_REF = 5.0
FWHM_NEW = 2.0
FWHM_REF = 3.0


def _psf(fwhm: float) -> np.ndarray:
    return moffat_stamps(np.zeros(1), np.zeros(1), np.array([fwhm]), 3.0, 1.0, 0.0, STAMP)[0]


def _render(x: np.ndarray, y: np.ndarray, flux: np.ndarray, fwhm: float) -> np.ndarray:
    """Noise-free image of point sources (sub-pixel positions) with a Moffat PSF."""
    img = np.zeros((SIZE, SIZE))
    ix = np.round(x).astype(int)
    iy = np.round(y).astype(int)
    stamps = moffat_stamps(x - ix, y - iy, np.full(len(x), fwhm), 3.0, 1.0, 0.0, STAMP, np.float64)
    h = STAMP // 2
    for k in range(len(x)):
        img[iy[k] - h : iy[k] + h + 1, ix[k] - h : ix[k] + h + 1] += flux[k] * stamps[k]
    return img


def _observe(model: np.ndarray, sigma: float, rng: np.random.Generator):
    """Gaussian background plus (Gaussian-approximated) Poisson source noise, gain 1."""
    var = sigma**2 + np.clip(model, 0, None)
    img = model + rng.normal(size=model.shape) * np.sqrt(var)
    return img.astype(np.float32), var.astype(np.float32)


def _pair(seed: int, transients=(), n_stars: int = 200):
    """New/ref pair of the same static sky; ``transients`` = (x, y, flux) with flux > 0 in
    new and flux < 0 meaning a source of |flux| in ref only."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(20, SIZE - 20, n_stars)
    y = rng.uniform(20, SIZE - 20, n_stars)
    f = 10 ** rng.uniform(3, 5, n_stars)
    m_new = _render(x, y, f, FWHM_NEW)
    m_ref = _render(x, y, f, FWHM_REF)
    for tx, ty, tf in transients:
        if tf > 0:
            m_new += _render(np.array([tx]), np.array([ty]), np.array([tf]), FWHM_NEW)
        else:
            m_ref += _render(np.array([tx]), np.array([ty]), np.array([-tf]), FWHM_REF)
    new, var_new = _observe(m_new, SIGMA_NEW, rng)
    ref, var_ref = _observe(m_ref, SIGMA_REF, rng)
    return new, ref, var_new, var_ref


def _run(new, ref, var_new=None, var_ref=None, **kw):
    return zogy(
        new, ref, _psf(FWHM_NEW), _psf(FWHM_REF), SIGMA_NEW, SIGMA_REF, var_new, var_ref, **kw
    )


def _flux_for_snr(snr: float) -> float:
    """Flux with background-limited ZOGY S/N ``snr`` (S/N = alpha sqrt(F_S), eq. 41)."""
    zero = np.zeros((SIZE, SIZE), np.float32)
    return snr / np.sqrt(_run(zero, zero).flux_scale)


def test_static_sky_subtracts_to_noise():
    new, ref, var_new, var_ref = _pair(1)
    res = _run(new, ref, var_new, var_ref)
    ratio = res.diff / np.sqrt(res.diff_var)
    assert abs(ratio.std() - 1) < 0.1
    assert np.count_nonzero(np.abs(res.score_corr) > 5.5) <= 3
    assert res.diff.dtype == np.float32 and res.score_corr.dtype == np.float32
    assert res.diff_psf.shape == (STAMP, STAMP)
    assert res.diff_psf.sum() == pytest.approx(1.0, abs=1e-3)
    assert res.flux_zp == pytest.approx(difference_zero_point(SIGMA_NEW, SIGMA_REF))


def test_pure_noise_score_has_unit_variance():
    new, ref, _, _ = _pair(2, n_stars=0)
    res = _run(new, ref)
    assert 0.9 < res.score_corr.std() < 1.1
    assert abs(res.diff.std() - 1) < 0.05
    # S / sqrt(F_S) is also unit-variance for background-only noise (F_S = Var S, eq. 42).
    assert 0.9 < (res.score / np.sqrt(res.flux_scale)).std() < 1.1


@pytest.mark.parametrize("sign", [1, -1])
def test_transient_detected_at_its_position(sign):
    flux = _flux_for_snr(15.0)
    tx, ty = 101.3, 157.6
    new, ref, var_new, var_ref = _pair(3, [(tx, ty, sign * flux)])
    res = _run(new, ref, var_new, var_ref)
    idx = np.nanargmax(sign * res.score_corr)
    py, px = np.unravel_index(idx, res.score_corr.shape)
    assert np.hypot(px - tx, py - ty) <= 1.0
    assert sign * res.score_corr[py, px] >= 5.0


def test_flux_estimate_unbiased():
    flux = _flux_for_snr(20.0)
    pos = [(40 + 45 * i, 60 + 70 * j) for i in range(4) for j in range(3)]
    new, ref, var_new, var_ref = _pair(4, [(x, y, flux) for x, y in pos])
    res = _run(new, ref, var_new, var_ref)
    est = np.array([psf_flux(res.score[y, x], res.flux_scale) for x, y in pos])
    err = np.array([psf_flux_error(res.score_var[y, x], res.flux_scale) for x, y in pos])
    assert abs(np.median(est) / flux - 1) < 0.1
    # Errors are consistent with the scatter (pulls of order 1).
    assert np.all(np.abs(est - flux) / err < 4)


def test_nan_pixels_masked_and_inputs_not_mutated():
    new, ref, var_new, var_ref = _pair(5, n_stars=50)
    new[10, 20] = np.nan
    ref[200, 30] = np.inf
    copies = [a.copy() for a in (new, ref, var_new, var_ref)]
    pn, pr = _psf(FWHM_NEW), _psf(FWHM_REF)
    pn_c, pr_c = pn.copy(), pr.copy()
    res = zogy(new, ref, pn, pr, SIGMA_NEW, SIGMA_REF, var_new, var_ref)
    for a, c in zip((new, ref, var_new, var_ref), copies, strict=True):
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(pn, pn_c)
    np.testing.assert_array_equal(pr, pr_c)
    for img in (res.diff, res.score, res.score_corr, res.diff_var):
        assert np.isnan(img[10, 20]) and np.isnan(img[200, 30])
        assert np.count_nonzero(~np.isfinite(img)) == 2


def test_any_shape_and_no_padding_agree():
    rng = np.random.default_rng(6)
    new = rng.normal(0, SIGMA_NEW, (97, 130)).astype(np.float32)
    ref = rng.normal(0, SIGMA_REF, (97, 130)).astype(np.float32)
    a = _run(new, ref, config=ZogyConfig(pad_to_fast=False))
    b = _run(new, ref, config=ZogyConfig(pad_to_fast=True, pad=16))
    assert a.diff.shape == (97, 130) and b.diff.shape == (97, 130)
    # Padding changes only the wrap-around near the edges.
    inner = (slice(20, -20), slice(20, -20))
    np.testing.assert_allclose(a.score_corr[inner], b.score_corr[inner], atol=0.05)


def test_psf_hat_centre_and_validation():
    p = _psf(FWHM_NEW)
    ph = psf_hat(p, (64, 64))
    assert ph[0, 0].real == pytest.approx(1.0, abs=1e-6)
    # Centred at (0, 0): the transform of a symmetric PSF is real.
    assert np.abs(ph.imag).max() < 1e-5
    with pytest.raises(ValueError):
        psf_hat(np.ones((4, 4)), (64, 64))
