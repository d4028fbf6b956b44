"""Benchmark: the archive service under concurrent load, one worker process against N.

Starts ``zsds serve`` as a subprocess on a free loopback port, first with ``--workers 1``
and then with ``--workers N``, and drives it with an asynchronous HTTP load generator
(``httpx.AsyncClient``, keep-alive, one connection per concurrent client) at concurrency 1, 8
and 32, for ``--duration`` seconds per cell, on four endpoints:

* ``cone``: IBE cone search ``/ibe/search/ztf/products/sci?POS=RA,DEC`` at the centre of a
  random archived science image;
* ``image``: IBE image search by metadata ``/ibe/search/ztf/products/sci?WHERE=...`` (a
  random field/filter/quadrant/exposure-date condition);
* ``cutout``: ``/ibe/data/ztf/products/sci/...?center=RA,DEC&size=50arcsec`` of a random
  archived science image around a random object on it;
* ``lightcurve``: the IRSA light-curve API ``/cgi-bin/ZTF/nph_light_curves?POS=CIRCLE ...``
  (CSV) on a random archived light-curve object.

The load generator is ``wrk`` (a C HTTP benchmarking tool: ``apt-get install wrk``) when it
is on the PATH, so that the client takes little of the 2 shared cores from the server: a Lua
script draws each request from 2,000 pre-drawn URLs and counts 4xx and 5xx itself. Without
``wrk`` (or with ``--generator httpx``) an ``httpx.AsyncClient`` in this process drives the
server instead, which costs about as much CPU as the server's own work.

It prints, per endpoint, concurrency and worker count: requests/s, p50 and p99 latency (ms),
the number of errors (any 5xx, transport errors and timeouts; 4xx are counted apart), then the
throughput ratio workers=N / workers=1. The load generator runs on the same machine as the
server and takes CPU from it: the load average is printed with the numbers. It asserts
nothing.

Without ``--home`` a small two-night home is simulated and processed first (as the archive
tests build it, about 3 minutes on 2 cores) in a temporary folder. With ``--home`` an existing
home is reused read-only (the server is started with ``--no-index``).

``--quick`` cannot afford that home: it serves a hand-made one instead (one 512 px science image
indexed in the archive and 2,000 light-curve objects around it, without matchfiles, so the
``lightcurve`` endpoint is left out), with one worker, one client and 0.5 s per endpoint. It
checks that the benchmark still runs (the test suite runs it), not the service's speed.

Usage: python bench/bench_archive_load.py [--home PATH] [--workers 2] [--duration 5]
       [--concurrency 1,8,32] [--endpoints cone,image,cutout,lightcurve] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx
import numpy as np
from sqlalchemy import text

from zsds.core.home import Home
from zsds.db import connect

ZSDS = str(Path(sys.executable).with_name("zsds"))


@dataclass
class Targets:
    """What the requests are drawn from: archived images and light-curve objects."""

    images: list[tuple[str, float, float, int, str, int]]  # relpath, ra, dec, field, fc, qid
    objects: list[tuple[float, float]]  # ra, dec


@dataclass
class Cell:
    """The outcome of one endpoint at one concurrency for one worker count."""

    n_ok: int = 0
    n_4xx: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1e3 if self.latencies else float("nan")


def load_targets(home: Home) -> Targets:
    """Archived science images and light-curve objects of the home, read from its database."""
    engine = connect(home.db_url)
    with engine.connect() as conn:
        images = [tuple(r) for r in conn.execute(text(
            "SELECT relpath, ra, dec, field, filtercode, qid FROM archive_images "
            "WHERE tbl = 'sci' AND relpath LIKE '%sciimg.fits'"))]
        objects = [tuple(r) for r in conn.execute(text(
            "SELECT ra, dec FROM lc_objects LIMIT 5000"))]
    engine.dispose()
    if not images or not objects:
        raise SystemExit(f"{home.root}: no archived science images or light curves to query")
    return Targets(images, objects)


def request_makers(t: Targets) -> dict[str, Callable[[random.Random], tuple[str, dict]]]:
    """Per endpoint, a function of a random generator returning (path, query parameters)."""

    def cone(rng: random.Random) -> tuple[str, dict]:
        _, ra, dec, *_ = rng.choice(t.images)
        return "/ibe/search/ztf/products/sci", {"POS": f"{ra:.6f},{dec:.6f}"}

    def image(rng: random.Random) -> tuple[str, dict]:
        _, _, _, fld, fc, qid = rng.choice(t.images)
        return "/ibe/search/ztf/products/sci", {
            "WHERE": f"field={fld} AND filtercode='{fc}' AND qid={qid} AND obsjd>2400000.5"}

    def cutout(rng: random.Random) -> tuple[str, dict]:
        rel, ra, dec, *_ = rng.choice(t.images)
        ra += rng.uniform(-0.05, 0.05)
        dec += rng.uniform(-0.05, 0.05)
        return f"/ibe/data/ztf/{rel}", {"center": f"{ra:.6f},{dec:.6f}", "size": "50arcsec"}

    def lightcurve(rng: random.Random) -> tuple[str, dict]:
        ra, dec = rng.choice(t.objects)
        return "/cgi-bin/ZTF/nph_light_curves", {
            "POS": f"CIRCLE {ra:.6f} {dec:.6f} 0.0003", "FORMAT": "CSV"}

    return {"cone": cone, "image": image, "cutout": cutout, "lightcurve": lightcurve}


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(home: Home, workers: int, reuse: bool) -> tuple[subprocess.Popen, str, Path]:
    """``zsds serve`` on a free loopback port; returns the process, base URL and its log."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix=f"zsds_serve_w{workers}_", suffix=".log")[1])
    cmd = [ZSDS, "serve", "--home", str(home.root), "--port", str(port),
           "--workers", str(workers)]
    if home.db_url_override:
        cmd += ["--db-url", home.db_url_override]
    if reuse:
        cmd.append("--no-index")
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, "COLUMNS": "200"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while True:
        try:
            if httpx.get(f"{base}/openapi.json", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"zsds serve exited:\n{log.read_text()[-3000:]}")
        if time.time() > deadline:
            proc.terminate()
            raise SystemExit("zsds serve did not come up in 180 s")
        time.sleep(0.3)
    return proc, base, log


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate the server (SIGTERM: uvicorn stops its workers) and wait for it."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def drive(base: str, make: Callable[[random.Random], tuple[str, dict]],
                concurrency: int, duration: float, seed: int) -> Cell:
    """``concurrency`` clients sending requests back to back for ``duration`` seconds."""
    cell = Cell()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0) as client:
        # Warm-up: open the connections and touch the code paths (not counted).
        warm = random.Random(seed - 1)
        warm_reqs = [make(warm) for _ in range(concurrency)]
        await asyncio.gather(*(client.get(p, params=q) for p, q in warm_reqs),
                             return_exceptions=True)
        stop = time.perf_counter() + duration

        async def one_client(i: int) -> None:
            rng = random.Random(seed * 1000 + i)
            while time.perf_counter() < stop:
                path, params = make(rng)
                t0 = time.perf_counter()
                try:
                    resp = await client.get(path, params=params)
                    await resp.aread()
                    status = resp.status_code
                except httpx.HTTPError as exc:
                    cell.errors[type(exc).__name__] = cell.errors.get(type(exc).__name__, 0) + 1
                    continue
                dt = time.perf_counter() - t0
                if status >= 500:
                    cell.errors[str(status)] = cell.errors.get(str(status), 0) + 1
                    continue
                if status >= 400:
                    cell.n_4xx += 1
                else:
                    cell.n_ok += 1
                cell.latencies.append(dt)

        t0 = time.perf_counter()
        await asyncio.gather(*(one_client(i) for i in range(concurrency)))
        cell.elapsed = time.perf_counter() - t0
    return cell


_WRK_LUA = """
local paths = {}
for line in io.lines(os.getenv("ZSDS_WRK_PATHS")) do paths[#paths + 1] = line end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) n4xx = 0; n5xx = 0; math.randomseed(tonumber(args[1] or "1")) end
function request() return wrk.format("GET", paths[math.random(#paths)]) end
function response(status, headers, body)
  if status >= 500 then n5xx = n5xx + 1 elseif status >= 400 then n4xx = n4xx + 1 end
end
function done(summary, latency, requests)
  local a, b = 0, 0
  for _, t in ipairs(threads) do a = a + t:get("n4xx"); b = b + t:get("n5xx") end
  io.write(string.format("ZSDS %d %d %d %d %.3f %.3f %d\\n", summary.requests, a, b,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.duration))
end
"""


@dataclass
class WrkCell:
    """The outcome of one ``wrk`` run (same accessors as :class:`Cell`)."""

    n_ok: int
    n_4xx: int
    n_5xx: int
    n_socket: int
    p50_ms: float
    p99_ms: float
    elapsed: float

    @property
    def errors(self) -> dict[str, int]:
        return {k: v for k, v in (("5xx", self.n_5xx), ("socket", self.n_socket)) if v}

    @property
    def n_errors(self) -> int:
        return self.n_5xx + self.n_socket

    @property
    def rps(self) -> float:
        return (self.n_ok + self.n_4xx) / self.elapsed if self.elapsed else 0.0

    def pct(self, q: float) -> float:
        return {50: self.p50_ms, 99: self.p99_ms}[q]


def drive_wrk(base: str, make: Callable[[random.Random], tuple[str, dict]],
              concurrency: int, duration: float, seed: int, workdir: Path) -> WrkCell:
    """``wrk`` with ``concurrency`` connections (2 threads at most) for ``duration`` s."""
    rng = random.Random(seed)
    paths = workdir / "paths.txt"
    lines = []
    for _ in range(2000):
        path, params = make(rng)
        lines.append(f"{path}?{urlencode(params)}" if params else path)
    paths.write_text("\n".join(lines) + "\n")
    script = workdir / "zsds.lua"
    script.write_text(_WRK_LUA)
    cmd = ["wrk", "-t", str(min(2, concurrency)), "-c", str(concurrency),
           "-d", f"{max(1, round(duration))}s", "--timeout", "30s", "-s", str(script), base,
           "--", str(seed)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env={**os.environ, "ZSDS_WRK_PATHS": str(paths)}).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("ZSDS ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{out}")
    n, n4, n5, nsock, p50, p99, dur_us = line.split()[1:]
    total = int(n)
    return WrkCell(n_ok=total - int(n4) - int(n5), n_4xx=int(n4), n_5xx=int(n5),
                   n_socket=int(nsock), p50_ms=float(p50), p99_ms=float(p99),
                   elapsed=int(dur_us) / 1e6)


def loadavg() -> str:
    """The 1-, 5- and 15-minute load averages, as text."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def build_home(root: Path) -> Home:
    """A small processed two-night home (the archive tests' fixture)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "archive"))
    from conftest import build_archive_home

    print(f"building a two-night home in {root} (about 3 minutes)...", flush=True)
    return build_archive_home(root)


def build_tiny_home(root: Path) -> Home:
    """One indexed 512 px science image and 2,000 light-curve objects on it (no simulation)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_archive import write_full_quadrant
    from bench_lc_search import Sky, make_objects

    from zsds.db import init_db
    from zsds.lightcurves.search import bulk_load_objects

    home = Home.resolve(root).ensure()
    engine = connect(home.db_url)
    init_db(engine)
    ra0, dec0 = 150.0, 20.0
    write_full_quadrant(home, ra0, dec0, seed=1, nx=512, ny=512)
    bulk_load_objects(engine, make_objects(2000, Sky(0.02, dec0=dec0, ra0=ra0), seed=1))
    engine.dispose()
    return home


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", type=Path, default=None,
                    help="reuse this processed home (read-only) instead of building one")
    ap.add_argument("--db-url", default=None, help="its database URL (default: the home's)")
    ap.add_argument("--workers", type=int, default=2, help="N, compared with one worker")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per cell")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--endpoints", default="cone,image,cutout,lightcurve")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--generator", choices=("auto", "wrk", "httpx"), default="auto",
                    help="load generator (auto: wrk when it is installed, else httpx)")
    ap.add_argument("--quick", action="store_true",
                    help="a hand-made tiny home, one worker, one client, 0.5 s per endpoint")
    args = ap.parse_args(argv)
    if args.quick:
        args.workers, args.duration, args.concurrency = 1, 0.5, "1"
        args.endpoints = ",".join(e for e in args.endpoints.split(",") if e != "lightcurve")

    tmp = None
    if args.home is None:
        tmp = Path(tempfile.mkdtemp(prefix="zsds_load_home_"))
        home = build_tiny_home(tmp / "home") if args.quick else build_home(tmp / "home")
    else:
        home = Home.resolve(args.home, args.db_url)
        if not home.root.is_dir():
            raise SystemExit(f"{home.root}: no such zsds home")
    generator = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") and not args.quick else "httpx"
    if generator == "wrk" and not shutil.which("wrk"):
        raise SystemExit("--generator wrk: wrk is not installed (apt-get install wrk)")
    wrkdir = Path(tempfile.mkdtemp(prefix="zsds_wrk_"))
    conc = [int(c) for c in args.concurrency.split(",")]
    makers = request_makers(load_targets(home))
    endpoints = [e for e in args.endpoints.split(",") if e]
    unknown = set(endpoints) - set(makers)
    if unknown:
        raise SystemExit(f"unknown endpoints: {sorted(unknown)}")
    worker_counts = [1] if args.workers <= 1 else [1, args.workers]

    print(f"home {home.root} ({home.db_url.split(':')[0]}), {os.cpu_count()} CPUs, "
          f"{args.duration:g} s per cell, load generator {generator}, "
          f"load average at start {loadavg()}", flush=True)
    results: dict[tuple[int, str, int], Cell | WrkCell] = {}
    loads: dict[int, str] = {}
    try:
        for w in worker_counts:
            t0 = time.perf_counter()
            proc, base, log = start_server(home, w, reuse=args.home is not None)
            print(f"\nzsds serve --workers {w}: up in {time.perf_counter() - t0:.1f} s "
                  f"(log {log})", flush=True)
            try:
                for ep in endpoints:
                    for c in conc:
                        cell = (drive_wrk(base, makers[ep], c, args.duration, args.seed,
                                          wrkdir) if generator == "wrk" else
                                asyncio.run(drive(base, makers[ep], c, args.duration,
                                                  args.seed)))
                        results[(w, ep, c)] = cell
                        err = (" ".join(f"{k}:{v}" for k, v in sorted(cell.errors.items()))
                               or "0")
                        print(f"  {ep:<10} c={c:<3} {cell.rps:8.1f} req/s  "
                              f"p50 {cell.pct(50):8.1f} ms  p99 {cell.pct(99):8.1f} ms  "
                              f"4xx {cell.n_4xx}  errors {err}", flush=True)
            finally:
                loads[w] = loadavg()
                stop_server(proc)
                if args.quick:
                    log.unlink(missing_ok=True)
            print(f"  load average after: {loads[w]}", flush=True)
    finally:
        shutil.rmtree(wrkdir, ignore_errors=True)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    print("\n| endpoint | conc. | workers | req/s | p50 ms | p99 ms | 5xx/errors | 4xx |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for ep in endpoints:
        for c in conc:
            for w in worker_counts:
                cell = results[(w, ep, c)]
                print(f"| {ep} | {c} | {w} | {cell.rps:.1f} | {cell.pct(50):.0f} | "
                      f"{cell.pct(99):.0f} | {cell.n_errors} | {cell.n_4xx} |")
    if len(worker_counts) == 2:
        n = worker_counts[1]
        print(f"\nthroughput ratio workers={n} / workers=1")
        print("| endpoint | " + " | ".join(f"c={c}" for c in conc) + " |")
        print("|---|" + "---:|" * len(conc))
        for ep in endpoints:
            ratios = []
            for c in conc:
                r1, rn = results[(1, ep, c)].rps, results[(n, ep, c)].rps
                ratios.append(f"{rn / r1:.2f}" if r1 else "n/a")
            print(f"| {ep} | " + " | ".join(ratios) + " |")
    print(f"\nload average (1, 5, 15 min) after workers=1: {loads.get(1)}; after the last run: "
          f"{loadavg()}")


if __name__ == "__main__":
    main()
