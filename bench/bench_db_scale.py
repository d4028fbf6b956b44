"""Benchmark: the per-quadrant database work at survey scale (issue 22, item 4).

Loads a year of survey history into the real zsds tables (``init_db`` on a dedicated
PostgreSQL schema, dropped at the end unless ``--keep``) and times, per quadrant, what the
pipeline asks of the database for each difference image:

* association of the quadrant's new detections (:func:`zsds.diffim.objects.associate_many`:
  one box query on ``objects``, the new objects named and inserted);
* their 30-day history and upper limits (:func:`zsds.diffim.objects.history_many`: all
  earlier candidates of the objects, the coverage count and the window's difference images);
* :func:`zsds.diffim.objects.refresh_objects` of the touched objects;

for ``--quadrants`` random quadrants (``--batch`` detections each, about 70 % of them on known
objects), each in a transaction rolled back afterwards, and prints seconds per quadrant (median,
p90) for each table size, with the per-candidate functions (``associate``/``history`` per
candidate, one refresh query per object) at the smallest size for comparison.

The generator: N candidates and N/10 objects at a fixed, realistic sky density (about 520
objects per quadrant, 700 per square degree; ZTF's 10^7 objects a year over ~300 fields), so the
number of fields grows with N (3 fields at 10^6, 300 at 10^8): the per-quadrant answers keep
their size and only the tables grow. Fields lie on a ZTF-like grid (7 deg, 64 quadrants of
0.86 deg); each field is visited ``--visits`` times over the year (every quadrant of a visit is
one difference image; the candidates, ~10 per object, are on random visits of their object's
field, inserted in time order as the pipeline inserts them). Only the columns the queries read
are filled (``record`` is ``{}``: real ZTF records are ~1.5 kB, which would make 10^8 rows
~150 GB); the other nullable columns are NULL. Rows go in by binary ``COPY ... FREEZE``
(psycopg), with the tables' indexes and keys dropped during the load and rebuilt after (foreign
keys re-added ``NOT VALID``), into ``UNLOGGED`` tables unless ``--logged`` (neither changes the
query plans or timings; both halve the load's disk writes).

``--quick``: 10^4 rows, 3 quadrants, on the PostgreSQL server if reachable, else SQLite (it
checks the benchmark still runs; the test suite runs it).

Usage: python bench/bench_db_scale.py [--url URL] [--rows 1e6,1e7] [--max-rows 1e8]
       [--quadrants 20] [--batch 200] [--keep] [--logged] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from zsds.db import connect, init_db
from zsds.db.schema import AstroObject, Candidate, DiffImageRecord, ObjectCounter
from zsds.diffim.objects import (
    associate,
    associate_many,
    history,
    history_many,
    refresh_objects,
)

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
JD0 = 2460676.5  # 2025-01-01: the loaded year; its objects are ZTF25...
QS = 0.86  # quadrant side, deg
FIELD = 7.0  # field spacing, deg
OBJ_PER_QUADRANT = 520  # 10^7 objects over 300 fields x 64 quadrants
CHUNK = 4_000_000  # candidates generated and sent per piece
LOADED = ("diff_images", "objects", "candidates")
EPOCH = dt.datetime(2000, 1, 1)


# ----------------------------------------------------------------------------------------------
# The sky and the year
# ----------------------------------------------------------------------------------------------
@dataclass
class Sky:
    """A loaded year: field centres, visit dates, objects (positions, quadrant)."""

    fra: np.ndarray  # field centres
    fdec: np.ndarray
    vjd: np.ndarray  # (fields, visits) sorted visit dates
    ora: np.ndarray  # objects
    odec: np.ndarray
    oq: np.ndarray  # object's quadrant: field * 64 + rcid
    n_cand: int = 0

    def tile(self, q: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Centre (ra, dec) of quadrant(s) ``q`` (= field * 64 + rcid)."""
        f, rc = np.divmod(np.asarray(q), 64)
        i, j = np.divmod(rc, 8)
        dec = self.fdec[f] + (i - 3.5) * QS
        ra = (self.fra[f] + (j - 3.5) * QS / np.cos(np.radians(dec))) % 360.0
        return ra, dec


def field_grid() -> tuple[np.ndarray, np.ndarray]:
    """ZTF-like field centres: dec bands 7 deg apart from -27 to +78, RA steps of 7 deg."""
    ra, dec = [], []
    for d in np.arange(-27.0, 79.0, FIELD):
        n = int(360.0 * np.cos(np.radians(d)) // FIELD)
        ra += list(np.arange(n) * 360.0 / n)
        dec += [d] * n
    return np.array(ra), np.array(dec)


def make_sky(n_cand: int, visits: int, rng: np.random.Generator) -> Sky:
    n_obj = max(n_cand // 10, 1)
    gra, gdec = field_grid()
    n_fields = min(len(gra), max(1, round(n_obj / (OBJ_PER_QUADRANT * 64))))
    pick = rng.choice(len(gra), n_fields, replace=False)
    vjd = np.sort(JD0 + rng.integers(0, 365, (n_fields, visits)) + rng.uniform(0.15, 0.45,
                                                                               (n_fields, visits)),
                  axis=1)
    sky = Sky(gra[pick], gdec[pick], vjd, np.empty(0), np.empty(0), np.empty(0, np.int32))
    oq = rng.integers(0, n_fields * 64, n_obj).astype(np.int32)
    tra, tdec = sky.tile(oq)
    sky.odec = tdec + rng.uniform(-QS / 2, QS / 2, n_obj)
    sky.ora = (tra + rng.uniform(-QS / 2, QS / 2, n_obj) / np.cos(np.radians(tdec))) % 360.0
    sky.oq = oq
    return sky


def object_names(idx: np.ndarray, year: int = 25) -> np.ndarray:
    """``object_name(year, idx)`` of many counters at once, as fixed-width bytes."""
    out = np.empty((len(idx), 12), np.uint8)
    out[:, :5] = np.frombuffer(f"ZTF{year:02d}".encode(), np.uint8)
    n = np.asarray(idx, np.int64).copy()
    for k in range(11, 4, -1):
        n, r = np.divmod(n, 26)
        out[:, k] = r + ord("a")
    return out.view("S12").ravel()


def digits(x: np.ndarray, width: int) -> np.ndarray:
    out = np.empty((len(x), width), np.uint8)
    n = np.asarray(x, np.int64).copy()
    for k in range(width - 1, -1, -1):
        n, r = np.divmod(n, 10)
        out[:, k] = r + ord("0")
    return out.view(f"S{width}").ravel()


def diff_images(sky: Sky) -> dict[str, np.ndarray]:
    nf, nv = sky.vjd.shape
    f = np.repeat(np.arange(nf), nv * 64)
    v = np.tile(np.repeat(np.arange(nv), 64), nf)
    rc = np.tile(np.arange(64), nf * nv)
    pid = (f * nv + v) * 64 + rc + 1
    ra, dec = sky.tile(f * 64 + rc)
    rel = np.char.add(np.char.add(b"d/", digits(pid, 10)), b"_scimrefdiffimg.fits")
    return {"pid": pid, "expid": f * nv + v, "nid": (sky.vjd[f, v] - JD0).astype(np.int32) + 2000,
            "field": f + 200, "ccdid": rc // 4 + 1, "qid": rc % 4 + 1, "rcid": rc,
            "fid": 1 + v % 2, "programid": np.ones_like(pid), "jd": sky.vjd[f, v],
            "rfid": f * 1000 + rc, "ra": ra, "dec": dec,
            "radius": np.full(len(pid), QS / np.sqrt(2) * 1.02),
            "diffmaglim": np.full(len(pid), 20.5), "magzp": np.full(len(pid), 26.0),
            "relpath": rel, "ncand": np.zeros_like(pid)}


def objects(sky: Sky) -> dict[str, np.ndarray]:
    n = len(sky.ora)
    return {"object_id": object_names(np.arange(n)), "ra": sky.ora, "dec": sky.odec,
            "ndet": np.zeros(n, np.int64), "jdstart": np.full(n, JD0),
            "jdend": np.full(n, JD0 + 365)}


def candidates(sky: Sky, n_cand: int, rng: np.random.Generator) -> Iterator[dict]:
    """The year's candidates, in pieces of successive weeks, each in (jd, pid) order."""
    nf, nv = sky.vjd.shape
    n_obj = len(sky.ora)
    pieces = max(1, -(-n_cand // CHUNK))
    edges = np.linspace(JD0, JD0 + 366, pieces + 1)
    names = object_names(np.arange(n_obj)) if n_obj <= CHUNK * 4 else None
    candid = 0
    for p in range(pieces):
        m = n_cand // pieces + (p < n_cand % pieces)
        o = rng.integers(0, n_obj, m)
        f, rc = np.divmod(sky.oq[o], 64)
        lo = np.array([np.searchsorted(sky.vjd[k], edges[p]) for k in range(nf)])
        hi = np.array([np.searchsorted(sky.vjd[k], edges[p + 1]) for k in range(nf)])
        ok = hi[f] > lo[f]
        o, f, rc = o[ok], f[ok], rc[ok]
        v = lo[f] + (rng.random(len(o)) * (hi[f] - lo[f])).astype(np.int64)
        pid = (f * nv + v) * 64 + rc + 1
        order = np.lexsort((pid, sky.vjd[f, v]))
        o, f, rc, v, pid = o[order], f[order], rc[order], v[order], pid[order]
        jd = sky.vjd[f, v]
        jit = rng.normal(0, 0.2 / 3600, (2, len(o)))
        n = len(o)
        yield {"candid": candid + np.arange(n) + 1, "pid": pid,
               "object_id": names[o] if names is not None else object_names(o), "jd": jd,
               "nid": (jd - JD0).astype(np.int32) + 2000, "fid": 1 + v % 2, "field": f + 200,
               "rcid": rc, "programid": np.ones(n, np.int64),
               "ra": (sky.ora[o] + jit[0] / np.cos(np.radians(sky.odec[o]))) % 360.0,
               "dec": sky.odec[o] + jit[1], "isdiffpos": np.full(n, b"t"),
               "scorr": np.full(n, 8.0), "passed": np.ones(n, bool),
               "record": np.full(n, b"{}")}
        candid += n
        sky.n_cand += n


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------
def _binary_rows(cols: dict[str, np.ndarray], types: dict[str, str]) -> bytes:
    """Rows in PostgreSQL's binary COPY format (every value non-NULL)."""
    n = len(next(iter(cols.values())))
    spec: list[tuple[str, str]] = [("_n", ">i2")]
    for k, (name, arr) in enumerate(cols.items()):
        t = types[name]
        dtype = {"int4": ">i4", "int8": ">i8", "float8": ">f8", "bool": "u1",
                 "timestamp": ">i8"}.get(t, arr.dtype.str if t == "text" else None)
        spec += [(f"_l{k}", ">i4"), (name, dtype)]
    rec = np.empty(n, np.dtype(spec))
    rec["_n"] = len(cols)
    for k, (name, arr) in enumerate(cols.items()):
        rec[f"_l{k}"] = rec.dtype[name].itemsize
        rec[name] = arr
    return rec.tobytes()


def _types(conn, table: str) -> dict[str, str]:
    rows = conn.execute(text(
        "select column_name, udt_name from information_schema.columns "
        "where table_schema = current_schema() and table_name = :t"), {"t": table}).all()
    m = {"int4": "int4", "int8": "int8", "float8": "float8", "bool": "bool", "varchar": "text",
         "json": "text", "text": "text", "timestamp": "timestamp", "timestamptz": "timestamp"}
    return {c: m.get(u, u) for c, u in rows}


def _copy(raw, table: str, pieces: Iterator[dict], types: dict[str, str]) -> int:
    """COPY the pieces into ``table`` (truncated first, in the same transaction: FREEZE)."""
    n = 0
    now = int((dt.datetime.now() - EPOCH).total_seconds() * 1e6)
    with raw.cursor() as cur:
        cur.execute(f"truncate {table}")
        first = True
        copy = None
        for piece in pieces:
            m = len(next(iter(piece.values())))
            if "created_at" in types:
                piece = {**piece, "created_at": np.full(m, now, np.int64)}
            if first:
                cols = ", ".join(f'"{c}"' for c in piece)
                copy_cm = cur.copy(f"copy {table} ({cols}) from stdin (format binary, freeze)")
                copy = copy_cm.__enter__()
                copy.write(b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8)
                first = False
            copy.write(_binary_rows(piece, types))
            n += m
        if copy is not None:
            copy.write(b"\xff\xff")
            copy_cm.__exit__(None, None, None)
    return n


def load_pg(engine: Engine, sky: Sky, n_cand: int, rng: np.random.Generator,
            logged: bool) -> dict[str, float]:
    t0 = time.perf_counter()
    raw = engine.raw_connection()
    try:
        dconn = raw.driver_connection
        dconn.autocommit = True
        sa = engine.connect()
        types = {t: _types(sa, t) for t in LOADED}
        sa.close()
        cur = dconn.cursor()
        cur.execute("set maintenance_work_mem = '1GB'")
        cur.execute("set synchronous_commit = off")
        # Keys of the loaded tables, and foreign keys onto them (alerts -> candidates, ...).
        keys = cur.execute(
            "select conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "from pg_constraint where connamespace = current_schema()::regnamespace "
            "and contype in ('p', 'u') and conrelid::regclass::text = any(%s)",
            (list(LOADED),)).fetchall()
        # The tables that reference them, directly or not (empty here), go unlogged with them.
        tables = set(LOADED)
        while True:
            fks = cur.execute(
                "select conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                "from pg_constraint where connamespace = current_schema()::regnamespace "
                "and contype = 'f' and (conrelid::regclass::text = any(%s) "
                "or confrelid::regclass::text = any(%s))",
                (sorted(tables), sorted(tables))).fetchall()
            if {f[0] for f in fks} <= tables:
                break
            tables |= {f[0] for f in fks}
        for rel, name, _ in fks + keys:
            cur.execute(f'alter table {rel} drop constraint "{name}"')
        idx = cur.execute("select indexname, indexdef from pg_indexes where "
                          "schemaname = current_schema() and tablename = any(%s)",
                          (list(LOADED),)).fetchall()
        for name, _ in idx:
            cur.execute(f'drop index "{name}"')
        if not logged:
            for t in sorted(tables):
                cur.execute(f"alter table {t} set unlogged")
        dconn.autocommit = False
        t1 = time.perf_counter()
        _copy(dconn, "diff_images", iter([diff_images(sky)]), types["diff_images"])
        _copy(dconn, "objects", iter([objects(sky)]), types["objects"])
        _copy(dconn, "candidates", candidates(sky, n_cand, rng), types["candidates"])
        dconn.commit()
        t2 = time.perf_counter()
        dconn.autocommit = True
        for rel, name, defn in keys:
            cur.execute(f'alter table {rel} add constraint "{name}" {defn}')
        for _, defn in idx:
            cur.execute(defn)
        for rel, name, defn in fks:
            cur.execute(f'alter table {rel} add constraint "{name}" {defn} not valid')
        t3 = time.perf_counter()
        cur.execute(f"insert into object_counters (year, next) values (25, {len(sky.ora)})")
        for t in LOADED:
            cur.execute(f"analyze {t}")
        t4 = time.perf_counter()
        size = cur.execute("select sum(pg_total_relation_size(c.oid)) from pg_class c "
                           "where c.relnamespace = current_schema()::regnamespace "
                           "and c.relkind = 'r'").fetchone()[0]
    finally:
        raw.close()
    return {"generate+copy": t2 - t1, "indexes": t3 - t2, "analyze": t4 - t3,
            "load": t4 - t0, "bytes": float(size or 0)}


def load_sqlite(engine: Engine, sky: Sky, n_cand: int, rng: np.random.Generator
                ) -> dict[str, float]:
    t0 = time.perf_counter()
    now = dt.datetime.now(dt.UTC)

    def rows(d: dict[str, np.ndarray]) -> list[dict]:
        cols = {k: (v.astype(str) if v.dtype.kind == "S" else v.tolist()) for k, v in d.items()}
        out = [dict(zip(cols, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]
        for r in out:
            r["created_at"] = now
        return out

    with engine.begin() as conn:
        conn.execute(insert(DiffImageRecord), rows(diff_images(sky)))
        conn.execute(insert(AstroObject), rows(objects(sky)))
        for piece in candidates(sky, n_cand, rng):
            recs = rows(piece)
            for r in recs:
                r["record"], r["passed"] = {}, True
            conn.execute(insert(Candidate.__table__), recs)
        conn.execute(insert(ObjectCounter), [{"year": 25, "next": len(sky.ora)}])
    return {"generate+copy": time.perf_counter() - t0, "indexes": 0.0, "analyze": 0.0,
            "load": time.perf_counter() - t0,
            "bytes": float(Path(engine.url.database).stat().st_size)}


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------
def quadrant_batch(sky: Sky, q: int, batch: int, rng: np.random.Generator, night: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """The next night's detections on quadrant ``q``: ~70 % on its known objects, the rest
    new (the ``night``-th quadrant of the night)."""
    mine = np.flatnonzero(sky.oq == q)
    n_old = min(int(batch * 0.7), len(mine))
    o = rng.choice(mine, n_old, replace=False)
    tra, tdec = sky.tile(q)
    dec = np.concatenate([sky.odec[o] + rng.normal(0, 0.3 / 3600, n_old),
                          tdec + rng.uniform(-QS / 2, QS / 2, batch - n_old)])
    ra = np.concatenate([sky.ora[o] + rng.normal(0, 0.3 / 3600, n_old) / np.cos(np.radians(
        sky.odec[o])), tra + rng.uniform(-QS / 2, QS / 2, batch - n_old) / np.cos(np.radians(
            tdec))]) % 360.0
    jd = np.full(batch, JD0 + 365.3 + night * 1e-3)  # the night after the loaded year
    f, rc = divmod(int(q), 64)
    return ra, dec, jd, f + 200, rc


def _refresh_each(s: Session, ids: set[str]) -> None:
    """The per-object refresh_objects this benchmark compares with (one query per object)."""
    for oid in ids:
        n, j0, j1 = s.execute(select(func.count(), func.min(Candidate.jd), func.max(Candidate.jd))
                              .where(Candidate.object_id == oid)).one()
        o = s.get(AstroObject, oid)
        if o is not None and n:
            o.ndet, o.jdstart, o.jdend = int(n), float(j0), float(j1)
    s.flush()


def time_quadrants(engine: Engine, sky: Sky, quads: np.ndarray, batch: int, seed: int,
                   per_candidate: bool) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    t: dict[str, list[float]] = {"associate": [], "history": [], "refresh": [], "total": [],
                                 "known": [], "dets": [], "ulims": []}
    for k, q in enumerate(quads):
        ra, dec, jd, field, rcid = quadrant_batch(sky, int(q), batch, rng, k)
        with Session(engine) as s:
            s.execute(select(1))  # the connection, outside the timing
            t0 = time.perf_counter()
            if per_candidate:
                names = [associate(s, a, d, j) for a, d, j in zip(ra.tolist(), dec.tolist(),
                                                                  jd.tolist(), strict=True)]
            else:
                names = associate_many(s, ra, dec, jd)
            t1 = time.perf_counter()
            args = [(n, a, d, j, field, rcid) for n, a, d, j in zip(names, ra.tolist(),
                                                                    dec.tolist(), jd.tolist(),
                                                                    strict=True)]
            if per_candidate:
                h = [history(s, *a) for a in args]
            else:
                h = history_many(s, args)
            t2 = time.perf_counter()
            if per_candidate:
                _refresh_each(s, set(names))
            else:
                refresh_objects(s, set(names))
                s.flush()
            t3 = time.perf_counter()
            s.rollback()
        assert len(h) == batch
        t["known"].append(float(np.mean([n.startswith("ZTF25") for n in names])))
        t["dets"].append(float(np.mean([len(x[0]) for x in h])))
        t["ulims"].append(float(np.mean([len(x[1]) for x in h])))
        for key, v in zip(("associate", "history", "refresh", "total"),
                          (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
            t[key].append(v)
    return t


def _stat(v: list[float]) -> str:
    return f"{statistics.median(v):7.3f} {float(np.percentile(v, 90)):7.3f}"


def _pg_available(url: str) -> bool:
    try:
        e = connect(url, connect_args={"connect_timeout": 3})
        with e.connect() as c:
            c.execute(text("select 1"))
        e.dispose()
        return True
    except Exception:
        return False


def run_size(url: str, n: int, args: argparse.Namespace, compare: bool) -> dict:
    rng = np.random.default_rng(args.seed + n)
    sky = make_sky(n, args.visits, rng)
    pg = url.startswith("postgresql")
    tmp = None
    if pg:
        schema = f"zsds_bench_{uuid.uuid4().hex[:10]}"
        admin = connect(url)
        with admin.begin() as c:
            c.execute(text(f'create schema "{schema}"'))
        engine = connect(url, connect_args={"options": f"-csearch_path={schema}"})
    else:
        tmp = tempfile.TemporaryDirectory()
        engine = connect(f"sqlite:///{tmp.name}/bench.sqlite")
    try:
        init_db(engine)
        load = (load_pg(engine, sky, n, rng, args.logged) if pg
                else load_sqlite(engine, sky, n, rng))
        print(f"loaded {sky.n_cand:,} candidates, {len(sky.ora):,} objects, "
              f"{sky.vjd.size * 64:,} difference images ({len(sky.fra)} fields) in "
              f"{load['load']:.1f} s (generate+copy {load['generate+copy']:.1f} s, indexes "
              f"{load['indexes']:.1f} s, analyze {load['analyze']:.1f} s); "
              f"{load['bytes'] / 1e9:.3f} GB on disk", flush=True)
        quads = np.random.default_rng(args.seed).choice(np.unique(sky.oq), args.quadrants,
                                                        replace=len(np.unique(sky.oq))
                                                        < args.quadrants)
        time_quadrants(engine, sky, quads[:1], args.batch, 99, False)  # warm-up
        res = {"n": sky.n_cand, "load": load,
               "batched": time_quadrants(engine, sky, quads, args.batch, args.seed, False)}
        b = res["batched"]
        print(f"per quadrant: {np.mean(b['known']):.0%} of the detections on known objects, "
              f"{np.mean(b['dets']):.1f} previous detections and {np.mean(b['ulims']):.1f} "
              "upper limits per candidate in 30 days", flush=True)
        if compare:
            res["per_candidate"] = time_quadrants(engine, sky, quads, args.batch, args.seed,
                                                  True)
        return res
    finally:
        engine.dispose()
        if pg:
            if args.keep:
                print(f"kept schema {schema}")
            else:
                with admin.begin() as c:
                    c.execute(text(f'drop schema "{schema}" cascade'))
            admin.dispose()
        if tmp is not None:
            tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=None, help=f"database (default {PG_URL})")
    ap.add_argument("--rows", default="1e6,1e7", help="candidate counts, comma-separated")
    ap.add_argument("--max-rows", type=float, default=None,
                    help="also run every power of ten above --rows up to this (1e8)")
    ap.add_argument("--quadrants", type=int, default=20)
    ap.add_argument("--batch", type=int, default=200, help="detections per quadrant")
    ap.add_argument("--visits", type=int, default=300, help="visits per field in the year")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the schema(s)")
    ap.add_argument("--logged", action="store_true", help="load into logged tables")
    ap.add_argument("--no-compare", action="store_true",
                    help="skip the per-candidate functions at the smallest size")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    sizes = [int(float(x)) for x in args.rows.split(",")]
    if args.max_rows:
        while sizes[-1] * 10 <= args.max_rows:
            sizes.append(sizes[-1] * 10)
    if args.quick:
        sizes, args.quadrants, args.batch, args.visits = [10_000], 3, 50, 40
    url = args.url or (PG_URL if _pg_available(PG_URL) else None)
    if url is None:
        if not args.quick:
            sys.exit(f"PostgreSQL at {PG_URL} unreachable (give --url)")
        url = "sqlite://"  # a file in a temporary folder
    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"{backend}; {args.quadrants} quadrants x {args.batch} detections; sizes "
          + ", ".join(f"{n:.0e}" for n in sizes), flush=True)
    results = []
    for k, n in enumerate(sizes):
        results.append(run_size(url, n, args, compare=(k == 0 and not args.no_compare)))
    print()
    print("seconds per quadrant (median p90)")
    print(f"{'candidates':>12} {'load s':>8} {'GB':>6} | {'associate':>15} {'history':>15} "
          f"{'refresh':>15} {'total':>15}")
    for r in results:
        for kind in ("batched", "per_candidate"):
            if kind in r:
                t = r[kind]
                print(f"{r['n']:>12,} {r['load']['load']:8.1f} {r['load']['bytes'] / 1e9:6.2f} | "
                      f"{_stat(t['associate'])} {_stat(t['history'])} {_stat(t['refresh'])} "
                      f"{_stat(t['total'])}  {kind.replace('_', '-')}")
    for r in results:
        t = r["batched"]["total"]
        print(f"per quadrant at {r['n']:,} candidates: median {statistics.median(t):.3f} s, "
              f"p90 {float(np.percentile(t, 90)):.3f} s (batched)")
    if len(results) > 1:
        a, b = results[0], results[-1]
        ra = statistics.median(b["batched"]["total"]) / statistics.median(a["batched"]["total"])
        print(f"growth {a['n']:.0e} -> {b['n']:.0e} candidates: x{ra:.2f} per quadrant")
    if "per_candidate" in results[0]:
        r = results[0]
        sp = statistics.median(r["per_candidate"]["total"]) / statistics.median(
            r["batched"]["total"])
        print(f"batched vs per-candidate at {r['n']:,}: x{sp:.1f} faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
