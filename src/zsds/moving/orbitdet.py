"""Orbit determination for real astrometry: any arc from one night to decades, N-body.

:func:`determine_orbit` fits one object's observations (a :func:`~zsds.moving.mpc80.read_mpc80`
or :func:`~zsds.moving.ades.read_ades` frame, or any frame of :mod:`zsds.moving.orbitfit`'s
columns) by weighted least squares on the heliocentric state at a reference epoch.

Method
------
1. **Weights** (:func:`observation_sigmas`): a ``sigma`` column wins; ADES ``rmsRA``/``rmsDec``
   come next; 80-column records, which carry none, get a simplified scheme in the spirit of
   Vereš et al. (2017, Icarus 296, 139): photographic 1.5" (3" before 1950), CCD and other
   electronic types 1.0", 0.5" when reduced with a Gaia catalogue (codes ``U V W X 3 6``), and
   any station's batch of more than four observations in one night inflated by
   ``sqrt(n / 4)``, so that one night of one station does not dominate. Observations flagged
   deleted or replaced (``X``, ``x``) are dropped.
2. **Apparitions**: the arc is cut where observations are more than ``gap_days`` apart.
3. **Seed**: the apparition with most observations is fitted by :func:`~zsds.moving.
   orbitfit.fit_orbit` (Gauss's method and the differential correction, refined with N-body
   where the two-body error budget demands it); the next apparitions are tried if it fails.
   An element set given as ``initial`` replaces this step.
4. **Progressive extension**: the fitted arc grows one apparition at a time, the nearest in
   time first, as long as the span at most doubles (at least one apparition per stage); each
   stage is an N-body differential correction (ASSIST, DE440 + 16 asteroids) started from
   the previous solution, whose predictions are within the linear range of the new
   apparition.
5. **Outliers** (Carpino et al. 2003, as in OrbFit): after each fit an observation whose
   normalised squared residual ``(dRA^2 + dDec^2) / sigma^2`` exceeds ``reject_chi2`` times
   the fit's reduced chi-square (when above 1) is rejected, a rejected one below
   ``recover_chi2`` times it is taken back, and the fit is redone until nothing changes.

The result is an :class:`~zsds.moving.orbitfit.OrbitFit` (state, elements, formal covariance,
residuals of every observation, rejected flags); :func:`element_uncertainties` turns the
covariance into 1-sigma uncertainties of the elements.

Hyperbolic orbits are allowed by default (``allow_hyperbolic``): the seed fit first tries
bound orbits, then unbound ones when that fails, and the N-body stages have no bound
penalty.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from zsds.moving.orbitfit import (
    OrbitFit,
    OrbitFitConfig,
    _finish,
    _lsq,
    _Obs,
    _prepare_many,
    _residuals_arcsec,
    _Solution,
    _to_epoch,
    fit_orbit,
)
from zsds.solar.nbody import needs_nbody, resolve_engine
from zsds.solar.orbits import Orbits, elements_to_state, state_to_elements

__all__ = [
    "OrbitDeterminationConfig",
    "apparitions",
    "determine_orbit",
    "element_uncertainties",
    "observation_sigmas",
]

#: MPC astrometric catalogue codes of Gaia releases (DR1, DR2, DR3, EDR3, Gaia-Int, 2016).
GAIA_CATALOGUES = frozenset("UVWX36")
#: 80-column observation types dropped by :func:`observation_sigmas` (deleted/replaced).
DROPPED_TYPES = frozenset("Xx")
_PHOTOGRAPHIC = frozenset(("", " ", "P", "A", "N"))


@dataclass(frozen=True)
class OrbitDeterminationConfig:
    """Knobs of :func:`determine_orbit`.

    ``engine`` "two-body" keeps every stage two-body (for comparisons). ``reject_chi2`` and
    ``recover_chi2`` apply to the normalised squared residual of an observation (two axes), in
    units of the reduced chi-square when that exceeds 1.
    """

    engine: str = "auto"  #: "auto" (N-body beyond the two-body error budget), "nbody", "two-body"
    gap_days: float = 90.0  #: apparitions are separated by gaps longer than this (days)
    min_seed_obs: int = 6  #: fewest observations of a seed apparition
    reject_chi2: float = 10.0  #: rejection threshold on an observation's normalised residual^2
    recover_chi2: float = 8.0  #: recovery threshold (<= reject_chi2), same units
    max_reject_fraction: float = 0.1  #: most observations rejected, share of all
    max_passes: int = 6  #: most fit-and-reject passes per stage
    max_iter: int = 40  #: most residual evaluations of one least-squares run
    allow_hyperbolic: bool = True  #: accept unbound orbits
    max_rms_arcsec: float = 2.0  #: largest per-axis rms of the used observations for ok (arcsec)

    def __post_init__(self) -> None:
        resolve_engine(self.engine)
        if self.recover_chi2 > self.reject_chi2:
            raise ValueError("recover_chi2 must not exceed reject_chi2")


# --------------------------------------------------------------------------------------------
# Weights and apparitions
# --------------------------------------------------------------------------------------------


def observation_sigmas(obs: pd.DataFrame) -> NDArray[np.float64]:
    """Per-axis astrometric uncertainty (arcsec) of each observation.

    Parameters
    ----------
    obs : pandas.DataFrame
        Observations with ``mjd`` and, as available, ``sigma`` (used as is), ADES ``rmsRA``
        and ``rmsDec`` (combined as ``sqrt((rmsRA^2 + rmsDec^2) / 2)``), or the 80-column
        ``obs_type``, ``astcat`` and ``stn``.

    Returns
    -------
    ndarray
        Sigma per observation; NaN for observations that must not be used (types ``X``,
        ``x``). See the module docstring for the scheme.
    """
    n = len(obs)
    mjd = obs["mjd"].to_numpy(dtype=float)
    sigma = np.full(n, np.nan)
    if "sigma" in obs:
        sigma = obs["sigma"].to_numpy(dtype=float).copy()
    if {"rmsRA", "rmsDec"} <= set(obs.columns):
        rms = np.sqrt(0.5 * (obs["rmsRA"].to_numpy(dtype=float) ** 2
                             + obs["rmsDec"].to_numpy(dtype=float) ** 2))
        sigma = np.where(np.isfinite(sigma), sigma, rms)
    todo = ~np.isfinite(sigma)
    if np.any(todo):
        kind = (obs["obs_type"].fillna("").astype(str).to_numpy() if "obs_type" in obs
                else np.full(n, "C"))
        cat = (obs["astcat"].fillna("").astype(str).to_numpy() if "astcat" in obs
               else np.full(n, ""))
        year = 2000.0 + (mjd - 51544.5) / 365.25
        photo = np.isin(kind, list(_PHOTOGRAPHIC))
        gaia = np.isin(cat, list(GAIA_CATALOGUES))
        base = np.where(photo, np.where(year < 1950.0, 3.0, 1.5), np.where(gaia, 0.5, 1.0))
        # Batches: one station, one night (UTC date), more than four observations.
        stn = (obs["stn"] if "stn" in obs else obs.get("obscode", pd.Series(["?"] * n)))
        key = pd.Series(stn.astype(str).to_numpy()) + ":" + pd.Series(
            np.floor(mjd).astype(np.int64).astype(str))
        size = key.map(key.value_counts()).to_numpy(dtype=float)
        batch = np.sqrt(np.maximum(size / 4.0, 1.0))
        sigma = np.where(todo, base * batch, sigma)
        if "obs_type" in obs:
            sigma[np.isin(kind, list(DROPPED_TYPES))] = np.nan
    return sigma


def apparitions(mjd: NDArray[np.float64], gap_days: float = 90.0) -> NDArray[np.int64]:
    """Apparition number of each observation: a new one starts after a gap > ``gap_days``.

    Parameters
    ----------
    mjd : ndarray
        Observation times (any order).
    gap_days : float, optional
        Gap that separates apparitions.

    Returns
    -------
    ndarray of int
        0, 1, ... in time order, aligned with ``mjd``.
    """
    mjd = np.asarray(mjd, dtype=float)
    order = np.argsort(mjd, kind="stable")
    cut = np.concatenate([[0], (np.diff(mjd[order]) > gap_days).astype(np.int64)])
    out = np.empty(mjd.size, dtype=np.int64)
    out[order] = np.cumsum(cut)
    return out


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


def _normalised_chi2(x: NDArray, t0: float, ob: _Obs) -> NDArray[np.float64]:
    """Per-observation (dRA^2 + dDec^2) / sigma^2 of state x on ``ob``."""
    from zsds.moving.orbitfit import _model_dirs

    d_ra, d_dec = _residuals_arcsec(_model_dirs(x[None, :3], x[None, 3:], t0, ob), ob)
    chi2 = (d_ra[0] ** 2 + d_dec[0] ** 2) / ob.sigma**2
    return np.where(np.isfinite(chi2), chi2, np.inf)


def _fit_stage(
    x0: NDArray,
    t0: float,
    ob: _Obs,
    active: NDArray[np.bool_],
    used: NDArray[np.bool_],
    cfg: OrbitDeterminationConfig,
    fit_cfg: OrbitFitConfig,
) -> tuple[_Solution | None, NDArray[np.bool_], int]:
    """Fit the ``active`` observations, rejecting and recovering outliers until stable.

    ``used`` (the current acceptance of every observation) is updated for the active ones.
    Returns the solution (None when the first least squares failed), the new ``used`` and the
    evaluations spent.
    """
    used = used.copy()
    nfev = 0
    best: _Solution | None = None
    x = x0
    n_active = int(active.sum())
    max_rej = int(cfg.max_reject_fraction * n_active)
    for _ in range(cfg.max_passes):
        mask = active & used
        sol = _lsq(x, t0, ob.subset(mask), fit_cfg)
        nfev += sol.nfev
        if not sol.converged and best is not None:
            break
        best, x = sol, sol.x
        chi2 = _normalised_chi2(x, t0, ob.subset(active))
        dof = max(2 * int(mask.sum()) - 6, 1)
        scale = max(1.0, float(np.sum(chi2[used[active]])) / dof)
        new = used[active].copy()
        new[chi2 > cfg.reject_chi2 * scale] = False
        new[chi2 < cfg.recover_chi2 * scale] = True
        if int(np.sum(~new)) > max_rej:  # keep the max_rej best-fitting rejections only
            worst = np.argsort(-chi2)[:max_rej]
            new[:] = True
            new[worst] = chi2[worst] <= cfg.reject_chi2 * scale
        if np.array_equal(new, used[active]):
            break
        used[active] = new
    return best, used, nfev


def _seed(
    obs: pd.DataFrame,
    app: NDArray[np.int64],
    cfg: OrbitDeterminationConfig,
    designation: str,
) -> tuple[OrbitFit | None, int | None]:
    """Fit the richest apparitions in turn until one gives an orbit."""
    counts = np.bincount(app)
    order = np.lexsort((-np.arange(counts.size), -counts))  # most observations, then latest
    fallback: tuple[OrbitFit | None, int | None] = (None, None)
    for a in order:
        if counts[a] < cfg.min_seed_obs:
            break
        sub = obs[app == a]
        for hyperbolic in ((False, True) if cfg.allow_hyperbolic else (False,)):
            fc = OrbitFitConfig(engine=cfg.engine, allow_hyperbolic=hyperbolic,
                                max_rms_arcsec=max(cfg.max_rms_arcsec, 3.0),
                                max_reject_fraction=0.2, max_reject_passes=5)
            fit = fit_orbit(sub, config=fc, designation=designation)
            if fit.ok:
                return fit, int(a)
            if fit.orbit is not None and fallback[0] is None:
                fallback = (fit, int(a))
    return fallback


def determine_orbit(
    obs: pd.DataFrame,
    config: OrbitDeterminationConfig | None = None,
    initial: Orbits | None = None,
    designation: str | None = None,
) -> OrbitFit:
    """N-body least-squares orbit of one object's astrometry, any arc length.

    Parameters
    ----------
    obs : pandas.DataFrame
        Observations of one object: ``mjd`` (UTC), ``ra``, ``dec`` (deg), the station
        (``stn`` or ``obscode``) and what the observations carry (see
        :mod:`zsds.moving.orbitfit`), plus whatever :func:`observation_sigmas` uses.
    config : OrbitDeterminationConfig, optional
        Thresholds.
    initial : Orbits, optional
        A starting element set (first row used) instead of the seed apparition fit.
    designation : str, optional
        Name of the fitted orbit (default: the ``designation`` column, else ``"fit"``).

    Returns
    -------
    OrbitFit
        The fit at the reference epoch (the seed's, or the observation time nearest the
        initial orbit's epoch); ``rejected`` marks outliers and dropped observations;
        ``sigma`` holds the weights (NaN for dropped observations); ``message`` summarises the
        stages.
    """
    cfg = config or OrbitDeterminationConfig()
    if designation is None:
        designation = (str(obs["designation"].iloc[0]) if "designation" in obs and len(obs)
                       and pd.notna(obs["designation"].iloc[0]) else "fit")
    sigma = observation_sigmas(obs)
    keep = np.isfinite(sigma)
    frame = obs.reset_index(drop=True).assign(sigma=sigma)
    work = frame[keep].reset_index(drop=True)
    n_all = len(obs)
    fit_cfg = OrbitFitConfig(engine=cfg.engine, allow_hyperbolic=cfg.allow_hyperbolic,
                             max_rms_arcsec=cfg.max_rms_arcsec, max_iter=cfg.max_iter,
                             max_a_au=1e6)
    if len(work) < 3:
        raise ValueError(f"too few usable observations ({len(work)})")
    app = apparitions(work["mjd"].to_numpy(), cfg.gap_days)
    n_app = int(app.max()) + 1
    stages: list[str] = []

    (ob,) = _prepare_many([work], fit_cfg)
    app_sorted = app[ob.order]

    if initial is not None:
        r, v = elements_to_state(initial[:1])
        epoch = float(initial.epoch[0])
        t0 = float(ob.tdb[int(np.argmin(np.abs(ob.tdb - epoch)))])
        x = _to_epoch_nbody(r[0], v[0], epoch, t0, _use_nbody(cfg, r[0], v[0], epoch, [t0]))
        centre = int(app_sorted[int(np.argmin(np.abs(ob.tdb - t0)))])
        stages.append("initial orbit")
    else:
        if n_app == 1:
            fit = fit_orbit(work, config=replace(fit_cfg, max_reject_fraction=0.2,
                                                 max_reject_passes=5),
                            designation=designation)
            return _expand(fit, keep, n_all)
        seed, centre = _seed(work, app, cfg, designation)
        if seed is None or seed.state is None:
            fit = fit_orbit(work, config=fit_cfg, designation=designation)
            return _expand(replace(fit, message="no apparition gave a seed orbit; "
                                   + fit.message), keep, n_all)
        t0 = float(seed.epoch)
        x = np.concatenate(seed.state)
        stages.append(f"seed: apparition of {int(np.sum(app == centre))} obs, "
                      f"rms {seed.rms_arcsec:.2f}\" ({seed.engine})")

    # N-body for the extension unless forced off, or unavailable (then two-body, with the
    # fallback warning of zsds.solar.nbody).
    ob = ob.with_engine(_use_nbody(cfg, x[:3], x[3:], t0, ob.tdb))
    used = np.ones(len(ob), bool)
    lo = hi = centre
    span_of = {a: (ob.tdb[app_sorted == a].min(), ob.tdb[app_sorted == a].max())
               for a in range(n_app)}
    nfev = 0
    best: _Solution | None = None
    fitted = (lo, hi)  # apparitions of the last successful stage
    best_used = used
    while True:
        active = (app_sorted >= lo) & (app_sorted <= hi)
        sol, stage_used, nf = _fit_stage(x, t0, ob, active, used, cfg, fit_cfg)
        nfev += nf
        if sol is None or not np.all(np.isfinite(sol.x)):
            break
        best, x, used = sol, sol.x, stage_used
        fitted, best_used = (lo, hi), stage_used
        stages.append(f"{int(active.sum())} obs ({hi - lo + 1} apparitions)")
        if lo == 0 and hi == n_app - 1:
            break
        lo, hi = _extend(lo, hi, n_app, span_of)
    if best is None:
        return _expand(replace(_finish_failed(ob), message="the fit failed at the first "
                               "stage"), keep, n_all)
    lo, hi = fitted
    complete = lo == 0 and hi == n_app - 1
    active = (app_sorted >= lo) & (app_sorted <= hi)
    used_all = best_used & active
    fit = _finish(ob, best, used_all, None, t0, len(ob), float(ob.mjd[-1] - ob.mjd[0]),
                  fit_cfg, designation, nfev)
    msg = "; ".join(stages)
    if not complete:
        msg = "stopped before the whole arc: " + msg
        fit = replace(fit, ok=False)
    return _expand(replace(fit, message=f"{fit.message} | {msg}"), keep, n_all)


def _use_nbody(cfg: OrbitDeterminationConfig, r: NDArray, v: NDArray, t0: float,
               times: NDArray | list[float]) -> bool:
    """N-body when forced, or when "auto" finds the two-body budget exceeded (and can run it)."""
    if cfg.engine == "nbody":
        return True
    return cfg.engine == "auto" and needs_nbody(r, v, t0, times)


def _to_epoch_nbody(r: NDArray, v: NDArray, epoch: float, t0: float, nbody: bool) -> NDArray:
    if nbody:
        from zsds.solar.nbody import nbody_states

        p, q = nbody_states(r, v, epoch, [t0])
        return np.concatenate([p[0, 0], q[0, 0]])
    x = _to_epoch((r, v, epoch), t0)
    if x is None:
        raise ValueError("could not propagate the initial orbit to the reference epoch")
    return x


def _extend(lo: int, hi: int, n_app: int, span_of: dict) -> tuple[int, int]:
    """Add apparitions nearest in time first while the span at most doubles (at least one)."""
    start, end = span_of[lo][0], span_of[hi][1]
    width = max(end - start, 30.0)
    added = False
    while lo > 0 or hi < n_app - 1:
        before = start - span_of[lo - 1][0] if lo > 0 else np.inf
        after = span_of[hi + 1][1] - end if hi < n_app - 1 else np.inf
        step = min(before, after)
        if added and (end - start) + step > 2.0 * width:
            break
        if before <= after:
            lo -= 1
            start = span_of[lo][0]
        else:
            hi += 1
            end = span_of[hi][1]
        added = True
    return lo, hi


def _finish_failed(ob: _Obs) -> OrbitFit:
    from zsds.moving.orbitfit import _fail

    n = len(ob)
    return _fail(n, float(ob.mjd[-1] - ob.mjd[0]) if n else 0.0, "failed")


def _expand(fit: OrbitFit, keep: NDArray[np.bool_], n_all: int) -> OrbitFit:
    """Map a fit of the kept observations back to all input rows (dropped = rejected)."""
    if keep.all():
        return fit
    rejected = np.ones(n_all, bool)
    rejected[keep] = fit.rejected
    residuals = np.full((n_all, 2), np.nan)
    residuals[keep] = fit.residuals
    sigma = np.full(n_all, np.nan)
    if fit.sigma.size:
        sigma[keep] = fit.sigma
    return replace(fit, rejected=rejected, residuals=residuals, sigma=sigma, n_obs=n_all)


# --------------------------------------------------------------------------------------------
# Uncertainties
# --------------------------------------------------------------------------------------------

_ELEMENTS = ("a", "e", "inc", "node", "argperi", "mean_anomaly")


def element_uncertainties(fit: OrbitFit, scale_by_chi2: bool = True) -> dict[str, float]:
    """1-sigma uncertainties of the fitted elements from the state covariance.

    The Jacobian of (a, e, i, node, argperi, M, q) with respect to the state is taken by
    central differences and applied to the 6x6 covariance.

    Parameters
    ----------
    fit : OrbitFit
        A fit with ``state`` and ``covariance``.
    scale_by_chi2 : bool, optional
        Multiply the covariance by the reduced chi-square when it exceeds 1 (weights that
        were too optimistic); the formal covariance otherwise.

    Returns
    -------
    dict
        ``a, e, inc, node, argperi, mean_anomaly, q`` (au, deg) -> 1-sigma; NaN without a
        covariance.
    """
    names = (*_ELEMENTS, "q")
    if fit.state is None or fit.covariance is None:
        return dict.fromkeys(names, float("nan"))
    x = np.concatenate(fit.state)
    cov = np.asarray(fit.covariance, dtype=float)
    if scale_by_chi2 and fit.dof > 0:
        cov = cov * max(1.0, fit.chi2 / fit.dof)

    def elements(xs: NDArray) -> NDArray:
        o = state_to_elements(xs[:, :3], xs[:, 3:], fit.epoch)
        vals = np.stack([getattr(o, k) for k in _ELEMENTS] + [o.a * (1.0 - o.e)], axis=1)
        return vals

    h = np.repeat([1e-8 * np.linalg.norm(x[:3]), 1e-8 * np.linalg.norm(x[3:])], 3)
    xs = np.concatenate([x + np.diag(h), x - np.diag(h)])
    vals = elements(xs)
    diff = vals[:6] - vals[6:]
    diff[:, 2:6] = (diff[:, 2:6] + 180.0) % 360.0 - 180.0  # angles across 0/360
    jac = (diff / (2.0 * h[:, None])).T  # (7, 6)
    var = np.einsum("ij,jk,ik->i", jac, cov, jac)
    return {k: float(np.sqrt(max(s, 0.0))) for k, s in zip(names, var, strict=True)}
