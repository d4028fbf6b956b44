"""Fixtures for the alert tests: real ZTF packets (``tests/data``), the packaged schema and a
processed night (``archive_base``)."""

from __future__ import annotations

from pathlib import Path

import pytest

# The archive tests' two-night home, built once per test run and shared between xdist
# workers: its night 2 is the night of packets of test_night.py.
from tests.archive.conftest import archive_base  # noqa: F401
from zsds.alerts.packet import read_alert_file
from zsds.alerts.schema import packaged_schema_dir


@pytest.fixture(scope="session")
def data_dir(test_data: Path) -> Path:
    return test_data


@pytest.fixture(scope="session")
def schema_folder() -> Path:
    return packaged_schema_dir()


@pytest.fixture(scope="session")
def sample_v401(data_dir: Path) -> dict:
    """A real v4.01 packet (with fp_hists and upper limits), decoded."""
    return read_alert_file(data_dir / "alerts/kowalski/20231012/2475433850015010009.avro")[0]


@pytest.fixture(scope="session")
def sample_v33(data_dir: Path) -> dict:
    """A real v3.3 packet, decoded."""
    return read_alert_file(data_dir / "ztf-avro-alert/data/472263571115115000.avro")[0]
