"""The ``jobs`` table's one writer: every stage records its runs through :func:`record_job`."""

from __future__ import annotations

import datetime as dt
import socket

from sqlalchemy import select
from sqlalchemy.engine import Engine

from zsds.db.engine import session
from zsds.db.schema import Job

__all__ = ["record_job"]


def record_job(engine: Engine, stage: str, key: str, state: str, error: str | None = None,
               inputs: dict | None = None) -> None:
    """Create or update the ``jobs`` row of (stage, key).

    ``running`` counts an attempt, stamps the start and clears the end and error (and stores
    ``inputs`` when given); any other state stamps the end and stores ``error``.
    """
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with session(engine) as s:
        job = s.execute(select(Job).where(Job.stage == stage, Job.key == key)
                        ).scalar_one_or_none()
        if job is None:
            job = Job(stage=stage, key=key, attempts=0)
            s.add(job)
        job.state = state
        job.host = socket.gethostname()
        if state == "running":
            job.attempts = (job.attempts or 0) + 1
            job.started_at, job.finished_at, job.error = now, None, None
            if inputs is not None:
                job.inputs = inputs
        else:
            job.finished_at = now
            job.error = error
