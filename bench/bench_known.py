"""Benchmark: tag one night of candidates against a full-size known-asteroid catalogue.

A ~1,000,000-orbit catalogue is synthesised from ``simulate_population`` orbit classes (a, e, i,
argument of perihelion and H from ecliptic cones around the sky), with the node and the mean
anomaly redrawn uniformly so the objects spread along the whole ecliptic. The night has 100
exposures (50 ecliptic fields near opposition, each visited twice, 30 s exposures, 5.5 deg
cones) with 500 candidates each: up to 250 real asteroids brighter than V = 20.5 (exact
positions + 0.1-0.3 arcsec noise) and unrelated random detections for the rest.

Prints the time to build the night index, to tag all candidates (total and per exposure), to
list the objects in every exposure, and the tagging score (bar: >= 99 % of known asteroids
brighter than the limit tagged within 2 arcsec). Runs in well under 2 minutes on one core.

``--age-days D`` tags against a catalogue whose orbits osculate D days before the night (the
synthesised orbits taken back with N-body, untimed set-up): the night index then propagates
every orbit to mid-night with N-body (ASSIST, DE440 + 16 asteroids), once, in ``--workers``
processes. The candidates come from the orbits at the night, so the score checks that
propagation.

``--quick`` tags 10 exposures of 50 candidates against 20,000 orbits (seconds; the test suite
runs it so that the benchmark cannot rot).

Usage: python bench/bench_known.py [--n-orbits 1000000] [--n-exposures 100] [--per-exposure 500]
       [--age-days 0] [--workers 1] [--quick]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one core

import argparse
import resource
import time

import numpy as np
import pandas as pd

from zsds.moving.known import (
    KnownConfig,
    evaluate_tagging,
    objects_in_exposures,
    precompute_night,
    synthesize_candidates,
    tag_candidates,
)
from zsds.solar import Orbits, elements_to_state, simulate_population, state_to_elements
from zsds.solar.nbody import propagate_states

NIGHT_MJD = 60389.0  # 2024-03-20 UTC: the Sun near RA 0h, opposition near RA 12h


def synthetic_catalogue(n: int, seed: int = 1) -> Orbits:
    """About ``n`` orbits with simulate_population's classes, spread along the ecliptic."""
    parts = []
    total = 0
    k = 0
    while total < n:
        lon = 45.0 * k
        o = simulate_population(lon, 0.0, NIGHT_MJD, 25.0, seed + k, density_scale=2.0,
                                prefix=f"c{k}_")  # fmt: skip
        parts.append(o)
        total += len(o)
        k += 1
    base = Orbits.concatenate(parts)[:n]
    rng = np.random.default_rng(seed)
    n = len(base)
    return Orbits(
        designation=np.char.add("b", np.char.zfill(np.arange(n).astype(str), 7)),
        a=base.a, e=base.e, inc=base.inc, node=rng.uniform(0.0, 360.0, n),
        argperi=base.argperi, mean_anomaly=rng.uniform(0.0, 360.0, n),
        epoch=base.epoch, H=base.H, G=base.G,
    )  # fmt: skip


def aged_catalogue(orbits: Orbits, days: float, workers: int = 1) -> Orbits:
    """The orbits osculating ``days`` before their epoch (N-body states taken back)."""
    r, v = elements_to_state(orbits)
    old_epoch = float(orbits.epoch.min()) - days
    back = propagate_states(r, v, orbits.epoch, old_epoch, "nbody", workers=workers)
    return state_to_elements(back.r, back.v, old_epoch, orbits.designation, orbits.H, orbits.G)


def night_exposures(n_exposures: int, seed: int = 2) -> pd.DataFrame:
    """Ecliptic fields near opposition, each visited twice >= 30 min apart (mid-exposure)."""
    rng = np.random.default_rng(seed)
    n_fields = (n_exposures + 1) // 2
    lam = np.deg2rad(180.0 + rng.uniform(-40.0, 40.0, n_fields))
    beta = np.deg2rad(rng.uniform(-12.0, 12.0, n_fields))
    eps = np.deg2rad(23.4392911)
    x = np.cos(beta) * np.cos(lam)
    y = np.cos(beta) * np.sin(lam) * np.cos(eps) - np.sin(beta) * np.sin(eps)
    z = np.cos(beta) * np.sin(lam) * np.sin(eps) + np.sin(beta) * np.cos(eps)
    ra = np.rad2deg(np.arctan2(y, x)) % 360.0
    dec = np.rad2deg(np.arcsin(z))
    # First visits every 4 min from 04:00 UTC, second visits 3.5 h later.
    t1 = NIGHT_MJD + 4.0 / 24.0 + np.arange(n_fields) * 4.0 / 1440.0 + 15.0 / 86400.0
    times = np.concatenate([t1, t1 + 3.5 / 24.0])[:n_exposures]
    return pd.DataFrame(
        {
            "expid": np.arange(times.size), "mjd": times,
            "ra": np.tile(ra, 2)[: times.size], "dec": np.tile(dec, 2)[: times.size],
            "radius": 5.5,
        }
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-orbits", type=int, default=1_000_000)
    parser.add_argument("--n-exposures", type=int, default=100)
    parser.add_argument("--per-exposure", type=int, default=500)
    parser.add_argument("--mag-limit", type=float, default=20.5)
    parser.add_argument("--age-days", type=float, default=0.0,
                        help="orbits osculate this many days before the night (N-body)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes for the N-body propagation")
    parser.add_argument("--quick", action="store_true",
                        help="20,000 orbits, 10 exposures of 50 candidates")
    args = parser.parse_args()
    if args.quick:
        args.n_orbits, args.n_exposures, args.per_exposure = 20_000, 10, 50

    t = time.perf_counter()
    fresh = synthetic_catalogue(args.n_orbits)
    exposures = night_exposures(args.n_exposures)
    print(f"catalogue: {len(fresh):,} orbits synthesised in {time.perf_counter() - t:.1f} s")
    cfg = KnownConfig(workers=args.workers)
    orbits = fresh
    if args.age_days > 0:
        t = time.perf_counter()
        orbits = aged_catalogue(fresh, args.age_days, args.workers)
        print(f"catalogue taken back {args.age_days:g} days with N-body (set-up): "
              f"{time.perf_counter() - t:.1f} s wall")

    t, c = time.perf_counter(), time.process_time()
    index = precompute_night(orbits, exposures.mjd.min(), exposures.mjd.max(), cfg)
    t_index, c_index = time.perf_counter() - t, time.process_time() - c
    c_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"night index: {index.grid_mjd.size} grid times, {int(index.fast.sum())} fast movers, "
          f"{t_index:.1f} s wall ({c_index:.1f} s CPU here, "
          f"{c_children.ru_utime + c_children.ru_stime:.1f} s CPU in worker processes so far)")

    t, c = time.perf_counter(), time.process_time()
    truth_index = index if args.age_days <= 0 else precompute_night(
        fresh, exposures.mjd.min(), exposures.mjd.max(), cfg)
    inside = objects_in_exposures(truth_index, exposures)
    t_inside, c_inside = time.perf_counter() - t, time.process_time() - c
    per_exp = inside.groupby("expid").size()
    print(f"objects_in_exposures: {len(inside):,} object-exposure pairs "
          f"(median {per_exp.median():.0f} per exposure) in {t_inside:.1f} s wall "
          f"({c_inside:.1f} s CPU)")  # fmt: skip

    # Candidates: up to half real asteroids (V <= limit), the rest random detections.
    half = args.per_exposure // 2
    bright = inside[inside.V <= args.mag_limit]
    bright = bright.sample(frac=1.0, random_state=0)
    bright = bright[bright.groupby("expid").cumcount().to_numpy() < half]
    n_real = bright.groupby("expid").size().reindex(exposures.expid, fill_value=0)
    cands = synthesize_candidates(bright, exposures, mag_limit=args.mag_limit,
                                  n_random=args.per_exposure, seed=3, avoid=inside)  # fmt: skip
    # Trim the random part to per_exposure - n_real in each exposure.
    rnd = cands.designation.isna()
    rank = cands[rnd].groupby("expid").cumcount()
    limit = (args.per_exposure - n_real).reindex(cands.loc[rnd, "expid"]).to_numpy()
    drop = cands[rnd].index[rank.to_numpy() >= limit]
    cands = cands.drop(index=drop).reset_index(drop=True)
    print(f"candidates: {len(cands):,} ({int(cands.designation.notna().sum()):,} real)")

    t, c = time.perf_counter(), time.process_time()
    tags = tag_candidates(cands, index, exposures)
    t_tag, c_tag = time.perf_counter() - t, time.process_time() - c
    score = evaluate_tagging(tags, cands, tol_arcsec=2.0, mag_limit=args.mag_limit)
    n = args.n_exposures
    print(f"tag_candidates with the night index: {t_tag:.2f} s wall ({c_tag:.2f} s CPU) total, "
          f"{1e3 * t_tag / n:.1f} ms wall ({1e3 * c_tag / n:.1f} ms CPU) per exposure")  # fmt: skip
    if args.age_days <= 0:  # (with old orbits this would repeat the N-body propagation)
        t, c = time.perf_counter(), time.process_time()
        tags_cold = tag_candidates(cands, orbits, exposures, cfg)
        t_cold, c_cold = time.perf_counter() - t, time.process_time() - c
        assert tags_cold.ssnamenr.equals(tags.ssnamenr)
        print(f"tag_candidates from raw orbits (index built inside): {t_cold:.1f} s wall "
              f"({c_cold:.1f} s CPU) total, {1e3 * t_cold / n:.0f} ms wall per exposure")
    print(f"tagged within 2\": {score['n_correct']:,}/{score['n_known']:,} = "
          f"{100 * score['frac_correct']:.3f} %; mistagged {score['n_mistagged']}, "
          f"untagged {score['n_untagged']}; random candidates tagged "
          f"{score['n_random_tagged']}/{score['n_random']}; median distance "
          f"{score['median_dist_arcsec']:.2f}\"")  # fmt: skip
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    print(f"peak memory (max RSS): {peak_gb:.2f} GB"
          + (f" (largest worker process {peak_child:.2f} GB)" if peak_child > 0 else ""))
    print(f"bar: >= 99 % tagged -> {'PASS' if score['frac_correct'] >= 0.99 else 'FAIL'}")


if __name__ == "__main__":
    main()
