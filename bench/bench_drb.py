"""Benchmark: ``drb`` inference of the packaged network on one CPU thread.

Scores N random 63x63 cutout triplets (normalisation included) with
:func:`zsds.realbogus.drb.drb_score` and prints the processor time and the wall time per 1000
triplets (best of ``--repeat`` runs; processor time is the figure to quote on a shared machine)
for a few ``batch_size`` values. BLAS is pinned to one thread before numpy is imported.

``--quick`` scores 64 triplets once (the test suite runs it, so that the benchmark cannot rot).

Usage: python bench/bench_drb.py [--n 4000] [--repeat 5] [--quick]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse
import time

import numpy as np

from zsds.realbogus.drb import drb_score, load_drb_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000, help="triplets per run")
    ap.add_argument("--repeat", type=int, default=5, help="runs (the best is kept)")
    ap.add_argument("--quick", action="store_true", help="64 triplets, one run")
    args = ap.parse_args()
    if args.quick:
        args.n, args.repeat = 64, 1
    model = load_drb_model()
    rng = np.random.default_rng(0)
    sci, ref, diff = (rng.normal(100, 5, (args.n, 63, 63)).astype(np.float32)
                      for _ in range(3))
    print(f"drb {model.version}, {args.n} triplets, one thread")
    for bs in (8, 32, 128):
        cpu, wall = np.inf, np.inf
        for _ in range(args.repeat):
            c0, w0 = time.process_time(), time.perf_counter()
            drb_score(sci, ref, diff, model=model, batch_size=bs)
            cpu = min(cpu, time.process_time() - c0)
            wall = min(wall, time.perf_counter() - w0)
        print(f"  batch_size {bs:4d}: {1e3 * cpu / args.n * 1000:7.1f} ms CPU, "
              f"{1e3 * wall / args.n * 1000:7.1f} ms wall per 1000 triplets")


if __name__ == "__main__":
    main()
