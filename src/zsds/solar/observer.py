"""Heliocentric positions and velocities of an observatory (Palomar, MPC code I41).

Everything uses astropy's ``builtin`` ephemeris (ERFA ``epv00``), so no kernel is downloaded;
its heliocentric Earth error is below ~10 km over the ZTF era. Vectors are returned in
equatorial, ICRS-aligned axes (GCRS and BCRS share these axes), positions in au and velocities
in au/day.
"""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from astropy.coordinates import EarthLocation, get_body_barycentric_posvel
from astropy.time import Time
from astropy.utils import iers
from numpy.typing import ArrayLike, NDArray

from zsds.solar.orbits import AU_KM

__all__ = ["OBSCODES", "PALOMAR", "observer_heliocentric", "observer_heliocentric_posvel"]

#: Equatorial Earth radius used by the MPC parallax constants, km.
_R_EARTH_KM = 6378.137

#: MPC observatory codes supported: (east longitude deg, rho cos phi', rho sin phi' [Earth radii]).
OBSCODES: dict[str, tuple[float, float, float]] = {
    "I41": (243.14022, 0.836322, 0.546875),  # Palomar Mountain, ZTF
    "500": (0.0, 0.0, 0.0),  # geocentre
}


def _location(obscode: str) -> EarthLocation:
    lon, rcos, rsin = OBSCODES[obscode]
    lam = np.deg2rad(lon)
    return EarthLocation.from_geocentric(
        rcos * _R_EARTH_KM * np.cos(lam),
        rcos * _R_EARTH_KM * np.sin(lam),
        rsin * _R_EARTH_KM,
        unit=u.km,
    )


#: Palomar (I41) built from the MPC parallax constants (geodetic latitude ~33.356 deg N).
PALOMAR: EarthLocation = _location("I41")


def observer_heliocentric_posvel(
    mjd_utc: ArrayLike, obscode: str = "I41"
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Heliocentric position and velocity of an observatory.

    Parameters
    ----------
    mjd_utc : array_like
        Observation times, MJD (UTC); scalar or (N,).
    obscode : str, optional
        MPC observatory code; ``"I41"`` (Palomar) or ``"500"`` (geocentre).

    Returns
    -------
    pos, vel : ndarray, shape (N, 3)
        Position (au) and velocity (au/day), equatorial ICRS-aligned axes.
    """
    if obscode not in OBSCODES:
        raise ValueError(f"unsupported observatory code {obscode!r}; known: {sorted(OBSCODES)}")
    mjd = np.atleast_1d(np.asarray(mjd_utc, dtype=float))
    # Evaluate astropy once per distinct epoch: exposure lists repeat times many times.
    uniq, inverse = np.unique(mjd, return_inverse=True)
    t = Time(uniq, format="mjd", scale="utc")
    e_pos, e_vel = get_body_barycentric_posvel("earth", t, ephemeris="builtin")
    s_pos, s_vel = get_body_barycentric_posvel("sun", t, ephemeris="builtin")
    pos = (e_pos - s_pos).xyz.to_value(u.au).T
    vel = (e_vel - s_vel).xyz.to_value(u.au / u.day).T
    if obscode != "500":
        # Never download IERS tables: the bundled ones suffice, and beyond their end astropy
        # extrapolates UT1-UTC (a 1 s error moves the site by < 0.5 km).
        with (
            iers.conf.set_temp("auto_download", False),
            iers.conf.set_temp("auto_max_age", None),
            iers.conf.set_temp("iers_degraded_accuracy", "ignore"),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            g_pos, g_vel = _location(obscode).get_gcrs_posvel(t)
        pos = pos + g_pos.xyz.to_value(u.km).T / AU_KM
        vel = vel + g_vel.xyz.to_value(u.km / u.s).T * 86_400.0 / AU_KM
    return pos[inverse], vel[inverse]


def observer_heliocentric(mjd_utc: ArrayLike, obscode: str = "I41") -> NDArray[np.float64]:
    """Heliocentric position of an observatory, (N, 3) au, equatorial ICRS-aligned axes.

    See :func:`observer_heliocentric_posvel`.
    """
    return observer_heliocentric_posvel(mjd_utc, obscode)[0]
