"""One-call streak finding: detect, fit, merge, measure features and score.

:func:`find_streaks` is what the pipeline calls on a difference image. It runs
:func:`~zsds.streaks.detect.detect_streaks`, fits every candidate with
:func:`~zsds.streaks.fit.fit_streak`, drops failed, point-like (shorter than
``min_length_fwhm`` FWHM) and faint (fitted S/N below ``snr_min``) ones, merges fitted streaks
that are fragments of one trail, adds the features of :mod:`zsds.streaks.features` and the
streak real-bogus score ``rb``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from zsds.streaks.detect import (
    DEFAULT_CONFIG,
    SEGMENT_COLUMNS,
    StreakConfig,
    detect_streaks,
)
from zsds.streaks.fit import FIT_KEYS, fit_streak, trail_flux_correction

__all__ = ["STREAK_COLUMNS", "find_streaks", "fit_detections"]

STREAK_COLUMNS: tuple[str, ...] = (
    *SEGMENT_COLUMNS,
    "flux",
    "fluxerr",
    "snr",
    "chi2dof",
    "width",
    "nmask",
)
"""Leading columns of :func:`find_streaks` (features and ``rb`` follow)."""

_DET_KEEP = ("snr_det", "snr_prof", "n_seg", "seg_length", "pt_ratio")


def _merge_pass(fits: list[dict[str, float]], tol: float, angle_tol: float, gap: float) -> list[
    tuple[int, list[int]]
]:
    """Groups of fitted streaks (indices) that are collinear fragments or duplicates."""
    n = len(fits)
    order = sorted(range(n), key=lambda i: -fits[i]["snr"])
    used = [False] * n
    groups: list[tuple[int, list[int]]] = []
    arr = np.array([[f["x0"], f["y0"], f["x1"], f["y1"], f["angle"]] for f in fits], float)
    for i in order:
        if used[i]:
            continue
        x0, y0, x1, y1, ang_i = arr[i]
        L = math.hypot(x1 - x0, y1 - y0)
        cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
        ux, uy = ((x1 - x0) / L, (y1 - y0) / L) if L > 0 else (1.0, 0.0)
        t0 = (arr[:, 0] - cx) * ux + (arr[:, 1] - cy) * uy
        t1 = (arr[:, 2] - cx) * ux + (arr[:, 3] - cy) * uy
        v0 = -(arr[:, 0] - cx) * uy + (arr[:, 1] - cy) * ux
        v1 = -(arr[:, 2] - cx) * uy + (arr[:, 3] - cy) * ux
        dang = np.abs((arr[:, 4] - ang_i + 90.0) % 180.0 - 90.0)
        lo, hi = np.minimum(t0, t1), np.maximum(t0, t1)
        along = (hi >= -0.5 * L - gap) & (lo <= 0.5 * L + gap)
        coll = (np.abs(v0) <= tol) & (np.abs(v1) <= tol) & (dang <= angle_tol) & along
        d0 = np.hypot(np.clip(t0, -0.5 * L, 0.5 * L) - t0, v0)
        d1 = np.hypot(np.clip(t1, -0.5 * L, 0.5 * L) - t1, v1)
        inside = (d0 <= tol) & (d1 <= tol)
        members = [j for j in range(n) if not used[j] and (coll[j] or inside[j] or j == i)]
        for j in members:
            used[j] = True
        groups.append((i, members))
    return groups


def fit_detections(
    diff: np.ndarray,
    sigma: np.ndarray | float,
    fwhm_px: float,
    detections: pd.DataFrame,
    mask: np.ndarray | None = None,
    config: StreakConfig = DEFAULT_CONFIG,
) -> pd.DataFrame:
    """Fit, cut and merge detections (see the module docstring).

    Returns
    -------
    pandas.DataFrame
        :data:`~zsds.streaks.fit.FIT_KEYS` plus the detection columns ``snr_det, snr_prof,
        n_seg, seg_length, pt_ratio``; one row per surviving streak, highest S/N first.
    """
    ny, nx = np.shape(diff)
    min_len = config.min_length_fwhm * fwhm_px
    fits: list[dict[str, float]] = []
    for _, row in detections.iterrows():
        f = fit_streak(diff, sigma, fwhm_px, row, mask)
        f.update({k: float(row[k]) for k in _DET_KEEP if k in row})
        if _acceptable(f, min_len, config.snr_min, nx, ny):
            fits.append(f)
    tol = max(config.merge_perp_fwhm * fwhm_px, 2.0 * config.binning)
    gap = max(config.merge_gap_fwhm * fwhm_px, 10.0)
    for _ in range(3):
        groups = _merge_pass(fits, tol, config.merge_angle_deg, gap)
        if all(len(m) == 1 for _, m in groups):
            break
        out = []
        for i, members in groups:
            if len(members) == 1:
                out.append(fits[i])
                continue
            f = _refit_union(diff, sigma, fwhm_px, mask, [fits[j] for j in members], fits[i])
            if f is not None and _acceptable(f, min_len, config.snr_min, nx, ny):
                out.append(f)
            else:
                out.append(fits[i])
        fits = out
    if not fits:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in (*FIT_KEYS, *_DET_KEEP)})
    df = pd.DataFrame(fits)
    return df.sort_values("snr", ascending=False, ignore_index=True)


def _acceptable(f: dict[str, float], min_len: float, snr_min: float, nx: int, ny: int) -> bool:
    return bool(
        f["success"] > 0
        and np.isfinite(f["snr"])
        and f["snr"] >= snr_min
        and f["length"] >= min_len
        and -1.0 <= f["xmid"] <= nx
        and -1.0 <= f["ymid"] <= ny
    )


def _refit_union(
    diff: np.ndarray,
    sigma: np.ndarray | float,
    fwhm_px: float,
    mask: np.ndarray | None,
    members: list[dict[str, float]],
    top: dict[str, float],
) -> dict[str, float] | None:
    """Refit a group along the top streak's line, spanning all members."""
    x0, y0, x1, y1 = top["x0"], top["y0"], top["x1"], top["y1"]
    L = math.hypot(x1 - x0, y1 - y0)
    if L <= 0:
        return None
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    ux, uy = (x1 - x0) / L, (y1 - y0) / L
    t = [((m[a] - cx) * ux + (m[b] - cy) * uy) for m in members for a, b in (("x0", "y0"),
                                                                               ("x1", "y1"))]
    ta, tb = min(t), max(t)
    init = {"x0": cx + ta * ux, "y0": cy + ta * uy, "x1": cx + tb * ux, "y1": cy + tb * uy}
    f = fit_streak(diff, sigma, fwhm_px, init, mask)
    for k in _DET_KEEP:
        if k in top:
            f[k] = max(m.get(k, -np.inf) for m in members) if k != "n_seg" else float(
                sum(m.get(k, 0.0) for m in members)
            )
    return f


def find_streaks(
    diff: np.ndarray,
    sigma: np.ndarray | float,
    fwhm_px: float,
    mask: np.ndarray | None = None,
    config: StreakConfig = DEFAULT_CONFIG,
    *,
    model: Any | None = None,
    psf: np.ndarray | None = None,
) -> pd.DataFrame:
    """Detect, fit, measure and score the streaks of a difference image.

    Parameters
    ----------
    diff : ndarray (ny, nx)
        Difference image.
    sigma : ndarray (ny, nx) or float
        1-sigma noise of ``diff`` per pixel.
    fwhm_px : float
        PSF FWHM (pixels).
    mask : ndarray (ny, nx), optional
        Nonzero pixels are ignored.
    config : StreakConfig
        Settings.
    model : optional
        Streak real-bogus classifier; default: :func:`zsds.streaks.features.load_streak_rb`.
    psf : ndarray, optional
        PSF image of the difference image. When given, ``flux`` and ``fluxerr`` are multiplied
        by :func:`~zsds.streaks.fit.trail_flux_correction` (reported as ``flux_corr``; 1.0
        otherwise or when the PSF image is unusable): the Gaussian model misses the PSF
        wings.

    Returns
    -------
    pandas.DataFrame
        One row per streak, highest S/N first: :data:`STREAK_COLUMNS`, the fit errors and
        diagnostics, the detection columns, the features of
        :data:`zsds.streaks.features.FEATURE_COLUMNS` and ``rb`` in [0, 1]. Columns and units
        are listed in ``docs/streaks.md``. Streaks with ``rb >= config.rb_threshold`` are the
        recommended selection.
    """
    from zsds.streaks.features import FEATURE_COLUMNS, features_table, streak_rb

    det = detect_streaks(diff, sigma, fwhm_px, mask, config)
    fits = fit_detections(diff, sigma, fwhm_px, det, mask, config)
    feats = features_table(diff, sigma, fwhm_px, fits, mask)
    out = pd.concat([fits, feats[[c for c in FEATURE_COLUMNS if c not in fits]]], axis=1)
    out["rb"] = streak_rb(out, model) if len(out) else np.zeros(0)
    corr = np.ones(len(out))
    if psf is not None:
        corr = np.array([trail_flux_correction(psf, fwhm_px, r["length"], r["angle"])
                         for _, r in out.iterrows()])
        corr = np.where(np.isfinite(corr) & (corr > 0), corr, 1.0)  # unusable PSF: no change
        out["flux"] = out["flux"] * corr
        out["fluxerr"] = out["fluxerr"] * corr
    out["flux_corr"] = corr
    first = [c for c in STREAK_COLUMNS if c in out]
    return out[first + [c for c in out.columns if c not in first]]
