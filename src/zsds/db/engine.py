"""Database connection, versioned schema creation/upgrade and sessions.

The schema is versioned with a one-row ``schema_version`` table and an ordered list of
migration functions (:data:`MIGRATIONS`). A fresh database gets the current schema created
directly and is stamped with the latest version; an older database gets the missing
migrations applied in order. :func:`init_db` is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from zsds.db.schema import (
    AlertDelivery,
    AlertRecord,
    ApiToken,
    ArchiveImage,
    AstroObject,
    Base,
    Candidate,
    ConfigRecord,
    DiffImageRecord,
    ForcedPhotRequest,
    LightCurveObject,
    LoginFailure,
    LoginLockout,
    MatchfileRecord,
    NightSummaryRecord,
    ObjectCounter,
    Reference,
    SchemaVersion,
    SSTrack,
    SSTrackMember,
    StreakRecord,
    TapJob,
    User,
)

#: Tables added after version 1, by the migration that adds them.
_V2_TABLES = (Reference,)
_V3_TABLES = (DiffImageRecord, Candidate, AstroObject, ObjectCounter, AlertRecord)
_V4_TABLES = (NightSummaryRecord,)
_V5_TABLES = (LightCurveObject, MatchfileRecord)
_V6_TABLES = (StreakRecord, SSTrack, SSTrackMember)
_V7_TABLES = (ArchiveImage, User, ApiToken, ForcedPhotRequest)
_V10_TABLES = (TapJob,)
_V11_TABLES = (AlertDelivery,)
_V12_TABLES = (ConfigRecord,)
_V13_TABLES = (LoginFailure, LoginLockout)


def _v1(conn: Connection) -> None:
    """Version 1: the initial schema (every table but those added by later versions)."""
    later = {t.__tablename__ for t in (*_V2_TABLES, *_V3_TABLES, *_V4_TABLES, *_V5_TABLES,
                                       *_V6_TABLES, *_V7_TABLES, *_V10_TABLES,
                                       *_V11_TABLES, *_V12_TABLES, *_V13_TABLES)}
    Base.metadata.create_all(conn, tables=[t for t in Base.metadata.sorted_tables
                                           if t.name not in later])


def _v2(conn: Connection) -> None:
    """Version 2: the ``references`` table (reference images, issue 4)."""
    Reference.__table__.create(conn, checkfirst=True)


def _v3(conn: Connection) -> None:
    """Version 3: difference images, candidates, objects, alerts (issue 5)."""
    for t in _V3_TABLES:
        t.__table__.create(conn, checkfirst=True)


def _v4(conn: Connection) -> None:
    """Version 4: ``night_summaries`` (the executive, issue 6)."""
    NightSummaryRecord.__table__.create(conn, checkfirst=True)


def _v5(conn: Connection) -> None:
    """Version 5: ``lc_objects`` and ``matchfiles`` (light curves, pipeline 8)."""
    for t in _V5_TABLES:
        t.__table__.create(conn, checkfirst=True)


def _v6(conn: Connection) -> None:
    """Version 6: streaks, moving-object tracks and ``candidates.ssnamenr`` (pipeline 9)."""
    cols = {c["name"] for c in inspect(conn).get_columns("candidates")}
    if "ssnamenr" not in cols:
        conn.execute(text("ALTER TABLE candidates ADD COLUMN ssnamenr VARCHAR(32)"))
        conn.execute(text("CREATE INDEX IF NOT EXISTS ix_candidates_ssnamenr "
                          "ON candidates (ssnamenr)"))
    for t in _V6_TABLES:
        t.__table__.create(conn, checkfirst=True)


def _v7(conn: Connection) -> None:
    """Version 7: the archive's image index, users and tokens (issue 9)."""
    for t in _V7_TABLES:
        t.__table__.create(conn, checkfirst=True)


def _v8(conn: Connection) -> None:
    """Version 8: ``archive_images.moonillf``, ``telra`` and ``teldec``; the pointing of rows
    indexed before is filled from ``exposures`` (the Moon's illumination is in the headers
    only: rows indexed before stay null there)."""
    cols = {c["name"] for c in inspect(conn).get_columns("archive_images")}
    for name in ("moonillf", "telra", "teldec"):
        if name not in cols:
            conn.execute(text(f"ALTER TABLE archive_images ADD COLUMN {name} FLOAT"))
    for name, src in (("telra", "ra"), ("teldec", "dec")):
        conn.execute(text(
            f"UPDATE archive_images SET {name} = (SELECT e.{src} FROM exposures e "
            f"WHERE e.expid = archive_images.expid) "
            f"WHERE {name} IS NULL AND tbl IN ('sci', 'raw') AND expid IS NOT NULL"))


def _v9(conn: Connection) -> None:
    """Version 9: ``jobs.pid``, the process of a running job (to tell a stale one)."""
    if "pid" not in {c["name"] for c in inspect(conn).get_columns("jobs")}:
        conn.execute(text("ALTER TABLE jobs ADD COLUMN pid INTEGER"))


def _v10(conn: Connection) -> None:
    """Version 10: ``tap_jobs``, the archive's async TAP jobs (kept across restarts, issue 19)."""
    for t in _V10_TABLES:
        t.__table__.create(conn, checkfirst=True)


def _v11(conn: Connection) -> None:
    """Version 11: ``alert_deliveries``, packets delivered per Kafka cluster (issue 20)."""
    for t in _V11_TABLES:
        t.__table__.create(conn, checkfirst=True)


def _v12(conn: Connection) -> None:
    """Version 12: ``configs``, the pipeline configuration of each ``CFGHASH`` (issue 21)."""
    for t in _V12_TABLES:
        t.__table__.create(conn, checkfirst=True)


def _v13(conn: Connection) -> None:
    """Version 13: ``login_failures`` and ``login_lockouts``, the login throttle shared by
    the worker processes of ``zsds serve`` (issue 19)."""
    for t in _V13_TABLES:
        t.__table__.create(conn, checkfirst=True)


#: Ordered migrations; entry ``i`` brings the schema from version ``i`` to ``i + 1``.
#: Append new ones (never edit old ones) and keep :mod:`zsds.db.schema` at the latest version.
MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9,
                                                  _v10, _v11, _v12, _v13]
SCHEMA_VERSION = len(MIGRATIONS)


def connect(url: str, **engine_kwargs: Any) -> Engine:
    """Engine for a SQLAlchemy URL.

    Parameters
    ----------
    url : str
        ``sqlite:///path`` (WAL journal, foreign keys enforced, parent folder created) or
        ``postgresql://...`` (driven by psycopg 3; ``postgresql+psycopg://`` also accepted).
    **engine_kwargs
        Passed to :func:`sqlalchemy.create_engine` (e.g. ``connect_args``).

    Returns
    -------
    Engine
    """
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs.setdefault("connect_args", {}).setdefault("timeout", 30)
        # As many pooled connections as a server has request threads (anyio's 40): overflow
        # connections are opened and closed per request, which cost more than the query.
        engine_kwargs.setdefault("pool_size", 40)
        engine = create_engine(u, **engine_kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL is a property of the file: set once. Asking for it on every new connection
            # takes a lock that waits (SQLite's busy handler sleeps) while other connections
            # read, which made a busy server's new connections crawl.
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    engine_kwargs.setdefault("pool_pre_ping", True)
    return create_engine(u, **engine_kwargs)


def schema_version(engine: Engine) -> int:
    """Schema version stored in the database (0 for an empty database)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(SchemaVersion.__tablename__):
            return 0
        v = conn.execute(select(SchemaVersion.version)).scalar()
        return int(v or 0)


def init_db(engine: Engine) -> int:
    """Create or upgrade the schema to :data:`SCHEMA_VERSION` (idempotent).

    Returns
    -------
    int
        The schema version after the call.

    Raises
    ------
    RuntimeError
        If the database holds a newer schema than this code knows.
    """
    for attempt in range(3):
        try:
            return _init_db_once(engine)
        except DBAPIError:
            # Another process created or upgraded the schema between our check and our DDL
            # (workers starting together on a new database): look again.
            if attempt == 2:
                raise
    return SCHEMA_VERSION  # not reached


def _init_db_once(engine: Engine) -> int:
    with engine.begin() as conn:
        insp = inspect(conn)
        current = 0
        if insp.has_table(SchemaVersion.__tablename__):
            current = int(conn.execute(select(SchemaVersion.version)).scalar() or 0)
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"database schema version {current} is newer than this zsds "
                f"({SCHEMA_VERSION}); upgrade zsds"
            )
        if current == SCHEMA_VERSION:
            return current
        if current == 0:
            Base.metadata.create_all(conn)  # fresh database: current schema directly
        else:
            for migrate in MIGRATIONS[current:]:
                migrate(conn)
        table = SchemaVersion.__table__
        conn.execute(table.delete())
        conn.execute(table.insert().values(version=SCHEMA_VERSION))
    return SCHEMA_VERSION


@contextmanager
def session(engine: Engine) -> Iterator[Session]:
    """Session that commits on success and rolls back on error.

    Examples
    --------
    >>> with session(engine) as s:  # doctest: +SKIP
    ...     s.add(obj)
    """
    with Session(engine, expire_on_commit=False) as s:
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise


def copy_database(src: Engine, dst: Engine, chunk_rows: int = 20_000) -> dict[str, int]:
    """Copy every zsds table from one database to another (e.g. an embedded SQLite home onto
    PostgreSQL). Both are brought to the current schema first; ``dst`` must hold no rows of
    these tables. On PostgreSQL the serial sequences are moved past the copied keys.

    Returns
    -------
    dict
        Rows copied per table.
    """
    init_db(src)
    init_db(dst)
    counts: dict[str, int] = {}
    tables = [t for t in Base.metadata.sorted_tables if t.name != SchemaVersion.__tablename__]
    with src.connect() as sconn, dst.begin() as dconn:
        for table in tables:
            n = 0
            result = sconn.execution_options(yield_per=chunk_rows).execute(select(table))
            for part in result.mappings().partitions(chunk_rows):
                dconn.execute(table.insert(), [dict(r) for r in part])
                n += len(part)
            counts[table.name] = n
            if dst.dialect.name == "postgresql" and n:
                for col in table.primary_key.columns:
                    if col.autoincrement is True or (
                            col.autoincrement == "auto" and len(table.primary_key.columns) == 1
                            and col.type.python_type is int):
                        seq = dconn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                            {"t": table.name, "c": col.name}).scalar()
                        if seq:
                            dconn.execute(text(f"SELECT setval('{seq}', "
                                               f"(SELECT max({col.name}) FROM {table.name}))"))
    return counts
