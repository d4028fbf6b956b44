"""Fixtures for the alert tests: the real ZTF packets and schema, read in place from ``shared``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.alerts.helpers import shared_root
from zsds.alerts.packet import read_alert_file


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_root() / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not available at {path} (set ZSDS_SHARED)")
    return path


@pytest.fixture(scope="session")
def schema_folder(data_dir: Path) -> Path:
    return data_dir / "ztf-avro-alert" / "schema"


@pytest.fixture(scope="session")
def sample_v401(data_dir: Path) -> dict:
    """A real v4.01 packet (with fp_hists and upper limits), decoded."""
    return read_alert_file(data_dir / "alerts/kowalski/20231012/2475433850015010009.avro")[0]


@pytest.fixture(scope="session")
def sample_v33(data_dir: Path) -> dict:
    """A real v3.3 packet, decoded."""
    return read_alert_file(data_dir / "ztf-avro-alert/data/472263571115115000.avro")[0]
