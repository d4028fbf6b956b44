"""Tests for zsds.moving.tracklets: stationary-source removal and intra-night tracklets."""

import numpy as np
import pandas as pd
import pytest

from zsds.moving.tracklets import (
    TRACKLET_COLUMNS,
    TrackletConfig,
    gnomonic,
    make_tracklets,
    night_index,
    radec_to_unit,
    remove_stationary,
    unit_to_radec,
)

NIGHT = 60385  # MJD of the evening date; local midnight at Palomar is ~60386.32 UTC
T_VISITS = np.array([60386.28, 60386.31, 60386.35])  # three visits, 43 and 58 min apart


def _movers(n_obj: int, times, seed: int = 0, rate_range=(0.1, 0.6), noise_arcsec=0.1):
    """Linear movers on great circles near (180, 0) observed at ``times``; one row per det."""
    rng = np.random.default_rng(seed)
    ra0 = rng.uniform(178.0, 182.0, n_obj)
    dec0 = rng.uniform(-2.0, 2.0, n_obj)
    rate = rng.uniform(*rate_range, n_obj)  # deg/day
    pa = rng.uniform(0.0, 2 * np.pi, n_obj)
    rows = []
    for k, t in enumerate(times):
        dt = t - times[0]
        # Great-circle motion: rotate the start point along the direction pa by rate * dt.
        s = np.deg2rad(rate * dt)
        d0, a0 = np.deg2rad(dec0), np.deg2rad(ra0)
        sin_dec = np.sin(d0) * np.cos(s) + np.cos(d0) * np.sin(s) * np.cos(pa)
        dec = np.arcsin(sin_dec)
        ra = a0 + np.arctan2(np.sin(pa) * np.sin(s) * np.cos(d0), np.cos(s) - np.sin(d0) * sin_dec)
        noise = rng.normal(0.0, noise_arcsec / 3600.0, (2, n_obj))
        rows.append(
            pd.DataFrame(
                {
                    "mjd": t,
                    "ra": np.rad2deg(ra) + noise[0] / np.cos(dec),
                    "dec": np.rad2deg(dec) + noise[1],
                    "sigma": noise_arcsec,
                    "mag": 19.0,
                    "fid": 2,
                    "expid": 100 + k,
                    "field": 500,
                    "truth": [f"o{i}" for i in range(n_obj)],
                }
            )
        )
    dets = pd.concat(rows, ignore_index=True)
    dets.insert(0, "det_id", np.arange(len(dets), dtype=np.int64) + 1)
    return dets, rate, pa


def _truth_of(members, dets):
    m = members.merge(dets[["det_id", "truth"]], on="det_id")
    return m.groupby("trk_id")["truth"].agg(lambda s: set(s))


def test_geometry_helpers_round_trip():
    ra = np.array([0.0, 90.0, 359.9, 180.0])
    dec = np.array([0.0, 45.0, -30.0, 89.9])
    r2, d2 = unit_to_radec(radec_to_unit(ra, dec))
    np.testing.assert_allclose(r2, ra, atol=1e-9)
    np.testing.assert_allclose(d2, dec, atol=1e-9)
    xi, eta = gnomonic(radec_to_unit([180.01], [0.0]), radec_to_unit(180.0, 0.0))
    assert xi[0] == pytest.approx(np.deg2rad(0.01), rel=1e-6)
    assert eta[0] == pytest.approx(0.0, abs=1e-12)


def test_night_index_splits_at_local_noon():
    # Evening (03:00 UTC), local midnight (07:47 UTC) and dawn (13:00 UTC) share one night.
    times = NIGHT + 1 + np.array([3.0, 7.8, 13.0]) / 24
    assert np.all(night_index(times) == NIGHT)
    assert night_index(np.array([NIGHT + 1 + 21.0 / 24]))[0] == NIGHT + 1


def test_three_point_tracklets_of_linear_movers():
    dets, rate, pa = _movers(30, T_VISITS, seed=1)
    trk, mem = make_tracklets(dets)
    assert list(trk.columns) == list(TRACKLET_COLUMNS)
    assert len(trk) == 30
    assert (trk["n"] == 3).all()
    truth = _truth_of(mem, dets)
    assert all(len(s) == 1 for s in truth)
    assert sorted(next(iter(s)) for s in truth) == sorted(dets["truth"].unique())
    # Rates: includes cos(dec); compare the total rate and the position angle.
    order = [int(next(iter(truth[t]))[1:]) for t in trk["trk_id"]]
    total = np.hypot(trk["ra_rate"], trk["dec_rate"]).to_numpy()
    np.testing.assert_allclose(total, rate[order], rtol=0.02, atol=0.003)
    pa_fit = np.arctan2(trk["ra_rate"], trk["dec_rate"]).to_numpy()
    dpa = np.angle(np.exp(1j * (pa_fit - pa[order])))
    assert np.all(np.abs(dpa) < 0.05)
    assert (trk["rms_arcsec"] < 0.5).all()
    assert (trk["night"] == NIGHT).all()
    assert (trk["mjd_start"] == T_VISITS[0]).all() and (trk["mjd_end"] == T_VISITS[-1]).all()
    # Members are exclusive.
    assert mem["det_id"].is_unique


def test_pairs_rate_and_time_limits():
    cfg = TrackletConfig()
    # Two visits only: pairs. A 3 deg/day mover exceeds max_vel and is not paired.
    dets, _, _ = _movers(10, T_VISITS[:2], seed=2)
    fast, _, _ = _movers(1, T_VISITS[:2], seed=3, rate_range=(3.0, 3.0))
    fast["det_id"] += 1000
    fast["truth"] = "fast"
    trk, mem = make_tracklets(pd.concat([dets, fast], ignore_index=True), cfg)
    assert len(trk) == 10 and (trk["n"] == 2).all() and (trk["rms_arcsec"] == 0).all()
    assert not mem["det_id"].isin(fast["det_id"]).any()
    # With a larger max_vel the fast one is paired.
    trk2, _ = make_tracklets(pd.concat([dets, fast], ignore_index=True), TrackletConfig(max_vel=4))
    assert len(trk2) == 11
    # Exposures closer than min_time are not paired; min_points=3 drops pairs.
    close, _, _ = _movers(5, np.array([60386.30, 60386.30 + 2 / 1440]), seed=4)
    assert len(make_tracklets(close)[0]) == 0
    assert len(make_tracklets(dets, TrackletConfig(min_points=3))[0]) == 0


def test_noise_points_do_not_spoil_tracklets():
    dets, _, _ = _movers(40, T_VISITS, seed=5, noise_arcsec=0.2)
    rng = np.random.default_rng(6)
    n_false = 600
    false = pd.DataFrame(
        {
            "det_id": np.arange(n_false) + 10_000,
            "mjd": np.repeat(T_VISITS, n_false // 3),
            "ra": rng.uniform(178.0, 182.0, n_false),
            "dec": rng.uniform(-2.0, 2.0, n_false),
            "sigma": 0.2,
            "mag": 20.3,
            "fid": 2,
            "expid": np.repeat([100, 101, 102], n_false // 3),
            "field": 500,
            "truth": "",
        }
    )
    all_dets = pd.concat([dets, false], ignore_index=True).sample(frac=1.0, random_state=1)
    trk, mem = make_tracklets(all_dets)
    truth = _truth_of(mem, all_dets)
    three = trk.set_index("trk_id")["n"] == 3
    # Every object gets a pure 3-point tracklet; no 3-point tracklet mixes sources.
    pure3 = [next(iter(s)) for t, s in truth.items() if three[t] and len(s) == 1 and "" not in s]
    assert sorted(pure3) == sorted(dets["truth"].unique())
    assert all(len(s) == 1 for t, s in truth.items() if three[t])
    # 3-point tracklets are exclusive; pairs never reuse their detections.
    m3 = mem[mem["trk_id"].isin(three[three].index)]
    assert m3["det_id"].is_unique
    m2 = mem[~mem["trk_id"].isin(three[three].index)]
    assert not m2["det_id"].isin(m3["det_id"]).any()


def test_empty_input():
    trk, mem = make_tracklets(_movers(1, T_VISITS[:1])[0])
    assert len(trk) == 0 and list(trk.columns) == list(TRACKLET_COLUMNS)
    assert list(mem.columns) == ["trk_id", "det_id"]


def test_remove_stationary():
    rng = np.random.default_rng(7)
    n_star = 20
    ra_s = rng.uniform(178.0, 182.0, n_star)
    dec_s = rng.uniform(-2.0, 2.0, n_star)
    rows = []
    expid = 1
    # Variable stars on two nights (one detection per night), plus a one-night artefact seen
    # in 4 exposures, plus movers that pass.
    for night_t in (60386.30, 60387.30):
        rows.append(
            pd.DataFrame(
                {
                    "mjd": night_t,
                    "ra": ra_s + rng.normal(0, 0.2 / 3600, n_star),
                    "dec": dec_s + rng.normal(0, 0.2 / 3600, n_star),
                    "expid": expid,
                    "kind": "star",
                }
            )
        )
        expid += 1
    for k in range(4):
        rows.append(
            pd.DataFrame(
                {
                    "mjd": [60388.28 + 0.02 * k],
                    "ra": [181.5],
                    "dec": [1.5],
                    "expid": [10 + k],
                    "kind": ["artefact"],
                }
            )
        )
    movers, _, _ = _movers(20, T_VISITS, seed=8)
    rows.append(movers[["mjd", "ra", "dec", "expid"]].assign(kind="mover"))
    # A single detection repeated at one position in 2 exposures of one night is kept.
    rows.append(
        pd.DataFrame(
            {
                "mjd": [60389.30, 60389.33],
                "ra": [179.0, 179.0],
                "dec": [-1.0, -1.0],
                "expid": [20, 21],
                "kind": ["twice", "twice"],
            }
        )
    )
    dets = pd.concat(rows, ignore_index=True)
    dets["det_id"] = np.arange(len(dets))
    keep = remove_stationary(dets, radius_arcsec=2.0, min_nights=2, min_count=4)
    assert keep.dtype == bool and keep.shape == (len(dets),)
    kind = dets["kind"].to_numpy()
    assert not keep[kind == "star"].any()
    assert not keep[kind == "artefact"].any()
    assert keep[kind == "mover"].all()
    assert keep[kind == "twice"].all()
    # Disabling the exposure count keeps the one-night artefact.
    keep2 = remove_stationary(dets, min_count=0)
    assert keep2[kind == "artefact"].all() and not keep2[kind == "star"].any()
    assert remove_stationary(dets.iloc[:0]).shape == (0,)
