"""Benchmark: instrumental calibration of one full-size quadrant (3072 x 3080) on one core.

Builds (or reuses, with ``--home``) a home holding one CCD of full-size data: the afternoon
bias/flat sequences, one r-band science exposure of the field, ingested and with master
calibrations built. Then times ``calibrate_night`` for one quadrant (split/read + every step of
``calibrate_quadrant`` + writing the products) and prints seconds per step, the total, the peak
resident memory, the number of sources, and the quality figures against the simulation's truth.

The default field 645 is at |b| ~ 27 deg; a Galactic-plane field (|b| < 5 deg, observable at the
start of 2026-11-20) such as 730 (l = 82, b = -2.5) or 769 times the crowded case.

``--quick`` runs the same on 384 px quadrants (the smallest size at which field 645 has enough
PS1 calibrators for a zero point; seconds, and the test suite runs it so that the benchmark
cannot rot); ``--quad-size`` picks another small size.

Usage: python bench/bench_instcal.py [--field 645] [--ccd 6] [--quad 1] [--home DIR]
       [--quad-size N] [--quick]
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

import numpy as np

import zsds.instcal.run as icrun
from zsds.bench.harness import timed_calls
from zsds.bench.homes import QUICK_HOME
from zsds.bench.products import read_calibrated
from zsds.calib.build import build_calibrations
from zsds.core.fields import get_field
from zsds.core.home import Home
from zsds.db import connect, init_db
from zsds.ingest import ingest_incoming
from zsds.instcal.evaluate import evaluate_night
from zsds.instcal.run import calibrate_night
from zsds.sim.run import simulate_calib, simulate_night

STEPS = ("flatfield", "cosmics", "extract", "psf", "psfphot", "astrometry", "photcal", "qa")


def build_home(home: Home, night: str, field: int, ccd: int, quad_size: int | None = None
               ) -> None:
    """Simulate, ingest and build the master calibrations of one CCD (not timed)."""
    t0 = time.perf_counter()
    simulate_calib(home, night, quad_size, [ccd], seed=1, n_bias=5, n_flat=3, filters=("r",))
    simulate_night(home, night, 1, [field], quad_size, [ccd], seed=1, filters=("r",))
    print(f"simulated in {time.perf_counter() - t0:.1f} s: {home.root}")
    engine = connect(home.db_url)
    init_db(engine)
    t1 = time.perf_counter()
    n = len(ingest_incoming(home, engine))
    t2 = time.perf_counter()
    built = build_calibrations(home, engine, night)
    t3 = time.perf_counter()
    print(f"  ingest          {(t2 - t1) / max(n, 1):6.2f} s per raw CCD file ({n} files)")
    print(f"  calib build     {(t3 - t2) / max(len(built.products), 1):6.2f} s per product "
          f"(master bias from 5 frames, hi-nu flat from 3; {len(built.products)} products)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--field", type=int, default=645)
    parser.add_argument("--ccd", type=int, default=6)
    parser.add_argument("--quad", type=int, default=1)
    parser.add_argument("--night", default="2026-11-20")
    parser.add_argument("--home", default=None, help="reuse (or build into) this home")
    parser.add_argument("--profile", default=None, help="write cProfile stats to this file")
    parser.add_argument("--quad-size", type=int, default=None,
                        help="small square quadrants (256..1536); default full size")
    parser.add_argument("--quick", action="store_true",
                        help="384 px quadrants, built in this process: a smoke run of seconds")
    args = parser.parse_args()
    if args.quick and args.quad_size is None:
        args.quad_size = QUICK_HOME["quad_size"]
    home = Home.resolve(args.home or tempfile.mkdtemp(prefix="zsds-bench-instcal-"))
    field = get_field(args.field)
    engine = connect(home.db_url)
    init_db(engine)
    if args.quick and not icrun.science_files(engine, icrun.parse_night(args.night),
                                              ccd=args.ccd):
        build_home(home, args.night, args.field, args.ccd, args.quad_size)
    if not icrun.science_files(engine, icrun.parse_night(args.night), ccd=args.ccd):
        # In a child process, so that the peak memory printed below is the pipeline's alone.
        import multiprocessing

        child = multiprocessing.get_context("spawn").Process(
            target=build_home, args=(home, args.night, args.field, args.ccd, args.quad_size))
        child.start()
        child.join()
        if child.exitcode:
            raise SystemExit(f"building the benchmark home failed ({child.exitcode})")
        engine = connect(home.db_url)

    # Time the read + split apart (the harness wraps the functions calibrate_night calls).
    calls: dict = {}
    t0 = time.perf_counter()
    with timed_calls(icrun, ("read_raw_ccd", "split_quadrant"), calls):
        if args.profile:
            import cProfile

            prof = cProfile.Profile()
            outcomes = prof.runcall(calibrate_night, home, engine, args.night, ccd=args.ccd,
                                    quad=args.quad)
            prof.dump_stats(args.profile)
        else:
            outcomes = calibrate_night(home, engine, args.night, ccd=args.ccd, quad=args.quad)
    wall = time.perf_counter() - t0
    split_t = {k: sum(c.wall for c in calls.get(name, []))
               for k, name in (("read", "read_raw_ccd"), ("split", "split_quadrant"))}
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    if not outcomes or not outcomes[-1].ok:
        raise SystemExit(f"calibration failed: {outcomes[-1].message if outcomes else 'no file'}")
    out = outcomes[-1]
    # The calibration writes its products and releases the pixels: read the figures back.
    res = read_calibrated(out.products)
    ny, nx = res.shape
    size = "full-size" if (ny, nx) == (3080, 3072) else "small"
    print(f"field {field.fieldid} (l={field.gal_l:.1f}, b={field.gal_b:.1f}), CCD {args.ccd} "
          f"q{args.quad}, {size} quadrant {nx}x{ny}, one core")
    print(f"  {'read raw CCD':12s} {split_t['read']:7.2f} s")
    print(f"  {'split quad':12s} {split_t['split']:7.2f} s")
    step_total = 0.0
    for name in STEPS:
        v = res.timings.get(name, np.nan)
        step_total += v
        print(f"  {name:12s} {v:7.2f} s")
    print(f"  {'steps total':12s} {step_total:7.2f} s  (calibrate_quadrant)")
    print(f"  {'wall total':12s} {wall:7.2f} s  (calibrate_night, incl. refcats/IO/DB)")
    print(f"sources: sexcat {res.n_sexcat}, psfcat {res.n_psfcat}, "
          f"astrometric matches {res.n_astrom}, INFOBITS {res.infobits}")
    print(f"peak memory (max RSS): {peak_gb:.2f} GB")
    q = evaluate_night(home, args.night)
    q = q[q.pid == out.pid]
    if len(q):
        r = q.iloc[0]
        print(f"quality: astrom rms ra {r.astrom_rms_ra:.4f}\" dec {r.astrom_rms_dec:.4f}\" "
              f"(n={r.n_astrom}), ZP error {r.zp_error:+.4f} mag, "
              f"PSF pull scatter {r.psf_pull_scatter:.3f} (n={r.n_phot}), "
              f"completeness S/N>=10 {r.completeness:.3f} (n={r.n_complete}), "
              f"infobits {r.infobits}")

    if args.quick and not args.home:  # a smoke run leaves nothing behind
        shutil.rmtree(home.root, ignore_errors=True)


if __name__ == "__main__":
    main()
