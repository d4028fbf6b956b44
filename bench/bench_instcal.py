"""Benchmark: instrumental calibration of one full-size quadrant (3072 x 3080) on one core.

Builds (or reuses, with ``--home``) a home holding one CCD of full-size data: the afternoon
bias/flat sequences, one r-band science exposure of the field, ingested and with master
calibrations built. Then times ``calibrate_night`` for one quadrant (split/read + every step of
``calibrate_quadrant`` + writing the products) and prints seconds per step, the total, the peak
resident memory, the number of sources, and the quality figures against the simulation's truth.

The default field 645 is at |b| ~ 27 deg; a Galactic-plane field (|b| < 5 deg, observable at the
start of 2026-11-20) such as 730 (l = 82, b = -2.5) or 769 times the crowded case.

Usage: python bench/bench_instcal.py [--field 645] [--ccd 6] [--quad 1] [--home DIR]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one core, as the bar says

import argparse
import resource
import tempfile
import time

import numpy as np

import zsds.instcal.run as icrun
from zsds.calib.build import build_calibrations
from zsds.core.fields import get_field
from zsds.core.home import Home
from zsds.db import connect, init_db
from zsds.ingest import ingest_incoming
from zsds.instcal.evaluate import evaluate_night
from zsds.instcal.run import calibrate_night
from zsds.sim.run import simulate_calib, simulate_night

STEPS = ("flatfield", "cosmics", "extract", "psf", "psfphot", "astrometry", "photcal", "qa")


def build_home(home: Home, night: str, field: int, ccd: int) -> None:
    t0 = time.perf_counter()
    simulate_calib(home, night, None, [ccd], seed=1, n_bias=5, n_flat=3, filters=("r",))
    simulate_night(home, night, 1, [field], None, [ccd], seed=1, filters=("r",))
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
    args = parser.parse_args()
    home = Home.resolve(args.home or tempfile.mkdtemp(prefix="zsds-bench-instcal-"))
    field = get_field(args.field)
    engine = connect(home.db_url)
    init_db(engine)
    if not icrun.science_files(engine, icrun.parse_night(args.night), ccd=args.ccd):
        # In a child process, so that the peak memory printed below is the pipeline's alone.
        import multiprocessing

        child = multiprocessing.get_context("spawn").Process(
            target=build_home, args=(home, args.night, args.field, args.ccd))
        child.start()
        child.join()
        if child.exitcode:
            raise SystemExit(f"building the benchmark home failed ({child.exitcode})")
        engine = connect(home.db_url)

    # time the read + split separately (wrapping the functions calibrate_night calls)
    split_t = {"read": 0.0, "split": 0.0}
    orig_read, orig_split = icrun.read_raw_ccd, icrun.split_quadrant

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            split_t[name] += time.perf_counter() - t0
            return out
        return wrapper

    icrun.read_raw_ccd = timed("read", orig_read)
    icrun.split_quadrant = timed("split", orig_split)
    t0 = time.perf_counter()
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        outcomes = prof.runcall(calibrate_night, home, engine, args.night, ccd=args.ccd,
                                quad=args.quad)
        prof.dump_stats(args.profile)
    else:
        outcomes = calibrate_night(home, engine, args.night, ccd=args.ccd, quad=args.quad)
    wall = time.perf_counter() - t0
    icrun.read_raw_ccd, icrun.split_quadrant = orig_read, orig_split
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    if not outcomes or not outcomes[-1].ok:
        raise SystemExit(f"calibration failed: {outcomes[-1].message if outcomes else 'no file'}")
    out = outcomes[-1]
    res = out.result
    print(f"field {field.fieldid} (l={field.gal_l:.1f}, b={field.gal_b:.1f}), CCD {args.ccd} "
          f"q{args.quad}, full-size quadrant {res.image.shape[1]}x{res.image.shape[0]}, one core")
    print(f"  {'read raw CCD':12s} {split_t['read']:7.2f} s")
    print(f"  {'split quad':12s} {split_t['split']:7.2f} s")
    step_total = 0.0
    for name in STEPS:
        v = res.timings.get(name, np.nan)
        step_total += v
        print(f"  {name:12s} {v:7.2f} s")
    print(f"  {'steps total':12s} {step_total:7.2f} s  (calibrate_quadrant)")
    print(f"  {'wall total':12s} {wall:7.2f} s  (calibrate_night, incl. refcats/IO/DB)")
    print(f"sources: sexcat {len(res.sexcat)}, psfcat {len(res.psfcat)}, "
          f"astrometric matches {res.astrometry.n_matches}")
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


if __name__ == "__main__":
    main()
