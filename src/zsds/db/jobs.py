"""The ``jobs`` table: the one mechanism by which every stage records its runs.

A stage wraps each unit of work in :func:`job`::

    with job(engine, "subtract", str(pid), inputs={"sciimg": relpath}) as run:
        out = subtract_quadrant(...)
        if not out.ok:
            run.skip(out.message)      # or run.fail(message) for a failure that did not raise

The row is ``running`` (with this host and process id) while the block runs; ``done`` (or what
the block chose) when it ends; ``failed`` with the error and a short traceback when it raises,
and the exception propagates. So no error can leave a job ``running``: only a process that
died (kill -9, a lost machine) can, and :func:`is_stale` tells those apart from live ones.
Recording the end state is tried again once when the database dropped the connection, so a
connection lost at that moment does not leave the job ``running`` either.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from zsds.db.engine import session
from zsds.db.schema import Job

__all__ = ["JobRun", "error_text", "is_stale", "job", "mark_stale_jobs", "record_job"]

log = logging.getLogger(__name__)

#: States a job ends in.
FINAL_STATES = ("done", "skipped", "failed")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def record_job(engine: Engine, stage: str, key: str, state: str, error: str | None = None,
               inputs: dict | None = None) -> None:
    """Create or update the ``jobs`` row of (stage, key).

    ``running`` counts an attempt, stamps the start, host and process id and clears the end
    and error (and stores ``inputs`` when given); any other state stamps the end and stores
    ``error``. Stages use :func:`job` rather than calling this directly.
    """
    now = _now()
    with session(engine) as s:
        row = s.execute(select(Job).where(Job.stage == stage, Job.key == key)
                        ).scalar_one_or_none()
        if row is None:
            row = Job(stage=stage, key=key, attempts=0)
            s.add(row)
        row.state = state
        row.host = socket.gethostname()
        if state == "running":
            row.attempts = (row.attempts or 0) + 1
            row.started_at, row.finished_at, row.error = now, None, None
            row.pid = os.getpid()
            if inputs is not None:
                row.inputs = inputs
        else:
            row.finished_at = now
            row.error = error


def error_text(exc: BaseException, limit: int = 5) -> str:
    """``Type: message`` on the first line, then the innermost ``limit`` traceback frames."""
    tb = "".join(traceback.format_exception(exc, limit=-limit))
    return f"{type(exc).__name__}: {exc}\n{tb}"


@dataclass
class JobRun:
    """How the block of :func:`job` ended when it did not raise (default ``done``)."""

    stage: str
    key: str
    state: str = "done"
    message: str | None = None

    def skip(self, message: str) -> None:
        """Nothing to do (e.g. no reference yet): the job ends ``skipped``."""
        self.state, self.message = "skipped", message

    def fail(self, message: str) -> None:
        """A failure reported without an exception: the job ends ``failed``."""
        self.state, self.message = "failed", message


@contextmanager
def job(engine: Engine, stage: str, key: str, inputs: dict | None = None
        ) -> Iterator[JobRun]:
    """Record the block as the job (stage, key): ``running``, then its end state.

    An exception raised in the block (``KeyboardInterrupt`` included) is recorded as
    ``failed`` with :func:`error_text` and re-raised; a failure to write that record is logged
    and never hides the original error.
    """
    record_job(engine, stage, key, "running", inputs=inputs)
    run = JobRun(stage, key)
    try:
        yield run
    except BaseException as exc:
        try:
            _record_end(engine, stage, key, "failed", error_text(exc))
        except Exception:  # the database may be what failed: keep the original error
            log.exception("could not record job %s %s as failed", stage, key)
        raise
    _record_end(engine, stage, key, run.state, run.message)


def _record_end(engine: Engine, stage: str, key: str, state: str, error: str | None) -> None:
    """:func:`record_job` of a job's end state, tried again once on a new connection if the
    database dropped the first (a server restart, a terminated backend): the block's work is
    already committed, and the job must not stay ``running``."""
    try:
        record_job(engine, stage, key, state, error)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("recording job %s %s as %s: connection lost (%s); trying again",
                    stage, key, state, str(exc.orig or exc).splitlines()[0])
        record_job(engine, stage, key, state, error)


def _process_start(pid: int) -> dt.datetime | None:
    """Start time (UTC) of a live process on this host, else None."""
    import psutil  # with dask distributed

    try:
        t = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC)


def is_stale(row: Job) -> bool | None:
    """Whether a ``running`` job's process is gone.

    True when it ran on this host and its process no longer exists (or the id now belongs to
    a process started after the job); False when that process is alive; None when it ran on
    another host (its liveness cannot be told from here) or is not ``running``.
    """
    if row.state != "running" or row.host != socket.gethostname() or row.pid is None:
        return None
    started = _process_start(int(row.pid))
    if started is None:
        return True
    if row.started_at is None:
        return False
    job_start = row.started_at
    if job_start.tzinfo is None:  # SQLite hands back naive UTC times
        job_start = job_start.replace(tzinfo=dt.UTC)
    # Allow for clock rounding: the job cannot have started before its process did.
    return started > job_start + dt.timedelta(seconds=1)


def mark_stale_jobs(engine: Engine) -> list[tuple[str, str]]:
    """Mark every stale ``running`` job of this host ``failed`` ("process gone").

    Called by ``zsds night run`` before it decides what to (re)do. Returns (stage, key).
    """
    with session(engine) as s:
        running = s.execute(select(Job).where(Job.state == "running")).scalars().all()
        stale = [(r.id, r.stage, r.key, r.pid) for r in running if is_stale(r)]
        for rid, _stage, _key, pid in stale:
            s.execute(update(Job).where(Job.id == rid, Job.state == "running").values(
                state="failed", finished_at=_now(),
                error=f"stale: its process {pid} on {socket.gethostname()} is gone"))
    return [(stage, key) for _, stage, key, _ in stale]
