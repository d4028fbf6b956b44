"""Solar-system objects: Keplerian orbits, N-body propagation (ASSIST, optional ``nbody`` extra),
ephemerides from any MPC station (default I41), a simulated asteroid population and
MPCORB-format files. See ``docs/solar.md``."""

from zsds.solar.ephemeris import ephemerides, ephemerides_grid, hg_magnitude, utc_to_tdb
from zsds.solar.mpcorb import read_mpcorb, write_mpcorb
from zsds.solar.nbody import NBodyUnavailable, nbody_available, propagate_states
from zsds.solar.observer import PALOMAR, observer_heliocentric, observer_heliocentric_posvel
from zsds.solar.orbits import (
    C_AU_PER_DAY,
    GM_SUN,
    OBLIQUITY_J2000_DEG,
    Orbits,
    elements_to_state,
    propagate,
    state_to_elements,
)
from zsds.solar.population import simulate_population

__all__ = [
    "C_AU_PER_DAY",
    "GM_SUN",
    "OBLIQUITY_J2000_DEG",
    "PALOMAR",
    "NBodyUnavailable",
    "Orbits",
    "elements_to_state",
    "ephemerides",
    "ephemerides_grid",
    "hg_magnitude",
    "nbody_available",
    "observer_heliocentric",
    "observer_heliocentric_posvel",
    "propagate",
    "propagate_states",
    "read_mpcorb",
    "simulate_population",
    "state_to_elements",
    "utc_to_tdb",
    "write_mpcorb",
]
