"""Operations/archive metadata database (SQLite or PostgreSQL)."""

from zsds.db.engine import SCHEMA_VERSION, connect, init_db, schema_version, session
from zsds.db.schema import (
    Base,
    CalibProduct,
    Exposure,
    Job,
    QAMetric,
    QuadrantProduct,
    Quarantine,
    RawFile,
)

__all__ = [
    "SCHEMA_VERSION",
    "Base",
    "CalibProduct",
    "Exposure",
    "Job",
    "QAMetric",
    "QuadrantProduct",
    "Quarantine",
    "RawFile",
    "connect",
    "init_db",
    "schema_version",
    "session",
]
