"""Helpers of the alert tests: where the real packets are, and the broker-test marker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import TEST_DATA

#: Broker tests fail -- they are not skipped -- when the Tansu binary is missing, unless
#: ``ZSDS_NO_KAFKA=1`` is set.
needs_kafka = pytest.mark.skipif(
    os.environ.get("ZSDS_NO_KAFKA") == "1", reason="ZSDS_NO_KAFKA=1: broker tests disabled"
)


def real_alert_files() -> list[Path]:
    """Every real alert packet copied under ``tests/data``."""
    return sorted(TEST_DATA.rglob("*.avro"))
