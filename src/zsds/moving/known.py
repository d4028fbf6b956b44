"""Tagging candidates with known asteroids: ZTF's ``ssnamenr``, ``ssdistnr`` and ``ssmagnr``.

A ZTF alert carries the nearest known solar-system object within 30 arcsec of the candidate:
its name (``ssnamenr``), its distance (``ssdistnr``, arcsec) and its predicted V magnitude
(``ssmagnr``); -999 (and a null name) when there is none.

Method
------
1. :func:`precompute_night` propagates the whole catalogue to the middle of the night once
   (:func:`zsds.solar.nbody.propagate_states`: N-body, ASSIST with DE440 and 16 asteroids,
   for every orbit whose epoch is too far for two-body by the error budget, i.e. any MPCORB
   orbit more than a few days old; two-body within the budget or without the ``nbody``
   extra, with a logged warning), then evaluates approximate topocentric astrometric
   directions from the observatory (default I41) on a coarse time grid (hourly by default).
   Heliocentric positions come from a third-order Taylor series about mid-night (two-body
   propagation for the few objects closer than 0.25 au to the Sun), light time from one
   linearised step; these directions are good to well under an arcsecond and are stored as
   float32 unit vectors. Per object it keeps a
   tolerance (a base margin plus the largest second difference of its grid path, about eight
   times the worst linear-interpolation error) and flags *fast movers* (faster than
   ``KnownConfig.fast_rate_deg_per_day`` somewhere on the grid).
2. For an exposure time, the grid is interpolated linearly and every object within
   ``cone radius + match radius + its tolerance`` of an exposure cone is kept; fast movers are
   always kept.
3. Only those objects get **exact** ephemerides (light-time iterated, topocentric,
   :func:`zsds.solar.ephemerides`) at the mid-exposure time itself. Interpolating the grid is
   never used for the reported positions, since it is too coarse for fast NEOs.
4. Candidates are matched to the predicted positions with a single ``cKDTree`` over unit
   vectors with a fourth coordinate that separates exposure times (one vectorised query for
   all candidates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree

from zsds.solar.ephemeris import EPHEMERIS_COLUMNS, ephemerides, utc_to_tdb
from zsds.solar.nbody import ENGINES, propagate_states
from zsds.solar.observer import observer_heliocentric_posvel
from zsds.solar.orbits import (
    C_AU_PER_DAY,
    GM_SUN,
    Orbits,
    elements_to_state,
    propagate,
    state_to_elements,
)

__all__ = [
    "KNOWN_OBJECT_COLUMNS",
    "TAG_COLUMNS",
    "KnownConfig",
    "NightIndex",
    "evaluate_tagging",
    "objects_in_exposures",
    "precompute_night",
    "synthesize_candidates",
    "tag_candidates",
]

#: Columns of :func:`tag_candidates` output (after the key column).
TAG_COLUMNS = ("ssnamenr", "ssdistnr", "ssmagnr")
#: Columns of :func:`objects_in_exposures` output.
KNOWN_OBJECT_COLUMNS = (
    "expid", "designation", "mjd", "ra", "dec", "V", "ra_rate", "dec_rate", "delta",
)  # fmt: skip

_ARCSEC = np.deg2rad(1.0 / 3600.0)
#: Heliocentric distance (au) below which the grid uses exact propagation instead of Taylor.
_TAYLOR_MIN_R_AU = 0.25


@dataclass(frozen=True)
class KnownConfig:
    """Parameters of known-object tagging.

    A whole ZTF exposure, 7.5 x 7.3 deg with its corners, fits in a ``cone_radius_deg`` of 5.5
    deg. ``prefilter_margin_deg`` covers the grid's approximations (float32, Taylor series,
    linearised light time). Objects faster than ``fast_rate_deg_per_day`` anywhere on the grid
    are evaluated exactly at every exposure time. Objects without H are always kept whatever
    ``mag_limit``. ``engine`` "auto" uses N-body where the two-body error budget is exceeded
    (:func:`zsds.solar.nbody.propagate_states`); its simulations are independent, hence
    ``workers``.
    """

    match_radius_arcsec: float = 30.0  #: largest candidate-object distance tagged (ZTF: 30 arcsec)
    cone_radius_deg: float = 5.5  #: exposure cone radius without a ``radius`` (deg)
    prefilter_margin_deg: float = 0.05  #: base margin of every cone in the coarse grid search (deg)
    grid_step_hours: float = 1.0  #: largest spacing of the coarse grid (hours)
    fast_rate_deg_per_day: float = 10.0  #: faster objects skip the prefilter (deg/day)
    time_tolerance_s: float = 1.0  #: a candidate's exposure mid-time is within this (s)
    mag_limit: float | None = None  #: ignore objects predicted fainter than this V (None: keep all)
    obscode: str = "I41"  #: MPC observatory code of the observer
    none_value: float = -999.0  #: ``ssdistnr`` and ``ssmagnr`` when nothing is within the radius
    engine: str = "auto"  #: propagation to the night: "auto", "two-body" or "nbody"
    workers: int = 1  #: processes of the catalogue's N-body propagation (1: in-process)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, not {self.engine!r}")
        if self.match_radius_arcsec <= 0 or self.cone_radius_deg <= 0:
            raise ValueError("match and cone radii must be positive")
        if self.grid_step_hours <= 0 or self.prefilter_margin_deg < 0:
            raise ValueError("grid step must be positive and the margin non-negative")


@dataclass(frozen=True)
class NightIndex:
    """Coarse positions of a catalogue over one night (see :func:`precompute_night`)."""

    orbits: Orbits  #: the catalogue osculating at mid-night (TDB), for exact ephemerides
    grid_mjd: NDArray[np.float64]  #: (G,) grid times, MJD (UTC), G >= 3
    unit: NDArray[np.float32]  #: (G, N, 3) float32 approximate topocentric unit vectors (ICRS)
    tolerance_rad: NDArray[np.float32]  #: (N,) prefilter tolerance: margin + largest 2nd difference
    fast: NDArray[np.bool_]  #: (N,) objects always evaluated exactly
    max_rate_deg_per_day: NDArray[np.float32]  #: (N,) float32 largest grid rate of each object
    config: KnownConfig  #: the configuration used
    tolerance_max_rad: float = 0.0  #: largest ``tolerance_rad`` of the objects not fast
    chord_max_rad: float = 0.0  #: largest step between grid positions of objects not fast (rad)

    def __len__(self) -> int:
        return len(self.orbits)

    @property
    def mjd_start(self) -> float:
        return float(self.grid_mjd[0])

    @property
    def mjd_end(self) -> float:
        return float(self.grid_mjd[-1])


# --------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------


def _unit(ra_deg: ArrayLike, dec_deg: ArrayLike) -> NDArray[np.float64]:
    ra = np.deg2rad(np.asarray(ra_deg, dtype=float))
    dec = np.deg2rad(np.asarray(dec_deg, dtype=float))
    cd = np.cos(dec)
    return np.stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)], axis=-1)


def _chord_to_arcsec(chord: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.rad2deg(2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))) * 3600.0


def _two_body_derivatives(r: NDArray, v: NDArray) -> tuple[NDArray, NDArray]:
    """Heliocentric acceleration and jerk of two-body motion (au/day^2, au/day^3)."""
    rn = np.linalg.norm(r, axis=1)[:, None]
    inv3 = 1.0 / rn**3
    rv = np.einsum("ij,ij->i", r, v)[:, None]
    acc = -GM_SUN * r * inv3
    jerk = -GM_SUN * (v * inv3 - 3.0 * rv * r * inv3 / rn**2)
    return acc, jerk


def _taylor_states(
    r: NDArray, v: NDArray, acc: NDArray, jerk: NDArray, dt: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """State after ``dt`` days from the third-order Taylor series (r, v, acc, jerk)."""
    r_t = r + dt * (v + dt * (acc / 2.0 + dt * jerk / 6.0))
    v_t = v + dt * (acc + dt * jerk / 2.0)
    return r_t, v_t


# --------------------------------------------------------------------------------------------
# Night index
# --------------------------------------------------------------------------------------------


def precompute_night(
    orbits: Orbits,
    mjd_start: float,
    mjd_end: float,
    config: KnownConfig | None = None,
) -> NightIndex:
    """Coarse positions of a catalogue for a night, used to prefilter objects per exposure.

    Parameters
    ----------
    orbits : Orbits
        The known-object catalogue (any epochs, e.g. from :func:`zsds.solar.read_mpcorb`).
    mjd_start, mjd_end : float
        Span of the mid-exposure times to be handled, MJD (UTC).
    config : KnownConfig, optional
        Grid step, margins, fast-mover rate and observatory.

    Returns
    -------
    NightIndex
        The catalogue propagated to mid-night plus float32 unit vectors on a grid of at least
        three times spanning ``[mjd_start, mjd_end]`` with steps of at most
        ``config.grid_step_hours``.

    Notes
    -----
    Meant for one night: the grid takes 12 bytes per object and grid time (about 110 MB for
    a million orbits over a 9-hour night), and the Taylor series assumes steps of well under
    a day from mid-night. Build one index per night.
    """
    cfg = config or KnownConfig()
    if not mjd_end >= mjd_start:
        raise ValueError("mjd_end must not precede mjd_start")
    if mjd_end - mjd_start > 2.0:
        raise ValueError("a night index spans at most 2 days; build one per night")
    span = mjd_end - mjd_start
    n_grid = max(3, int(np.ceil(span * 24.0 / cfg.grid_step_hours - 1e-9)) + 1)
    if span == 0.0:  # a single instant: a tiny symmetric grid keeps the interpolation defined
        mjd_start, mjd_end = mjd_start - 1.0 / 1440.0, mjd_end + 1.0 / 1440.0
    grid = np.linspace(mjd_start, mjd_end, n_grid)
    mid_utc = 0.5 * (grid[0] + grid[-1])
    tdb_mid = float(utc_to_tdb(mid_utc)[0])

    r0, v0 = elements_to_state(orbits)
    state = propagate_states(r0, v0, orbits.epoch, tdb_mid, cfg.engine, workers=cfg.workers)
    r_mid, v_mid = state.r, state.v
    orbits_mid = state_to_elements(
        r_mid, v_mid, tdb_mid, designation=orbits.designation, H=orbits.H, G=orbits.G
    )
    n = len(orbits)
    near_sun = np.linalg.norm(r_mid, axis=1) < _TAYLOR_MIN_R_AU
    dts = utc_to_tdb(grid) - tdb_mid
    obs_r, _ = observer_heliocentric_posvel(grid, cfg.obscode)
    unit = np.empty((n_grid, n, 3), dtype=np.float32)
    acc, jerk = _two_body_derivatives(r_mid, v_mid)
    for g in range(n_grid):
        r_t, v_t = _taylor_states(r_mid, v_mid, acc, jerk, dts[g])
        if np.any(near_sun):
            r_t[near_sun], v_t[near_sun] = propagate(r_mid[near_sun], v_mid[near_sun], dts[g])
        rho = r_t - obs_r[g]
        light_time = np.linalg.norm(rho, axis=1, keepdims=True) / C_AU_PER_DAY
        rho -= v_t * light_time
        unit[g] = rho / np.linalg.norm(rho, axis=1, keepdims=True)

    step_days = np.diff(grid)
    chord = np.linalg.norm(np.diff(unit, axis=0), axis=2)  # (G-1, N)
    rate = np.max(np.rad2deg(chord) / step_days[:, None], axis=0).astype(np.float32)
    second = np.linalg.norm(unit[2:] - 2.0 * unit[1:-1] + unit[:-2], axis=2)  # (G-2, N)
    # Linear interpolation errs by at most ~|u''| h^2 / 8; the full second difference is ~8x that.
    tolerance = (np.deg2rad(cfg.prefilter_margin_deg) + np.max(second, axis=0)).astype(np.float32)
    fast = rate > cfg.fast_rate_deg_per_day
    slow = ~fast
    return NightIndex(
        orbits=orbits_mid,
        grid_mjd=grid,
        unit=unit,
        tolerance_rad=tolerance,
        fast=fast,
        max_rate_deg_per_day=rate,
        config=cfg,
        tolerance_max_rad=float(np.max(tolerance[slow])) if np.any(slow) else 0.0,
        chord_max_rad=float(np.max(chord[:, slow])) if np.any(slow) else 0.0,
    )


def _prefilter(
    index: NightIndex, mjd: float, centres: NDArray, radii_rad: NDArray, chunk: int = 16
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Objects possibly within ``radii + match radius`` of any cone at ``mjd``.

    A float32 screen against the nearer grid time (radius widened by half the largest grid
    step) is followed by a float64 test of the interpolated position of the survivors, with
    each object's own tolerance. Fast movers are always included.

    Returns
    -------
    idx : ndarray of int
        Sorted object indices.
    u : ndarray, shape (len(idx), 3)
        Their interpolated unit vectors (unreliable for fast movers).
    """
    grid = index.grid_mjd
    slack = 1e-9
    if mjd < grid[0] - slack or mjd > grid[-1] + slack:
        raise ValueError(
            f"time {mjd:.6f} outside the night index span [{grid[0]:.6f}, {grid[-1]:.6f}]"
        )
    g = int(np.clip(np.searchsorted(grid, mjd, side="right") - 1, 0, grid.size - 2))
    w = float(np.clip((mjd - grid[g]) / (grid[g + 1] - grid[g]), 0.0, 1.0))
    near = index.unit[g if w < 0.5 else g + 1]
    match = index.config.match_radius_arcsec * _ARCSEC
    # 1e-3 rad absorbs float32 rounding of the screen near small radii.
    widen = index.tolerance_max_rad + match + index.chord_max_rad / 2.0 + 1e-3
    centres = np.asarray(centres, dtype=float)
    radii_rad = np.asarray(radii_rad, dtype=float)
    found = [np.flatnonzero(index.fast)]
    for k0 in range(0, radii_rad.size, chunk):
        c = centres[k0 : k0 + chunk]
        r = radii_rad[k0 : k0 + chunk]
        cosang = near @ c.T.astype(np.float32)  # (N, k)
        screen = np.cos(np.minimum(r + widen, np.pi)).astype(np.float32)
        ii, kk = np.nonzero(cosang >= screen[None, :])
        if ii.size == 0:
            continue
        u = _interpolate(index, g, w, ii)
        # Angles from chords in float64 (arccos near 1 is ill-conditioned).
        chord = np.linalg.norm(u - c[kk], axis=1)
        ang = 2.0 * np.arcsin(np.minimum(chord / 2.0, 1.0))
        ok = ang <= r[kk] + match + index.tolerance_rad[ii]
        found.append(ii[ok])
    idx = np.unique(np.concatenate(found))
    return idx, _interpolate(index, g, w, idx)


def _interpolate(index: NightIndex, g: int, w: float, idx: NDArray) -> NDArray[np.float64]:
    """Unit vectors of objects ``idx`` interpolated between grid times g and g + 1."""
    u = (1.0 - w) * index.unit[g][idx].astype(float) + w * index.unit[g + 1][idx]
    return u / np.linalg.norm(u, axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------
# Exposures and exact predictions
# --------------------------------------------------------------------------------------------


def _exposure_table(exposures: pd.DataFrame, cfg: KnownConfig) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "expid": (
                exposures["expid"].to_numpy() if "expid" in exposures else np.arange(len(exposures))
            ),
            "mjd": exposures["mjd"].to_numpy(dtype=float),
            "ra": exposures["ra"].to_numpy(dtype=float),
            "dec": exposures["dec"].to_numpy(dtype=float),
            "radius": (
                exposures["radius"].to_numpy(dtype=float)
                if "radius" in exposures
                else np.full(len(exposures), cfg.cone_radius_deg)
            ),
        }
    )
    return out


def _as_index(
    orbits: Orbits | NightIndex, times: NDArray[np.float64], cfg: KnownConfig | None
) -> NightIndex:
    if isinstance(orbits, NightIndex):
        if cfg is not None and cfg != orbits.config:
            raise ValueError("config differs from the one the NightIndex was built with")
        return orbits
    return precompute_night(orbits, float(np.min(times)), float(np.max(times)), cfg)


def _predict(
    index: NightIndex,
    times: NDArray[np.float64],
    cones: list[tuple[NDArray, NDArray]],
    points: tuple[NDArray, NDArray] | None = None,
) -> pd.DataFrame:
    """Exact ephemerides of the prefiltered objects at each time (column ``group``).

    With ``points`` (unit vectors and their time-group numbers, e.g. the candidates) only the
    objects whose interpolated position lies within the match radius plus their tolerance of
    some point at the same time are evaluated exactly (fast movers always are).
    """
    obj_parts, grp_parts, u_parts = [], [], []
    for k, (t, (centres, radii)) in enumerate(zip(times, cones, strict=True)):
        idx, u = _prefilter(index, float(t), centres, radii)
        obj_parts.append(idx)
        u_parts.append(u)
        grp_parts.append(np.full(idx.size, k, dtype=np.int64))
    obj = np.concatenate(obj_parts) if obj_parts else np.array([], dtype=np.int64)
    grp = np.concatenate(grp_parts) if grp_parts else np.array([], dtype=np.int64)
    if points is not None and obj.size and len(points[0]):
        u = np.concatenate(u_parts)
        bound = index.config.match_radius_arcsec * _ARCSEC + index.tolerance_rad[obj]
        chord_bound = 2.0 * np.sin(np.minimum(bound, np.pi) / 2.0)
        # The 4th coordinate (4 x group) keeps different times apart (unit chords are <= 2).
        fast = index.fast[obj]
        upper = float(chord_bound[~fast].max()) if np.any(~fast) else 0.0
        tree = cKDTree(np.column_stack([points[0], 4.0 * points[1]]))
        d, _ = tree.query(np.column_stack([u, 4.0 * grp]), k=1, distance_upper_bound=upper)
        keep = fast | (d <= chord_bound)
        obj, grp = obj[keep], grp[keep]
    if obj.size == 0:
        eph = pd.DataFrame({c: np.array([], dtype=float) for c in EPHEMERIS_COLUMNS})
        eph["designation"] = eph["designation"].astype(object)
    else:
        eph = ephemerides(index.orbits[obj], times[grp], index.config.obscode,
                          engine=index.config.engine)
    eph.insert(0, "group", grp)
    eph.insert(1, "object", obj)
    lim = index.config.mag_limit
    if lim is not None:
        eph = eph[~(eph["V"].to_numpy() > lim)]
    return eph.reset_index(drop=True)


def objects_in_exposures(
    orbits: Orbits | NightIndex,
    exposures: pd.DataFrame,
    config: KnownConfig | None = None,
) -> pd.DataFrame:
    """Known objects inside each exposure's cone at its mid-exposure time.

    Parameters
    ----------
    orbits : Orbits or NightIndex
        The catalogue, or a :func:`precompute_night` index covering the exposures.
    exposures : pandas.DataFrame
        ``mjd`` (UTC mid-exposure), ``ra``, ``dec`` (cone centre, deg), optional ``radius``
        (deg, default ``config.cone_radius_deg``) and ``expid`` (default: row number).
    config : KnownConfig, optional
        Configuration (``mag_limit`` filters the output).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`KNOWN_OBJECT_COLUMNS`: ``expid``, ``designation``, ``mjd``, ``ra``,
        ``dec`` (exact astrometric position, deg), ``V``, ``ra_rate`` (deg/day, includes
        cos dec), ``dec_rate`` (deg/day), ``delta`` (au); one row per object and exposure,
        ordered by exposure then object.
    """
    exp = _exposure_table(exposures, config or (orbits.config if isinstance(orbits, NightIndex)
                                                  else KnownConfig()))  # fmt: skip
    if len(exp) == 0:
        return pd.DataFrame({c: [] for c in KNOWN_OBJECT_COLUMNS})
    times = exp["mjd"].to_numpy()
    index = _as_index(orbits, times, config)
    centres = _unit(exp["ra"], exp["dec"])
    radii = np.deg2rad(exp["radius"].to_numpy())
    cones = [(centres[i : i + 1], radii[i : i + 1]) for i in range(len(exp))]
    eph = _predict(index, times, cones)
    grp = eph["group"].to_numpy()
    sep = np.arccos(
        np.clip(np.einsum("ij,ij->i", _unit(eph["ra"], eph["dec"]), centres[grp]), -1.0, 1.0)
    )
    inside = sep <= radii[grp]
    eph = eph[inside]
    out = pd.DataFrame({"expid": exp["expid"].to_numpy()[eph["group"].to_numpy()]})
    out["designation"] = eph["designation"].to_numpy()
    out["mjd"] = eph["mjd_utc"].to_numpy()
    for c in KNOWN_OBJECT_COLUMNS[3:]:
        out[c] = eph[c].to_numpy()
    return out


def tag_candidates(
    cands: pd.DataFrame,
    orbits: Orbits | NightIndex,
    exposures: pd.DataFrame | None = None,
    config: KnownConfig | None = None,
    key: str = "candid",
) -> pd.DataFrame:
    """Nearest known object within the match radius of each candidate (ZTF ``ss*nr``).

    Parameters
    ----------
    cands : pandas.DataFrame
        ``ra``, ``dec`` (deg), ``mjd`` (UTC mid-exposure) and the ``key`` column (default
        ``candid``; the row index is used when absent).
    orbits : Orbits or NightIndex
        The known-object catalogue, or a :func:`precompute_night` index covering the times.
    exposures : pandas.DataFrame, optional
        Exposure cones (``mjd``, ``ra``, ``dec``, optional ``radius``; several cones may share
        a time, e.g. one per quadrant). Candidates are matched to the cones at their time
        (within ``config.time_tolerance_s``); candidates outside every such cone, or all
        candidates when ``exposures`` is None, get a cone fitted around them.
    config : KnownConfig, optional
        Match radius etc.
    key : str, optional
        Candidate identifier column copied to the output.

    Returns
    -------
    pandas.DataFrame
        One row per candidate, in input order: ``key``, ``ssnamenr`` (object designation as
        in ``orbits``, or None), ``ssdistnr`` (arcsec), ``ssmagnr`` (predicted V); the last two
        are ``config.none_value`` (-999) when no object is within the match radius (and
        ``ssmagnr`` also when the object has no H).
    """
    cfg = config or (orbits.config if isinstance(orbits, NightIndex) else KnownConfig())
    n = len(cands)
    keys = cands[key].to_numpy() if key in cands else cands.index.to_numpy()
    mjd = cands["mjd"].to_numpy(dtype=float)
    cu = _unit(cands["ra"], cands["dec"]).reshape(n, 3)
    times, group = np.unique(mjd, return_inverse=True)
    group = group.reshape(-1)

    exp = _exposure_table(exposures, cfg) if exposures is not None else None
    if exp is not None and len(exp):
        order = np.argsort(exp["mjd"].to_numpy(), kind="stable")
        exp = exp.iloc[order].reset_index(drop=True)
        exp_t = exp["mjd"].to_numpy()
        exp_c = _unit(exp["ra"], exp["dec"])
        exp_r = np.deg2rad(exp["radius"].to_numpy())
        tol = cfg.time_tolerance_s / 86_400.0
        lo = np.searchsorted(exp_t, times - tol, side="left")
        hi = np.searchsorted(exp_t, times + tol, side="right")
    else:
        exp_t = np.array([])
    cand_order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[cand_order], np.arange(times.size + 1))
    cones: list[tuple[NDArray, NDArray]] = []
    for k in range(times.size):
        members = cand_order[bounds[k] : bounds[k + 1]]
        u = cu[members]
        if exp_t.size:
            c, r = exp_c[lo[k] : hi[k]], exp_r[lo[k] : hi[k]]
        else:
            c, r = np.empty((0, 3)), np.empty(0)
        covered = (
            np.any(u @ c.T >= np.cos(r)[None, :], axis=1) if r.size else np.zeros(len(u), bool)
        )
        if not np.all(covered):
            extra = u[~covered]
            centre = extra.sum(axis=0)
            centre /= np.linalg.norm(centre)
            radius = float(np.max(np.arccos(np.clip(extra @ centre, -1.0, 1.0))))
            c = np.vstack([c, centre[None, :]])
            r = np.append(r, radius)
        cones.append((c, r))

    out = pd.DataFrame({key: keys})
    names = np.full(n, None, dtype=object)
    dist = np.full(n, cfg.none_value, dtype=float)
    mag = np.full(n, cfg.none_value, dtype=float)
    if n:
        index = _as_index(orbits, times, config)
        eph = _predict(index, times, cones, points=(cu, group))
        if len(eph):
            pu = _unit(eph["ra"], eph["dec"])
            # A 4th coordinate 4 * group keeps exposure times apart (chords are <= 2).
            tree = cKDTree(np.column_stack([pu, 4.0 * eph["group"].to_numpy()]))
            chord_max = 2.0 * np.sin(cfg.match_radius_arcsec * _ARCSEC / 2.0)
            d, j = tree.query(
                np.column_stack([cu, 4.0 * group]), k=1, distance_upper_bound=chord_max
            )
            hit = np.isfinite(d)
            names[hit] = eph["designation"].to_numpy()[j[hit]]
            dist[hit] = _chord_to_arcsec(d[hit])
            v = eph["V"].to_numpy()[j[hit]]
            mag[hit] = np.where(np.isfinite(v), v, cfg.none_value)
    out["ssnamenr"] = pd.Series(names, dtype=object)
    out["ssdistnr"] = dist
    out["ssmagnr"] = mag
    return out


# --------------------------------------------------------------------------------------------
# Evaluation helpers
# --------------------------------------------------------------------------------------------


def synthesize_candidates(
    truth: pd.DataFrame,
    exposures: pd.DataFrame,
    mag_limit: float = 20.5,
    noise_arcsec: tuple[float, float] = (0.1, 0.3),
    n_random: int = 100,
    avoid_arcsec: float = 60.0,
    seed: int = 0,
    avoid: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Candidates from predicted asteroid positions plus noise, and unrelated random ones.

    Parameters
    ----------
    truth : pandas.DataFrame
        Predicted positions of known objects per exposure: ``expid``, ``mjd``, ``ra``, ``dec``,
        ``V``, ``designation`` (e.g. :func:`objects_in_exposures` or brute-force ephemerides).
    exposures : pandas.DataFrame
        ``expid``, ``mjd``, ``ra``, ``dec`` and ``radius`` (deg) of the exposure cones.
    mag_limit : float, optional
        Objects with ``V <= mag_limit`` become candidates.
    noise_arcsec : (float, float), optional
        Per-candidate 1-sigma astrometric noise per axis, drawn uniformly in this range.
    n_random : int, optional
        Unrelated candidates per exposure, uniform in the cone.
    avoid_arcsec : float, optional
        Random candidates closer than this to any object of their exposure (in ``avoid``) are
        redrawn, so that none of them is legitimately near a known object.
    seed : int, optional
        RNG seed.
    avoid : pandas.DataFrame, optional
        Positions (``expid``, ``ra``, ``dec``) the random candidates keep away from; default
        ``truth`` (pass all objects, including faint ones, for a clean negative sample).

    Returns
    -------
    pandas.DataFrame
        ``candid`` (0..), ``expid``, ``mjd``, ``ra``, ``dec``, ``designation`` (true object or
        None), ``V`` (NaN for random ones), ``sigma`` (arcsec; 0 for random ones).
    """
    rng = np.random.default_rng(seed)
    real = truth[truth["V"].to_numpy() <= mag_limit]
    sigma = rng.uniform(noise_arcsec[0], noise_arcsec[1], len(real))
    ra, dec = _offset(
        real["ra"].to_numpy(), real["dec"].to_numpy(),
        rng.normal(0.0, 1.0, len(real)) * sigma, rng.normal(0.0, 1.0, len(real)) * sigma,
    )  # fmt: skip
    parts = [
        pd.DataFrame(
            {
                "expid": real["expid"].to_numpy(), "mjd": real["mjd"].to_numpy(),
                "ra": ra, "dec": dec, "designation": real["designation"].to_numpy(dtype=object),
                "V": real["V"].to_numpy(), "sigma": sigma,
            }
        )
    ]  # fmt: skip
    if n_random > 0 and len(exposures):
        exp = exposures.reset_index(drop=True)
        n_draw = 2 * n_random + 10
        m = len(exp)
        cos_r = np.cos(np.deg2rad(exp["radius"].to_numpy()))
        cos_s = rng.uniform(np.repeat(cos_r, n_draw), 1.0)
        s = np.rad2deg(np.arccos(cos_s))
        pa = rng.uniform(0.0, 360.0, m * n_draw)
        r_ra, r_dec = _destination(
            np.repeat(exp["ra"].to_numpy(), n_draw), np.repeat(exp["dec"].to_numpy(), n_draw),
            s, pa,
        )  # fmt: skip
        grp = np.repeat(np.arange(m), n_draw)
        # Reject draws near any object of the same exposure (4-D tree separates exposures).
        near = truth if avoid is None else avoid
        exp_pos = pd.Series(np.arange(m), index=exp["expid"].to_numpy())
        t_grp = exp_pos.reindex(near["expid"].to_numpy()).to_numpy(dtype=float)
        valid = np.isfinite(t_grp)
        tree = cKDTree(
            np.column_stack([_unit(near["ra"], near["dec"])[valid], 4.0 * t_grp[valid]])
        ) if np.any(valid) else None  # fmt: skip
        keep = np.ones(grp.size, dtype=bool)
        if tree is not None:
            chord = 2.0 * np.sin(avoid_arcsec * _ARCSEC / 2.0)
            d, _ = tree.query(
                np.column_stack([_unit(r_ra, r_dec), 4.0 * grp]), k=1, distance_upper_bound=chord
            )
            keep = ~np.isfinite(d)
        rank = pd.Series(keep.astype(int)).groupby(grp).cumsum().to_numpy()
        take = keep & (rank <= n_random)
        parts.append(
            pd.DataFrame(
                {
                    "expid": exp["expid"].to_numpy()[grp[take]],
                    "mjd": exp["mjd"].to_numpy()[grp[take]],
                    "ra": r_ra[take], "dec": r_dec[take],
                    "designation": pd.Series([None] * int(take.sum()), dtype=object),
                    "V": np.nan, "sigma": 0.0,
                }
            )
        )  # fmt: skip
    out = pd.concat(parts, ignore_index=True)
    out["designation"] = pd.Series(out["designation"].to_numpy(dtype=object), dtype=object)
    out.insert(0, "candid", np.arange(len(out), dtype=np.int64))
    return out


def _destination(
    ra: NDArray, dec: NDArray, sep_deg: NDArray, pa_deg: NDArray
) -> tuple[NDArray, NDArray]:
    """Point at angular distance ``sep_deg`` and position angle ``pa_deg`` (E of N)."""
    d0, a0 = np.deg2rad(dec), np.deg2rad(ra)
    s, pa = np.deg2rad(sep_deg), np.deg2rad(pa_deg)
    sin_dec = np.sin(d0) * np.cos(s) + np.cos(d0) * np.sin(s) * np.cos(pa)
    dec1 = np.arcsin(np.clip(sin_dec, -1.0, 1.0))
    ra1 = a0 + np.arctan2(np.sin(pa) * np.sin(s) * np.cos(d0), np.cos(s) - np.sin(d0) * sin_dec)
    return np.remainder(np.rad2deg(ra1), 360.0), np.rad2deg(dec1)


def _offset(ra: NDArray, dec: NDArray, de_arcsec: NDArray, dn_arcsec: NDArray):
    """Move by small tangent-plane offsets east and north (arcsec)."""
    sep = np.hypot(de_arcsec, dn_arcsec) / 3600.0
    pa = np.rad2deg(np.arctan2(de_arcsec, dn_arcsec))
    return _destination(ra, dec, sep, pa)


def evaluate_tagging(
    tags: pd.DataFrame,
    truth: pd.DataFrame,
    tol_arcsec: float = 2.0,
    mag_limit: float | None = None,
    key: str = "candid",
) -> dict[str, float]:
    """Score tags against the true identity of each candidate.

    Parameters
    ----------
    tags : pandas.DataFrame
        :func:`tag_candidates` output.
    truth : pandas.DataFrame
        ``key``, ``designation`` (the object the candidate really is, or None for unrelated
        candidates) and ``V`` (e.g. :func:`synthesize_candidates` output).
    tol_arcsec : float, optional
        A tag is correct when it names the true object within this distance.
    mag_limit : float, optional
        Score only known-object candidates with ``V <= mag_limit``.
    key : str, optional
        Candidate identifier column.

    Returns
    -------
    dict
        ``n_known`` (known-object candidates scored), ``n_correct``, ``frac_correct``,
        ``n_mistagged`` (tagged with another object), ``n_untagged``, ``n_far`` (right object
        beyond ``tol_arcsec``), ``n_random`` (unrelated candidates), ``n_random_tagged``,
        and ``median_dist_arcsec``, ``p99_dist_arcsec``, ``max_dist_arcsec`` over correct tags.
    """
    m = truth[[key, "designation", "V"]].merge(tags, on=key, how="left", validate="1:1")
    true_name = m["designation"].to_numpy(dtype=object)
    name = m["ssnamenr"].to_numpy(dtype=object)
    is_known = pd.notna(true_name)
    if mag_limit is not None:
        is_known &= m["V"].to_numpy() <= mag_limit
    tagged = pd.notna(name)
    same = tagged & is_known & (name.astype(str) == true_name.astype(str))
    dist = m["ssdistnr"].to_numpy(dtype=float)
    correct = same & (dist <= tol_arcsec)
    random = pd.isna(true_name)
    good = dist[correct]
    n_known = int(is_known.sum())
    return {
        "n_known": n_known,
        "n_correct": int(correct.sum()),
        "frac_correct": float(correct.sum() / n_known) if n_known else float("nan"),
        "n_mistagged": int((is_known & tagged & ~same).sum()),
        "n_untagged": int((is_known & ~tagged).sum()),
        "n_far": int((same & ~correct).sum()),
        "n_random": int(random.sum()),
        "n_random_tagged": int((random & tagged).sum()),
        "median_dist_arcsec": float(np.median(good)) if good.size else float("nan"),
        "p99_dist_arcsec": float(np.percentile(good, 99)) if good.size else float("nan"),
        "max_dist_arcsec": float(np.max(good)) if good.size else float("nan"),
    }
