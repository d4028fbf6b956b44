"""Findability, completeness and purity of moving-object linkages against simulator truth.

Definitions (as in the HelioLinC/LSST and ``difi`` literature)
--------------------------------------------------------------
* An object is **findable** when, on at least ``min_nights`` distinct nights, it has at least
  one *tracklet-able pair*: two detections from different exposures of one night whose time
  separation lies in ``[min_time, max_time]`` and whose angular rate lies in
  ``[min_vel, max_vel]`` of the :class:`~zsds.moving.tracklets.TrackletConfig`.
* A linkage is **pure** when all its detections come from one simulated object; a single
  foreign (other object or false) detection makes it impure.
* **completeness** = findable objects with at least one pure linkage / findable objects.
* **purity** = pure linkages / all linkages.
* **duplicates** = pure linkages beyond the first of their object.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from zsds.moving.heliolinc import AcceptFn, HelioLincConfig, link
from zsds.moving.simulate import simulate_window
from zsds.moving.tracklets import (
    TrackletConfig,
    make_tracklets,
    night_index,
    radec_to_unit,
    remove_stationary,
)

__all__ = ["evaluate_linking", "findable", "format_summary", "run_linking_evaluation"]


def findable(
    dets: pd.DataFrame, min_nights: int = 3, config: TrackletConfig | None = None
) -> NDArray[np.str_]:
    """Designations of the findable simulated objects.

    Parameters
    ----------
    dets : pandas.DataFrame
        Detection table with ``truth`` (``""`` for false detections).
    min_nights : int, optional
        Nights with a tracklet-able pair required.
    config : TrackletConfig, optional
        Time and rate limits of a pair (default :class:`TrackletConfig`).

    Returns
    -------
    numpy.ndarray of str
        Sorted designations.
    """
    config = config or TrackletConfig()
    real = dets[dets["truth"].astype(str) != ""]
    if real.empty:
        return np.array([], dtype=str)
    df = pd.DataFrame(
        {
            "truth": real["truth"].astype(str).to_numpy(),
            "night": night_index(real["mjd"].to_numpy()),
            "mjd": real["mjd"].to_numpy(dtype=float),
            "expid": real["expid"].to_numpy(),
            "k": np.arange(len(real)),
        }
    )
    u = radec_to_unit(real["ra"].to_numpy(), real["dec"].to_numpy())
    pairs = df.merge(df, on=["truth", "night"], suffixes=("1", "2"))
    pairs = pairs[(pairs["mjd2"] > pairs["mjd1"]) & (pairs["expid1"] != pairs["expid2"])]
    dt = (pairs["mjd2"] - pairs["mjd1"]).to_numpy()
    cosd = np.einsum("ij,ij->i", u[pairs["k1"].to_numpy()], u[pairs["k2"].to_numpy()])
    rate = np.rad2deg(np.arccos(np.clip(cosd, -1.0, 1.0))) / np.maximum(dt, 1e-12)
    ok = (
        (dt >= config.min_time)
        & (dt <= config.max_time)
        & (rate >= config.min_vel)
        & (rate <= config.max_vel)
    )
    nights = pairs.loc[ok, ["truth", "night"]].drop_duplicates()
    counts = nights.groupby("truth").size()
    return np.sort(counts.index[counts >= min_nights].to_numpy().astype(str))


def evaluate_linking(
    dets: pd.DataFrame,
    link_members: pd.DataFrame,
    findable_ids: NDArray[np.str_] | None = None,
    min_nights: int = 3,
    config: TrackletConfig | None = None,
) -> dict[str, Any]:
    """Score linkages against the ``truth`` column.

    Parameters
    ----------
    dets : pandas.DataFrame
        Detection table with ``det_id`` and ``truth``.
    link_members : pandas.DataFrame
        ``link_id``, ``det_id`` of the linkages.
    findable_ids : array of str, optional
        Findable objects; computed with :func:`findable` when omitted.
    min_nights : int, optional
        Passed to :func:`findable`.
    config : TrackletConfig, optional
        Passed to :func:`findable`.

    Returns
    -------
    dict
        ``n_findable``, ``n_linkages``, ``n_pure``, ``n_impure``, ``n_found`` (findable objects
        with a pure linkage), ``n_found_unfindable``, ``n_duplicates``, ``completeness``,
        ``purity``, ``mean_det_fraction`` (mean share of a found object's detections in its
        best pure linkage) and ``missed`` (designations of findable objects not found).
    """
    if findable_ids is None:
        findable_ids = findable(dets, min_nights=min_nights, config=config)
    fset = set(np.asarray(findable_ids, dtype=str).tolist())
    truth = pd.Series(dets["truth"].astype(str).to_numpy(), index=dets["det_id"].to_numpy())
    lm = link_members[["link_id", "det_id"]].copy()
    lm["truth"] = truth.reindex(lm["det_id"].to_numpy()).fillna("").to_numpy()
    grp = lm.groupby("link_id")["truth"]
    n_truth = grp.nunique()
    first = grp.first()
    pure = (n_truth == 1) & (first != "")
    pure_truth = first[pure]
    found = set(pure_truth.tolist())
    n_links = len(n_truth)
    n_pure = int(pure.sum())
    n_found = len(found & fset)
    per_obj = truth[truth != ""].value_counts()
    sizes = lm[lm["link_id"].isin(pure_truth.index)].groupby("link_id").size()
    frac = (
        (sizes / per_obj.reindex(pure_truth.reindex(sizes.index)).to_numpy())
        .groupby(pure_truth.reindex(sizes.index).to_numpy())
        .max()
    )
    return {
        "n_findable": len(fset),
        "n_linkages": n_links,
        "n_pure": n_pure,
        "n_impure": n_links - n_pure,
        "n_found": n_found,
        "n_found_unfindable": len(found - fset),
        "n_duplicates": int(n_pure - len(found)),
        "completeness": n_found / len(fset) if fset else float("nan"),
        "purity": n_pure / n_links if n_links else float("nan"),
        "mean_det_fraction": float(frac.mean()) if len(frac) else float("nan"),
        "missed": sorted(fset - found),
    }


def format_summary(result: dict[str, Any]) -> str:
    """A short plain-text summary of :func:`run_linking_evaluation`'s result."""
    t = result["timings"]
    lines = [
        f"window: {result['n_nights']} nights, {result['n_fields']} fields, "
        f"{result['n_exposures']} exposures, {result['n_objects']} simulated asteroids",
        f"detections: {result['n_dets']} ({result['n_dets_per_night']:.0f}/night), "
        f"false {result['n_false_per_night']:.0f}/night, "
        f"stationary removed {result['n_stationary_removed']}",
        f"tracklets: {result['n_tracklets']}, hypotheses {result['n_hypotheses']}, "
        f"candidates {result['n_candidates']}",
        f"findable {result['n_findable']}, linkages {result['n_linkages']} "
        f"(pure {result['n_pure']}, impure {result['n_impure']}, "
        f"duplicates {result['n_duplicates']})",
        f"completeness {100 * result['completeness']:.1f} %, "
        f"purity {100 * result['purity']:.1f} %, "
        f"detections per found object in its linkage {100 * result['mean_det_fraction']:.1f} %",
        "timings [s]: " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()),
    ]
    return "\n".join(lines)


def run_linking_evaluation(
    seed: int = 1,
    density_scale: float = 1.0,
    n_fields: int = 2,
    n_nights: int = 3,
    visits_per_night: int = 3,
    false_per_exposure: int = 100,
    stationary_per_field: int = 50,
    start_night: str = "2024-03-15",
    tracklet_config: TrackletConfig | None = None,
    helio_config: HelioLincConfig | None = None,
    accept: AcceptFn | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Simulate a window, remove stationary sources, make tracklets, link and evaluate.

    Parameters
    ----------
    seed, density_scale, n_fields, n_nights, visits_per_night, false_per_exposure,
    stationary_per_field, start_night
        Passed to :func:`zsds.moving.simulate.simulate_window`.
    tracklet_config, helio_config : optional
        Configurations of the two stages.
    accept : callable, optional
        Passed to :func:`zsds.moving.heliolinc.link`.
    verbose : bool, optional
        Print :func:`format_summary`.

    Returns
    -------
    dict
        The metrics of :func:`evaluate_linking` plus counts, ``timings`` (seconds for
        ``simulate``, ``stationary``, ``tracklets``, ``cluster``, ``refine``, ``link`` =
        cluster + refine, ``total`` excluding the simulation) and ``summary`` (text).
    """
    tracklet_config = tracklet_config or TrackletConfig()
    helio_config = helio_config or HelioLincConfig()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    dets, orbits, exposures = simulate_window(
        seed, n_nights=n_nights, start_night=start_night, n_fields=n_fields,
        visits_per_night=visits_per_night, density_scale=density_scale,
        false_per_exposure=false_per_exposure, stationary_per_field=stationary_per_field,
    )  # fmt: skip
    t1 = time.perf_counter()
    timings["simulate"] = t1 - t0
    keep = remove_stationary(dets)
    moving = dets[keep].reset_index(drop=True)
    t2 = time.perf_counter()
    timings["stationary"] = t2 - t1
    tracklets, members = make_tracklets(moving, tracklet_config)
    t3 = time.perf_counter()
    timings["tracklets"] = t3 - t2
    if helio_config.t_ref is None and len(exposures):
        mid = 0.5 * (exposures["mjd"].min() + exposures["mjd"].max())
        helio_config = replace(helio_config, t_ref=float(mid))
    linkages, link_members = link(tracklets, members, moving, helio_config, accept=accept)
    t4 = time.perf_counter()
    lt = linkages.attrs.get("timings", {})
    timings["cluster"] = lt.get("cluster", np.nan)
    timings["refine"] = lt.get("refine", np.nan)
    timings["link"] = t4 - t3
    timings["total"] = t4 - t1
    fids = findable(dets, min_nights=helio_config.min_nights, config=tracklet_config)
    metrics = evaluate_linking(dets, link_members, findable_ids=fids)
    nights = night_index(dets["mjd"].to_numpy())
    n_night = max(len(np.unique(nights)), 1)
    result: dict[str, Any] = {
        "seed": seed,
        "density_scale": density_scale,
        "n_nights": n_nights,
        "n_fields": n_fields,
        "n_exposures": len(exposures),
        "n_objects": len(orbits),
        "n_dets": len(dets),
        "n_dets_per_night": len(dets) / n_night,
        "n_false_per_night": float(np.sum(dets["truth"] == "")) / n_night,
        "n_stationary_removed": int(np.sum(~keep)),
        "n_tracklets": len(tracklets),
        "n_hypotheses": int(lt.get("n_hypotheses", 0)),
        "n_candidates": int(lt.get("n_candidates", 0)),
        **metrics,
        "timings": timings,
    }
    result["summary"] = format_summary(result)
    if verbose:
        print(result["summary"])
    return result
