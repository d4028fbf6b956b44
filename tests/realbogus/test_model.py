"""Tests of the real-bogus classifier machinery on synthetic candidate feature tables."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from zsds.realbogus import (
    DEFAULT_FEATURES,
    RBConfig,
    RBModel,
    RBModelLoadError,
    RBModelVersionWarning,
    choose_threshold,
    load_default_model,
    packaged_model_stem,
    plot_roc,
    roc_metrics,
    split_train_test,
    train,
)
from zsds.realbogus import model as rbm

TARGET_FPR = 0.01


def synthetic_candidates(n: int, seed: int, real_fraction: float = 0.3):
    """Feature table where real and bogus differ (with overlap) in a few features.

    Real: point-like (fwhm ~ seeing, round), higher S/N, mostly positive, few bad pixels.
    Bogus: broader or sharper, elongated, more negative pixels, more often negative events.
    Every feature gets 3% random NaNs; distnr is NaN for 40% (no nearby reference source).
    Returns ``(df, labels)``.
    """
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < real_fraction).astype(np.int8)
    r = y == 1
    df = pd.DataFrame({f: rng.normal(size=n) for f in DEFAULT_FEATURES})  # uninformative default
    df["snr"] = np.where(r, rng.lognormal(np.log(14), 0.6, n), rng.lognormal(np.log(7), 0.6, n))
    df["fwhm"] = np.where(r, rng.normal(2.5, 0.4, n), rng.normal(3.2, 0.9, n))
    df["elong"] = 1.0 + np.where(r, rng.exponential(0.08, n), rng.exponential(0.25, n))
    df["nneg"] = np.where(r, rng.poisson(3, n), rng.poisson(6, n)).astype(float)
    df["nbad"] = np.where(r, rng.poisson(0.2, n), rng.poisson(0.7, n)).astype(float)
    df["magdiff"] = np.where(r, rng.normal(0.1, 0.2, n), rng.normal(0.2, 0.4, n))
    df["isdiffpos_pos"] = np.where(rng.random(n) < np.where(r, 0.85, 0.55), 1.0, 0.0)
    df["distnr"] = rng.uniform(0, 30, n)
    for f in DEFAULT_FEATURES:
        df.loc[rng.random(n) < 0.03, f] = np.nan
    df.loc[rng.random(n) < 0.4, "distnr"] = np.nan
    return df, y


@pytest.fixture(scope="module")
def data():
    return synthetic_candidates(4000, seed=1)


@pytest.fixture(scope="module")
def trained(data):
    df, y = data
    return train(df, y, RBConfig(), version="zsds_rb_test", target_fpr=TARGET_FPR)


# ---------------------------------------------------------------------------------- training


def test_train_separates_real_from_bogus_on_held_out_data(trained):
    m = trained.metrics
    assert m["auc"] > 0.95
    assert m["n_test"] == 1200 and trained.n_train == 2800
    assert m["n_real"] + m["n_bogus"] == m["n_test"]
    # The data overlap on purpose: a perfect score would mean a leak or a too-easy test.
    assert m["auc"] < 0.999 and m["fnr_at_fpr_1pct"] > 0.0
    assert trained.threshold == m["threshold"]
    assert m["fpr_at_threshold"] <= TARGET_FPR
    assert m["fnr_at_threshold"] == pytest.approx(m["fnr_at_fpr_1pct"])
    assert 0 < m["n_iter"] < RBConfig().max_iter  # early stopping acted
    assert trained.version == "zsds_rb_test" and trained.features == DEFAULT_FEATURES


def test_reported_metrics_match_a_recomputation_on_the_held_out_rows(data, trained):
    df, y = data
    tr, te = split_train_test(y, RBConfig())
    assert np.intersect1d(tr, te).size == 0 and tr.size + te.size == len(y)
    assert y[te].mean() == pytest.approx(y.mean(), abs=0.01)  # stratified
    s = trained.score(df.iloc[te])
    assert s.dtype == np.float32 and np.all((s >= 0) & (s <= 1))
    again = roc_metrics(y[te], s, threshold=trained.threshold)
    for k, v in again.items():
        assert trained.metrics[k] == pytest.approx(v), k
    called = s >= trained.threshold
    assert called[y[te] == 0].mean() <= TARGET_FPR  # counted directly, not via roc_curve
    # Training rows were seen by the estimator, so they score better than the held-out ones.
    assert trained.metrics["auc_train"] > trained.metrics["auc"]


def test_model_generalises_to_an_independent_sample(trained):
    df2, y2 = synthetic_candidates(4000, seed=2)
    m = roc_metrics(y2, trained.score(df2), threshold=trained.threshold)
    assert m["auc"] > 0.95
    # Threshold chosen on 835 held-out bogus: allow for its sampling noise on fresh data.
    assert m["fpr_at_threshold"] <= 3 * TARGET_FPR


def test_training_is_deterministic(data, trained):
    df, y = data
    again = train(df, y, RBConfig(), version="zsds_rb_test", target_fpr=TARGET_FPR)
    assert np.array_equal(again.score(df), trained.score(df))
    assert again.threshold == trained.threshold


def test_pure_noise_labels_give_chance_auc(data):
    df, _ = data
    noise = np.random.default_rng(5).integers(0, 2, len(df))
    model = train(df, noise)
    # Held-out AUC std is ~0.017 for 600+600 rows; 0.07 is four sigma.
    assert abs(model.metrics["auc"] - 0.5) < 0.07
    # The check can fail: on the rows it was fitted to, the same model looks far from chance.
    assert model.metrics["auc_train"] > 0.57


def test_train_rejects_bad_labels(data):
    df, y = data
    with pytest.raises(ValueError, match="labels"):
        train(df, y[:-1])
    with pytest.raises(ValueError, match="0 \\(bogus\\) or 1"):
        train(df, np.where(y == 1, 2, 0))
    with pytest.raises(ValueError, match="at least 10 real"):
        train(df, np.zeros(len(df), dtype=int))
    with pytest.raises(ValueError, match="invalid model version"):
        train(df, y, version="../escape")


def test_custom_feature_subset(data):
    df, y = data
    cfg = RBConfig(features=["snr", "fwhm", "elong"], max_iter=50)
    model = train(df[["snr", "fwhm", "elong"]], y, cfg)
    assert model.features == ("snr", "fwhm", "elong")
    assert model.metrics["auc"] > 0.85


def test_config_validation():
    with pytest.raises(ValueError, match="duplicates"):
        RBConfig(features=("snr", "snr"))
    with pytest.raises(ValueError, match="test_fraction"):
        RBConfig(test_fraction=1.0)
    cfg = RBConfig(features=["snr"])
    assert cfg.features == ("snr",)
    assert RBConfig.from_dict({**cfg.to_dict(), "unknown_future_key": 1}) == cfg


# ----------------------------------------------------------------------------------- scoring


def test_score_missing_feature_raises_keyerror_naming_it(data, trained):
    df, _ = data
    with pytest.raises(KeyError, match="elong") as info:
        trained.score(df.drop(columns=["elong", "classtar"]))
    assert "classtar" in str(info.value) and "snr" not in str(info.value)


def test_score_ignores_extra_columns_and_column_order(data, trained):
    df, _ = data
    rows = df.iloc[:200]
    shuffled = rows[list(reversed(rows.columns))].assign(ra=1.0, objectId="ZTF18aaaaaaa")
    assert np.array_equal(trained.score(shuffled), trained.score(rows))


def test_score_handles_nan_inf_and_empty_input(data, trained):
    df, _ = data
    rows = df.iloc[:5].copy()
    rows.loc[:, :] = np.nan
    s = trained.score(rows)
    assert s.shape == (5,) and np.all(np.isfinite(s)) and np.all((s >= 0) & (s <= 1))
    inf_rows = df.iloc[:20].copy()
    inf_rows["magfromlim"] = np.inf
    nan_rows = df.iloc[:20].copy()
    nan_rows["magfromlim"] = np.nan
    assert np.array_equal(trained.score(inf_rows), trained.score(nan_rows))
    empty = trained.score(df.iloc[:0])
    assert empty.shape == (0,) and empty.dtype == np.float32
    assert trained.is_real(df.iloc[:50]).dtype == bool


# ------------------------------------------------------------------------------- persistence


def test_save_load_round_trip(tmp_path, data, trained):
    df, _ = data
    jl, js = trained.save(tmp_path / "models" / "zsds_rb_test")
    assert jl.name == "zsds_rb_test.joblib" and js.name == "zsds_rb_test.json"
    meta = json.loads(js.read_text())
    assert meta["version"] == "zsds_rb_test" and meta["features"] == list(DEFAULT_FEATURES)
    assert meta["metrics"]["auc"] == pytest.approx(trained.metrics["auc"])
    assert "\n  " in js.read_text()  # indented, human-readable
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same sklearn version: no warning at all
        loaded = RBModel.load(tmp_path / "models" / "zsds_rb_test")
    assert np.array_equal(loaded.score(df), trained.score(df))
    assert loaded.threshold == trained.threshold
    assert loaded.metrics == pytest.approx(trained.metrics)
    assert loaded.config == trained.config
    assert (loaded.trained_at, loaded.n_train) == (trained.trained_at, trained.n_train)
    # A .json suffix on the stem is accepted too.
    assert RBModel.load(js).version == "zsds_rb_test"


def test_load_with_other_sklearn_version_warns_with_retrain_hint(tmp_path, trained):
    _, js = trained.save(tmp_path / "m")
    meta = json.loads(js.read_text())
    meta["sklearn_version"] = "0.0.1"
    js.write_text(json.dumps(meta))
    with pytest.warns(RBModelVersionWarning, match="zsds rb train"):
        loaded = RBModel.load(tmp_path / "m")
    assert loaded.sklearn_version == "0.0.1"


def test_load_unpicklable_estimator_gives_clear_error(tmp_path, trained, monkeypatch):
    _, js = trained.save(tmp_path / "m")
    meta = json.loads(js.read_text())
    meta["sklearn_version"] = "0.0.1"
    js.write_text(json.dumps(meta))

    def broken_load(*args, **kwargs):  # what a cross-version unpickle failure looks like
        raise AttributeError("Can't get attribute '_SomePrivateClass'")

    monkeypatch.setattr(rbm.joblib, "load", broken_load)
    with pytest.raises(RBModelLoadError, match=r"scikit-learn 0\.0\.1.*zsds rb train"):
        RBModel.load(tmp_path / "m")


def test_load_detects_mismatched_or_missing_files(tmp_path, trained):
    jl, js = trained.save(tmp_path / "m")
    jl.write_bytes(b"not a pickle")
    with pytest.raises(RBModelLoadError, match="does not match"):
        RBModel.load(tmp_path / "m")
    js.write_text("{broken json")
    with pytest.raises(RBModelLoadError, match="zsds rb train"):
        RBModel.load(tmp_path / "m")
    jl.unlink()
    with pytest.raises(FileNotFoundError, match="zsds rb train"):
        RBModel.load(tmp_path / "m")


def test_packaged_model_stem_points_into_the_package():
    stem = packaged_model_stem()
    assert stem.name == "zsds_rb_v1"
    assert stem.parent == Path(rbm.__file__).resolve().parent / "models"
    with pytest.raises(ValueError, match="invalid model version"):
        packaged_model_stem("../x")


def test_load_default_model_missing_and_cached(tmp_path, trained, monkeypatch):
    monkeypatch.setattr(rbm, "packaged_model_stem", lambda version="v": tmp_path / version)
    load_default_model.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="zsds rb train"):
            load_default_model("zsds_rb_test")
        trained.save(tmp_path / "zsds_rb_test")
        first = load_default_model("zsds_rb_test")
        assert load_default_model("zsds_rb_test") is first
        assert first.threshold == trained.threshold
    finally:
        load_default_model.cache_clear()


# ------------------------------------------------------------------------------ ROC helpers


def test_roc_metrics_on_a_hand_computed_example():
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    m = roc_metrics(y, s)
    assert m["auc"] == pytest.approx(15 / 16)
    assert (m["fpr_at_0p5"], m["fnr_at_0p5"]) == (0.25, 0.25)
    assert m["threshold"] == 0.7 and choose_threshold(y, s) == 0.7
    assert (m["fpr_at_threshold"], m["fnr_at_threshold"]) == (0.0, 0.25)
    assert m["fnr_at_fpr_1pct"] == 0.25
    assert m["fpr_at_fnr_1pct"] == 0.25 and m["fpr_at_fnr_5pct"] == 0.25
    assert (m["n_real"], m["n_bogus"]) == (4, 4)
    # A looser budget admits the 0.4 real at the cost of the 0.6 bogus.
    assert choose_threshold(y, s, target_fpr=0.25) == 0.4
    # Nothing fits the budget: the threshold calls nothing real.
    t = choose_threshold([1, 0], [0.2, 0.9])
    assert t > 0.9 and roc_metrics([1, 0], [0.2, 0.9], threshold=t)["fpr_at_threshold"] == 0
    with pytest.raises(ValueError, match="both"):
        roc_metrics([1, 1], [0.2, 0.3])


def test_plot_roc_writes_png(tmp_path, data, trained):
    df, y = data
    _, te = split_train_test(y, RBConfig())
    out = plot_roc(y[te], trained.score(df.iloc[te]), tmp_path / "plots" / "roc.png", "test")
    assert out.is_file() and out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
