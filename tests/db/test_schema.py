"""Schema creation, versioning and constraints on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from zsds.db import (
    SCHEMA_VERSION,
    CalibProduct,
    Exposure,
    Job,
    QAMetric,
    QuadrantProduct,
    RawFile,
    init_db,
    schema_version,
    session,
)
from zsds.db.schema import TABLES

NIGHT = dt.date(2026, 11, 20)


def _exposure(expid: int = 361008958) -> Exposure:
    return Exposure(
        expid=expid, mjd=61364.0896, field=644, fid=2, imgtype="object", programid=1,
        exptime=30.0, airmass=1.01, ra=330.86, dec=26.15, filefracday="20261120089583",
        night=NIGHT, nid=3610,
    )  # fmt: skip


def test_init_db_creates_all_tables_idempotently(engine):
    assert schema_version(engine) == 0
    assert init_db(engine) == SCHEMA_VERSION
    assert init_db(engine) == SCHEMA_VERSION
    names = set(inspect(engine).get_table_names())
    assert set(TABLES) <= names
    for t in ("exposures", "raw_files", "quadrant_products", "calib_products", "qa_metrics",
              "jobs", "quarantine", "schema_version"):  # fmt: skip
        assert t in names
    with engine.connect() as conn:
        assert conn.execute(text("select count(*) from schema_version")).scalar() == 1


def test_newer_schema_is_refused(engine):
    init_db(engine)
    with engine.begin() as conn:
        conn.execute(text("update schema_version set version = 999"))
    with pytest.raises(RuntimeError, match="newer"):
        init_db(engine)


def test_rows_roundtrip_with_json_and_bigints(engine):
    init_db(engine)
    pid = 361008958 * 10_000 + 0 * 100 + 15
    with session(engine) as s:
        s.add(_exposure())
        s.flush()
        s.add(RawFile(expid=361008958, ccdid=1, relpath="raw/a", filename="a", sha256="0" * 64,
                      size=10))  # fmt: skip
        s.add(QuadrantProduct(pid=pid, expid=361008958, ccdid=1, qid=1, rcid=0, field=644, fid=2,
                              kind="sciimg", relpath="products/sci/a", seeing=2.0))  # fmt: skip
        s.add(CalibProduct(kind="bias", filtercode="bi", ccdid=1, qid=1, night=NIGHT,
                           valid_from=61364.0, valid_to=61365.0, relpath="products/cal/b",
                           qa={"nframes": 2, "clip": [3.0, 3.0]}))  # fmt: skip
        s.add(QAMetric(subject_kind="quadrant", subject_id=pid, name="seeing", value=2.0))
        s.add(Job(stage="ingest", key="x", inputs={"files": ["a"]}))
    with session(engine) as s:
        qp = s.scalars(select(QuadrantProduct)).one()
        assert qp.pid == pid and qp.maglim is None and qp.created_at is not None
        assert s.scalars(select(CalibProduct.qa)).one() == {"nframes": 2, "clip": [3.0, 3.0]}
        job = s.scalars(select(Job)).one()
        assert job.state == "pending" and job.attempts == 0 and job.inputs == {"files": ["a"]}
        assert s.scalar(select(func.count()).select_from(RawFile)) == 1


@pytest.mark.parametrize(
    "rows",
    [
        [QAMetric(subject_kind="quadrant", subject_id=1, name="seeing", value=1.0),
         QAMetric(subject_kind="quadrant", subject_id=1, name="seeing", value=2.0)],
        [Job(stage="ingest", key="k"), Job(stage="ingest", key="k")],
    ],
)  # fmt: skip
def test_unique_constraints(engine, rows):
    init_db(engine)
    with pytest.raises(IntegrityError), session(engine) as s:
        s.add_all(rows)


def test_foreign_key_enforced(engine):
    init_db(engine)
    with pytest.raises(IntegrityError), session(engine) as s:
        s.add(RawFile(expid=1, ccdid=1, relpath="raw/x", filename="x", sha256="0", size=1))
        s.flush()


def test_duplicate_quadrant_product_kind_rejected(engine):
    init_db(engine)
    with session(engine) as s:
        s.add(_exposure())
    kw = dict(pid=5, expid=361008958, ccdid=1, qid=1, rcid=0, field=644, fid=2, kind="sciimg")
    with session(engine) as s:
        s.add(QuadrantProduct(relpath="p1", **kw))
    with pytest.raises(IntegrityError), session(engine) as s:
        s.add(QuadrantProduct(relpath="p2", **kw))


def test_v5_database_gains_the_moving_object_and_archive_tables(engine):
    """A version-5 database (candidates without ``ssnamenr``) is upgraded in place."""
    from zsds.db.engine import MIGRATIONS

    with engine.begin() as conn:
        for migrate in MIGRATIONS[:5]:
            migrate(conn)
        conn.execute(text("DROP INDEX ix_candidates_ssnamenr"))
        conn.execute(text("ALTER TABLE candidates DROP COLUMN ssnamenr"))
        conn.execute(text("INSERT INTO schema_version VALUES (5, CURRENT_TIMESTAMP)"))
    assert "ssnamenr" not in {c["name"] for c in inspect(engine).get_columns("candidates")}
    assert init_db(engine) == SCHEMA_VERSION
    insp = inspect(engine)
    assert "ssnamenr" in {c["name"] for c in insp.get_columns("candidates")}
    assert {"streaks", "ss_tracks", "ss_track_members", "archive_images", "users",
            "api_tokens", "forcedphot_requests"} <= set(insp.get_table_names())
    assert init_db(engine) == SCHEMA_VERSION


def test_v7_archive_index_gains_pointing_and_moon(engine):
    """v8 adds ``archive_images.moonillf/telra/teldec`` and fills the pointing of rows
    indexed before from ``exposures``."""
    from zsds.db.engine import MIGRATIONS

    with engine.begin() as conn:
        for migrate in MIGRATIONS[:7]:
            migrate(conn)
        for col in ("moonillf", "telra", "teldec"):
            conn.execute(text(f"ALTER TABLE archive_images DROP COLUMN {col}"))
        conn.execute(text("INSERT INTO schema_version VALUES (7, CURRENT_TIMESTAMP)"))
    with session(engine) as s:
        s.add(_exposure())
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO archive_images (tbl, relpath, ccdid, expid, infobits, "
                          "restricted, indexed_at) VALUES ('raw', 'r1', 1, 361008958, 0, "
                          "false, CURRENT_TIMESTAMP), ('ref', 'f1', 1, NULL, 0, false, "
                          "CURRENT_TIMESTAMP)"))
    assert init_db(engine) == SCHEMA_VERSION
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT relpath, telra, teldec, moonillf FROM archive_images "
                                 "ORDER BY relpath")).all()
    ex = _exposure()
    assert rows == [("f1", None, None, None), ("r1", ex.ra, ex.dec, None)]


def test_v8_jobs_gain_the_process_id(engine):
    """v9 adds ``jobs.pid``; the jobs recorded before keep their rows."""
    from zsds.db.engine import MIGRATIONS

    with engine.begin() as conn:
        for migrate in MIGRATIONS[:8]:
            migrate(conn)
        conn.execute(text("ALTER TABLE jobs DROP COLUMN pid"))
        conn.execute(text("INSERT INTO schema_version VALUES (8, CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO jobs (stage, key, state, attempts) "
                          "VALUES ('calibrate', '1', 'done', 1)"))
    assert init_db(engine) == SCHEMA_VERSION
    with engine.connect() as conn:
        assert conn.execute(text("SELECT stage, state, pid FROM jobs")).all() == [
            ("calibrate", "done", None)]


def test_v9_gains_the_tap_jobs(engine):
    """v10 adds ``tap_jobs`` (the archive's async TAP jobs, kept across restarts); the rows
    of a v9 database are kept."""
    from zsds.db.engine import MIGRATIONS
    from zsds.db.schema import TapJob

    with engine.begin() as conn:
        for migrate in MIGRATIONS[:9]:
            migrate(conn)
        assert "tap_jobs" not in inspect(conn).get_table_names()
        conn.execute(text("INSERT INTO schema_version VALUES (9, CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO jobs (stage, key, state, attempts) "
                          "VALUES ('calibrate', '1', 'done', 1)"))
    assert init_db(engine) == SCHEMA_VERSION
    now = dt.datetime.now(dt.UTC)
    with session(engine) as s:
        s.add(TapJob(id="a" * 32, owner="alice", phase="COMPLETED", params={"QUERY": ["q"]},
                     created=now, destruction=now + dt.timedelta(days=1), result=b"\x00rows",
                     media="text/csv"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 1
    with session(engine) as s:
        job = s.scalar(select(TapJob))
        assert (job.owner, job.params, job.result) == ("alice", {"QUERY": ["q"]}, b"\x00rows")


def test_v10_gains_the_alert_deliveries(engine):
    """v11 adds ``alert_deliveries`` (packets delivered per Kafka cluster, issue 20); the
    ``alerts`` rows of a v10 database are kept."""
    from zsds.db.engine import MIGRATIONS
    from zsds.db.schema import AlertDelivery

    with engine.begin() as conn:
        for migrate in MIGRATIONS[:10]:
            migrate(conn)
        assert "alert_deliveries" not in inspect(conn).get_table_names()
        conn.execute(text("INSERT INTO schema_version VALUES (10, CURRENT_TIMESTAMP)"))
    assert init_db(engine) == SCHEMA_VERSION
    with session(engine) as s:
        s.add(AlertDelivery(candid=1, cluster_id="c", topic="ztf_20261120_programid1",
                            sha256="0" * 64, bootstrap="127.0.0.1:9092"))
    with session(engine) as s:
        assert s.scalar(select(AlertDelivery.cluster_id)) == "c"


def test_v11_gains_the_configs(engine):
    """v12 adds ``configs`` (the pipeline configuration of each ``CFGHASH``, issue 21); the
    ``alert_deliveries`` rows of a v11 database are kept."""
    from zsds.db.engine import MIGRATIONS
    from zsds.db.schema import AlertDelivery, ConfigRecord

    with engine.begin() as conn:
        for migrate in MIGRATIONS[:11]:
            migrate(conn)
        assert "configs" not in inspect(conn).get_table_names()
        conn.execute(text("INSERT INTO schema_version VALUES (11, CURRENT_TIMESTAMP)"))
    with session(engine) as s:
        s.add(AlertDelivery(candid=1, cluster_id="c", topic="t", sha256="0" * 64,
                            bootstrap="127.0.0.1:9092"))
    assert init_db(engine) == SCHEMA_VERSION
    with session(engine) as s:
        s.add(ConfigRecord(hash="0123456789abcdef", json="{}"))
    with session(engine) as s:
        assert s.scalar(select(ConfigRecord.json)) == "{}"
        assert s.scalar(select(AlertDelivery.cluster_id)) == "c"


def test_v12_gains_the_login_throttle(engine):
    """v13 adds ``login_failures`` and ``login_lockouts`` (the login throttle shared by the
    worker processes of ``zsds serve``, issue 19); the ``configs`` of a v12 database stay."""
    from zsds.db.engine import MIGRATIONS
    from zsds.db.schema import ConfigRecord, LoginFailure, LoginLockout

    with engine.begin() as conn:
        for migrate in MIGRATIONS[:12]:
            migrate(conn)
        assert "login_failures" not in inspect(conn).get_table_names()
        conn.execute(text("INSERT INTO schema_version VALUES (12, CURRENT_TIMESTAMP)"))
    with session(engine) as s:
        s.add(ConfigRecord(hash="0123456789abcdef", json="{}"))
    assert init_db(engine) == SCHEMA_VERSION == 13
    with session(engine) as s:
        s.add_all([LoginFailure(key="user:x", at=1.0), LoginLockout(key="user:x", until=2.0)])
    with session(engine) as s:
        assert s.scalar(select(ConfigRecord.json)) == "{}"
        assert s.scalar(select(LoginLockout.until)) == 2.0
