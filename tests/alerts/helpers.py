"""Where the real alert packets are, for collection-time parametrization and fixtures."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import TEST_DATA


def real_alert_files() -> list[Path]:
    """Every real alert packet copied under ``tests/data``."""
    return sorted(TEST_DATA.rglob("*.avro"))
