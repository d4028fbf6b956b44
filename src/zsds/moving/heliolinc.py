"""HelioLinC-style linking of intra-night tracklets across nights (Holman et al. 2018; the 3-D
version of Eggl and Heinze, ``lsst-dm/heliolinc2``), vectorised with numpy and scipy.

Recipe (:func:`link`)
---------------------
1. **Hypotheses.** A grid of heliocentric distance ``r`` (au, logarithmic steps), radial
   velocity ``rdot`` (au/day, bounded by ``e_max * sqrt(GM / r)``, the radial speed of an
   orbit of eccentricity ``e_max`` with semi-latus rectum ``r``) and, optionally, radial
   acceleration ``rddot`` in units of ``-GM / r^2`` (:func:`hypothesis_grid`); the reference
   epoch ``t_ref`` is the middle of the window. The defaults (1.05-6 au in 8 % steps, ``rdot``
   in steps of 0.002 au/day: 99 hypotheses) suit windows of 3-7 nights, over which the lines
   of sight of an object barely turn, so that a main-belt asteroid clusters under almost every
   hypothesis; windows of two weeks need finer steps (HelioLinC uses hundreds to thousands).
2. **Heliocentric states.** For each hypothesis and every tracklet (all tracklets at once) the
   lines of sight of its first and last (fitted) positions are intersected with the sphere
   ``|x| = r + rdot (t - t_ref) + rddot (t - t_ref)^2 / 2`` around the Sun, starting from the
   observer's heliocentric position (I41, :func:`zsds.solar.observer.observer_heliocentric_posvel`)
   and iterating the light time, so ``t`` is the emission time. The two 3-D points give a
   velocity; the midpoint state is propagated to ``t_ref`` with the universal-variable two-body
   :func:`zsds.solar.orbits.propagate`. Unbound states are dropped.
3. **Clustering.** The 6-D points ``(x, v * vel_scale)`` (``vel_scale`` = a quarter of the time
   span of the data) are clustered friends-of-friends style (a :class:`scipy.spatial.cKDTree`
   pair search and connected components, i.e. DBSCAN with ``min_samples = 2``) with a radius
   ``cluster_radius_km * Delta`` (``Delta`` the geocentric distance in au, in logarithmic bins of
   ``geo_log_step``, HelioLinC's ``clustrad`` and ``geologstep``). Clusters with at least
   ``min_tracklets`` tracklets on ``min_nights`` nights spanning ``min_timespan`` days become
   candidate linkages; identical ones from several hypotheses are merged. Clusters holding more
   tracklets than nights (two co-moving objects a few arcmin apart, or chance chains) are
   clustered again with half the radius, up to ``split_levels`` times, and their parts become
   candidates as well.
4. **Refinement/purification** (the single-site ``link_refine`` idea). The detections of each
   candidate are fitted, all candidates in one batch, by a weighted least-squares model on the
   gnomonic plane about their mean direction: a quadratic in time per axis (a cubic for arcs
   longer than ``cubic_arc_days``) plus the topocentric parallax
   ``-(x_obs - x_geocentre)_perp / Delta`` with ``1 / Delta`` a shared free parameter (with a
   weak prior at the hypothesis' distance). Without the parallax term the diurnal parallax of a
   main-belt asteroid leaves 0.4-1.5 arcsec residuals over three nights; with it, the model
   error of true objects is below 0.02 arcsec (a quadratic leaves ~0.8 arcsec over 6 days, a
   cubic 0.005 arcsec). The fitted ``Delta`` is good to about +-25 %. Detections from the same
   exposure, and then the detection with the largest normalised residual above
   ``outlier_nsigma``, are dropped one at a time and the fit repeated. A candidate is valid
   when it still has ``min_detections`` detections on ``min_nights`` nights over
   ``min_timespan`` days, an RMS of at most ``max_rms_arcsec`` and a chi-square whose
   probability (for its degrees of freedom) is at least ``min_chi2_pvalue``.
5. **Selection (de-duplication).** Valid candidates are taken greedily in order of
   ``score = n_det * n_nights / (1 + chi2)``; a candidate sharing a detection with an accepted
   linkage is set aside. After each round the set-aside candidates lose the detections already
   used, are purified again and compete in the next round, so every detection ends up in at most
   one linkage. An optional ``accept`` callable (for example an orbit fit) is consulted lazily,
   only for the candidate about to be accepted; if it says no, the candidate is discarded and
   its detections stay free.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from scipy.stats import chi2 as chi2_dist

from zsds.moving.tracklets import (
    ARCSEC,
    _tangent_basis,
    gnomonic,
    night_index,
    radec_to_unit,
)
from zsds.solar.observer import observer_heliocentric_posvel
from zsds.solar.orbits import AU_KM, C_AU_PER_DAY, GM_SUN, propagate

__all__ = [
    "LINKAGE_COLUMNS",
    "AcceptFn",
    "HelioLincConfig",
    "hypothesis_grid",
    "link",
    "refine_linkages",
]

#: Signature of the optional acceptance check: detections of one linkage -> (ok, score).
AcceptFn = Callable[[pd.DataFrame], tuple[bool, float]]

#: Columns of the linkage table returned by :func:`link`.
LINKAGE_COLUMNS = (
    "link_id", "n_det", "n_nights", "n_tracklets", "arc_days", "mjd_first", "mjd_last",
    "rms_arcsec", "chi2", "score", "accept_score", "delta_au", "r_hyp", "rdot_hyp", "n_hyp",
)  # fmt: skip

_R_EARTH_AU = 6378.137 / AU_KM


@dataclass(frozen=True)
class HelioLincConfig:
    """Parameters of :func:`link`.

    The distance hypotheses step as ``r_{k+1} = r_k (1 + r_log_step)``. ``accel_factors`` are
    HelioLinC's ``mean_accel``; ``(0.0,)`` suits windows of a few nights. The clustering radius
    scales with the geocentric distance. Clusters larger than ``max_cluster_tracklets`` are
    chance chains in a wrong hypothesis. Clusters with more tracklets than nights (possibly
    several objects, or a large chance chain) are clustered again with half the radius, up to
    ``split_levels`` times; the parts become candidates too. ``min_chi2_pvalue`` 1e-4 rejects
    one true object in ten thousand when ``sigma`` is right (a reduced chi-square of 5.1 for 6
    detections, 3.2 for 9, 2.2 for 18). The parallax prior is centred on the geocentric
    distance of the hypothesis that produced the candidate.
    """

    r_min: float = 1.05  #: smallest heliocentric-distance hypothesis (au)
    r_max: float = 6.0  #: largest heliocentric-distance hypothesis (au)
    r_log_step: float = 0.08  #: fractional step between distance hypotheses
    rdot_step: float = 0.002  #: step of the radial-velocity hypotheses (au/day)
    e_max: float = 0.3  #: eccentricity bounding the radial velocities tried at each r
    accel_factors: tuple[float, ...] = (0.0,)  #: radial accelerations tried (units of -GM / r^2)
    t_ref: float | None = None  #: reference epoch, MJD (UTC); None: middle of the tracklets' span
    cluster_radius_km: float = 1.0e5  #: clustering radius at 1 au geocentric (km)
    geo_log_step: float = 1.5  #: ratio between geocentric-distance bins of constant radius
    vel_scale: float | None = None  #: days multiplying the 6-D points' velocities; None: span / 4
    max_cluster_tracklets: int = 40  #: larger clusters are not candidates themselves
    split_levels: int = 3  #: most re-clusterings at half the radius
    min_tracklets: int = 3  #: least tracklets of a cluster
    min_nights: int = 3  #: least distinct nights of a cluster
    min_timespan: float = 1.0  #: least time span of a cluster and of a linkage (days)
    min_detections: int = 6  #: least detections of a final linkage
    max_rms_arcsec: float = 1.0  #: largest RMS (2-D residual) of a linkage's fit (arcsec)
    min_chi2_pvalue: float = 1e-4  #: smallest chi-square probability of a linkage's fit
    outlier_nsigma: float = 4.5  #: normalised 2-D residual dropping the worst detection
    sys_arcsec: float = 0.05  #: systematic error added in quadrature to ``sigma`` (arcsec)
    cubic_arc_days: float = 3.0  #: longer linkages (days) fit a cubic, not a quadratic, in time
    parallax_prior: float = 1.0  #: relative width of the prior on the parallax factor 1 / Delta
    refine_rounds: int = 3  #: rounds of greedy selection and re-purification of overlaps
    obscode: str = "I41"  #: observatory code of all detections


def hypothesis_grid(config: HelioLincConfig | None = None) -> pd.DataFrame:
    """The (r, rdot, rddot) hypotheses of a configuration.

    Returns
    -------
    pandas.DataFrame
        ``r`` (au), ``rdot`` (au/day) and ``rddot`` (au/day^2), one row per hypothesis.
    """
    config = config or HelioLincConfig()
    n_r = int(np.floor(np.log(config.r_max / config.r_min) / np.log1p(config.r_log_step))) + 1
    r = config.r_min * (1.0 + config.r_log_step) ** np.arange(n_r)
    rows = []
    for rk in r:
        vmax = config.e_max * np.sqrt(GM_SUN / rk)
        n_half = int(np.ceil(vmax / config.rdot_step - 0.5))
        rdot = config.rdot_step * np.arange(-n_half, n_half + 1)
        for acc in config.accel_factors:
            for rd in rdot:
                rows.append((rk, rd, -acc * GM_SUN / rk**2))
    return pd.DataFrame(rows, columns=["r", "rdot", "rddot"])


# --------------------------------------------------------------------------------------------
# Step 2-3: heliocentric states and clustering
# --------------------------------------------------------------------------------------------


@dataclass
class _Geometry:
    """Per-tracklet line-of-sight geometry (endpoints 1 and 2)."""

    t1: NDArray
    t2: NDArray
    obs1: NDArray
    obs2: NDArray
    u1: NDArray
    u2: NDArray
    night: NDArray
    mjd_mid: NDArray


def _geometry(tracklets: pd.DataFrame, obscode: str) -> _Geometry:
    t1 = tracklets["mjd_start"].to_numpy(dtype=float)
    t2 = tracklets["mjd_end"].to_numpy(dtype=float)
    obs, _ = observer_heliocentric_posvel(np.concatenate([t1, t2]), obscode)
    n = len(t1)
    return _Geometry(
        t1=t1,
        t2=t2,
        obs1=obs[:n],
        obs2=obs[n:],
        u1=radec_to_unit(tracklets["ra_start"].to_numpy(), tracklets["dec_start"].to_numpy()),
        u2=radec_to_unit(tracklets["ra_end"].to_numpy(), tracklets["dec_end"].to_numpy()),
        night=tracklets["night"].to_numpy(),
        mjd_mid=tracklets["mjd_mid"].to_numpy(dtype=float),
    )


def _range_on_sphere(
    t: NDArray, obs: NDArray, u: NDArray, hyp: tuple[float, float, float], t_ref: float
) -> tuple[NDArray, NDArray]:
    """Distance along the line of sight to the hypothesis sphere, light time iterated.

    Returns the range (au, NaN where the line misses the sphere) and the emission time.
    """
    r0, rdot, rddot = hyp
    b = np.einsum("ij,ij->i", obs, u)
    oo = np.einsum("ij,ij->i", obs, obs)
    rho = np.zeros(len(t))
    for _ in range(3):
        dt = t - rho / C_AU_PER_DAY - t_ref
        rh = r0 + rdot * dt + 0.5 * rddot * dt * dt
        with np.errstate(invalid="ignore"):
            rho = -b + np.sqrt(b * b - oo + rh * rh)
        rho = np.where(rho > 0, rho, np.nan)
        if np.all(np.isnan(rho)):
            break
    return rho, t - np.nan_to_num(rho) / C_AU_PER_DAY


def _states(
    geo: _Geometry, hyp: tuple[float, float, float], t_ref: float
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """States at ``t_ref`` of the tracklets under one hypothesis.

    Returns the indices of usable tracklets, positions (au), velocities (au/day) and the
    geocentric distances (au).
    """
    rho1, te1 = _range_on_sphere(geo.t1, geo.obs1, geo.u1, hyp, t_ref)
    rho2, te2 = _range_on_sphere(geo.t2, geo.obs2, geo.u2, hyp, t_ref)
    ok = np.isfinite(rho1) & np.isfinite(rho2) & (te2 > te1)
    idx = np.flatnonzero(ok)
    p1 = geo.obs1[idx] + rho1[idx, None] * geo.u1[idx]
    p2 = geo.obs2[idx] + rho2[idx, None] * geo.u2[idx]
    dt = te2[idx] - te1[idx]
    vel = (p2 - p1) / dt[:, None]
    pos = 0.5 * (p1 + p2)
    tm = 0.5 * (te1[idx] + te2[idx])
    energy = 0.5 * np.einsum("ij,ij->i", vel, vel) - GM_SUN / np.linalg.norm(pos, axis=1)
    bound = energy < 0
    idx, pos, vel, tm = idx[bound], pos[bound], vel[bound], tm[bound]
    delta = 0.5 * (rho1[idx] + rho2[idx])
    if idx.size:
        pos, vel = propagate(pos, vel, t_ref - tm)
    return idx, pos, vel, delta


def _points(
    pos: NDArray, vel: NDArray, delta: NDArray, vel_scale: float, config: HelioLincConfig
) -> NDArray:
    """7-D points: 6-D state in units of the clustering radius of its geocentric-distance bin,
    plus the bin number times 1e6 (so that bins never mix)."""
    step = np.log(config.geo_log_step)
    gbin = np.floor(np.log(delta) / step)
    scale = config.cluster_radius_km / AU_KM * np.exp((gbin + 0.5) * step)
    return np.concatenate(
        [pos / scale[:, None], vel * (vel_scale / scale)[:, None], gbin[:, None] * 1e6], axis=1
    )


def _fof(pts: NDArray, radius: float) -> NDArray[np.int64]:
    """Friends-of-friends labels (DBSCAN with ``min_samples = 2``) of points."""
    n = len(pts)
    if n < 2:
        return np.arange(n)
    pairs = cKDTree(pts).query_pairs(radius, output_type="ndarray")
    if pairs.size == 0:
        return np.arange(n)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _count_distinct(lab: NDArray, values: NDArray) -> NDArray[np.int64]:
    """Number of distinct ``values`` per label (indexed by label)."""
    v = values - values.min()
    key = np.unique(lab.astype(np.int64) * (int(v.max()) + 1) + v)
    return np.bincount(key // (int(v.max()) + 1), minlength=int(lab.max()) + 1)


def _good_clusters(
    labels: NDArray, trk: NDArray, geo: _Geometry, config: HelioLincConfig
) -> tuple[list[NDArray], NDArray[np.bool_]]:
    """Clusters that meet the size, night and time-span cuts.

    Returns the tracklet-index sets of the good clusters and a mask over the points of those
    clusters (good or too large) that hold more tracklets than nights, i.e. possibly several
    objects, which are worth splitting with a smaller radius.
    """
    counts = np.bincount(labels)
    keep = (counts >= config.min_tracklets)[labels]
    split = np.zeros(labels.size, dtype=bool)
    if not keep.any():
        return [], split
    pidx = np.flatnonzero(keep)
    lab, trk = labels[keep], trk[keep]
    order = np.lexsort((trk, lab))
    lab, trk, pidx = lab[order], trk[order], pidx[order]
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    t_mid = geo.mjd_mid[trk]
    span = np.maximum.reduceat(t_mid, starts) - np.minimum.reduceat(t_mid, starts)
    nights = geo.night[trk]
    n_nights = _count_distinct(lab, nights)[lab[starts]]
    size = counts[lab[starts]]
    plausible = (span >= config.min_timespan) & (n_nights >= config.min_nights)
    good = plausible & (size <= config.max_cluster_tracklets)
    bounds = np.r_[starts, lab.size]
    crowded = plausible & (size > n_nights)
    for k in np.flatnonzero(crowded):
        split[pidx[bounds[k] : bounds[k + 1]]] = True
    return [trk[bounds[k] : bounds[k + 1]] for k in np.flatnonzero(good)], split


# --------------------------------------------------------------------------------------------
# Step 4: batched fit and purification
# --------------------------------------------------------------------------------------------


@dataclass
class _DetArrays:
    """Per-detection arrays used by the refinement."""

    u: NDArray
    mjd: NDArray
    sig: NDArray  # radians
    night: NDArray
    expid: NDArray
    par: NDArray  # observer minus geocentre, Earth radii, (N, 3)


def _det_arrays(dets: pd.DataFrame, config: HelioLincConfig) -> _DetArrays:
    mjd = dets["mjd"].to_numpy(dtype=float)
    topo, _ = observer_heliocentric_posvel(mjd, config.obscode)
    geoc, _ = observer_heliocentric_posvel(mjd, "500")
    sig = np.hypot(dets["sigma"].to_numpy(dtype=float), config.sys_arcsec) * ARCSEC
    return _DetArrays(
        u=radec_to_unit(dets["ra"].to_numpy(), dets["dec"].to_numpy()),
        mjd=mjd,
        sig=sig,
        night=night_index(mjd),
        expid=dets["expid"].to_numpy(),
        par=(topo - geoc) / _R_EARTH_AU,
    )


def _fit(
    rows: NDArray,
    valid: NDArray,
    d: _DetArrays,
    w0: NDArray,
    cubic_arc: float,
    prior: float = 0.3,
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """Weighted polynomial + parallax fits of padded candidates.

    Parameters
    ----------
    rows : (M, L) detection indices (any value where not valid).
    valid : (M, L) bool.
    w0 : (M,) prior for the parallax factor (Earth radius / Delta, radians).
    cubic_arc : float
        Candidates spanning more days get a cubic instead of a quadratic in time.
    prior : float
        Relative width of the Gaussian prior on the parallax factor.

    Returns
    -------
    z : (M, L) normalised 2-D residuals (0 where not valid).
    res2 : (M, L) squared 2-D residuals, radians^2.
    w : (M,) fitted parallax factor.
    n_par : (M,) number of fitted parameters (7 or 9).
    """
    uu = d.u[rows]
    center = np.sum(uu * valid[..., None], axis=1)
    center /= np.linalg.norm(center, axis=1, keepdims=True)
    c, east, north = _tangent_basis(center)
    xi, eta = gnomonic(uu, c[:, None, :])
    wt = np.where(valid, 1.0 / d.sig[rows] ** 2, 0.0)
    t = d.mjd[rows]
    tc = np.sum(wt * t, axis=1) / np.sum(wt, axis=1)
    t = t - tc[:, None]
    arc = np.max(np.where(valid, t, -np.inf), axis=1) - np.min(np.where(valid, t, np.inf), axis=1)
    cubic = arc > cubic_arc
    par = d.par[rows]
    px = np.sum(par * east[:, None, :], axis=-1)
    py = np.sum(par * north[:, None, :], axis=-1)
    zero = np.zeros_like(t)
    one = np.ones_like(t)
    t2 = t * t
    t3 = t2 * t
    # Parameters: a0..a3 (xi), b0..b3 (eta), parallax factor w.
    ax = np.stack([one, t, t2, t3, zero, zero, zero, zero, -px], axis=-1)  # (M, L, 9)
    ay = np.stack([zero, zero, zero, zero, one, t, t2, t3, -py], axis=-1)
    nmat = np.einsum("mli,mlj,ml->mij", ax, ax, wt) + np.einsum("mli,mlj,ml->mij", ay, ay, wt)
    bvec = np.einsum("mli,ml,ml->mi", ax, xi, wt) + np.einsum("mli,ml,ml->mi", ay, eta, wt)
    sig_w = prior * w0
    nmat[:, 8, 8] += 1.0 / sig_w**2
    bvec[:, 8] += w0 / sig_w**2
    scale = np.einsum("mii->mi", nmat).max(axis=1)
    # Short arcs: pin the cubic terms to zero with a stiff prior.
    stiff = np.where(cubic, 0.0, scale * 1e6)
    nmat[:, 3, 3] += stiff
    nmat[:, 7, 7] += stiff
    # A tiny ridge keeps degenerate (e.g. one-night) candidates solvable.
    nmat += np.eye(9)[None] * (scale * 1e-14)[:, None, None]
    theta = np.linalg.solve(nmat, bvec[..., None])[..., 0]
    rx = xi - np.einsum("mli,mi->ml", ax, theta)
    ry = eta - np.einsum("mli,mi->ml", ay, theta)
    res2 = np.where(valid, rx * rx + ry * ry, 0.0)
    z = np.sqrt(res2) / d.sig[rows]
    return np.where(valid, z, 0.0), res2, theta[:, 8], np.where(cubic, 9, 7)


def _duplicate_exposure(rows: NDArray, valid: NDArray, d: _DetArrays) -> NDArray:
    """(M, L) bool: valid detections sharing their exposure with another valid one."""
    ex = np.where(valid, d.expid[rows], -1 - np.arange(rows.shape[1])[None, :])
    order = np.argsort(ex, axis=1, kind="stable")
    se = np.take_along_axis(ex, order, axis=1)
    eq = se[:, 1:] == se[:, :-1]
    dup_sorted = np.zeros_like(valid)
    dup_sorted[:, 1:] |= eq
    dup_sorted[:, :-1] |= eq
    dup = np.zeros_like(valid)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    return dup & valid


@dataclass
class _Purified:
    """Result of :func:`_purify` for a list of candidates."""

    rows: list[NDArray]
    ok: NDArray
    n_det: NDArray
    n_nights: NDArray
    arc: NDArray
    rms: NDArray
    chi2: NDArray
    delta: NDArray


def _purify_block(
    rows: NDArray, valid: NDArray, d: _DetArrays, w0: NDArray, config: HelioLincConfig
) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray]:
    """Iterative outlier rejection on one padded block; returns valid, z, res2, w, n_par."""
    valid = valid.copy()
    m = rows.shape[0]
    ar = np.arange(m)
    for _ in range(rows.shape[1]):
        z, res2, w, _ = _fit(rows, valid, d, w0, config.cubic_arc_days, config.parallax_prior)
        dup = _duplicate_exposure(rows, valid, d)
        has_dup = dup.any(axis=1)
        z_dup = np.where(dup, z, -1.0)
        worst = np.where(has_dup, np.argmax(z_dup, axis=1), np.argmax(z, axis=1))
        zmax = z[ar, worst]
        n_valid = valid.sum(axis=1)
        drop = (has_dup | (zmax > config.outlier_nsigma)) & (n_valid > config.min_detections - 1)
        if not drop.any():
            break
        valid[ar[drop], worst[drop]] = False
    z, res2, w, n_par = _fit(rows, valid, d, w0, config.cubic_arc_days, config.parallax_prior)
    return valid, z, res2, w, n_par


def _purify(
    cands: list[NDArray], delta: NDArray, d: _DetArrays, config: HelioLincConfig
) -> _Purified:
    """Purify candidate detection sets (lists of detection indices) in padded batches."""
    n = len(cands)
    out_rows: list[NDArray] = [np.zeros(0, dtype=np.int64)] * n
    names = ("n_det", "n_nights", "arc", "rms", "chi2", "delta", "pvalue")
    stats = {k: np.zeros(n) for k in names}
    if n == 0:
        return _Purified(out_rows, np.zeros(0, dtype=bool), *(stats[k] for k in names[:-1]))
    lengths = np.array([len(c) for c in cands])
    order = np.argsort(lengths, kind="stable")
    start = 0
    while start < n:
        ln = lengths[order[start]]
        stop = start
        # Blocks of similar length with at most ~4e5 padded cells.
        while (
            stop < n
            and lengths[order[stop]] <= max(2 * ln, 8)
            and ((stop - start + 1) * lengths[order[stop]] <= 400_000)
        ):
            stop += 1
        stop = max(stop, start + 1)
        idx = order[start:stop]
        width = lengths[idx].max()
        rows = np.zeros((idx.size, width), dtype=np.int64)
        valid = np.zeros((idx.size, width), dtype=bool)
        for k, ci in enumerate(idx):
            rows[k, : lengths[ci]] = cands[ci]
            valid[k, : lengths[ci]] = True
        w0 = _R_EARTH_AU / delta[idx]  # parallax (radians) per Earth radius of offset
        valid, z, res2, w, n_par = _purify_block(rows, valid, d, w0, config)
        n_det = valid.sum(axis=1)
        t = np.where(valid, d.mjd[rows], np.nan)
        nights = np.where(valid, d.night[rows], -1)
        srt = np.sort(nights, axis=1)
        n_nights = np.sum((srt[:, 1:] != srt[:, :-1]) & (srt[:, 1:] >= 0), axis=1) + (
            srt[:, 0] >= 0
        )
        dof = np.maximum(2 * n_det - n_par, 1)
        stats["n_det"][idx] = n_det
        stats["n_nights"][idx] = n_nights
        stats["arc"][idx] = np.nanmax(t, axis=1) - np.nanmin(t, axis=1)
        stats["rms"][idx] = np.sqrt(res2.sum(axis=1) / np.maximum(n_det, 1)) / ARCSEC
        stats["chi2"][idx] = np.sum(z * z, axis=1) / dof
        stats["pvalue"][idx] = chi2_dist.sf(np.sum(z * z, axis=1), dof)
        stats["delta"][idx] = np.where(w > 0, _R_EARTH_AU / np.maximum(w, 1e-300), np.inf)
        for k, ci in enumerate(idx):
            out_rows[ci] = rows[k][valid[k]]
        start = stop
    ok = (
        (stats["n_det"] >= config.min_detections)
        & (stats["n_nights"] >= config.min_nights)
        & (stats["arc"] >= config.min_timespan)
        & (stats["rms"] <= config.max_rms_arcsec)
        & (stats["pvalue"] >= config.min_chi2_pvalue)
    )
    stats.pop("pvalue")
    return _Purified(out_rows, ok, *(stats[k] for k in stats))


def refine_linkages(
    cands: list[NDArray],
    delta: NDArray,
    dets: pd.DataFrame,
    config: HelioLincConfig | None = None,
    accept: AcceptFn | None = None,
    _darr: _DetArrays | None = None,
) -> tuple[list[NDArray], pd.DataFrame]:
    """Purify candidate linkages and choose a non-overlapping set (steps 4-5 of :func:`link`).

    Parameters
    ----------
    cands : list of ndarray
        Candidate linkages as arrays of **row positions** in ``dets``.
    delta : ndarray
        Geocentric distance (au) of each candidate, the prior of the parallax fit.
    dets : pandas.DataFrame
        Detection table.
    config : HelioLincConfig, optional
    accept : callable, optional
        ``accept(dets_of_linkage) -> (ok, score)``, consulted lazily in greedy order.

    Returns
    -------
    chosen : list of ndarray
        Row positions of each accepted linkage.
    stats : pandas.DataFrame
        Per accepted linkage: ``cand`` (index into ``cands``), ``n_det``, ``n_nights``,
        ``arc_days``, ``rms_arcsec``, ``chi2``, ``score``, ``accept_score``, ``delta_au``.
    """
    config = config or HelioLincConfig()
    d = _darr if _darr is not None else _det_arrays(dets, config)
    used = np.zeros(len(dets), dtype=bool)
    chosen: list[NDArray] = []
    records: list[tuple] = []
    pending = list(range(len(cands)))
    cur_rows = list(cands)
    cur_delta = np.asarray(delta, dtype=float)
    for _round in range(max(config.refine_rounds, 1)):
        if not pending:
            break
        pur = _purify([cur_rows[k] for k in pending], cur_delta[pending], d, config)
        score = pur.n_det * pur.n_nights / (1.0 + pur.chi2)
        good = np.flatnonzero(pur.ok)
        # Identical purified sets: keep one (the first in score order).
        good = good[np.argsort(-score[good], kind="stable")]
        seen: set[bytes] = set()
        setaside: list[int] = []
        for g in good:
            rows = np.sort(pur.rows[g])
            key = rows.tobytes()
            if key in seen:
                continue
            seen.add(key)
            if used[rows].any():
                setaside.append(g)
                continue
            acc_score = np.nan
            if accept is not None:
                ok, acc_score = accept(dets.iloc[rows])
                if not ok:
                    continue
            used[rows] = True
            chosen.append(rows)
            rec = (pending[g], pur.n_det[g], pur.n_nights[g], pur.arc[g], pur.rms[g])
            records.append((*rec, pur.chi2[g], score[g], float(acc_score), pur.delta[g]))
        # Set-aside candidates lose the used detections and compete again.
        nxt = []
        for g in setaside:
            rows = pur.rows[g][~used[pur.rows[g]]]
            if rows.size >= config.min_detections:
                cur_rows[pending[g]] = rows
                nxt.append(pending[g])
        pending = nxt
    stats = pd.DataFrame(
        records,
        columns=[
            "cand", "n_det", "n_nights", "arc_days", "rms_arcsec", "chi2", "score",
            "accept_score", "delta_au",
        ],
    )  # fmt: skip
    stats["n_det"] = stats["n_det"].astype(np.int64)
    stats["n_nights"] = stats["n_nights"].astype(np.int64)
    return chosen, stats


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def link(
    tracklets: pd.DataFrame,
    members: pd.DataFrame,
    dets: pd.DataFrame,
    config: HelioLincConfig | None = None,
    accept: AcceptFn | None = None,
    hypotheses: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Link tracklets across nights into candidate objects (HelioLinC, see the module doc).

    Parameters
    ----------
    tracklets, members : pandas.DataFrame
        Output of :func:`zsds.moving.tracklets.make_tracklets`.
    dets : pandas.DataFrame
        Detection table containing every ``det_id`` of ``members``.
    config : HelioLincConfig, optional
        Parameters.
    accept : callable, optional
        ``accept(linkage_dets) -> (ok, score)``, e.g. an orbit fit; ``linkage_dets`` holds the
        rows of ``dets`` of one linkage. Consulted only for candidates about to be accepted.
    hypotheses : pandas.DataFrame, optional
        ``r``, ``rdot``, ``rddot`` columns; default :func:`hypothesis_grid` of ``config``.

    Returns
    -------
    linkages : pandas.DataFrame
        One row per linkage with the columns :data:`LINKAGE_COLUMNS`: ``link_id``, ``n_det``,
        ``n_nights``, ``n_tracklets`` (of the cluster it came from), ``arc_days``,
        ``mjd_first``, ``mjd_last``, ``rms_arcsec`` (fit RMS of the 2-D residual),
        ``chi2`` (reduced), ``score`` (selection metric), ``accept_score`` (NaN without
        ``accept``), ``delta_au`` (rough geocentric distance from the parallax term of the
        fit, +-25 %), ``r_hyp``, ``rdot_hyp`` (the first hypothesis that produced it) and
        ``n_hyp`` (how many hypotheses produced it).
        ``linkages.attrs["timings"]`` holds seconds spent in ``cluster`` and ``refine`` and
        counts of hypotheses, raw clusters and unique candidates.
    link_members : pandas.DataFrame
        ``link_id``, ``det_id`` (each detection in at most one linkage).
    """
    config = config or HelioLincConfig()
    hyps = hypotheses if hypotheses is not None else hypothesis_grid(config)
    timings: dict[str, float] = {"n_hypotheses": float(len(hyps))}
    empty_links = pd.DataFrame({c: pd.Series(dtype=float) for c in LINKAGE_COLUMNS})
    empty_members = pd.DataFrame(
        {"link_id": pd.Series(dtype=np.int64), "det_id": pd.Series(dtype=np.int64)}
    )
    if len(tracklets) == 0:
        empty_links.attrs["timings"] = timings
        return empty_links, empty_members

    t0 = time.perf_counter()
    tracklets = tracklets.reset_index(drop=True)
    geo = _geometry(tracklets, config.obscode)
    t_lo = float(tracklets["mjd_start"].min())
    t_hi = float(tracklets["mjd_end"].max())
    t_ref = config.t_ref if config.t_ref is not None else 0.5 * (t_lo + t_hi)
    vel_scale = config.vel_scale if config.vel_scale is not None else max(t_hi - t_lo, 0.1) / 4
    found: dict[bytes, list] = {}
    n_raw = 0
    for h in hyps[["r", "rdot", "rddot"]].itertuples(index=False):
        hyp = (float(h[0]), float(h[1]), float(h[2]))
        idx, pos, vel, delta = _states(geo, hyp, t_ref)
        if idx.size < config.min_tracklets:
            continue
        pts = _points(pos, vel, delta, vel_scale, config)
        dmap = np.full(len(tracklets), np.nan)
        dmap[idx] = delta
        sub = np.arange(idx.size)
        radius = 1.0
        for _level in range(config.split_levels + 1):
            labels = _fof(pts[sub], radius)
            clusters, split = _good_clusters(labels, idx[sub], geo, config)
            for trk in clusters:
                n_raw += 1
                key = trk.tobytes()
                entry = found.get(key)
                if entry is None:
                    found[key] = [trk, float(np.mean(dmap[trk])), hyp, 1]
                else:
                    entry[3] += 1
            # Crowded clusters (more tracklets than nights) again with half the radius.
            sub = sub[split]
            radius *= 0.5
            if sub.size < config.min_tracklets:
                break
    t1 = time.perf_counter()
    timings["cluster"] = t1 - t0
    timings["n_raw_clusters"] = float(n_raw)
    timings["n_candidates"] = float(len(found))

    # Candidate detection sets (row positions in dets).
    det_pos = pd.Index(dets["det_id"].to_numpy()).get_indexer(members["det_id"].to_numpy())
    if np.any(det_pos < 0):
        raise ValueError("members refer to det_id values missing from dets")
    trk_pos = pd.Index(tracklets["trk_id"].to_numpy()).get_indexer(members["trk_id"].to_numpy())
    order = np.argsort(trk_pos, kind="stable")
    trk_sorted, det_sorted = trk_pos[order], det_pos[order]
    bounds = np.searchsorted(trk_sorted, np.arange(len(tracklets) + 1))
    entries = list(found.values())
    cands = [
        np.unique(np.concatenate([det_sorted[bounds[k] : bounds[k + 1]] for k in e[0]]))
        for e in entries
    ]
    delta = np.array([e[1] for e in entries]) if entries else np.zeros(0)
    chosen, stats = refine_linkages(cands, delta, dets, config, accept)
    timings["refine"] = time.perf_counter() - t1

    if not chosen:
        empty_links.attrs["timings"] = timings
        return empty_links, empty_members
    mjd = dets["mjd"].to_numpy(dtype=float)
    link_id = np.arange(len(chosen), dtype=np.int64)
    src = [entries[c] for c in stats["cand"].to_numpy()]
    linkages = pd.DataFrame(
        {
            "link_id": link_id,
            "n_det": stats["n_det"].to_numpy(),
            "n_nights": stats["n_nights"].to_numpy(),
            "n_tracklets": np.array([len(e[0]) for e in src], dtype=np.int64),
            "arc_days": stats["arc_days"].to_numpy(),
            "mjd_first": np.array([mjd[r].min() for r in chosen]),
            "mjd_last": np.array([mjd[r].max() for r in chosen]),
            "rms_arcsec": stats["rms_arcsec"].to_numpy(),
            "chi2": stats["chi2"].to_numpy(),
            "score": stats["score"].to_numpy(),
            "accept_score": stats["accept_score"].to_numpy(),
            "delta_au": stats["delta_au"].to_numpy(),
            "r_hyp": np.array([e[2][0] for e in src]),
            "rdot_hyp": np.array([e[2][1] for e in src]),
            "n_hyp": np.array([e[3] for e in src], dtype=np.int64),
        }
    )
    det_ids = dets["det_id"].to_numpy()
    link_members = pd.DataFrame(
        {
            "link_id": np.repeat(link_id, [len(r) for r in chosen]),
            "det_id": det_ids[np.concatenate(chosen)].astype(np.int64),
        }
    )
    linkages.attrs["timings"] = timings
    return linkages[list(LINKAGE_COLUMNS)], link_members
