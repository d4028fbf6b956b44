"""Completeness, false-streak rate and accuracy of streak finding on simulated images.

:func:`evaluate_streaks` simulates difference images (:mod:`zsds.streaks.simulate`), runs
:func:`~zsds.streaks.find.find_streaks` and matches its streaks to the injected ones with
:func:`match_streaks`: a found streak matches a true one when its midpoint lies within
``max(5 px, 0.25 L)`` of the true segment and the angles agree within 10 degrees. It reports

* completeness of streaks with integrated S/N >= 10 (the bar is >= 90 %), and per S/N and
  length bin;
* false streaks (found, not matching any injected streak; a second match of the same streak
  counts as a duplicate, not as false) per image, per 512^2 pixels and per full ZTF quadrant
  area (3072 x 3080; the bar is <= 0.5);
* end-point error (px), angle error (deg) and the fitted/true flux ratio of matched streaks.

Rates are given for all streaks and for those with ``rb >= config.rb_threshold`` (the
recommended selection).
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import numpy as np
import pandas as pd

from zsds.streaks.detect import DEFAULT_CONFIG, StreakConfig
from zsds.streaks.simulate import SimConfig, simulate_difference

__all__ = [
    "QUADRANT_AREA",
    "evaluate_streaks",
    "evaluation_sim_config",
    "main",
    "match_streaks",
]

QUADRANT_AREA = 3072.0 * 3080.0
"""Pixels of a ZTF CCD quadrant."""

SNR_BINS: tuple[float, ...] = (5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 1e9)
LENGTH_BINS: tuple[float, ...] = (8.0, 16.0, 32.0, 64.0, 128.0, 1e9)


def _point_segment_distance(
    px: np.ndarray, py: np.ndarray, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray
) -> np.ndarray:
    """Distance of points ``(px, py)`` (shape (n, 1)) to segments (shape (1, m))."""
    dx, dy = x1 - x0, y1 - y0
    l2 = dx * dx + dy * dy
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(l2 > 0, ((px - x0) * dx + (py - y0) * dy) / np.where(l2 > 0, l2, 1.0), 0.0)
    t = np.clip(t, 0.0, 1.0)
    return np.hypot(px - (x0 + t * dx), py - (y0 + t * dy))


def match_streaks(
    found: pd.DataFrame,
    truth: pd.DataFrame,
    pos_tol_px: float = 5.0,
    pos_tol_frac: float = 0.25,
    angle_tol_deg: float = 10.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Match found streaks to true ones.

    A pair qualifies when the found midpoint lies within ``max(pos_tol_px, pos_tol_frac *
    L_true)`` of the true segment and the angles (mod 180) differ by at most ``angle_tol_deg``.
    Pairs are assigned closest first; each true streak gets at most one primary match, further
    qualifying found streaks are duplicates.

    Returns
    -------
    owner : ndarray (n_found,) int
        Index of the matched true streak, ``-1`` if none (``-2 - j`` marks a duplicate of
        true streak ``j``).
    hit : ndarray (n_true,) bool
        Whether each true streak was found.
    """
    nf, nt = len(found), len(truth)
    owner = np.full(nf, -1, np.int64)
    hit = np.zeros(nt, bool)
    if nf == 0 or nt == 0:
        return owner, hit
    tx0, ty0, tx1, ty1 = (truth[k].to_numpy(float)[None, :] for k in ("x0", "y0", "x1", "y1"))
    fx = found["xmid"].to_numpy(float)[:, None]
    fy = found["ymid"].to_numpy(float)[:, None]
    dist = _point_segment_distance(fx, fy, tx0, ty0, tx1, ty1)
    tl = np.hypot(tx1 - tx0, ty1 - ty0)
    tang = np.degrees(np.arctan2(ty1 - ty0, tx1 - tx0))
    dang = np.abs((found["angle"].to_numpy(float)[:, None] - tang + 90.0) % 180.0 - 90.0)
    ok = (dist <= np.maximum(pos_tol_px, pos_tol_frac * tl)) & (dang <= angle_tol_deg)
    cand = np.argwhere(ok)
    order = np.argsort(dist[ok])
    for fi, ti in cand[order]:
        if owner[fi] != -1:
            continue
        if not hit[ti]:
            hit[ti] = True
            owner[fi] = ti
        else:
            owner[fi] = -2 - ti
    return owner, hit


def _endpoint_error(found: pd.Series, true: pd.Series) -> float:
    """Mean distance of the two end points (best of both orderings), px."""
    f = np.array([found["x0"], found["y0"], found["x1"], found["y1"]], float)
    t = np.array([true["x0"], true["y0"], true["x1"], true["y1"]], float)
    a = 0.5 * (math.hypot(*(f[:2] - t[:2])) + math.hypot(*(f[2:] - t[2:])))
    b = 0.5 * (math.hypot(*(f[:2] - t[2:])) + math.hypot(*(f[2:] - t[:2])))
    return min(a, b)


def evaluation_sim_config(size: int, fwhm: float = 2.5) -> SimConfig:
    """Simulation settings of :func:`evaluate_streaks` (artefact densities per 512^2)."""
    return SimConfig(
        shape=(size, size),
        fwhm=fwhm,
        n_streaks=3.0,
        snr_range=(5.0, 100.0),
        length_range=(8.0, 300.0),
        n_cosmics=10.0,
        n_tracks=1.0,
        n_dipoles=2.0,
        n_rings=1.0,
        n_variables=4.0,
        n_badcols=0.5,
        badcol_masked=0.8,
        n_saturated=0.5,
    )


def _binned(values: np.ndarray, found: np.ndarray, bins: tuple[float, ...]) -> list[dict]:
    out = []
    for lo, hi in itertools.pairwise(bins):
        sel = (values >= lo) & (values < hi)
        n = int(sel.sum())
        out.append(
            {
                "lo": lo,
                "hi": hi if hi < 1e8 else math.inf,
                "n": n,
                "found": int(found[sel].sum()),
                "completeness": float(found[sel].mean()) if n else math.nan,
            }
        )
    return out


def evaluate_streaks(
    n_images: int = 8,
    size: int = 1024,
    seed: int = 0,
    config: StreakConfig = DEFAULT_CONFIG,
    sim_config: SimConfig | None = None,
    *,
    fwhm: float = 2.5,
    model: Any | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Measure streak-finding performance on ``n_images`` simulated ``size x size`` images.

    Parameters
    ----------
    n_images, size : int
        Number and side of the simulated images.
    seed : int
        Seed of the simulation.
    config : StreakConfig
        Settings of :func:`~zsds.streaks.find.find_streaks`.
    sim_config : SimConfig, optional
        Simulation settings (default :func:`evaluation_sim_config`; its ``shape`` is replaced
        by ``(size, size)``).
    fwhm : float
        PSF FWHM when ``sim_config`` is not given.
    model : optional
        Streak real-bogus model (default: the packaged one).
    verbose : bool
        Print a summary.

    Returns
    -------
    dict
        ``completeness_snr10`` (and ``_rb``), ``n_true_snr10``, ``by_snr`` / ``by_length``
        (lists of bins), ``false_per_image``, ``false_per_512sq``, ``false_per_quadrant`` (and
        ``_rb`` variants), ``duplicates``, ``endpoint_err_median_px``, ``endpoint_err_p90_px``,
        ``angle_err_median_deg``, ``flux_ratio_median``, ``flux_ratio_mad``,
        ``seconds_per_image``, ``seconds_per_512sq``, ``n_images``, ``size``, and the tables
        ``truth`` and ``found`` (pandas).
    """
    from zsds.streaks.find import find_streaks

    rng = np.random.default_rng(seed)
    base = sim_config if sim_config is not None else evaluation_sim_config(size, fwhm)
    base = SimConfig(**{**base.__dict__, "shape": (size, size)})
    truths, founds = [], []
    seconds = 0.0
    for k in range(n_images):
        sim = simulate_difference(rng, base)
        t0 = time.perf_counter()
        found = find_streaks(sim.image, sim.sigma, base.fwhm, sim.mask, config, model=model)
        seconds += time.perf_counter() - t0
        owner, hit = match_streaks(found, sim.truth)
        tr = sim.truth.copy()
        tr["image"] = k
        tr["found"] = hit
        tr["found_rb"] = False
        fo = found.copy()
        fo["image"] = k
        fo["owner"] = owner
        if len(fo):
            good = fo["rb"].to_numpy() >= config.rb_threshold
            own_rb, hit_rb = match_streaks(fo[good], sim.truth)
            tr["found_rb"] = hit_rb
            fo["owner_rb"] = -1
            fo.loc[good, "owner_rb"] = own_rb
            fo["endpoint_err"] = [
                _endpoint_error(r, sim.truth.iloc[o]) if o >= 0 else math.nan
                for (_, r), o in zip(fo.iterrows(), owner, strict=True)
            ]
            fo["true_flux"] = [sim.truth["flux"].iloc[o] if o >= 0 else math.nan for o in owner]
            fo["true_angle"] = [sim.truth["angle"].iloc[o] if o >= 0 else math.nan for o in owner]
        truths.append(tr)
        founds.append(fo)
    truth = pd.concat(truths, ignore_index=True)
    found = pd.concat(founds, ignore_index=True)
    area = n_images * float(size * size)
    snr = truth["snr_integrated"].to_numpy()
    bright = snr >= 10.0
    res: dict[str, Any] = {"n_images": n_images, "size": size, "fwhm": base.fwhm}
    res["n_true_snr10"] = int(bright.sum())
    res["completeness_snr10"] = float(truth["found"][bright].mean()) if bright.any() else math.nan
    res["completeness_snr10_rb"] = (
        float(truth["found_rb"][bright].mean()) if bright.any() else math.nan
    )
    res["by_snr"] = _binned(snr, truth["found"].to_numpy(), SNR_BINS)
    res["by_snr_rb"] = _binned(snr, truth["found_rb"].to_numpy(), SNR_BINS)
    res["by_length_snr10"] = _binned(
        truth["length"].to_numpy()[bright], truth["found"].to_numpy()[bright], LENGTH_BINS
    )
    if len(found):
        false = found["owner"].to_numpy() == -1
        false_rb = false & (found["rb"].to_numpy() >= config.rb_threshold)
        dup = found["owner"].to_numpy() <= -2
        m = found["owner"].to_numpy() >= 0
        ep = found.loc[m, "endpoint_err"].to_numpy(float)
        dang = np.abs((found.loc[m, "angle"] - found.loc[m, "true_angle"] + 90.0) % 180.0 - 90.0)
        fr = (found.loc[m, "flux"] / found.loc[m, "true_flux"]).to_numpy(float)
    else:
        false = false_rb = dup = np.zeros(0, bool)
        ep = dang = fr = np.zeros(0)
    nfalse, nfalse_rb = int(false.sum()), int(false_rb.sum())
    res["false"] = nfalse
    res["false_rb"] = nfalse_rb
    res["duplicates"] = int(dup.sum())
    res["false_per_image"] = nfalse / n_images
    res["false_per_512sq"] = nfalse * 512.0**2 / area
    res["false_per_quadrant"] = nfalse * QUADRANT_AREA / area
    res["false_per_quadrant_rb"] = nfalse_rb * QUADRANT_AREA / area
    res["endpoint_err_median_px"] = float(np.median(ep)) if len(ep) else math.nan
    res["endpoint_err_p90_px"] = float(np.percentile(ep, 90)) if len(ep) else math.nan
    res["angle_err_median_deg"] = float(np.median(dang)) if len(dang) else math.nan
    res["flux_ratio_median"] = float(np.median(fr)) if len(fr) else math.nan
    res["flux_ratio_mad"] = float(np.median(np.abs(fr - np.median(fr)))) if len(fr) else math.nan
    res["seconds_per_image"] = seconds / n_images
    res["seconds_per_512sq"] = seconds * 512.0**2 / area
    res["truth"] = truth
    res["found"] = found
    if verbose:
        print(format_summary(res))
    return res


def format_summary(res: dict[str, Any]) -> str:
    """Human-readable summary of :func:`evaluate_streaks`."""
    lines = [
        f"{res['n_images']} images of {res['size']}^2 px, FWHM {res['fwhm']:.2f} px",
        f"completeness (S/N >= 10, n={res['n_true_snr10']}): {res['completeness_snr10']:.3f}"
        f"  (rb cut: {res['completeness_snr10_rb']:.3f})",
        "completeness by S/N: "
        + ", ".join(
            f"[{b['lo']:g},{b['hi']:g}) {b['found']}/{b['n']}" for b in res["by_snr"] if b["n"]
        ),
        "  with rb cut:       "
        + ", ".join(
            f"[{b['lo']:g},{b['hi']:g}) {b['found']}/{b['n']}" for b in res["by_snr_rb"] if b["n"]
        ),
        "S/N>=10 by length:  "
        + ", ".join(
            f"[{b['lo']:g},{b['hi']:g}) {b['found']}/{b['n']}"
            for b in res["by_length_snr10"]
            if b["n"]
        ),
        f"false streaks: {res['false']} ({res['false_per_quadrant']:.2f} per quadrant area), "
        f"with rb cut: {res['false_rb']} ({res['false_per_quadrant_rb']:.2f} per quadrant); "
        f"duplicates: {res['duplicates']}",
        f"end points: median {res['endpoint_err_median_px']:.2f} px, "
        f"90% {res['endpoint_err_p90_px']:.2f} px; angle error median "
        f"{res['angle_err_median_deg']:.2f} deg; flux ratio {res['flux_ratio_median']:.3f} "
        f"+- {res['flux_ratio_mad']:.3f} (MAD)",
        f"time: {res['seconds_per_image']:.2f} s/image, {res['seconds_per_512sq']:.3f} s per 512^2",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry: ``python -m zsds.streaks.evaluate [n_images] [size] [seed]``."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    n = int(args[0]) if len(args) > 0 else 8
    size = int(args[1]) if len(args) > 1 else 1024
    seed = int(args[2]) if len(args) > 2 else 0
    return evaluate_streaks(n, size, seed)


if __name__ == "__main__":
    main()
