"""Light-curve metrics of pipeline 8: the IPAC ``sources`` statistics, a > 100-column feature
set and the best Lomb-Scargle period.

All entry points take flat per-detection arrays (``matchid``, ``mjd``, ``mag``, ``magerr``,
``good``) in any order; they sort by (matchid, mjd) themselves and return one row per unique
matchid, sorted by matchid.  Only *good* points (``good`` and finite time, magnitude and a
positive finite error) enter a statistic; ``nobs`` counts all points.

* :func:`ipac_metrics` fills the IPAC metric columns of :data:`~zsds.lightcurves.model.
  SOURCES_DTYPE` with grouped numpy reductions over all objects at once (no per-object loop).
* :func:`lc_features` computes the full feature set with the Rust ``light-curve`` extractor
  (parallel ``many``) plus the best period.
* :func:`best_period` / :func:`best_periods` find the period in two steps.

  1. Coarse search: ``light-curve``'s FFT-based (Press & Rybicki) Lomb-Scargle periodogram
     on an explicit frequency grid from 0 to ``2/min_period`` (twice the searched range: its
     power is inaccurate near the top of its grid) with ``samples_per_peak`` points per
     peak width ``1/baseline``, run in Rust over all objects with ``many`` (~1-2 ms per
     curve; an astropy ``LombScargle`` loop takes 10-20 ms per curve, far over the budget
     of ~10 s per 10k objects).
  2. Refinement: its ``refine_peaks`` highest peaks inside ``[1/max_period, 1/min_period]``
     are re-evaluated with the exact weighted, floating-mean (generalised; Zechmeister &
     Kürster 2009) Lomb-Scargle power in vectorised numpy, on local grids down to 1/8 of
     the coarse step plus a parabolic interpolation.  The candidate with the highest
     ``nterms``-harmonic power wins (among those with a fair 1-harmonic power, so that a
     subharmonic cannot win), and its peak is located with the same model.

  Refining several candidates fixes the cases where the unweighted power ranks a 1-day
  alias first; the exact refinement makes the period precise (the coarse grid alone is off
  by up to half a step, > 1 % for long periods); ``nterms=2`` (default) places the peak of
  non-sinusoidal curves right and picks their true alias more often.  Recovery to 1 % at
  the default survey's cadence (44 good epochs over 60 nights) and the pipeline's errors,
  r = 14-19, amplitudes >= 0.1 mag, the shapes and periods of :mod:`zsds.sky.model`
  (``zsds eval lightcurves``): sinusoids 98-99 % (the misses are mostly 1-3 % off for
  P > 10 d, i.e. 2-5 cycles, where that is the statistical precision), RR Lyrae-like
  98-100 %, contact binaries 99-100 % at P or P/2, detached eclipsing binaries ~30 %:
  their Gaussian dips (sigma 0.02 in phase) hold only 2-4 of the points; a box search
  (astropy BLS) did no better in a trial.
  ``periodpower`` is the 1-harmonic generalised power at the adopted period, in astropy's
  ``'standard'`` normalisation (0..1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import light_curve as lc
import numpy as np
import pandas as pd

from zsds.lightcurves.model import NSTD, PERCENTILES, SOURCES_DTYPE

__all__ = [
    "IPAC_METRIC_FIELDS",
    "MetricsConfig",
    "best_period",
    "best_periods",
    "fold",
    "gls_power",
    "ipac_metrics",
    "lc_features",
    "metric_columns",
    "period_harmonic",
    "period_matches",
    "phase_folded_features",
]

#: The SOURCES_DTYPE columns that :func:`ipac_metrics` computes (the rest: caller's job).
IPAC_METRIC_FIELDS = (
    "nobs", "ngoodobs", "nobsrel", "ngoodobsrel", "meanmag", "weightedmeanmag",
    "uncalibmeanmag", "medianmag", "minmag", "maxmag", "magrms", "weightedmagrms",
    "medmagerr", "medianabsdev", "percentiles", "chisq", "skewness", "smallkurtosis",
    "stetsonj", "stetsonk", "vonneumannratio", "maxslope", "lineartrend", "npairposslope",
    "nabovemeanbystd", "nbelowmeanbystd", "nconsecabovemeanbystd", "nconsecbelowmeanbystd",
    "nconsecfrommeanbystd", "nmedianbufferrange", "con",
)

_U2_MAX = np.iinfo(np.uint16).max
# Tie-break step for equal times (d, ~0.09 s): light-curve needs strictly increasing times
# and distinct ZTF exposures are >= 30 s apart, so the bump never reorders real epochs.
_TIME_EPS = 1e-6
# Points x frequencies evaluated at once in the exact refinement (bounds the memory to
# ~10 arrays of this many float64).
_REFINE_CHUNK = 2_000_000


@dataclass
class MetricsConfig:
    """Settings of the light-curve metrics.

    The refinement makes ``samples_per_peak`` 5 ample (the grid size is rounded up to a power
    of two, as the FFT method needs). The best refined peak is the period; more
    ``refine_peaks`` are more robust against aliases, linearly slower. ``nterms`` 2 locates the
    peaks of non-sinusoidal (RR Lyrae-like, eclipsing) curves better and prefers the right
    alias for them. ``subharmonic_floor``: a multi-harmonic model at f/2 fits a sinusoid at f
    as well as f does. ``max_grid_log2`` caps very long baselines.
    """

    n_peaks: int = 3  #: periodogram peaks reported as features (period and S/N of each)
    min_period: float = 0.1  #: shortest period searched (d); sets the top of the frequency grid
    max_period: float | None = None  #: longest period searched (d); None: each object's baseline
    samples_per_peak: float = 5.0  #: coarse-grid points per peak width 1/baseline
    refine_peaks: int = 5  #: coarse peaks refined with the exact weighted periodogram
    nterms: int = 2  #: harmonics of the model choosing among refined peaks (1: plain LS)
    subharmonic_floor: float = 0.5  #: least 1-harmonic power, share of the best, to be chosen
    max_grid_log2: int = 20  #: cap of the coarse grid (``2**max_grid_log2`` intervals)
    min_points: int = 5  #: fewer good points: NaN metrics (the counts still filled)
    n_jobs: int = 1  #: threads of light-curve's ``many`` (-1: all CPUs)

    def __post_init__(self) -> None:
        if not self.min_period > 0:
            raise ValueError(f"min_period must be > 0, not {self.min_period}")
        if self.max_period is not None and not self.max_period > self.min_period:
            raise ValueError(f"max_period {self.max_period} must exceed min_period")
        if min(self.n_peaks, self.refine_peaks, self.nterms, self.min_points) < 1:
            raise ValueError("n_peaks, refine_peaks, nterms and min_points must be >= 1")


# --------------------------------------------------------------------------------------------
# grouping


@dataclass
class _Groups:
    """Good points sorted by (object, time), with the object table.

    ``obj`` is the object index (into ``ids``) of each good point, ``start``/``n`` the slice of
    each object's good points (``n`` may be 0), ``nobs`` all points per object.
    """

    ids: np.ndarray
    nobs: np.ndarray
    obj: np.ndarray
    t: np.ndarray
    m: np.ndarray
    e: np.ndarray
    raw: np.ndarray | None
    start: np.ndarray
    n: np.ndarray

    @property
    def nobj(self) -> int:
        return self.ids.size


def _group(matchid: np.ndarray, mjd: np.ndarray, mag: np.ndarray, magerr: np.ndarray,
           good: np.ndarray, raw_mag: np.ndarray | None = None) -> _Groups:
    """Sort the points by (matchid, mjd) and keep the usable ones."""
    matchid = np.asarray(matchid)
    t = np.asarray(mjd, dtype=np.float64)
    m = np.asarray(mag, dtype=np.float64)
    e = np.asarray(magerr, dtype=np.float64)
    good = np.asarray(good, dtype=bool)
    sizes = {matchid.size, t.size, m.size, e.size, good.size}
    if raw_mag is not None:
        raw_mag = np.asarray(raw_mag, dtype=np.float64)
        sizes.add(raw_mag.size)
    if len(sizes) != 1:
        raise ValueError(f"per-point arrays differ in length: {sorted(sizes)}")
    # The weights 1/e^2 need a positive finite error, the rest finite values.
    keep = good & np.isfinite(t) & np.isfinite(m) & np.isfinite(e) & (e > 0)
    order = _sort_order(matchid, t)
    if order is not None:
        matchid, t, m, e, keep = matchid[order], t[order], m[order], e[order], keep[order]
        raw_mag = None if raw_mag is None else raw_mag[order]
    new = np.ones(matchid.size, dtype=bool)
    new[1:] = matchid[1:] != matchid[:-1]
    ids = matchid[new]
    nobs = np.diff(np.append(np.flatnonzero(new), matchid.size))
    obj = (np.cumsum(new) - 1)[keep]
    n = np.bincount(obj, minlength=ids.size)
    start = np.concatenate(([0], np.cumsum(n)[:-1]))
    raw = None if raw_mag is None else raw_mag[keep]
    return _Groups(ids, nobs, obj, t[keep], m[keep], e[keep], raw, start, n)


def _sort_order(matchid: np.ndarray, t: np.ndarray) -> np.ndarray | None:
    """Permutation sorting by (matchid, t); None if already sorted (the usual case).

    ``np.lexsort`` is ~10x slower than this: a stable sort of the ids, then (only if the times
    are not yet in order) one float sort of ``object index + time fraction of the object's
    span``, which orders the times to ~1e-9 of each object's span (far below the spacing of
    exposures; the periodogram code separates any remaining ties).
    """
    if matchid.size < 2:
        return None
    order = None
    if not np.all(matchid[1:] >= matchid[:-1]):
        order = np.argsort(matchid, kind="stable")
        matchid, t = matchid[order], t[order]
    new = np.ones(matchid.size, dtype=bool)
    new[1:] = matchid[1:] != matchid[:-1]
    if np.all((t[1:] >= t[:-1]) | new[1:]):  # NaN times fail this and get sorted
        return order
    fin = np.isfinite(t)
    t = np.where(fin, t, np.min(t[fin]) if fin.any() else 0.0)  # keeps NaN out of the key
    starts = np.flatnonzero(new)
    obj = np.cumsum(new) - 1
    lo = np.minimum.reduceat(t, starts)[obj]
    span = np.maximum.reduceat(t, starts)[obj] - lo
    frac = np.divide(t - lo, span, out=np.zeros_like(t), where=span > 0)
    sub = np.argsort(obj + 0.5 * frac, kind="stable")
    return sub if order is None else order[sub]


def _gsort(x: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """``x`` sorted by value inside each object (objects in order), to ~1e-9 of its range.

    One float argsort of ``object + scaled value`` instead of the much slower lexsort; values
    closer than the resolution may swap, which moves an order statistic by less than it.
    """
    if x.size == 0:
        return x
    lo, hi = x.min(), x.max()
    frac = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return x[np.argsort(obj + 0.5 * frac, kind="stable")]


def _gsum(x: np.ndarray, obj: np.ndarray, nobj: int) -> np.ndarray:
    """Per-object sums (0 for objects without values)."""
    return np.bincount(obj, weights=x, minlength=nobj)


def _gmax(x: np.ndarray, obj: np.ndarray, nobj: int, empty: float = np.nan) -> np.ndarray:
    """Per-object maxima of values sorted by object (``empty`` for objects without values)."""
    out = np.full(nobj, empty, dtype=np.float64)
    if x.size:
        cnt = np.bincount(obj, minlength=nobj)
        starts = np.concatenate(([0], np.cumsum(cnt)[:-1]))
        has = cnt > 0
        out[has] = np.maximum.reduceat(x, starts[has])
    return out


def _gquantiles(x: np.ndarray, g: _Groups, q: np.ndarray) -> np.ndarray:
    """Per-object percentiles ``q`` (numpy's default linear interpolation), shape (nobj, nq).

    One sort of all values by (object, value) serves every object and percentile.
    """
    s = _gsort(x, g.obj)
    out = np.full((g.nobj, q.size), np.nan)
    ok = g.n > 0
    n = g.n[ok, None]
    pos = q[None, :] / 100.0 * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    base = g.start[ok, None]
    a, b = s[base + lo], s[base + hi]
    out[ok] = a + (pos - lo) * (b - a)
    return out


def _longest_runs(flag: np.ndarray, g: _Groups) -> np.ndarray:
    """Per-object length of the longest run of consecutive True (time-ordered good points)."""
    out = np.zeros(g.nobj, dtype=np.int64)
    if flag.size == 0:
        return out
    edge = np.ones(flag.size, dtype=bool)
    edge[1:] = flag[1:] != flag[:-1]
    edge[g.start[g.n > 0]] = True  # a run never continues into the next object
    first = np.flatnonzero(edge)
    length = np.diff(np.append(first, flag.size))
    true = flag[first]
    np.maximum.at(out, g.obj[first[true]], length[true])
    return out


def _time_offsets(g: _Groups) -> np.ndarray:
    """Time of each good point since its object's first good point (precision for trig)."""
    first = np.zeros(g.nobj)
    has = g.n > 0
    first[has] = g.t[g.start[has]]
    return g.t - first[g.obj]


def _strict_times(t: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """Times bumped by multiples of ``_TIME_EPS`` so each object's are strictly increasing."""
    t = t.copy()
    idx = np.arange(t.size)
    for _ in range(100):
        bad = (t[1:] <= t[:-1]) & (obj[1:] == obj[:-1])
        if not bad.any():
            return t
        # rank inside each run of non-increasing times, so a run of k ties spreads in one go
        new = np.concatenate(([True], ~bad))
        rank = idx - np.maximum.accumulate(np.where(new, idx, 0))
        t = t + rank * _TIME_EPS
    raise RuntimeError("could not make the times strictly increasing")


# --------------------------------------------------------------------------------------------
# IPAC metrics


def ipac_metrics(matchid: np.ndarray, mjd: np.ndarray, mag: np.ndarray, magerr: np.ndarray,
                 good: np.ndarray, raw_mag: np.ndarray | None = None,
                 config: MetricsConfig | None = None) -> np.ndarray:
    """IPAC ``sources`` metrics of many light curves at once.

    Parameters
    ----------
    matchid, mjd, mag, magerr : numpy.ndarray
        One value per detection, any order (sorted here by matchid, then mjd).
    good : numpy.ndarray of bool
        Point usable (unflagged); non-finite values and errors <= 0 are dropped as well.
    raw_mag : numpy.ndarray, optional
        Magnitude before the relative calibration, for ``uncalibmeanmag`` (finite good
        points); None: ``uncalibmeanmag = meanmag``.
    config : MetricsConfig, optional
        Only ``min_points`` is used.

    Returns
    -------
    numpy.ndarray
        Structured array of :data:`~zsds.lightcurves.model.SOURCES_DTYPE`, one row per unique
        matchid (sorted).  The :data:`IPAC_METRIC_FIELDS` are filled; the position, reference
        and period columns are NaN (``oid`` 0) for the caller.  Objects with fewer than
        ``min_points`` good points have NaN metrics and zero run counts; ``nobs``/``ngoodobs``
        are always filled.  A metric undefined for a curve (skewness of < 3 points, any ratio
        to the std of a flat curve) is NaN.

    Notes
    -----
    Statistics over the N good points, time-ordered where order matters; "mean" and "std" are
    the plain mean and ``magrms`` (ddof=1), ``w = 1/magerr**2``:

    * ``weightedmeanmag`` = sum(w m)/sum(w); ``weightedmagrms`` = sqrt(N/(N-1) sum(w (m -
      wmean)^2)/sum(w)); ``chisq`` = sum(((m - wmean)/magerr)^2)/(N-1).
    * ``skewness`` is the bias-corrected G1, ``smallkurtosis`` the bias-corrected excess
      kurtosis G2 (``scipy.stats.skew/kurtosis(bias=False)``).
    * Stetson (1996): d_i = sqrt(N/(N-1)) (m_i - wmean)/magerr_i; ``stetsonk`` =
      sum|d|/sqrt(N sum d^2); ``stetsonj`` = mean over the N-1 consecutive pairs of
      sgn(d_i d_i+1) sqrt|d_i d_i+1| (all pairs weight 1).
    * ``vonneumannratio`` = sum((m_i+1 - m_i)^2)/(N-1)/var (2 for white noise).
    * ``maxslope`` = max |dm/dt| and ``npairposslope`` = #(dm/dt > 0, i.e. fading) over
      consecutive pairs with dt > 0; ``lineartrend`` = least-squares slope of m(t), mag/d.
    * ``n{above,below}meanbystd[k]``: points with m > mean + NSTD[k] std (resp. < mean -
      NSTD[k] std; "above" is numerically larger, i.e. fainter); ``nconsec{above,below,from}
      meanbystd[k]``: longest run of consecutive points beyond the threshold above, below,
      or on either side.
    * ``nmedianbufferrange``: points with |m - median| < 0.1 (max - min).
    * ``con`` (Wozniak 2000; Kim et al. 2011): the number of windows of 3 consecutive points
      all brighter than mean - 2 std or all fainter than mean + 2 std, divided by N - 2 (the
      number of windows).  This is the published consecutive index, and a fraction, which is
      why the IPAC column is a float.
    """
    config = config or MetricsConfig()
    g = _group(matchid, mjd, mag, magerr, good, raw_mag)
    nobj, obj, t, m, e = g.nobj, g.obj, g.t, g.m, g.e
    out = np.zeros(nobj, dtype=SOURCES_DTYPE)
    for name in SOURCES_DTYPE.names:
        if SOURCES_DTYPE[name].base.kind == "f":
            out[name] = np.nan
    out["matchid"] = g.ids
    out["nobs"] = out["nobsrel"] = np.minimum(g.nobs, _U2_MAX)
    out["ngoodobs"] = out["ngoodobsrel"] = np.minimum(g.n, _U2_MAX)
    ok = g.n >= max(config.min_points, 1)

    def put(name: str, value: np.ndarray) -> None:
        out[name][ok] = value[ok]

    def count(name: str, value: np.ndarray) -> None:
        out[name][ok] = np.minimum(np.rint(value[ok]), _U2_MAX)

    with np.errstate(divide="ignore", invalid="ignore"):
        nn = g.n.astype(np.float64)
        mean = _gsum(m, obj, nobj) / nn
        w = 1.0 / e**2
        sw = _gsum(w, obj, nobj)
        wmean = _gsum(w * m, obj, nobj) / sw
        dev = m - mean[obj]
        dev2 = dev * dev
        var = _gsum(dev2, obj, nobj) / (nn - 1)
        std = np.sqrt(var)
        z = dev / std[obj]  # deviation in std, for the threshold counts
        wdev = m - wmean[obj]
        wdev2w = wdev * wdev * w
        put("meanmag", mean)
        put("weightedmeanmag", wmean)
        put("magrms", std)
        chi2 = _gsum(wdev2w, obj, nobj)
        put("weightedmagrms", np.sqrt(chi2 / sw * nn / (nn - 1)))
        put("chisq", chi2 / (nn - 1))
        if g.raw is None:
            put("uncalibmeanmag", mean)
        else:
            fin = np.isfinite(g.raw)
            put("uncalibmeanmag", _gsum(np.where(fin, g.raw, 0.0), obj, nobj)
                / _gsum(fin.astype(np.float64), obj, nobj))

        # order statistics: one grouped sort per quantity
        pct = _gquantiles(m, g, np.array([*PERCENTILES, 50.0]))
        median = pct[:, -1]
        out["percentiles"][ok] = pct[ok, :-1]
        put("medianmag", median)
        put("medmagerr", _gquantiles(e, g, np.array([50.0]))[:, 0])
        put("medianabsdev", _gquantiles(np.abs(m - median[obj]), g, np.array([50.0]))[:, 0])
        mmax = _gmax(m, obj, nobj)
        mmin = -_gmax(-m, obj, nobj)
        put("maxmag", mmax)
        put("minmag", mmin)

        # moments: bias-corrected skewness G1 and excess kurtosis G2 from biased moments
        m2 = var * (nn - 1) / nn
        g1 = _gsum(dev2 * dev, obj, nobj) / nn / m2**1.5
        g2 = _gsum(dev2 * dev2, obj, nobj) / nn / m2**2 - 3.0
        put("skewness", g1 * np.sqrt(nn * (nn - 1)) / (nn - 2))
        put("smallkurtosis", ((nn + 1) * g2 + 6) * (nn - 1) / ((nn - 2) * (nn - 3)))

        # Stetson K and J (about the weighted mean)
        d = np.sqrt(nn / (nn - 1))[obj] * wdev / e
        put("stetsonk", _gsum(np.abs(d), obj, nobj) / np.sqrt(nn * _gsum(d * d, obj, nobj)))

        # consecutive pairs inside an object
        same = obj[1:] == obj[:-1]
        pobj = obj[1:][same]
        dm = (m[1:] - m[:-1])[same]
        dt = (t[1:] - t[:-1])[same]
        pk = (d[1:] * d[:-1])[same]
        npair = nn - 1
        put("stetsonj", _gsum(np.sign(pk) * np.sqrt(np.abs(pk)), pobj, nobj) / npair)
        put("vonneumannratio", _gsum(dm**2, pobj, nobj) / npair / var)
        step = dt > 0  # equal times have no slope
        slope = dm[step] / dt[step]
        put("maxslope", _gmax(np.abs(slope), pobj[step], nobj))
        count("npairposslope", _gsum((slope > 0).astype(np.float64), pobj[step], nobj))

        # least-squares slope, times relative to the first point
        tr = _time_offsets(g)
        tdev = tr - (_gsum(tr, obj, nobj) / nn)[obj]
        put("lineartrend", _gsum(tdev * dev, obj, nobj) / _gsum(tdev**2, obj, nobj))

        # threshold counts and runs
        for k, nstd in enumerate(NSTD):
            above = z > nstd
            below = z < -nstd
            out["nabovemeanbystd"][ok, k] = np.minimum(np.bincount(
                obj[above], minlength=nobj)[ok], _U2_MAX)
            out["nbelowmeanbystd"][ok, k] = np.minimum(np.bincount(
                obj[below], minlength=nobj)[ok], _U2_MAX)
            for name, flag in (("nconsecabovemeanbystd", above),
                               ("nconsecbelowmeanbystd", below),
                               ("nconsecfrommeanbystd", above | below)):
                out[name][ok, k] = np.minimum(_longest_runs(flag, g)[ok], _U2_MAX)
        buffer = np.abs(m - median[obj]) < 0.1 * (mmax - mmin)[obj]
        count("nmedianbufferrange", np.bincount(obj[buffer], minlength=nobj).astype(float))

        # con: windows of 3 consecutive points all beyond 2 std on the same side
        hi, lo = z > 2.0, z < -2.0
        trip = (hi[:-2] & hi[1:-1] & hi[2:]) | (lo[:-2] & lo[1:-1] & lo[2:])
        trip &= obj[:-2] == obj[2:]
        put("con", np.bincount(obj[:-2][trip], minlength=nobj) / (nn - 2))
    for name in IPAC_METRIC_FIELDS:  # undefined (e.g. G2 of 3 points, eta of a flat curve)
        if SOURCES_DTYPE[name].base.kind == "f":
            col = out[name]
            col[~np.isfinite(col)] = np.nan
    return out


# --------------------------------------------------------------------------------------------
# periods


def _grid_log2(baseline: np.ndarray, config: MetricsConfig) -> np.ndarray:
    """Coarse-grid size (log2 of the number of intervals) per object."""
    need = baseline * config.samples_per_peak / config.min_period
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.ceil(np.log2(np.maximum(need, 1.0)))
    return np.clip(np.nan_to_num(k, nan=10.0), 10, config.max_grid_log2).astype(int)


@cache
def _freqs(log2: int, min_period: float) -> np.ndarray:
    """Angular-frequency grid of light-curve's fast periodogram (``linspace(0, wmax, 2**k+1)``)."""
    return np.linspace(0.0, 2 * np.pi / min_period, 2**log2 + 1)


# light-curve's FFT-based power is accurate only well below the top of its grid: on a grid
# ending at fmax its error (against its direct method) grows from ~5% of a strong peak's
# power at f < 0.2 fmax to ~60% near fmax, enough to rank noise above a real 8-9 c/d peak
# (contact binaries' P/2 at 0.11-0.15 d).  The search grid therefore runs to 2 x fmax (the
# same step: a 2x FFT, +1 ms per 60-point curve) and only its peaks inside [fmin, fmax] are
# refined: the error near fmax halves, and contact-binary recovery went from 93% to 99.7%.
_SEARCH_EXTEND_LOG2 = 1


def _n_candidates(config: MetricsConfig) -> int:
    # Extra coarse peaks: those outside [fmin, fmax] (trends at f ~ 0, and the extension
    # above fmax) are dropped before the refinement.
    return 2 ** _SEARCH_EXTEND_LOG2 * 2 * config.refine_peaks


def _periodogram(log2: int, config: MetricsConfig) -> lc.Periodogram:
    """The coarse search periodogram (the extended grid, see _SEARCH_EXTEND_LOG2)."""
    return lc.Periodogram(peaks=_n_candidates(config),
                          freqs=_freqs(log2 + _SEARCH_EXTEND_LOG2,
                                       config.min_period / 2 ** _SEARCH_EXTEND_LOG2),
                          fast=True)


def gls_power(tr: np.ndarray, y: np.ndarray, w: np.ndarray, local: np.ndarray,
              starts: np.ndarray, freqs: np.ndarray,
              nterms: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact generalised (floating-mean, weighted) Lomb-Scargle powers at given frequencies.

    Parameters
    ----------
    tr, y, w : numpy.ndarray
        Points of a few objects, contiguous per object; ``w`` normalised to sum 1 per object.
    local : numpy.ndarray
        Object (0..nsel-1) of each point; ``starts`` its first point.
    freqs : numpy.ndarray
        Frequencies (cycles/d), shape (nsel, nf): each object's own trial frequencies (NaN:
        none, power -inf).
    nterms : int
        Harmonics of the second power returned.

    Returns
    -------
    p1, pk : numpy.ndarray
        Powers (nsel, nf) of the 1-harmonic and ``nterms``-harmonic models, astropy's
        ``'standard'`` normalisation: the fraction of the weighted variance about the mean
        that the model removes.

    Notes
    -----
    With ``E`` the weighted mean over an object's points, the normal equations of the
    centred model sum_k a_k cos(k x) + b_k sin(k x) (x = 2 pi f t) only need E[cos(k x)],
    E[sin(k x)] for k <= 2 nterms (products of harmonics are sums of harmonics) and
    E[y cos(k x)], E[y sin(k x)] for k <= nterms.
    """
    nk = max(nterms, 1)
    arg = (2 * np.pi) * np.nan_to_num(freqs)[local] * tr[:, None]
    c1, s1 = np.cos(arg), np.sin(arg)
    del arg
    yd = (y - np.add.reduceat(w * y, starts)[local])[:, None]  # centred data
    yy = np.add.reduceat(w * yd[:, 0] ** 2, starts)
    cm, sm, yc, ys = {0: 1.0}, {0: 0.0}, {}, {}
    # weighted cos/sin of k x by the angle-addition recurrence (no separate weighting pass)
    wc, ws = c1 * w[:, None], s1 * w[:, None]
    for k in range(1, 2 * nk + 1):
        if k > 1:
            wc, ws = wc * c1 - ws * s1, ws * c1 + wc * s1
        cm[k] = np.add.reduceat(wc, starts, axis=0)
        sm[k] = np.add.reduceat(ws, starts, axis=0)
        if k <= nk:
            yc[k] = np.add.reduceat(wc * yd, starts, axis=0)
            ys[k] = np.add.reduceat(ws * yd, starts, axis=0)

    def cos_(k: int) -> np.ndarray:
        return cm[abs(k)]

    def sin_(k: int) -> np.ndarray:
        return sm[k] if k >= 0 else -sm[-k]

    def power(n: int) -> np.ndarray:
        # basis: cos(1x)..cos(nx), sin(1x)..sin(nx); A = covariance, b = E[y phi]
        mean = [cm[k] for k in range(1, n + 1)] + [sm[k] for k in range(1, n + 1)]
        b = np.stack([yc[k] for k in range(1, n + 1)] + [ys[k] for k in range(1, n + 1)], -1)
        a = np.empty((*b.shape, 2 * n))
        for i in range(2 * n):
            for j in range(i, 2 * n):
                ki, kj = i % n + 1, j % n + 1
                if i < n and j < n:  # cos cos
                    e = 0.5 * (cos_(ki - kj) + cos_(ki + kj))
                elif i >= n and j >= n:  # sin sin
                    e = 0.5 * (cos_(ki - kj) - cos_(ki + kj))
                else:  # cos(ki x) sin(kj x)
                    e = 0.5 * (sin_(kj + ki) + sin_(kj - ki))
                a[..., i, j] = a[..., j, i] = e - mean[i] * mean[j]
        if n == 1:  # closed form of the 2x2 solve (the common case, and faster)
            det = a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] ** 2
            q = (a[..., 1, 1] * b[..., 0] ** 2 + a[..., 0, 0] * b[..., 1] ** 2
                 - 2 * a[..., 0, 1] * b[..., 0] * b[..., 1]) / det
        else:
            # A is a covariance (positive semi-definite): a relative ridge keeps it solvable at
            # phase-degenerate frequencies, and empty/invalid systems are swapped for I, b=0
            eye = np.eye(2 * n)
            trace = np.trace(a, axis1=-2, axis2=-1)
            bad = ~(np.isfinite(trace) & (trace > 0) & np.isfinite(b).all(axis=-1))
            a = np.where(bad[..., None, None], eye, a)
            b = np.where(bad[..., None], 0.0, b)
            ridge = 1e-10 * np.where(bad, 1.0, trace)[..., None, None]
            x = np.linalg.solve(a + ridge * eye, b[..., None])[..., 0]
            q = np.where(bad, np.nan, np.sum(b * x, axis=-1))
        p = q / yy[:, None]
        return np.where(np.isfinite(freqs) & (freqs > 0) & np.isfinite(p), p, -np.inf)

    with np.errstate(divide="ignore", invalid="ignore"):
        p1 = power(1)
        return p1, (p1 if nk == 1 else power(nk))


def _refine(g: _Groups, sel: np.ndarray, cand: np.ndarray, step: np.ndarray,
            fmin: np.ndarray, fmax: float,
            config: MetricsConfig) -> tuple[np.ndarray, np.ndarray]:
    """Best frequency and its 1-harmonic power per selected object from coarse candidates.

    Each candidate (NaN: none) is scanned over +-1 coarse ``step`` in half steps; the sample
    with the highest ``nterms``-harmonic power among those whose 1-harmonic power is at least
    ``subharmonic_floor`` of the object's best wins; it is then scanned over +-1/2 step in 1/8
    steps and a parabola through the top three samples gives the frequency (the peak is
    ~``samples_per_peak`` steps wide, so this lands far inside 1/100 of a step).
    """
    nterms = config.nterms
    tr_all = _time_offsets(g)
    best_f = np.full(sel.size, np.nan)
    best_p = np.full(sel.size, np.nan)
    u1 = np.linspace(-1.0, 1.0, 5)
    u2 = np.linspace(-0.5, 0.5, 9)
    ncol = cand.shape[1] * u1.size
    per_chunk = max(1, int(_REFINE_CHUNK // max(ncol * np.mean(g.n[sel]), 1)))
    for a in range(0, sel.size, per_chunk):
        o = sel[a:a + per_chunk]
        r = np.arange(o.size)
        n = g.n[o]
        starts = np.concatenate(([0], np.cumsum(n)[:-1]))
        local = np.repeat(r, n)
        idx = np.arange(local.size) + (g.start[o] - starts)[local]
        tr, y, w = tr_all[idx], g.m[idx], 1.0 / g.e[idx] ** 2
        w = w / np.add.reduceat(w, starts)[local]
        lo, st = fmin[a:a + per_chunk, None], step[a:a + per_chunk, None]

        def clip(f: np.ndarray, lo: np.ndarray = lo) -> np.ndarray:
            return np.where(np.isfinite(f), np.clip(f, lo, fmax), np.nan)

        def pw(f: np.ndarray, tr=tr, y=y, w=w, local=local, starts=starts):
            return gls_power(tr, y, w, local, starts, f, nterms)

        f1 = clip((cand[a:a + per_chunk, :, None] + u1 * st[:, :, None]).reshape(o.size, -1))
        p1, pk = pw(f1)
        # A k-harmonic model at f/2 also fits a signal at f, so a subharmonic of a sinusoid
        # can tie the truth on pk; requiring a fair 1-harmonic power rules those out.
        eligible = p1 >= config.subharmonic_floor * p1.max(axis=1, keepdims=True)
        fb = f1[r, np.argmax(np.where(eligible, pk, -np.inf), axis=1)][:, None]
        f2 = clip(fb + u2 * st)
        _, p2 = pw(f2)
        j = np.clip(np.argmax(p2, axis=1), 1, u2.size - 2)
        pa, pb, pc = p2[r, j - 1], p2[r, j], p2[r, j + 1]
        with np.errstate(divide="ignore", invalid="ignore"):  # -inf: no valid frequency
            den = pa - 2 * pb + pc
            shift = np.where(den < 0, 0.5 * (pa - pc) / den, 0.0)
        h = f2[r, j + 1] - f2[r, j]
        f3 = clip((f2[r, j] + np.clip(np.nan_to_num(shift), -1, 1) * h)[:, None])
        p13, pk3 = pw(f3)
        use3 = pk3[:, 0] >= p2.max(axis=1)
        fbest = np.where(use3, f3[:, 0], f2[r, np.argmax(p2, axis=1)])
        best_f[a:a + per_chunk] = fbest
        best_p[a:a + per_chunk] = np.where(use3, p13[:, 0], pw(fbest[:, None])[0][:, 0])
    bad = ~np.isfinite(best_p)
    best_f[bad] = best_p[bad] = np.nan
    return best_f, best_p


def _periods_from_coarse(g: _Groups, sel: np.ndarray, log2: np.ndarray,
                         coarse_periods: np.ndarray,
                         config: MetricsConfig) -> tuple[np.ndarray, np.ndarray]:
    """Refined period and power of the selected objects from their coarse peak periods."""
    fmax = 1.0 / config.min_period
    last = g.start[sel] + g.n[sel] - 1
    baseline = g.t[last] - g.t[g.start[sel]]
    with np.errstate(divide="ignore", invalid="ignore"):
        fmin = 1.0 / (baseline if config.max_period is None
                      else np.full(sel.size, config.max_period, dtype=np.float64))
        cand = 1.0 / coarse_periods
    step = fmax / 2.0**log2
    # a peak may sit up to half a step outside the range and still be refined into it
    lo, hi = fmin[:, None] - step[:, None], fmax + step[:, None]
    inside = np.isfinite(cand) & (cand >= lo) & (cand <= hi)
    rank = np.cumsum(inside, axis=1)
    cand = np.where(inside & (rank <= config.refine_peaks), cand, np.nan)
    cand = np.take_along_axis(cand, np.argsort(np.isnan(cand), axis=1, kind="stable"), axis=1)
    cand = cand[:, :max(config.refine_peaks, 1)]
    f, p = _refine(g, sel, cand, step, fmin, fmax, config)
    with np.errstate(divide="ignore"):
        return 1.0 / f, p


def _coarse(g: _Groups, sel: np.ndarray, config: MetricsConfig,
            features: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run light-curve over the selected objects, one ``many`` call per grid size.

    Returns the grid log2 per object, the coarse peak periods (nsel, n_candidates) and the
    output of the periodogram alone or (``features``) of the whole extractor, (nsel, nout).
    """
    last = g.start[sel] + g.n[sel] - 1
    log2 = _grid_log2(g.t[last] - g.t[g.start[sel]], config)
    ts = _strict_times(g.t, g.obj)
    npk = _n_candidates(config)
    periods = np.full((sel.size, npk), np.nan)
    values: np.ndarray | None = None
    for k in np.unique(log2):
        rows = np.flatnonzero(log2 == k)
        lcs = [(ts[s:s + n], g.m[s:s + n], g.e[s:s + n])
               for s, n in zip(g.start[sel[rows]], g.n[sel[rows]], strict=True)]
        res = np.asarray(_periodogram(int(k), config).many(
            lcs, fill_value=np.nan, sorted=True, check=False, n_jobs=config.n_jobs))
        periods[rows] = res[:, 0::2]  # (period, s/n) of each peak
        if features:
            res = np.asarray(_extractor(int(k), config).many(
                lcs, fill_value=np.nan, sorted=True, check=False, n_jobs=config.n_jobs))
        if values is None:
            values = np.full((sel.size, res.shape[1]), np.nan)
        values[rows] = res
    periods[~(periods > 0)] = np.nan  # light-curve reports missing peaks as period 0
    return log2, periods, values if values is not None else np.zeros((sel.size, 0))


def best_periods(matchid: np.ndarray, mjd: np.ndarray, mag: np.ndarray, magerr: np.ndarray,
                 good: np.ndarray, config: MetricsConfig | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best Lomb-Scargle period of many light curves (see the module notes for the method).

    Parameters
    ----------
    matchid, mjd, mag, magerr, good : numpy.ndarray
        Per-point arrays as for :func:`ipac_metrics`.
    config : MetricsConfig, optional
        Period search (``min_points`` and the period grid); default ``MetricsConfig()``.

    Returns
    -------
    ids : numpy.ndarray
        Unique matchids, sorted.
    period : numpy.ndarray
        Best period (d), NaN for objects with fewer than ``min_points`` good points.
    power : numpy.ndarray
        Its generalised Lomb-Scargle power (astropy ``'standard'`` normalisation, 0..1).
    """
    config = config or MetricsConfig()
    g = _group(matchid, mjd, mag, magerr, good)
    period = np.full(g.nobj, np.nan)
    power = np.full(g.nobj, np.nan)
    sel = np.flatnonzero(g.n >= max(config.min_points, 3))
    if sel.size:
        log2, coarse, _ = _coarse(g, sel, config)
        period[sel], power[sel] = _periods_from_coarse(g, sel, log2, coarse, config)
    return g.ids, period, power


def best_period(t: np.ndarray, m: np.ndarray, e: np.ndarray,
                config: MetricsConfig | None = None) -> tuple[float, float]:
    """Best Lomb-Scargle period of one light curve.

    Parameters
    ----------
    t, m, e : numpy.ndarray
        Times (d), magnitudes and errors of the usable points, any order.
    config : MetricsConfig, optional

    Returns
    -------
    period, power : float
        Period (d) and its normalised power; NaN with fewer than ``min_points`` points.
    """
    t = np.asarray(t, dtype=np.float64)
    _, p, pw = best_periods(np.zeros(t.size, np.int64), t, m, e, np.ones(t.size, bool), config)
    return float(p[0]) if p.size else np.nan, float(pw[0]) if pw.size else np.nan


def period_matches(found: np.ndarray, true: np.ndarray, tol: float = 0.01) -> np.ndarray:
    """Whether each found period recovers the true one: ``|found/true - 1| < tol``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(np.asarray(found, float) / np.asarray(true, float) - 1.0) < tol


def period_harmonic(found: np.ndarray, true: np.ndarray, tol: float = 0.01) -> np.ndarray:
    """Whether each found period is half the true one (eclipsing binaries): ``|2 found/true -
    1| < tol``; reported separately from :func:`period_matches`."""
    return period_matches(2.0 * np.asarray(found, float), true, tol)


# --------------------------------------------------------------------------------------------
# light-curve features


def _features(config: MetricsConfig, freqs: np.ndarray) -> list:
    """The feature evaluators (the period search runs its own periodogram, ``_periodogram``,
    on the extended grid)."""
    periodogram = lc.Periodogram(
        peaks=config.n_peaks, freqs=freqs, fast=True,
        # the power spectrum as a series: how dominant and isolated the peaks are
        features=[lc.Amplitude(), lc.StandardDeviation(), lc.Skew(), lc.Kurtosis(),
                  lc.BeyondNStd(2.0), lc.BeyondNStd(3.0)],
    )
    nightly = lc.Bins(  # one point per night (UTC midnight falls in Palomar's daytime)
        [lc.Amplitude(), lc.BeyondNStd(1.0), lc.Cusum(), lc.Eta(), lc.EtaE(), lc.Kurtosis(),
         lc.ExcessVariance(), lc.InterPercentileRange(0.1), lc.LaflerKinmanStringLength(),
         lc.LinearFit(), lc.MaximumSlope(), lc.MedianAbsoluteDeviation(), lc.ObservationCount(),
         lc.ReducedChi2(), lc.Skew(), lc.StandardDeviation(), lc.StetsonK()],
        window=1.0, offset=0.0)
    return [
        periodogram,
        nightly,
        lc.Amplitude(), lc.AndersonDarlingNormal(),
        *(lc.BeyondNStd(k) for k in (1.0, 2.0, 3.0, 5.0)),
        lc.BiweightScale(), lc.Chi2Pvar(), lc.Cusum(), lc.Eta(), lc.EtaE(), lc.ExcessVariance(),
        *(lc.InterPercentileRange(q) for q in (0.02, 0.05, 0.1, 0.25)),
        lc.Kurtosis(), lc.LaflerKinmanStringLength(), lc.LinearFit(), lc.LinearTrend(),
        *(lc.MagnitudePercentageRatio(n, d)
          for n, d in ((0.4, 0.05), (0.2, 0.05), (0.4, 0.1), (0.2, 0.1))),
        lc.MaximumSlope(), lc.Mean(), lc.MeanVariance(), lc.Median(),
        lc.MedianAbsoluteDeviation(),
        *(lc.MedianBufferRangePercentage(q) for q in (0.05, 0.1, 0.2, 0.4)),
        lc.PercentAmplitude(),
        *(lc.PercentDifferenceMagnitudePercentile(q) for q in (0.05, 0.1, 0.2, 0.4)),
        lc.QnScale(), lc.Roms(), lc.ReducedChi2(), lc.Skew(), lc.StandardDeviation(),
        lc.StetsonK(), lc.WeightedMean(),
        lc.Duration(), lc.MaximumTimeInterval(), lc.MinimumTimeInterval(),
        lc.ObservationCount(), lc.TimeMean(), lc.TimeStandardDeviation(),
        lc.OtsuSplit(),
    ]


def _phase_features() -> list:
    """Features of the curve folded at the adopted ``period`` (only order-dependent ones: the
    others equal the unfolded values): smoothness, asymmetry, largest gap in phase."""
    return [lc.LaflerKinmanStringLength(), lc.Eta(), lc.EtaE(), lc.Cusum(), lc.MaximumSlope(),
            lc.LinearTrend(), lc.LinearFit(), lc.MaximumTimeInterval()]


@cache
def _phase_extractor() -> lc.Extractor:
    return lc.Extractor(*_phase_features())


def _phase_names() -> list[str]:
    return [_sanitise("period_folded_" + n) for n in _phase_extractor().names]


def fold(t: np.ndarray, m: np.ndarray, period: float) -> np.ndarray:
    """Phase (0..1) of each point at ``period``, phase 0 at the brightest point.

    The convention of ``light-curve``'s ``Periodogram(phase_features=...)``: phase =
    ``frac(t / period)`` shifted so that the point of minimum magnitude is at 0.
    """
    ph = np.mod(np.asarray(t, dtype=np.float64) / period, 1.0)
    return np.mod(ph - ph[int(np.argmin(m))], 1.0)


def phase_folded_features(t: np.ndarray, m: np.ndarray, e: np.ndarray,
                          period: float) -> np.ndarray:
    """The ``lc_period_folded_*`` features of one curve folded at ``period`` (NaN if the
    period is not finite and positive)."""
    names = _phase_names()
    if not (np.isfinite(period) and period > 0) or np.size(t) < 3:
        return np.full(len(names), np.nan)
    ph = fold(t, m, period)
    order = np.argsort(ph, kind="stable")
    ph = _strict_times(ph[order], np.zeros(ph.size, np.int64))
    return np.asarray(_phase_extractor()(ph, np.asarray(m)[order], np.asarray(e)[order],
                                         sorted=True, check=False, fill_value=np.nan))


def _phase_folded_many(g: _Groups, sel: np.ndarray, period: np.ndarray,
                       n_jobs: int) -> np.ndarray:
    """Phase-folded features of the selected objects at their adopted periods."""
    out = np.full((sel.size, len(_phase_names())), np.nan)
    ok = np.flatnonzero(np.isfinite(period) & (period > 0))
    lcs = []
    for k in ok:
        s, n = g.start[sel[k]], g.n[sel[k]]
        t, m, e = g.t[s:s + n], g.m[s:s + n], g.e[s:s + n]
        ph = fold(t, m, period[k])
        order = np.argsort(ph, kind="stable")
        lcs.append((_strict_times(ph[order], np.zeros(n, np.int64)), m[order], e[order]))
    if lcs:
        out[ok] = np.asarray(_phase_extractor().many(
            lcs, fill_value=np.nan, sorted=True, check=False, n_jobs=n_jobs))
    return out


@cache
def _extractor_cached(log2: int, config_key: tuple) -> lc.Extractor:
    config = MetricsConfig(**dict(config_key))
    return lc.Extractor(*_features(config, _freqs(log2, config.min_period)))


def _extractor(log2: int, config: MetricsConfig) -> lc.Extractor:
    return _extractor_cached(log2, tuple(sorted(vars(config).items())))


def _sanitise(name: str) -> str:
    return "lc_" + re.sub(r"\W+", "_", name).strip("_")


def _feature_names(config: MetricsConfig) -> list[str]:
    """Column names of light-curve's outputs (the periodogram's ``n_peaks`` peaks and its
    spectrum features first, then the phase-folded features, then the rest)."""
    names = [_sanitise(n) for n in _extractor(10, config).names]
    k = 2 * config.n_peaks + 6  # peaks (period, s/n) and the six spectrum features
    return [*names[:k], *_phase_names(), *names[k:]]


def metric_columns(config: MetricsConfig | None = None) -> list[str]:
    """Column names of :func:`lc_features` (they depend only on ``config.n_peaks``)."""
    return [*_feature_names(config or MetricsConfig()), "period", "periodpower"]


def lc_features(matchid: np.ndarray, mjd: np.ndarray, mag: np.ndarray, magerr: np.ndarray,
                good: np.ndarray, config: MetricsConfig | None = None) -> pd.DataFrame:
    """The full feature set of many light curves.

    Parameters
    ----------
    matchid, mjd, mag, magerr, good : numpy.ndarray
        Per-point arrays as for :func:`ipac_metrics`.
    config : MetricsConfig, optional
        Features (``n_peaks``) and period search, as for :func:`best_periods`; default
        ``MetricsConfig()``.

    Returns
    -------
    pandas.DataFrame
        Indexed by matchid (sorted), float64 columns :func:`metric_columns`: the
        light-curve features (``lc_`` + their sanitised names: magnitude distribution,
        variability indices, time sampling, nightly-binned curve, periodogram peaks, power
        spectrum and phase-folded-curve features) and ``period``/``periodpower`` of
        :func:`best_periods` (from the same coarse search).  Objects with fewer than
        ``min_points`` good points have an all-NaN row; a feature undefined for a curve (e.g.
        a flat one) is NaN.

    Notes
    -----
    Duplicate times are separated by 1e-6 d, as light-curve needs strictly increasing times.
    The ``lc_periodogram_*`` peaks are those of light-curve's unweighted fast periodogram on
    the grid up to ``1/min_period``; ``period`` is the refined weighted one (from the extended
    search grid) and may differ (e.g. an alias).  The ``lc_period_folded_*`` features are
    computed on the curve folded at ``period`` (:func:`phase_folded_features`), not at the
    raw ``lc_periodogram_period_0``.
    """
    config = config or MetricsConfig()
    g = _group(matchid, mjd, mag, magerr, good)
    cols = _feature_names(config)
    data = np.full((g.nobj, len(cols) + 2), np.nan)
    sel = np.flatnonzero(g.n >= max(config.min_points, 3))
    if sel.size:
        log2, coarse, values = _coarse(g, sel, config, features=True)
        period, power = _periods_from_coarse(g, sel, log2, coarse, config)
        k = 2 * config.n_peaks + 6
        nph = len(_phase_names())
        data[sel, :k] = values[:, :k]
        data[sel, k:k + nph] = _phase_folded_many(g, sel, period, config.n_jobs)
        data[sel, k + nph:-2] = values[:, k:]
        data[sel, -2], data[sel, -1] = period, power
    index = pd.Index(g.ids, name="matchid")
    return pd.DataFrame(data, index=index, columns=[*cols, "period", "periodpower"])
