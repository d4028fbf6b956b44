"""IRSA's ZTF light-curve API: ``GET /cgi-bin/ZTF/nph_light_curves`` (``ARCHIVE_API.md`` 2).

Objects are found in ``lc_objects`` (by ``ID`` or by a ``POS``/``CIRCLE`` cone through
:func:`zsds.lightcurves.search.cone_search`) and their epochs read from the matchfiles by
:func:`zsds.lightcurves.query.lightcurve_table`, which already returns IRSA's columns in
IRSA's order. Parameter names are case-insensitive; ``+`` and ``%20`` both separate values.
Integers beyond 64 bits and cone radii below 0.01 arcsec are refused with a 400
(:mod:`zsds.archive.limits`). An object whose matchfile is missing or unreadable on disk is
a 404 naming it (:class:`~zsds.lightcurves.query.MatchfileUnavailable`), in the requested
format; :func:`matchfile_unavailable_handler` answers it for every other route.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from astropy.table import Table
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from zsds.archive.auth import request_access
from zsds.archive.context import ArchiveContext, Ctx
from zsds.archive.limits import LimitError, check_cone_radius, check_int64
from zsds.archive.tables import (
    FormatError,
    ibe_error,
    parse_format,
    table_response,
    votable_error,
)
from zsds.db.schema import LightCurveObject
from zsds.lightcurves.query import IRSA_LC_COLUMNS, MatchfileUnavailable, lightcurve_table
from zsds.lightcurves.search import cone_search

router = APIRouter(tags=["light curves"])

#: Largest cone radius of the API (deg; IRSA: 10 arcmin).
MAX_RADIUS_DEG = 0.1667

#: Output types and units of the columns (IRSA: long/int/double/float/char).
COLUMN_DTYPES: dict[str, str] = {
    "oid": "int64", "expid": "int64", "hjd": "float64", "mjd": "float64", "mag": "float32",
    "magerr": "float32", "catflags": "int32", "filtercode": "U2", "ra": "float64",
    "dec": "float64", "chi": "float32", "sharp": "float32", "filefracday": "int64",
    "field": "int32", "ccdid": "int32", "qid": "int32", "limitmag": "float32",
    "magzp": "float32", "magzprms": "float32", "clrcoeff": "float32", "clrcounc": "float32",
    "exptime": "float32", "airmass": "float32", "programid": "int32",
}
COLUMN_UNITS: dict[str, str] = {
    "hjd": "d", "mjd": "d", "mag": "mag", "magerr": "mag", "ra": "deg", "dec": "deg",
    "limitmag": "mag", "magzp": "mag", "magzprms": "mag", "exptime": "s",
}

#: Filter ids of BANDNAME values.
_BANDNAMES = {"g": 1, "r": 2, "i": 3, "1": 1, "2": 2, "3": 3}
#: Approximate ZTF bandpasses (m): (blue edge, effective wavelength, red edge). IRSA: a
#: BAND constraint is met where its interval intersects a filter's coverage.
_BANDPASS = {1: (4.087e-7, 4.746e-7, 5.522e-7), 2: (5.600e-7, 6.366e-7, 7.316e-7),
             3: (6.966e-7, 7.829e-7, 8.880e-7)}
#: Half-width (d) of the window that a single ``TIME`` value (one instant) matches.
_INSTANT = 0.5 / 86400.0
#: The bits ``catflags`` has (16, as at IRSA; stored as uint16 in the matchfiles).
CATFLAGS_BITS = 0xFFFF
#: Most object ids of one request.
MAX_IDS = 10_000


class LCQueryError(ValueError):
    """A bad request to the light-curve API (answered with HTTP 400)."""


@dataclass
class LCQuery:
    """A parsed ``nph_light_curves`` request."""

    ids: list[int] = field(default_factory=list)
    cone: tuple[float, float, float] | None = None
    fids: set[int] | None = None
    mag: tuple[float, float] | None = None
    nobs_min: int | None = None
    time: tuple[float, float] | None = None
    bad_catflags_mask: int = 0
    collection: str | None = None
    fmt: str = "votable"


def _values(text: str) -> list[str]:
    """Space- (or comma-) separated values of a parameter."""
    return [v for v in re.split(r"[\s,]+", text.strip()) if v]


def _float(text: str, name: str) -> float:
    t = text.strip().lower()
    if t in ("inf", "+inf", "infinity"):
        return math.inf
    if t in ("-inf", "-infinity"):
        return -math.inf
    try:
        v = float(t)
    except ValueError:
        raise LCQueryError(f"{name}: {text!r} is not a number") from None
    if math.isnan(v):
        raise LCQueryError(f"{name}: NaN is not allowed")
    return v


def _int(text: str, name: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise LCQueryError(f"{name}: {text!r} is not an integer") from None
    try:
        return check_int64(value, name)
    except LimitError as exc:
        raise LCQueryError(str(exc)) from None


def _range(text: str, name: str, single_is_instant: bool = False) -> tuple[float, float]:
    vals = [_float(v, name) for v in _values(text)]
    if len(vals) == 1 and single_is_instant:
        return vals[0] - _INSTANT, vals[0] + _INSTANT
    if len(vals) != 2:
        raise LCQueryError(f"{name} needs two values 'lo hi' (-Inf/Inf allowed), got {text!r}")
    if vals[0] > vals[1]:
        raise LCQueryError(f"{name}: lower bound {vals[0]} exceeds upper bound {vals[1]}")
    return vals[0], vals[1]


def _circle(values: list[str], name: str) -> tuple[float, float, float]:
    if len(values) != 3:
        raise LCQueryError(f"{name} needs 'ra dec radius' in degrees, got {' '.join(values)!r}")
    ra, dec, r = (_float(v, name) for v in values)
    if not (math.isfinite(ra) and math.isfinite(dec) and -90 <= dec <= 90):
        raise LCQueryError(f"{name}: invalid position ({ra}, {dec})")
    try:
        check_cone_radius(r, name, MAX_RADIUS_DEG)
    except LimitError as exc:
        raise LCQueryError(str(exc)) from None
    return ra % 360.0, dec, r


def _bandnames(text: str) -> set[int]:
    out: set[int] = set()
    for tok in _values(text):
        # ztfquery strips the commas: "gr" means g and r.
        for ch in tok.lower():
            if ch not in _BANDNAMES:
                raise LCQueryError(f"BANDNAME: unknown band {ch!r} in {text!r}; use g, r, i "
                                   "or 1, 2, 3")
            out.add(_BANDNAMES[ch])
    if not out:
        raise LCQueryError("BANDNAME is empty")
    return out


def _band(text: str) -> set[int]:
    vals = [_float(v, "BAND") for v in _values(text)]
    if len(vals) == 1:  # one wavelength: the filters whose bandpass holds it
        return {f for f, (lo, _, hi) in _BANDPASS.items() if lo <= vals[0] <= hi}
    if len(vals) == 2 and vals[0] <= vals[1]:  # a range: the bandpasses it intersects
        return {f for f, (lo, _, hi) in _BANDPASS.items() if vals[0] <= hi and lo <= vals[1]}
    raise LCQueryError(f"BAND needs one wavelength or a range 'lo hi' in metres, got {text!r}")


def parse_query(items: list[tuple[str, str]]) -> LCQuery:
    """Parse the (repeatable, case-insensitive) parameters of a light-curve request.

    Raises
    ------
    LCQueryError
        On a malformed or contradictory request.
    """
    params: dict[str, list[str]] = {}
    for k, v in items:
        params.setdefault(k.strip().upper(), []).append(v)

    def one(name: str) -> str | None:
        vals = params.get(name)
        if not vals:
            return None
        if len(vals) > 1:
            raise LCQueryError(f"parameter {name} given more than once")
        return vals[0]

    q = LCQuery()
    try:
        q.fmt = parse_format(one("FORMAT"), default="votable")
    except FormatError as exc:
        raise LCQueryError(f"FORMAT: {exc}; use VOTABLE, IPAC_TABLE, HTML, CSV or TSV") from None
    for v in params.get("ID", []):
        q.ids += [_int(t, "ID") for t in _values(v)]
        if len(q.ids) > MAX_IDS:
            raise LCQueryError(f"ID: at most {MAX_IDS} object ids per request")
    pos, circ = one("POS"), one("CIRCLE")
    if pos is not None and circ is not None:
        raise LCQueryError("give either POS or CIRCLE, not both")
    if pos is not None:
        vals = _values(pos)
        if not vals or vals[0].upper() != "CIRCLE":
            raise LCQueryError(f"POS must be 'CIRCLE ra dec radius', got {pos!r}")
        q.cone = _circle(vals[1:], "POS")
    elif circ is not None:
        q.cone = _circle(_values(circ), "CIRCLE")
    if "ID" in params and q.cone is not None:
        raise LCQueryError("ID cannot be combined with POS/CIRCLE")
    if not q.ids and q.cone is None:
        raise LCQueryError("give ID or POS=CIRCLE ra dec radius (or CIRCLE=ra dec radius)")
    nobs = [n for n in ("NOBS_MIN", "NUM_OBS") if n in params]
    selective = [n for n in ("BAND", "BANDNAME", "MAG") if n in params] + nobs
    if q.ids and selective:
        raise LCQueryError(f"ID cannot be combined with {', '.join(selective)}")
    bn, band = one("BANDNAME"), one("BAND")
    if bn is not None:
        q.fids = _bandnames(bn)
    if band is not None:
        fids = _band(band)
        q.fids = fids if q.fids is None else q.fids & fids
    if (m := one("MAG")) is not None:
        q.mag = _range(m, "MAG")
    for n in nobs:
        v = _int(one(n) or "", n)
        q.nobs_min = v if q.nobs_min is None else max(q.nobs_min, v)
    if (t := one("TIME")) is not None:
        q.time = _range(t, "TIME", single_is_instant=True)
    if (b := one("BAD_CATFLAGS_MASK")) is not None:
        q.bad_catflags_mask = _int(b, "BAD_CATFLAGS_MASK")
        if q.bad_catflags_mask < 0:
            raise LCQueryError("BAD_CATFLAGS_MASK must be a non-negative integer")
    if (c := one("COLLECTION")) is not None:
        c = c.strip().lower()
        if c != "ztf" and not re.fullmatch(r"ztf_dr\d+", c):
            raise LCQueryError(f"unknown COLLECTION {c!r}: use ztf_dr<N> or ztf")
        q.collection = c
    return q


def find_lc_objects(ctx: ArchiveContext, q: LCQuery) -> pd.DataFrame:
    """``lc_objects`` rows selected by a query (cone order, or the order of the IDs)."""
    if q.ids:
        tab = LightCurveObject.__table__
        ids = list(dict.fromkeys(q.ids))
        objs = pd.read_sql(select(tab).where(tab.c.oid.in_(ids)), ctx.engine)
        order = {oid: k for k, oid in enumerate(ids)}
        objs = objs.sort_values("oid", key=lambda s: s.map(order), kind="stable")
    else:
        ra, dec, r = q.cone  # type: ignore[misc]
        where: dict[str, tuple[float | None, float | None]] = {}
        if q.nobs_min is not None:
            where["nobs"] = (q.nobs_min, None)
        if q.mag is not None:
            lo, hi = q.mag
            where["medianmag"] = (lo if math.isfinite(lo) else None,
                                  hi if math.isfinite(hi) else None)
        objs = cone_search(ctx.engine, ra, dec, r * 3600.0, where=where)
        if q.fids is not None:
            objs = objs[objs["fid"].isin(sorted(q.fids))]
    return objs[objs["matchfile"].notna()].reset_index(drop=True)


def lightcurve_astropy(df: pd.DataFrame) -> Table:
    """IRSA's light-curve columns as a typed astropy table (also when empty)."""
    cols = {}
    for name in IRSA_LC_COLUMNS:
        dt = COLUMN_DTYPES[name]
        v = df[name].to_numpy() if name in df else np.zeros(0)
        cols[name] = np.asarray(v, dtype=str if dt.startswith("U") else dt)
    t = Table(cols)
    for name, unit in COLUMN_UNITS.items():
        t[name].unit = unit
    return t


def run_query(ctx: ArchiveContext, q: LCQuery) -> Table:
    """The light-curve points of a query as an astropy table in IRSA's column order."""
    objs = find_lc_objects(ctx, q)
    if len(objs) == 0:
        return lightcurve_astropy(pd.DataFrame(columns=list(IRSA_LC_COLUMNS)))
    # catflags has 16 bits: higher mask bits can match nothing, and numpy refuses a mask
    # wider than the column's dtype.
    df = lightcurve_table(ctx.home, objs, time_range=q.time,
                          bad_catflags_mask=q.bad_catflags_mask & CATFLAGS_BITS)
    return lightcurve_astropy(df)


def _error(message: str, fmt: str, status: int = 400) -> Response:
    if fmt == "votable":
        return Response(votable_error(message), status_code=status,
                        media_type="application/x-votable+xml")
    return ibe_error(message, status)


@router.get("/cgi-bin/ZTF/nph_light_curves")
def nph_light_curves(request: Request,
                     ctx: Ctx) -> Response:
    """ZTF light curves by object id or cone (IRSA's ``nph_light_curves``).

    Parameters (case-insensitive): ``ID`` (repeatable, comma-separated), ``POS=CIRCLE ra dec
    r`` or ``CIRCLE=ra dec r`` (r <= 0.1667 deg), ``BANDNAME`` (g, r, i, 1, 2, 3; ``gr``),
    ``BAND`` (m), ``MAG`` (median magnitude range), ``NOBS_MIN``/``NUM_OBS``, ``TIME`` (MJD),
    ``BAD_CATFLAGS_MASK``, ``COLLECTION`` (``ztf_drN``; ``ztf`` needs a login) and
    ``FORMAT`` (VOTABLE, IPAC_TABLE, HTML, CSV, TSV). Returns one row per epoch.
    """
    items = list(request.query_params.multi_items())
    fmt_raw = next((v for k, v in items if k.upper() == "FORMAT"), None)
    try:
        fmt = parse_format(fmt_raw, default="votable")
    except FormatError:
        fmt = "votable"
    try:
        q = parse_query(items)
    except LCQueryError as exc:
        return _error(str(exc), fmt)
    if q.fmt == "json":
        return _error("FORMAT: use VOTABLE, IPAC_TABLE, HTML, CSV or TSV", fmt)
    if q.collection == "ztf" and not request_access(request).logged_in:
        return _error("COLLECTION=ztf (proprietary data) requires a login", q.fmt, 401)
    try:
        table = run_query(ctx, q)
    except MatchfileUnavailable as exc:
        return _error(str(exc), q.fmt, 404)
    collection = (q.collection or ctx.config.collection)
    return table_response(table, q.fmt, title=f"ZTF light curves ({collection})",
                          infos={"collection": collection})


async def matchfile_unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer :class:`~zsds.lightcurves.query.MatchfileUnavailable` raised by any route (the
    web UI's light-curve, periodogram and plot APIs) with a 404 naming the object and its
    matchfile (relative to the home)."""
    return JSONResponse({"detail": str(exc)}, status_code=404)
