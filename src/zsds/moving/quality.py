"""Known-object tagging measured on a processed night against the simulator's truth.

For every difference image of the night, the simulated asteroids in its quadrant
(``truth/<night>/<expid>/cNN_sources.parquet``, kind 4) that the simulated MPC knows
(``refcat/MPCORB.DAT``) and that are brighter than the image's limit are matched to the
positive candidates within 2" of their mid-exposure position (detected), and each detected
one is checked for the right ``ssnamenr`` with ``ssdistnr`` <= 2". Candidates tagged with an
object that is not there are counted as false tags.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from sqlalchemy import select
from sqlalchemy.engine import Engine

from zsds.core.home import Home
from zsds.core.naming import nid_of, parse_night
from zsds.db.engine import session
from zsds.db.schema import Candidate, DiffImageRecord
from zsds.moving.run import known_orbits

KIND_ASTEROID = 4


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r, d = np.deg2rad(ra), np.deg2rad(dec)
    return np.column_stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)])


def evaluate_known_night(home: Home, engine: Engine, night: str | dt.date,
                         tol_arcsec: float = 2.0, margin_mag: float = 0.0) -> dict[str, Any]:
    """Tagging completeness and false tags of a processed night (see the module docstring).

    Returns
    -------
    dict
        ``n_images``, ``n_known_bright`` (known asteroids brighter than the limit on an
        image), ``n_detected``, ``n_tagged`` (right name within ``tol_arcsec``),
        ``frac_tagged`` (of detected), ``n_mistagged``, ``n_false_tags`` and
        ``median_ssdistnr`` (arcsec).
    """
    date = parse_night(night)
    orbits = known_orbits(home)
    known = set(orbits.designation) if orbits is not None else set()
    with session(engine) as s:
        images = s.execute(select(DiffImageRecord.pid, DiffImageRecord.expid,
                                  DiffImageRecord.ccdid, DiffImageRecord.qid,
                                  DiffImageRecord.diffmaglim)
                           .where(DiffImageRecord.nid == nid_of(date))).all()
        cands = pd.DataFrame(s.execute(
            select(Candidate.pid, Candidate.candid, Candidate.ra, Candidate.dec,
                   Candidate.isdiffpos, Candidate.ssnamenr, Candidate.record)
            .where(Candidate.nid == nid_of(date))).all(),
            columns=["pid", "candid", "ra", "dec", "isdiffpos", "ssnamenr", "record"])
    res = {"n_images": len(images), "n_known_bright": 0, "n_detected": 0, "n_tagged": 0,
           "n_mistagged": 0, "n_false_tags": 0}
    dists: list[float] = []
    chord = 2.0 * np.sin(np.deg2rad(tol_arcsec / 3600.0) / 2.0)
    for pid, expid, ccdid, qid, lim in images:
        hits = sorted(home.truth.glob(f"*/{expid}/c{ccdid:02d}_sources.parquet"))
        truth = pd.read_parquet(hits[0]) if hits else pd.DataFrame(columns=["kind"])
        ast = truth[(truth["kind"] == KIND_ASTEROID) & (truth.get("qid", qid) == qid)]
        if lim is not None:
            ast = ast[ast["mag"] <= lim - margin_mag]
        ast = ast[ast["id"].astype(str).isin(known)]
        c = cands[(cands["pid"] == pid) & (cands["isdiffpos"] == "t")]
        tagged = c[c["ssnamenr"].notna()]
        res["n_known_bright"] += len(ast)
        if len(ast) and len(c):
            ra = np.where(ast["ra1"].notna(), 0.5 * (ast["ra"] + ast["ra1"]), ast["ra"]) \
                if "ra1" in ast else ast["ra"].to_numpy()
            dec = np.where(ast["dec1"].notna(), 0.5 * (ast["dec"] + ast["dec1"]), ast["dec"]) \
                if "dec1" in ast else ast["dec"].to_numpy()
            tree = cKDTree(_unit(c["ra"].to_numpy(), c["dec"].to_numpy()))
            d, j = tree.query(_unit(np.asarray(ra), np.asarray(dec)),
                              distance_upper_bound=chord)
            det = np.isfinite(d)
            res["n_detected"] += int(det.sum())
            for name, jj in zip(ast["id"].astype(str).to_numpy()[det], j[det], strict=True):
                row = c.iloc[int(jj)]
                ssd = float((row["record"] or {}).get("ssdistnr", -999.0))
                if row["ssnamenr"] == name and 0.0 <= ssd <= tol_arcsec:
                    res["n_tagged"] += 1
                    dists.append(ssd)
                elif row["ssnamenr"] is not None:
                    res["n_mistagged"] += 1
        # A tag is false when its object is not in this image's truth at all.
        present = set(truth[truth["kind"] == KIND_ASTEROID]["id"].astype(str))
        res["n_false_tags"] += int((~tagged["ssnamenr"].isin(present)).sum())
    res["frac_tagged"] = res["n_tagged"] / res["n_detected"] if res["n_detected"] else None
    res["median_ssdistnr"] = float(np.median(dists)) if dists else None
    return res
