"""Tests for zsds.moving.heliolinc: HelioLinC linking, purification and selection."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from zsds.moving.heliolinc import (
    LINKAGE_COLUMNS,
    HelioLincConfig,
    hypothesis_grid,
    link,
    refine_linkages,
)
from zsds.moving.tracklets import make_tracklets
from zsds.solar.ephemeris import ephemerides_grid
from zsds.solar.orbits import GM_SUN, Orbits
from zsds.solar.population import simulate_population

EPOCH = 60386.32  # local midnight at Palomar, 2024-03-16/17; RA ~178 is near opposition
# Three nights, three visits per night 40-45 min apart (mid-exposure UTC).
TIMES = (np.array([60385.29, 60385.32, 60385.35])[None, :] + np.arange(3)[:, None]).ravel()


def _mbas(n: int) -> Orbits:
    orb = simulate_population(178.0, 0.0, EPOCH, 2.0, seed=11)
    sel = np.flatnonzero((orb.a > 2.1) & (orb.a < 3.3) & (orb.e < 0.3))[:n]
    return orb[sel]


def _observe(orb: Orbits, seed: int = 0, sigma: float = 0.15) -> pd.DataFrame:
    eph = ephemerides_grid(orb, TIMES)
    rng = np.random.default_rng(seed)
    dec = eph["dec"].to_numpy() + rng.normal(0, sigma / 3600, len(eph))
    ra = eph["ra"].to_numpy() + rng.normal(0, sigma / 3600, len(eph)) / np.cos(np.deg2rad(dec))
    return pd.DataFrame(
        {
            "det_id": np.arange(len(eph), dtype=np.int64) + 1,
            "mjd": eph["mjd_utc"].to_numpy(),
            "ra": ra,
            "dec": dec,
            "sigma": sigma,
            "mag": 19.0,
            "fid": 2,
            "expid": np.repeat(np.arange(len(TIMES)) + 1, len(orb)),
            "field": 472,
            "truth": eph["designation"].to_numpy().astype(str),
        }
    )


def _config(**kw) -> HelioLincConfig:
    return replace(HelioLincConfig(t_ref=float(TIMES.mean())), **kw)


def _linked_truth(link_members, dets):
    m = link_members.merge(dets[["det_id", "truth"]], on="det_id")
    return m.groupby("link_id")["truth"].agg(lambda s: sorted(set(s)))


def test_hypothesis_grid():
    cfg = HelioLincConfig()
    grid = hypothesis_grid(cfg)
    assert list(grid.columns) == ["r", "rdot", "rddot"]
    assert grid["r"].min() == pytest.approx(cfg.r_min)
    assert grid["r"].max() <= cfg.r_max
    bound = cfg.e_max * np.sqrt(GM_SUN / grid["r"]) + cfg.rdot_step
    assert (grid["rdot"].abs() <= bound).all()
    assert (grid["rddot"] == 0).all()
    acc = hypothesis_grid(replace(cfg, accel_factors=(0.0, 1.0)))
    assert len(acc) == 2 * len(grid)
    assert acc["rddot"].min() == pytest.approx(-GM_SUN / cfg.r_min**2)


def test_links_handful_of_mbas_exactly():
    orb = _mbas(8)
    assert len(orb) == 8
    dets = _observe(orb)
    trk, mem = make_tracklets(dets)
    assert len(trk) == 24
    links, members = link(trk, mem, dets, _config())
    assert list(links.columns) == list(LINKAGE_COLUMNS)
    assert len(links) == 8
    truth = _linked_truth(members, dets)
    assert all(len(t) == 1 for t in truth)
    assert sorted(t[0] for t in truth) == sorted(orb.designation)
    assert (links["n_det"] == 9).all() and (links["n_nights"] == 3).all()
    assert members["det_id"].is_unique and len(members) == len(dets)
    assert (links["rms_arcsec"] < 0.5).all() and (links["chi2"] < 3).all()
    assert links["arc_days"].min() > 1.9
    assert links["accept_score"].isna().all()
    # The parallax term of the fit gives a rough geocentric distance (weakly constrained by
    # the diurnal parallax over ~2 h per night).
    delta_true = ephemerides_grid(orb, [TIMES.mean()]).set_index("designation")["delta"]
    got = pd.Series(links["delta_au"].to_numpy(), index=[t[0] for t in truth])
    np.testing.assert_allclose(got[delta_true.index], delta_true, rtol=0.4)
    t = links.attrs["timings"]
    assert t["n_hypotheses"] == len(hypothesis_grid(_config())) and t["cluster"] > 0


def test_splits_two_comoving_objects():
    base = _mbas(1)
    twin = Orbits(
        designation=["TWIN"], a=base.a, e=base.e, inc=base.inc + 0.01, node=base.node,
        argperi=base.argperi, mean_anomaly=base.mean_anomaly + 0.01, epoch=base.epoch,
        H=base.H, G=base.G,
    )  # fmt: skip
    pair = Orbits.concatenate([base, twin])
    dets = _observe(pair, seed=3)
    trk, mem = make_tracklets(dets)
    cfg = _config()
    links, members = link(trk, mem, dets, cfg)
    truth = _linked_truth(members, dets)
    assert sorted(t[0] for t in truth) == sorted(pair.designation)
    assert all(len(t) == 1 for t in truth) and (links["n_det"] == 9).all()
    # The two are within one clustering radius: without splitting they are one impure cluster,
    # which purification cannot save.
    links0, _ = link(trk, mem, dets, replace(cfg, split_levels=0))
    assert len(links0) < 2


def test_refine_purifies_and_deduplicates():
    orb = _mbas(3)
    dets = _observe(orb, seed=5)
    truth = dets["truth"].to_numpy()
    a, b = orb.designation[:2]
    rows_a = np.flatnonzero(truth == a)
    rows_b = np.flatnonzero(truth == b)
    # A candidate of object a with one foreign detection (b, in an exposure where a is too),
    # the same without the intruder, and a subset of a: one linkage of a results.
    cands = [np.r_[rows_a, rows_b[4]], rows_a, rows_a[:6], rows_b]
    chosen, stats = refine_linkages(cands, np.full(4, 1.5), dets, _config())
    got = sorted(tuple(np.sort(c)) for c in chosen)
    assert got == sorted([tuple(rows_a), tuple(rows_b)])
    assert (stats["n_det"] == 9).all()
    # Linkages never share detections.
    assert len(np.unique(np.concatenate(chosen))) == sum(len(c) for c in chosen)


def test_accept_callable():
    orb = _mbas(5)
    dets = _observe(orb, seed=7)
    trk, mem = make_tracklets(dets)
    calls = []

    def reject_first(df: pd.DataFrame) -> tuple[bool, float]:
        calls.append(len(df))
        assert {"mjd", "ra", "dec", "sigma"} <= set(df.columns)
        name = df["truth"].iloc[0]
        return name != orb.designation[0], float(len(df)) + 0.5

    links, members = link(trk, mem, dets, _config(), accept=reject_first)
    truth = _linked_truth(members, dets)
    assert sorted(t[0] for t in truth) == sorted(orb.designation[1:])
    assert (links["accept_score"] == 9.5).all()
    # Consulted lazily: about once per object, not for every raw cluster.
    assert 5 <= len(calls) <= 10
    none, none_members = link(trk, mem, dets, _config(), accept=lambda df: (False, 0.0))
    assert len(none) == 0 and len(none_members) == 0
    assert list(none.columns) == list(LINKAGE_COLUMNS)


def test_empty_and_too_short():
    orb = _mbas(2)
    dets = _observe(orb)
    one_night = dets[dets["mjd"] < 60386.0]
    trk, mem = make_tracklets(one_night)
    links, members = link(trk, mem, one_night, _config())
    assert len(links) == 0 and list(members.columns) == ["link_id", "det_id"]
    links, _ = link(trk.iloc[:0], mem.iloc[:0], dets, _config())
    assert len(links) == 0
