"""IRSA's Image Browser Engine (IBE) for ZTF: search, files, cutouts, SIA v1, listings.

Endpoints (``ARCHIVE_API.md`` sections 1.1-1.5):

* ``GET /ibe/search/ztf/products/{sci,raw,ref,deep,cal}`` -- metadata search by position
  (``POS``, ``SIZE``, ``INTERSECT``, ``mcen``) and/or ``WHERE``; IPAC table unless ``ct`` says
  otherwise; ``FORMAT=METADATA`` describes the columns. Parameter names are case-insensitive.
* ``GET /ibe/data/ztf/products/{sci,ref,cal,raw}/...`` -- the files of the home (with
  ``Content-Length``), HTML listings of folders, and ``?center=&size=[&gzip=]`` cutouts.
* ``GET /ibe/sia/ztf/products/sci`` -- Simple Image Access v1 (a VOTable with access URLs).
* ``GET /ibe/search/``, ``/ibe/search/ztf/``, ``/ibe/search/ztf/products/`` -- the HTML
  listings astroquery's ``Ibe.list_*`` parse.

What an anonymous caller gets goes through the archive's authorization policy
(:class:`zsds.archive.policy.Access`): restricted files are refused with 401 and restricted
images are left out of searches.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy import and_, text

from zsds.archive import index, tables
from zsds.archive.auth import request_access
from zsds.archive.context import ArchiveContext, Ctx
from zsds.archive.cutout import CutoutError, cutout_fits
from zsds.archive.index import obsdate as irsa_date
from zsds.archive.policy import Access
from zsds.archive.where import WhereError, translate_where

router = APIRouter(tags=["ibe"])


#: The IBE tables of ZTF and their ``archive_images.tbl`` (``deep`` references are ``ref``).
TABLES = {"sci": "sci", "raw": "raw", "ref": "ref", "deep": "ref", "cal": "cal"}
TABLE_TITLES = {
    "sci": "Science exposures (one row per CCD quadrant)",
    "raw": "Raw CCD files",
    "ref": "Reference images",
    "deep": "Deep reference images (same schema as ref)",
    "cal": "Calibration images (bias, high-frequency flat)",
}


@dataclass(frozen=True)
class Col:
    """One IBE column: IRSA name, IPAC type, unit, description, UCD."""

    name: str
    type: str
    unit: str = ""
    description: str = ""
    ucd: str = ""


_CORNER_COLS = [Col(f"{c}{k}", "double", "deg", f"{'RA' if c == 'ra' else 'Dec'} of image "
                    f"corner {k} (pixel corners (1,1), (NAXIS1,1), (NAXIS1,NAXIS2), (1,NAXIS2))",
                    "pos.eq.ra" if c == "ra" else "pos.eq.dec")
                for k in range(1, 5) for c in ("ra", "dec")]
_WCS_COLS = [Col(n, "double", u, d) for n, u, d in (
    ("crpix1", "pix", "WCS reference pixel, axis 1"), ("crpix2", "pix", "WCS reference pixel, "
                                                                         "axis 2"),
    ("crval1", "deg", "WCS reference RA"), ("crval2", "deg", "WCS reference Dec"),
    ("cd11", "deg/pix", "WCS CD matrix element 1_1"), ("cd12", "deg/pix", "WCS CD matrix 1_2"),
    ("cd21", "deg/pix", "WCS CD matrix element 2_1"), ("cd22", "deg/pix", "WCS CD matrix 2_2"))]

COLUMNS: dict[str, Col] = {c.name: c for c in [
    Col("ra", "double", "deg", "RA of the image centre", "pos.eq.ra;meta.main"),
    Col("dec", "double", "deg", "Dec of the image centre", "pos.eq.dec;meta.main"),
    Col("infobits", "int", "", "Quality bits (0 = good)", "meta.code.qual"),
    Col("field", "int", "", "ZTF field id", "obs.field"),
    Col("ccdid", "int", "", "CCD id (1..16)", "instr.det"),
    Col("qid", "int", "", "Readout quadrant id (1..4)", "instr.det"),
    Col("rcid", "int", "", "Readout channel id (0..63)", "instr.det"),
    Col("fid", "int", "", "Filter id (1=g, 2=r, 3=i)", "instr.filter"),
    Col("filtercode", "char", "", "Filter code (zg, zr, zi; bi for bias)", "instr.filter"),
    Col("pid", "long", "", "Processed-image id", "meta.id"),
    Col("nid", "int", "", "Night id (days since 2017-01-01)", "time.epoch"),
    Col("expid", "int", "", "Exposure id", "meta.id"),
    Col("itid", "int", "", "Image type id (1=science, 2=bias, 3=dark, 4=flat)", "meta.code"),
    Col("imgtype", "char", "", "Image type (object, bias, dark, flat)", "meta.code"),
    Col("imgtypecode", "char", "", "Image type code (o, b, d, f)", "meta.code"),
    Col("obsdate", "char", "", "UTC at exposure start", "time.start"),
    Col("obsjd", "double", "d", "Julian date at exposure start (UTC)", "time.start"),
    Col("exptime", "double", "s", "Exposure time", "time.duration"),
    Col("filefracday", "long", "", "YYYYMMDD + fraction of the UT day x 1e6", "meta.id"),
    Col("seeing", "double", "arcsec", "PSF FWHM", "instr.obsty.seeing"),
    Col("airmass", "double", "", "Airmass", "obs.airMass"),
    Col("moonillf", "double", "", "Moon illuminated fraction", ""),
    Col("moonesb", "double", "", "Moon excess sky brightness", ""),
    Col("maglimit", "double", "mag", "5-sigma limiting magnitude", "phot.mag;stat.max"),
    *_WCS_COLS, *_CORNER_COLS,
    Col("telra", "double", "deg", "Telescope pointing RA", "pos.eq.ra"),
    Col("teldec", "double", "deg", "Telescope pointing Dec", "pos.eq.dec"),
    Col("ccdrot", "double", "deg", "CCD rotation", ""),
    Col("rfid", "long", "", "Reference image id", "meta.id"),
    Col("nframes", "int", "", "Number of frames combined", "meta.number"),
    Col("startobsdate", "char", "", "UTC of the first input frame", "time.start"),
    Col("endobsdate", "char", "", "UTC of the last input frame", "time.end"),
    Col("caltype", "char", "", "Calibration type (bias, hifreqflat)", "meta.code"),
    Col("cid", "long", "", "Calibration image id", "meta.id"),
    Col("nightdate", "int", "", "Night of the calibration (YYYYMMDD)", "time.epoch"),
    Col("obsdate_range", "char", "", "UTC validity interval start/end", "time.interval"),
    Col("ipac_pub_date", "char", "", "Date the image entered the archive", "time.release"),
    Col("ipac_gid", "int", "", "Program group id (ZTF programid)", "meta.code"),
    Col("meta_id", "long", "", "Archive row id", "meta.id;meta.main"),
]}

_CORNERS = [c.name for c in _CORNER_COLS]
_WCS = [c.name for c in _WCS_COLS]
#: Default columns of each table, in IRSA's order (``ARCHIVE_API.md`` 1.1).
DEFAULTS: dict[str, list[str]] = {
    "sci": ["ra", "dec", "infobits", "field", "ccdid", "qid", "rcid", "fid", "filtercode", "pid",
            "nid", "expid", "itid", "imgtype", "imgtypecode", "obsdate", "obsjd", "exptime",
            "filefracday", "seeing", "airmass", "moonillf", "moonesb", "maglimit", *_WCS,
            *_CORNERS, "ipac_pub_date", "ipac_gid", "meta_id"],
    "raw": ["infobits", "field", "ccdid", "fid", "filtercode", "nid", "expid", "itid",
            "imgtype", "imgtypecode", "filefracday", "obsdate", "obsjd", "exptime", "seeing",
            "airmass", "moonillf", "moonesb", "telra", "teldec", "ccdrot", "ipac_pub_date",
            "ipac_gid", "meta_id"],
    "ref": ["infobits", "field", "ccdid", "qid", "rcid", "fid", "filtercode", "rfid", "nframes",
            "maglimit", "startobsdate", "endobsdate", *_WCS, "ra", "dec", *_CORNERS,
            "ipac_pub_date", "ipac_gid", "meta_id"],
    "cal": ["caltype", "ccdid", "qid", "rcid", "fid", "filtercode", "cid", "nightdate",
            "startobsdate", "endobsdate", "nid", "nframes", "ipac_pub_date", "meta_id",
            "obsdate_range"],
}
DEFAULTS["deep"] = DEFAULTS["ref"]
#: Columns a client may also ask for with COLUMNS (the footprint of raw/cal rows).
EXTRAS: dict[str, list[str]] = {"raw": ["ra", "dec", *_CORNERS], "cal": ["ra", "dec"],
                                "sci": [], "ref": [], "deep": []}
#: Columns stored as such in ``archive_images``.
_STORED = {"ra", "dec", "infobits", "field", "ccdid", "qid", "rcid", "fid", "filtercode", "pid",
           "nid", "expid", "imgtypecode", "obsjd", "exptime", "filefracday", "seeing",
           "airmass", "maglimit", "rfid", "nframes", "caltype", "nightdate", "moonillf", "telra",
           "teldec", *_WCS, *_CORNERS}
_IMGTYPES = {"o": ("object", 1), "b": ("bias", 2), "d": ("dark", 3), "f": ("flat", 4),
             "c": ("focus", 5), "g": ("guider", 6)}
#: Columns with no stored value (always null here; not searchable): the simulated camera
#: has no rotator and the headers no Moon sky-brightness model.
_NULL = {"moonesb", "ccdrot"}


def table_columns(table: str) -> list[str]:
    """Every column a search of ``table`` can return."""
    return DEFAULTS[table] + EXTRAS[table]


def _date_sql(col: str, dialect: str) -> str | None:
    """SQL text of IRSA's ``YYYY-MM-DD HH:MM:SS.SSS+00`` of a JD column (None if the database
    has no suitable function, which makes the column unsearchable)."""
    if dialect == "sqlite":
        return f"strftime('%Y-%m-%d %H:%M:%f', {col}) || '+00'"
    if dialect == "postgresql":
        return (f"to_char(timestamp 'epoch' + ({col} - 2440587.5) * interval '1 day', "
                f"'YYYY-MM-DD HH24:MI:SS.MS') || '+00'")
    return None


def where_columns(table: str, dialect: str = "sqlite") -> dict[str, str | None]:
    """The WHERE whitelist of an IBE table: IRSA column name to its SQL expression over
    ``archive_images`` (None for columns without a stored value)."""
    if table not in TABLES:
        raise ValueError(f"unknown IBE table {table!r}")
    types = "CASE imgtypecode " + " ".join(
        f"WHEN '{k}' THEN '{v[0]}'" for k, v in _IMGTYPES.items()) + " END"
    itids = "CASE imgtypecode " + " ".join(
        f"WHEN '{k}' THEN {v[1]}" for k, v in _IMGTYPES.items()) + " END"
    derived: dict[str, str | None] = {
        "imgtype": types, "itid": itids, "meta_id": "id", "cid": "id",
        "obsdate": _date_sql("obsjd", dialect), "startobsdate": _date_sql("obsjd", dialect),
        "endobsdate": _date_sql("endjd", dialect),
        "ipac_gid": "programid" if TABLES[table] in ("sci", "raw") else "1",
        "ipac_pub_date": None, "obsdate_range": None,
    }
    out: dict[str, str | None] = {}
    for name in table_columns(table):
        if name in _STORED:
            out[name] = name
        elif name in _NULL:
            out[name] = None
        else:
            out[name] = derived[name]
    return out


# -- values ------------------------------------------------------------------------------
#: Rows of ``archive_images`` by column: numpy columns (:func:`zsds.archive.index.image_rows`)
#: or a DataFrame.
Rows = Mapping[str, Any] | pd.DataFrame


def _dates(jd: pd.Series) -> np.ndarray:
    return np.array([irsa_date(v) if pd.notna(v) else None for v in jd], dtype=object)


def _derived(df: Rows, name: str, table: str) -> Any:
    """Values of a column not stored as such."""
    n = len(df["id"])
    codes = df["imgtypecode"] if "imgtypecode" in df else [None] * n
    if name == "imgtype":
        return np.array([_IMGTYPES.get(c, (None,))[0] for c in codes], dtype=object)
    if name == "itid":
        return np.array([_IMGTYPES.get(c, (None, None))[1] for c in codes], dtype=object)
    if name in ("obsdate", "startobsdate"):
        return _dates(df["obsjd"])
    if name == "endobsdate":
        return _dates(df["endjd"])
    if name == "obsdate_range":
        return np.array([None if a is None or b is None else f"{a}/{b}" for a, b in
                         zip(_dates(df["obsjd"]), _dates(df["endjd"]), strict=True)],
                        dtype=object)
    if name in ("meta_id", "cid"):
        return np.asarray(df["id"])
    if name == "ipac_gid":
        return np.asarray(df["programid"]) if TABLES[table] in ("sci", "raw") else np.ones(n, int)
    if name == "ipac_pub_date":
        return np.array([None if pd.isna(v) else f"{pd.Timestamp(v):%Y-%m-%d %H:%M:%S}+00"
                         for v in df["indexed_at"]], dtype=object)
    return np.full(n, None, dtype=object)  # _NULL columns


@functools.cache
def _unit(name: str) -> u.UnitBase | None:
    """The astropy unit of a column (parsed once: parsing took a tenth of a search)."""
    return u.Unit(name) if name else None


def _values(values: Any, col: Col) -> np.ndarray:
    """Values in IRSA's type of ``col``: a masked array where some are null."""
    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if arr.dtype.kind in "iufb" and col.type != "char":
        # Numbers straight from the database (NaN where null): no per-value work.
        mask = np.isnan(arr) if arr.dtype.kind == "f" else np.zeros(len(arr), dtype=bool)
        if col.type == "double":
            data = arr.astype(float)  # nulls are NaN already
        else:
            data = np.where(mask, 0, arr).astype(np.int64)
    else:
        mask = np.array(pd.isna(pd.Series(arr, dtype=object)).to_numpy(), dtype=bool)
        if col.type in ("int", "long"):
            data = np.zeros(len(arr), dtype=np.int64)
            if (~mask).any():
                data[~mask] = np.asarray(arr[~mask], dtype=float).astype(np.int64)
        elif col.type == "double":
            data = np.full(len(arr), np.nan)
            if (~mask).any():
                data[~mask] = np.asarray(arr[~mask], dtype=float)
        else:
            data = np.array(["" if m else str(v) for v, m in zip(arr, mask, strict=True)],
                            dtype=str if len(arr) else "U1")
    return np.ma.MaskedArray(data, mask=mask) if mask.any() else data


def result_table(df: Rows, table: str, names: list[str],
                 position: tuple[float, float] | None = None) -> Table:
    """The IBE output table of rows of ``archive_images`` (``df``: columns by name, as
    :func:`zsds.archive.index.image_rows` gives them or a DataFrame) for ``names``; with
    the searched ``position`` (ra, dec), led by IBE's ``in_row_id``, ``in_ra``, ``in_dec``.

    The table is made in one step from plain and masked arrays, then given its units and
    descriptions: an astropy Column made per column first cost as much again.
    """
    n = len(df["id"])
    data: dict[str, np.ndarray] = {}
    meta: dict[str, tuple[str, str | None]] = {}
    if position is not None:
        data = {"in_row_id": np.ones(n, dtype=np.int64), "in_ra": np.full(n, position[0]),
                "in_dec": np.full(n, position[1])}
        meta = {"in_ra": ("deg", None), "in_dec": ("deg", None)}
    for name in names:
        col = COLUMNS[name]
        values = np.asarray(df[name]) if name in _STORED else _derived(df, name, table)
        data[name] = _values(values, col)
        meta[name] = (col.unit, col.description)
    out = Table(data, copy=False)
    for name, (unit, description) in meta.items():
        column = out[name]
        column.unit = _unit(unit)
        column.description = description
    return out


def metadata_table(table: str) -> Table:
    """IBE's ``FORMAT=METADATA`` answer: one row per column of ``table``."""
    names = table_columns(table)
    defaults = set(DEFAULTS[table])
    searchable = where_columns(table)
    ascii_types = {"char": "a", "int": "i", "long": "l", "double": "d"}
    sizes = {"char": 32, "int": 4, "long": 8, "double": 8}
    rows = [COLUMNS[n] for n in names]
    return Table({
        "name": [c.name for c in rows],
        "description": [c.description for c in rows],
        "ucd": [c.ucd for c in rows],
        "datatype": [c.type for c in rows],
        "size": np.array([sizes[c.type] for c in rows], dtype=np.int32),
        "ascii_type": [ascii_types[c.type] for c in rows],
        "unit": [c.unit for c in rows],
        "nullable": np.ones(len(rows), dtype=np.int32),
        "principal": np.array([c.name in defaults for c in rows], dtype=np.int32),
        "indexed": np.array([c.name in ("field", "rcid", "fid", "obsjd", "ra", "dec", "pid")
                             for c in rows], dtype=np.int32),
        "std": np.array([searchable.get(c.name) is not None for c in rows], dtype=np.int32),
    })


# -- request parsing ---------------------------------------------------------------------
class IbeError(ValueError):
    """A bad IBE request (answered with HTTP 400)."""


def _params(request: Request) -> dict[str, str]:
    """Query parameters with lower-case names (the last value wins); ``+`` is already a
    space (form decoding), a bare flag such as ``mcen`` maps to ``""``."""
    return {k.lower(): v for k, v in request.query_params.multi_items()}


def _floats(text: str, what: str, n: tuple[int, ...]) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise IbeError(f"{what}={text!r}: expected comma-separated numbers") from None
    if len(vals) not in n or not all(math.isfinite(v) for v in vals):
        raise IbeError(f"{what}={text!r}: expected {' or '.join(map(str, n))} finite values")
    return vals


def search_images(ctx: ArchiveContext, table: str, p: dict[str, str],
                  access: Access | None = None
                  ) -> tuple[dict[str, np.ndarray], tuple[float, float] | None]:
    """Rows of ``archive_images`` answering IBE search parameters ``p`` (lower-case names).

    Returns the rows (numpy columns by name, :func:`zsds.archive.index.image_rows`) and the
    searched position (None for WHERE-only searches). With
    ``access``, only the images the caller may see (restricted ones need a login).
    """
    pos = p.get("pos")
    where = p.get("where", "").strip()
    if not pos and not where:
        raise IbeError("POS or WHERE is required")
    sql, params = (translate_where(where, where_columns(table, ctx.engine.dialect.name),
                                   table=table) if where else (None, {}))
    kwargs: dict[str, Any] = {}
    radec = None
    if pos:
        ra, dec = _floats(pos, "POS", (2,))
        if not -90 <= dec <= 90:
            raise IbeError(f"POS={pos!r}: Dec outside [-90, 90]")
        radec = (ra % 360.0, dec)
        size = _floats(p["size"], "SIZE", (1, 2)) if p.get("size") else [0.0]
        if min(size) < 0:
            raise IbeError(f"SIZE={p['size']!r}: sizes must not be negative")
        intersect = (p.get("intersect") or "OVERLAPS").upper()
        if intersect not in index.INTERSECTS:
            raise IbeError(f"INTERSECT={intersect!r}: use one of {', '.join(index.INTERSECTS)}")
        kwargs = {"ra": radec[0], "dec": dec, "width": size[0], "height": size[-1],
                  "intersect": intersect}
    conds = [c for c in (text(sql) if sql else None,
                         access.image_condition() if access is not None else None)
             if c is not None]
    rows = index.image_rows(ctx.engine, table, where=and_(*conds) if conds else None,
                            params=params, limit=ctx.config.max_rows, **kwargs)
    if radec is not None and "mcen" in p and kwargs["width"] == 0 and kwargs["height"] == 0:
        rows = {k: v[:1] for k, v in rows.items()}
    return rows, radec


def _columns_param(p: dict[str, str], table: str) -> list[str]:
    value = p.get("columns", "").strip()
    allowed = table_columns(table)
    if not value:
        return DEFAULTS[table]
    if value == "*":
        return allowed
    names = [c.strip().lower() for c in value.split(",") if c.strip()]
    bad = [c for c in names if c not in allowed]
    if bad:
        raise IbeError(f"unknown column(s) {', '.join(bad)} of table {table!r} "
                       f"(allowed: {', '.join(allowed)})")
    return list(dict.fromkeys(names))


# -- listings ----------------------------------------------------------------------------
def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
                        f"{html.escape(title)}</title></head><body><h1>{html.escape(title)}"
                        f"</h1>{body}</body></html>")


@router.get("/ibe/search", include_in_schema=False)
@router.get("/ibe/search/")
def list_missions() -> HTMLResponse:
    """The missions (astroquery ``Ibe.list_missions``): only ``ztf``."""
    return _page("IBE missions", '<ul><li><a href="/ibe/search/ztf">ztf</a></li></ul>')


@router.get("/ibe/search/ztf", include_in_schema=False)
@router.get("/ibe/search/ztf/")
def list_datasets() -> HTMLResponse:
    """The datasets of ZTF (astroquery ``Ibe.list_datasets``): only ``products``."""
    return _page("IBE ZTF datasets", '<ul><li><a href="/ibe/search/">..</a></li>'
                 '<li><a href="/ibe/search/ztf/products">products</a></li></ul>')


@router.get("/ibe/search/ztf/products", include_in_schema=False)
@router.get("/ibe/search/ztf/products/")
def list_tables() -> HTMLResponse:
    """The tables of ZTF products (astroquery ``Ibe.list_tables``): first cell of each row."""
    rows = "".join(f'<tr><td>{t}</td><td><a href="/ibe/search/ztf/products/{t}?FORMAT=METADATA">'
                   f"{html.escape(TABLE_TITLES[t])}</a></td></tr>" for t in TABLES)
    return _page("IBE ZTF product tables",
                 f"<table border='1'><tr><th>table</th><th>description</th></tr>{rows}</table>")


# -- search ------------------------------------------------------------------------------
@router.get("/ibe/search/ztf/products/{table}")
def search(table: str, request: Request, ctx: Ctx) -> Response:
    """IBE metadata search (``ARCHIVE_API.md`` 1.1)."""
    p = _params(request)
    table = table.lower()
    if table not in TABLES:
        return tables.ibe_error(f"unknown table {table!r}: use one of {', '.join(TABLES)}")
    try:
        fmt = tables.parse_format(p.get("ct"))
        if p.get("format", "").strip().upper() == "METADATA":
            return tables.table_response(metadata_table(table), fmt,
                                         title=f"ztf.products.{table} columns")
        names = _columns_param(p, table)
        df, radec = search_images(ctx, table, p, request_access(request))
    except (IbeError, WhereError, tables.FormatError, ValueError) as exc:
        return tables.ibe_error(str(exc))
    out = result_table(df, table, names, radec)
    return tables.table_response(out, fmt, title=f"ztf.products.{table}")


# -- files -------------------------------------------------------------------------------
def _resolve(ctx: ArchiveContext, path: str) -> tuple[Path, str]:
    """Absolute path and home-relative path of an ``/ibe/data/ztf/products/`` path.

    ``sci``, ``ref``, ``cal`` live in ``HOME/products``; ``raw`` in ``HOME/raw``. A reference
    product asked for without its version folder (the IRSA layout ztfquery builds) is taken
    from the latest ``vNNN`` folder. Anything that resolves outside its tree is refused.

    Raises
    ------
    FileNotFoundError
        For a path outside the served trees or one that does not exist.
    """
    parts = PurePosixPath(path.strip("/")).parts
    if not parts or parts[0] not in ("sci", "ref", "cal", "raw"):
        raise FileNotFoundError("not found: use sci/, ref/, cal/ or raw/")
    root = (ctx.home.raw if parts[0] == "raw" else ctx.home.products / parts[0]).resolve()
    rel_root = "raw" if parts[0] == "raw" else f"products/{parts[0]}"
    target = root.joinpath(*parts[1:]).resolve()
    if target != root and not target.is_relative_to(root):
        raise FileNotFoundError("not found")
    if not target.exists() and parts[0] == "ref" and len(parts) > 1:
        versions = sorted(target.parent.glob(f"v[0-9][0-9][0-9]/{target.name}"))
        if versions:
            target = versions[-1].resolve()
    if not target.exists() or not target.is_relative_to(root):
        raise FileNotFoundError("not found")
    rel = f"{rel_root}/{target.relative_to(root).as_posix()}".rstrip("/.")
    return target, rel if target != root else rel_root


def _listing(request: Request, target: Path, url_path: str) -> HTMLResponse:
    base = url_path if url_path.endswith("/") else url_path + "/"
    rows = ['<tr><td><a href="../">../</a></td><td></td><td></td></tr>']
    for entry in sorted(target.iterdir()):
        st = entry.stat()
        name = entry.name + ("/" if entry.is_dir() else "")
        when = dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).strftime("%Y-%m-%d %H:%M")
        size = "-" if entry.is_dir() else str(st.st_size)
        rows.append(f'<tr><td><a href="{html.escape(base + name)}">{html.escape(name)}</a>'
                    f"</td><td>{when}</td><td>{size}</td></tr>")
    return _page(f"Index of {url_path}", "<table><tr><th>Name</th><th>Last modified</th>"
                 f"<th>Size</th></tr>{''.join(rows)}</table>")


@router.get("/ibe/data/ztf/products/{path:path}")
@router.head("/ibe/data/ztf/products/{path:path}")
def data(path: str, request: Request, ctx: Ctx) -> Response:
    """A file of the archive, a folder listing, or a cutout (``?center=&size=``)."""
    try:
        target, rel = _resolve(ctx, path)
    except FileNotFoundError as exc:
        return tables.ibe_error(f"{path}: {exc}", status=404)
    if not request_access(request).may_read_path(rel):
        return Response("login required: depot content\n", status_code=401,
                        media_type="text/plain",
                        headers={"WWW-Authenticate": 'Basic realm="zsds"'})
    if target.is_dir():
        return _listing(request, target, request.url.path)
    p = _params(request)
    if "center" in p or "size" in p:
        if not ("center" in p and "size" in p):
            return tables.ibe_error("a cutout needs both center and size")
        if ".fits" not in target.name:
            return tables.ibe_error(f"{target.name} is not a FITS file: no cutout")
        compress = p.get("gzip", "true").strip().lower() not in ("false", "f", "0", "no")
        try:
            body = cutout_fits(target, p["center"], p["size"], compress=compress)
        except (CutoutError, OSError) as exc:
            return tables.ibe_error(str(exc))
        stem = target.name.removesuffix(".fz").removesuffix(".fits")
        name = f"{stem}_cutout.fits" + (".gz" if compress else "")
        return Response(body, media_type="application/gzip" if compress else "application/fits",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    media = "application/fits" if ".fits" in target.name else None
    return FileResponse(target, media_type=media, filename=None)


# -- SIA v1 ------------------------------------------------------------------------------
_SIA_UCDS = {
    "sia_title": "VOX:Image_Title", "ra": "POS_EQ_RA_MAIN", "dec": "POS_EQ_DEC_MAIN",
    "sia_naxes": "VOX:Image_Naxes", "sia_naxis": "VOX:Image_Naxis",
    "sia_scale": "VOX:Image_Scale", "sia_format": "VOX:Image_Format",
    "sia_url": "VOX:Image_AccessReference", "sia_fsize": "VOX:Image_FileSize",
    "sia_mjd": "VOX:Image_MJDateObs", "sia_bp_id": "VOX:BandPass_ID",
    "sia_instr": "INST_ID",
}


def sia_table(ctx: ArchiveContext, df: Rows, base_url: str) -> Table:
    """SIA v1 rows (UCD-tagged columns, access URLs under ``base_url``) plus the sci columns."""
    naxis, sizes = [], []
    for rel in df["relpath"]:
        path = ctx.home.path(rel)
        try:
            h = fits.getheader(path, 0)
            naxis.append((int(h.get("NAXIS1", 0)), int(h.get("NAXIS2", 0))))
        except (OSError, ValueError):
            naxis.append((0, 0))
        sizes.append(path.stat().st_size if path.exists() else 0)
    n = len(df["relpath"])
    cd = {k: np.asarray(df[k], dtype=float) for k in ("cd11", "cd12", "cd21", "cd22")}
    scale = np.stack([np.hypot(cd["cd11"], cd["cd21"]), np.hypot(cd["cd12"], cd["cd22"])],
                     axis=1) if n else np.zeros((0, 2))
    urls = [base_url.rstrip("/") + "/ibe/data/ztf/products/" + rel.split("/", 1)[1]
            if rel.startswith("products/") else base_url.rstrip("/") + "/ibe/data/ztf/products/"
            + rel for rel in df["relpath"]]
    sia = Table({
        "sia_title": np.array([os.path.basename(r) for r in df["relpath"]], dtype=str)
        if n else np.array([], dtype="U1"),
        "sia_url": np.array(urls, dtype=str) if n else np.array([], dtype="U1"),
        "sia_naxes": np.full(n, 2, dtype=np.int32),
        "sia_naxis": np.array(naxis, dtype=np.int32).reshape(n, 2),
        "sia_scale": scale,
        "sia_format": np.array(["image/fits"] * n, dtype=str) if n else np.array([], "U1"),
        "sia_fsize": np.array(sizes, dtype=np.int64),
        "sia_mjd": np.asarray(df["obsjd"], dtype=float) - 2400000.5 if n else np.zeros(0),
        "sia_bp_id": np.array(["" if v is None or v != v else str(v) for v in df["filtercode"]],
                              dtype=str) if n else np.array([], "U1"),
        "sia_instr": np.array(["ZTF"] * n, dtype=str) if n else np.array([], "U1"),
    })
    sia["sia_scale"].unit = "deg/pix"
    sia["sia_mjd"].unit = "d"
    rest = result_table(df, "sci", DEFAULTS["sci"])
    for name in rest.colnames:
        sia[name] = rest[name]
    return sia


@router.get("/ibe/sia/ztf/products/{table}")
def sia(table: str, request: Request, ctx: Ctx) -> Response:
    """Simple Image Access v1 over an IBE table (pyvo ``SIAService``)."""
    p = _params(request)
    table = table.lower()
    if table not in TABLES:
        return Response(tables.votable_error(f"unknown table {table!r}"), status_code=400,
                        media_type=tables.MEDIA["votable"])
    if p.get("format", "").strip().upper() == "METADATA":
        empty = sia_table(ctx, index.image_rows(ctx.engine, table, where=text("1=0")),
                          str(request.base_url))
        return Response(tables.votable_bytes(empty, ucds=_SIA_UCDS, infos={
            "INPUT:POS": "ra,dec (deg, ICRS), required", "INPUT:SIZE": "w[,h] (deg)",
            "INPUT:INTERSECT": "COVERS|ENCLOSED|CENTER|OVERLAPS (default OVERLAPS)",
            "INPUT:FORMAT": "image/fits|METADATA"}), media_type=tables.MEDIA["votable"])
    try:
        if not p.get("pos"):
            raise IbeError("POS is required")
        p = {k: v for k, v in p.items() if k in ("pos", "size", "intersect")}
        df, _ = search_images(ctx, table, p, request_access(request))
    except (IbeError, WhereError, ValueError) as exc:
        return Response(tables.votable_error(str(exc)), status_code=400,
                        media_type=tables.MEDIA["votable"])
    body = tables.votable_bytes(sia_table(ctx, df, str(request.base_url)), ucds=_SIA_UCDS)
    return Response(body, media_type=tables.MEDIA["votable"])
