"""Tests for zsds.moving.simulate and zsds.moving.evaluate, and the end-to-end linking bars."""

import numpy as np
import pandas as pd
import pytest

from zsds.moving.evaluate import evaluate_linking, findable, run_linking_evaluation
from zsds.moving.simulate import DETECTION_COLUMNS, EXPOSURE_COLUMNS, simulate_window
from zsds.moving.tracklets import night_index, radec_to_unit


def _toy_dets() -> pd.DataFrame:
    """Object A: pairs on 3 nights; B: pairs on 2 nights; C: singles; D: too fast; false."""
    rows = []
    det = 0
    for name, nights, n_per_night, rate in (
        ("A", (0, 1, 2), 2, 0.25),
        ("B", (0, 1), 2, 0.25),
        ("C", (0, 1, 2), 1, 0.25),
        ("D", (0, 1, 2), 2, 3.0),
        ("", (0, 1, 2), 2, 0.25),
    ):
        for n in nights:
            for k in range(n_per_night):
                t = 60385.30 + n + 0.03 * k
                det += 1
                rows.append(
                    (det, t, 180.0 + rate * (t - 60385.3), 0.0, 0.1, 19.0, 2, 10 * n + k, 1, name)
                )
    return pd.DataFrame(rows, columns=list(DETECTION_COLUMNS))


def test_findable_definition():
    dets = _toy_dets()
    assert findable(dets).tolist() == ["A"]
    assert findable(dets, min_nights=2).tolist() == ["A", "B"]


def test_evaluate_linking_counts():
    dets = _toy_dets()
    ids = dets.set_index("truth")["det_id"]
    a, b, false = ids["A"].to_numpy(), ids["B"].to_numpy(), ids[""].to_numpy()
    link_members = pd.DataFrame(
        {
            "link_id": np.r_[np.zeros(6), np.ones(3), np.full(4, 2), np.full(3, 3)].astype(int),
            "det_id": np.r_[a, a[:3], b, a[:2], false[0]],
        }
    )
    m = evaluate_linking(dets, link_members)
    assert m["n_findable"] == 1 and m["n_found"] == 1 and m["completeness"] == 1.0
    assert m["n_linkages"] == 4 and m["n_pure"] == 3 and m["n_impure"] == 1
    assert m["purity"] == pytest.approx(0.75)
    assert m["n_duplicates"] == 1  # a second pure linkage of A
    assert m["n_found_unfindable"] == 1  # B
    assert m["mean_det_fraction"] == pytest.approx(1.0)
    assert m["missed"] == []
    none = evaluate_linking(dets, link_members.iloc[:0])
    assert none["completeness"] == 0.0 and none["missed"] == ["A"]


def test_simulate_window_schema_and_determinism():
    dets, orb, exp = simulate_window(4, density_scale=0.05, false_per_exposure=20)
    again, orb2, _ = simulate_window(4, density_scale=0.05, false_per_exposure=20)
    pd.testing.assert_frame_equal(dets, again)
    assert np.array_equal(orb.designation, orb2.designation)
    assert list(dets.columns) == list(DETECTION_COLUMNS)
    assert list(exp.columns) == list(EXPOSURE_COLUMNS)
    assert dets["det_id"].is_unique
    # 3 nights x 2 fields x 3 visits, visits of a field 30-60 min apart, in one night each.
    assert len(exp) == 18 and exp["field"].nunique() == 2
    assert (night_index(exp["mjd"].to_numpy()) == exp["night"].to_numpy()).all()
    for _, g in exp.groupby(["night", "field"]):
        gaps = np.diff(np.sort(g["mjd"].to_numpy())) * 1440
        assert len(g) == 3 and ((gaps > 29) & (gaps < 61)).all()
    assert set(dets["fid"]) <= {1, 2, 3}
    # Detections lie inside their exposure's footprint (6.9 deg square ~ 4.9 deg corner).
    e = exp.set_index("expid").loc[dets["expid"]]
    cosd = np.sum(radec_to_unit(dets["ra"], dets["dec"]) * radec_to_unit(e["ra"], e["dec"]), axis=1)
    assert np.rad2deg(np.arccos(np.clip(cosd, -1, 1))).max() < 4.95
    # Astrometric errors 0.1-0.3 arcsec for asteroids near and above the limit.
    real = dets[dets["truth"] != ""]
    assert real["truth"].isin(orb.designation).all()
    assert 0.1 <= real["sigma"].min() and real["sigma"].median() < 0.3
    # False detections: 20 per exposure; the stationary sources add ~60 % of 50 per field.
    n_empty = (dets["truth"] == "").sum()
    assert 18 * 20 + 0.4 * 50 * 18 < n_empty < 18 * 20 + 0.8 * 50 * 18


def test_end_to_end_bars():
    """Several hundred findable asteroids, hundreds of false detections per night, no orbit fit:
    completeness >= 90 %, purity >= 95 % in well under a minute."""
    res = run_linking_evaluation(seed=1, density_scale=0.5, verbose=True)
    assert res["n_findable"] >= 200
    assert res["n_false_per_night"] >= 300
    assert res["n_dets_per_night"] >= 2000
    assert res["completeness"] >= 0.90, res["summary"]
    assert res["purity"] >= 0.95, res["summary"]
    assert res["n_duplicates"] <= 0.02 * res["n_linkages"]
    assert res["n_stationary_removed"] > 0
    assert res["timings"]["total"] < 60.0
    assert "completeness" in res["summary"] and "purity" in res["summary"]
