"""Reading light curves back: objects from the database, points from their matchfiles.

The table returned by :func:`lightcurve_table` has the columns, in order, of IRSA's ZTF
light-curve service (``nph_light_curves``), so the archive API can serve it unchanged.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from zsds.core.home import Home
from zsds.lightcurves.ids import parse_oid
from zsds.lightcurves.matchfile import read_lightcurve, read_matchfile

#: Output columns of IRSA's light-curve API, in its order.
IRSA_LC_COLUMNS = ("oid", "expid", "hjd", "mjd", "mag", "magerr", "catflags", "filtercode",
                   "ra", "dec", "chi", "sharp", "filefracday", "field", "ccdid", "qid",
                   "limitmag", "magzp", "magzprms", "clrcoeff", "clrcounc", "exptime",
                   "airmass", "programid")
_FILTERCODE = {1: "zg", 2: "zr", 3: "zi"}


def find_objects(engine: Engine, ra: float, dec: float, radius_arcsec: float,
                 fid: int | None = None, where: dict | None = None) -> pd.DataFrame:
    """Objects (``lc_objects`` rows) within the cone, nearest first."""
    from zsds.lightcurves.search import cone_search

    return cone_search(engine, ra, dec, radius_arcsec, fid=fid, where=where)


def lightcurve_points(home: Home, objects: pd.DataFrame) -> dict[int, np.ndarray]:
    """The matchfile rows of each object (``oid`` -> structured array), one file read each."""
    out: dict[int, np.ndarray] = {}
    by_file: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for oid, mid, mf in zip(objects["oid"], objects["matchid"], objects["matchfile"],
                            strict=True):
        by_file[mf].append((int(oid), int(mid)))
    for mf, pairs in by_file.items():
        pts = read_lightcurve(home.path(mf), [m for _, m in pairs])
        for oid, mid in pairs:
            out[oid] = pts[pts["matchid"] == mid]
    return out


def lightcurve_table(home: Home, objects: pd.DataFrame, time_range: tuple[float, float]
                     | None = None, bad_catflags_mask: int = 0) -> pd.DataFrame:
    """Points of ``objects`` as IRSA's light-curve API returns them (one row per epoch)."""
    pts = lightcurve_points(home, objects)
    frames = []
    exposures: dict[str, pd.DataFrame] = {}
    for mf in objects["matchfile"].unique():
        e = read_matchfile(home.path(mf), objects_only=True).exposures
        exposures[mf] = pd.DataFrame({k: e[k] for k in (
            "expid", "fracday", "limitmag", "magzp", "magzprms", "clrcoeff", "clrcounc",
            "exptime", "airmass")}).set_index("expid")
    for oid, mf in zip(objects["oid"], objects["matchfile"], strict=True):
        p = pts[int(oid)]
        field, fid, ccdid, qid, _ = parse_oid(int(oid))
        df = pd.DataFrame({k: p[k] for k in ("expid", "hjd", "mjd", "mag", "magerr",
                                             "catflags", "ra", "dec", "chi", "sharp",
                                             "programid")})
        df = df.join(exposures[mf], on="expid")
        df["oid"], df["filtercode"] = int(oid), _FILTERCODE.get(fid, str(fid))
        df["field"], df["ccdid"], df["qid"] = field, ccdid, qid
        df = df.rename(columns={"fracday": "filefracday"})
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=list(IRSA_LC_COLUMNS))
    out = pd.concat(frames, ignore_index=True)[list(IRSA_LC_COLUMNS)]
    if time_range is not None:
        out = out[(out["mjd"] >= time_range[0]) & (out["mjd"] <= time_range[1])]
    if bad_catflags_mask:
        out = out[(out["catflags"].to_numpy() & bad_catflags_mask) == 0]
    return out.reset_index(drop=True)
