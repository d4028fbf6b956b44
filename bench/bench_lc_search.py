"""Benchmark: load N light-curve objects and time cone searches on SQLite and PostgreSQL.

Generates N objects (seeded) uniform on the whole sphere, or with ``--patch-deg A`` uniform
inside an A deg^2 region (10M objects over 1000 deg^2 is about the ZTF source density of a
crowded field), with ZTF-like identifiers (oid per field / CCD quadrant / filter) and the
``lc_objects`` metrics. Bulk-loads them (``bulk_load_objects``: COPY on PostgreSQL, one
executemany transaction on SQLite, indexes built after, ANALYZE) and prints rows/s; then the
row rate of ``upsert_objects`` into the full table for ~200k existing rows of whole quadrants
(a matchfile rebuild), 200k existing rows at random and 200k new rows; then times
``cone_search`` at random centres (after a few warm-up queries) for each radius: median / p95 /
max ms per query and mean objects returned. The bar: a 1' cone among >= 10M objects in
< 100 ms on both backends.

PostgreSQL runs in a fresh schema that is dropped at the end; SQLite in ``--db-dir`` (a
temporary folder by default, removed at the end).

``--quick`` loads 10,000 objects (over 1 deg^2) into SQLite only and makes 5 queries per
radius (seconds; the test suite runs it so that the benchmark cannot rot).

Usage: python bench/bench_lc_search.py [--n 10000000] [--backends sqlite,postgresql]
       [--patch-deg 1000] [--queries 200] [--radii 10,60,600] [--db-dir DIR] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text

from zsds.db import connect, init_db
from zsds.lightcurves.search import (
    bulk_load_objects,
    cone_ranges,
    cone_search,
    count_objects,
    healpix29,
    upsert_objects,
)

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class Sky:
    """Where the objects (and the query centres) are: the sphere or an RA/Dec patch."""

    def __init__(self, patch_deg2: float | None, dec0: float = 20.0, ra0: float = 150.0):
        if not patch_deg2:
            self.ra, self.sindec = (0.0, 360.0), (-1.0, 1.0)
            self.area = 4 * np.pi * (180 / np.pi) ** 2
            return
        half = np.sqrt(patch_deg2) / 2  # a square-ish patch: Dec span = sqrt(area)
        self.sindec = (np.sin(np.radians(dec0 - half)), np.sin(np.radians(dec0 + half)))
        width = patch_deg2 / np.degrees(self.sindec[1] - self.sindec[0])  # exact area
        self.ra = (ra0 - width / 2, ra0 + width / 2)
        self.area = patch_deg2

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        ra = rng.uniform(*self.ra, n) % 360.0
        return ra, np.degrees(np.arcsin(rng.uniform(*self.sindec, n)))


def make_objects(n: int, sky: Sky, seed: int) -> pd.DataFrame:
    """N objects with ZTF-like ids: field = HEALPix order-3 cell, quadrant = order-6 cell."""
    rng = np.random.default_rng(seed)
    ra, dec = sky.sample(rng, n)
    hp = healpix29(ra, dec)
    field = (hp >> 52) + 1  # 768 "fields" of ~54 deg^2 (ZTF's are ~47)
    rcid = (hp >> 46) & 63
    fid = rng.integers(1, 3, n)
    group = (field * 64 + rcid) * 4 + fid
    order = np.argsort(group, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(group[order])) + 1]
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    matchid = np.empty(n, np.int64)
    matchid[order] = rank + 1
    ccdid, qid = rcid // 4 + 1, rcid % 4 + 1
    oid = field * 10**12 + fid * 10**11 + ccdid * 10**9 + qid * 10**8 + matchid
    nobs = rng.integers(1, 1500, n)
    mag = rng.uniform(13.0, 21.5, n)
    paths = pd.Categorical.from_codes(
        (group - group.min()).astype(np.int64),
        [f"lc/{g}/ztf_{g:07d}_dr.h5" for g in range(int(group.min()), int(group.max()) + 1)])
    return pd.DataFrame({
        "oid": oid, "field": field, "rcid": rcid, "ccdid": ccdid, "qid": qid, "fid": fid,
        "matchid": matchid, "kind": (rng.random(n) < 0.05).astype(np.int64), "ra": ra,
        "dec": dec, "healpix29": hp, "refmag": mag + rng.normal(0, 0.05, n),
        "medianmag": mag, "meanmag": mag + rng.normal(0, 0.02, n),
        "magrms": rng.gamma(2.0, 0.02, n), "chisq": rng.gamma(2.0, 1.0, n),
        "stetsonj": rng.normal(0.0, 1.0, n), "vonneumannratio": rng.uniform(0.5, 2.5, n),
        "period": np.where(rng.random(n) < 0.2, rng.uniform(0.05, 500.0, n), np.nan),
        "periodpower": rng.uniform(0, 1, n), "amplitude": rng.gamma(2.0, 0.05, n),
        "nobs": nobs, "ngoodobs": (nobs * 0.9).astype(np.int64),
        "mjdmin": rng.uniform(58200, 58400, n), "mjdmax": rng.uniform(60000, 60500, n),
        "matchfile": paths,
    })


def pg_engine(url: str) -> tuple[Engine, Engine, str]:
    """A fresh schema: (admin engine, engine on the schema, schema name)."""
    admin = connect(url)
    schema = f"zsds_bench_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    return admin, connect(url, connect_args={"options": f"-csearch_path={schema}"}), schema


def db_size(engine: Engine, path: Path | None) -> float:
    """Size of the data (GiB): the SQLite file, or lc_objects with its indexes."""
    if path is not None:
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**30
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_total_relation_size('lc_objects')")).scalar() / 2**30


def run_backend(name: str, engine: Engine, df: pd.DataFrame, sky: Sky, args, path=None) -> None:
    init_db(engine)
    n = len(df)
    t0 = time.perf_counter()
    bulk_load_objects(engine, df)
    dt = time.perf_counter() - t0
    print(f"[{name}] bulk load {n:,} rows: {dt:.1f} s = {n / dt:,.0f} rows/s "
          f"(incl. index build and ANALYZE); {db_size(engine, path):.2f} GiB", flush=True)
    assert count_objects(engine) == n

    rng = np.random.default_rng(args.seed + 1)
    m = min(200_000, n)
    # Whole quadrants (what rebuilding matchfiles re-upserts), then m rows scattered at random
    # over the table (the worst case: every row on another page), then m new rows.
    group = (df["field"].to_numpy() * 64 + df["rcid"].to_numpy()) * 4 + df["fid"].to_numpy()
    ids, counts = np.unique(group, return_counts=True)
    pick = rng.permutation(ids.size)
    chosen = ids[pick[:np.searchsorted(np.cumsum(counts[pick]), m) + 1]]
    tests = {"existing rows of whole quadrants": df[np.isin(group, chosen)].copy(),
             "existing rows at random": df.iloc[np.sort(rng.choice(n, m, replace=False))].copy()}
    tests["new rows"] = tests["existing rows at random"].assign(
        oid=lambda d: d["oid"] + 10**15)  # fields >= 1000, same positions
    for label, sub in tests.items():
        sub["medianmag"] += 0.01
        t0 = time.perf_counter()
        upsert_objects(engine, sub)
        dt = time.perf_counter() - t0
        print(f"[{name}] upsert_objects {len(sub):,} {label}: {len(sub) / dt:,.0f} rows/s",
              flush=True)
    with engine.begin() as conn:  # back to N objects for the queries
        conn.execute(text("DELETE FROM lc_objects WHERE oid >= :o"), {"o": 10**15})

    for radius in args.radii:
        cra, cdec = sky.sample(rng, args.queries + args.warmup)
        times, found, nranges = [], [], []
        for i, (ra, dec) in enumerate(zip(cra, cdec, strict=True)):
            t0 = time.perf_counter()
            res = cone_search(engine, float(ra), float(dec), radius)
            dt = time.perf_counter() - t0
            if i >= args.warmup:
                times.append(dt * 1e3)
                found.append(len(res))
                nranges.append(len(cone_ranges(ra, dec, radius / 3600)))
        t = np.array(times)
        print(f"[{name}] cone {radius:>5g}\": median {np.median(t):7.2f} ms  "
              f"p95 {np.percentile(t, 95):7.2f} ms  max {t.max():7.2f} ms  "
              f"mean {np.mean(found):8.2f} objects  ({np.mean(nranges):.1f} ranges)",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--patch-deg", type=float, default=0.0,
                        help="concentrate the objects in a patch of this area (deg^2); "
                             "0 = the whole sky")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--radii", default="10,60,600", help="cone radii (arcsec)")
    parser.add_argument("--db-dir", default=None, help="SQLite folder (default: temporary)")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="10,000 objects, SQLite only, 5 queries per radius")
    args = parser.parse_args()
    if args.quick:
        args.n, args.backends, args.queries, args.warmup = 10_000, "sqlite", 5, 1
        args.patch_deg = args.patch_deg or 1.0  # dense enough that cones find objects
    args.radii = [float(r) for r in args.radii.split(",")]

    sky = Sky(args.patch_deg or None)
    t0 = time.perf_counter()
    df = make_objects(args.n, sky, args.seed)
    print(f"{args.n:,} objects over {sky.area:,.0f} deg^2 "
          f"({args.n / sky.area:,.0f} per deg^2) generated in {time.perf_counter() - t0:.1f} s",
          flush=True)

    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if backend == "sqlite":
            tmp = None if args.db_dir else tempfile.mkdtemp(prefix="zsds_bench_lc_")
            folder = Path(args.db_dir or tmp)
            path = folder / f"lc_{uuid.uuid4().hex[:8]}.sqlite"
            engine = connect(f"sqlite:///{path}")
            try:
                run_backend("sqlite", engine, df, sky, args, path)
            finally:
                engine.dispose()
                for p in folder.glob(path.name + "*"):
                    p.unlink()
                if tmp:
                    shutil.rmtree(tmp, ignore_errors=True)
        elif backend == "postgresql":
            admin, engine, schema = pg_engine(args.pg_url)
            try:
                run_backend("postgresql", engine, df, sky, args)
            finally:
                engine.dispose()
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
        else:
            raise SystemExit(f"unknown backend {backend!r}")


if __name__ == "__main__":
    main()
