"""Multi-band period search with 1-day alias handling, for survey light curves.

:func:`multiband_period` finds one period shared by all the bands of a light curve; each band
keeps its own mean, amplitudes and phases (the multi-band Lomb-Scargle model of VanderPlas &
Ivezić 2015 with band terms only, no shared base term; ``light-curve``'s multi-band
periodogram combines the bands with the same chi-square weights).  With a single band it is a
single-band search with the same alias handling.

Method
------
1. **Coarse spectrum.** Each band's fast (Press & Rybicki) Lomb-Scargle power from
   ``light-curve`` on one frequency grid from 0 to twice ``1/min_period`` (the fast power
   is inaccurate near the top of its grid, see :mod:`zsds.lightcurves.metrics`), with
   ``samples_per_peak`` points per peak width ``1/baseline``.  The bands are combined with
   weights ``chi2_b = sum((m - mean_w)^2 / sigma^2)``: the combined power is the fraction of
   the total chi-square about the band means that the model removes.
2. **Candidates.** The ``n_peaks`` highest local maxima of the combined spectrum inside
   ``[1/max_period, 1/min_period]``; for each, its 1-day aliases ``|f +- k|`` (k in
   ``alias_orders``, in cycles per day) and the harmonics ``h f`` (``harmonics``): the
   ``alias_local_peaks`` highest coarse maxima within ``+- alias_window`` of each (a
   sidereal-day or yearly alias of the true peak may stand next to it).
3. **Choice.**  Each candidate's peak is located (+-1 coarse step, then +-1/2 step) with the
   exact weighted, floating-mean (generalised) Lomb-Scargle power
   (:func:`zsds.lightcurves.metrics.gls_power`) combined over the bands as in 1, with
   ``nterms`` harmonics.  Candidates whose 1-harmonic power is below ``subharmonic_floor``
   of the best are dropped (a k-harmonic model at f/2 fits a signal at f as well as f does).
   The winner has the lowest penalised chi-square (BIC, :func:`_bic_scores`): per-band
   harmonic fits (own mean, amplitudes and phases; shared frequency), residuals in units of
   the errors clipped at ``clip_sigma``, plus ``B (1 + 2K) ln N``, minimised over K in
   ``bic_nterms`` (few points: few harmonics, so an alias cannot win by over-fitting).  Its
   peak is then refined with a parabola.

Why: ground-based survey cadence (one visit per night at a similar hour) puts copies of the
true peak at ``f +- 1, 2`` c/d.  The 1-harmonic power often ranks an alias first for
non-sinusoidal curves (RR Lyrae ab), while the penalised harmonic fit of all bands together
separates them.  The settings (see :class:`PeriodSearchConfig`) were chosen on the
development half of the real SDSS Stripe 82 RR Lyrae only; ``docs/lightcurves.md`` gives the
held-out figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import light_curve as lc
import numpy as np
import pandas as pd

from zsds.lightcurves.metrics import gls_power

__all__ = [
    "LIGHTCURVE_CSV_COLUMNS",
    "PeriodResult",
    "PeriodSearchConfig",
    "multiband_period",
    "periods_of_files",
    "read_lightcurve_csv",
]

#: Columns of the light-curve CSV files read by :func:`read_lightcurve_csv`.
LIGHTCURVE_CSV_COLUMNS = ("time", "mag", "magerr", "band")

#: Magnitudes at or above this are "no measurement" sentinels (e.g. SDSS's 100.011).
_MAG_SENTINEL = 99.0
# Tie-break step for equal times within a band (d): light-curve needs increasing times.
_TIME_EPS = 1e-6
# light-curve's fast power is accurate only well below the top of its grid: the coarse grid
# runs to 2**_EXTEND_LOG2 times 1/min_period (as in zsds.lightcurves.metrics).
_EXTEND_LOG2 = 1


@dataclass(frozen=True)
class PeriodSearchConfig:
    """Settings of :func:`multiband_period`.

    Attributes
    ----------
    min_period : float
        Shortest period searched (d); sets the top of the frequency grid.
    max_period : float or None
        Longest period searched (d); None: the time baseline of the light curve.
    samples_per_peak : float
        Coarse-grid points per peak width ``1/baseline`` (the grid size is rounded up to a
        power of two, as the fast periodogram needs).
    n_peaks : int
        Highest maxima of the combined coarse spectrum taken as candidates.
    alias_orders : tuple of int
        ``k`` of the 1-day aliases ``|f +- k|`` (c/d) added around every peak.
    harmonics : tuple of float
        Multiples ``h f`` added around every peak (0.5: a period twice as long).
    alias_window : float
        Half-width (c/d) around an alias or harmonic in which its own coarse maxima are
        looked for.
    alias_local_peaks : int
        Coarse maxima taken in each such window.
    nterms : int
        Harmonics of the model that places each candidate's peak.
    subharmonic_floor : float
        Candidates whose combined 1-harmonic power is below this fraction of the best
        candidate's are not chosen.
    bic_nterms : tuple of int
        Harmonic counts K of the per-band fits whose penalised chi-square (BIC) picks among
        the candidates (the lowest over K); empty: the highest ``nterms`` power picks.
    clip_sigma : float
        Residuals count at most this many errors in that chi-square (0: no clipping).
    error_floor : float
        Magnitude error added in quadrature to every point's (mag): survey errors leave out
        calibration and model-shape errors, which otherwise let a few bright points rule the
        fit.
    min_points : int
        Bands with fewer usable points are left out; a light curve with no band left gets
        a NaN period.
    max_grid_log2 : int
        Cap of the coarse grid size (``2**max_grid_log2`` intervals) for long baselines.
    """

    min_period: float = 0.1
    max_period: float | None = None
    samples_per_peak: float = 5.0
    n_peaks: int = 5
    alias_orders: tuple[int, ...] = (1, 2)
    harmonics: tuple[float, ...] = (0.5, 2.0)
    alias_window: float = 0.01
    alias_local_peaks: int = 2
    nterms: int = 4
    subharmonic_floor: float = 0.5
    bic_nterms: tuple[int, ...] = (2, 3, 4, 6, 8)
    clip_sigma: float = 3.0
    error_floor: float = 0.02
    min_points: int = 5
    max_grid_log2: int = 20

    def __post_init__(self) -> None:
        if not self.min_period > 0:
            raise ValueError(f"min_period must be > 0, not {self.min_period}")
        if self.max_period is not None and not self.max_period > self.min_period:
            raise ValueError(f"max_period {self.max_period} must exceed min_period")
        if min(self.n_peaks, self.alias_local_peaks, self.nterms, self.min_points) < 1:
            raise ValueError("n_peaks, alias_local_peaks, nterms and min_points must be >= 1")
        if any(k < 1 for k in self.bic_nterms):
            raise ValueError("bic_nterms must be >= 1")
        if not 0 <= self.subharmonic_floor <= 1:
            raise ValueError("subharmonic_floor must be in [0, 1]")


@dataclass(frozen=True)
class PeriodResult:
    """Outcome of :func:`multiband_period`.

    Attributes
    ----------
    period : float
        Best period (d); NaN if no band had ``min_points`` usable points.
    power : float
        Combined 1-harmonic generalised Lomb-Scargle power at ``period`` (fraction of the
        chi-square about the band means removed; 0..1).
    power_nterms : float
        The same with ``nterms`` harmonics (the quantity that placed the peak).
    n_points : int
        Usable points in the bands used.
    bands : tuple of str
        Bands used (those with at least ``min_points`` usable points).
    n_candidates : int
        Candidate frequencies compared.
    """

    period: float
    power: float
    power_nterms: float
    n_points: int
    bands: tuple[str, ...]
    n_candidates: int


@dataclass
class _Bands:
    """Usable points grouped by band (contiguous, time-sorted inside each band)."""

    names: tuple[str, ...]
    t: np.ndarray
    m: np.ndarray
    e: np.ndarray
    start: np.ndarray
    n: np.ndarray
    chi2: np.ndarray  # weighted chi-square of each band about its weighted mean

    @property
    def local(self) -> np.ndarray:
        return np.repeat(np.arange(self.n.size), self.n)


def _prepare(t: np.ndarray, m: np.ndarray, e: np.ndarray, band: np.ndarray,
             config: PeriodSearchConfig) -> _Bands:
    keep = (np.isfinite(t) & np.isfinite(m) & np.isfinite(e) & (e > 0)
            & (m < _MAG_SENTINEL))
    t, m, e, band = t[keep], m[keep], e[keep], band[keep]
    e = np.hypot(e, config.error_floor)
    names, counts = np.unique(band, return_counts=True)
    use = names[counts >= max(config.min_points, 3)]
    parts = []
    for b in use:
        sel = np.flatnonzero(band == b)
        order = sel[np.argsort(t[sel], kind="stable")]
        tb = t[order].copy()
        for _ in range(100):  # strictly increasing times (ties spread by _TIME_EPS)
            tie = np.flatnonzero(tb[1:] <= tb[:-1])
            if tie.size == 0:
                break
            tb[tie + 1] = tb[tie] + _TIME_EPS
        parts.append((tb, m[order], e[order]))
    if not parts:
        z = np.zeros(0)
        return _Bands((), z, z, z, np.zeros(0, np.int64), np.zeros(0, np.int64), z)
    n = np.array([p[0].size for p in parts])
    start = np.concatenate(([0], np.cumsum(n)[:-1]))
    tt = np.concatenate([p[0] for p in parts])
    mm = np.concatenate([p[1] for p in parts])
    ee = np.concatenate([p[2] for p in parts])
    w = 1.0 / ee**2
    local = np.repeat(np.arange(n.size), n)
    mean = np.add.reduceat(w * mm, start) / np.add.reduceat(w, start)
    chi2 = np.add.reduceat(w * (mm - mean[local]) ** 2, start)
    return _Bands(tuple(str(b) for b in use), tt, mm, ee, start, n, chi2)


def _grid_log2(baseline: float, config: PeriodSearchConfig) -> int:
    need = max(baseline * config.samples_per_peak / config.min_period, 1.0)
    return int(np.clip(np.ceil(np.log2(need)), 10, config.max_grid_log2))


@cache
def _coarse_periodogram(log2: int, min_period: float) -> tuple[lc.Periodogram, np.ndarray]:
    """The fast periodogram on the extended grid and its frequencies (cycles/d)."""
    wmax = 2 * np.pi / min_period * 2**_EXTEND_LOG2
    freqs = np.linspace(0.0, wmax, 2 ** (log2 + _EXTEND_LOG2) + 1)
    return (lc.Periodogram(freqs=freqs, fast=True, normalization="standard"),
            freqs / (2 * np.pi))


def _coarse_spectrum(b: _Bands, log2: int,
                     config: PeriodSearchConfig) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (c/d) and the chi-square-weighted combined coarse power."""
    pg, f = _coarse_periodogram(log2, config.min_period)
    total = np.zeros(f.size)
    for k in range(b.n.size):
        s = slice(b.start[k], b.start[k] + b.n[k])
        _, p = pg.freq_power(b.t[s], b.m[s])
        total += b.chi2[k] * np.nan_to_num(np.asarray(p, dtype=np.float64)[: f.size])
    return f, total / max(float(b.chi2.sum()), np.finfo(float).tiny)


def _local_maxima(p: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Indices of the local maxima of ``p`` in [lo, hi), highest first."""
    lo, hi = max(lo, 1), min(hi, p.size - 1)
    if hi <= lo:
        return np.zeros(0, dtype=np.int64)
    i = np.arange(lo, hi)
    peak = (p[i] > p[i - 1]) & (p[i] >= p[i + 1])
    i = i[peak]
    return i[np.argsort(p[i], kind="stable")[::-1]]


def _candidates(f: np.ndarray, p: np.ndarray, fmin: float, fmax: float,
                config: PeriodSearchConfig) -> np.ndarray:
    """Grid indices of the candidate frequencies (peaks, their aliases and harmonics)."""
    step = f[1] - f[0]
    lo, hi = int(np.floor(fmin / step)), int(np.ceil(fmax / step)) + 1
    peaks = _local_maxima(p, lo, hi)[: config.n_peaks]
    half = max(int(np.ceil(config.alias_window / step)), 1)
    out = [peaks]
    for i in peaks:
        fi = f[i]
        centres = [abs(fi + s * k) for k in config.alias_orders for s in (1, -1)]
        centres += [h * fi for h in config.harmonics]
        for c in centres:
            if not fmin - config.alias_window <= c <= fmax + config.alias_window:
                continue
            j = round(float(c) / step)
            loc = _local_maxima(p, max(j - half, lo), min(j + half + 1, hi))
            out.append(loc[: config.alias_local_peaks])
    return np.unique(np.concatenate(out)).astype(np.int64)


def _combined_power(b: _Bands, tr: np.ndarray, freqs: np.ndarray,
                    nterms: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact combined 1- and ``nterms``-harmonic powers at frequencies ``freqs`` (nf,)."""
    local = b.local
    w = 1.0 / b.e**2
    w = w / np.add.reduceat(w, b.start)[local]
    fr = np.broadcast_to(freqs, (b.n.size, freqs.size))
    p1, pk = gls_power(tr, b.m, w, local, b.start, fr, nterms)
    wt = b.chi2[:, None] / max(float(b.chi2.sum()), np.finfo(float).tiny)
    p1 = np.where(np.isfinite(p1), p1, 0.0)
    pk = np.where(np.isfinite(pk), pk, 0.0)
    return (wt * p1).sum(axis=0), (wt * pk).sum(axis=0)


def multiband_period(t: np.ndarray, mag: np.ndarray, magerr: np.ndarray,
                     band: np.ndarray | Sequence[str] | None = None,
                     config: PeriodSearchConfig | None = None) -> PeriodResult:
    """Best period of a (multi-band) light curve; see the module notes for the method.

    Parameters
    ----------
    t, mag, magerr : numpy.ndarray
        Times (d), magnitudes and their errors, any order.  Points with a non-finite value,
        a non-positive error or a magnitude >= 99 (a "no measurement" sentinel) are not used.
    band : array_like of str, optional
        Band of each point (None: one band).
    config : PeriodSearchConfig, optional

    Returns
    -------
    PeriodResult
    """
    config = config or PeriodSearchConfig()
    t = np.asarray(t, dtype=np.float64)
    m = np.asarray(mag, dtype=np.float64)
    e = np.asarray(magerr, dtype=np.float64)
    bd = np.full(t.size, "", dtype=object) if band is None else np.asarray(band).astype(str)
    if not t.size == m.size == e.size == bd.size:
        raise ValueError("t, mag, magerr and band must have the same length")
    b = _prepare(t, m, e, bd, config)
    if b.n.size == 0:
        return PeriodResult(np.nan, np.nan, np.nan, 0, (), 0)
    baseline = float(b.t.max() - b.t.min())
    fmax = 1.0 / config.min_period
    fmin = 1.0 / (config.max_period if config.max_period is not None else max(baseline, 1e-9))
    if not fmin < fmax:
        return PeriodResult(np.nan, np.nan, np.nan, int(b.n.sum()), b.names, 0)
    found = _search(b, baseline, fmin, fmax, config)
    if found is None:
        return PeriodResult(np.nan, np.nan, np.nan, int(b.n.sum()), b.names, 0)
    f3, q1, qk, ncand = found
    return PeriodResult(1.0 / f3, q1, qk, int(b.n.sum()), b.names, ncand)


def _bic_scores(b: _Bands, tr: np.ndarray, freqs: np.ndarray,
                config: PeriodSearchConfig) -> np.ndarray:
    """Penalised chi-square of the best multi-band harmonic fit at each frequency (nf,).

    For each number of harmonics K in ``config.bic_nterms``, every band gets its own
    weighted least-squares fit ``mean + sum_k a_k cos(2 pi k f t) + b_k sin(2 pi k f t)``;
    the score is ``sum min(r^2, clip_sigma^2) + B (1 + 2K) ln N`` (r: residuals in units of
    the errors, B bands, N points), minimised over K.
    """
    kmax = max(config.bic_nterms)
    clip2 = config.clip_sigma**2 if config.clip_sigma > 0 else np.inf
    chi = np.zeros((len(config.bic_nterms), freqs.size))
    for i in range(b.n.size):
        s = slice(b.start[i], b.start[i] + b.n[i])
        sw = 1.0 / b.e[s]
        x = (2 * np.pi) * freqs[:, None] * tr[s][None, :]
        cols = [np.broadcast_to(sw, x.shape)]
        for k in range(1, kmax + 1):
            cols += [np.cos(k * x) * sw, np.sin(k * x) * sw]
        design = np.stack(cols, axis=-1)  # (nf, n, 1 + 2 kmax), weighted
        y = b.m[s] * sw
        for j, nk in enumerate(config.bic_nterms):
            a = design[..., : 1 + 2 * nk]
            coef = np.linalg.pinv(a) @ y  # least squares (minimum norm if underdetermined)
            r = y[None, :] - np.einsum("fnp,fp->fn", a, coef)
            chi[j] += np.minimum(r**2, clip2).sum(axis=1)
    npar = b.n.size * (1 + 2 * np.asarray(config.bic_nterms, dtype=np.float64))
    return (chi + npar[:, None] * np.log(float(b.n.sum()))).min(axis=0)


def _search(b: _Bands, baseline: float, fmin: float, fmax: float,
            config: PeriodSearchConfig) -> tuple[float, float, float, int] | None:
    """(frequency, 1-harmonic power, nterms power, candidates) of the best candidate."""
    log2 = _grid_log2(baseline, config)
    f, p = _coarse_spectrum(b, log2, config)
    cand = _candidates(f, p, fmin, fmax, config)
    if cand.size == 0:
        return None
    step = f[1] - f[0]
    tr = b.t - b.t.min()
    # Each candidate's peak: the best nterms fit over +-1 coarse step (5 points), then over
    # +-1/2 step around it (9 points).
    nc = cand.size
    u1 = np.linspace(-1.0, 1.0, 5)
    f1 = np.clip(f[cand][:, None] + u1 * step, fmin, fmax)
    _, pk = _combined_power(b, tr, f1.ravel(), config.nterms)
    fb = f1[np.arange(nc), np.argmax(pk.reshape(f1.shape), axis=1)]
    u2 = np.linspace(-0.5, 0.5, 9)
    f2 = np.clip(fb[:, None] + u2 * step, fmin, fmax)
    q1, qk = (q.reshape(f2.shape) for q in _combined_power(b, tr, f2.ravel(), config.nterms))
    jbest = np.argmax(qk, axis=1)
    fc, q1c = f2[np.arange(nc), jbest], q1[np.arange(nc), jbest]
    fc, first = np.unique(np.round(fc, 9), return_index=True)
    q1c, rows = q1c[first], first
    # Eligible: 1-harmonic power >= subharmonic_floor of the best; the winner has the
    # lowest penalised chi-square (nterms power if bic_nterms is empty).
    eligible = q1c >= config.subharmonic_floor * q1c.max()
    if config.bic_nterms:
        score = np.full(fc.size, np.inf)
        score[eligible] = _bic_scores(b, tr, fc[eligible], config)
        row = rows[int(np.argmin(score))]
    else:
        row = rows[int(np.argmax(np.where(eligible, qk[rows, jbest[rows]], -np.inf)))]
    # Locate its peak: the fine scan of that candidate plus a parabola through the top three.
    f2, p2 = f2[row], qk[row]
    j = int(np.clip(np.argmax(p2), 1, f2.size - 2))
    den = p2[j - 1] - 2 * p2[j] + p2[j + 1]
    shift = 0.5 * (p2[j - 1] - p2[j + 1]) / den if den < 0 else 0.0
    f3 = float(np.clip(f2[j] + np.clip(shift, -1, 1) * (f2[j + 1] - f2[j]), fmin, fmax))
    q1, qk = _combined_power(b, tr, np.array([f3]), config.nterms)
    if not qk[0] >= p2.max():
        f3 = float(f2[int(np.argmax(p2))])
        q1, qk = _combined_power(b, tr, np.array([f3]), config.nterms)
    return f3, float(q1[0]), float(qk[0]), int(nc)


def read_lightcurve_csv(path: str | Path, bands: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a light-curve CSV file with the columns ``time, mag, magerr, band``.

    Parameters
    ----------
    path : str or Path
        The file (any extra columns are ignored; ``.gz`` is read too).
    bands : sequence of str, optional
        Keep only these bands.

    Returns
    -------
    pandas.DataFrame
        The four columns; rows with a "no measurement" magnitude (>= 99) are dropped.

    Raises
    ------
    ValueError
        If a column is missing (the message names the file).
    """
    df = pd.read_csv(path)
    missing = [c for c in LIGHTCURVE_CSV_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} "
                         f"(need {', '.join(LIGHTCURVE_CSV_COLUMNS)})")
    df = df[list(LIGHTCURVE_CSV_COLUMNS)].copy()
    df["band"] = df["band"].astype(str).str.strip()
    for c in ("time", "mag", "magerr"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df = df[~(df["mag"] >= _MAG_SENTINEL)]
    if bands is not None:
        df = df[df["band"].isin(list(bands))]
    return df.reset_index(drop=True)


def periods_of_files(paths: Sequence[str | Path], bands: Sequence[str] | None = None,
                     config: PeriodSearchConfig | None = None) -> pd.DataFrame:
    """Period of each light-curve CSV file (the ``zsds lightcurves period`` command).

    Parameters
    ----------
    paths : sequence of str or Path
        One light curve per file; its id is the file name without ``.csv``/``.csv.gz``.
    bands : sequence of str, optional
        Bands searched together (None: all bands of each file).
    config : PeriodSearchConfig, optional

    Returns
    -------
    pandas.DataFrame
        Columns ``id``, ``period`` (d), ``power`` (combined 1-harmonic power),
        ``n_points`` (usable points in the bands used), one row per file in input order.
    """
    rows = []
    for path in paths:
        name = Path(path).name
        ident = name.removesuffix(".gz").removesuffix(".csv")
        d = read_lightcurve_csv(path, bands)
        r = multiband_period(d["time"].to_numpy(), d["mag"].to_numpy(),
                             d["magerr"].to_numpy(), d["band"].to_numpy(), config)
        rows.append({"id": ident, "period": r.period, "power": r.power,
                     "n_points": r.n_points})
    return pd.DataFrame(rows, columns=["id", "period", "power", "n_points"])
