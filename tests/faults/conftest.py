"""Fault fixtures: a night's raw files (5 biases, 3 dome flats, 1 science exposure of one
256 px CCD, built once) copied into a fresh home per test; the SQLite/PostgreSQL engine of
tests/db; a survey with references (the archive tests' home, built once per test run) with a
new night of one exposure in ``incoming/``, for the faults that need alerts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.archive.conftest import archive_base  # noqa: F401  (the shared, built-once home)
from tests.db.conftest import engine  # noqa: F401  (same SQLite/PostgreSQL fixture)
from zsds.core.home import Home
from zsds.reliability.scenarios import FAULT_NIGHT, add_night, copy_home
from zsds.sim.camera import SimConfig
from zsds.sim.run import simulate_calib, simulate_night

NIGHT = "2026-11-20"


@pytest.fixture(scope="session")
def night_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = Home(tmp_path_factory.mktemp("faulthome")).ensure()
    simulate_calib(home, NIGHT, quad_size=256, ccds=[1], n_bias=5, n_flat=3, filters=("r",))
    simulate_night(home, NIGHT, 1, ccds=[1], filters=("r",),
                   config=SimConfig(quad_size=256, asteroids=False))
    return home.root


@pytest.fixture
def home(tmp_path: Path, night_template: Path) -> Home:
    """A copy of the template home: its raw files in ``incoming/``, its sky catalogues."""
    shutil.copytree(night_template, tmp_path / "home")
    return Home(tmp_path / "home").ensure()


@pytest.fixture
def survey_home(tmp_path: Path, archive_base: Path) -> Home:  # noqa: F811
    """A copy of the archive tests' two-night home (references built, products hard-linked)
    with the raw files of a third night (:data:`FAULT_NIGHT`, one exposure) in
    ``incoming/``."""
    home = copy_home(archive_base, tmp_path / "survey")
    add_night(home, FAULT_NIGHT, exposures=1, seed=3)
    return home
