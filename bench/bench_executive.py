"""Benchmark: a night of full-size exposures through the executive on this machine.

Uses (or builds, with ``bench/bench_diffim.py``'s builder) a home with full-size references of
one CCD's quadrant 1 -- and, for this benchmark, of all four quadrants -- then simulates
``--exposures`` new full-size exposures of that CCD (4 quadrants each) for a new night and runs
``Executive.run_night`` on a local Dask cluster with one single-threaded worker per core.
Prints quadrants per minute per core, exposure latency percentiles (raw file available -> last
packet archived), peak memory per worker, and the cores needed for ZTF's input rate
(64 quadrants every 45 s = 85 quadrants/min; the original system needed 553).

``--quick`` is a smoke run of the same path that the test suite makes (so that the benchmark
cannot rot): the small home of :data:`zsds.bench.homes.QUICK_HOME` (or ``--home``), one
exposure, one worker, and only the quadrant that has a reference (the other three are skipped
as having none).

Usage: python bench/bench_executive.py [--home DIR] [--exposures 4] [--workers N] [--quick]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one core per worker

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ZTF_QUADRANTS_PER_MIN = 64 * 60 / 45
NIGHT = "2026-11-22"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=None, help="home from bench_diffim.py (copied)")
    parser.add_argument("--exposures", type=int, default=4)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--realtime", action="store_true",
                        help="deliver the exposures at the survey cadence (45 s) and follow them "
                             "with `night watch` instead of queueing them all at once")
    parser.add_argument("--quick", action="store_true",
                        help="small home, one exposure, one worker, one quadrant with a reference")
    args = parser.parse_args()
    if args.quick:
        args.exposures, args.workers, args.realtime = 1, 1, False

    import bench_diffim as bd
    from astropy.io import fits

    from zsds.bench.homes import NIGHT_REF, QUICK_HOME
    from zsds.core.home import Home
    from zsds.db import connect, init_db
    from zsds.executive import ExecConfig, Executive
    from zsds.refs.run import build_references
    from zsds.sim.run import simulate_night

    src = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="zsds-bench-exec-"))
    if not any(src.rglob("*_refimg.fits")):
        if args.quick:
            bd.build_home(src, QUICK_HOME["n_ref"], 0, bd.FIELD, QUICK_HOME["quad_size"],
                          n_bias=QUICK_HOME["n_bias"], n_flat=QUICK_HOME["n_flat"])
        else:
            bd.build_home(src, 16, 0)
    nx = int(fits.getheader(next(src.rglob("*_refimg.fits")))["NAXIS1"])
    quad_size = None if nx == 3072 else nx  # simulate the new night at the home's size
    work = Path(tempfile.mkdtemp(prefix="zsds-bench-exec-run-")) / "home"
    print(f"working copy: {work}")
    shutil.copytree(src, work, ignore=shutil.ignore_patterns("incoming", "alerts"))
    home = Home.resolve(work)
    engine = connect(home.db_url)
    init_db(engine)
    (work / "incoming").mkdir(exist_ok=True)
    # References of the other three quadrants: calibrate them on the reference night first.
    if len(list(work.rglob("*_refimg.fits"))) < 4 and not args.quick:
        t = time.perf_counter()
        with Executive(home, engine, ExecConfig(n_workers=args.workers, build_refs=False,
                                                redo=True)) as ex:
            ex.run_night(NIGHT_REF)
        build_references(home, engine)
        print(f"prepared references of 4 quadrants in {time.perf_counter() - t:.0f} s")
    night = "2026-11-23" if args.realtime else NIGHT
    cfg = ExecConfig(n_workers=args.workers, build_refs=False)
    if args.realtime:
        import threading

        sim = threading.Thread(target=simulate_night, args=(
            home, night, args.exposures, [bd.FIELD], quad_size, [bd.CCD]),
            kwargs={"seed": 22, "filters": ("r",), "realtime_speedup": 1.0})
        with Executive(home, engine, cfg) as ex:
            sim.start()
            s = ex.watch(idle=60.0, poll=0.5)[0]
        sim.join()
        print(f"real time: {args.exposures} exposures delivered every ~45 s, followed by "
              "`night watch` (latency = raw file written -> last packet archived)")
    else:
        t = time.perf_counter()
        simulate_night(home, night, args.exposures, [bd.FIELD], quad_size, [bd.CCD], seed=21,
                       filters=("r",))
        print(f"simulated {args.exposures} {'full-size' if quad_size is None else 'small'} "
              "exposures (1 CCD) in "
              f"{time.perf_counter() - t:.0f} s")
        with Executive(home, engine, cfg) as ex:
            s = ex.run_night(night)
    cores = max(s.workers, 1)
    qpm_core = s.quadrants_per_min / cores
    print(f"night {night}: {s.quadrants} {nx}-px quadrants ({s.subtracted} subtracted, "
          f"{s.failed} failed) in {s.wall_s:.0f} s on {cores} single-threaded workers")
    print(f"  throughput        {s.quadrants_per_min:.2f} quadrants/min = {qpm_core:.2f} "
          "quadrants/min/core (ingest + calibration + subtraction + packets)")
    print(f"  latency           p50 {s.latency_p50_s:.0f} s, p90 {s.latency_p90_s:.0f} s, "
          f"p95 {s.latency_p95_s:.0f} s, max {s.latency_max_s:.0f} s per exposure "
          + ("" if args.realtime else "(all exposures queued at once)"))
    print(f"  peak memory       {s.peak_worker_memory_gb:.2f} GB per worker")
    print(f"  candidates/alerts {s.candidates} / {s.alerts}")
    if qpm_core > 0 and not args.realtime:  # in real time the arrival rate bounds throughput
        print(f"  cores needed for ZTF's {ZTF_QUADRANTS_PER_MIN:.0f} quadrants/min: "
              f"{ZTF_QUADRANTS_PER_MIN / qpm_core:.0f} (original system: 553)")
    if args.quick:  # a smoke run leaves nothing behind
        shutil.rmtree(work.parent, ignore_errors=True)
        if not args.home:
            shutil.rmtree(src, ignore_errors=True)


if __name__ == "__main__":
    main()
