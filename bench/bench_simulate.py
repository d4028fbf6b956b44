"""Benchmark: simulate one full-size CCD exposure (4 quadrants of 3072 x 3080) on one core.

Prints seconds for a cold run (sky partitions generated and cached, asteroid populations built)
and a warm run (the next exposure of the same field, as in a night), the stars per quadrant, and
the peak resident memory of the process. Bar (issue 2): < 20 s per CCD exposure at |b| ~ 30 deg.

``--quick`` simulates 256 px quadrants instead (seconds; the test suite runs it so that the
benchmark cannot rot); ``--quad-size`` picks another small size.

Usage: python bench/bench_simulate.py [--field 645] [--ccd 6] [--home DIR] [--quad-size N]
       [--quick]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one core, as the bar says

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from zsds.core.fields import get_field
from zsds.core.home import Home
from zsds.sim.observing import night_schedule
from zsds.sim.run import SimConfig, simulate_exposures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--field", type=int, default=645)
    parser.add_argument("--ccd", type=int, default=6)
    parser.add_argument("--night", default="2026-11-20")
    parser.add_argument("--home", default=None)
    parser.add_argument("--quad-size", type=int, default=None,
                        help="small square quadrants (256..1536); default full size")
    parser.add_argument("--quick", action="store_true", help="256 px quadrants")
    args = parser.parse_args()
    if args.quick and args.quad_size is None:
        args.quad_size = 256
    home = Home.resolve(args.home or tempfile.mkdtemp(prefix="zsds-bench-"))
    field = get_field(args.field)
    exposures = night_schedule(args.night, 2, [args.field], ("r",), seed=1)
    config = SimConfig(quad_size=args.quad_size, seed=1)
    times = []
    for exp in exposures:
        t0 = time.perf_counter()
        simulate_exposures(home, [exp], config, [args.ccd])
        times.append(time.perf_counter() - t0)
    src = pd.read_parquet(
        next(Path(home.truth).glob(f"*/{exposures[-1].expid}/c{args.ccd:02d}_sources.parquet"))
    )
    stars = src[src.kind == 1].groupby("qid").size()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    size = "3072x3080" if args.quad_size is None else f"{args.quad_size}x{args.quad_size}"
    print(f"field {field.fieldid} (l={field.gal_l:.1f}, b={field.gal_b:.1f}), CCD {args.ccd}, "
          f"quadrants {size}, one core")
    print(f"stars rendered per quadrant: {', '.join(str(int(n)) for n in stars)}")
    print(f"cold CCD exposure (sky cache + asteroid populations built): {times[0]:6.2f} s")
    print(f"warm CCD exposure (next exposure of the night):              {times[1]:6.2f} s")
    print(f"peak memory (max RSS): {peak_gb:.2f} GB")
    if args.quad_size is None:
        print(f"bar: < 20 s per CCD exposure -> {'PASS' if times[1] < 20 else 'FAIL'}")

    if args.quick and not args.home:  # a smoke run leaves nothing behind
        shutil.rmtree(home.root, ignore_errors=True)


if __name__ == "__main__":
    main()
