"""The IVOA services of the archive: Simple Cone Search, SIA v2 and TAP (``ARCHIVE_API.md`` 4).

* ``GET /SCS?table=ztf_objects_dr<N>&RA=&DEC=&SR=[&VERB=][&format=csv]`` -- cone search of the
  light-curve objects (:func:`zsds.lightcurves.search.cone_search`); a VOTable whose ``oid``,
  ``ra``, ``dec`` carry the SCS UCD1s, IRSA's ``INFO name="Error"`` document on bad input.
* ``GET /SIA/capabilities`` (and ``/capabilities``), ``GET|POST /SIA`` -- SIA v2 over the image
  index: ObsCore rows of the collections ``ztf_sci``, ``ztf_ref``, ``ztf_raw``, ``ztf_cal``;
  ``/SIA?MAXREC=0`` describes the parameters and lists the collections.
* ``/TAP`` -- ``sync`` (GET/POST), ``async`` (UWS 1.1), ``capabilities``, ``tables``,
  ``availability``; ADQL through :mod:`zsds.archive.adql`.

Async jobs are kept in the database (:mod:`zsds.archive.tapjobs`: table ``tap_jobs``, so
they survive a restart), with per-owner quotas, and run synchronously when they are sent
``PHASE=RUN``: the ``POST`` that starts a job returns once it is ``COMPLETED`` or in
``ERROR``, so ``WAIT`` never has to block. A job belongs to the account that created it (its
results may hold restricted rows): other callers get 404 for it and do not see it in the job
list; jobs created anonymously are shared by anonymous callers (their ids are 128-bit
random). Table uploads (``UPLOAD``/``TAP_UPLOAD``) are not supported: the capabilities list
no ``uploadMethod`` and a query with an upload gets an error.

Every query runs off the event loop (in the thread pool), and what an anonymous caller gets
goes through the archive's authorization policy (:mod:`zsds.archive.policy`).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import re
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pandas as pd
from astropy.io.votable.tree import Group, Info, Param, Resource, Values
from astropy.io.votable.tree import VOTableFile as _VOTableFile
from astropy.table import Column, Table
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from sqlalchemy import and_, func, or_
from starlette.concurrency import run_in_threadpool

from zsds.archive import adql
from zsds.archive.auth import request_access
from zsds.archive.context import ArchiveContext, Ctx
from zsds.archive.limits import MAX_GEOMETRY_TERMS, LimitError, check_cone_radius
from zsds.archive.policy import Access
from zsds.archive.security import client_address
from zsds.archive.tables import (
    MEDIA,
    FormatError,
    parse_format,
    table_response,
    votable_bytes,
    votable_error,
)
from zsds.archive.tapjobs import JOB_LIFETIME, Job, JobStore, QuotaExceeded, job_params
from zsds.db.schema import ArchiveImage
from zsds.lightcurves.search import cone_search

log = logging.getLogger(__name__)

router = APIRouter(tags=["IVOA"])


VOTABLE = MEDIA["votable"]
#: Longest EXECUTIONDURATION recorded for a job (seconds).
MAX_EXECUTION_DURATION = 86_400

# =========================================================================== helpers


async def _params(request: Request) -> dict[str, list[str]]:
    """Query and form parameters, names upper-cased (IVOA parameter names are
    case-insensitive), values in order."""
    out: dict[str, list[str]] = {}
    items: list[tuple[str, Any]] = list(request.query_params.multi_items())
    if request.method == "POST":
        ctype = request.headers.get("content-type", "")
        if "form" in ctype:
            form = await request.form()
            items += [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    for k, v in items:
        out.setdefault(k.upper(), []).append(v)
    return out


def _one(params: dict[str, list[str]], name: str) -> str | None:
    vals = params.get(name)
    return vals[-1] if vals else None


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _vo_error(message: str, status: int = 400) -> Response:
    return Response(votable_error(message), status_code=status, media_type=VOTABLE)


def _int(value: str | None, name: str, default: int) -> int:
    if value is None or value.strip() == "":
        return default
    try:
        n = int(value.strip())
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if n < 0:
        raise ValueError(f"{name} must not be negative, got {n}")
    return n


def _float(value: str | None, name: str) -> float:
    if value is None or value.strip() == "":
        raise ValueError(f"missing required parameter {name}")
    try:
        x = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return x


def _format(value: str | None) -> str:
    """Canonical output format of a TAP/SIA ``FORMAT``/``RESPONSEFORMAT`` (MIME parameters such
    as ``;serialization=TABLEDATA`` dropped)."""
    if value is not None:
        value = value.split(";")[0].strip()
        if value.lower() in ("ipac_table", "ipac", "text/plain"):
            return "ipac"
    return parse_format(value, default="votable")


def _ucds(table: Table) -> dict[str, str]:
    return {n: table[n].meta["ucd"] for n in table.colnames if "ucd" in table[n].meta}


def _result(table: Table, fmt: str, *, overflow: bool = False) -> Response:
    """A query result in ``fmt`` (VOTable: ``QUERY_STATUS`` OK or OVERFLOW)."""
    if fmt == "votable":
        body = votable_bytes(table, query_status="OVERFLOW" if overflow else "OK",
                             ucds=_ucds(table))
        return Response(body, media_type=VOTABLE)
    return table_response(table, fmt)


# =========================================================================== SCS

_SCS_TABLE = re.compile(r"ztf_objects(_dr\d+)?", re.IGNORECASE)
#: SCS UCD1s (what pyvo's SCSRecord.pos / .id look for).
SCS_UCDS = {"oid": "ID_MAIN", "ra": "POS_EQ_RA_MAIN", "dec": "POS_EQ_DEC_MAIN"}
#: Largest cone radius (deg).
SCS_MAX_SR = 10.0


def objects_table(df: pd.DataFrame, columns: tuple[str, ...]) -> Table:
    """``lc_objects`` rows (a :func:`cone_search` frame) as IRSA ``ztf_objects`` columns."""
    defs = adql.objects_table("ztf_objects").columns
    out = Table()
    for name in columns:
        c = defs[name]
        if name == "filtercode":
            vals = np.array([{1: "zg", 2: "zr", 3: "zi"}.get(int(f), "") for f in df["fid"]],
                            dtype="U2") if len(df) else np.array([], "U2")
            out[name] = Column(vals, description=c.description)
            continue
        s = df[name]
        col = adql.to_column(name, s.to_numpy(np.float64) if c.datatype == "double"
                             else s.to_numpy(object), c)
        out[name] = col
    return out


@router.get("/SCS")
def scs(request: Request, ctx: Ctx) -> Response:
    """Simple Cone Search of a ``ztf_objects_dr<N>`` catalog (objects nearest first, with
    ``dist`` in arcsec). ``VERB=1`` gives oid/ra/dec, 2 (default) IRSA's columns, 3 all."""
    p = {k.upper(): v for k, v in request.query_params.items()}
    try:
        table = p.get("TABLE") or p.get("CATALOG")
        if not table:
            raise ValueError("missing required parameter table (e.g. table=ztf_objects_dr23)")
        if not _SCS_TABLE.fullmatch(table.strip()):
            raise ValueError(f"unknown table {table!r}: use ztf_objects_dr<N>")
        ra, dec, sr = (_float(p.get(k), k) for k in ("RA", "DEC", "SR"))
        if not -90 <= dec <= 90:
            raise ValueError(f"DEC must be in [-90, 90], got {dec}")
        check_cone_radius(sr, "SR", SCS_MAX_SR)
        verb = _int(p.get("VERB"), "VERB", 2)
        fmt = parse_format(p.get("FORMAT") or p.get("RESPONSEFORMAT"), default="votable")
    except (ValueError, FormatError) as exc:
        return _vo_error(f"BAD_REQUEST: {exc}")
    limit = ctx.config.max_rows
    df = cone_search(ctx.engine, ra % 360.0, dec, sr * 3600.0, limit=limit + 1)
    overflow = len(df) > limit
    df = df.iloc[:limit]
    if verb <= 1:
        cols: tuple[str, ...] = ("oid", "ra", "dec")
    elif verb == 2:
        cols = adql.OBJECT_COLUMNS[:18]
    else:
        cols = adql.OBJECT_COLUMNS
    out = objects_table(df, cols)
    out["dist"] = Column(df["dist_arcsec"].to_numpy(np.float64), unit="arcsec",
                         description="distance from the cone centre")
    if fmt == "votable":
        body = votable_bytes(out, query_status="OVERFLOW" if overflow else "OK", ucds=SCS_UCDS)
        return Response(body, media_type=VOTABLE)
    return table_response(out, fmt, ucds=SCS_UCDS)


# =========================================================================== SIA v2


@dataclass(frozen=True)
class Collection:
    """An SIA collection: one IBE table of the image index."""

    name: str
    tbl: str
    calib_level: int
    description: str


COLLECTIONS: dict[str, Collection] = {c.name: c for c in (
    Collection("ztf_sci", "sci", 2, "ZTF calibrated science images (one per CCD quadrant)"),
    Collection("ztf_ref", "ref", 3, "ZTF reference (co-added) images"),
    Collection("ztf_raw", "raw", 1, "ZTF raw CCD images"),
    Collection("ztf_cal", "cal", 2, "ZTF calibration images (bias, high-frequency flat)"),
)}

#: Wavelength interval (m) of each ZTF filter: where its transmission passes ~50 %.
BANDS = {1: (4.09e-7, 5.53e-7), 2: (5.60e-7, 7.32e-7), 3: (7.04e-7, 8.91e-7)}

_OBSCORE: list[tuple[str, str, str, str]] = [  # name, unit, ucd, description
    ("obs_collection", "", "meta.id", "collection name"),
    ("dataproduct_type", "", "meta.code.class", "data product type"),
    ("calib_level", "", "meta.code;obs.calib", "calibration level"),
    ("obs_id", "", "meta.id", "observation id (the file name)"),
    ("obs_publisher_did", "", "meta.ref.ivoid", "publisher dataset id"),
    ("facility_name", "", "meta.id;instr.tel", "facility"),
    ("instrument_name", "", "meta.id;instr", "instrument"),
    ("target_name", "", "meta.id;src", "target"),
    ("s_ra", "deg", "pos.eq.ra", "image centre right ascension"),
    ("s_dec", "deg", "pos.eq.dec", "image centre declination"),
    ("s_fov", "deg", "phys.angSize;instr.fov", "diameter of the footprint"),
    ("s_region", "", "pos.outline;obs.field", "footprint (STC-S)"),
    ("s_resolution", "arcsec", "pos.angResolution", "seeing FWHM"),
    ("t_min", "d", "time.start;obs.exposure", "exposure start (MJD)"),
    ("t_max", "d", "time.end;obs.exposure", "exposure end (MJD)"),
    ("t_exptime", "s", "time.duration;obs.exposure", "exposure time"),
    ("t_resolution", "s", "time.resolution", "time resolution"),
    ("em_min", "m", "em.wl;stat.min", "shortest wavelength"),
    ("em_max", "m", "em.wl;stat.max", "longest wavelength"),
    ("pol_states", "", "meta.code;phys.polarization", "polarization states"),
    ("o_ucd", "", "meta.ucd", "what the pixels measure"),
    ("access_url", "", "meta.ref.url", "URL of the file"),
    ("access_format", "", "meta.code.mime", "file format"),
    ("access_estsize", "kbyte", "phys.size;meta.file", "file size"),
    ("field", "", "meta.id", "ZTF field"),
    ("ccdid", "", "meta.id", "CCD number"),
    ("qid", "", "meta.id", "CCD quadrant"),
    ("filtercode", "", "instr.filter", "filter code"),
    ("pid", "", "meta.id", "processed-image id"),
    ("filefracday", "", "meta.id", "YYYYMMDDdddddd"),
    ("caltype", "", "meta.code", "calibration type"),
    ("infobits", "", "meta.code", "processing flags"),
    ("maglimit", "mag", "phot.mag;stat.max", "limiting magnitude"),
]

_SIA_PARAMS = [
    ("POS", "CIRCLE ra dec r | RANGE ra1 ra2 dec1 dec2 | POLYGON ra1 dec1 ra2 dec2 ..."),
    ("BAND", "wavelength interval in metres: lo hi"),
    ("TIME", "MJD interval: lo hi"),
    ("EXPTIME", "exposure time interval in seconds: lo hi"),
    ("CALIB", "calibration level (1 raw, 2 calibrated, 3 co-added)"),
    ("DPTYPE", "data product type (image)"),
    ("ID", "obs_id (file name without .fits)"),
    ("COLLECTION", "collection name"),
    ("FACILITY", "facility (ZTF)"),
    ("INSTRUMENT", "instrument (ZTF)"),
    ("MAXREC", "maximum number of rows"),
    ("RESPONSEFORMAT", "votable (default), csv, tsv, ipac_table, json, html"),
]


def _interval(text: str, name: str) -> tuple[float, float]:
    """``lo hi`` (or one value) with ``-Inf``/``+Inf``; NaN bounds are open."""
    parts = text.split()
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"{name} must be 'lo hi', got {text!r}")
    try:
        vals = [float(v) for v in parts]
    except ValueError:
        raise ValueError(f"{name} must hold numbers, got {text!r}") from None
    lo, hi = (vals[0], vals[-1])
    lo = -np.inf if np.isnan(lo) else lo
    hi = np.inf if np.isnan(hi) else hi
    if lo > hi:
        raise ValueError(f"{name}: lower bound above upper bound in {text!r}")
    return lo, hi


#: Most vertices of an SIA2 ``POS`` polygon.
MAX_POS_VERTICES = 1000


def parse_pos(text: str) -> adql.Region:
    """An SIA2 ``POS`` value as a region."""
    parts = text.split()
    if not parts:
        raise ValueError("POS is empty")
    shape = parts[0].upper()
    if len(parts) > 2 * MAX_POS_VERTICES + 1:
        raise ValueError(f"POS has more than {MAX_POS_VERTICES} vertices")
    try:
        nums = [float(v) for v in parts[1:]]
    except ValueError:
        raise ValueError(f"POS coordinates must be numbers, got {text!r}") from None
    try:
        if shape == "CIRCLE" and len(nums) == 3:
            return adql.Region.circle(*nums)
        if shape == "RANGE" and len(nums) == 4:
            return adql.Region.range(*nums)
        if shape == "POLYGON" and len(nums) >= 6 and len(nums) % 2 == 0:
            return adql.Region.polygon(nums[0::2], nums[1::2])
    except adql.ADQLError as exc:
        raise ValueError(f"POS {text!r}: {exc}") from None
    raise ValueError(f"POS must be 'CIRCLE ra dec r', 'RANGE ra1 ra2 dec1 dec2' or "
                     f"'POLYGON ra1 dec1 ...' (at least 3 vertices), got {text!r}")


def _band_fids(bands: list[str]) -> set[int]:
    fids: set[int] = set()
    for b in bands:
        lo, hi = _interval(b, "BAND")
        fids |= {f for f, (a, z) in BANDS.items() if a <= hi and z >= lo}
    return fids


def _sia_where(p: dict[str, list[str]], coll: Collection, access: Access) -> Any:
    """SQL condition of the non-spatial SIA2 constraints for one collection (None: no rows),
    with the images the caller may not see left out."""
    img = ArchiveImage
    conds: list[Any] = []
    visible = access.image_condition()
    if visible is not None:
        conds.append(visible)
    if "BAND" in p:
        fids = _band_fids(p["BAND"])
        if not fids:
            return None
        conds.append(img.fid.in_(sorted(fids)))
    if "TIME" in p:
        ors = []
        for t in p["TIME"]:
            lo, hi = _interval(t, "TIME")
            end = func.coalesce(img.endjd, img.obsjd + func.coalesce(img.exptime, 0.0) / 86400.0)
            c = []
            if np.isfinite(hi):
                c.append(img.obsjd <= hi + 2400000.5)
            if np.isfinite(lo):
                c.append(end >= lo + 2400000.5)
            ors.append(and_(img.obsjd.is_not(None), *c))
        conds.append(or_(*ors))
    if "EXPTIME" in p:
        ors = []
        for t in p["EXPTIME"]:
            lo, hi = _interval(t, "EXPTIME")
            ors.append(and_(img.exptime >= lo if np.isfinite(lo) else img.exptime.is_not(None),
                            img.exptime <= hi if np.isfinite(hi) else img.exptime.is_not(None)))
        conds.append(or_(*ors))
    if "ID" in p:
        conds.append(or_(*(img.relpath.endswith(f"/{i}{ext}", autoescape=True)
                           for i in p["ID"] for ext in (".fits", ".fits.fz"))))
    return and_(*conds) if conds else img.id.is_not(None)


def _sia_collections(p: dict[str, list[str]]) -> list[Collection]:
    colls = list(COLLECTIONS.values())
    if "COLLECTION" in p:
        wanted = {c.strip().lower() for c in p["COLLECTION"]}
        unknown = wanted - set(COLLECTIONS)
        if unknown:
            raise ValueError(f"unknown COLLECTION {sorted(unknown)}: use one of "
                             f"{', '.join(COLLECTIONS)}")
        colls = [c for c in colls if c.name in wanted]
    if "CALIB" in p:
        levels = {_int(v, "CALIB", 0) for v in p["CALIB"]}
        colls = [c for c in colls if c.calib_level in levels]
    if "DPTYPE" in p and "image" not in {v.strip().lower() for v in p["DPTYPE"]}:
        return []
    for name in ("FACILITY", "INSTRUMENT"):
        if name in p and "ztf" not in {v.strip().lower() for v in p[name]}:
            return []
    return colls


def _obscore(df: pd.DataFrame, base: str, home_root: Any) -> Table:
    """ObsCore rows of ``archive_images`` rows (with an ``obs_collection`` column)."""
    n = len(df)
    rel = df["relpath"].astype(str).to_numpy() if n else np.array([], str)
    names = [os.path.basename(r) for r in rel]
    obs_id = [re.sub(r"\.fits(\.fz)?$", "", x) for x in names]
    urls = [base + "/ibe/data/ztf/products/" + (r.split("/", 1)[1] if r.startswith("products/")
                                                else r) for r in rel]
    sizes = [(os.path.getsize(p) / 1024.0 if os.path.exists(p) else np.nan)
             for p in (os.path.join(home_root, r) for r in rel)]
    cra = df[[f"ra{k}" for k in range(1, 5)]].to_numpy(float)
    cdec = df[[f"dec{k}" for k in range(1, 5)]].to_numpy(float)
    diag = np.fmax(adql.angular_distance_deg(cra[:, 0], cdec[:, 0], cra[:, 2], cdec[:, 2]),
                   adql.angular_distance_deg(cra[:, 1], cdec[:, 1], cra[:, 3], cdec[:, 3])
                   ) if n else np.zeros(0)
    region = np.array(["" if np.isnan(cra[i]).any() else
                       "POLYGON ICRS " + " ".join(f"{a:.7f} {d:.7f}"
                                                   for a, d in zip(cra[i], cdec[i], strict=True))
                       for i in range(n)], dtype=object)
    obsjd = df["obsjd"].to_numpy(float)
    exptime = df["exptime"].to_numpy(float)
    endjd = df["endjd"].to_numpy(float)
    end = np.where(np.isfinite(endjd), endjd, obsjd + np.nan_to_num(exptime) / 86400.0)
    fid = df["fid"].to_numpy(float)
    em = np.array([BANDS.get(int(f), (np.nan, np.nan)) if np.isfinite(f) else (np.nan, np.nan)
                   for f in fid]).reshape(n, 2)
    values: dict[str, Any] = {
        "obs_collection": df["obs_collection"].to_numpy(object),
        "dataproduct_type": ["image"] * n,
        "calib_level": df["calib_level"].to_numpy(np.int64),
        "obs_id": obs_id,
        "obs_publisher_did": [f"ivo://zsds/ztf?{o}" for o in obs_id],
        "facility_name": ["ZTF"] * n,
        "instrument_name": ["ZTF"] * n,
        "target_name": [""] * n,
        "s_ra": df["ra"].to_numpy(float),
        "s_dec": df["dec"].to_numpy(float),
        "s_fov": diag,
        "s_region": region,
        "s_resolution": df["seeing"].to_numpy(float),
        "t_min": obsjd - 2400000.5,
        "t_max": end - 2400000.5,
        "t_exptime": exptime,
        "t_resolution": exptime,
        "em_min": em[:, 0],
        "em_max": em[:, 1],
        "pol_states": [""] * n,
        "o_ucd": ["phot.count"] * n,
        "access_url": urls,
        "access_format": ["image/fits"] * n,
        "access_estsize": np.array(sizes, float),
        "field": df["field"], "ccdid": df["ccdid"], "qid": df["qid"],
        "filtercode": df["filtercode"], "pid": df["pid"], "filefracday": df["filefracday"],
        "caltype": df["caltype"], "infobits": df["infobits"], "maglimit": df["maglimit"],
    }
    out = Table()
    for name, unit, ucd, desc in _OBSCORE:
        v = values[name]
        if isinstance(v, pd.Series):
            v = v.to_numpy(object)
        col = adql.to_column(name, np.asarray(v, dtype=object) if not isinstance(
            v, np.ndarray) or v.dtype == object else v, adql.ColumnDef(
            name, None, _obscore_type(name), unit, ucd, desc))
        out[name] = col
    return out


def _obscore_type(name: str) -> str:
    if name in ("calib_level", "field", "ccdid", "qid", "infobits"):
        return "int"
    if name in ("pid", "filefracday"):
        return "long"
    if name.startswith(("s_", "t_", "em_", "access_estsize", "maglimit")) and name != "s_region":
        return "double"
    return "char"


def _sia_meta_votable() -> bytes:
    """The empty ObsCore result plus a service descriptor of the input parameters, whose
    ``COLLECTION`` lists the valid collections (``/SIA?MAXREC=0``)."""
    empty = _obscore(pd.DataFrame({c: pd.Series(dtype=float) for c in (
        "relpath", "obs_collection", "calib_level", "ra", "dec", "ra1", "ra2", "ra3", "ra4",
        "dec1", "dec2", "dec3", "dec4", "obsjd", "exptime", "endjd", "fid", "seeing", "field",
        "ccdid", "qid", "filtercode", "pid", "filefracday", "caltype", "infobits", "maglimit")}),
        "", "")
    vot = _VOTableFile.from_table(empty)
    res = vot.resources[0]
    res.type = "results"
    res.infos.append(Info(name="QUERY_STATUS", value="OK"))
    for c in COLLECTIONS.values():
        info = Info(name="COLLECTION", value=c.name)
        info.content = c.description
        res.infos.append(info)
    meta = Resource(type="meta", utype="adhoc:service")
    group = Group(vot, name="inputParams")
    for name, desc in _SIA_PARAMS:
        prm = Param(vot, name=name, datatype="char", arraysize="*", value="")
        prm.description = desc
        if name == "COLLECTION":
            prm.values = Values(vot, prm)
            prm.values.options.extend((c.name, c.name) for c in COLLECTIONS.values())
        group.entries.append(prm)
    meta.groups.append(group)
    vot.resources.append(meta)
    buf = io.BytesIO()
    vot.to_xml(buf)
    return buf.getvalue()


@router.get("/SIA")
@router.post("/SIA")
async def sia2(request: Request, ctx: Ctx) -> Response:
    """SIA v2 query over the image index (ObsCore VOTable rows), run off the event loop."""
    p = await _params(request)
    return await run_in_threadpool(_sia2, request, ctx, p)


def _sia2(request: Request, ctx: ArchiveContext, p: dict[str, list[str]]) -> Response:
    try:
        maxrec = _int(_one(p, "MAXREC"), "MAXREC", ctx.config.default_rows)
        fmt = _format(_one(p, "RESPONSEFORMAT"))
        if maxrec == 0:
            return Response(_sia_meta_votable(), media_type=VOTABLE)
        if len(p.get("POS", [])) > MAX_GEOMETRY_TERMS:
            raise LimitError(f"more than {MAX_GEOMETRY_TERMS} POS values")
        regions = [parse_pos(v) for v in p.get("POS", [])]
        colls = _sia_collections(p)
        access = request_access(request)
        wheres = {c.name: _sia_where(p, c, access) for c in colls}
    except (ValueError, FormatError) as exc:
        return _vo_error(f"BAD_REQUEST: {exc}")
    maxrec = min(maxrec, ctx.config.max_rows)
    df, overflow = _sia_rows(ctx, colls, wheres, regions, maxrec)
    table = _obscore(df, _base(request), ctx.home.root)
    return _result(table, fmt, overflow=overflow)


def _sia_rows(ctx: ArchiveContext, colls: list[Collection], wheres: dict[str, Any],
              regions: list[adql.Region], maxrec: int) -> tuple[pd.DataFrame, bool]:
    from zsds.archive.index import images_at

    frames = []
    for c in colls:
        where = wheres[c.name]
        if where is None:
            continue
        if regions:
            parts = [adql.footprint_candidates(ctx.engine, c.tbl, r, "OVERLAPS", where=where)
                     for r in regions]
            df = pd.concat(parts, ignore_index=True).drop_duplicates("id")
        else:
            df = images_at(ctx.engine, c.tbl, where=where, limit=maxrec + 1)
        if df.empty:
            continue
        df = df.assign(obs_collection=c.name, calib_level=c.calib_level)
        frames.append(df.sort_values(["obsjd", "id"], kind="stable"))
    if not frames:
        cols = [col.name for col in ArchiveImage.__table__.columns]
        return pd.DataFrame({c: pd.Series(dtype=object) for c in
                             [*cols, "obs_collection", "calib_level"]}), False
    df = pd.concat(frames, ignore_index=True)
    return df.iloc[:maxrec], len(df) > maxrec


def _sia_capabilities(base: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
        'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        + _capability("ivo://ivoa.net/std/VOSI#capabilities", f"{base}/SIA/capabilities",
                      "full")
        + _capability("ivo://ivoa.net/std/VOSI#availability", f"{base}/SIA/availability",
                      "full")
        + '  <capability standardID="ivo://ivoa.net/std/SIA#query-2.0">\n'
        '    <interface xsi:type="vs:ParamHTTP" role="std" version="2.0">\n'
        f'      <accessURL use="base">{escape(base)}/SIA</accessURL>\n'
        "    </interface>\n  </capability>\n</vosi:capabilities>\n")


def _capability(std: str, url: str, use: str = "full") -> str:
    return (f'  <capability standardID="{std}">\n'
            '    <interface xsi:type="vs:ParamHTTP" role="std">\n'
            f'      <accessURL use="{use}">{escape(url)}</accessURL>\n'
            "    </interface>\n  </capability>\n")


@router.get("/SIA/capabilities")
def sia_capabilities(request: Request) -> Response:
    """VOSI capabilities of the SIA v2 service."""
    return Response(_sia_capabilities(_base(request)), media_type="text/xml")


@router.get("/capabilities", include_in_schema=False)
def root_capabilities(request: Request) -> Response:
    """The sibling ``/capabilities`` pyvo falls back to (the SIA v2 capabilities)."""
    return sia_capabilities(request)


_AVAILABLE = ('<?xml version="1.0" encoding="UTF-8"?>\n'
              '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">'
              "<vosi:available>true</vosi:available>"
              "<vosi:note>service is accepting queries</vosi:note></vosi:availability>\n")


@router.get("/SIA/availability")
def sia_availability() -> Response:
    """VOSI availability of the SIA service."""
    return Response(_AVAILABLE, media_type="text/xml")


# =========================================================================== TAP

_UWS_NS = ('xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" '
           'xmlns:xlink="http://www.w3.org/1999/xlink" '
           'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"')


def _catalog(ctx: ArchiveContext) -> adql.Catalog:
    m = re.fullmatch(r"ztf_dr(\d+)", ctx.config.collection)
    name = f"ztf_objects_dr{m.group(1)}" if m else "ztf_objects"
    return adql.Catalog((name,))


def _check_request(p: dict[str, list[str]]) -> None:
    req = _one(p, "REQUEST")
    if req is not None and req.strip().lower() != "doquery":
        raise ValueError(f"REQUEST must be doQuery, got {req!r}")
    lang = _one(p, "LANG")
    if lang is not None and not lang.strip().upper().startswith("ADQL"):
        raise ValueError(f"LANG must be ADQL, got {lang!r}")
    if "UPLOAD" in p and any(v.strip() for v in p["UPLOAD"]):
        raise ValueError("table uploads (UPLOAD) are not supported by this service")
    if not (_one(p, "QUERY") or "").strip():
        raise ValueError("missing required parameter QUERY")


def _tap_run(ctx: ArchiveContext, p: dict[str, list[str]], anonymous: bool
             ) -> tuple[bytes, str]:
    """Run a TAP query; returns (body, media type). Raises ValueError/ADQLError/FormatError.

    ``anonymous`` hides what the archive's policy restricts (the images of
    :meth:`zsds.archive.policy.Access.image_condition`).
    """
    _check_request(p)
    fmt = _format(_one(p, "RESPONSEFORMAT") or _one(p, "FORMAT"))
    maxrec = _int(_one(p, "MAXREC"), "MAXREC", ctx.config.default_rows)
    res = adql.run(_one(p, "QUERY") or "", _catalog(ctx), ctx.engine, maxrec=maxrec,
                   hard_limit=ctx.config.max_rows, anonymous=anonymous)
    resp = _result(res.table, fmt, overflow=res.overflow)
    return bytes(resp.body), resp.media_type or VOTABLE


def _anonymous(request: Request) -> bool:
    return not request_access(request).logged_in


@router.get("/TAP/sync")
@router.post("/TAP/sync")
async def tap_sync(request: Request, ctx: Ctx) -> Response:
    """Synchronous TAP query (``REQUEST=doQuery&LANG=ADQL&QUERY=...``), run off the event
    loop."""
    p = await _params(request)
    try:
        body, media = await run_in_threadpool(_tap_run, ctx, p, _anonymous(request))
    except (ValueError, FormatError) as exc:
        return _vo_error(str(exc))
    return Response(body, media_type=media)


def _store(request: Request) -> JobStore:
    """The job store of the app (in the archive's database)."""
    state = request.app.state
    store = getattr(state, "tap_jobs", None)
    if store is None:
        cfg = state.ctx.config
        store = state.tap_jobs = JobStore(state.ctx.engine, per_user=cfg.tap_jobs_per_user,
                                          per_client=cfg.tap_jobs_per_client,
                                          anonymous_total=cfg.tap_jobs_anonymous)
    return store


def _owner(request: Request) -> str | None:
    """The owner of the caller's jobs: the user name, None when anonymous."""
    user = request_access(request).user
    return None if user is None else user.username


def _job(request: Request, jid: str) -> Job | None:
    """The job if the caller may see it: a logged-in user's jobs (whose results may hold
    restricted rows) are the owner's alone; anonymous jobs are anyone's who knows the id."""
    return _store(request).get(jid, _owner(request))


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _el(name: str, value: str | None) -> str:
    if value is None:
        return f'  <uws:{name} xsi:nil="true"/>\n'
    return f"  <uws:{name}>{escape(value)}</uws:{name}>\n"


def _job_xml(job: Job, base: str) -> str:
    params = "".join(f"    <uws:parameter id={quoteattr(k.lower())}>{escape(v[-1])}"
                     "</uws:parameter>\n" for k, v in job.params.items() if v)
    results = ""
    if job.phase == "COMPLETED":
        href = f"{base}/TAP/async/{job.id}/results/result"
        results = f'    <uws:result id="result" xlink:href={quoteattr(href)}/>\n'
    err = ""
    if job.phase == "ERROR":
        err = ('  <uws:errorSummary type="fatal" hasDetail="true">\n'
               f"    <uws:message>{escape(job.error or '')}</uws:message>\n"
               "  </uws:errorSummary>\n")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<uws:job {_UWS_NS} version="1.1">\n'
            + _el("jobId", job.id) + _el("runId", None) + _el("ownerId", job.owner)
            + _el("phase", job.phase) + _el("quote", None)
            + _el("creationTime", _iso(job.created)) + _el("startTime", _iso(job.started))
            + _el("endTime", _iso(job.ended))
            + _el("executionDuration", str(job.execution_duration))
            + _el("destruction", _iso(job.destruction))
            + f"  <uws:parameters>\n{params}  </uws:parameters>\n"
            + f"  <uws:results>\n{results}  </uws:results>\n" + err + "</uws:job>\n")


def _xml(text: str, status: int = 200) -> Response:
    return Response(text, status_code=status, media_type="text/xml")


def _no_job(jid: str) -> Response:
    return PlainTextResponse(f"no such job {jid!r}", status_code=404)


def _run_job(ctx: ArchiveContext, store: JobStore, job: Job) -> None:
    """Run a job to COMPLETED or ERROR (synchronously, in the calling thread), with the rights
    of its owner; nothing happens when it is not waiting to run."""
    if not store.start(job.id):
        return
    try:
        result, media = _tap_run(ctx, job.params, job.anonymous)
    except (ValueError, FormatError) as exc:
        store.finish(job.id, error=str(exc))
    except Exception as exc:  # a job must end in a phase, not hang in EXECUTING
        log.exception("TAP job %s failed", job.id)
        store.finish(job.id, error=f"internal error: {type(exc).__name__}")
    else:
        store.finish(job.id, result=result, media=media)


@router.get("/TAP/async")
def tap_jobs(request: Request) -> Response:
    """The UWS job list: the caller's jobs (the anonymous ones for an anonymous caller)."""
    base = _base(request)
    jobs = _store(request).jobs(_owner(request))
    refs = "".join(f'  <uws:jobref id="{j.id}" xlink:href="{escape(base)}/TAP/async/{j.id}">'
                   f"<uws:phase>{j.phase}</uws:phase></uws:jobref>\n" for j in jobs)
    return _xml(f'<?xml version="1.0" encoding="UTF-8"?>\n<uws:jobs {_UWS_NS} version="1.1">\n'
                f"{refs}</uws:jobs>\n")


def _create(request: Request, ctx: ArchiveContext, p: dict[str, list[str]]) -> Response:
    phase = (_one(p, "PHASE") or "").upper()
    try:
        params = job_params(p)
    except LimitError as exc:
        return PlainTextResponse(str(exc), status_code=413)
    store = _store(request)
    try:
        job = store.add(params, _owner(request), client_address(request))
    except QuotaExceeded as exc:
        return PlainTextResponse(str(exc), status_code=429)
    if phase == "RUN":
        _run_job(ctx, store, job)
    return RedirectResponse(f"{_base(request)}/TAP/async/{job.id}", status_code=303)


@router.post("/TAP/async")
async def tap_create(request: Request, ctx: Ctx) -> Response:
    """Create a job (303 to it); ``PHASE=RUN`` among the parameters also runs it. Only the TAP
    parameters are kept, each bounded in length (413 beyond); 429 past the job quota."""
    p = await _params(request)
    return await run_in_threadpool(_create, request, ctx, p)


@router.get("/TAP/async/{jid}")
def tap_job(jid: str, request: Request) -> Response:
    """The job document (``WAIT`` returns at once: jobs run to the end when started)."""
    job = _job(request, jid)
    return _no_job(jid) if job is None else _xml(_job_xml(job, _base(request)))


@router.delete("/TAP/async/{jid}")
def tap_delete(jid: str, request: Request) -> Response:
    """Delete a job, its parameters and its result (303 to the job list)."""
    if not _store(request).delete(jid, _owner(request)):
        return _no_job(jid)
    return RedirectResponse(f"{_base(request)}/TAP/async", status_code=303)


@router.post("/TAP/async/{jid}")
async def tap_job_post(jid: str, request: Request) -> Response:
    """``ACTION=DELETE`` (the POST form of DELETE)."""
    p = await _params(request)
    if (_one(p, "ACTION") or "").upper() != "DELETE":
        return PlainTextResponse("use ACTION=DELETE", status_code=400)
    return await run_in_threadpool(tap_delete, jid, request)


@router.get("/TAP/async/{jid}/phase")
def tap_phase(jid: str, request: Request) -> Response:
    """The job's phase as text."""
    job = _job(request, jid)
    return _no_job(jid) if job is None else PlainTextResponse(job.phase)


def _set_phase(jid: str, request: Request, ctx: ArchiveContext, phase: str) -> Response:
    job = _job(request, jid)
    if job is None:
        return _no_job(jid)
    if phase == "RUN":
        _run_job(ctx, _store(request), job)
    elif phase == "ABORT":
        _store(request).abort(jid)
    else:
        return PlainTextResponse(f"PHASE must be RUN or ABORT, got {phase!r}", status_code=400)
    return RedirectResponse(f"{_base(request)}/TAP/async/{jid}", status_code=303)


@router.post("/TAP/async/{jid}/phase")
async def tap_set_phase(jid: str, request: Request, ctx: Ctx) -> Response:
    """``PHASE=RUN`` runs the job (to the end); ``PHASE=ABORT`` aborts a pending one."""
    phase = (_one(await _params(request), "PHASE") or "").upper()
    return await run_in_threadpool(_set_phase, jid, request, ctx, phase)


@router.get("/TAP/async/{jid}/results")
def tap_results(jid: str, request: Request) -> Response:
    """The job's result list."""
    job = _job(request, jid)
    if job is None:
        return _no_job(jid)
    href = f"{_base(request)}/TAP/async/{jid}/results/result"
    inner = (f'  <uws:result id="result" xlink:href={quoteattr(href)}/>\n'
             if job.phase == "COMPLETED" else "")
    return _xml(f'<?xml version="1.0" encoding="UTF-8"?>\n<uws:results {_UWS_NS}>\n{inner}'
                "</uws:results>\n")


@router.get("/TAP/async/{jid}/results/result")
def tap_result(jid: str, request: Request) -> Response:
    """The result table of a completed job."""
    job = _job(request, jid)
    if job is None:
        return _no_job(jid)
    found = _store(request).result(jid, _owner(request))
    if found is None:
        return PlainTextResponse(f"job {jid} is {job.phase}: no result", status_code=404)
    body, media = found
    return Response(body, media_type=media)


@router.get("/TAP/async/{jid}/error")
def tap_job_error(jid: str, request: Request) -> Response:
    """The error document of a job in ERROR."""
    job = _job(request, jid)
    if job is None:
        return _no_job(jid)
    if job.phase != "ERROR":
        return PlainTextResponse(f"job {jid} is {job.phase}: no error", status_code=404)
    return Response(votable_error(job.error or ""), media_type=VOTABLE)


@router.get("/TAP/async/{jid}/parameters")
def tap_parameters(jid: str, request: Request) -> Response:
    """The job's parameters."""
    job = _job(request, jid)
    if job is None:
        return _no_job(jid)
    params = "".join(f"  <uws:parameter id={quoteattr(k.lower())}>{escape(v[-1])}"
                     "</uws:parameter>\n" for k, v in job.params.items() if v)
    return _xml(f'<?xml version="1.0" encoding="UTF-8"?>\n<uws:parameters {_UWS_NS}>\n'
                f"{params}</uws:parameters>\n")


def _set_parameters(jid: str, request: Request, p: dict[str, list[str]]) -> Response:
    job = _job(request, jid)
    if job is None:
        return _no_job(jid)
    try:
        params = job_params(p)
    except LimitError as exc:
        return PlainTextResponse(str(exc), status_code=413)
    if job.phase != "PENDING" or not _store(request).update_params(jid, params):
        return PlainTextResponse(f"job {jid} is {job.phase}: parameters are frozen",
                                 status_code=409)
    return RedirectResponse(f"{_base(request)}/TAP/async/{jid}", status_code=303)


@router.post("/TAP/async/{jid}/parameters")
async def tap_set_parameters(jid: str, request: Request) -> Response:
    """Change the parameters of a pending job (TAP parameters only, bounded as at creation)."""
    p = await _params(request)
    return await run_in_threadpool(_set_parameters, jid, request, p)


@router.get("/TAP/async/{jid}/{attr}")
def tap_job_attr(jid: str, attr: str, request: Request) -> Response:
    """``executionduration``, ``destruction``, ``quote``, ``owner`` as text."""
    job = _job(request, jid)
    if job is None:
        return _no_job(jid)
    values = {"executionduration": str(job.execution_duration),
              "destruction": _iso(job.destruction) or "", "quote": "", "owner": job.owner or "",
              "jobid": job.id}
    if attr.lower() not in values:
        return PlainTextResponse(f"unknown job attribute {attr!r}", status_code=404)
    return PlainTextResponse(values[attr.lower()])


def _set_attr(jid: str, attr: str, request: Request, p: dict[str, list[str]]) -> Response:
    job = _job(request, jid)
    if job is None:
        return _no_job(jid)
    if attr.lower() == "executionduration":
        try:
            seconds = _int(_one(p, "EXECUTIONDURATION"), "EXECUTIONDURATION",
                           job.execution_duration)
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        _store(request).set_execution_duration(jid, min(seconds, MAX_EXECUTION_DURATION))
    elif attr.lower() != "destruction":
        return PlainTextResponse(f"unknown job attribute {attr!r}", status_code=404)
    return RedirectResponse(f"{_base(request)}/TAP/async/{jid}", status_code=303)


@router.post("/TAP/async/{jid}/{attr}")
async def tap_set_job_attr(jid: str, attr: str, request: Request) -> Response:
    """Accept ``EXECUTIONDURATION`` (kept, at most a day) and ``DESTRUCTION`` (jobs live one
    day)."""
    p = await _params(request)
    return await run_in_threadpool(_set_attr, jid, attr, request, p)


_FORMATS = [("application/x-votable+xml", "votable"), ("text/csv", "csv"),
            ("text/tab-separated-values", "tsv"), ("text/plain", "ipac_table"),
            ("application/json", "json"), ("text/html", "html")]


@router.get("/TAP/capabilities")
def tap_capabilities(request: Request, ctx: Ctx) -> Response:
    """VOSI capabilities: TAP 1.1 with ADQL 2.0 and its geometry, output formats and limits
    (no ``uploadMethod``: uploads are not supported)."""
    base = _base(request)
    geo = "".join(f'        <feature><form>{f}</form></feature>\n'
                  for f in ("POINT", "CIRCLE", "BOX", "POLYGON", "CONTAINS", "INTERSECTS",
                            "DISTANCE"))
    fmts = "".join(f"    <outputFormat><mime>{m}</mime><alias>{a}</alias></outputFormat>\n"
                   for m, a in _FORMATS)
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
        'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
        'xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        + _capability("ivo://ivoa.net/std/VOSI#capabilities", f"{base}/TAP/capabilities")
        + _capability("ivo://ivoa.net/std/VOSI#availability", f"{base}/TAP/availability")
        + _capability("ivo://ivoa.net/std/VOSI#tables", f"{base}/TAP/tables")
        + '  <capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">\n'
        '    <interface xsi:type="vs:ParamHTTP" role="std" version="1.1">\n'
        f'      <accessURL use="base">{escape(base)}/TAP</accessURL>\n'
        "    </interface>\n"
        "    <language>\n      <name>ADQL</name>\n"
        '      <version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>\n'
        "      <description>ADQL 2.0 subset: one table, WHERE, ORDER BY, TOP, OFFSET; "
        "geometry as top-level CONTAINS/INTERSECTS/DISTANCE terms</description>\n"
        '      <languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adql-geo">\n'
        f"{geo}      </languageFeatures>\n    </language>\n"
        f"{fmts}"
        f"    <retentionPeriod><default>{int(JOB_LIFETIME.total_seconds())}</default>"
        "</retentionPeriod>\n"
        "    <executionDuration><default>600</default></executionDuration>\n"
        "    <outputLimit>\n"
        f'      <default unit="row">{ctx.config.default_rows}</default>\n'
        f'      <hard unit="row">{ctx.config.max_rows}</hard>\n'
        "    </outputLimit>\n  </capability>\n</vosi:capabilities>\n")
    return _xml(body)


@router.get("/TAP/availability")
def tap_availability() -> Response:
    """VOSI availability."""
    return _xml(_AVAILABLE)


def _table_xml(t: adql.TableDef, detail: bool, indent: str = "    ") -> str:
    out = [f'{indent}<table type="{"view" if t.kind == "schema" else "table"}">\n'
           f"{indent}  <name>{escape(t.name)}</name>\n"
           f"{indent}  <description>{escape(t.description)}</description>\n"]
    if detail:
        for c in t.columns.values():
            if t.kind == "images" and not (c.principal or c.derive):
                continue
            out.append(
                f"{indent}  <column>\n{indent}    <name>{escape(c.name)}</name>\n"
                + (f"{indent}    <description>{escape(c.description)}</description>\n"
                   if c.description else "")
                + (f"{indent}    <unit>{escape(c.unit)}</unit>\n" if c.unit else "")
                + (f"{indent}    <ucd>{escape(c.ucd)}</ucd>\n" if c.ucd else "")
                + f'{indent}    <dataType xsi:type="vs:VOTableType"'
                + (' arraysize="*"' if c.datatype == "char" else "")
                + f">{c.datatype}</dataType>\n"
                + (f"{indent}    <flag>primary</flag>\n" if c.name == "oid" else "")
                + f"{indent}  </column>\n")
    out.append(f"{indent}</table>\n")
    return "".join(out)


_TABLES_NS = ('xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
              'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
              'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"')


@router.get("/TAP/tables")
def tap_tables(ctx: Ctx, detail: str | None = None) -> Response:
    """VOSI tableset (``detail=min``: names and descriptions only)."""
    full = (detail or "").lower() != "min"
    schemas: dict[str, list[adql.TableDef]] = {}
    for t in _catalog(ctx).all_tables():
        schemas.setdefault(t.name.split(".")[0] if "." in t.name else "public", []).append(t)
    body = "".join(f"  <schema>\n    <name>{escape(s)}</name>\n"
                   + "".join(_table_xml(t, full) for t in ts) + "  </schema>\n"
                   for s, ts in schemas.items())
    return _xml(f'<?xml version="1.0" encoding="UTF-8"?>\n<vosi:tableset {_TABLES_NS}>\n'
                f"{body}</vosi:tableset>\n")


@router.get("/TAP/tables/{name}")
def tap_table(name: str, ctx: Ctx) -> Response:
    """VOSI description of one table (with its columns)."""
    try:
        t = _catalog(ctx).resolve(name)
    except adql.ADQLError as exc:
        return PlainTextResponse(str(exc), status_code=404)
    return _xml('<?xml version="1.0" encoding="UTF-8"?>\n'
                + _table_xml(t, True, "").replace("<table ", f"<vosi:table {_TABLES_NS} ", 1)
                .replace("</table>\n", "</vosi:table>\n"))
