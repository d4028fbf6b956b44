"""Tests of the light-curve metrics (zsds.lightcurves.metrics)."""

from __future__ import annotations

import light_curve as lc
import numpy as np
import pytest
from scipy import stats

from zsds.lightcurves.metrics import (
    IPAC_METRIC_FIELDS,
    MetricsConfig,
    best_period,
    best_periods,
    ipac_metrics,
    lc_features,
    metric_columns,
    period_harmonic,
    period_matches,
)
from zsds.lightcurves.model import NSTD, PERCENTILES, SOURCES_DTYPE


def _nightly_times(rng: np.random.Generator, n: int = 40, nights: int = 60) -> np.ndarray:
    """``n`` epochs on distinct random nights, at a random time within the night."""
    night = np.sort(rng.choice(nights, n, replace=False)).astype(float)
    return 59000.0 + night + rng.uniform(0.15, 0.45, n)


def _flatten(curves: list[tuple[np.ndarray, np.ndarray, np.ndarray]], ids=None):
    ids = range(len(curves)) if ids is None else ids
    mid = np.concatenate([np.full(c[0].size, i) for i, c in zip(ids, curves, strict=True)])
    t, m, e = (np.concatenate([c[k] for c in curves]) for k in range(3))
    return mid, t, m, e


def _longest(flag: np.ndarray) -> int:
    best = run = 0
    for f in flag:
        run = run + 1 if f else 0
        best = max(best, run)
    return best


# --------------------------------------------------------------------------------------------
# ipac_metrics


def test_constant_star_statistics():
    rng = np.random.default_rng(1)
    sigma = 0.05
    curves = []
    for _ in range(10):  # eta scatters by ~2/sqrt(n): 0.4 is 3.5 sigma at n = 300
        t = np.sort(rng.uniform(59000, 59300, 300))
        curves.append((t, 17.0 + rng.normal(0, sigma, t.size), np.full(t.size, sigma)))
    mid, t, m, e = _flatten(curves)
    out = ipac_metrics(mid, t, m, e, np.ones(mid.size, bool))
    assert out.dtype == SOURCES_DTYPE
    assert np.all(np.abs(out["magrms"] / sigma - 1) < 0.15)
    assert np.all(np.abs(out["stetsonj"]) < 0.3)
    assert np.all(np.abs(out["vonneumannratio"] - 2) < 0.4)
    assert np.all(np.abs(out["chisq"] - 1) < 0.3)
    assert np.all(np.abs(out["weightedmeanmag"] - 17.0) < 0.02)
    assert np.all(np.abs(out["lineartrend"]) < 1e-3)
    assert np.all(out["nabovemeanbystd"][:, 2] == 0)  # no 5-sigma points in 300 gaussians
    # a variable star is flagged by the same statistics
    t = curves[0][0]
    var = ipac_metrics(np.zeros(t.size), t, 17 + 0.5 * np.sin(t / 7.0), np.full(t.size, sigma),
                       np.ones(t.size, bool))
    assert var["stetsonj"][0] > 3 and var["chisq"][0] > 30 and var["vonneumannratio"][0] < 0.5


def _reference_metrics(t, m, e):
    """Straightforward per-curve computations (loops, scipy) of the IPAC metrics."""
    n = m.size
    w = 1 / e**2
    wmean = np.sum(w * m) / np.sum(w)
    mean, std = m.mean(), m.std(ddof=1)
    d = np.sqrt(n / (n - 1)) * (m - wmean) / e
    pairs = [d[i] * d[i + 1] for i in range(n - 1)]
    slopes = [(m[i + 1] - m[i]) / (t[i + 1] - t[i]) for i in range(n - 1)]
    ref = {
        "meanmag": mean, "magrms": std, "weightedmeanmag": wmean,
        "medianmag": np.median(m), "minmag": m.min(), "maxmag": m.max(),
        "medmagerr": np.median(e), "medianabsdev": np.median(np.abs(m - np.median(m))),
        "percentiles": np.percentile(m, PERCENTILES),
        "chisq": np.sum(((m - wmean) / e) ** 2) / (n - 1),
        "weightedmagrms": np.sqrt(np.sum(w * (m - wmean) ** 2) / np.sum(w) * n / (n - 1)),
        "skewness": stats.skew(m, bias=False),
        "smallkurtosis": stats.kurtosis(m, fisher=True, bias=False),
        "stetsonk": np.sum(np.abs(d)) / np.sqrt(n * np.sum(d**2)),
        "stetsonj": np.mean([np.sign(p) * np.sqrt(abs(p)) for p in pairs]),
        "vonneumannratio": np.sum(np.diff(m) ** 2) / (n - 1) / std**2,
        "maxslope": np.max(np.abs(slopes)),
        "npairposslope": sum(s > 0 for s in slopes),
        "lineartrend": np.polyfit(t - t[0], m, 1)[0],
        "nmedianbufferrange": np.sum(np.abs(m - np.median(m)) < 0.1 * (m.max() - m.min())),
    }
    hi, lo = m > mean + 2 * std, m < mean - 2 * std
    ntrip = sum((hi[i:i + 3].all() or lo[i:i + 3].all()) for i in range(n - 2))
    ref["con"] = ntrip / (n - 2)
    for key, k in (("above", 1), ("below", -1)):
        ref[f"n{key}meanbystd"] = [np.sum(k * (m - mean) > s * std) for s in NSTD]
        ref[f"nconsec{key}meanbystd"] = [_longest(k * (m - mean) > s * std) for s in NSTD]
    ref["nconsecfrommeanbystd"] = [_longest(np.abs(m - mean) > s * std) for s in NSTD]
    return ref


def test_ipac_metrics_match_independent_computations():
    rng = np.random.default_rng(7)
    curves = []
    for k in range(6):
        n = int(rng.integers(8, 60))
        t = np.sort(rng.uniform(59000, 59100, n))
        signal = [np.zeros(n), 0.4 * np.sin(t / 3.1), rng.exponential(0.3, n),
                  -rng.exponential(0.3, n), 0.01 * (t - t[0]), 0.8 * (t > t[n // 2])][k]
        e = rng.uniform(0.02, 0.1, n)
        curves.append((t, 16 + signal + rng.normal(0, e), e))
    # a few flagged points (garbage values) that must be ignored, plus shuffled rows
    mid, t, m, e = _flatten(curves, ids=[50, 3, 1000, 7, 8, 2])
    good = np.ones(mid.size, bool)
    bad = rng.choice(mid.size, 10, replace=False)
    good[bad] = False
    m = m.copy()
    m[bad] = 99.0
    perm = rng.permutation(mid.size)
    raw = m + 0.25
    out = ipac_metrics(mid[perm], t[perm], m[perm], e[perm], good[perm], raw_mag=raw[perm])

    assert list(out["matchid"]) == [2, 3, 7, 8, 50, 1000]
    for row in out:
        sel = (mid == row["matchid"]) & good
        ref = _reference_metrics(t[sel], m[sel], e[sel])
        assert row["nobs"] == np.sum(mid == row["matchid"])
        assert row["ngoodobs"] == row["ngoodobsrel"] == sel.sum()
        assert row["uncalibmeanmag"] == pytest.approx(ref["meanmag"] + 0.25, abs=1e-4)
        for name, value in ref.items():
            np.testing.assert_allclose(row[name], value, rtol=2e-5, atol=2e-5, err_msg=name)
        # the same definitions in light-curve
        tt, mm, ee = t[sel], m[sel], e[sel]
        assert row["stetsonk"] == pytest.approx(lc.StetsonK()(tt, mm, ee)[0], rel=1e-5)
        assert row["vonneumannratio"] == pytest.approx(lc.Eta()(tt, mm, ee)[0], rel=1e-5)
        assert row["skewness"] == pytest.approx(lc.Skew()(tt, mm, ee)[0], rel=1e-4, abs=1e-5)
        assert row["smallkurtosis"] == pytest.approx(lc.Kurtosis()(tt, mm, ee)[0],
                                                     rel=1e-4, abs=1e-5)


def test_ipac_metrics_few_points_and_bad_values():
    t = np.arange(12, dtype=float) + 59000
    mid = np.repeat([1, 2, 3], 4)
    m = np.full(12, 15.0) + np.arange(12) * 0.01
    e = np.full(12, 0.02)
    e[4] = 0.0   # non-positive error: not usable
    m[5] = np.nan
    good = np.ones(12, bool)
    good[8:] = False
    out = ipac_metrics(mid, t, m, e, good, config=MetricsConfig(min_points=2))
    assert list(out["nobs"]) == [4, 4, 4]
    assert list(out["ngoodobs"]) == [4, 2, 0]
    assert np.isfinite(out["meanmag"][:2]).all() and np.isnan(out["meanmag"][2])
    assert np.isnan(out["percentiles"][2]).all()
    assert out["smallkurtosis"][0] == pytest.approx(stats.kurtosis(m[:4], bias=False), abs=1e-4)
    assert np.isnan(out["smallkurtosis"][1])  # G2 needs 4 points
    assert out["meanmag"][1] == pytest.approx(15.065)
    # default min_points=5: every metric NaN, counts filled, columns of others untouched
    out = ipac_metrics(mid, t, m, e, good)
    assert np.isnan(out["meanmag"]).all() and np.isnan(out["con"]).all()
    assert (out["nabovemeanbystd"] == 0).all() and list(out["ngoodobs"]) == [4, 2, 0]
    assert np.isnan(out["ra"]).all() and np.isnan(out["period"]).all()
    assert set(IPAC_METRIC_FIELDS) <= set(SOURCES_DTYPE.names)


def test_flat_curve_gives_nan_not_inf():
    t = np.arange(10, dtype=float) + 59000
    out = ipac_metrics(np.zeros(10), t, np.full(10, 15.0), np.full(10, 0.02), np.ones(10, bool))
    row = out[0]
    assert row["meanmag"] == 15 and row["magrms"] == 0 and row["chisq"] == 0
    assert row["maxslope"] == 0 and row["medianabsdev"] == 0
    for name in ("skewness", "smallkurtosis", "vonneumannratio", "stetsonk", "con"):
        assert not np.isinf(row[name]), name
    assert np.isnan(row["vonneumannratio"]) and np.isnan(row["skewness"])
    df = lc_features(np.zeros(10), t, np.full(10, 15.0), np.full(10, 0.02), np.ones(10, bool))
    assert df.loc[0, "lc_mean"] == 15 and np.isnan(df.loc[0, "lc_skew"])


def test_runs_do_not_cross_objects():
    # object 1 ends and object 2 starts with 3 high points: runs of 3 each, not one of 6
    # (3 of 21 points high are beyond 2 std, so con counts them too)
    base = np.tile([0.0, 0.01, -0.01, 0.005, -0.005, 0.0, 0.01], 3)
    m1, m2 = 15 + base.copy(), 15 + base.copy()
    m1[-3:] += 1.0
    m2[:3] += 1.0
    t = np.arange(21, dtype=float) + 59000
    out = ipac_metrics(np.repeat([1, 2], 21), np.r_[t, t], np.r_[m1, m2], np.full(42, 0.01),
                       np.ones(42, bool))
    assert list(out["nconsecabovemeanbystd"][:, 0]) == [3, 3]
    assert list(out["nconsecfrommeanbystd"][:, 0]) == [3, 3]
    assert list(out["nabovemeanbystd"][:, 0]) == [3, 3]
    ref = [_reference_metrics(t, m, np.full(21, 0.01))["con"] for m in (m1, m2)]
    np.testing.assert_allclose(out["con"], ref, atol=1e-6)
    np.testing.assert_allclose(out["con"], 1 / 19, atol=1e-6)


def test_ipac_metrics_large_grouped_input():
    rng = np.random.default_rng(3)
    nobj, npts = 2500, 40
    mid = np.repeat(rng.permutation(nobj * 3)[:nobj], npts)
    t = rng.uniform(59000, 59060, mid.size)
    m = rng.normal(17, 0.05, mid.size)
    perm = rng.permutation(mid.size)
    out = ipac_metrics(mid[perm], t[perm], m[perm], np.full(mid.size, 0.05),
                       rng.random(mid.size) > 0.05)
    assert out.size == nobj and np.all(np.diff(out["matchid"]) > 0)
    assert np.all(out["nobs"] == npts) and out["ngoodobs"].sum() < nobj * npts
    assert np.isfinite(out["stetsonj"]).all()
    assert abs(np.median(out["chisq"]) - 1) < 0.05
    df = lc_features(mid[perm], t[perm], m[perm], np.full(mid.size, 0.05),
                     np.ones(mid.size, bool))
    assert list(df.index) == list(out["matchid"])
    assert np.isfinite(df.to_numpy()).mean() > 0.99


# --------------------------------------------------------------------------------------------
# periods


def test_best_period_recovers_sinusoid():
    rng = np.random.default_rng(11)
    for _ in range(5):
        t = _nightly_times(rng)
        m = 16 + 0.3 * np.sin(2 * np.pi * t / 3.7 + rng.uniform(0, 6.3))
        m += rng.normal(0, 0.03, t.size)
        period, power = best_period(t, m, np.full(t.size, 0.03))
        assert abs(period / 3.7 - 1) < 0.01
        assert 0.8 < power <= 1.0


def test_best_periods_grouped_mixed_periods():
    rng = np.random.default_rng(5)
    true = np.array([0.31, 0.57, 1.9, 3.7, 8.3, 17.0])
    curves = []
    for p in true:
        t = _nightly_times(rng, n=45)
        m = 15 + 0.2 * np.sin(2 * np.pi * t / p) + rng.normal(0, 0.02, t.size)
        curves.append((t, m, np.full(t.size, 0.02)))
    curves.append((t[:3], m[:3], np.full(3, 0.02)))  # too few points
    mid, t, m, e = _flatten(curves)
    perm = rng.permutation(mid.size)
    ids, period, power = best_periods(mid[perm], t[perm], m[perm], e[perm],
                                      np.ones(mid.size, bool))
    assert list(ids) == list(range(7))
    assert period_matches(period[:6], true).all()
    assert np.isnan(period[6]) and np.isnan(power[6])
    # a forced narrow range cannot contain the true period
    cfg = MetricsConfig(min_period=1.0, max_period=2.5)
    _, p2, _ = best_periods(mid, t, m, e, np.ones(mid.size, bool), cfg)
    assert np.all((p2[:6] >= 1.0 - 1e-9) & (p2[:6] <= 2.5 + 1e-9))
    assert period_matches(p2[2], 1.9)


@pytest.mark.parametrize("nterms", [1, 2])
def test_best_period_is_the_exact_periodogram_peak(nterms):
    # the refined period/power must be the maximum of astropy's (generalised, weighted)
    # Lomb-Scargle on a fine grid, to far better than the coarse grid step (here 2.4e-3 /d)
    from astropy.timeseries import LombScargle

    rng = np.random.default_rng(4)
    t = _nightly_times(rng, n=35)
    e = rng.uniform(0.02, 0.06, t.size)
    phase = (t / 13.3) % 1
    m = 16 + 0.4 * np.where(phase < 0.2, phase / 0.2, (1 - phase) / 0.8) + rng.normal(0, e)
    cfg = MetricsConfig(nterms=nterms)
    period, power = best_period(t, m, e, cfg)
    f = 1 / period + np.linspace(-5e-4, 5e-4, 10001)
    pk = LombScargle(t, m, e, nterms=nterms).power(f)
    assert 1 / period == pytest.approx(f[np.argmax(pk)], abs=1e-5)
    if nterms == 1:
        assert power == pytest.approx(pk.max(), rel=1e-6)
    # periodpower is the 1-harmonic power at the adopted period
    assert power == pytest.approx(LombScargle(t, m, e).power(1 / period), rel=1e-6)
    assert abs(period / 13.3 - 1) < 0.01


def test_config_validation():
    with pytest.raises(ValueError):
        MetricsConfig(min_period=0)
    with pytest.raises(ValueError):
        MetricsConfig(min_period=1.0, max_period=0.5)
    with pytest.raises(ValueError):
        MetricsConfig(refine_peaks=0)


def test_period_match_flags():
    found = np.array([1.0, 1.02, 0.5, 0.504, np.nan])
    true = np.ones(5)
    assert list(period_matches(found, true)) == [True, False, False, False, False]
    assert list(period_harmonic(found, true)) == [False, False, True, True, False]
    assert list(period_matches(found, true, tol=0.05)) == [True, True, False, False, False]


# --------------------------------------------------------------------------------------------
# light-curve features


def test_lc_features_shape_and_values():
    rng = np.random.default_rng(2)
    t = _nightly_times(rng)
    m = 16 + 0.3 * np.sin(2 * np.pi * t / 3.7) + rng.normal(0, 0.03, t.size)
    t2 = np.array([59000.2, 59001.3])
    tdup = t.copy()
    tdup[5] = tdup[4]  # duplicate time: must not raise
    mid, tt, mm, ee = _flatten([(t, m, np.full(40, 0.03)), (t2, m[:2], np.full(2, 0.03)),
                                (tdup, m, np.full(40, 0.03))], ids=[30, 10, 20])
    df = lc_features(mid, tt, mm, ee, np.ones(mid.size, bool))
    assert list(df.index) == [10, 20, 30] and df.index.name == "matchid"
    assert df.shape[1] > 100
    assert list(df.columns) == metric_columns()
    assert len(set(df.columns)) == df.shape[1]
    assert all(c.isidentifier() for c in df.columns)
    assert np.isfinite(df.loc[30].to_numpy()).all()
    assert np.isnan(df.loc[10].to_numpy()).all()
    assert np.isfinite(df.loc[20].to_numpy()).all()
    row = df.loc[30]
    assert abs(row["period"] / 3.7 - 1) < 0.01
    assert row["lc_observation_count"] == 40
    assert row["lc_mean"] == pytest.approx(m.mean())
    assert row["lc_stetson_K"] == pytest.approx(lc.StetsonK()(t, m, np.full(40, 0.03))[0])
    assert row["lc_bins_window1_0_offset0_0_observation_count"] == 40  # one point a night
    assert abs(row["lc_periodogram_period_0"] / 3.7 - 1) < 0.02
    # the feature count follows n_peaks
    assert len(metric_columns(MetricsConfig(n_peaks=1))) == len(metric_columns()) - 4
