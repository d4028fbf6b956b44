"""A deterministic, simulated asteroid population inside a sky cone seen from Palomar.

Recipe (:func:`simulate_population`)
------------------------------------
1. The expected number of objects with ``V < 21.5`` is ``DENSITY_V215 * density_scale`` per deg^2
   for ecliptic latitude ``|beta| < 5 deg``, falling as ``exp(-(|beta| - 5) / 8 deg)`` beyond.
   Sky positions are drawn uniformly in the cone (Poisson count) and thinned by that profile.
2. Apparent magnitudes follow the cumulative power law ``N(<V) ~ 10**(0.3 V)`` on
   ``[V_MIN, V_MAX] = [14, 22.5]``. With a power-law H distribution independent of the geometry
   the apparent-magnitude distribution has the same slope, so drawing V and deriving
   ``H = V - 5 log10(r delta) + phase term`` (H-G law, G = 0.15) is equivalent to drawing H.
3. Each object gets an orbit class: main belt (95 %: a 2.1-3.3 au, e 0-0.25, i 0-20 deg),
   Hildas (1 %), Jupiter Trojans (1 %) and NEOs (3 %, q < 1.3 au). 30 % of the NEOs are close
   approachers placed 0.003-0.06 au from the observer, most of which move faster than
   5 deg/day and trail in a 30 s exposure.
4. For a class orbit (a, e, i) a heliocentric distance r is drawn from the orbit (uniform mean
   anomaly) and the object is placed where the line of sight reaches distance r. The velocity
   has the vis-viva speed, the flight-path angle fixed by ``h = sqrt(mu a (1 - e^2))`` (random
   in/outbound sign) and lies in the plane through the Sun and the object with inclination i
   (raised to the object's heliocentric latitude where needed). The position is the one at the
   emission time ``t - delta/c``; the state is propagated to the observation epoch, so the
   astrometric ephemeris at ``epoch_mjd`` reproduces the drawn sky position.

Designations
------------
``"S" + 3 base-36 characters`` derived from a hash of the call arguments
``+ 3 base-36 characters`` of the running index (7 characters, fitting MPCORB columns 1-7),
e.g. ``"S4K0000"``. They are unique within a call (at most 46,656 objects) and deterministic.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.typing import NDArray

from zsds.solar.ephemeris import hg_magnitude, utc_to_tdb
from zsds.solar.observer import observer_heliocentric
from zsds.solar.orbits import (
    C_AU_PER_DAY,
    GM_SUN,
    Orbits,
    _solve_kepler_elliptic,
    ecliptic_to_equatorial,
    equatorial_to_ecliptic,
    propagate,
    state_to_elements,
)

__all__ = [
    "BETA_CORE_DEG",
    "BETA_SCALE_DEG",
    "CLASS_FRACTIONS",
    "DENSITY_V215",
    "V_MAX",
    "V_MIN",
    "V_SLOPE",
    "simulate_population",
]

#: Objects brighter than V = 21.5 per deg^2 near the ecliptic.
DENSITY_V215 = 40.0
#: Half-width of the flat core of the ecliptic-latitude profile, deg.
BETA_CORE_DEG = 5.0
#: e-folding scale of the density away from the core, deg.
BETA_SCALE_DEG = 8.0
#: Apparent-magnitude range drawn, and the cumulative slope d log10 N / dV.
V_MIN, V_MAX, V_SLOPE = 14.0, 22.5, 0.3
#: Fractions of the apparent sample in each orbit class.
CLASS_FRACTIONS = {"mba": 0.95, "hilda": 0.01, "trojan": 0.01, "neo": 0.03}
#: Share of NEOs that are close approachers (fast movers).
NEO_CLOSE_FRACTION = 0.3
_G_DEFAULT = 0.15
_RNG_TAG = 0x5017A2  # "solar population"
_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _base36(values: NDArray[np.int64], width: int) -> NDArray[np.str_]:
    digits = np.stack([(values // 36**k) % 36 for k in range(width - 1, -1, -1)], axis=-1)
    table = np.array(list(_B36))
    chars = table[digits]
    return np.array(["".join(row) for row in chars]) if chars.size else np.array([], dtype=str)


def _cone_positions(
    rng: np.random.Generator, ra0: float, dec0: float, radius: float, n: int
) -> tuple[NDArray, NDArray]:
    """Uniform positions (deg) within ``radius`` deg of (ra0, dec0)."""
    cos_s = rng.uniform(np.cos(np.deg2rad(radius)), 1.0, n)
    s = np.arccos(cos_s)
    pa = rng.uniform(0.0, 2 * np.pi, n)
    d0, a0 = np.deg2rad(dec0), np.deg2rad(ra0)
    sin_dec = np.sin(d0) * cos_s + np.cos(d0) * np.sin(s) * np.cos(pa)
    dec = np.arcsin(np.clip(sin_dec, -1.0, 1.0))
    ra = a0 + np.arctan2(np.sin(pa) * np.sin(s) * np.cos(d0), cos_s - np.sin(d0) * sin_dec)
    return np.remainder(np.rad2deg(ra), 360.0), np.rad2deg(dec)


def _unit(ra_deg: NDArray, dec_deg: NDArray) -> NDArray:
    ra, dec = np.deg2rad(ra_deg), np.deg2rad(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _class_elements(rng: np.random.Generator, cls: NDArray) -> tuple[NDArray, NDArray, NDArray]:
    """Draw (a, e, inc[deg]) for each object from its class ranges."""
    n = cls.size
    u1, u2, u3 = rng.random(n), rng.random(n), rng.random(n)
    # (a_lo, a_hi, e_lo, e_hi, i_hi) per class; NEO e is set below from q.
    table = np.array(
        [
            [2.1, 3.3, 0.0, 0.25, 20.0],  # 0 main belt
            [3.7, 4.2, 0.05, 0.30, 20.0],  # 1 Hilda
            [5.05, 5.35, 0.0, 0.15, 35.0],  # 2 Trojan
            [0.8, 3.0, 0.0, 0.0, 40.0],  # 3 NEO
            [0.8, 3.0, 0.0, 0.0, 40.0],  # 4 close NEO (e set by the caller)
        ]
    )[cls]
    a = table[:, 0] + u1 * (table[:, 1] - table[:, 0])
    e = table[:, 2] + u2 * (table[:, 3] - table[:, 2])
    inc = u3 * table[:, 4]
    neo = cls == 3
    q = 0.3 + rng.random(n) * (np.minimum(1.3, a) - 0.3)
    e = np.where(neo, 1.0 - q / a, e)
    return a, e, inc


def _ray_distance(obs: NDArray, u: NDArray, r: NDArray, pick: NDArray) -> NDArray:
    """Distance along unit vectors ``u`` from ``obs`` at which |obs + d u| = r (NaN if none).

    ``pick`` (bool) chooses the nearer of two positive roots where both exist.
    """
    b = np.einsum("ij,ij->i", obs, u)
    c = np.einsum("ij,ij->i", obs, obs) - r * r
    disc = b * b - c
    with np.errstate(invalid="ignore"):
        sq = np.sqrt(disc)
    far, near = -b + sq, -b - sq
    d = np.where(pick & (near > 0), near, far)
    return np.where((disc >= 0) & (d > 0), d, np.nan)


def _velocity(
    rng: np.random.Generator, r_vec: NDArray, a: NDArray, e: NDArray, inc_deg: NDArray
) -> tuple[NDArray, NDArray]:
    """Heliocentric velocity (equatorial) for a body at ``r_vec`` on an orbit with (a, e, i).

    Returns the velocity and the inclination actually used (deg).
    """
    n = a.size
    r_ecl = equatorial_to_ecliptic(r_vec)
    rn = np.linalg.norm(r_ecl, axis=1)
    rhat = r_ecl / rn[:, None]
    speed = np.sqrt(GM_SUN * (2.0 / rn - 1.0 / a))
    h = np.sqrt(GM_SUN * a * (1.0 - e * e))
    cos_gamma = np.clip(h / (rn * speed), -1.0, 1.0)
    sin_gamma = np.sqrt(1.0 - cos_gamma**2) * rng.choice([-1.0, 1.0], n)
    # Orbit normal: rotate about rhat so that n . z = cos(i); i >= |heliocentric latitude|.
    z = np.array([0.0, 0.0, 1.0])
    z_perp = z - rhat[:, 2:3] * rhat
    zp = np.linalg.norm(z_perp, axis=1)
    e1 = z_perp / zp[:, None]
    e2 = np.cross(rhat, e1)
    inc = np.maximum(inc_deg, np.rad2deg(np.arcsin(np.abs(rhat[:, 2]))))
    cos_psi = np.clip(np.cos(np.deg2rad(inc)) / zp, -1.0, 1.0)
    psi = np.arccos(cos_psi) * rng.choice([-1.0, 1.0], n)
    normal = np.cos(psi)[:, None] * e1 + np.sin(psi)[:, None] * e2
    that = np.cross(normal, rhat)  # prograde transverse direction
    v_ecl = speed[:, None] * (sin_gamma[:, None] * rhat + cos_gamma[:, None] * that)
    return ecliptic_to_equatorial(v_ecl), inc


def _designations(tag_source: str, n: int, prefix: str | None) -> NDArray[np.str_]:
    if prefix is None:
        if n > 36**3:
            raise ValueError(f"{n} objects exceed the 46,656 automatic designations; pass prefix")
        digest = int.from_bytes(hashlib.blake2b(tag_source.encode(), digest_size=8).digest())
        head = "S" + _base36(np.array([digest % 36**3]), 3)[0]
        return np.char.add(head, _base36(np.arange(n), 3))
    width = max(1, len(str(max(n - 1, 0))))
    return np.char.add(prefix, np.char.zfill(np.arange(n).astype(str), width))


def simulate_population(
    center_ra: float,
    center_dec: float,
    epoch_mjd: float,
    radius_deg: float,
    seed: int,
    density_scale: float = 1.0,
    obscode: str = "I41",
    prefix: str | None = None,
) -> Orbits:
    """Simulate asteroids visible within a cone at a given time.

    Parameters
    ----------
    center_ra, center_dec : float
        Cone centre, ICRS degrees.
    epoch_mjd : float
        Time of the snapshot, MJD (UTC). Returned orbits osculate at the same instant in TDB.
    radius_deg : float
        Cone radius, degrees.
    seed : int
        Non-negative seed; the output depends only on the arguments.
    density_scale : float, optional
        Multiplier on the sky density (``DENSITY_V215`` per deg^2 brighter than V = 21.5).
    obscode : str, optional
        Observatory code of the viewpoint.
    prefix : str, optional
        If given, designations are ``prefix`` + zero-padded index instead of the hashed form.

    Returns
    -------
    Orbits
        Objects whose astrometric position at ``epoch_mjd`` lies inside the cone, with ``H``
        set so that their apparent V follows the power law of the module docstring.
    """
    ints = [
        int(seed), _RNG_TAG, round(center_ra * 1e6) % 360_000_000,
        round((center_dec + 90.0) * 1e6), round(epoch_mjd * 1e6), round(radius_deg * 1e6),
    ]  # fmt: skip
    rng = np.random.default_rng(np.random.SeedSequence(ints))

    area = 2.0 * np.pi * (1.0 - np.cos(np.deg2rad(radius_deg))) * np.rad2deg(1.0) ** 2
    lam = DENSITY_V215 * density_scale * area * 10.0 ** (V_SLOPE * (V_MAX - 21.5))
    ra, dec = _cone_positions(rng, center_ra, center_dec, radius_deg, rng.poisson(lam))
    u = _unit(ra, dec)
    beta = np.rad2deg(np.arcsin(np.clip(equatorial_to_ecliptic(u)[:, 2], -1.0, 1.0)))
    profile = np.exp(-np.maximum(np.abs(beta) - BETA_CORE_DEG, 0.0) / BETA_SCALE_DEG)
    keep = rng.random(beta.size) < profile
    u = u[keep]
    n = u.shape[0]

    # Apparent magnitudes by inverse-CDF sampling of N(<V) ~ 10**(V_SLOPE V).
    lo, hi = 10.0 ** (V_SLOPE * V_MIN), 10.0 ** (V_SLOPE * V_MAX)
    V = np.log10(lo + rng.random(n) * (hi - lo)) / V_SLOPE

    names = list(CLASS_FRACTIONS)
    cls = rng.choice(len(names), size=n, p=list(CLASS_FRACTIONS.values()))
    neo_idx = names.index("neo")
    close = (cls == neo_idx) & (rng.random(n) < NEO_CLOSE_FRACTION)
    cls = np.where(close, 4, cls)

    tdb = float(utc_to_tdb(epoch_mjd)[0])
    obs = np.broadcast_to(observer_heliocentric(epoch_mjd, obscode), (n, 3))
    a, e, inc = _class_elements(rng, cls)

    # Heliocentric distance drawn from the orbit; retry (only the failures) where the line of
    # sight never reaches that distance (possible for r < 1 au).
    delta = np.full(n, np.nan)
    todo = ~close
    for _ in range(50):
        idx = np.flatnonzero(todo)
        if idx.size == 0:
            break
        M = rng.uniform(0.0, 2 * np.pi, idx.size)
        E = _solve_kepler_elliptic(M, e[idx])
        r_draw = a[idx] * (1.0 - e[idx] * np.cos(E))
        pick = rng.random(idx.size) < 0.5
        delta[idx] = _ray_distance(obs[idx], u[idx], r_draw, pick)
        todo[idx] = np.isnan(delta[idx])
    close |= todo  # any leftover NEO becomes a close approacher

    # Close approachers: distance from the observer first, then an NEO orbit through that point.
    ci = np.flatnonzero(close)
    delta[ci] = np.exp(rng.uniform(np.log(0.003), np.log(0.06), ci.size))
    r_close = np.linalg.norm(obs[ci] + delta[ci, None] * u[ci], axis=1)
    a[ci] = rng.uniform(0.8, 3.0, ci.size)
    e_lo = np.maximum(np.abs(1.0 - r_close / a[ci]), 1.0 - 1.3 / a[ci])
    e[ci] = e_lo + rng.random(ci.size) * np.maximum(0.95 - e_lo, 0.0)
    inc[ci] = rng.uniform(0.0, 40.0, ci.size)

    pos = obs + delta[:, None] * u  # heliocentric position at emission time
    # Guard tiny round-off so that q <= r <= Q holds exactly for the speed/flight-path angle.
    rn = np.linalg.norm(pos, axis=1)
    e = np.maximum(e, np.abs(1.0 - rn / a) + 1e-12)
    vel, inc = _velocity(rng, pos, a, e, inc)
    light_time = delta / C_AU_PER_DAY
    r_ep, v_ep = propagate(pos, vel, light_time)

    rho = pos - obs
    phase = np.rad2deg(
        np.arccos(np.clip(np.einsum("ij,ij->i", pos, rho) / (rn * delta), -1.0, 1.0))
    )
    # H such that hg_magnitude(H, G, r, delta, phase) == V.
    H = V - (hg_magnitude(0.0, _G_DEFAULT, rn, delta, phase))
    designation = _designations(repr(ints), n, prefix)
    return state_to_elements(
        r_ep, v_ep, tdb, designation=designation, H=H, G=np.full(n, _G_DEFAULT)
    )
