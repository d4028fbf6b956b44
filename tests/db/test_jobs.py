"""The one job-recording mechanism: every way a block ends leaves a final state, never
``running``; a job whose process died is told apart (stale) and failed by the next run."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys

import pytest
from sqlalchemy import select

from zsds.db import init_db
from zsds.db.engine import session
from zsds.db.jobs import is_stale, job, mark_stale_jobs, record_job
from zsds.db.schema import Job


def _row(engine, stage: str, key: str) -> Job:
    with session(engine) as s:
        row = s.execute(select(Job).where(Job.stage == stage, Job.key == key)).scalar_one()
        s.expunge(row)
    return row


def test_job_records_running_then_its_end(engine):
    init_db(engine)
    with job(engine, "calibrate", "1", inputs={"raw": "a.fits"}):
        inside = _row(engine, "calibrate", "1")
    assert inside.state == "running" and inside.pid == os.getpid()
    assert inside.host == socket.gethostname() and inside.inputs == {"raw": "a.fits"}
    assert is_stale(inside) is False
    done = _row(engine, "calibrate", "1")
    assert done.state == "done" and done.error is None and done.finished_at is not None
    with job(engine, "subtract", "2") as run:
        run.skip("no reference")
    assert (_row(engine, "subtract", "2").state, _row(engine, "subtract", "2").error) == (
        "skipped", "no reference")
    with job(engine, "subtract", "3") as run:
        run.fail("nothing usable")
    assert _row(engine, "subtract", "3").state == "failed"


@pytest.mark.parametrize("exc", [ValueError("bad pixels"), KeyboardInterrupt()])
def test_an_exception_is_recorded_failed_and_propagates(engine, exc):
    init_db(engine)
    with pytest.raises(type(exc)), job(engine, "packets", "7"):
        raise exc
    row = _row(engine, "packets", "7")
    assert row.state == "failed" and row.attempts == 1
    assert row.error.splitlines()[0] == f"{type(exc).__name__}: {exc}"
    assert "Traceback" in row.error and "test_jobs.py" in row.error
    # A second attempt counts and clears the old error.
    with job(engine, "packets", "7"):
        pass
    row = _row(engine, "packets", "7")
    assert row.state == "done" and row.attempts == 2 and row.error is None


def test_a_dead_process_leaves_a_stale_job_that_the_next_run_fails(engine):
    init_db(engine)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead_pid = int(child.stdout)
    record_job(engine, "refs", "all", "running")
    record_job(engine, "moving", "2026-11-21", "running")
    with session(engine) as s:  # as if written by the child (now gone) and by another host
        s.get(Job, _row(engine, "refs", "all").id).pid = dead_pid
        s.get(Job, _row(engine, "moving", "2026-11-21").id).host = "elsewhere.example"
    assert is_stale(_row(engine, "refs", "all")) is True
    assert is_stale(_row(engine, "moving", "2026-11-21")) is None  # cannot tell from here
    # A live pid that started after the job did is a reused id: stale too.
    with session(engine) as s:
        r = s.get(Job, _row(engine, "refs", "all").id)
        r.pid, r.started_at = os.getpid(), dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    assert is_stale(_row(engine, "refs", "all")) is True
    assert mark_stale_jobs(engine) == [("refs", "all")]
    row = _row(engine, "refs", "all")
    assert row.state == "failed" and row.error.startswith("stale: its process")
    assert _row(engine, "moving", "2026-11-21").state == "running"
    assert mark_stale_jobs(engine) == []
