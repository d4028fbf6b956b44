"""The pipeline executive: a night's raw files to alerts on Dask distributed.

Per raw CCD file a chain of tasks (:mod:`zsds.executive.tasks`) is submitted to a Dask cluster::

    ingest ─► calibrate (4 quadrants) ─► 4 × (subtract ─► packets) ─► publish (driver)

Calibration frames of a night are ingested and turned into master biases and flats before the
night's science; references are built at the end of the night wherever enough good epochs
exist. The cluster is a local one sized to the machine (one single-threaded worker process per
core) unless a scheduler address is given, in which case the same graph runs on that cluster.

Robustness: every task is idempotent and Dask retries it (``retries``) and reschedules the tasks
of a worker that died, so killing a worker loses no quadrant; packets are built and archived by
the workers but published to Kafka only by this driver, as archived, through one
:class:`~zsds.alerts.send.Publisher` (one idempotent producer), which records each delivery per
broker cluster -- a re-delivered task never sends a packet twice. A broker that is down (for
the whole night or part of it) never stops the night: packets it did not take stay archived
and queued in the driver, are tried again with the next quadrant's (once the publisher's
``retry_after`` has passed) and once more at the end of the night; those still undelivered
then are counted (``alerts_unsent``) and ``zsds alerts send`` delivers them, each exactly once.
A failure in one quadrant is recorded (``jobs``) and never stops the others; re-running a night
skips what is done (``redo`` forces everything again).

Latency per exposure is measured from the moment its first raw file was available (its file
time, or the start of the run for files that were waiting) to the moment its last packet was
published (or archived, without Kafka).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from zsds.alerts.kafka import StreamConfig
from zsds.config import PipelineConfig
from zsds.core.home import Home
from zsds.core.naming import nid_of, parse_night, parse_raw_name, pid_of
from zsds.db.engine import session
from zsds.db.jobs import mark_stale_jobs
from zsds.db.schema import Job, NightSummaryRecord
from zsds.executive import tasks
from zsds.ingest.core import scan_incoming, still_changing
from zsds.io.fitsio import remove_stale_temporaries

__all__ = ["ExecConfig", "Executive", "NightSummary", "expid_of_name"]

ProgressFn = Callable[[str, int, int], None]
CALIB_TYPES = ("b", "f")  # bias, dome flat
SCIENCE = "o"


@dataclass(frozen=True)
class ExecConfig:
    """Settings of the executive."""

    scheduler: str | None = None  #: Dask scheduler address (tcp://host:8786); None: local cluster
    n_workers: int | None = None  #: worker processes of the local cluster (None: the cores)
    # A full-size quadrant's calibration or subtraction peaks at ~1.5 GB; building one CCD's
    # master bias and flats (afternoon) at ~3.1 GB.
    memory_limit: str = "auto"  #: memory limit per local worker; "auto" shares the machine's
    kafka: str | None = None  #: Kafka bootstrap server for the alerts (None: archive only)
    stream: StreamConfig = field(default_factory=StreamConfig)  #: alert topics' Kafka settings
    # An unreachable broker is tried again after three times this (its packets stay archived
    # meanwhile).
    kafka_timeout: float = 10.0  #: seconds to wait for the broker before calling it unreachable
    retries: int = 2  #: Dask retries of a failed task
    redo: bool = False  #: process everything again instead of skipping what is done
    build_refs: bool = True  #: build references at the end of the night
    subtract: bool = True  #: subtraction, candidates, alerts (off: calibration only)
    link_moving: bool = True  #: link moving objects, write MPC/ADES reports (needs subtract)
    # Every stage's settings (``zsds night run --config FILE.toml``), passed to each task
    # that has settings (:data:`zsds.executive.tasks.CONFIGURED`); the products record its
    # hash (``CFGHASH``) and the database the configuration (``configs``).
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)  #: every stage's settings


@dataclass
class NightSummary:
    """What a night's run did (printed, stored in ``night_summaries`` and as JSON)."""

    night: str  #: night, YYYY-MM-DD
    mode: str  #: "batch" (:meth:`Executive.run_night`) or "watch"
    files: int = 0  #: raw files taken from incoming, strays included
    quarantined: int = 0  #: files ingest quarantined (reasons in ``errors``)
    exposures: int = 0  #: exposures with at least one quadrant submitted
    quadrants: int = 0  #: quadrants whose task chain returned (failures included)
    calibrated: int = 0  #: quadrants calibrated by this run (not earlier ones)
    subtracted: int = 0  #: quadrants whose subtraction is done
    no_reference: int = 0  #: subtraction skipped (no reference, or subtraction off)
    failed: int = 0  #: failed quadrants: calibration, subtraction, or a task's retries
    skipped_done: int = 0  #: quadrants done by an earlier run, not run again (resume)
    candidates: int = 0  #: candidates of the subtracted quadrants
    alerts: int = 0  #: alert packets built
    alerts_sent: int = 0  #: alert packets delivered to Kafka
    alerts_unsent: int = 0  #: archived packets not delivered (``zsds alerts send``)
    wall_s: float = 0.0  #: wall-clock time of the run (s)
    # Percentiles of the per-exposure latency (first file arrival to last quadrant done),
    # seconds; ``None`` when no quadrant finished.
    latency_p50_s: float | None = None  #: median per-exposure latency (s)
    latency_p90_s: float | None = None  #: 90th percentile of the per-exposure latency (s)
    latency_p95_s: float | None = None  #: 95th percentile of the per-exposure latency (s)
    latency_max_s: float | None = None  #: largest per-exposure latency (s; None as above)
    quadrants_per_min: float = 0.0  #: throughput: ``quadrants`` per minute of ``wall_s``
    workers: int = 0  #: Dask workers at the end (0 when it could not be asked)
    peak_worker_memory_gb: float | None = None  #: largest peak RSS of a worker (GB; None: unknown)
    refs_built: int = 0  #: references built at the end of the night
    tracks: int = 0  #: moving-object tracks linked at the end of the night
    archived: int = 0  #: Images added to the archive index (``archive_images``).
    stale: int = 0  #: Jobs left running by a dead process, found and re-run.
    stale_files: int = 0  #: Temporary files of writers killed mid-write, removed.
    waiting: int = 0  #: Raw files still being written: left in incoming for the next run.
    failed_steps: list[str] = field(default_factory=list)  #: failed steps: refs, moving, archive
    errors: list[str] = field(default_factory=list)  #: one line per failure, in order
    latencies: dict[str, float] = field(default_factory=dict)  #: s per exposure, by expid (str)

    def problem_line(self) -> str:
        """What failed, in words (empty when nothing did)."""
        parts = [f"{n} {what}" for n, what in (
            (self.failed, "quadrant(s) failed"), (self.quarantined, "file(s) quarantined"),
            (self.alerts_unsent, "alert(s) archived but not delivered to Kafka (zsds alerts "
                                 "send delivers them)"),
            (len(self.failed_steps), f"end-of-night step(s) failed "
                                     f"({', '.join(self.failed_steps)})")) if n]
        return f"night {self.night}: " + "; ".join(parts) if parts else ""


def expid_of_name(filefracday: str) -> int:
    """Exposure id from a raw file's ``filefracday`` (as :func:`zsds.core.naming.expid_of`)."""
    date = dt.date(int(filefracday[:4]), int(filefracday[4:6]), int(filefracday[6:8]))
    return nid_of(date) * 100_000 + int(filefracday[8:]) // 10


def _night_of_name(filefracday: str) -> str:
    return f"{filefracday[:4]}-{filefracday[4:6]}-{filefracday[6:8]}"


def _peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


class Executive:
    """Runs nights on a Dask cluster (use as a context manager)."""

    def __init__(self, home: Home, engine: Engine, config: ExecConfig = ExecConfig(),
                 progress: ProgressFn | None = None) -> None:
        self.home = home
        self.engine = engine
        self.config = config
        self.progress = progress
        #: Dask client, connected on entering the context.
        self.client = None
        #: The local cluster started on entering (``None`` with ``config.scheduler``).
        self.cluster = None
        #: Alert publisher, opened on entering when ``config.kafka`` is set.
        self.publisher = None
        #: Archived packets not yet delivered to Kafka, by candid (tried again with each
        #: publish and at the end of the night).
        self._unsent: dict[int, Any] = {}

    # -- cluster -------------------------------------------------------------------------
    def __enter__(self) -> Executive:
        from distributed import Client, LocalCluster

        if self.config.scheduler:
            self.client = Client(self.config.scheduler, timeout=30)
        else:
            n = self.config.n_workers or os.cpu_count() or 1
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        memory_limit=self.config.memory_limit,
                                        dashboard_address=None)
            self.client = Client(self.cluster)
        if self.config.kafka:
            from zsds.alerts.send import Publisher

            self.publisher = Publisher(self.engine, self.config.kafka, self.config.stream,
                                       connect_timeout=self.config.kafka_timeout,
                                       retry_after=3 * self.config.kafka_timeout)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.publisher is not None:
            self.publisher.close()
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            # All work is done here: a worker slow to stop (a loaded machine) is killed by its
            # nanny after 4 s, which it logs as a warning a user can do nothing about.
            nanny = logging.getLogger("distributed.nanny")
            level = nanny.level
            nanny.setLevel(logging.ERROR)
            try:
                self.cluster.close()
            finally:
                nanny.setLevel(level)

    @property
    def _args(self) -> tuple[str, str]:
        return str(self.home.root), self.home.db_url

    def _submit(self, fn: Callable, *args: Any, key: str):
        kwargs = {"config": self.config.pipeline} if fn in tasks.CONFIGURED else {}
        return self.client.submit(fn, *self._args, *args, key=key, pure=False,
                                  retries=self.config.retries, **kwargs)

    # -- bookkeeping ---------------------------------------------------------------------
    def _done_jobs(self) -> tuple[dict[tuple[str, str], str],
                                  dict[tuple[str, str], dt.datetime | None]]:
        """Every job's state, and when it ended, by (stage, key)."""
        with session(self.engine) as s:
            rows = s.execute(select(Job.stage, Job.key, Job.state, Job.finished_at)).all()
        return ({(st, k): state for st, k, state, _ in rows},
                {(st, k): end for st, k, _, end in rows})

    @staticmethod
    def _quadrant_done(jobs: dict, ends: dict, pid: int) -> bool:
        """Calibrated, and subtracted and packaged or finished without a reference, each step
        after the one it depends on.

        A ``--redo`` killed half-way leaves newer upstream work under older downstream
        records: a calibration ``failed`` (killed) or re-done after the subtraction's
        ``done``, a subtraction re-done (its candidates, and their ``alerts`` rows, replaced)
        after the packets' ``done``. The quadrant is then not done, and the steps from the
        first stale one are run again.
        """
        key = str(pid)
        chain = [("calibrate", key), ("subtract", key)]
        if jobs.get(("calibrate", key)) != "done":
            return False
        state = jobs.get(("subtract", key))
        if state not in ("done", "skipped"):
            return False
        if state == "done":
            if jobs.get(("packets", key)) != "done":
                return False
            chain.append(("packets", key))
        times = [ends.get(c) for c in chain]
        return all(a is None or b is None or a <= b for a, b in itertools.pairwise(times))

    @staticmethod
    def _calibrated(jobs: dict, pid: int) -> bool:
        return jobs.get(("calibrate", str(pid))) == "done"

    # -- chains --------------------------------------------------------------------------
    def _chain(self, path: Path, ingest_future, calib_future, state: dict,
               quads: tuple[int, ...] = (1, 2, 3, 4), calibrate: bool = True) -> list:
        """Submit calibrate -> subtract -> packets for (some quadrants of) one science CCD."""
        name = parse_raw_name(path.name)
        expid = expid_of_name(name.filefracday)
        night = _night_of_name(name.filefracday)
        tag = f"{expid}-c{name.ccdid:02d}"
        deps = [f for f in (ingest_future, calib_future) if f is not None]
        if calibrate:
            cal = self._submit(tasks.task_calibrate, night, expid, name.ccdid, *deps,
                               key=f"calibrate-{tag}-{time.time_ns()}")
        else:  # calibrated already: a placeholder result keeps the accounting uniform
            cal = self.client.submit(list, key=f"calibrated-{tag}-{time.time_ns()}")
        out = []
        for q in quads:
            pid = pid_of(expid, name.ccdid, q)
            if self.config.subtract:
                sub = self._submit(tasks.task_subtract, pid, cal, key=f"subtract-{pid}-"
                                                                     f"{time.time_ns()}")
                pk = self._submit(tasks.task_packets, night, pid, sub,
                                  key=f"packets-{pid}-{time.time_ns()}")
            else:
                sub = self.client.submit(tasks.task_subtraction_off, pid, cal,
                                         key=f"nosubtract-{pid}-{time.time_ns()}")
                pk = self.client.submit(tasks.task_no_packets, sub,
                                        key=f"nopackets-{pid}-{time.time_ns()}")
            state["futures"][pk.key] = (expid, pid, sub, cal)
            out.append(pk)
        state["exposures"].add(expid)
        return out

    def _collect(self, futures: list, state: dict, summary: NightSummary,
                 ac=None) -> None:
        """Wait for packet futures; publish, account, measure latency."""
        from distributed import as_completed

        seq = ac if ac is not None else as_completed(futures)
        total = len(futures)
        done = 0
        for fut in seq:
            done += 1
            expid, pid, sub, cal = state["futures"].pop(fut.key)
            try:
                packets = fut.result()
                sres = sub.result()
            except Exception as exc:  # the quadrant failed after its retries
                summary.failed += 1
                summary.errors.append(f"pid {pid}: {type(exc).__name__}: {exc}")
                state["last"][expid] = time.time()
                continue
            summary.quadrants += 1
            mine = [r for r in cal.result() if r["pid"] == pid]  # [] when calibrated earlier
            if mine and not mine[0]["ok"]:
                # Counted here, not by what subtraction makes of it (off: "skipped").
                summary.failed += 1
                summary.errors.append(f"pid {pid}: calibration: {mine[0]['message']}")
                state["last"][expid] = time.time()
                continue
            if pid not in state["cal_seen"]:
                state["cal_seen"].add(pid)
                summary.calibrated += len(mine)
            if sres["state"] == "done":
                summary.subtracted += 1
                summary.candidates += sres.get("ncand", 0)
            elif sres["state"] == "skipped":
                summary.no_reference += 1
            else:
                summary.failed += 1
                summary.errors.append(f"pid {pid}: {sres['message']}")
            summary.alerts += len(packets)
            self._publish(packets, summary)
            state["last"][expid] = time.time()
            if self.progress:
                self.progress(f"pid {pid}", done, total if ac is None else done)

    def _publish(self, packets: list, summary: NightSummary, final: bool = False) -> None:
        """Publish ``packets`` and the backlog of earlier undelivered ones (a broker that
        came back gets them); ``final`` tries the broker even if it was just found down."""
        if self.publisher is None:
            return
        self._unsent.update((p.candid, p) for p in packets)
        if not self._unsent and not self.publisher.in_flight:
            return
        # Acknowledgements slower than this are recorded by a later call (never re-sent).
        res = self.publisher.publish(list(self._unsent.values()), force=final,
                                     timeout=3 * self.config.kafka_timeout)
        summary.alerts_sent += res.sent
        summary.errors += res.errors
        for candid in (*res.delivered, *res.already):
            self._unsent.pop(candid, None)

    def _flush_alerts(self, summary: NightSummary) -> None:
        """End of a night: a last try for the backlog; count what is still undelivered."""
        if self.publisher is None:
            return
        from zsds.alerts.kafka import parse_topic

        self._publish([], summary, final=True)
        night = parse_night(summary.night)
        summary.alerts_unsent = sum(1 for p in self._unsent.values()
                                    if parse_topic(p.topic)[0] == night)
        if summary.alerts_unsent:
            summary.errors.append(
                f"{summary.alerts_unsent} alert packet(s) of {summary.night} not delivered to "
                f"Kafka at {self.config.kafka}: kept in {self.home.alerts}; `zsds alerts send "
                f"--home {self.home.root} --night {summary.night} --kafka {self.config.kafka}`"
                " delivers them")

    # -- modes ---------------------------------------------------------------------------
    def run_night(self, night: str | dt.date) -> NightSummary:
        """Process everything waiting for a night (incoming files and ingested ones), start to
        end, then build references where enough epochs exist."""
        date = parse_night(night)
        ns = f"{date:%Y-%m-%d}"
        t0 = time.time()
        summary = NightSummary(ns, "batch")
        # Jobs a dead process left 'running' are failed now, so the resume below redoes them;
        # the temporary files of writers killed mid-write go.
        summary.stale = len(mark_stale_jobs(self.engine))
        summary.stale_files = sum(remove_stale_temporaries(d) for d in (
            self.home.products, self.home.alerts, self.home.raw))
        state: dict[str, Any] = {"futures": {}, "exposures": set(), "first": {}, "last": {},
                                 "cal_seen": set()}
        raw, strays = scan_incoming(self.home)
        files = [p for p, n in raw if _night_of_name(n.filefracday) == ns]
        # A file still being written is left for the next run, never half-read.
        busy = still_changing(files)
        summary.waiting = len(busy)
        files = [p for p in files if p not in busy]
        summary.files = len(files) + len(strays)
        # Directories and badly named files: quarantined with their reason (ingest does it).
        stray_futs = [self._submit(tasks.task_ingest, str(p), key=f"ingest-{p.name}-"
                                                                 f"{time.time_ns()}")
                      for p in strays]
        arrival = {p: max(p.stat().st_mtime, t0) for p in files}
        calib = [p for p in files if parse_raw_name(p.name).imgtypecode in CALIB_TYPES]
        science = [p for p in files if parse_raw_name(p.name).imgtypecode == SCIENCE]
        ing = {p: self._submit(tasks.task_ingest, str(p), key=f"ingest-{p.name}-"
                                                              f"{time.time_ns()}")
               for p in calib}
        jobs, ends = self._done_jobs()
        # Master bias and flats, one task per CCD (its frames are held in memory together);
        # science of a CCD waits for its own.
        calib_ccds = {parse_raw_name(p.name).ccdid for p in calib}
        # Frames ingested earlier (``zsds ingest``, or a run killed in the afternoon) whose
        # calibrations were never built: build them now (all of them again with --redo).
        calib_ccds |= {c for c in self._calib_ccds(date)
                       if self.config.redo or jobs.get(("calib", f"{ns}-c{c:02d}")) != "done"}
        calib_futures = {
            c: self._submit(tasks.task_calibrations, ns, c,
                            *[f for p, f in ing.items() if parse_raw_name(p.name).ccdid == c],
                            key=f"calib-{ns}-c{c:02d}-{time.time_ns()}")
            for c in sorted(calib_ccds)}
        # Science: new files, plus ingested CCDs of the night that are not done.
        targets: dict[tuple[int, int], Path] = {}
        for p in science:
            n = parse_raw_name(p.name)
            targets[(expid_of_name(n.filefracday), n.ccdid)] = p
        for relpath, expid, ccdid in self._ingested_science(date):
            targets.setdefault((expid, ccdid), self.home.path(relpath))
        futures = []
        for (expid, ccdid), path in sorted(targets.items()):
            is_new = path in arrival
            pids = {q: pid_of(expid, ccdid, q) for q in (1, 2, 3, 4)}
            quads: tuple[int, ...] = (1, 2, 3, 4)
            calibrate = True
            if not is_new and not self.config.redo:
                # Resume: only the quadrants not finished; calibrate only if one needs it.
                quads = tuple(q for q in quads
                              if not self._quadrant_done(jobs, ends, pids[q]))
                summary.skipped_done += 4 - len(quads)
                if not quads:
                    continue
                calibrate = not all(self._calibrated(jobs, pids[q]) for q in quads)
            f_ing = None
            if is_new:
                f_ing = self._submit(tasks.task_ingest, str(path),
                                     key=f"ingest-{path.name}-{time.time_ns()}")
                state.setdefault("ingest", []).append(f_ing)
            state["first"].setdefault(expid, arrival.get(path, t0))
            state["first"][expid] = min(state["first"][expid], arrival.get(path, t0))
            futures += self._chain(path, f_ing, calib_futures.get(ccdid), state, quads,
                                   calibrate)
        self._collect(futures, state, summary)
        for f in [*ing.values(), *stray_futs]:
            self._count_ingest(f.result(), summary)
        for f in state.get("ingest", []):
            self._count_ingest(f.result(), summary)
        if self.config.build_refs:
            res = self._end_step("refs", summary, tasks.task_refs)
            summary.refs_built = res["built"] if res else 0
        if self.config.subtract and self.config.link_moving:
            res = self._end_step("moving", summary, tasks.task_moving, ns)
            summary.tracks = res["tracks"] if res else 0
        self._index_archive(summary)
        return self._finish(summary, state, t0)

    def _end_step(self, name: str, summary: NightSummary, fn: Callable, *args: Any
                  ) -> dict[str, Any] | None:
        """Run an end-of-night task; a failure (recorded in ``jobs`` by the task) is counted
        in the summary and leaves the night's products standing."""
        try:
            return self._submit(fn, *args, key=f"{name}-{time.time_ns()}").result()
        except Exception as exc:
            summary.failed_steps.append(name)
            summary.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            return None

    def _index_archive(self, summary: NightSummary) -> None:
        """Add the night's images to the archive's search index (a header read per image,
        in this process: cheap next to the night)."""
        from zsds.archive.index import update_index

        try:
            summary.archived = update_index(self.home, self.engine)
        except Exception as exc:  # the products stand; `zsds serve` indexes them again
            summary.failed_steps.append("archive index")
            summary.errors.append(f"archive index: {type(exc).__name__}: {exc}")

    def build_lightcurves(self, fields: list[int] | None = None, features: bool = True
                          ) -> list[dict[str, Any]]:
        """Build the light curves of every field/quadrant/filter with a reference (one Dask
        task each), then the HATS objects catalogue. Returns one result per unit (failed
        units carry ``error``; one failure never stops the others)."""
        from distributed import as_completed

        from zsds.lightcurves.build import find_units, write_objects_catalog

        units = find_units(self.engine, fields)
        futs = {self.client.submit(tasks.task_lightcurves, *self._args, u.field, u.ccdid,
                                   u.qid, u.fid, features,
                                   key=f"lc-{u.field}-{u.ccdid}-{u.qid}-{u.fid}-"
                                       f"{time.time_ns()}", pure=False,
                                   retries=self.config.retries,
                                   config=self.config.pipeline): u for u in units}
        out = []
        for done, fut in enumerate(as_completed(futs), 1):
            try:
                out.append(fut.result())
            except Exception as exc:  # reported per unit, recorded in the jobs table
                out.append({"unit": str(futs[fut]), "error": f"{type(exc).__name__}: {exc}"})
            if self.progress:
                self.progress(str(futs[fut]), done, len(futs))
        if any("error" not in r for r in out):
            write_objects_catalog(self.home, client=self.client)
        return sorted(out, key=lambda r: r["unit"])

    def watch(self, idle: float | None = None, poll: float = 1.0,
              stop: Callable[[], bool] | None = None) -> list[NightSummary]:
        """Follow ``HOME/incoming``: process each raw file as it lands (ingest; calibration
        frames build the night's calibrations when its first science file arrives; science
        files run the chain). Returns one summary per night seen, after ``idle`` seconds
        without a new file and with nothing running (or when ``stop()`` is true)."""
        from distributed import as_completed

        t0 = time.time()
        seen: set[str] = set()
        per_night: dict[str, NightSummary] = {}
        states: dict[str, dict] = defaultdict(lambda: {"futures": {}, "exposures": set(),
                                                       "first": {}, "last": {},
                                                       "cal_seen": set()})
        calib_ing: dict[str, list] = defaultdict(list)
        calib_built: dict[str, Any] = {}
        ac = as_completed([])
        owner: dict[str, str] = {}
        stray_results: list[dict] = []
        last_new = time.time()
        while True:
            raw, strays = scan_incoming(self.home)
            for p in strays:  # quarantined at once (no night to wait for)
                if p.name not in seen:
                    seen.add(p.name)
                    stray_results.append(tasks.task_ingest(*self._args, str(p)))
            new = [(p, n) for p, n in raw if p.name not in seen]
            busy = still_changing(p for p, _ in new)  # taken at a later poll, once complete
            for p, n in new:
                if p in busy:
                    continue
                seen.add(p.name)
                last_new = time.time()
                ns = _night_of_name(n.filefracday)
                summ = per_night.setdefault(ns, NightSummary(ns, "watch"))
                summ.files += 1
                st = states[ns]
                f_ing = self._submit(tasks.task_ingest, str(p),
                                     key=f"ingest-{p.name}-{time.time_ns()}")
                st.setdefault("ingest", []).append(f_ing)
                if n.imgtypecode in CALIB_TYPES:
                    calib_ing[(ns, n.ccdid)].append(f_ing)
                    continue
                if n.imgtypecode != SCIENCE:
                    continue
                ck = (ns, n.ccdid)
                if ck not in calib_built and calib_ing[ck]:
                    calib_built[ck] = self._submit(tasks.task_calibrations, ns, n.ccdid,
                                                   *calib_ing[ck],
                                                   key=f"calib-{ns}-c{n.ccdid:02d}-"
                                                       f"{time.time_ns()}")
                expid = expid_of_name(n.filefracday)
                st["first"].setdefault(expid, p.stat().st_mtime if p.exists() else time.time())
                for pk in self._chain(p, f_ing, calib_built.get(ck), st):
                    owner[pk.key] = ns
                    ac.add(pk)
            # Drain whatever finished.
            for fut in list(_ready(ac)):
                ns = owner.pop(fut.key)
                self._collect([fut], states[ns], per_night[ns], ac=iter([fut]))
            busy = bool(owner)
            if stop is not None and stop() and not busy:
                break
            if idle is not None and not busy and time.time() - last_new >= idle:
                break
            time.sleep(poll)
        out = []
        for i, (ns, summ) in enumerate(sorted(per_night.items())):
            for f in states[ns].get("ingest", []):
                self._count_ingest(f.result(), summ)
            for res in stray_results if i == 0 else ():  # reported with the first night
                summ.files += 1
                self._count_ingest(res, summ)
            out.append(self._finish(summ, states[ns], t0))
        return out

    # -- helpers -------------------------------------------------------------------------
    def _calib_ccds(self, date: dt.date) -> set[int]:
        """CCDs with ingested calibration frames on a night."""
        from zsds.db.schema import Exposure, RawFile

        with session(self.engine) as s:
            return set(s.execute(select(RawFile.ccdid).join(
                Exposure, Exposure.expid == RawFile.expid).where(
                Exposure.night == date, Exposure.imgtype.in_(["bias", "dome", "flat"]))).scalars())

    def _ingested_science(self, date: dt.date) -> list[tuple[str, int, int]]:
        from zsds.instcal.run import science_files

        return [(r[0], int(r[1]), int(r[2])) for r in science_files(self.engine, date)]

    @staticmethod
    def _count_ingest(res: dict, summary: NightSummary) -> None:
        if res["status"] == "quarantined":
            summary.quarantined += 1
            summary.errors.append(res["message"])
        elif res["status"] == "waiting":
            summary.waiting += 1

    def _finish(self, summary: NightSummary, state: dict, t0: float) -> NightSummary:
        self._flush_alerts(summary)
        summary.wall_s = round(time.time() - t0, 3)
        summary.exposures = len(state["exposures"])
        lat = {str(e): state["last"][e] - state["first"].get(e, t0)
               for e in state["last"]}
        summary.latencies = {k: round(v, 3) for k, v in lat.items()}
        if lat:
            v = np.array(list(lat.values()))
            summary.latency_p50_s = round(float(np.percentile(v, 50)), 3)
            summary.latency_p90_s = round(float(np.percentile(v, 90)), 3)
            summary.latency_p95_s = round(float(np.percentile(v, 95)), 3)
            summary.latency_max_s = round(float(v.max()), 3)
        if summary.wall_s > 0:
            summary.quadrants_per_min = round(60.0 * summary.quadrants / summary.wall_s, 2)
        try:
            info = self.client.scheduler_info()
            summary.workers = len(info.get("workers", {}))
            peaks = self.client.run(_peak_rss_gb)
            summary.peak_worker_memory_gb = round(max(peaks.values()), 3) if peaks else None
        except Exception:  # the cluster may be shutting down; figures are optional
            pass
        store_summary(self.home, self.engine, summary)
        return summary


def _ready(ac) -> list:
    """Futures of an ``as_completed`` that are already finished (non-blocking)."""
    out = []
    while True:
        batch = ac.next_batch(block=False)
        if not batch:
            return out
        out += batch


def summary_path(home: Home, night: str, mode: str) -> Path:
    return home.root / "logs" / f"night_{night.replace('-', '')}_{mode}.json"


def store_summary(home: Home, engine: Engine, summary: NightSummary) -> Path:
    """Write the summary as JSON under ``HOME/logs/`` and as a ``night_summaries`` row."""
    path = summary_path(home, summary.night, summary.mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(asdict(summary), indent=1))
    tmp.replace(path)
    with session(engine) as s:
        s.add(NightSummaryRecord(night=parse_night(summary.night), mode=summary.mode,
                                 quadrants=summary.quadrants, failed=summary.failed,
                                 alerts=summary.alerts, wall_s=summary.wall_s,
                                 latency_p50_s=summary.latency_p50_s,
                                 latency_p95_s=summary.latency_p95_s,
                                 summary=asdict(summary)))
    return path
