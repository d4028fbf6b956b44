"""Benchmark: simulate one full-size CCD exposure (4 quadrants of 3072 x 3080) on one core.

Prints seconds for a cold run (sky partitions generated and cached, asteroid populations built)
and a warm run (the next exposure of the same field, as in a night), the stars per quadrant, and
the peak resident memory of the process. Bar (issue 2): < 20 s per CCD exposure at |b| ~ 30 deg.

Usage: python bench/bench_simulate.py [--field 645] [--ccd 6] [--home DIR]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one core, as the bar says

import argparse
import resource
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
    args = parser.parse_args()
    home = Home.resolve(args.home or tempfile.mkdtemp(prefix="zsds-bench-"))
    field = get_field(args.field)
    exposures = night_schedule(args.night, 2, [args.field], ("r",), seed=1)
    config = SimConfig(seed=1)
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
    print(f"field {field.fieldid} (l={field.gal_l:.1f}, b={field.gal_b:.1f}), CCD {args.ccd}, "
          "full-size quadrants 3072x3080, one core")
    print(f"stars rendered per quadrant: {', '.join(str(int(n)) for n in stars)}")
    print(f"cold CCD exposure (sky cache + asteroid populations built): {times[0]:6.2f} s")
    print(f"warm CCD exposure (next exposure of the night):              {times[1]:6.2f} s")
    print(f"peak memory (max RSS): {peak_gb:.2f} GB")
    print(f"bar: < 20 s per CCD exposure -> {'PASS' if times[1] < 20 else 'FAIL'}")


if __name__ == "__main__":
    main()
