from __future__ import annotations

import pytest

from zsds.core.home import Home
from zsds.sim.camera import SimConfig
from zsds.sim.run import simulate_calib, simulate_night

NIGHT = "2026-11-20"
FIELD = 645  # |b| = 27 deg
CCD = 6
SIZE = 512


@pytest.fixture(scope="session")
def sim_home(tmp_path_factory) -> Home:
    """A home with afternoon calibrations and two science exposures of one CCD (512 px)."""
    home = Home.resolve(tmp_path_factory.mktemp("simhome"))
    simulate_calib(home, NIGHT, SIZE, [CCD], seed=5, n_bias=5, n_flat=2, filters=("r",))
    simulate_night(home, NIGHT, 2, [FIELD], SIZE, [CCD], seed=5)
    return home


@pytest.fixture(scope="session")
def blank_home(tmp_path_factory) -> Home:
    """Sky only: no sources, no cosmic rays (for the noise-model test)."""
    home = Home.resolve(tmp_path_factory.mktemp("blankhome"))
    cfg = SimConfig(
        quad_size=SIZE,
        seed=9,
        stars=False,
        galaxies=False,
        transients=False,
        flares=False,
        asteroids=False,
        satellites=False,
        cosmic_rays=False,
    )
    simulate_night(home, NIGHT, 1, [FIELD], ccds=[CCD], config=cfg)
    return home
