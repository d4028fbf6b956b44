"""The fault scenarios of issue 19, run against small simulated surveys.

Each scenario injects one fault with the real services (a Kafka-protocol broker, PostgreSQL,
a full file system, ``kill -9``), lets the pipeline (or the archive) meet it, recovers as an
operator would (start the broker, give back the space, run the night again) and returns a
:class:`ScenarioResult`: what happened (``facts``), whether the pipeline behaved (``ok``), and
what was lost or duplicated (:func:`zsds.reliability.checks.night_integrity`).

* :func:`matchfile_missing` -- a light curve whose matchfile is gone or damaged: a 404 naming
  it from every route, never a 500.
* :func:`broker_down` -- Kafka down for the whole night (or back during it): the night
  completes, its packets are archived and not recorded as delivered; when the broker is back,
  ``zsds alerts send`` (or the night itself) delivers each exactly once, and again nothing.
* :func:`pg_drop` -- PostgreSQL connections terminated by the server in the middle of a
  job's transaction: nothing half-written is visible, the job is ``failed`` (not
  ``running``), the rerun completes.
* :func:`disk_full` -- the products path fills up: a clear error naming the product, the
  raw files untouched, the jobs ``failed``; once there is space again, the rerun completes.
* :func:`kill_loop` -- ``kill -9`` of ``zsds night run`` (its whole process group, or one
  of its Dask workers) at seeded random moments, each followed by a plain rerun: no quadrant,
  row, file or alert lost or duplicated, no job left ``running``.

The surveys: :func:`build_survey` (the archive tests' first night: 16 epochs of one field on
one CCD of 512 px quadrants, references built) with :func:`add_night` for a night with alerts;
:func:`tiny_night` (calibrations and one exposure of one 256 px CCD, no reference) for the
faults that do not need alerts.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Engine

from zsds.core.home import Home
from zsds.core.naming import parse_raw_name
from zsds.db import connect, init_db
from zsds.db.engine import session
from zsds.db.schema import AlertDelivery, AlertRecord, CalibProduct, Job, QAMetric, QuadrantProduct
from zsds.reliability.checks import Integrity, night_integrity

__all__ = [
    "FAULT_NIGHT",
    "ScenarioResult",
    "add_night",
    "broker_down",
    "build_survey",
    "copy_home",
    "disk_full",
    "kill_loop",
    "matchfile_missing",
    "pg_drop",
    "tiny_night",
]

#: The simulated survey of the alert scenarios (as the archive tests' home).
SURVEY_NIGHT, SURVEY_FIELD, SURVEY_CCD, SURVEY_SIZE = "2026-11-20", 645, 6, 512
#: The night the alert scenarios add and process.
FAULT_NIGHT = "2026-11-22"
#: The night of :func:`tiny_night`.
TINY_NIGHT, TINY_CCD, TINY_SIZE = "2026-11-20", 1, 256

LogFn = Callable[[str], None]


@dataclass
class ScenarioResult:
    """The outcome of one fault scenario.

    Attributes
    ----------
    name, fault
        Short name; the fault injected, in words.
    ok
        Whether the pipeline behaved as it must (its ``outcome`` says how).
    outcome
        What happened, in words.
    lost, duplicated
        Items lost and duplicated (:class:`~zsds.reliability.checks.Integrity`).
    seconds
        Wall time of the scenario.
    facts
        What was measured (counts, states, messages).
    integrity
        The last integrity check, if any.
    """

    name: str
    fault: str
    ok: bool = False
    outcome: str = ""
    lost: int = 0
    duplicated: int = 0
    seconds: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)
    integrity: Integrity | None = None


def _quiet(_msg: str) -> None:
    pass


# --------------------------------------------------------------------------------------------
# Surveys
# --------------------------------------------------------------------------------------------
def survey_config(seed: int = 1, transient_rate: float = 300.0) -> Any:
    """The simulator settings of the survey (dense transients, so a quadrant has alerts)."""
    from zsds.sim.camera import SimConfig

    return SimConfig(quad_size=SURVEY_SIZE, seed=seed, transient_rate=transient_rate,
                     asteroid_density=5.0)


def build_survey(root: Path, workers: int = 2) -> Home:
    """Simulate and process the survey's first night: calibrations, 16 epochs, references
    (about 3 minutes on 2 cores)."""
    from zsds.executive import ExecConfig, Executive
    from zsds.sim.run import simulate_calib, simulate_night

    home = Home.resolve(root)
    simulate_calib(home, SURVEY_NIGHT, SURVEY_SIZE, [SURVEY_CCD], seed=1, n_bias=5, n_flat=3,
                   filters=("r",))
    simulate_night(home, SURVEY_NIGHT, 16, [SURVEY_FIELD], ccds=[SURVEY_CCD], filters=("r",),
                   config=survey_config(1))
    engine = connect(home.db_url)
    init_db(engine)
    try:
        with Executive(home, engine, ExecConfig(n_workers=workers, link_moving=False)) as ex:
            s = ex.run_night(SURVEY_NIGHT)
    finally:
        engine.dispose()
    if s.refs_built == 0:
        raise RuntimeError(f"the survey built no reference: {s.errors[:3]}")
    return home


def add_night(home: Home, night: str = FAULT_NIGHT, exposures: int = 1, seed: int = 3,
              transient_rate: float = 60.0) -> list[str]:
    """Simulate a night of the survey's field into ``incoming/``; the names of its files.

    ``transient_rate`` (per square degree) is lower than the survey's own: a few dozen
    packets make the alert faults as well as hundreds, in less time.
    """
    from zsds.sim.run import simulate_night

    before = {p.name for p in home.incoming.glob("*")} if home.incoming.is_dir() else set()
    simulate_night(home, night, exposures, [SURVEY_FIELD], ccds=[SURVEY_CCD], filters=("r",),
                   config=survey_config(seed, transient_rate))
    return sorted(p.name for p in home.incoming.glob("*") if p.name not in before)


def tiny_night(root: Path, db_url: str | None = None) -> Home:
    """Calibration frames and one exposure of one 256 px CCD (no reference: calibration
    only), in ``incoming/``."""
    from zsds.sim.camera import SimConfig
    from zsds.sim.run import simulate_calib, simulate_night

    home = Home.resolve(root, db_url).ensure()
    simulate_calib(home, TINY_NIGHT, quad_size=TINY_SIZE, ccds=[TINY_CCD], n_bias=5, n_flat=3,
                   filters=("r",))
    simulate_night(home, TINY_NIGHT, 1, ccds=[TINY_CCD], filters=("r",),
                   config=SimConfig(quad_size=TINY_SIZE, asteroids=False))
    return home


#: Folders of a home whose files every writer replaces whole (never edits in place).
_REPLACED_WHOLE = ("products", "raw", "alerts")


def copy_home(src: Path, dest: Path, db_url: str | None = None) -> Home:
    """A private copy of a home: products, archived raw files and packets hard-linked (every
    writer replaces such a file whole, so the source never changes), the rest copied."""
    src = Path(src)

    def link_or_copy(s: str, d: str) -> None:
        if Path(s).relative_to(src).parts[0] in _REPLACED_WHOLE:
            try:
                os.link(s, d)
                return
            except OSError:
                pass
        shutil.copy2(s, d)

    shutil.copytree(src, dest, copy_function=link_or_copy)
    return Home.resolve(dest, db_url)


def _night_raw(home: Home, night: str) -> list[str]:
    """Raw files of a night in ``incoming/``."""
    out = []
    for p in sorted(home.incoming.glob("*")):
        with contextlib.suppress(ValueError):
            n = parse_raw_name(p.name)
            if f"{n.filefracday[:4]}-{n.filefracday[4:6]}-{n.filefracday[6:8]}" == night:
                out.append(p.name)
    return out


def _finish(res: ScenarioResult, t0: float, integ: Integrity | None, ok: bool,
            outcome: str) -> ScenarioResult:
    res.seconds = round(time.monotonic() - t0, 1)
    res.integrity = integ
    if integ is not None:
        res.lost, res.duplicated = integ.total_lost, integ.total_duplicated
        ok = ok and integ.ok
        outcome += f"; {integ.summary()}"
    res.ok, res.outcome = ok, outcome
    return res


# --------------------------------------------------------------------------------------------
# Archive: a missing matchfile
# --------------------------------------------------------------------------------------------
def matchfile_missing(root: Path) -> ScenarioResult:
    """Light-curve requests for objects whose matchfile is missing or damaged."""
    import tables
    from fastapi.testclient import TestClient

    from zsds.archive.app import create_app
    from zsds.lightcurves.ids import oid
    from zsds.lightcurves.search import upsert_objects

    t0 = time.monotonic()
    res = ScenarioResult("matchfile missing", "light curve whose matchfile is deleted or "
                         "damaged on disk")
    home = Home.resolve(root).ensure()
    cases = {int(oid(645, 2, 6, 1, 7)): "products/lc/missing_dr0.pytable",
             int(oid(645, 2, 6, 2, 8)): "products/lc/damaged_dr0.pytable"}
    damaged = home.path(cases[int(oid(645, 2, 6, 2, 8))])
    damaged.parent.mkdir(parents=True, exist_ok=True)
    damaged.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 500)
    app = create_app(home)
    upsert_objects(app.state.ctx.engine, {"oid": list(cases), "ra": [10.0, 10.01],
                                          "dec": [20.0, 20.0], "matchfile": list(cases.values())})
    client = TestClient(app, raise_server_exceptions=False)
    statuses: dict[str, int] = {}
    tables.silence_hdf5_messages(True)  # the HDF5 library's own report of the damaged file
    named = True
    for o, rel in cases.items():
        for route, params in (("/cgi-bin/ZTF/nph_light_curves", {"ID": o, "FORMAT": "CSV"}),
                              ("/cgi-bin/ZTF/nph_light_curves", {"ID": o}),
                              ("/ui/api/lightcurve", {"oid": o}),
                              ("/ui/api/lightcurve.png", {"oid": o}),
                              ("/ui/api/periodogram", {"oid": o})):
            r = client.get(route, params=params)
            statuses[f"{route} {sorted(params)} {rel.split('/')[-1]}"] = r.status_code
            named = named and rel in r.text and str(home.root) not in r.text
    tables.silence_hdf5_messages(False)
    app.state.ctx.engine.dispose()
    res.facts = {"statuses": statuses, "message_names_object_and_file": named}
    codes = sorted(set(statuses.values()))
    ok = codes == [404] and named
    return _finish(res, t0, None, ok, f"{len(statuses)} requests answered "
                                      f"{'/'.join(map(str, codes))}"
                                      + (", naming the matchfile" if named else ""))


# --------------------------------------------------------------------------------------------
# Kafka down
# --------------------------------------------------------------------------------------------
def _night_candids(engine: Engine, night: str) -> list[int]:
    from zsds.alerts.kafka import PROGRAMS, topic_name

    topics = [topic_name(night, p) for p in PROGRAMS]
    with session(engine) as s:
        return list(s.scalars(select(AlertRecord.candid).where(AlertRecord.topic.in_(topics))))


def broker_down(home: Home, night: str = FAULT_NIGHT, *, back_during_night: bool = False,
                workers: int = 2, kafka_timeout: float = 2.0, log: LogFn = _quiet
                ) -> ScenarioResult:
    """Process ``night`` with its Kafka broker down, then bring the broker back.

    The broker's address is a free loopback port on which nothing listens yet. With
    ``back_during_night`` the broker is started as soon as the night has archived its first
    packet (so the night's own publishing must deliver the backlog); otherwise after the night,
    and ``zsds alerts send`` delivers. Then ``alerts send`` again must send nothing.
    """
    from zsds.alerts.broker import LocalBroker, free_port
    from zsds.alerts.send import send_night
    from zsds.executive import ExecConfig, Executive

    t0 = time.monotonic()
    when = "back during the night" if back_during_night else "back after the night"
    res = ScenarioResult("broker down" + (" (part of night)" if back_during_night else ""),
                         f"Kafka broker unreachable, {when}")
    raw_names = _night_raw(home, night)
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = LocalBroker(port)
    engine = connect(home.db_url)
    init_db(engine)
    started: dict[str, Any] = {}
    stop = threading.Event()

    def start_when_archived() -> None:
        while not stop.is_set():
            n = len(_night_candids(engine, night))
            if n:
                started["archived"] = n
                broker.start()
                log(f"broker started on {bootstrap} with {n} packet(s) archived")
                return
            stop.wait(0.2)

    try:
        cfg = ExecConfig(n_workers=workers, kafka=bootstrap, kafka_timeout=kafka_timeout,
                         build_refs=False, link_moving=False)
        starter = threading.Thread(target=start_when_archived, daemon=True)
        with Executive(home, engine, cfg) as ex:
            if back_during_night:
                starter.start()
            s = ex.run_night(night)
            stop.set()
            if starter.is_alive():
                starter.join()
        candids = _night_candids(engine, night)
        with session(engine) as ss:
            recorded = ss.scalar(select(func.count()).select_from(AlertDelivery).where(
                AlertDelivery.candid.in_(candids))) if candids else 0
        res.facts.update(quadrants=s.quadrants, failed=s.failed, archived=len(candids),
                         night_alerts=s.alerts, sent_by_night=s.alerts_sent,
                         unsent_at_end=s.alerts_unsent, recorded_by_night=recorded,
                         archived_while_down=started.get("archived", len(candids)),
                         problem=s.problem_line(), errors=s.errors[:3])
        log(f"night: {s.quadrants} quadrants, {s.failed} failed, {len(candids)} archived, "
            f"{s.alerts_sent} sent, {s.alerts_unsent} not delivered")
        if not broker.running:
            broker.start()
        first = send_night(home, engine, night, bootstrap)
        again = send_night(home, engine, night, bootstrap)
        res.facts.update(send_sent=first.sent, send_already=first.already_sent,
                         send_unsent=first.unsent, again_sent=again.sent,
                         again_already=again.already_sent, cluster=first.cluster_id)
        log(f"alerts send: {first.sent} sent, {first.already_sent} already there; "
            f"again: {again.sent} sent")
        integ = night_integrity(home, engine, night, raw_names=raw_names, kafka=bootstrap)
    finally:
        stop.set()
        broker.stop()
        engine.dispose()
    f = res.facts
    completed = f["failed"] == 0 and f["quadrants"] > 0 and f["archived"] > 0
    if back_during_night:
        delivered = (f["sent_by_night"] + f["send_sent"] == f["archived"]
                     and f["unsent_at_end"] == 0)
    else:
        delivered = (f["sent_by_night"] == 0 and f["recorded_by_night"] == 0
                     and f["unsent_at_end"] == f["archived"] and f["send_sent"] == f["archived"])
    ok = completed and delivered and f["again_sent"] == 0
    return _finish(res, t0, integ, ok,
                   f"night completed ({f['quadrants']} quadrants, {f['archived']} packets "
                   f"archived, {f['sent_by_night']} delivered by the night); alerts send "
                   f"delivered {f['send_sent']}, again {f['again_sent']}")


# --------------------------------------------------------------------------------------------
# PostgreSQL connection dropped
# --------------------------------------------------------------------------------------------
class ConnectionKiller:
    """Terminate (``pg_terminate_backend``, from a second connection) the connection of the
    first statement that starts with ``prefix`` (and whose parameters hold ``value``, if
    given), just before it runs.

    A SQLAlchemy ``before_cursor_execute`` hook on ``engine``; the statement then fails as
    one on a connection the server dropped. Counts the writes of the transaction sent before
    the kill (``writes_before``), so a caller can show the transaction was half-way.
    """

    def __init__(self, engine: Engine, admin: Engine, prefix: str,
                 value: str | None = None) -> None:
        self.engine, self.admin, self.prefix, self.value = engine, admin, prefix.upper(), value
        self.fired = False
        self.writes_before = 0
        self.killed_pid: int | None = None
        self._writes: dict[int, int] = {}

    def _begin(self, conn: Any) -> None:
        self._writes[id(conn)] = 0

    def _matches(self, head: str, parameters: Any) -> bool:
        if self.fired or not head.startswith(self.prefix):
            return False
        if self.value is None:
            return True
        values = parameters.values() if isinstance(parameters, dict) else parameters or ()
        return self.value in [v for v in values if isinstance(v, str)]

    def _before(self, conn: Any, _cursor: Any, statement: str, parameters: Any,
                *_args: Any) -> None:
        head = statement.lstrip().upper()
        if not self._matches(head, parameters):
            if head.startswith(("INSERT", "UPDATE", "DELETE")):
                self._writes[id(conn)] = self._writes.get(id(conn), 0) + 1
            return
        self.fired = True
        self.writes_before = self._writes.get(id(conn), 0)
        pid = conn.connection.dbapi_connection.info.backend_pid
        self.killed_pid = pid
        with self.admin.connect() as a:
            a.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            for _ in range(100):  # until the server has really dropped it
                if not a.execute(text("SELECT 1 FROM pg_stat_activity WHERE pid = :p"),
                                 {"p": pid}).first():
                    break
                time.sleep(0.02)

    def __enter__(self) -> ConnectionKiller:
        event.listen(self.engine, "begin", self._begin)
        event.listen(self.engine, "before_cursor_execute", self._before)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "begin", self._begin)


@contextlib.contextmanager
def pg_schema(pg_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema (dropped afterwards); yields the URL that uses it."""
    admin = connect(pg_url, connect_args={"connect_timeout": 3})
    schema = f"zsds_fault_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_url else "?"
    try:
        yield f"{pg_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _quadrant_rows(engine: Engine) -> dict[int, list[tuple]]:
    """Every quadrant's ``quadrant_products`` and ``qa_metrics`` rows (by pid)."""
    out: dict[int, list[tuple]] = {}
    with session(engine) as s:
        for p in s.execute(select(QuadrantProduct)).scalars():
            out.setdefault(p.pid, []).append(("product", p.kind, p.relpath))
        for m in s.execute(select(QAMetric).where(QAMetric.subject_kind == "quadrant")
                           ).scalars():
            out.setdefault(m.subject_id, []).append(("qa", m.name))
    return {k: sorted(v) for k, v in out.items()}


def _job_states(engine: Engine, stage: str) -> dict[str, str]:
    with session(engine) as s:
        return dict(s.execute(select(Job.key, Job.state).where(Job.stage == stage)).all())


def pg_drop(home: Home, pg_url: str, log: LogFn = _quiet) -> ScenarioResult:
    """Drop the job's PostgreSQL connection at three moments, then rerun.

    1. The master calibrations' first ``INSERT INTO calib_products``: the job must fail
       with nothing recorded, and build on the rerun.
    2. A quadrant's re-calibration record, at its ``INSERT INTO quadrant_products`` (after the
       transaction deleted the quadrant's rows and wrote its QA): the quadrant's previous
       rows must be visible unchanged, the job ``failed``, the other quadrants done.
    3. The ``UPDATE jobs`` that records a quadrant's calibration ``done``: the work is
       committed, the job must end ``done`` (not ``running``).

    ``home`` holds the raw files of :func:`tiny_night`; a fresh schema of ``pg_url`` is its
    database.
    """
    from sqlalchemy.exc import DBAPIError

    from zsds.calib.build import build_calibrations
    from zsds.db.jobs import job
    from zsds.ingest import ingest_incoming
    from zsds.instcal.run import calibrate_night

    t0 = time.monotonic()
    res = ScenarioResult("postgres drop", "PostgreSQL connection terminated mid-transaction "
                                          "(3 moments of a night)")
    raw_names = _night_raw(home, TINY_NIGHT)
    admin = connect(pg_url)
    f: dict[str, Any] = {}
    with pg_schema(pg_url) as url:
        home = Home.resolve(home.root, url)
        engine = connect(url)
        init_db(engine)
        try:
            ingest_incoming(home, engine)
            key = f"{TINY_NIGHT}-c{TINY_CCD:02d}"

            def calibrations() -> str | None:
                try:
                    with job(engine, "calib", key):
                        build_calibrations(home, engine, TINY_NIGHT, ccd=TINY_CCD)
                except DBAPIError as exc:
                    return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                return None

            # 1. The calibrations' transaction.
            with ConnectionKiller(engine, admin, "INSERT INTO calib_products") as k1:
                f["calib_error"] = calibrations()
            with session(engine) as s:
                f["calib_rows_after_kill"] = s.scalar(
                    select(func.count()).select_from(CalibProduct))
            f["calib_job"] = _job_states(engine, "calib").get(key)
            f["calib_rerun_error"] = calibrations()
            with session(engine) as s:
                f["calib_rows_after_rerun"] = s.scalar(
                    select(func.count()).select_from(CalibProduct))
            log(f"1. calibrations: cut ({f['calib_error']}); job {f['calib_job']}, "
                f"{f['calib_rows_after_kill']} rows visible; rerun: "
                f"{f['calib_rows_after_rerun']} rows")
            # 2. A quadrant's re-calibration record, half-way.
            first = calibrate_night(home, engine, TINY_NIGHT)
            f["first_failed"] = sum(not o.ok for o in first)
            before = _quadrant_rows(engine)
            with ConnectionKiller(engine, admin, "INSERT INTO quadrant_products") as k2:
                out = calibrate_night(home, engine, TINY_NIGHT)
            bad = [o for o in out if not o.ok]
            victim = bad[0].pid if bad else None
            after = _quadrant_rows(engine)
            states = _job_states(engine, "calibrate")
            with session(engine) as s:
                error = s.scalar(select(Job.error).where(
                    Job.stage == "calibrate", Job.key == str(victim))) or ""
            f.update(quadrant_killed=victim, quadrant_killed_after_writes=k2.writes_before,
                     quadrants_failed=len(bad), quadrant_job=states.get(str(victim)),
                     quadrant_error=error.splitlines()[0] if error else "",
                     quadrant_rows_unchanged=before.get(victim) == after.get(victim),
                     quadrant_rows=len(after.get(victim, [])),
                     others_done=sum(v == "done" for k, v in states.items()
                                     if k != str(victim)))
            log(f"2. quadrant {victim}: cut after {k2.writes_before} write(s); job "
                f"{f['quadrant_job']}; its previous {f['quadrant_rows']} rows "
                f"{'unchanged' if f['quadrant_rows_unchanged'] else 'CHANGED'}")
            # 3. The record of a job's end.
            with ConnectionKiller(engine, admin, "UPDATE jobs", value="done") as k3:
                out3 = calibrate_night(home, engine, TINY_NIGHT, quad=1)
            f.update(end_record_cut=k3.fired, end_job=_job_states(engine, "calibrate").get(
                str(out3[0].pid)) if out3 else None, end_ok=bool(out3) and out3[0].ok)
            log(f"3. end record of {out3[0].pid if out3 else None} cut: job {f['end_job']}")
            again = calibrate_night(home, engine, TINY_NIGHT)
            f["rerun_failed"] = sum(not o.ok for o in again)
            integ = night_integrity(home, engine, TINY_NIGHT, raw_names=raw_names,
                                    subtraction=False)
        finally:
            engine.dispose()
            admin.dispose()
    f.update(calib_cut=k1.fired, quadrant_cut=k2.fired)
    res.facts = f
    ok = (k1.fired and k2.fired and k3.fired and f["calib_error"] is not None
          and f["calib_job"] == "failed" and f["calib_rows_after_kill"] == 0
          and f["calib_rerun_error"] is None and f["calib_rows_after_rerun"] > 0
          and f["first_failed"] == 0 and f["quadrants_failed"] == 1
          and f["quadrant_job"] == "failed" and f["quadrant_rows_unchanged"]
          and k2.writes_before > 0 and f["others_done"] == 3 and f["end_job"] == "done"
          and f["end_ok"] and f["rerun_failed"] == 0)
    return _finish(res, t0, integ, ok,
                   f"3 transactions cut: nothing half-written visible "
                   f"({'yes' if f['quadrant_rows_unchanged'] else 'NO'}), jobs "
                   f"{f['calib_job']}/{f['quadrant_job']}/{f['end_job']}, rerun "
                   f"{'completed' if not f['rerun_failed'] else 'FAILED'}")


# --------------------------------------------------------------------------------------------
# Disk full
# --------------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mount_tmpfs(path: Path, size: str) -> bool:
    """Mount a tmpfs of ``size`` on ``path`` (root only); False if the system refuses."""
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                           capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def _remount(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True,
                   capture_output=True, timeout=10)


@contextlib.contextmanager
def _simulated_full_disk(root: Path, budget: int) -> Iterator[Callable[[], None]]:
    """Simulate a file system of ``budget`` free bytes under ``root``: the product writer
    (:func:`zsds.io.fitsio.atomic_write`, which every FITS product and log goes through)
    writes the file, then fails with ENOSPC once the bytes written pass the budget. Yields a
    function that gives the space back."""
    from zsds.io import fitsio

    original = fitsio.atomic_write
    used = [0]
    full = [True]

    def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
        if not full[0] or root not in Path(path).parents:
            return original(path, write)

        def limited(tmp: Path) -> None:
            write(tmp)
            used[0] += tmp.stat().st_size
            if used[0] > budget:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return original(path, limited)

    fitsio.atomic_write = atomic_write
    try:
        yield lambda: full.__setitem__(0, False)
    finally:
        fitsio.atomic_write = original


def disk_full(home: Home, size_kb: int = 1200, *, mount: bool = True,
              log: LogFn = _quiet) -> ScenarioResult:
    """Run the calibrations and the quadrants of :func:`tiny_night` with ``size_kb`` of space
    on the products path, then with plenty.

    The products path is a tmpfs of that size where the system allows mounting one (root);
    otherwise the full disk is simulated at the product writer (see
    :func:`_simulated_full_disk`), and ``facts['simulated']`` says so.
    """
    from zsds.calib.build import build_calibrations
    from zsds.db.jobs import job
    from zsds.ingest import ingest_incoming
    from zsds.instcal.run import calibrate_night

    t0 = time.monotonic()
    res = ScenarioResult("disk full", f"products path full ({size_kb} KB free)")
    raw_names = _night_raw(home, TINY_NIGHT)
    engine = connect(home.db_url)
    init_db(engine)
    ingest_incoming(home, engine)
    raw = {p: _sha256(p) for p in sorted(home.raw.rglob("*")) if p.is_file()}
    products = home.products
    shutil.rmtree(products, ignore_errors=True)
    products.mkdir()
    mounted = mount and _mount_tmpfs(products, f"{size_kb}k")
    key = f"{TINY_NIGHT}-c{TINY_CCD:02d}"

    def night() -> list[str]:
        errors = []
        try:
            with job(engine, "calib", key):
                build_calibrations(home, engine, TINY_NIGHT, ccd=TINY_CCD)
        except OSError as exc:
            errors.append(str(exc))
        errors += [o.message for o in calibrate_night(home, engine, TINY_NIGHT) if not o.ok]
        return errors

    try:
        with (contextlib.nullcontext(lambda: None) if mounted
              else _simulated_full_disk(products, size_kb * 1024)) as give_back:
            errors = night()
            with session(engine) as s:
                states = dict(s.execute(
                    select(Job.state, func.count()).group_by(Job.state)).all())
                failed = s.execute(select(Job.stage, Job.error).where(Job.state == "failed")
                                   ).all()
            temps = [p for p in products.rglob(".*tmp*")]
            log(f"full: {len(errors)} error(s), jobs {states}; first: "
                f"{errors[0] if errors else None}")
            if mounted:
                _remount(products, "512m")
            else:
                give_back()
            rerun = night()
        raw_after = {p: _sha256(p) for p in sorted(home.raw.rglob("*")) if p.is_file()}
        integ = night_integrity(home, engine, TINY_NIGHT, raw_names=raw_names,
                                subtraction=False)
        with session(engine) as s:
            states_after = dict(s.execute(
                select(Job.state, func.count()).group_by(Job.state)).all())
    finally:
        engine.dispose()
        if mounted:
            subprocess.run(["umount", str(products)], capture_output=True, timeout=30)
    first = (failed[0][1] or "").splitlines()[0] if failed else ""
    res.facts = {"simulated": not mounted, "errors": len(errors), "first_error": first,
                 "jobs_while_full": states, "failed_jobs": len(failed),
                 "temporaries_left": len(temps), "raw_untouched": raw == raw_after,
                 "rerun_errors": len(rerun), "jobs_after_rerun": states_after}
    names_path = bool(first) and str(products) in first and "full" in first
    ok = (bool(errors) and len(failed) > 0 and names_path and not temps and raw == raw_after
          and not rerun and "running" not in states)
    how = "simulated at the product writer" if not mounted else "tmpfs"
    return _finish(res, t0, integ, ok,
                   f"{len(failed)} job(s) failed naming the product ({how}), raw files "
                   f"{'untouched' if raw == raw_after else 'CHANGED'}, {len(temps)} partial "
                   f"file(s) left; rerun {'completed' if not rerun else 'FAILED'}")


# --------------------------------------------------------------------------------------------
# kill -9
# --------------------------------------------------------------------------------------------
def _zsds_command() -> list[str]:
    exe = Path(sys.executable).with_name("zsds")
    return [str(exe)] if exe.exists() else [sys.executable, "-c",
                                            "from zsds.cli.main import cli; cli()"]


def _workers_of(proc: subprocess.Popen) -> list[int]:
    """Process ids of the Dask worker processes under ``proc`` (the leaves of its tree)."""
    import psutil

    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [k.pid for k in kids if not k.children()
            and any("spawn" in a or "distributed" in a for a in _cmdline(k))]


def _cmdline(p: Any) -> list[str]:
    try:
        return p.cmdline()
    except Exception:  # gone, or not ours to read
        return []


def _kill_group(proc: subprocess.Popen) -> None:
    """``kill -9`` the process group of ``proc`` (the executive and its workers) and wait
    until none of them is left."""
    import psutil

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = [p for p in psutil.process_iter(["pid"])
                if _pgid(p.pid) == proc.pid]
        if not left:
            return
        time.sleep(0.1)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def kill_loop(home: Home, night: str = FAULT_NIGHT, *, kills: int = 20, seed: int = 19,
              kafka: bool = True, workers: int = 2, worker_share: float = 0.25,
              max_delay: float = 40.0, finish_each: bool = True, run_timeout: float = 900.0,
              log: LogFn = _quiet) -> ScenarioResult:
    """``kill -9`` ``zsds night run`` at seeded random moments, each time followed by a plain
    rerun, and check the night after each rerun that finishes it.

    Each round starts ``zsds night run`` and, a random delay after its Dask workers are up
    (uniform in 0.5 s .. ``max_delay``, lowered to the duration of a run that ended before
    its kill), kills either
    its whole process group (the executive and its Dask workers: a crashed machine) or, with
    probability ``worker_share``, one of its workers (the run must then recover by itself).
    A run that ended before its moment is not a kill; the next round tries again.

    With ``finish_each`` (the evaluation) every kill is followed by a plain
    ``zsds night run`` that must finish the night (exit status 0), after which
    :func:`~zsds.reliability.checks.night_integrity` must find nothing lost or duplicated and
    no job ``running``; the killed runs after the first use ``--redo``, so there is always
    work to interrupt. Without it (the test suite's short loop) each killed run's rerun is the
    next killed run (resuming what the last one left), and one plain run finishes the night
    after the last kill. With ``kafka`` a local broker receives the alerts throughout; at the
    end each archived packet must be on it exactly once.

    Returns
    -------
    ScenarioResult
        ``lost``: summed over the checks after each rerun; ``duplicated``: the most one check
        found (a duplicate stays until removed).
    """
    from zsds.alerts.broker import LocalBroker

    t0 = time.monotonic()
    rng = random.Random(seed)
    res = ScenarioResult("kill -9 loop", f"{kills} kill -9 of zsds night run (executive or "
                                         "worker) at random moments")
    raw_names = _night_raw(home, night)
    logs = home.root / "logs" / "kill-loop"
    logs.mkdir(parents=True, exist_ok=True)
    broker = LocalBroker().start() if kafka else None
    base = [*_zsds_command(), "night", "run", "--home", str(home.root), "--night", night,
            "--workers", str(workers), "--no-refs"]
    if broker is not None:
        base += ["--kafka", broker.bootstrap]
    env = {k: v for k, v in os.environ.items() if k not in ("ZSDS_DB_URL", "ZSDS_HOME")}
    rounds: list[dict[str, Any]] = []
    lost = dup = 0
    failures: list[str] = []
    last: Integrity | None = None
    engine = connect(home.db_url)
    init_db(engine)

    def start(args: list[str], tag: str) -> tuple[subprocess.Popen, Any]:
        out = (logs / f"{tag}.log").open("wb")
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True), out

    try:
        done = attempt = 0
        delay_hi = max_delay
        while done < kills:
            attempt += 1
            if attempt > 3 * kills:
                failures.append(f"only {done} of {kills} kills landed in {attempt - 1} runs")
                break
            args = base + (["--redo"] if attempt > 1 and finish_each else [])
            proc, out = start(args, f"{attempt:02d}-killed")
            delay = rng.uniform(0.5, max(1.0, delay_hi))
            target = "worker" if rng.random() < worker_share else "executive"
            # The moment is counted from the start of the work (the Dask workers are up),
            # not from the start of the command (imports and cluster start-up).
            while proc.poll() is None and not _workers_of(proc):
                time.sleep(0.1)
            t_start = time.monotonic()
            try:
                proc.wait(delay)
                # Ended before its moment: not a kill; aim earlier next time.
                delay_hi = min(delay_hi, 0.9 * (time.monotonic() - t_start))
                out.close()
                log(f"run {attempt}: ended (rc {proc.returncode}) before its kill at "
                    f"{delay:.1f} s")
                continue
            except subprocess.TimeoutExpired:
                pass
            if target == "worker" and (pids := _workers_of(proc)):
                victim = rng.choice(pids)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim, signal.SIGKILL)
                try:
                    rc: int | None = proc.wait(run_timeout)
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
                    rc = None
            else:
                target = "executive"
                _kill_group(proc)
                rc = None
            out.close()
            done += 1
            if not finish_each and done < kills:
                rounds.append({"kill": done, "target": target, "at_s": round(delay, 1),
                               "killed_run_rc": rc, "rerun_rc": None})
                log(f"kill {done}/{kills}: {target} at {delay:.1f} s")
                if target == "worker" and rc != 0:
                    failures.append(f"run with a killed worker (kill {done}) exited {rc}")
                continue
            rproc, rout = start(base, f"{attempt:02d}-rerun")
            try:
                rrc = rproc.wait(run_timeout)
            except subprocess.TimeoutExpired:
                _kill_group(rproc)
                rrc = None
            rout.close()
            integ = night_integrity(home, engine, night, raw_names=raw_names)
            last = integ
            lost += integ.total_lost
            dup = max(dup, integ.total_duplicated)
            rounds.append({"kill": done, "target": target, "at_s": round(delay, 1),
                           "killed_run_rc": rc, "rerun_rc": rrc, "lost": integ.total_lost,
                           "duplicated": integ.total_duplicated,
                           "running_jobs": integ.running_jobs})
            log(f"kill {done}/{kills}: {target} at {delay:.1f} s; rerun rc {rrc}; "
                f"{integ.summary()}")
            if rrc != 0:
                failures.append(f"rerun after kill {done} exited {rrc} (see {logs})")
            if target == "worker" and rc != 0:
                failures.append(f"run with a killed worker (kill {done}) exited {rc}")
            if not integ.ok:
                failures += integ.details[:3]
        if broker is not None:
            last = night_integrity(home, engine, night, raw_names=raw_names,
                                   kafka=broker.bootstrap)
            lost += last.lost.get("kafka", 0)
            dup = max(dup, last.total_duplicated)
            if not last.ok:
                failures += last.details[:3]
    finally:
        engine.dispose()
        if broker is not None:
            broker.stop()
    res.facts = {"rounds": rounds, "failures": failures, "kills": len(rounds),
                 "executive_kills": sum(r["target"] == "executive" for r in rounds),
                 "worker_kills": sum(r["target"] == "worker" for r in rounds),
                 "counted": last.counted if last else {}}
    res.seconds = round(time.monotonic() - t0, 1)
    res.integrity, res.lost, res.duplicated = last, lost, dup
    res.ok = not failures and not lost and not dup and len(rounds) >= kills
    counted = ", ".join(f"{v} {k}" for k, v in (last.counted if last else {}).items())
    res.outcome = (f"{len(rounds)} kills ({res.facts['executive_kills']} executive, "
                   f"{res.facts['worker_kills']} worker), each rerun "
                   f"{'finished the night' if not failures else 'FAILED: ' + failures[0]}; "
                   f"checked {counted}")
    return res

