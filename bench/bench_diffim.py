"""Benchmark and science check of pipeline 6 on full-size quadrants (3072 x 3080), one core.

Builds (or reuses) a home with one full-size quadrant of one field: 16 r-band epochs on a first
night make the reference, a few more epochs on a second night are the science. Then:

1. **Speed and memory** per full-size quadrant: ``subtract_quadrant`` timings (read, subtraction,
   candidates + context, write, database), the same ZOGY on one tile for comparison, packet
   generation (alerts/s) and production to a real Kafka-protocol broker (alerts/s), and the
   peak resident memory of the process.
2. **Quality** against the simulator's truth with injected fakes (``zsds eval subtract``):
   completeness for true S/N >= 6, PSF-photometry bias at S/N > 20, false candidates per
   quadrant after real-bogus.

``--quick`` runs it all on the small home of :data:`zsds.bench.homes.QUICK_HOME` (384 px,
references from two epochs, 20 fakes, 20 packets): a smoke run that the test suite makes, so
that the benchmark cannot rot. ``--home`` reuses (or builds into) a home; a home made by
:func:`zsds.bench.homes.build_survey_home` whose science night is not calibrated yet is
calibrated first.

Usage: python bench/bench_diffim.py [--home DIR] [--fakes 200] [--packets 2000] [--quick]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one core

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from zsds.bench.homes import NIGHT_SCI, QUICK_HOME, build_survey_home
from zsds.core.home import Home

FIELD, CCD = 645, 6


def build_home(home: Path, n_ref: int, n_sci: int, field: int = FIELD,
               quad_size: int | None = None, **sim) -> None:
    """Simulate, ingest, calibrate (quadrant 1) and build the reference of one field.

    ``n_ref`` epochs on the reference night (all of them co-added), ``n_sci`` exposures on the
    science night (calibrated too); ``sim`` goes to :func:`build_survey_home`.
    """
    h = Home.resolve(home)
    build_survey_home(h, [field], quad_size, ccd=CCD, n_ref=n_ref, n_sci=n_sci, **sim)
    if n_sci:
        calibrate_science(h)


def calibrate_science(home: Home) -> None:
    """Calibrate quadrant 1 of the science night (if it has raw files not calibrated yet)."""
    from zsds.db import connect, init_db
    from zsds.instcal.run import calibrate_night

    engine = connect(home.db_url)
    init_db(engine)
    failed = [o.message for o in calibrate_night(home, engine, NIGHT_SCI, quad=1) if not o.ok]
    if failed:
        raise SystemExit(f"calibration of the science night failed: {failed[0]}")


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=None)
    parser.add_argument("--fakes", type=int, default=200, help="fakes per quadrant")
    parser.add_argument("--packets", type=int, default=2000, help="packets sent to Kafka")
    parser.add_argument("--n-ref", type=int, default=16)
    parser.add_argument("--n-sci", type=int, default=4)
    parser.add_argument("--field", type=int, default=FIELD, help="645 typical, 730 Galactic plane")
    parser.add_argument("--quick", action="store_true",
                        help="small quadrants, 2-epoch references, 20 fakes, 20 packets")
    args = parser.parse_args()
    sim: dict = {}
    quad_size = None
    if args.quick:
        args.fakes, args.packets = min(args.fakes, 20), min(args.packets, 20)
        args.n_ref, args.n_sci = QUICK_HOME["n_ref"], 1
        quad_size = QUICK_HOME["quad_size"]
        sim = {"n_bias": QUICK_HOME["n_bias"], "n_flat": QUICK_HOME["n_flat"]}
    home_dir = Path(args.home or tempfile.mkdtemp(prefix="zsds-bench-diffim-"))
    if not any(home_dir.rglob("*_refimg.fits")):
        t = time.perf_counter()
        build_home(home_dir, args.n_ref, args.n_sci, args.field, quad_size, **sim)
        print(f"built home {home_dir} in {time.perf_counter() - t:.0f} s")

    from astropy.io import fits
    from sqlalchemy import select

    from zsds.alerts.broker import LocalBroker
    from zsds.alerts.kafka import AlertProducer
    from zsds.alerts.send import make_packets
    from zsds.core.naming import parse_night
    from zsds.db import connect, init_db
    from zsds.db.engine import session
    from zsds.db.schema import Exposure, QuadrantProduct
    from zsds.diffim.evaluate import FakeConfig, evaluate_home, summarize
    from zsds.diffim.run import subtract_quadrant
    from zsds.realbogus import load_default_model

    home = Home.resolve(home_dir)
    engine = connect(home.db_url)
    init_db(engine)

    def science_rows() -> list[QuadrantProduct]:
        with session(engine) as s:
            rows = s.execute(select(QuadrantProduct).join(
                Exposure, Exposure.expid == QuadrantProduct.expid).where(
                QuadrantProduct.kind == "sciimg", Exposure.night == parse_night(NIGHT_SCI))
                .order_by(QuadrantProduct.pid)).scalars().all()
            for r in rows:
                s.expunge(r)
        return rows

    rows = science_rows()
    if not rows:  # a survey home: its science night waits for the real-time chain
        calibrate_science(home)
        rows = science_rows()
    if not rows:
        raise SystemExit(f"{home.root}: no science quadrant on night {NIGHT_SCI}")
    shape = fits.getheader(home.path(rows[0].relpath))
    size = f"{shape['NAXIS1']}x{shape['NAXIS2']}"
    print(f"science quadrants of {size}: {len(rows)} (night {NIGHT_SCI}), one core")

    # 1. Speed: the real runner (products and database rows written) per quadrant.
    load_default_model()  # model load is once per process, not per quadrant
    per = []
    for row in rows:
        t = time.perf_counter()
        out = subtract_quadrant(home, engine, row)
        wall = time.perf_counter() - t
        assert out.ok, out.message
        per.append({**out.timings, "wall": wall, "ncand": out.ncand, "npass": out.npassed})
    keys = [*per[0], "wall"] if per else ["wall"]
    keys = list(dict.fromkeys(k for k in keys if k not in ("ncand", "npass")))
    print("seconds per quadrant (median over quadrants):")
    for k in keys:
        print(f"  {k:12s} {np.median([p[k] for p in per]):7.2f}")
    print(f"  candidates   {np.median([p['ncand'] for p in per]):7.0f} per quadrant "
          f"({np.median([p['npass'] for p in per]):.0f} pass the packet cuts)")
    print(f"peak memory after subtraction: {peak_gb():.2f} GB")
    from zsds.diffim.run import latest_reference, read_reference, read_science
    from zsds.diffim.stage import subtract

    row = rows[0]
    sci, sci_cat = read_science(home, row.relpath)
    ref = latest_reference(engine, row.field, row.ccdid, row.qid, row.fid)
    refimg, ref_cat = read_reference(home, ref)
    diff = subtract(sci, refimg, sci_cat=sci_cat, ref_cat=ref_cat)
    print("  subtraction steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in diff.timings.items())
          + f" ({diff.header['NTILES']} ZOGY tiles)")
    del diff, sci, refimg

    t = time.perf_counter()
    packets = make_packets(home, engine, NIGHT_SCI)
    dt_build = time.perf_counter() - t
    if packets:
        print(f"packets: {len(packets)} built and archived in {dt_build:.2f} s "
              f"({len(packets) / dt_build:.0f} alerts/s, median "
              f"{np.median([p[4] for p in packets]) / 1024:.0f} KiB)")
        payloads = [p[3].read_bytes() for p in packets]
        with LocalBroker() as broker, AlertProducer(broker.bootstrap) as prod:
            t = time.perf_counter()
            for i in range(args.packets):
                prod.produce("ztf_bench_programid1", 10**18 + i, payloads[i % len(payloads)])
            delivered, errors = prod.flush(120)
            dt_kafka = time.perf_counter() - t
        print(f"kafka: {len(delivered)} packets delivered ({len(errors)} errors) in "
              f"{dt_kafka:.2f} s = {len(delivered) / dt_kafka:.0f} alerts/s (idempotent "
              "producer, acks=all, Tansu in memory on loopback)")

    # 2. Quality with fakes.
    t = time.perf_counter()
    cand, fakes = evaluate_home(home, engine, fakes=FakeConfig(n=args.fakes), night=NIGHT_SCI)
    s = summarize(cand, fakes, load_default_model().threshold)
    print(f"quality ({time.perf_counter() - t:.0f} s, {args.fakes} fakes per quadrant):")
    for k, v in s.items():
        print(f"  {k:30s} {v:.4f}" if isinstance(v, float) else f"  {k:30s} {v}")
    print(f"peak memory: {peak_gb():.2f} GB")

    if args.quick and not args.home:  # a smoke run leaves nothing behind
        shutil.rmtree(home_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
