"""Source matching: reference sources, stable transients, one detection per epoch."""

from __future__ import annotations

import numpy as np

from zsds.lightcurves.match import MatchConfig, match_detections
from zsds.lightcurves.model import TRANSIENT_MATCHID0


def _scene(rng: np.random.Generator, n_ref: int = 300, n_ep: int = 12):
    ref_ra = 359.95 + rng.uniform(0, 0.1, n_ref)  # straddles RA = 0/360
    ref_ra %= 360.0
    ref_dec = rng.uniform(-0.05, 0.05, n_ref)
    ra, dec, ep, truth = [], [], [], []
    for j in range(n_ep):
        seen = rng.random(n_ref) < 0.9
        jit = rng.normal(0, 0.25 / 3600, (2, seen.sum()))
        ra.append((ref_ra[seen] + jit[0]) % 360.0)
        dec.append(ref_dec[seen] + jit[1])
        ep.append(np.full(seen.sum(), j))
        truth.append(np.flatnonzero(seen) + 1)
    # A transient seen in epochs 3..7 and a single noise detection in epoch 5.
    t_ra, t_dec = 0.01, 0.02
    for j in range(3, 8):
        ra.append([t_ra + rng.normal(0, 0.2 / 3600)])
        dec.append([t_dec + rng.normal(0, 0.2 / 3600)])
        ep.append([j])
        truth.append([-2])
    ra.append([0.03])
    dec.append([-0.03])
    ep.append([5])
    truth.append([-1])
    return (ref_ra, ref_dec, np.concatenate(ra), np.concatenate(dec), np.concatenate(ep),
            np.concatenate(truth))


def test_matches_reference_and_groups_transients() -> None:
    rng = np.random.default_rng(3)
    ref_ra, ref_dec, ra, dec, ep, truth = _scene(rng)
    ids = np.arange(1, ref_ra.size + 1)
    res = match_detections(ra, dec, ep, ids, ref_ra, ref_dec)
    src = truth > 0
    assert np.mean(res.matchid[src] == truth[src]) > 0.995
    assert res.is_source[src].all() and not res.is_source[~src].any()
    tr = res.matchid[truth == -2]
    assert tr[0] >= TRANSIENT_MATCHID0 and np.all(tr == tr[0])  # one transient
    assert res.matchid[truth == -1][0] == -1  # single detection: no object
    k = res.transient_ids.tolist().index(tr[0])
    assert abs(res.transient_ra[k] - 0.01) < 0.5 / 3600
    # Other transients are only the chance pairs of reference sources closer than 1.5".
    assert len(res.transient_ids) <= 4


def test_transient_ids_are_stable_with_a_prior_build() -> None:
    rng = np.random.default_rng(4)
    ref_ra, ref_dec, ra, dec, ep, truth = _scene(rng)
    ids = np.arange(1, ref_ra.size + 1)
    first = match_detections(ra, dec, ep, ids, ref_ra, ref_dec)
    # A new transient appears; the old one is detected again in one new epoch.
    ra2 = np.concatenate([ra, [0.01, 0.04, 0.04]])
    dec2 = np.concatenate([dec, [0.02, 0.0, 0.0]])
    ep2 = np.concatenate([ep, [20, 20, 21]])
    second = match_detections(ra2, dec2, ep2, ids, ref_ra, ref_dec, first.transient_ids,
                              first.transient_ra, first.transient_dec)
    old = first.matchid[truth == -2][0]
    assert second.matchid[-3] == old
    assert second.matchid[-2] == second.matchid[-1] == first.transient_ids.max() + 1
    np.testing.assert_array_equal(second.matchid[: ra.size], first.matchid)


def test_one_detection_per_object_per_epoch() -> None:
    ref_ra, ref_dec = np.array([10.0]), np.array([20.0])
    # Two detections of the same epoch within the radius: the nearer one is the source.
    ra = np.array([10.0 + 0.3 / 3600, 10.0 + 1.0 / 3600])
    dec = np.array([20.0, 20.0])
    res = match_detections(ra, dec, np.array([0, 0]), np.array([7]), ref_ra, ref_dec,
                           config=MatchConfig(radius=1.5, min_transient_points=1))
    assert res.matchid[0] == 7
    assert res.matchid[1] == TRANSIENT_MATCHID0


def test_empty_input() -> None:
    e = np.zeros(0)
    res = match_detections(e, e, e.astype(int), np.array([1]), np.array([1.0]),
                           np.array([1.0]))
    assert res.matchid.size == 0 and res.transient_ids.size == 0
