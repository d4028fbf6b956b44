"""Reading light curves back: objects from the database, points from their matchfiles.

The table returned by :func:`lightcurve_table` has the columns, in order, of IRSA's ZTF
light-curve service (``nph_light_curves``), so the archive API can serve it unchanged.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import tables
from sqlalchemy import Engine

from zsds.core.home import Home
from zsds.lightcurves.ids import parse_oid
from zsds.lightcurves.matchfile import read_exposures as read_exposures_table
from zsds.lightcurves.matchfile import read_lightcurve

#: Output columns of IRSA's light-curve API, in its order.
IRSA_LC_COLUMNS = ("oid", "expid", "hjd", "mjd", "mag", "magerr", "catflags", "filtercode",
                   "ra", "dec", "chi", "sharp", "filefracday", "field", "ccdid", "qid",
                   "limitmag", "magzp", "magzprms", "clrcoeff", "clrcounc", "exptime",
                   "airmass", "programid")
_FILTERCODE = {1: "zg", 2: "zr", 3: "zi"}

log = logging.getLogger(__name__)


class MatchfileUnavailable(LookupError):
    """The matchfile of a light-curve object is missing or unreadable.

    The object is in ``lc_objects`` but its file was deleted or damaged on disk. The archive
    answers it with a 404 (:mod:`zsds.archive.lightcurve`); the message names the object and
    the matchfile relative to the home, never the server's own path.

    Parameters
    ----------
    oid : int
        An object whose light curve is in the file.
    relpath : str
        The matchfile, relative to the home.
    missing : bool
        Whether the file does not exist (else it exists and cannot be read).
    """

    def __init__(self, oid: int, relpath: str, missing: bool) -> None:
        self.oid, self.relpath, self.missing = int(oid), str(relpath), missing
        state = "is missing" if missing else "cannot be read (damaged or not a matchfile)"
        super().__init__(f"light curve of oid {self.oid} unavailable: its matchfile "
                         f"{self.relpath} {state}")


@contextmanager
def matchfile_guard(home: Home, relpath: str, oid: int) -> Iterator[None]:
    """Turn a missing or unreadable matchfile into :class:`MatchfileUnavailable`.

    Wraps the reading of ``relpath`` (relative to ``home``) for the object ``oid``; the
    underlying error is logged with its traceback.

    Raises
    ------
    MatchfileUnavailable
        If the block raises ``FileNotFoundError``, ``ValueError`` (not a matchfile), another
        ``OSError`` or an HDF5 error.
    """
    try:
        yield
    except (OSError, ValueError, tables.HDF5ExtError) as exc:
        missing = isinstance(exc, FileNotFoundError) or not home.path(relpath).exists()
        log.warning("matchfile %s of oid %s: %s: %s", relpath, oid, type(exc).__name__, exc)
        raise MatchfileUnavailable(oid, relpath, missing) from exc


def read_exposures(home: Home, relpath: str, oid: int) -> np.ndarray:
    """The ``exposures`` table of the matchfile ``relpath`` (holding object ``oid``).

    Raises
    ------
    MatchfileUnavailable
        If the file is missing or unreadable.
    """
    with matchfile_guard(home, relpath, oid):
        return read_exposures_table(home.path(relpath))


def find_objects(engine: Engine, ra: float, dec: float, radius_arcsec: float,
                 fid: int | None = None, where: dict | None = None) -> pd.DataFrame:
    """Objects (``lc_objects`` rows) within the cone, nearest first."""
    from zsds.lightcurves.search import cone_search

    return cone_search(engine, ra, dec, radius_arcsec, fid=fid, where=where)


def lightcurve_points(home: Home, objects: pd.DataFrame) -> dict[int, np.ndarray]:
    """The matchfile rows of each object (``oid`` -> structured array), one file read each.

    Raises
    ------
    MatchfileUnavailable
        If a matchfile is missing or unreadable.
    """
    out: dict[int, np.ndarray] = {}
    by_file: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for oid, mid, mf in zip(objects["oid"], objects["matchid"], objects["matchfile"],
                            strict=True):
        by_file[mf].append((int(oid), int(mid)))
    for mf, pairs in by_file.items():
        with matchfile_guard(home, mf, pairs[0][0]):
            pts = read_lightcurve(home.path(mf), [m for _, m in pairs])
        for oid, mid in pairs:
            out[oid] = pts[pts["matchid"] == mid]
    return out


def lightcurve_table(home: Home, objects: pd.DataFrame, time_range: tuple[float, float]
                     | None = None, bad_catflags_mask: int = 0) -> pd.DataFrame:
    """Points of ``objects`` as IRSA's light-curve API returns them (one row per epoch).

    Raises
    ------
    MatchfileUnavailable
        If a matchfile is missing or unreadable.
    """
    pts = lightcurve_points(home, objects)
    frames = []
    exposures: dict[str, pd.DataFrame] = {}
    first_oid = dict(zip(objects["matchfile"], objects["oid"], strict=True))
    for mf in objects["matchfile"].unique():
        e = read_exposures(home, mf, first_oid[mf])
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
