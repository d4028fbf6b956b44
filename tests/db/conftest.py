"""Database fixtures: a fresh SQLite file and a fresh PostgreSQL schema per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from zsds.db import connect

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_engine() -> Iterator[Engine]:
    """A fresh PostgreSQL schema (dropped afterwards) as an engine."""
    try:
        admin = connect(PG_URL, connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # server down, no driver, no database...
        if os.environ.get("ZSDS_REQUIRE_PG"):  # CI: the server must be there
            raise
        pytest.skip(f"PostgreSQL at {PG_URL} unreachable: {str(exc).splitlines()[0]}")
    schema = f"zsds_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = connect(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    """An empty database on each backend."""
    if request.param == "sqlite":
        eng = connect(f"sqlite:///{tmp_path / 'db' / 'zsds.sqlite'}")
        yield eng
        eng.dispose()
    else:
        yield from pg_engine()
