"""Tests of the deep real-bogus score ``drb`` (numpy inference of the packaged network).

No PyTorch here: the forward pass is checked against an independent scipy implementation, and
the packaged weights against real ZTF alerts (``tests/data/alerts``, braai's ``drb``) and a
small simulated night processed by the pipeline (``test_drb_quality_on_a_new_simulated_night``).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate2d

from zsds.realbogus.drb import (
    DRB_VERSION,
    STAMP_SIZE,
    DRBModel,
    drb_score,
    load_drb_model,
    normalize_stamps,
    stack_triplets,
)


def point_triplets(n: int, seed: int, real: bool) -> tuple[np.ndarray, ...]:
    """Sky-noise stamps with a star; ``real``: the star is new (in sci, not in ref), else a
    cosmic-ray-like single hot pixel in sci (the difference is that pixel)."""
    rng = np.random.default_rng(seed)
    g = np.arange(STAMP_SIZE) - STAMP_SIZE // 2
    psf = np.exp(-(g[None, :] ** 2 + g[:, None] ** 2) / (2 * 1.1**2))
    ref = rng.normal(100, 3, (n, STAMP_SIZE, STAMP_SIZE)).astype(np.float32)
    sci = rng.normal(100, 6, (n, STAMP_SIZE, STAMP_SIZE)).astype(np.float32)
    amp = rng.uniform(60, 200, n)[:, None, None]
    if real:
        sci += (amp * psf).astype(np.float32)
    else:
        sci[:, 31, 31] += 8 * amp[:, 0, 0].astype(np.float32)
    return sci, ref, sci - ref


@pytest.fixture(scope="module")
def model() -> DRBModel:
    return load_drb_model()


# ---------------------------------------------------------------------------- normalisation


def test_normalize_is_median_free_unit_norm_and_leaves_input_alone():
    rng = np.random.default_rng(0)
    a = rng.normal(500, 10, (4, STAMP_SIZE, STAMP_SIZE)).astype(np.float32)
    a[1, :5, :5] = np.nan
    a[2, 10, 10] = -3.4028235e38  # IPAC's fill of masked template pixels
    a[3] = 0.0
    before = a.copy()
    out = normalize_stamps(a)
    np.testing.assert_array_equal(a, before)
    assert out.dtype == np.float32 and out.shape == a.shape
    np.testing.assert_allclose(np.linalg.norm(out[:3].reshape(3, -1), axis=1), 1.0, rtol=1e-5)
    assert np.all(out[3] == 0.0)
    assert np.all(out[1, :5, :5] == 0.0) and out[2, 10, 10] == 0.0
    assert np.all(np.isfinite(out))
    assert abs(float(np.median(out[0]))) < 1e-6


def test_normalize_pads_edge_stamps_and_rejects_big_ones():
    s = np.ones((41, 63), np.float32)
    s[20, 30] = 10.0
    out = normalize_stamps(s)
    assert out.shape == (1, STAMP_SIZE, STAMP_SIZE)
    assert np.all(out[0, 41:] == 0.0) and out[0, 20, 30] == pytest.approx(1.0)
    mixed = normalize_stamps([s, np.ones((63, 63), np.float32)])
    assert mixed.shape == (2, STAMP_SIZE, STAMP_SIZE)
    np.testing.assert_array_equal(mixed[0], out[0])
    with pytest.raises(ValueError, match="larger"):
        normalize_stamps(np.zeros((64, 63)))
    # An even number of pixels: the median is the mean of the middle two (here 2.5).
    even = normalize_stamps(np.array([[1.0, 2.0], [3.0, 4.0]]))[0, :2, :2]
    np.testing.assert_allclose(even / even[1, 1], [[-1.5 / 1.5, -0.5 / 1.5], [0.5 / 1.5, 1.0]],
                               rtol=1e-6)


def test_stack_triplets_checks_counts():
    sci, ref, diff = point_triplets(3, 1, True)
    x = stack_triplets(sci, ref, diff)
    assert x.shape == (3, 3, STAMP_SIZE, STAMP_SIZE)
    with pytest.raises(ValueError, match="equal"):
        stack_triplets(sci, ref[:2], diff)


# ---------------------------------------------------------------------------- forward pass


def _reference_logits(model: DRBModel, x: np.ndarray) -> np.ndarray:
    """Straightforward float64 forward pass with scipy's 2-D correlation (the oracle)."""
    a = model.arrays
    out = []
    for sample in x.astype(np.float64):
        h = sample
        k = 1
        while f"conv{k}.weight" in a:
            w, b = a[f"conv{k}.weight"].astype(np.float64), a[f"conv{k}.bias"]
            conv = np.stack([sum(correlate2d(h[i], w[o, i], mode="valid")
                                 for i in range(w.shape[1])) + b[o] for o in range(w.shape[0])])
            conv = np.maximum(conv, 0.0)
            c, hh, ww = conv.shape
            h = conv[:, : hh // 2 * 2, : ww // 2 * 2].reshape(c, hh // 2, 2, ww // 2, 2).max(
                axis=(2, 4))
            k += 1
        v = h.reshape(-1)  # (channel, row, column) order, as PyTorch flattens
        k = 1
        while f"fc{k}.weight" in a:
            v = a[f"fc{k}.weight"].astype(np.float64) @ v + a[f"fc{k}.bias"]
            if f"fc{k + 1}.weight" in a:
                v = np.maximum(v, 0.0)
            k += 1
        out.append(v[0])
    return np.array(out)


def test_forward_pass_matches_an_independent_implementation(model):
    sci, ref, diff = point_triplets(3, 2, True)
    x = stack_triplets(sci, ref, diff)
    np.testing.assert_allclose(model.logits(x), _reference_logits(model, x), rtol=1e-4,
                               atol=1e-4)


def test_random_architecture_round_trips_and_matches_the_oracle(tmp_path):
    rng = np.random.default_rng(5)
    arrays = {"conv1.weight": rng.normal(0, 0.3, (4, 3, 3, 3)), "conv1.bias": rng.normal(0, 1, 4),
              "conv2.weight": rng.normal(0, 0.3, (5, 4, 3, 3)), "conv2.bias": rng.normal(0, 1, 5),
              "fc1.weight": rng.normal(0, 0.1, (7, 5 * 14 * 14)), "fc1.bias": rng.normal(0, 1, 7),
              "fc2.weight": rng.normal(0, 0.3, (1, 7)), "fc2.bias": rng.normal(0, 1, 1)}
    m = DRBModel("test_arch", 0.4, {"note": "random"}, arrays)
    x = stack_triplets(*point_triplets(2, 3, False))
    np.testing.assert_allclose(m.logits(x), _reference_logits(m, x), rtol=1e-4, atol=1e-4)
    p = m.save(tmp_path / "w")
    assert p.name == "w.npz"
    back = DRBModel.load(p)
    assert back.version == "test_arch" and back.threshold == 0.4
    assert back.meta["note"] == "random"
    np.testing.assert_array_equal(back.logits(x), m.logits(x))


def test_bad_weights_are_refused(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a drb weights file"):
        DRBModel.load(p)
    with pytest.raises(ValueError, match="fc1 takes"):
        DRBModel("x", 0.5, {}, {"conv1.weight": np.zeros((2, 3, 3, 3)),
                                "conv1.bias": np.zeros(2),
                                "fc1.weight": np.zeros((1, 10)), "fc1.bias": np.zeros(1)})


# ---------------------------------------------------------------------------- packaged model


def test_packaged_model_loads_from_package_data(model):
    assert model.version == DRB_VERSION
    assert 0.0 < model.threshold < 1.0
    assert load_drb_model() is model  # loaded once
    m = model.meta["metrics"]["test"]
    assert m["auc"] > 0.9 and m["fpr_at_threshold"] < 0.05
    with pytest.raises(FileNotFoundError):
        load_drb_model("no_such_model")


def test_scores_are_probabilities_deterministic_and_batch_independent(model):
    sci, ref, diff = (np.concatenate(p) for p in zip(point_triplets(20, 7, True),
                                                     point_triplets(20, 8, False), strict=True))
    s = drb_score(sci, ref, diff)
    assert s.dtype == np.float32 and s.shape == (40,)
    assert np.all((s >= 0) & (s <= 1))
    np.testing.assert_array_equal(s, drb_score(sci, ref, diff))
    one = np.array([drb_score(sci[i], ref[i], diff[i])[0] for i in range(40)])
    np.testing.assert_allclose(s, one, atol=1e-6)
    np.testing.assert_allclose(s, drb_score(sci, ref, diff, batch_size=7), atol=1e-6)
    # Units do not matter: each stamp is normalised (median and scale).
    np.testing.assert_allclose(s, drb_score(3.0 * sci + 50, 3.0 * ref - 20, 3.0 * diff),
                               atol=1e-5)
    # The network separates a new star from a single hot pixel.
    assert np.median(s[:20]) > 0.5 > np.median(s[20:])


def test_agrees_with_braai_on_real_ztf_alerts(model, test_data):
    """Real alerts (schema >= 3.3 carry braai's drb): 37 of the 39 are real by braai, and
    zsds_drb_v1 scores 36 of them >= 0.5 (docs/diffim.md), among them the 2023 ones taken in
    4.5-7 px seeing."""
    from zsds.realbogus.drb_train import read_alert_triplets

    x, t = read_alert_triplets([test_data / "alerts"])
    assert len(t) >= 50
    s = model.score_normalized(x)
    assert np.all(np.isfinite(s))
    w = t["drb"].notna().to_numpy()
    braai_real = w & (t["drb"].fillna(0).to_numpy() >= 0.5)
    assert braai_real.sum() >= 30
    assert (s[braai_real] >= 0.5).mean() >= 0.85


def test_drb_quality_on_a_new_simulated_night(model, tmp_path):
    """A night the model never saw (another field, CCD, seeing, and the i filter, absent from
    the training nights), processed by the pipeline, with fresh injections."""
    from zsds.realbogus.drb_data import SimHomeSpec, build_sim_home, collect_triplets

    spec = SimHomeSpec(night="2026-11-26", field=694, ccd=3, qid=2, filt="i", n_epochs=6,
                       quad_size=384, seed=5)
    home, engine = build_sim_home(tmp_path / "home", spec)
    ts = collect_triplets(home, engine, passes=1, home_index=0, score_rb=False)
    y = ts.table["label"].to_numpy()
    assert (y == 1).sum() > 100 and (y == 0).sum() > 100
    s = model.score_normalized(ts.x.astype(np.float32))
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(y, s)
    called = s >= model.threshold
    fpr, fnr = called[y == 0].mean(), (~called[y == 1]).mean()
    # Measured with zsds_drb_v1 (310 real, 444 bogus): AUC 0.996, FPR 0.011, FNR 0.061.
    assert auc > 0.98, auc
    assert fpr < 0.03, fpr
    assert fnr < 0.12, fnr
