"""Per-streak features and the streak real-bogus score ``rb``.

:func:`features_table` measures, for each fitted streak, quantities that separate trailed
point sources from artefacts that also trigger the line filters:

* cosmic rays and hot pixels are sharper than the PSF (``width_ratio`` < 1, large
  ``peak_ratio`` and ``resid_max``, the free-width fit improves chi2: ``dchi2_width``);
* bright-star subtraction residuals (dipoles, rings) have negative lobes (``neg_frac``) and are
  not uniform along the fitted trail (``along_chi2``);
* bad columns are sharp and often partly masked (``frac_masked``);
* noise fluctuations are faint and their detection and fit S/N disagree (``snr_ratio``).

:func:`streak_rb` turns them into a score in [0, 1] with a small
:class:`~sklearn.ensemble.HistGradientBoostingClassifier` trained by
:func:`zsds.streaks.train.train_streak_rb` on
simulated images (:mod:`zsds.streaks.simulate`): candidates matching an injected streak are
real, all others (triggered by cosmic rays, muon tracks, dipoles, rings, variable stars,
unmasked bad columns and noise) are bogus. The trained model ships as
``zsds/streaks/models/streak_rb.joblib`` and is loaded once per process by
:func:`load_streak_rb`; a missing or unusable file is an error (:class:`StreakModelError`),
never retrained at run time.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from zsds.streaks.base import FWHM_TO_SIGMA
from zsds.streaks.fit import trailed_psf

__all__ = [
    "FEATURE_COLUMNS",
    "MODEL_PATH",
    "RB_FEATURES",
    "StreakModelError",
    "feature_matrix",
    "features_table",
    "load_streak_rb",
    "streak_features",
    "streak_rb",
]

FEATURE_COLUMNS: tuple[str, ...] = (
    "len_fwhm",
    "width_ratio",
    "dchi2_width",
    "frac_masked",
    "edge_dist",
    "peak_ratio",
    "peak_to_flux",
    "resid_max",
    "pos_frac",
    "neg_frac",
    "along_chi2",
    "snr_ratio",
)
"""Columns added by :func:`features_table` (see ``docs/streaks.md``)."""

RB_FEATURES: tuple[str, ...] = (
    "snr",
    "chi2dof",
    "len_fwhm",
    "width_ratio",
    "dchi2_width",
    "frac_masked",
    "peak_ratio",
    "resid_max",
    "pos_frac",
    "neg_frac",
    "along_chi2",
    "snr_ratio",
    "pt_ratio",
)
"""Inputs of the streak real-bogus classifier, in order."""

MODEL_PATH = Path(__file__).resolve().parent / "models" / "streak_rb.joblib"
"""Where the trained classifier is stored."""

MODEL_FORMAT = "zsds-streak-rb/1"


def streak_features(
    diff: np.ndarray,
    sigma: np.ndarray | float,
    fwhm_px: float,
    fit: Mapping[str, float],
    mask: np.ndarray | None = None,
) -> dict[str, float]:
    """Features of one fitted streak (a row of :func:`~zsds.streaks.find.fit_detections`).

    Returns
    -------
    dict
        :data:`FEATURE_COLUMNS`.
    """
    d = np.asarray(diff)
    ny, nx = d.shape
    x0, y0, x1, y1 = (float(fit[k]) for k in ("x0", "y0", "x1", "y1"))
    L = math.hypot(x1 - x0, y1 - y0)
    s_mod = math.sqrt((fwhm_px * FWHM_TO_SIGMA) ** 2 + 1.0 / 12.0)
    out = dict.fromkeys(FEATURE_COLUMNS, float("nan"))
    out["len_fwhm"] = L / fwhm_px
    out["width_ratio"] = float(fit.get("width", np.nan)) / fwhm_px
    out["dchi2_width"] = float(fit.get("chi2dof", np.nan)) - float(fit.get("chi2dof_width", np.nan))
    npix, nmask = float(fit.get("npix", 0.0)), float(fit.get("nmask", 0.0))
    out["frac_masked"] = nmask / max(npix + nmask, 1.0)
    out["edge_dist"] = float(
        min(x0, y0, x1, y1, nx - 1 - x0, nx - 1 - x1, ny - 1 - y0, ny - 1 - y1)
    )
    snr = float(fit.get("snr", np.nan))
    out["snr_ratio"] = float(fit.get("snr_det", np.nan)) / snr if snr > 0 else float("nan")
    # Pixels of a band around the trail.
    xc, yc = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    ux, uy = ((x1 - x0) / L, (y1 - y0) / L) if L > 0 else (1.0, 0.0)
    hw = max(2.5 * fwhm_px, 5.0)
    ht = 0.5 * L + 2.0 * fwhm_px
    r = math.hypot(ht, hw)
    xa, xb = max(0, int(xc - r)), min(nx, int(xc + r) + 2)
    ya, yb = max(0, int(yc - r)), min(ny, int(yc + r) + 2)
    if xa >= xb or ya >= yb:
        return out
    yy, xx = np.mgrid[ya:yb, xa:xb]
    t = (xx - xc) * ux + (yy - yc) * uy
    v = -(xx - xc) * uy + (yy - yc) * ux
    sel = (np.abs(t) <= ht) & (np.abs(v) <= hw)
    dd = d[ya:yb, xa:xb][sel].astype(float)
    ss = np.broadcast_to(np.asarray(sigma, float), d.shape)[ya:yb, xa:xb][sel]
    good = np.isfinite(dd) & np.isfinite(ss) & (ss > 0)
    if mask is not None:
        good &= np.asarray(mask)[ya:yb, xa:xb][sel] == 0
    if good.sum() < 5:
        return out
    X, Y, D, S = xx[sel][good], yy[sel][good], dd[good], ss[good]
    tt = t[sel][good]
    bg = float(fit.get("bg", 0.0))
    flux = float(fit.get("flux", 0.0))
    M = trailed_psf(X, Y, x0, y0, x1, y1, flux, s_mod)
    zd = (D - bg) / S
    zr = (D - bg - M) / S
    core = M >= 0.5 * M.max() if M.max() > 0 else np.abs(v[sel][good]) <= s_mod
    out["peak_ratio"] = float((D[core] - bg).max() / M.max()) if M.max() > 0 else float("nan")
    out["peak_to_flux"] = float((D - bg).max() / flux) if flux > 0 else float("nan")
    out["resid_max"] = float(np.abs(zr).max())
    out["pos_frac"] = float(np.mean(zd > 3.0))
    out["neg_frac"] = float(np.mean(zd < -3.0))
    # Uniformity along the trail: flux scale of chunks relative to the fitted model.
    nchunk = int(np.clip(round(L / (1.5 * fwhm_px)), 2, 10))
    edges = np.linspace(-0.5 * L, 0.5 * L, nchunk + 1)
    k = np.clip(np.searchsorted(edges, tt) - 1, 0, nchunk - 1)
    inside = np.abs(tt) <= 0.5 * L + 1.0 * fwhm_px
    w = (M / S) ** 2
    num = np.bincount(k[inside], weights=(M * (D - bg) / S**2)[inside], minlength=nchunk)
    den = np.bincount(k[inside], weights=w[inside], minlength=nchunk)
    ok = den > 0
    if ok.sum() >= 2:
        a = num[ok] / den[ok]
        err = 1.0 / np.sqrt(den[ok])
        out["along_chi2"] = float(np.mean(((a - 1.0) / err) ** 2))
    return out


def features_table(
    diff: np.ndarray,
    sigma: np.ndarray | float,
    fwhm_px: float,
    fits: pd.DataFrame,
    mask: np.ndarray | None = None,
) -> pd.DataFrame:
    """:func:`streak_features` for every row of ``fits`` (index preserved)."""
    rows = [streak_features(diff, sigma, fwhm_px, r, mask) for _, r in fits.iterrows()]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in FEATURE_COLUMNS})
    return pd.DataFrame(rows, index=fits.index)


def feature_matrix(features: pd.DataFrame, names: tuple[str, ...] = RB_FEATURES) -> np.ndarray:
    """The classifier's input matrix: ``names`` columns of ``features`` (NaN where absent)."""
    X = np.column_stack(
        [features[c].to_numpy(float) if c in features else np.full(len(features), np.nan)
         for c in names]
    )
    X[~np.isfinite(X)] = np.nan
    return X


def streak_rb(features: pd.DataFrame, model: Any | None = None) -> np.ndarray:
    """Streak real-bogus score in [0, 1] (probability of being a real trailed source).

    Parameters
    ----------
    features : pandas.DataFrame
        Must hold :data:`RB_FEATURES` (missing columns or non-finite values are treated as
        missing).
    model : optional
        A bundle from :func:`train_streak_rb`; default :func:`load_streak_rb`.

    Returns
    -------
    ndarray (n,)
    """
    if len(features) == 0:
        return np.zeros(0)
    bundle = model if model is not None else load_streak_rb()
    clf = bundle["model"] if isinstance(bundle, dict) else bundle
    names = tuple(bundle.get("features", RB_FEATURES)) if isinstance(bundle, dict) else RB_FEATURES
    with threadpool_limits(limits=1, user_api="openmp"):  # one core, no thread spin-up
        return clf.predict_proba(feature_matrix(features, names))[:, 1]


def _usable(bundle: Any) -> bool:
    return (
        isinstance(bundle, dict)
        and bundle.get("format") == MODEL_FORMAT
        and tuple(bundle.get("features", ())) == RB_FEATURES
        and hasattr(bundle.get("model"), "predict_proba")
    )


class StreakModelError(RuntimeError):
    """The streak real-bogus model is missing or unusable (it is never retrained at run time:
    ``zsds rb train-streaks`` writes a new one)."""


@lru_cache(maxsize=1)
def load_streak_rb() -> dict[str, Any]:
    """The packaged classifier, loaded once per process.

    Raises
    ------
    StreakModelError
        If ``models/streak_rb.joblib`` is missing, unreadable or of another format or feature
        list; the message names the file and the command that trains one.
    """
    fix = "train one with `zsds rb train-streaks` (zsds.streaks.train.train_streak_rb)"
    if not MODEL_PATH.exists():
        raise StreakModelError(f"{MODEL_PATH}: the streak real-bogus model is missing; {fix}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bundle = joblib.load(MODEL_PATH)
    except Exception as exc:  # joblib/pickle raise many types for a broken file
        raise StreakModelError(f"{MODEL_PATH}: unreadable streak real-bogus model "
                               f"({type(exc).__name__}: {exc}); {fix}") from exc
    if not _usable(bundle):
        raise StreakModelError(f"{MODEL_PATH}: not a {MODEL_FORMAT} model with the features "
                               f"{RB_FEATURES}; {fix}")
    return bundle
