"""Ingest fixtures: simulated raw files (built once) and the database fixture of tests/db."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.db.conftest import engine  # noqa: F401  (same SQLite/PostgreSQL fixture)
from zsds.core.home import Home
from zsds.sim.camera import SimConfig
from zsds.sim.run import simulate_calib, simulate_night

NIGHT = "2026-11-20"


@pytest.fixture(scope="session")
def raw_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ``incoming/`` folder with 1 bias, 1 dome flat and 1 science file (CCD 1, 256 px)."""
    home = Home(tmp_path_factory.mktemp("simhome")).ensure()
    simulate_calib(home, NIGHT, quad_size=256, ccds=[1], n_bias=1, n_flat=1, filters=("g",))
    simulate_night(home, NIGHT, 1, ccds=[1], config=SimConfig(quad_size=256, asteroids=False))
    return home.incoming


@pytest.fixture
def home(tmp_path: Path, raw_template: Path) -> Home:
    """A fresh home whose ``incoming/`` holds copies of the simulated files."""
    h = Home(tmp_path / "home").ensure()
    for f in raw_template.iterdir():
        shutil.copy2(f, h.incoming / f.name)
    return h
