"""Intra-night tracklets: stationary-source removal and exclusive 2+-point tracklets.

The input is the shared *detection table* of the moving-object pipeline, a DataFrame with

=========  ==================================================================
``det_id`` int64, unique
``mjd``    mid-exposure time, MJD (UTC)
``ra``     ICRS right ascension, deg
``dec``    ICRS declination, deg
``sigma``  astrometric error, arcsec
``mag``    magnitude in band ``fid``
``fid``    filter (1 g, 2 r, 3 i)
``expid``  exposure id (one per exposure)
``field``  ZTF field id
``truth``  optional, str: simulator object id, ``""`` for false detections
=========  ==================================================================

Recipe (after HelioLinC3D's ``make_tracklets``)
------------------------------------------------
1. :func:`remove_stationary` drops detections that recur at one position (within
   ``radius_arcsec``) on several nights or in many exposures: variable stars, ghosts, bad pixels.
2. :func:`make_tracklets` pairs detections of one night from different exposures with a time
   separation in ``[min_time, max_time]`` and an angular rate in ``[min_vel, max_vel]`` (a
   :class:`scipy.spatial.cKDTree` range search on unit vectors with radius ``max_vel * max_time``,
   then an exact per-pair cut).
3. Pairs are chained into 3+-point candidates ``a -> b -> c ...`` (each link itself a valid pair).
   A candidate survives when a constant-rate great-circle fit has an RMS of at most
   ``max_gcr_arcsec``. The fit is a straight line at constant rate in the gnomonic plane about
   the candidate's mean direction, which equals a great circle at constant rate to far below
   the astrometric noise for tracklets shorter than a few degrees.
4. 3+-point tracklets are made exclusive greedily (more points first, then lower RMS); the
   pairs that do not touch a detection claimed by them are kept as 2-point tracklets and may
   share detections with each other (as in HelioLinC, which leaves the choice to linking).

Defaults are set for the ZTF cadence, where a field is revisited 30-90 min later in the same
night (2-3 visits, sometimes in different filters): ``min_time`` 5 min, ``max_time`` 3 h (the
first and last of three visits), ``max_vel`` 1.5 deg/day (main-belt and outer objects; NEOs need
a second pass with a larger value), ``min_vel`` 0.02 deg/day (3 arcsec/h, above the astrometric
noise and below the slowest Jupiter Trojan near its stationary point) and ``max_gcr_arcsec`` 1.0
(the ZTF astrometric noise is 0.05-0.3 arcsec per axis).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree

__all__ = [
    "PALOMAR_LON_DEG",
    "TRACKLET_COLUMNS",
    "TrackletConfig",
    "gnomonic",
    "make_tracklets",
    "night_index",
    "radec_to_unit",
    "remove_stationary",
    "unit_to_radec",
]

#: East longitude of Palomar (MPC code I41), deg; sets the local-noon night boundary.
PALOMAR_LON_DEG = 243.14022
ARCSEC = np.pi / (180.0 * 3600.0)

#: Columns of the tracklet table returned by :func:`make_tracklets`.
TRACKLET_COLUMNS = (
    "trk_id", "n", "night", "mjd_mid", "ra", "dec", "ra_rate", "dec_rate", "rms_arcsec",
    "mjd_start", "ra_start", "dec_start", "mjd_end", "ra_end", "dec_end",
    "det_start", "det_end",
)  # fmt: skip


@dataclass(frozen=True)
class TrackletConfig:
    """Parameters of tracklet formation.

    Parameters
    ----------
    min_time : float
        Shortest time between two detections of a tracklet, days (default 5 min).
    max_time : float
        Longest time spanned by a tracklet, days (default 3 h).
    min_vel : float
        Slowest accepted angular rate, deg/day (default 0.02).
    max_vel : float
        Fastest accepted angular rate, deg/day (default 1.5, HelioLinC's default).
    max_gcr_arcsec : float
        Largest RMS of the constant-rate great-circle fit of a tracklet of 3 or more points
        (arcsec, RMS of the 2-D residual vector over the points).
    min_points : int
        Smallest number of detections per tracklet (2 or 3). With 3, pairs are dropped.
    max_points : int
        Longest chain of detections tried (limits the combinatorics in dense fields).
    """

    min_time: float = 5.0 / 1440.0
    max_time: float = 3.0 / 24.0
    min_vel: float = 0.02
    max_vel: float = 1.5
    max_gcr_arcsec: float = 1.0
    min_points: int = 2
    max_points: int = 8


# --------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------


def radec_to_unit(ra: ArrayLike, dec: ArrayLike) -> NDArray[np.float64]:
    """Unit vectors (N, 3) from RA/Dec in degrees."""
    ra_r = np.deg2rad(np.asarray(ra, dtype=float))
    dec_r = np.deg2rad(np.asarray(dec, dtype=float))
    cd = np.cos(dec_r)
    return np.stack([cd * np.cos(ra_r), cd * np.sin(ra_r), np.sin(dec_r)], axis=-1)


def unit_to_radec(u: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """RA in [0, 360) and Dec (deg) of (N, 3) vectors (need not be normalised)."""
    u = np.asarray(u, dtype=float)
    ra = np.rad2deg(np.arctan2(u[..., 1], u[..., 0]))
    dec = np.rad2deg(np.arctan2(u[..., 2], np.hypot(u[..., 0], u[..., 1])))
    return np.remainder(ra, 360.0), dec


def _tangent_basis(center: NDArray) -> tuple[NDArray, NDArray, NDArray]:
    """East and north unit vectors of the tangent plane at unit vectors ``center`` (..., 3)."""
    c = center / np.linalg.norm(center, axis=-1, keepdims=True)
    east = np.stack([-c[..., 1], c[..., 0], np.zeros_like(c[..., 0])], axis=-1)
    en = np.linalg.norm(east, axis=-1, keepdims=True)
    # At the poles any east direction will do.
    east = np.where(en > 1e-12, east / np.where(en > 1e-12, en, 1.0), [0.0, 1.0, 0.0])
    north = np.cross(c, east)
    return c, east, north


def gnomonic(u: ArrayLike, center: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Gnomonic (tangent-plane) coordinates of unit vectors about ``center``.

    Parameters
    ----------
    u : array_like, shape (..., 3)
        Directions.
    center : array_like, shape (..., 3) or (3,)
        Tangent points (broadcast against ``u``).

    Returns
    -------
    xi, eta : ndarray
        Standard coordinates towards east and north, radians.
    """
    u = np.asarray(u, dtype=float)
    c, east, north = _tangent_basis(np.asarray(center, dtype=float))
    w = np.sum(u * c, axis=-1)
    return np.sum(u * east, axis=-1) / w, np.sum(u * north, axis=-1) / w


def _gnomonic_inverse(xi: NDArray, eta: NDArray, center: NDArray) -> NDArray:
    """Unit vectors from standard coordinates (radians) about ``center``."""
    c, east, north = _tangent_basis(center)
    v = c + xi[..., None] * east + eta[..., None] * north
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def night_index(mjd: ArrayLike, lon_deg: float = PALOMAR_LON_DEG) -> NDArray[np.int64]:
    """Observing night of each time: the MJD of the local civil date at the evening.

    Nights are split at local mean solar noon of the site (east longitude ``lon_deg``), so all
    exposures of one night share the index.
    """
    lon = (lon_deg + 180.0) % 360.0 - 180.0
    return np.floor(np.asarray(mjd, dtype=float) + lon / 360.0 - 0.5).astype(np.int64)


def _chord(radius_arcsec: float) -> float:
    return 2.0 * np.sin(radius_arcsec * ARCSEC / 2.0)


# --------------------------------------------------------------------------------------------
# Stationary sources
# --------------------------------------------------------------------------------------------


def remove_stationary(
    dets: pd.DataFrame,
    radius_arcsec: float = 2.0,
    min_nights: int = 2,
    min_count: int = 4,
) -> NDArray[np.bool_]:
    """Flag detections that recur at one sky position and return the mask of those to keep.

    A detection is *stationary* when other detections lie within ``radius_arcsec`` of it and,
    counting itself, they come from at least ``min_nights`` distinct nights or from at least
    ``min_count`` distinct exposures. Asteroids move at least several arcsec per hour, so they
    never recur at one position across nights; a field has 2-4 visits per night, so a
    variable source or artefact on one night only is caught by ``min_count``.

    Parameters
    ----------
    dets : pandas.DataFrame
        Detection table (``mjd``, ``ra``, ``dec``, ``expid``).
    radius_arcsec : float, optional
        Match radius (a few times the astrometric error).
    min_nights : int, optional
        Distinct nights that make a position stationary (``0`` disables the test).
    min_count : int, optional
        Distinct exposures that make a position stationary (``0`` disables the test).

    Returns
    -------
    numpy.ndarray of bool
        ``True`` for detections to **keep** (not stationary), in the order of ``dets``; use
        ``dets[remove_stationary(dets)]``.
    """
    n = len(dets)
    if n == 0:
        return np.ones(0, dtype=bool)
    u = radec_to_unit(dets["ra"].to_numpy(), dets["dec"].to_numpy())
    pairs = cKDTree(u).query_pairs(_chord(radius_arcsec), output_type="ndarray")
    stationary = np.zeros(n, dtype=bool)
    if pairs.size == 0:
        return ~stationary
    expid = dets["expid"].to_numpy()
    pairs = pairs[expid[pairs[:, 0]] != expid[pairs[:, 1]]]
    if pairs.size == 0:
        return ~stationary
    night = night_index(dets["mjd"].to_numpy())
    # Each detection with every neighbour, plus itself: (detection, neighbour) rows.
    src = np.concatenate([pairs[:, 0], pairs[:, 1], np.unique(pairs)])
    nbr = np.concatenate([pairs[:, 1], pairs[:, 0], np.unique(pairs)])
    table = pd.DataFrame({"det": src, "night": night[nbr], "expid": expid[nbr]})
    counts = table.groupby("det").agg(nights=("night", "nunique"), exps=("expid", "nunique"))
    flag = np.zeros(len(counts), dtype=bool)
    if min_nights > 0:
        flag |= counts["nights"].to_numpy() >= min_nights
    if min_count > 0:
        flag |= counts["exps"].to_numpy() >= min_count
    stationary[counts.index.to_numpy()[flag]] = True
    return ~stationary


# --------------------------------------------------------------------------------------------
# Tracklets
# --------------------------------------------------------------------------------------------


def _pairs(
    u: NDArray, mjd: NDArray, expid: NDArray, night: NDArray, config: TrackletConfig
) -> NDArray[np.int64]:
    """All valid intra-night pairs (i, j) with mjd[i] < mjd[j], as an (M, 2) array."""
    out = []
    radius = _chord(config.max_vel * config.max_time * 3600.0)
    for nt in np.unique(night):
        idx = np.flatnonzero(night == nt)
        if idx.size < 2:
            continue
        p = cKDTree(u[idx]).query_pairs(radius, output_type="ndarray")
        if p.size == 0:
            continue
        i, j = idx[p[:, 0]], idx[p[:, 1]]
        swap = mjd[i] > mjd[j]
        i, j = np.where(swap, j, i), np.where(swap, i, j)
        dt = mjd[j] - mjd[i]
        ok = (expid[i] != expid[j]) & (dt >= config.min_time) & (dt <= config.max_time)
        i, j, dt = i[ok], j[ok], dt[ok]
        sep = 2.0 * np.arcsin(np.clip(np.linalg.norm(u[i] - u[j], axis=1) / 2.0, 0.0, 1.0))
        rate = np.rad2deg(sep) / dt
        ok = (rate <= config.max_vel) & (rate >= config.min_vel)
        out.append(np.stack([i[ok], j[ok]], axis=1))
    if not out:
        return np.zeros((0, 2), dtype=np.int64)
    return np.concatenate(out).astype(np.int64)


def _line_fit(
    u: NDArray, mjd: NDArray, chains: NDArray
) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray]:
    """Constant-rate straight-line fits in the tangent plane for chains (M, L) of detections.

    Returns the tangent point (M, 3), the reference time (M,), the fitted position (xi0, eta0)
    and rate (vxi, veta) as (M, 2) arrays in radians and radians/day, and the RMS (arcsec) of
    the 2-D residual over the points.
    """
    uu = u[chains]  # (M, L, 3)
    center = uu.sum(axis=1)
    center /= np.linalg.norm(center, axis=1, keepdims=True)
    xi, eta = gnomonic(uu, center[:, None, :])
    t = mjd[chains]
    tref = t.mean(axis=1)
    dt = t - tref[:, None]
    s_tt = np.sum(dt * dt, axis=1)
    pos = np.stack([xi.mean(axis=1), eta.mean(axis=1)], axis=1)
    rate = np.stack([np.sum(dt * xi, axis=1), np.sum(dt * eta, axis=1)], axis=1) / s_tt[:, None]
    res_x = xi - pos[:, 0:1] - rate[:, 0:1] * dt
    res_y = eta - pos[:, 1:2] - rate[:, 1:2] * dt
    rms = np.sqrt(np.mean(res_x**2 + res_y**2, axis=1)) / ARCSEC
    return center, tref, pos, rate, rms


def _chains(
    pairs: NDArray, u: NDArray, mjd: NDArray, config: TrackletConfig
) -> list[tuple[NDArray, NDArray]]:
    """Grow chains of 3+ detections along valid pairs, keeping those that fit a line.

    Returns a list of (chains (M, L), rms (M,)) for L = 3 .. max_points.
    """
    out: list[tuple[NDArray, NDArray]] = []
    if pairs.size == 0:
        return out
    order = np.argsort(pairs[:, 0], kind="stable")
    p_sorted = pairs[order]
    starts = np.searchsorted(p_sorted[:, 0], np.arange(len(mjd) + 1))
    chains = pairs
    for _ in range(3, config.max_points + 1):
        last = chains[:, -1]
        counts = starts[last + 1] - starts[last]
        if counts.sum() == 0:
            break
        rows = np.repeat(np.arange(len(chains)), counts)
        offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        nxt = p_sorted[np.repeat(starts[last], counts) + offs, 1]
        new = np.concatenate([chains[rows], nxt[:, None]], axis=1)
        new = new[mjd[new[:, -1]] - mjd[new[:, 0]] <= config.max_time]
        if len(new) == 0:
            break
        *_, rms = _line_fit(u, mjd, new)
        ok = rms <= config.max_gcr_arcsec
        chains = new[ok]
        if len(chains) == 0:
            break
        out.append((chains, rms[ok]))
    return out


def _greedy_exclusive(chains: list[NDArray], n_det: int) -> NDArray[np.bool_]:
    """Greedy exclusive choice among candidate chains (already sorted by preference)."""
    used = np.zeros(n_det, dtype=bool)
    keep = np.zeros(len(chains), dtype=bool)
    for k, ch in enumerate(chains):
        if not used[ch].any():
            used[ch] = True
            keep[k] = True
    return keep


def make_tracklets(
    dets: pd.DataFrame, config: TrackletConfig | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build intra-night tracklets from a detection table.

    Parameters
    ----------
    dets : pandas.DataFrame
        Detection table (``det_id``, ``mjd``, ``ra``, ``dec``, ``expid``); stationary
        sources should already be removed (:func:`remove_stationary`).
    config : TrackletConfig, optional
        Parameters; the defaults suit the ZTF cadence.

    Returns
    -------
    tracklets : pandas.DataFrame
        One row per tracklet with the columns :data:`TRACKLET_COLUMNS`: ``trk_id`` (int64,
        0..N-1), ``n`` (detections), ``night`` (:func:`night_index`), ``mjd_mid`` (mean time),
        ``ra``, ``dec`` (fitted position at ``mjd_mid``, deg), ``ra_rate`` (deg/day, includes
        cos dec), ``dec_rate`` (deg/day), ``rms_arcsec`` (0 for pairs), ``mjd_start``,
        ``ra_start``, ``dec_start``, ``mjd_end``, ``ra_end``, ``dec_end`` (fitted positions at
        the first and last times) and ``det_start``, ``det_end`` (their ``det_id``).
    members : pandas.DataFrame
        ``trk_id``, ``det_id`` (one row per detection of each tracklet, in time order).
    """
    config = config or TrackletConfig()
    empty = (
        pd.DataFrame({c: pd.Series(dtype=float) for c in TRACKLET_COLUMNS}),
        pd.DataFrame({"trk_id": pd.Series(dtype=np.int64), "det_id": pd.Series(dtype=np.int64)}),
    )
    if len(dets) < 2:
        return empty
    det_id = dets["det_id"].to_numpy().astype(np.int64)
    mjd = dets["mjd"].to_numpy(dtype=float)
    u = radec_to_unit(dets["ra"].to_numpy(), dets["dec"].to_numpy())
    expid = dets["expid"].to_numpy()
    night = night_index(mjd)
    pairs = _pairs(u, mjd, expid, night, config)

    # Candidate 3+-point chains, longest first, then by RMS: exclusive greedy choice.
    long_chains: list[NDArray] = []
    long_rms: list[float] = []
    for chains, rms in reversed(_chains(pairs, u, mjd, config)):
        order = np.argsort(rms, kind="stable")
        long_chains.extend(chains[order])
        long_rms.extend(rms[order])
    keep = _greedy_exclusive(long_chains, len(dets))
    chosen = [c for c, k in zip(long_chains, keep, strict=True) if k]
    chosen_rms = np.asarray(long_rms)[keep]
    claimed = np.zeros(len(dets), dtype=bool)
    for c in chosen:
        claimed[c] = True
    if config.min_points <= 2:
        free = ~claimed[pairs[:, 0]] & ~claimed[pairs[:, 1]]
        pair_list = list(pairs[free])
    else:
        pair_list = []
    all_chains = chosen + pair_list
    all_rms = np.concatenate([chosen_rms, np.zeros(len(pair_list))])
    if not all_chains:
        return empty

    rows = []
    member_trk = []
    member_det = []
    # Fit each chain length in one batch.
    lengths = np.array([len(c) for c in all_chains])
    trk_ids = np.arange(len(all_chains))
    for length in np.unique(lengths):
        sel = np.flatnonzero(lengths == length)
        ch = np.stack([all_chains[k] for k in sel])
        center, tref, pos, rate, _ = _line_fit(u, mjd, ch)
        t0, t1 = mjd[ch[:, 0]], mjd[ch[:, -1]]
        ends = []
        for tt in (tref, t0, t1):
            d = (tt - tref)[:, None]
            ends.append(
                _gnomonic_inverse(
                    pos[:, 0] + rate[:, 0] * d[:, 0], pos[:, 1] + rate[:, 1] * d[:, 0], center
                )
            )
        ra_m, dec_m = unit_to_radec(ends[0])
        ra0, dec0 = unit_to_radec(ends[1])
        ra1, dec1 = unit_to_radec(ends[2])
        # Rates on the sky at the mid point: tangent-plane rate about the mean direction.
        _, east_m, north_m = _tangent_basis(ends[0])
        _, east_c, north_c = _tangent_basis(center)
        vel3 = rate[:, 0:1] * east_c + rate[:, 1:2] * north_c
        ra_rate = np.rad2deg(np.sum(vel3 * east_m, axis=1))
        dec_rate = np.rad2deg(np.sum(vel3 * north_m, axis=1))
        rows.append(
            pd.DataFrame(
                {
                    "trk_id": trk_ids[sel],
                    "n": length,
                    "night": night[ch[:, 0]],
                    "mjd_mid": tref,
                    "ra": ra_m,
                    "dec": dec_m,
                    "ra_rate": ra_rate,
                    "dec_rate": dec_rate,
                    "rms_arcsec": all_rms[sel],
                    "mjd_start": t0,
                    "ra_start": ra0,
                    "dec_start": dec0,
                    "mjd_end": t1,
                    "ra_end": ra1,
                    "dec_end": dec1,
                    "det_start": det_id[ch[:, 0]],
                    "det_end": det_id[ch[:, -1]],
                }
            )
        )
        member_trk.append(np.repeat(trk_ids[sel], length))
        member_det.append(det_id[ch].ravel())
    tracklets = pd.concat(rows, ignore_index=True).sort_values("trk_id", ignore_index=True)
    members = pd.DataFrame(
        {"trk_id": np.concatenate(member_trk), "det_id": np.concatenate(member_det)}
    ).sort_values(["trk_id"], kind="stable", ignore_index=True)
    tracklets["trk_id"] = tracklets["trk_id"].astype(np.int64)
    tracklets["n"] = tracklets["n"].astype(np.int64)
    return tracklets[list(TRACKLET_COLUMNS)], members
