"""The asynchronous TAP (UWS 1.1) jobs of the archive, kept in the database (``tap_jobs``).

Jobs survive a restart of ``zsds serve`` and are shared by its workers. Each job belongs to
its creator: a logged-in user's jobs are seen (and counted) by that user only; jobs created
anonymously are shared by anonymous callers who know their 128-bit random id, and counted per
client address. Quotas (:class:`JobStore`) keep one owner from crowding out another:

* a user keeps at most ``per_user`` jobs: their own oldest finished jobs are deleted to make
  room, and :class:`QuotaExceeded` (429) is raised when all of them are still pending;
* one client address keeps at most ``per_client`` anonymous jobs, and all anonymous callers
  together ``anonymous_total``: the oldest *anonymous* jobs are deleted to make room, never
  a logged-in user's.

Only the TAP parameters of a job are kept (:func:`job_params`: known names, the last value
of each, bounded lengths), and a job's parameters and result are deleted with it, at the
latest at its destruction time.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, delete, func, select, update

from zsds.archive.limits import MAX_ADQL_CHARS, MAX_JOB_PARAM_CHARS, MAX_JOB_PARAMS, LimitError
from zsds.db.engine import session
from zsds.db.schema import TapJob

#: TAP and UWS parameters a job keeps (upper case); anything else a client sends is dropped.
JOB_PARAMETERS = ("REQUEST", "LANG", "QUERY", "FORMAT", "RESPONSEFORMAT", "MAXREC", "RUNID",
                  "UPLOAD", "VERSION")
#: Phases in which a job still has to run (it cannot be deleted to make room).
ACTIVE = ("PENDING", "QUEUED", "EXECUTING")
#: Lifetime of an async job (destruction time after creation).
JOB_LIFETIME = dt.timedelta(days=1)


class QuotaExceeded(Exception):
    """An owner has as many unfinished jobs as the quota allows (answered with 429)."""


def job_params(params: dict[str, list[str]]) -> dict[str, list[str]]:
    """The parameters a job keeps: known TAP/UWS names only, the last value of each.

    Raises
    ------
    LimitError
        For a QUERY longer than :data:`~zsds.archive.limits.MAX_ADQL_CHARS` or another value
        longer than :data:`~zsds.archive.limits.MAX_JOB_PARAM_CHARS` characters.
    """
    out: dict[str, list[str]] = {}
    for name in JOB_PARAMETERS:
        values = params.get(name)
        if not values:
            continue
        value = str(values[-1])
        limit = MAX_ADQL_CHARS if name == "QUERY" else MAX_JOB_PARAM_CHARS
        if len(value) > limit:
            raise LimitError(f"parameter {name} is longer than {limit} characters")
        out[name] = [value]
    if len(out) > MAX_JOB_PARAMS:  # cannot happen with the names above; kept as the contract
        raise LimitError(f"more than {MAX_JOB_PARAMS} job parameters")
    return out


def _utc(t: dt.datetime | None) -> dt.datetime | None:
    """A stored time as aware UTC (SQLite drops the zone)."""
    if t is None:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


@dataclass
class Job:
    """A UWS job as the service shows it (the result is fetched separately)."""

    id: str
    params: dict[str, list[str]]
    owner: str | None
    phase: str
    created: dt.datetime
    destruction: dt.datetime
    started: dt.datetime | None = None
    ended: dt.datetime | None = None
    execution_duration: int = 600
    media: str | None = None
    error: str | None = None

    @property
    def anonymous(self) -> bool:
        """Whether the job was created anonymously."""
        return self.owner is None

    @classmethod
    def from_row(cls, row: TapJob) -> Job:
        return cls(id=row.id, params=dict(row.params or {}), owner=row.owner, phase=row.phase,
                   created=_utc(row.created), destruction=_utc(row.destruction),
                   started=_utc(row.started), ended=_utc(row.ended),
                   execution_duration=row.execution_duration, media=row.media,
                   error=row.error)


class JobStore:
    """The ``tap_jobs`` table of one archive, with per-owner quotas.

    Parameters
    ----------
    engine : Engine
    per_user : int
        Jobs one logged-in user keeps at most.
    per_client : int
        Anonymous jobs one client address keeps at most.
    anonymous_total : int
        Anonymous jobs kept at most in all.
    lifetime : datetime.timedelta
        Time from creation to destruction.

    Notes
    -----
    Thread- and process-safe as far as the database is: every method is one transaction.
    """

    def __init__(self, engine: Engine, *, per_user: int = 100, per_client: int = 20,
                 anonymous_total: int = 500, lifetime: dt.timedelta = JOB_LIFETIME):
        self.engine = engine
        self.per_user = per_user
        self.per_client = per_client
        self.anonymous_total = anonymous_total
        self.lifetime = lifetime

    @staticmethod
    def _mine(owner: str | None) -> Any:
        return TapJob.owner.is_(None) if owner is None else TapJob.owner == owner

    def add(self, params: dict[str, list[str]], owner: str | None, client: str | None) -> Job:
        """Create a PENDING job (making room within the owner's quota first).

        Raises
        ------
        QuotaExceeded
            When a user's jobs are all still unfinished and at the quota.
        """
        now = dt.datetime.now(dt.UTC)
        with session(self.engine) as s:
            s.execute(delete(TapJob).where(TapJob.destruction < now))
            if owner is not None:
                self._make_room(s, TapJob.owner == owner, self.per_user, finished_only=True)
            else:
                anon = TapJob.owner.is_(None)
                self._make_room(s, and_(anon, TapJob.client == client), self.per_client)
                self._make_room(s, anon, self.anonymous_total)
            row = TapJob(id=secrets.token_hex(16), owner=owner,
                         client=None if owner is not None else client, phase="PENDING",
                         params=params, created=now, destruction=now + self.lifetime)
            s.add(row)
            s.flush()
            return Job.from_row(row)

    @staticmethod
    def _make_room(s: Any, which: Any, limit: int, finished_only: bool = False) -> None:
        """Delete the oldest jobs matching ``which`` until fewer than ``limit`` remain."""
        n = s.scalar(select(func.count()).select_from(TapJob).where(which)) or 0
        excess = n - limit + 1
        if excess <= 0:
            return
        stmt = select(TapJob.id).where(which)
        if finished_only:
            stmt = stmt.where(TapJob.phase.not_in(ACTIVE))
        ids = list(s.scalars(stmt.order_by(TapJob.created, TapJob.id).limit(excess)))
        if len(ids) < excess:
            raise QuotaExceeded(f"{n} unfinished async jobs: the quota is {limit}; delete or "
                                "run some first")
        s.execute(delete(TapJob).where(TapJob.id.in_(ids)))

    def get(self, jid: str, owner: str | None) -> Job | None:
        """The job ``jid`` if it belongs to ``owner`` (None: an anonymous job) and lives."""
        with session(self.engine) as s:
            row = s.scalar(select(TapJob).where(TapJob.id == jid, self._mine(owner)))
            if row is None or _utc(row.destruction) < dt.datetime.now(dt.UTC):
                return None
            return Job.from_row(row)

    def jobs(self, owner: str | None) -> list[Job]:
        """The living jobs of an owner, oldest first."""
        now = dt.datetime.now(dt.UTC)
        with session(self.engine) as s:
            rows = s.scalars(select(TapJob).where(self._mine(owner), TapJob.destruction >= now)
                             .order_by(TapJob.created, TapJob.id)).all()
            return [Job.from_row(r) for r in rows]

    def delete(self, jid: str, owner: str | None) -> bool:
        """Delete a job of ``owner`` (its parameters and result with it)."""
        with session(self.engine) as s:
            res = s.execute(delete(TapJob).where(TapJob.id == jid, self._mine(owner)))
            return bool(res.rowcount)

    def start(self, jid: str) -> bool:
        """Move a PENDING/QUEUED job to EXECUTING; False when it was not waiting (already
        running or finished, or another worker took it)."""
        with session(self.engine) as s:
            res = s.execute(update(TapJob).where(TapJob.id == jid,
                                                 TapJob.phase.in_(("PENDING", "QUEUED")))
                            .values(phase="EXECUTING", started=dt.datetime.now(dt.UTC)))
            return bool(res.rowcount)

    def finish(self, jid: str, *, result: bytes | None = None, media: str | None = None,
               error: str | None = None) -> None:
        """End an EXECUTING job: COMPLETED with its result, or ERROR with a message."""
        values: dict[str, Any] = {"ended": dt.datetime.now(dt.UTC)}
        if error is None:
            values.update(phase="COMPLETED", result=result, media=media)
        else:
            values.update(phase="ERROR", error=error)
        with session(self.engine) as s:
            s.execute(update(TapJob).where(TapJob.id == jid, TapJob.phase == "EXECUTING")
                      .values(**values))

    def abort(self, jid: str) -> None:
        """ABORT a job that has not finished."""
        with session(self.engine) as s:
            s.execute(update(TapJob).where(TapJob.id == jid, TapJob.phase.in_(ACTIVE))
                      .values(phase="ABORTED", ended=dt.datetime.now(dt.UTC)))

    def update_params(self, jid: str, params: dict[str, list[str]]) -> bool:
        """Merge parameters into a PENDING job; False if it is not PENDING any more."""
        with session(self.engine) as s:
            row = s.scalar(select(TapJob).where(TapJob.id == jid))
            if row is None or row.phase != "PENDING":
                return False
            row.params = job_params({**(row.params or {}), **params})
            return True

    def set_execution_duration(self, jid: str, seconds: int) -> None:
        """Record the EXECUTIONDURATION a client asked for."""
        with session(self.engine) as s:
            s.execute(update(TapJob).where(TapJob.id == jid)
                      .values(execution_duration=seconds))

    def result(self, jid: str, owner: str | None) -> tuple[bytes, str] | None:
        """The result document and its media type of a COMPLETED job of ``owner``."""
        with session(self.engine) as s:
            row = s.execute(select(TapJob.result, TapJob.media).where(
                TapJob.id == jid, self._mine(owner), TapJob.phase == "COMPLETED")).first()
        if row is None or row[0] is None:
            return None
        return bytes(row[0]), row[1] or "application/octet-stream"
