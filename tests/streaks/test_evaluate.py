"""Tests of the simulator of streaks/artefacts, of matching, and the evaluation bars."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from zsds.streaks import StreakConfig, evaluate_streaks, match_streaks, simulate_difference
from zsds.streaks.evaluate import QUADRANT_AREA
from zsds.streaks.simulate import ARTEFACT_KINDS, MASK_BADCOL, SimConfig, render_trails


def test_simulation_is_seeded_and_truth_snr_is_the_matched_filter_snr() -> None:
    cfg = SimConfig(shape=(384, 384), n_streaks=6.0, sigma_gradient=0.0, n_badcols=4.0,
                    badcol_masked=1.0)
    a = simulate_difference(np.random.default_rng(5), cfg)
    b = simulate_difference(np.random.default_rng(5), cfg)
    np.testing.assert_array_equal(a.image, b.image)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert len(a.truth) > 0 and set(a.artefacts["kind"]) <= set(ARTEFACT_KINDS)
    assert ((a.truth["angle"] >= 0) & (a.truth["angle"] < 180)).all()
    assert (a.mask & MASK_BADCOL).any()
    for _, t in a.truth.iterrows():
        img = render_trails(cfg.shape, [t.x0], [t.y0], [t.x1], [t.y1], [t.flux], cfg.fwhm)
        ideal = math.sqrt(float((img**2).sum())) / cfg.sigma
        assert t.snr_integrated == pytest.approx(ideal, rel=0.04)
        lo, hi = cfg.length_range
        assert lo * 0.99 <= t.length <= hi * 1.01


def test_match_streaks_tolerances_and_duplicates() -> None:
    truth = pd.DataFrame({"x0": [10.0, 200.0], "y0": [10.0, 50.0], "x1": [110.0, 210.0],
                          "y1": [10.0, 60.0]})
    found = pd.DataFrame(
        {
            "xmid": [60.0, 62.0, 60.0, 205.0, 300.0, 60.0],
            "ymid": [10.2, 10.5, 40.0, 55.0, 300.0, 12.0],
            "angle": [1.0, 179.0, 0.0, 45.0, 0.0, 30.0],
        }
    )
    owner, hit = match_streaks(found, truth)
    # 0: match; 1: duplicate of 0 (angle 179 ~ 1 mod 180); 2: too far (30 > 25 px);
    # 3: match of truth 1; 4: nothing; 5: angle off by 30 deg.
    assert owner.tolist() == [0, -2, -1, 1, -1, -1]
    assert hit.tolist() == [True, True]
    assert match_streaks(found.iloc[:0], truth)[1].tolist() == [False, False]


def test_evaluation_meets_the_bars() -> None:
    """>= 90 % of S/N >= 10 streaks found; <= 0.5 false streaks per quadrant area (rb cut).

    14 images of 1024^2 cover 1.55 quadrant areas (~130 streaks of S/N >= 10), so a single
    false streak already fails the bar.
    """
    res = evaluate_streaks(n_images=14, size=1024, seed=2024, verbose=False)
    assert res["n_true_snr10"] >= 100
    assert res["completeness_snr10_rb"] >= 0.90, res["by_snr_rb"]
    assert res["false_per_quadrant_rb"] <= 0.5, res["false_rb"]
    assert 14 * 1024**2 >= QUADRANT_AREA  # the images cover at least one quadrant area
    assert res["endpoint_err_median_px"] < 1.5
    assert res["angle_err_median_deg"] < 1.0
    assert res["flux_ratio_median"] == pytest.approx(1.0, abs=0.05)


def test_evaluation_detects_a_broken_configuration() -> None:
    # The bars are not tautological: an absurd threshold loses the faint streaks.
    res = evaluate_streaks(n_images=2, size=512, seed=7, config=StreakConfig(threshold=25.0),
                           verbose=False)
    assert res["completeness_snr10"] < 0.9


def test_cli_eval_streaks() -> None:
    from click.testing import CliRunner

    from zsds.cli.main import cli

    r = CliRunner().invoke(cli, ["eval", "streaks", "--images", "2", "--size", "768"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    vals = dict(line.split()[:2] for line in r.output.splitlines()
                if line.startswith(("completeness_snr10_rb", "n_true_snr10")))
    assert int(vals["n_true_snr10"]) > 5 and float(vals["completeness_snr10_rb"]) >= 0.8
