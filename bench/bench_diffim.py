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

Usage: python bench/bench_diffim.py [--home DIR] [--fakes 200] [--packets 2000]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one core

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NIGHT_REF, NIGHT_SCI = "2026-11-20", "2026-11-21"
FIELD, CCD = 645, 6


def _zsds(*args: str) -> None:
    exe = Path(sys.executable).with_name("zsds")
    subprocess.run([str(exe), *args], check=True, stdout=subprocess.DEVNULL)


def build_home(home: Path, n_ref: int, n_sci: int, field: int = FIELD) -> None:
    """Simulate, ingest, calibrate (quadrant 1) and build the reference, via the CLI."""
    h = ["--home", str(home)]
    _zsds("simulate", "calib", *h, "--night", NIGHT_REF, "--ccds", str(CCD), "--n-bias", "5",
          "--n-flat", "3")
    for night, n, seed in ((NIGHT_REF, n_ref, 11), (NIGHT_SCI, n_sci, 12)):
        _zsds("simulate", "night", *h, "--night", night, "--ccds", str(CCD), "--exposures",
              str(n), "--fields", str(field), "--filters", "r", "--seed", str(seed))
    _zsds("ingest", *h)
    _zsds("calib", "build", *h, "--night", NIGHT_REF)
    for night in (NIGHT_REF, NIGHT_SCI):
        _zsds("calibrate", *h, "--night", night, "--quad", "1")
    _zsds("refs", "build", *h)


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
    args = parser.parse_args()
    home_dir = Path(args.home or tempfile.mkdtemp(prefix="zsds-bench-diffim-"))
    if not any(home_dir.rglob("*_refimg.fits")):
        t = time.perf_counter()
        build_home(home_dir, args.n_ref, args.n_sci, args.field)
        print(f"built home {home_dir} in {time.perf_counter() - t:.0f} s")

    from sqlalchemy import select

    from zsds.alerts.broker import LocalBroker
    from zsds.alerts.kafka import AlertProducer
    from zsds.alerts.send import make_packets
    from zsds.core.home import Home
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
    with session(engine) as s:
        rows = s.execute(select(QuadrantProduct).join(
            Exposure, Exposure.expid == QuadrantProduct.expid).where(
            QuadrantProduct.kind == "sciimg", Exposure.night == parse_night(NIGHT_SCI))
            .order_by(QuadrantProduct.pid)).scalars().all()
        for r in rows:
            s.expunge(r)
    print(f"full-size science quadrants: {len(rows)} (night {NIGHT_SCI}), one core")

    # 1. Speed: the real runner (products and database rows written) per quadrant.
    load_default_model()  # model load is once per process, not per quadrant
    per = []
    for row in rows:
        t = time.perf_counter()
        out = subtract_quadrant(home, engine, row)
        wall = time.perf_counter() - t
        assert out.ok, out.message
        per.append({**out.timings, "wall": wall, "ncand": out.ncand, "npass": out.npassed})
    keys = ["read", "subtract", "candidates", "rb", "write", "database", "wall"]
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


if __name__ == "__main__":
    main()
