"""Tests of per-streak features and the streak real-bogus classifier."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from zsds.streaks import (
    FEATURE_COLUMNS,
    RB_FEATURES,
    features,
    features_table,
    fit_streak,
    streak_rb,
)
from zsds.streaks.features import (
    MODEL_PATH,
    StreakModelError,
    load_streak_rb,
    streak_features,
)
from zsds.streaks.simulate import render_points, render_trails
from zsds.streaks.train import save_streak_rb, train_streak_rb, training_set

FWHM = 2.5


def _fit(img: np.ndarray, seg: tuple[float, float, float, float]) -> dict[str, float]:
    return fit_streak(img, 1.0, FWHM, dict(zip(("x0", "y0", "x1", "y1"), seg, strict=True)))


def test_features_separate_a_trail_from_a_sharp_track_and_a_dipole() -> None:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((120, 120))
    trail = noise + render_trails(noise.shape, [30.0], [40.0], [80.0], [60.0], [2000.0], FWHM)
    f_trail = streak_features(trail, 1.0, FWHM, _fit(trail, (30, 40, 80, 60)))
    track = noise.copy()
    track[60, 30:50] += 30.0  # a sharp muon-like track
    f_track = streak_features(track, 1.0, FWHM, _fit(track, (30, 60, 49, 60)))
    dip = noise + render_points(noise.shape, [60.2], [60.0], [20000.0], FWHM) - render_points(
        noise.shape, [60.5], [60.0], [20000.0], FWHM
    )
    f_dip = streak_features(dip, 1.0, FWHM, _fit(dip, (56, 60, 64, 60)))
    assert set(f_trail) == set(FEATURE_COLUMNS)
    assert 0.8 < f_trail["width_ratio"] < 1.25
    assert f_track["width_ratio"] < 0.5 < f_trail["width_ratio"]
    assert f_trail["along_chi2"] < 3.0
    assert f_dip["neg_frac"] > f_trail["neg_frac"] + 0.02
    assert f_trail["len_fwhm"] == pytest.approx(np.hypot(50, 20) / FWHM, rel=0.05)
    assert f_trail["edge_dist"] == pytest.approx(30.0, abs=1.5)


def test_features_table_keeps_index_and_handles_empty() -> None:
    img = np.random.default_rng(1).standard_normal((60, 60))
    empty = features_table(img, 1.0, FWHM, pd.DataFrame())
    assert list(empty.columns) == list(FEATURE_COLUMNS) and len(empty) == 0
    fits = pd.DataFrame([_fit(img, (10, 10, 40, 30))], index=[7])
    assert list(features_table(img, 1.0, FWHM, fits).index) == [7]


def test_packaged_model_is_small_cached_and_scores_in_unit_interval() -> None:
    assert MODEL_PATH.exists()
    assert MODEL_PATH.stat().st_size < 2 * 2**20
    m1, m2 = load_streak_rb(), load_streak_rb()
    assert m1 is m2
    assert tuple(m1["features"]) == RB_FEATURES
    feats = pd.DataFrame(np.random.default_rng(2).normal(1.0, 1.0, (20, len(RB_FEATURES))),
                         columns=list(RB_FEATURES))
    rb = streak_rb(feats)
    assert rb.shape == (20,) and (rb >= 0).all() and (rb <= 1).all()
    assert streak_rb(feats.iloc[:0]).shape == (0,)


def test_rb_separates_real_from_bogus_on_held_out_seed() -> None:
    # The packaged model was trained on seed 0; these images come from another seed.
    table, y = training_set(seed=20240611, n_images=6, size=640)
    assert y.sum() >= 15 and (len(y) - y.sum()) >= 10, (y.sum(), len(y))
    auc = roc_auc_score(y, streak_rb(table))
    assert auc > 0.9, auc


def test_training_is_deterministic() -> None:
    a = train_streak_rb(seed=3, n_images=2, size=320)
    b = train_streak_rb(seed=3, n_images=2, size=320)
    assert a["format"] == features.MODEL_FORMAT
    assert a["n_real"] == b["n_real"] and a["n_bogus"] == b["n_bogus"]
    feats = pd.DataFrame(np.random.default_rng(4).normal(2.0, 2.0, (10, len(RB_FEATURES))),
                         columns=list(RB_FEATURES))
    np.testing.assert_array_equal(streak_rb(feats, a), streak_rb(feats, b))


@pytest.mark.parametrize("content", [None, b"not a joblib file", "other-format"])
def test_a_missing_or_stale_model_is_an_error_never_retrained(tmp_path, monkeypatch,
                                                              content) -> None:
    """Loading never trains nor writes a model: a missing, unreadable or stale file is an error
    naming it and the command that trains one, and nothing is written."""
    path = tmp_path / "models" / "streak_rb.joblib"
    if content == "other-format":
        save_streak_rb({"format": "zsds-streak-rb/0", "features": ["len_fwhm"]}, path)
    elif content is not None:
        path.parent.mkdir()
        path.write_bytes(content)
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.setattr(features, "MODEL_PATH", path)
    load_streak_rb.cache_clear()
    try:
        with pytest.raises(StreakModelError, match="zsds rb train-streaks") as err:
            load_streak_rb()
        assert str(path) in str(err.value)
        assert sorted(tmp_path.rglob("*")) == before
    finally:
        load_streak_rb.cache_clear()
