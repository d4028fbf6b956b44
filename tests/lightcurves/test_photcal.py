"""Relative zero-point refinement on synthetic light curves with known epoch offsets."""

from __future__ import annotations

import numpy as np

from zsds.lightcurves.photcal import RefineConfig, grouped_median, refine_zeropoints


def _survey(seed: int = 1, n_obj: int = 1500, n_ep: int = 50, var_frac: float = 0.05):
    rng = np.random.default_rng(seed)
    m0 = rng.uniform(14, 20, n_obj)
    z = rng.normal(0, 0.02, n_ep)
    z -= z.mean()
    obj, ep = (a.ravel() for a in np.meshgrid(np.arange(n_obj), np.arange(n_ep),
                                               indexing="ij"))
    err = np.hypot(0.002, 0.01 * 10 ** (0.4 * (m0[obj] - 17)))
    var = rng.random(n_obj) < var_frac
    signal = np.where(var[obj], 0.3 * np.sin(ep * 0.7 + obj), 0.0)
    mag = m0[obj] + z[ep] + signal + rng.normal(0, 1, obj.size) * err
    return obj, ep, mag, err, z, var, n_ep


def test_recovers_epoch_offsets_despite_variables() -> None:
    obj, ep, mag, err, z, var, n_ep = _survey()
    r = refine_zeropoints(obj, ep, mag, err, np.ones(obj.size, bool), n_ep)
    # The correction is the opposite of the injected offset, to well under a mmag.
    assert np.std(r.zp + z) < 0.0005
    assert not r.bad.any()
    assert np.all(r.zp_err < 0.001)
    # Variables are not used as anchors.
    assert not np.isin(np.flatnonzero(var), r.anchors).any()
    assert np.allclose(r.gain_factor, 10 ** (0.4 * r.zp))


def test_flags_epochs_without_calibrators_and_keeps_them_unrefined() -> None:
    obj, ep, mag, err, _z, _var, n_ep = _survey(seed=2)
    good = np.ones(obj.size, bool)
    good[ep == 7] = False  # a lost epoch (clouds): no clean point
    r = refine_zeropoints(obj, ep, mag, err, good, n_ep)
    assert r.bad[7] and r.zp[7] == 0.0 and r.ncalib[7] == 0
    assert r.bad.sum() == 1


def test_flags_an_epoch_with_a_scatter_far_above_the_others() -> None:
    obj, ep, mag, err, _z, _var, n_ep = _survey(seed=3)
    rng = np.random.default_rng(9)
    bright = err < 0.01
    mag = mag + np.where((ep == 11) & bright, rng.normal(0, 0.05, obj.size), 0.0)
    r = refine_zeropoints(obj, ep, mag, err, np.ones(obj.size, bool), n_ep,
                          config=RefineConfig(clip=50.0))
    assert r.bad[11]
    assert r.rms[11] > 3 * np.median(np.delete(r.rms, 11))


def test_grouped_median_matches_numpy() -> None:
    rng = np.random.default_rng(5)
    key = rng.integers(0, 40, 2000)
    val = rng.normal(size=2000)
    med = grouped_median(key, val, 42)
    for k in range(40):
        assert np.isclose(med[k], np.median(val[key == k]))
    assert np.isnan(med[40]) and np.isnan(med[41])
