"""The web UI of the archive: search, image viewer, light-curve viewer, finder charts, login.

Pages are Jinja2 templates (``templates/``) rendered with :func:`zsds.archive.templating.render`;
the interactive parts (sortable tables, zoom/pan, catalogue overlay, light-curve plots and
phase folding) are plain JavaScript in ``static/`` that reads the small JSON endpoints under
``/ui/api/``. Images, periodograms and finder charts are computed server-side with astropy
and matplotlib (:mod:`zsds.archive.plots`).

Every page is rendered with Jinja2's autoescaping (nothing a request sends reaches the page
unescaped, and no page holds inline script, as the Content-Security-Policy requires); what
an anonymous visitor sees goes through the archive's authorization policy
(:mod:`zsds.archive.policy`).
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from sqlalchemy import and_

from zsds.archive import params
from zsds.archive.auth import request_access
from zsds.archive.context import ArchiveContext, Ctx
from zsds.archive.index import images_at, obsdate
from zsds.archive.limits import (
    INT64_MAX,
    LimitError,
    check_cone_radius,
    check_int64,
)
from zsds.archive.plots import (
    CMAPS,
    STRETCHES,
    RenderError,
    finder_chart,
    image_info,
    pixel_info,
    render_png,
    wcs_of,
)
from zsds.archive.policy import Access
from zsds.archive.security import safe_next
from zsds.archive.templating import render
from zsds.db.schema import ArchiveImage
from zsds.lightcurves.build import BAD_CATFLAGS
from zsds.lightcurves.query import lightcurve_points, read_exposures
from zsds.lightcurves.search import cone_search, get_object

router = APIRouter(tags=["web UI"])


#: Image tables of the search form.
IMAGE_TABLES = ("sci", "ref", "raw", "cal")
FILTERCODES = ("zg", "zr", "zi")
_FID = {"zg": 1, "zr": 2, "zi": 3}
_FILTERCODE = {1: "zg", 2: "zr", 3: "zi"}
#: Rows shown by a search page.
MAX_ROWS = 500
#: Most frequencies of a periodogram grid.
MAX_FREQUENCIES = 2_000_000
#: Top-level folders of the home the viewer may open.
_VIEW_ROOTS = ("products", "raw")
#: Metrics of ``lc_objects`` shown on the light-curve page, with their labels.
METRICS = (
    ("ra", "RA (deg)"), ("dec", "Dec (deg)"), ("field", "field"), ("ccdid", "CCD"),
    ("qid", "quadrant"), ("fid", "filter id"), ("kind", "kind (0 source, 1 transient)"),
    ("refmag", "reference mag"), ("medianmag", "median mag"), ("meanmag", "mean mag"),
    ("magrms", "mag rms"), ("amplitude", "amplitude"), ("chisq", "reduced χ²"),
    ("stetsonj", "Stetson J"), ("vonneumannratio", "von Neumann ratio"),
    ("period", "period (d)"), ("periodpower", "period power"), ("nobs", "epochs"),
    ("ngoodobs", "good epochs"), ("mjdmin", "first MJD"), ("mjdmax", "last MJD"),
)


# --------------------------------------------------------------------------- input parsing


def parse_position(text: str) -> tuple[float, float]:
    """RA, Dec (deg) of a coordinate string.

    Accepts decimal degrees (``"338.93 25.62"``, ``"338.93, +25.62"``) and sexagesimal
    (``"22:35:43.2 +25:37:12"``, ``"22h35m43.2s +25d37m12s"``; RA in hours).

    Raises
    ------
    ValueError
        Naming the text when it is not a position.
    """
    text = (text or "").strip()
    if not text:
        raise ValueError("no position given")
    parts = [p for p in re.split(r"[\s,]+", text) if p]
    try:
        if len(parts) == 2 and all(re.fullmatch(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?", p)
                                   for p in parts):
            c = SkyCoord(float(parts[0]) * u.deg, float(parts[1]) * u.deg)
        else:
            c = SkyCoord(text.replace(",", " "), unit=(u.hourangle, u.deg))
    except (ValueError, u.UnitsError, TypeError) as exc:
        raise ValueError(f"cannot read a position from {text!r} ({exc}); use e.g. "
                         f"'338.93 25.62' or '22:35:43.2 +25:37:12'") from None
    return float(c.ra.deg), float(c.dec.deg)


def parse_coords(ra: str, dec: str) -> tuple[float, float]:
    """RA and Dec given separately (degrees, or sexagesimal with RA in hours)."""
    return parse_position(f"{ra.strip()} {dec.strip()}")


def _float(name: str, text: str | None, default: float | None = None, lo: float | None = None,
           hi: float | None = None) -> float | None:
    if text is None or not str(text).strip():
        return default
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {text!r}")
    return v


def _int(name: str, text: str | None) -> int | None:
    if text is None or not str(text).strip():
        return None
    try:
        return check_int64(int(text), name)
    except ValueError as exc:  # LimitError is a ValueError too
        if isinstance(exc, LimitError):
            raise
        raise ValueError(f"{name} must be an integer, got {text!r}") from None


def _radius(text: str | None, default: float) -> float:
    """A cone radius (arcsec) of a form: at least 0.01 arcsec, at most one degree."""
    r = float(_float("radius", text, default))  # type: ignore[arg-type]
    check_cone_radius(r / 3600.0, "radius", 1.0)
    return r


def _jd(name: str, text: str | None, end: bool = False) -> float | None:
    """JD of a date, JD or MJD (a bare date as an ``end`` bound means the end of that day)."""
    return params.parse_jd(text, name, end=end)


def _clean(values: Any) -> list[Any]:
    """A column as a JSON list (NaN and inf as null, numpy scalars as Python)."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        return [None if not math.isfinite(v) else v for v in arr.astype(float).tolist()]
    return arr.tolist()


def _scalar(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# --------------------------------------------------------------------------- paths


def ibe_url(relpath: str) -> str:
    """The IBE download URL (``/ibe/data/ztf/products/...``) of a home-relative path.

    Raw files live under ``raw/`` in the home and under ``products/raw/`` at IBE; a reference's
    version folder (``v001/``) is not part of IBE's layout (ARCHIVE_API 1.2).
    """
    p = PurePosixPath(relpath)
    if p.parts and p.parts[0] == "raw":
        p = PurePosixPath("products", *p.parts)
    parts = [s for s in p.parts if not (p.parts[:2] == ("products", "ref")
                                        and re.fullmatch(r"v\d+", s))]
    return "/ibe/data/ztf/" + "/".join(parts)


def resolve_path(ctx: ArchiveContext, path: str | None, access: Access) -> tuple[str, Path]:
    """Check a viewer ``path`` parameter; returns (clean relpath, absolute path).

    Raises
    ------
    HTTPException
        400 for a path that is absolute, climbs out of the home, is outside ``products/`` and
        ``raw/`` or is not FITS; 404 when it does not exist; 401 for a restricted product
        without a login.
    """
    if not path or not path.strip():
        raise HTTPException(400, "missing path (a home-relative FITS path, e.g. "
                                 "products/sci/.../ztf_..._sciimg.fits)")
    if "\\" in path or "\x00" in path:
        raise HTTPException(400, f"invalid character in path {path!r}")
    p = PurePosixPath(path.strip())
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise HTTPException(400, f"path must be relative to the archive home and may not "
                                 f"contain '..': {path!r}")
    if p.parts[0] not in _VIEW_ROOTS:
        roots = " or ".join(f"{r}/" for r in _VIEW_ROOTS)
        raise HTTPException(400, f"path must be under {roots}: {path!r}")
    if not (p.name.endswith(".fits") or p.name.endswith(".fits.fz")):
        raise HTTPException(400, f"not a FITS image (.fits or .fits.fz): {path!r}")
    root = ctx.home.root.resolve()
    full = (root / p).resolve()
    if not full.is_relative_to(root):  # a symbolic link pointing out of the home
        raise HTTPException(400, f"path leaves the archive home: {path!r}")
    if not full.is_file():
        raise HTTPException(404, f"no such file in the archive: {path!r}")
    rel = str(p)
    access.require_path(rel)
    return rel, full


def catalog_relpath(relpath: str) -> str | None:
    """The PSF-fit catalogue of an image (science ``psfcat``, reference ``refpsfcat``)."""
    for img, cat in (("_sciimg.fits", "_psfcat.fits"), ("_refimg.fits", "_refpsfcat.fits")):
        if relpath.endswith(img):
            return relpath[: -len(img)] + cat
    return None


def _related(ctx: ArchiveContext, relpath: str) -> list[dict[str, str]]:
    """The other FITS products of the same quadrant/exposure (mask, difference, ...)."""
    p = PurePosixPath(relpath)
    m = re.match(r"(.*_q\d_)", p.name) or re.match(r"(.*_c\d\d_)", p.name)
    if not m:
        return []
    folder = ctx.home.path(p.parent)
    out = []
    for f in sorted(folder.glob(m.group(1) + "*.fits*")):
        rel = str(p.parent / f.name)
        if rel != relpath and (f.name.endswith(".fits") or f.name.endswith(".fits.fz")):
            out.append({"name": f.name[len(m.group(1)):], "relpath": rel, "url": ibe_url(rel),
                        "restricted": ctx.policy.path_restricted(rel)})
    return out


# --------------------------------------------------------------------------- searches

#: The ``hdu`` parameter of the viewer routes (an HDU index of a FITS file).
_HDU = Query(None, ge=0, le=1000)
#: Largest pixel coordinate or section size a viewer route accepts (far above any image).
_MAX_PIXEL = 1_000_000


def _image_rows(ctx: ArchiveContext, access: Access, ra: float | None, dec: float | None,
                size_deg: float, tbl: str, filtercode: str | None, jd0: float | None,
                jd1: float | None, field: int | None) -> list[dict[str, Any]]:
    """Archived images matching the search form (those the caller may see), as table rows
    with links."""
    conds = [c for c in (access.image_condition(),) if c is not None]
    if filtercode:
        conds.append(ArchiveImage.filtercode == filtercode)
    if jd0 is not None:
        conds.append(ArchiveImage.obsjd >= jd0)
    if jd1 is not None:
        conds.append(ArchiveImage.obsjd < jd1)
    if field is not None:
        conds.append(ArchiveImage.field == field)
    if tbl == "cal":  # calibration images have no sky footprint: list them by date/filter
        ra = dec = None
    df = images_at(ctx.engine, tbl, ra, dec, width=size_deg,
                   where=and_(*conds) if conds else None, limit=MAX_ROWS)
    rows = []
    for r in df.to_dict("records"):
        rel = r["relpath"]
        view = f"/ui/image?path={rel}"
        if ra is not None:
            view += f"&ra={ra:.6f}&dec={dec:.6f}"
        rows.append({
            "name": PurePosixPath(rel).name, "relpath": rel, "tbl": r["tbl"],
            "obsdate": obsdate(r["obsjd"]) or "", "obsjd": _scalar(r["obsjd"]),
            "field": _scalar(r["field"]), "ccdid": _scalar(r["ccdid"]), "qid": _scalar(r["qid"]),
            "filtercode": r["filtercode"] or "", "seeing": _scalar(r["seeing"]),
            "maglimit": _scalar(r["maglimit"]), "nframes": _scalar(r["nframes"]),
            "caltype": r["caltype"] or "", "imgtypecode": r["imgtypecode"] or "",
            "dist_arcsec": _scalar(r["dist"] * 3600.0) if r["dist"] is not None else None,
            "view": view, "download": ibe_url(rel),
            "restricted": bool(r["restricted"]) or ctx.policy.path_restricted(rel),
        })
    return rows


def _object_rows(ctx: ArchiveContext, ra: float, dec: float, radius_arcsec: float,
                 fid: int | None = None, minobs: int | None = None) -> list[dict[str, Any]]:
    where = {"nobs": (minobs, None)} if minobs else None
    df = cone_search(ctx.engine, ra, dec, radius_arcsec, fid=fid, where=where, limit=MAX_ROWS)
    keys = ("oid", "ra", "dec", "dist_arcsec", "fid", "kind", "nobs", "ngoodobs", "medianmag",
            "magrms", "stetsonj", "period", "field", "ccdid", "qid")
    return [{k: _scalar(r[k]) for k in keys} | {"filtercode": _FILTERCODE.get(int(r["fid"]), "")}
            for r in df.to_dict("records")]


# --------------------------------------------------------------------------- pages


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def search_page(request: Request, ctx: Ctx, pos: str | None = None, size: str | None = None,
                tbl: str = "sci", filter: str = "", start: str = "", end: str = "",
                field: str = "", radius: str | None = None) -> HTMLResponse:
    """Search page: images (IBE index) and light-curve objects around a position."""
    form = {"pos": pos or "", "size": size or "1", "tbl": tbl, "filter": filter,
            "start": start, "end": end, "field": field, "radius": radius or "5"}
    searched = bool((pos or "").strip() or field.strip())
    ctxt: dict[str, Any] = {"form": form, "tables": IMAGE_TABLES, "filters": FILTERCODES,
                            "searched": searched, "images": [], "objects": None,
                            "center": None, "error": None}
    if searched:
        try:
            if tbl not in IMAGE_TABLES:
                raise ValueError(f"unknown table {tbl!r}: use one of {', '.join(IMAGE_TABLES)}")
            if filter and filter not in FILTERCODES:
                raise ValueError(f"unknown filter {filter!r}: use one of "
                                 f"{', '.join(FILTERCODES)}")
            ra = dec = None
            if (pos or "").strip():
                ra, dec = parse_position(pos or "")
            size_arcmin = _float("size", size, 1.0, 0.0, 600.0)
            radius_arcsec = _radius(radius, 5.0)
            ctxt["images"] = _image_rows(ctx, request_access(request), ra, dec,
                                         size_arcmin / 60.0, tbl, filter or None,
                                         _jd("start", start), _jd("end", end, end=True),
                                         _int("field", field))
            if ra is not None:
                ctxt["center"] = {"ra": ra, "dec": dec, "text": SkyCoord(
                    ra * u.deg, dec * u.deg).to_string("hmsdms", sep=":", precision=2)}
                ctxt["objects"] = _object_rows(ctx, ra, dec, radius_arcsec,
                                               _FID.get(filter) if filter else None)
        except ValueError as exc:
            ctxt["error"] = str(exc)
            return render(request, "index.html", status_code=400, **ctxt)
    return render(request, "index.html", **ctxt)


@router.get("/ui/image", response_class=HTMLResponse, include_in_schema=False)
def image_page(request: Request, ctx: Ctx, path: str | None = None,
               hdu: int | None = _HDU, ra: float | None = None,
               dec: float | None = None) -> HTMLResponse:
    """Image viewer: zoom/pan, stretch, catalogue overlay, pixel read-out."""
    rel, full = resolve_path(ctx, path, request_access(request))
    try:
        info = image_info(full, hdu)
    except RenderError as exc:
        raise HTTPException(400, str(exc)) from None
    target = None
    if ra is not None and dec is not None and info.has_wcs:
        with fits.open(full) as hdul:
            w = wcs_of(hdul[info.hdu].header)
        if w is not None:
            x, y = w.world_to_pixel(SkyCoord(ra * u.deg, dec * u.deg))
            target = {"ra": ra, "dec": dec, "x": float(x), "y": float(y)}
    cat = catalog_relpath(rel)
    view = {
        "path": rel, "hdu": info.hdu, "nx": info.nx, "ny": info.ny, "has_wcs": info.has_wcs,
        "catalog": cat is not None and ctx.home.path(cat).is_file(), "target": target,
    }
    return render(request, "image.html", filename=PurePosixPath(rel).name, relpath=rel, info=info,
                  view=view, download=ibe_url(rel), related=_related(ctx, rel),
                  stretches=list(STRETCHES), cmaps=CMAPS)


@router.get("/ui/lightcurves", response_class=HTMLResponse, include_in_schema=False)
def lightcurves_page(request: Request, ctx: Ctx, pos: str | None = None,
                     radius: str | None = None, filter: str = "",
                     minobs: str = "") -> HTMLResponse:
    """Cone search of light-curve objects."""
    form = {"pos": pos or "", "radius": radius or "10", "filter": filter, "minobs": minobs}
    ctxt: dict[str, Any] = {"form": form, "filters": FILTERCODES, "objects": None,
                            "error": None, "center": None}
    if (pos or "").strip():
        try:
            if filter and filter not in FILTERCODES:
                raise ValueError(f"unknown filter {filter!r}")
            ra, dec = parse_position(pos or "")
            ctxt["center"] = {"ra": ra, "dec": dec}
            ctxt["objects"] = _object_rows(ctx, ra, dec, _radius(radius, 10.0),
                                           _FID.get(filter), _int("minobs", minobs))
        except ValueError as exc:
            ctxt["error"] = str(exc)
            return render(request, "lightcurves.html", status_code=400, **ctxt)
    return render(request, "lightcurves.html", **ctxt)


def _get_object(ctx: ArchiveContext, oid: str | int | None) -> dict[str, Any]:
    try:
        oid_i = int(str(oid).strip()) if oid is not None else None
    except ValueError:
        oid_i = None
    if oid_i is None or not 0 <= oid_i <= INT64_MAX:
        raise HTTPException(400, f"oid must be an integer object id, got {oid!r}")
    obj = get_object(ctx.engine, oid_i)
    if obj is None:
        raise HTTPException(404, f"no light-curve object with oid {oid_i}")
    return obj


@router.get("/ui/lightcurve", response_class=HTMLResponse, include_in_schema=False)
def lightcurve_page(request: Request, ctx: Ctx, oid: str | None = None) -> HTMLResponse:
    """Light-curve viewer of one object: plot, periodogram, folding, metrics."""
    obj = _get_object(ctx, oid)
    metrics = [(label, _scalar(obj.get(k))) for k, label in METRICS]
    c = SkyCoord(obj["ra"] * u.deg, obj["dec"] * u.deg)
    return render(request, "lightcurve.html", obj=obj, metrics=metrics,
                  filtercode=_FILTERCODE.get(obj["fid"], str(obj["fid"])),
                  sexa=c.to_string("hmsdms", sep=":", precision=2))


@router.get("/ui/finder", include_in_schema=False)
def finder(request: Request, ctx: Ctx, ra: str | None = None, dec: str | None = None,
           size: str | None = None, format: str = "png") -> Response:
    """Finder chart (PNG or PDF) from the deepest archived image at a position; without a
    position, the form."""
    form = {"ra": ra or "", "dec": dec or "", "size": size or "5", "format": format}
    if not (ra or "").strip() and not (dec or "").strip():
        return render(request, "finder.html", form=form, error=None)
    try:
        if not (ra or "").strip() or not (dec or "").strip():
            raise ValueError("give both ra and dec")
        ra_d, dec_d = parse_coords(ra or "", dec or "")
        size_arcmin = _float("size", size, 5.0, 0.1, 60.0)
        if format not in ("png", "pdf"):
            raise ValueError(f"format must be png or pdf, got {format!r}")
    except ValueError as exc:
        return render(request, "finder.html", status_code=400, form=form, error=str(exc))
    best = best_image(ctx, ra_d, dec_d)
    if best is None:
        raise HTTPException(404, f"no archived image covers RA {ra_d:.5f} Dec {dec_d:+.5f}")
    rel, label = best
    try:
        data = finder_chart(ctx.home.path(rel), ra_d, dec_d, float(size_arcmin), format, label)
    except RenderError as exc:
        raise HTTPException(400, str(exc)) from None
    name = f"finder_{ra_d:.5f}_{dec_d:+.5f}.{format}"
    return Response(data, media_type="image/png" if format == "png" else "application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{name}"',
                             "X-Finder-Image": rel})


def best_image(ctx: ArchiveContext, ra: float, dec: float) -> tuple[str, str] | None:
    """The deepest archived image containing a position: a reference if one does, else the
    science image with the faintest limiting magnitude. Returns (relpath, chart label)."""
    for tbl in ("ref", "sci"):
        df = images_at(ctx.engine, tbl, ra, dec, 0.0, intersect="CENTER")
        if df.empty:
            continue
        df = df[[ctx.home.path(p).is_file() and not ctx.policy.path_restricted(p)
                 and not bool(r) for p, r in zip(df["relpath"], df["restricted"], strict=True)]]
        if df.empty:
            continue
        df = df.assign(_depth=df["maglimit"].fillna(-99.0)).sort_values(
            ["_depth", "dist"], ascending=[False, True], kind="stable")
        r = df.iloc[0]
        name = PurePosixPath(r["relpath"]).name
        what = (f"reference, {int(r['nframes'])} frames" if tbl == "ref" and
                pd.notna(r["nframes"]) else obsdate(r["obsjd"]) or "")
        depth = f", maglim {r['maglimit']:.2f}" if pd.notna(r["maglimit"]) else ""
        return str(r["relpath"]), f"{name}  ({r['filtercode'] or ''}, {what}{depth})"
    return None


@router.get("/ui/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    """Login form (posts to IRSA's ``/account/signon/login.do``); ``next`` is kept only when
    it is a path of this site (no open redirect)."""
    return render(request, "login.html", next=safe_next(next))


# --------------------------------------------------------------------------- JSON / data APIs


@router.get("/ui/api/images")
def api_images(request: Request, ctx: Ctx, pos: str | None = None,
               size: float = Query(1.0, ge=0, le=600), tbl: str = "sci", filter: str = "",
               start: str = "", end: str = "",
               field: int | None = Query(None, ge=0, le=INT64_MAX)) -> JSONResponse:
    """Images of a table around a position (size in arcmin), as JSON rows."""
    try:
        if tbl not in IMAGE_TABLES:
            raise ValueError(f"unknown table {tbl!r}: use one of {', '.join(IMAGE_TABLES)}")
        ra = dec = None
        if pos:
            ra, dec = parse_position(pos)
        rows = _image_rows(ctx, request_access(request), ra, dec, size / 60.0, tbl,
                           filter or None, _jd("start", start), _jd("end", end, end=True), field)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return JSONResponse({"ra": ra, "dec": dec, "n": len(rows), "images": rows})


@router.get("/ui/api/image.png")
def api_image_png(request: Request, ctx: Ctx, path: str | None = None,
                  hdu: int | None = _HDU, stretch: str = "zscale", lo: float | None = None,
                  hi: float | None = None, x0: int = Query(0, ge=0, le=_MAX_PIXEL),
                  y0: int = Query(0, ge=0, le=_MAX_PIXEL),
                  w: int | None = Query(None, ge=1, le=_MAX_PIXEL),
                  h: int | None = Query(None, ge=1, le=_MAX_PIXEL), scale: float = 1.0,
                  cmap: str = "gray") -> Response:
    """A section ``[x0, x0+w) x [y0, y0+h)`` (0-based pixels) of an image as a PNG of
    ``round(w*scale) x round(h*scale)`` pixels; display limits in the headers. The section
    and the output are both bounded before anything is allocated."""
    _, full = resolve_path(ctx, path, request_access(request))
    try:
        png, lim = render_png(full, hdu=hdu, x0=x0, y0=y0, w=w, h=h, scale=scale,
                              stretch=stretch, lo=lo, hi=hi, cmap=cmap)
    except RenderError as exc:
        raise HTTPException(400, str(exc)) from None
    return Response(png, media_type="image/png",
                    headers={"X-Display-Lo": f"{lim['lo']:.6g}", "X-Display-Hi": f"{lim['hi']:.6g}",
                             "Cache-Control": "private, max-age=300"})


@router.get("/ui/api/pix2world")
def api_pix2world(request: Request, ctx: Ctx, path: str | None = None, x: float = 0.0,
                  y: float = 0.0, hdu: int | None = _HDU) -> JSONResponse:
    """RA/Dec and value of the 0-based pixel (x, y)."""
    _, full = resolve_path(ctx, path, request_access(request))
    if not (math.isfinite(x) and math.isfinite(y)):
        raise HTTPException(400, f"x and y must be finite numbers, got {x}, {y}")
    try:
        return JSONResponse(pixel_info(full, x, y, hdu))
    except RenderError as exc:
        raise HTTPException(400, str(exc)) from None


@router.get("/ui/api/catalog")
def api_catalog(request: Request, ctx: Ctx, path: str | None = None) -> JSONResponse:
    """Sources of the PSF-fit catalogue of an image: pixel x, y (FITS 1-based, ``origin``),
    RA, Dec, mag and its error."""
    rel, _ = resolve_path(ctx, path, request_access(request))
    cat = catalog_relpath(rel)
    if cat is None or not ctx.home.path(cat).is_file():
        raise HTTPException(404, f"no PSF-fit catalogue for {rel!r}")
    data = fits.getdata(ctx.home.path(cat), 1)
    return JSONResponse({
        "path": cat, "origin": 1, "n": len(data), "x": _clean(data["xpos"]),
        "y": _clean(data["ypos"]), "ra": _clean(data["ra"]), "dec": _clean(data["dec"]),
        "mag": _clean(data["mag"]), "sigmag": _clean(data["sigmag"]),
    })


@router.get("/ui/api/header")
def api_header(request: Request, ctx: Ctx, path: str | None = None) -> PlainTextResponse:
    """The FITS headers of every HDU, as text."""
    rel, full = resolve_path(ctx, path, request_access(request))
    parts = []
    with fits.open(full, memmap=not rel.endswith(".fz")) as hdul:
        for i, h in enumerate(hdul):
            parts.append(f"# HDU {i} {h.name}\n" + h.header.tostring(sep="\n", endcard=True,
                                                                      padding=False).rstrip())
    return PlainTextResponse("\n\n".join(parts) + "\n")


def _curve(ctx: ArchiveContext, obj: dict[str, Any]) -> dict[str, Any]:
    """Detections and upper limits of one object (one band)."""
    oid = int(obj["oid"])
    pts = lightcurve_points(ctx.home, pd.DataFrame([obj]))[oid]
    pts = pts[np.argsort(pts["mjd"], kind="stable")]
    exps = read_exposures(ctx.home, obj["matchfile"], oid)
    # Every exposure of the matchfile covers the object's quadrant: where it was not detected
    # the exposure's limiting magnitude is an upper limit.
    miss = exps[~np.isin(exps["expid"], pts["expid"])]
    miss = miss[np.argsort(miss["obsmjd"], kind="stable")]
    mag = pts["mag"].astype(float)
    good = ((pts["catflags"] & BAD_CATFLAGS) == 0) & np.isfinite(mag)
    return {
        "oid": oid, "fid": int(obj["fid"]), "filtercode": _FILTERCODE.get(int(obj["fid"]), ""),
        "ra": obj["ra"], "dec": obj["dec"], "n": len(pts),
        "mjd": _clean(pts["mjd"]), "mag": _clean(mag), "magerr": _clean(pts["magerr"]),
        "catflags": _clean(pts["catflags"]), "good": good.tolist(), "expid": _clean(pts["expid"]),
        "limits": {"mjd": _clean(miss["obsmjd"]), "limitmag": _clean(miss["limitmag"]),
                   "expid": _clean(miss["expid"])},
    }


@router.get("/ui/api/lightcurve")
def api_lightcurve(ctx: Ctx, oid: str | None = None, bands: bool = True) -> JSONResponse:
    """Light curve of an object, plus (``bands``) its counterparts in the other filters
    within 1.5 arcsec: detections (mjd, mag, magerr, catflags, good) and upper limits."""
    obj = _get_object(ctx, oid)
    objs = [obj]
    if bands:
        near = cone_search(ctx.engine, obj["ra"], obj["dec"], 1.5)
        near = near[near["fid"] != obj["fid"]].drop_duplicates("fid")  # nearest per filter
        objs += [get_object(ctx.engine, int(o)) for o in near["oid"]]
    curves = [_curve(ctx, o) for o in objs if o is not None]
    return JSONResponse({"oid": int(obj["oid"]), "curves": curves,
                         "object": {k: _scalar(v) for k, v in obj.items()}})


@router.get("/ui/api/periodogram")
def api_periodogram(ctx: Ctx, oid: str | None = None,
                    fmin: float | None = Query(None, gt=0, description="cycles/day"),
                    fmax: float = Query(20.0, gt=0, le=500, description="cycles/day"),
                    samples_per_peak: int = Query(10, ge=1, le=100)) -> JSONResponse:
    """Lomb-Scargle periodogram of the object's good points (astropy ``LombScargle``).

    The best frequency is searched on the full grid; the returned curve is reduced to at most
    4000 points by keeping each bin's maximum, so no peak is lost on the plot.
    """
    from astropy.timeseries import LombScargle

    obj = _get_object(ctx, oid)
    c = _curve(ctx, obj)
    good = np.array(c["good"], bool)
    t = np.array(c["mjd"], float)[good]
    m = np.array(c["mag"], float)[good]
    e = np.array([np.nan if v is None else v for v in c["magerr"]], float)[good]
    out: dict[str, Any] = {"oid": c["oid"], "n": int(good.sum()), "frequency": [], "power": [],
                           "best_frequency": None, "best_period": None, "best_power": None,
                           "fap": None, "message": None}
    if good.sum() < 5 or np.ptp(t) <= 0:
        out["message"] = f"{int(good.sum())} good points: too few for a periodogram"
        return JSONResponse(out)
    base = float(np.ptp(t))
    lo = fmin if fmin is not None else 0.5 / base
    if not fmax > lo:
        raise HTTPException(400, f"fmax ({fmax}) must exceed fmin ({lo:.4g})")
    # astropy's grid holds samples_per_peak * baseline * (fmax - fmin) frequencies: bound it
    # before it is allocated (a 3-year baseline at 500 c/d would be tens of millions).
    nfreq = samples_per_peak * base * (fmax - lo)
    if nfreq > MAX_FREQUENCIES:
        raise HTTPException(400, f"the frequency grid would hold {nfreq:.3g} frequencies "
                                 f"(at most {MAX_FREQUENCIES}): lower fmax or "
                                 "samples_per_peak")
    ls = LombScargle(t, m, e if np.all(np.isfinite(e) & (e > 0)) else None)
    freq, power = ls.autopower(minimum_frequency=lo, maximum_frequency=fmax,
                               samples_per_peak=samples_per_peak)
    k = int(np.argmax(power))
    out.update(best_frequency=float(freq[k]), best_period=float(1.0 / freq[k]),
               best_power=float(power[k]),
               fap=float(ls.false_alarm_probability(power[k], minimum_frequency=lo,
                                                    maximum_frequency=fmax)))
    if freq.size > 4000:
        k = -(-freq.size // 4000)  # bin width so that at most 4000 bins remain
        padded = np.full(k * -(-freq.size // k), -np.inf)
        padded[:freq.size] = power
        idx = np.arange(0, padded.size, k) + np.argmax(padded.reshape(-1, k), axis=1)
        freq, power = freq[idx], power[idx]
    out.update(frequency=_clean(freq), power=_clean(power))
    return JSONResponse(out)


@router.get("/ui/api/lightcurve.png")
def api_lightcurve_png(ctx: Ctx, oid: str | None = None) -> Response:
    """The light-curve figure of :func:`zsds.lightcurves.plot.plot_lightcurves` as PNG."""
    from zsds.lightcurves.plot import Curve, plot_lightcurves

    obj = _get_object(ctx, oid)
    pts = lightcurve_points(ctx.home, pd.DataFrame([obj]))[int(obj["oid"])]
    curve = Curve(int(obj["oid"]), int(obj["fid"]), pts, obj.get("period"))
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_lightcurves([curve], Path(tmp) / "lc.png", title=f"oid {obj['oid']}")
        data = path.read_bytes()
    return Response(data, media_type="image/png", headers={
        "Content-Disposition": f'attachment; filename="lc_{obj["oid"]}.png"'})
