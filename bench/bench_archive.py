"""Benchmark: the archive service's cone search and cutouts, timed through HTTP.

Loads N archived light-curve objects (default 1,000,000 over 100 deg^2, as
``bench_lc_search.py`` makes them) into a fresh home on SQLite (and PostgreSQL), writes one
full-size science quadrant (3080 x 3072 float32 with its WCS) into the IRSA layout, starts
``zsds serve``'s app under uvicorn on a loopback port and times, per request from a client
(httpx, keep-alive), after a few warm-up requests:

* IVOA cone search ``/SCS?table=ztf_objects_dr23&RA=&DEC=&SR=`` (1' radius) at random centres;
* IBE cutouts ``/ibe/data/ztf/products/sci/...?center=RA,DEC&size=S`` (60", 5' and 15',
  gzipped and not) of the full-size image at random centres.

It prints median / p95 / max ms per request. Peers, in the same process: the cone as a
brute-force numpy scan of all N positions already in memory, and the cutout as
``fits.getdata`` of the whole file plus ``Cutout2D`` (what a naive service does). The bars
(issue 9): a cone search over >= 1M sources in < 200 ms; a full-size cutout in < 200 ms.

``--quick`` serves 10,000 objects from SQLite only and a 512 x 512 image, 5 requests per
case (seconds; the test suite runs it so that the benchmark cannot rot).

Usage: python bench/bench_archive.py [--n 1000000] [--backends sqlite,postgresql]
       [--queries 100] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import uvicorn
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS

sys.path.insert(0, str(Path(__file__).parent))
from bench_lc_search import PG_URL, Sky, make_objects, pg_engine

from zsds.archive.app import create_app
from zsds.archive.cutout import cutout_fits
from zsds.archive.index import footprint
from zsds.core.home import Home
from zsds.core.naming import sci_product
from zsds.db import connect, init_db
from zsds.db.engine import session
from zsds.db.schema import ArchiveImage
from zsds.lightcurves.search import bulk_load_objects

NX, NY = 3072, 3080


def write_full_quadrant(home: Home, ra0: float, dec0: float, seed: int, nx: int = NX,
                        ny: int = NY) -> str:
    """One float32 science quadrant (full size by default) at (ra0, dec0), indexed; returns
    its relpath."""
    rng = np.random.default_rng(seed)
    w = WCS(naxis=2)  # a plain TAN header at ZTF's pixel scale: all a cutout needs
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    w.wcs.cd = np.array([[-1.012, 0.0], [0.0, 1.012]]) / 3600
    data = rng.normal(150.0, 12.0, (ny, nx)).astype(np.float32)
    hdr = w.to_header(relax=True)
    hdr["OBSJD"] = 2461365.7
    rel = str(sci_product("20261121200000", 645, "r", 6, 1, "sciimg.fits"))
    path = home.path(rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data, hdr).writeto(path, overwrite=True)
    with session(connect(home.db_url)) as s:
        s.add(ArchiveImage(tbl="sci", relpath=rel, field=645, ccdid=6, qid=1, rcid=20, fid=2,
                           filtercode="zr", imgtypecode="o", filefracday=20261121200000,
                           obsjd=2461365.7, **footprint(fits.getheader(path))))
    return rel


def serve(app) -> tuple[uvicorn.Server, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def timed(client: httpx.Client, urls: list[str], warmup: int) -> tuple[np.ndarray, int]:
    times, nbytes = [], 0
    for i, url in enumerate(urls):
        t0 = time.perf_counter()
        r = client.get(url)
        dt = (time.perf_counter() - t0) * 1e3
        r.raise_for_status()
        if i >= warmup:
            times.append(dt)
            nbytes += len(r.content)
    return np.array(times), nbytes // max(1, len(times))


def stats(t: np.ndarray) -> str:
    return (f"median {np.median(t):7.1f} ms  p95 {np.percentile(t, 95):7.1f} ms  "
            f"max {t.max():7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--patch-deg", type=float, default=100.0)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true",
                        help="10,000 objects, SQLite only, a 512 px image, 5 requests per case")
    args = parser.parse_args()
    args.nx, args.ny = NX, NY
    if args.quick:
        args.n, args.backends, args.queries, args.warmup = 10_000, "sqlite", 5, 1
        args.patch_deg, args.nx, args.ny = 1.0, 512, 512

    sky = Sky(args.patch_deg)
    df = make_objects(args.n, sky, args.seed)
    pos = np.radians(np.c_[df.ra.to_numpy(), df.dec.to_numpy()])
    rng = np.random.default_rng(args.seed + 1)
    root = Path(tempfile.mkdtemp(prefix="zsds-bench-archive-"))
    try:
        home = Home.resolve(root / "home").ensure()
        init_db(connect(home.db_url))
        ra0, dec0 = float(np.mean(sky.ra)), 20.0
        rel = write_full_quadrant(home, ra0, dec0, args.seed, args.nx, args.ny)
        for backend in args.backends.split(","):
            if backend == "sqlite":
                engine, cleanup = connect(home.db_url), None
            else:
                admin, engine, schema = pg_engine(PG_URL)
                cleanup = (admin, schema)
            init_db(engine)
            t0 = time.perf_counter()
            bulk_load_objects(engine, df)
            print(f"[{backend}] {args.n:,} objects loaded in {time.perf_counter() - t0:.1f} s",
                  flush=True)
            if backend != "sqlite":  # the image row lives in the home's SQLite: copy it
                with session(connect(home.db_url)) as s, session(engine) as d:
                    for img in s.query(ArchiveImage):
                        s.expunge(img)
                        d.merge(img)
            server, base = serve(create_app(home, engine, refresh_index=False))
            with httpx.Client(timeout=60) as client:
                cra, cdec = sky.sample(rng, args.queries + args.warmup)
                urls = [f"{base}/SCS?table=ztf_objects_dr23&RA={a:.6f}&DEC={d:.6f}"
                        f"&SR={1 / 60:.6f}" for a, d in zip(cra, cdec, strict=True)]
                t, size = timed(client, urls, args.warmup)
                print(f"[{backend}] SCS cone 1' over {args.n:,} objects: {stats(t)}  "
                      f"({size:,} B/response)", flush=True)
                # Peer: brute force over positions already in memory (haversine).
                pt = []
                for a, d in zip(np.radians(cra), np.radians(cdec), strict=True):
                    t0 = time.perf_counter()
                    s = (np.sin((pos[:, 1] - d) / 2) ** 2 + np.cos(d) * np.cos(pos[:, 1])
                         * np.sin((pos[:, 0] - a) / 2) ** 2)
                    np.flatnonzero(s < np.sin(np.radians(1 / 60) / 2) ** 2)
                    pt.append((time.perf_counter() - t0) * 1e3)
                print(f"[{backend}] peer: numpy brute-force scan in memory: "
                      f"{stats(np.array(pt))}  -> zsds/peer {np.median(t) / np.median(pt):.2f}",
                      flush=True)
                if backend == args.backends.split(",")[0]:
                    cutouts(client, base, home, rel, ra0, dec0, rng, args)
            server.should_exit = True
            if cleanup:
                from sqlalchemy import text

                engine.dispose()
                with cleanup[0].begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{cleanup[1]}" CASCADE'))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def cutouts(client: httpx.Client, base: str, home: Home, rel: str, ra0: float, dec0: float,
            rng: np.random.Generator, args: argparse.Namespace) -> None:
    url = f"{base}/ibe/data/ztf/products/{rel.removeprefix('products/')}"
    half = 0.35 * args.nx / NX  # deg: keep centres well inside the 0.86 deg quadrant
    sizes = (("60arcsec", "false"), ("5arcmin", "false"), ("15arcmin", "false"),
             ("60arcsec", "true"))
    for size, gz in sizes[:2] + sizes[3:] if args.quick else sizes:
        ra = ra0 + rng.uniform(-half, half, args.queries + args.warmup) / np.cos(
            np.radians(dec0))
        dec = dec0 + rng.uniform(-half, half, args.queries + args.warmup)
        urls = [f"{url}?center={a:.6f},{d:.6f}&size={size}&gzip={gz}"
                for a, d in zip(ra, dec, strict=True)]
        t, nbytes = timed(client, urls, args.warmup)
        print(f"[cutout] {size:>8} gzip={gz:5}: {stats(t)}  ({nbytes:,} B)", flush=True)
    path = home.path(rel)
    w = WCS(fits.getheader(path))
    for label, fn in (
        ("zsds.archive.cutout.cutout_fits in process (no HTTP)",
         lambda: cutout_fits(path, f"{ra0},{dec0}", "60arcsec", compress=False)),
        ("peer: whole file read (memmap=False) + Cutout2D",
         lambda: Cutout2D(fits.getdata(path, memmap=False), (args.nx / 2, args.ny / 2),
                          (60, 60), wcs=w)),
    ):
        pt = []
        for _ in range(10):
            t0 = time.perf_counter()
            fn()
            pt.append((time.perf_counter() - t0) * 1e3)
        print(f"[cutout] {label}, 60\": {stats(np.array(pt))}", flush=True)


if __name__ == "__main__":
    main()
