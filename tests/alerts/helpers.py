"""Where the shared real data are, for collection-time parametrization and fixtures."""

from __future__ import annotations

import os
from pathlib import Path


def shared_root() -> Path:
    """``$ZSDS_SHARED`` or the folder ``shared`` beside the repository root."""
    env = os.environ.get("ZSDS_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared"


def real_alert_files() -> list[Path]:
    """Every real alert packet in the shared data (empty if the data are absent)."""
    return sorted((shared_root() / "data").rglob("*.avro"))
