"""Benchmark: HelioLinC-style linking of a simulated 3-night ZTF window on one core.

Runs the test window (``--density`` 0.5: ~700 findable asteroids, ~800 false detections per
night) and a window with three times the asteroid density, and prints for each the time spent
simulating, removing stationary sources, making tracklets, clustering (all hypotheses) and
refining, plus completeness and purity on findable objects. Bars (issue): completeness >= 90 %,
purity >= 95 %, linking <= 60 s, without an orbit-fit acceptance step.

``--quick`` links one sparse window of one field (density 0.05, 20 false detections per
exposure; seconds, and the test suite runs it so that the benchmark cannot rot). The bars are
printed for the full windows only.

Usage: python bench/bench_linking.py [--seed 1] [--density 0.5] [--scale 3] [--nights 3]
       [--quick]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one core, as the bar says

import argparse
import resource

from zsds.moving.evaluate import run_linking_evaluation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--density", type=float, default=0.5, help="density of the test window")
    parser.add_argument("--scale", type=float, default=3.0, help="density factor of the big one")
    parser.add_argument("--nights", type=int, default=3)
    parser.add_argument("--fields", type=int, default=2)
    parser.add_argument("--false", type=int, default=100, help="false detections per exposure")
    parser.add_argument("--quick", action="store_true", help="one sparse window of one field")
    args = parser.parse_args()
    windows = [("test", args.density), (f"x{args.scale:g}", args.density * args.scale)]
    if args.quick:
        args.fields, args.false = 1, 20
        windows = [("quick", 0.05)]
    rows = []
    for label, density in windows:
        print(f"--- {label} window: density_scale {density:g} ---")
        res = run_linking_evaluation(
            seed=args.seed,
            density_scale=density,
            n_nights=args.nights,
            n_fields=args.fields,
            false_per_exposure=args.false,
            verbose=True,
        )
        rows.append((label, res))
    print()
    head = (
        f"{'window':>7} {'dets/night':>10} {'findable':>8} {'trk':>6} {'tracklets_s':>11} "
        f"{'cluster_s':>9} {'refine_s':>8} {'link_s':>7} {'complete':>8} {'purity':>7}"
    )
    print(head)
    for label, r in rows:
        t = r["timings"]
        print(
            f"{label:>7} {r['n_dets_per_night']:>10.0f} {r['n_findable']:>8d} "
            f"{r['n_tracklets']:>6d} {t['tracklets']:>11.2f} {t['cluster']:>9.2f} "
            f"{t['refine']:>8.2f} {t['link']:>7.2f} {100 * r['completeness']:>7.1f}% "
            f"{100 * r['purity']:>6.1f}%"
        )
    ok = all(
        r["completeness"] >= 0.9 and r["purity"] >= 0.95 and r["timings"]["link"] <= 60
        for _, r in rows
    )
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"peak memory (max RSS): {peak_gb:.2f} GB")
    if not args.quick:
        print(f"bars: completeness >= 90 %, purity >= 95 %, link <= 60 s -> "
              f"{'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
