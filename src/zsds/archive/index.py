"""The archive's image index (``archive_images``) and the footprint search over it.

The index is derived data: :func:`update_index` fills it from the pipeline's own tables
(``quadrant_products``, ``references``, ``calib_products``, ``raw_files``) and one header read
per new image, so it can always be rebuilt, and re-running it adds only what is missing.

:func:`images_at` answers IBE's spatial predicates (``ARCHIVE_API.md`` 1.1) for a search box of
``width`` x ``height`` degrees centred on (ra, dec): an indexed declination band plus an RA
interval in SQL, then the exact test in numpy on the images' corner quadrilaterals, in the
gnomonic projection at the search centre (images are < 1 deg, so their edges are straight
lines there to far better than a pixel).
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from sqlalchemy import Engine, Select, and_, or_, select, text

from zsds.core.home import Home
from zsds.core.instrument import Filter, rcid_of
from zsds.core.rawformat import pointing_deg
from zsds.db.engine import session
from zsds.db.schema import (
    ArchiveImage,
    CalibProduct,
    Exposure,
    QuadrantProduct,
    RawFile,
    Reference,
)

#: The IBE tables and the ``tbl`` value of their rows (``deep`` references are ``ref``).
TABLES = {"sci": "sci", "raw": "raw", "ref": "ref", "deep": "ref", "cal": "cal"}
INTERSECTS = ("OVERLAPS", "COVERS", "ENCLOSED", "CENTER")
_CORNERS = ("ra1", "dec1", "ra2", "dec2", "ra3", "dec3", "ra4", "dec4")


def _filtercode(fid: int | None) -> str | None:
    if fid is None:
        return None
    try:
        return Filter.parse(int(fid)).code
    except (ValueError, KeyError):
        return None


def footprint(header: fits.Header) -> dict[str, float]:
    """Centre, corners (IRSA's order), CD matrix and the RA/Dec prefilter box of an image.

    Corners are the centres of the corner pixels (1,1), (NAXIS1,1), (NAXIS1,NAXIS2),
    (1,NAXIS2), as ``ra1``..``dec4``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        w = WCS(header)
    nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
    px = np.array([0, nx - 1, nx - 1, 0, (nx - 1) / 2], dtype=float)
    py = np.array([0, 0, ny - 1, ny - 1, (ny - 1) / 2], dtype=float)
    ra, dec = w.all_pix2world(px, py, 0)
    ra = np.mod(ra, 360.0)
    out: dict[str, float] = {"ra": float(ra[4]), "dec": float(dec[4])}
    for k in range(4):
        out[f"ra{k + 1}"], out[f"dec{k + 1}"] = float(ra[k]), float(dec[k])
    cd = w.pixel_scale_matrix
    out.update(crpix1=float(w.wcs.crpix[0]), crpix2=float(w.wcs.crpix[1]),
               crval1=float(w.wcs.crval[0]), crval2=float(w.wcs.crval[1]),
               cd11=float(cd[0, 0]), cd12=float(cd[0, 1]), cd21=float(cd[1, 0]),
               cd22=float(cd[1, 1]))
    out.update(_box(ra[:4], dec[:4]))
    return out


def _box(ra: np.ndarray, dec: np.ndarray) -> dict[str, float]:
    """Declination band and RA interval (``ramin`` > ``ramax`` when it wraps through 0)."""
    decmin, decmax = float(np.min(dec)), float(np.max(dec))
    if max(abs(decmin), abs(decmax)) > 88.0:  # may contain a pole: every RA
        return {"ramin": 0.0, "ramax": 360.0, "decmin": decmin, "decmax": decmax}
    r = np.sort(np.mod(ra, 360.0))
    gaps = np.diff(np.concatenate([r, [r[0] + 360.0]]))
    k = int(np.argmax(gaps))  # the largest gap is outside the image
    ramin, ramax = float(r[(k + 1) % len(r)]), float(r[k])
    return {"ramin": ramin, "ramax": ramax, "decmin": decmin, "decmax": decmax}


def _header(home: Home, relpath: str) -> fits.Header | None:
    path = home.path(relpath)
    try:
        return fits.getheader(path, 0)
    except (OSError, ValueError):
        return None


def _jd(h: fits.Header | None, key: str = "OBSJD") -> float | None:
    if h is None or key not in h:
        return None
    return float(h[key])


def _float(v: Any) -> float | None:
    """A finite float, or None (missing keyword, NaN median of no values)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _sci_rows(home: Home, engine: Engine, known: set[str]) -> list[dict[str, Any]]:
    with session(engine) as s:
        rows = s.execute(
            select(QuadrantProduct, Exposure).join(Exposure,
                                                   Exposure.expid == QuadrantProduct.expid)
            .where(QuadrantProduct.kind == "sciimg")
        ).all()
        out = []
        for qp, ex in rows:
            if qp.relpath in known:
                continue
            h = _header(home, qp.relpath)
            if h is None or "NAXIS1" not in h:
                continue
            # Real headers give TELRA/TELDEC as sexagesimal strings (TELRAD/TELDECD in deg).
            telra, teldec = pointing_deg(h)
            out.append({
                "tbl": "sci", "relpath": qp.relpath, "field": qp.field, "ccdid": qp.ccdid,
                "qid": qp.qid, "rcid": qp.rcid, "fid": qp.fid,
                "filtercode": _filtercode(qp.fid), "imgtypecode": "o", "pid": qp.pid,
                "expid": qp.expid, "nid": ex.nid, "filefracday": int(ex.filefracday),
                "obsjd": _jd(h) or ex.mjd + 2400000.5, "exptime": ex.exptime,
                "seeing": qp.seeing, "airmass": ex.airmass, "maglimit": qp.maglim,
                "magzp": qp.magzp, "infobits": int(qp.infobits or 0),
                "programid": ex.programid, "moonillf": _float(h.get("MOONILLF")),
                "telra": _float(ex.ra if telra is None else telra),
                "teldec": _float(ex.dec if teldec is None else teldec),
                **footprint(h),
            })
    return out


def _ccd_corners(quads: pd.DataFrame) -> dict[str, float]:
    """Footprint of a CCD from its quadrants: of each quadrant the corner farthest from the
    CCD centre, ordered around it (a CCD's quadrants tile it, so these are its corners)."""
    ra = quads[["ra1", "ra2", "ra3", "ra4"]].to_numpy(float)
    dec = quads[["dec1", "dec2", "dec3", "dec4"]].to_numpy(float)
    ra0 = float(np.degrees(np.angle(np.exp(1j * np.radians(ra)).mean()))) % 360.0
    dec0 = float(dec.mean())
    x, y, _ = gnomonic(ra, dec, ra0, dec0)
    far = np.argmax(np.hypot(x, y), axis=1)
    rows = np.arange(len(quads))
    cx, cy = x[rows, far], y[rows, far]
    order = np.argsort(np.arctan2(cy, cx))
    out: dict[str, float] = {"ra": ra0, "dec": dec0}
    for k, i in enumerate(order[:4]):
        out[f"ra{k + 1}"], out[f"dec{k + 1}"] = float(ra[i, far[i]]), float(dec[i, far[i]])
    out.update(_box(ra.ravel(), dec.ravel()))
    return out


def _raw_rows(engine: Engine, known: set[str], sci: pd.DataFrame) -> list[dict[str, Any]]:
    """Raw CCD files; a CCD's footprint is the union box of its calibrated quadrants (raw
    files carry no WCS), else the telescope pointing as a point."""
    with session(engine) as s:
        rows = s.execute(select(RawFile, Exposure)
                         .join(Exposure, Exposure.expid == RawFile.expid)).all()
        out = []
        for rf, ex in rows:
            if rf.relpath in known:
                continue
            imgtypecode = rf.filename.split("_")[-1].split(".")[0]
            rec: dict[str, Any] = {
                "tbl": "raw", "relpath": rf.relpath, "field": ex.field, "ccdid": rf.ccdid,
                "fid": ex.fid, "filtercode": _filtercode(ex.fid) if ex.field else
                rf.filename.split("_")[3], "imgtypecode": imgtypecode, "expid": ex.expid,
                "nid": ex.nid, "filefracday": int(ex.filefracday), "obsjd": ex.mjd + 2400000.5,
                "exptime": ex.exptime, "airmass": ex.airmass, "programid": ex.programid,
                "infobits": 0, "ra": ex.ra, "dec": ex.dec, "telra": ex.ra, "teldec": ex.dec,
            }
            quads = sci[(sci.expid == ex.expid) & (sci.ccdid == rf.ccdid)] if len(sci) else sci
            if len(quads):
                rec.update(_ccd_corners(quads))
                rec["seeing"] = float(quads.seeing.median())
                rec["moonillf"] = _float(quads.moonillf.median())  # one exposure: one value
            elif ex.field and ex.ra is not None and ex.dec is not None:
                rec.update(ramin=ex.ra, ramax=ex.ra, decmin=ex.dec, decmax=ex.dec)
            if not ex.field:  # calibration frames (field 0) point nowhere in particular
                rec["ra"] = rec["dec"] = None
            out.append(rec)
    return out


def _ref_rows(home: Home, engine: Engine, known: set[str]) -> list[dict[str, Any]]:
    with session(engine) as s:
        out = []
        for ref in s.scalars(select(Reference)):
            if ref.relpath in known:
                continue
            h = _header(home, ref.relpath)
            if h is None or "NAXIS1" not in h:
                continue
            out.append({
                "tbl": "ref", "relpath": ref.relpath, "field": ref.field, "ccdid": ref.ccdid,
                "qid": ref.qid, "rcid": rcid_of(ref.ccdid, ref.qid), "fid": ref.fid,
                "filtercode": _filtercode(ref.fid), "rfid": ref.rfid, "nframes": ref.nframes,
                # An imported IPAC reference may not give its input span (-999): unknown.
                "obsjd": ref.jdstart if ref.jdstart > 0 else None,
                "endjd": ref.jdend if ref.jdend > 0 else None, "seeing": ref.seeing,
                "maglimit": ref.maglim, "infobits": 0, **footprint(h),
            })
    return out


def _cal_rows(engine: Engine, known: set[str]) -> list[dict[str, Any]]:
    with session(engine) as s:
        out = []
        for cp in s.scalars(select(CalibProduct)):
            if cp.relpath in known:
                continue
            fid = Filter.parse(cp.filtercode).fid if cp.filtercode.startswith("z") else None
            out.append({
                "tbl": "cal", "relpath": cp.relpath, "ccdid": cp.ccdid, "qid": cp.qid,
                "rcid": rcid_of(cp.ccdid, cp.qid), "fid": fid, "filtercode": cp.filtercode,
                "caltype": cp.kind, "nightdate": int(f"{cp.night:%Y%m%d}"),
                "obsjd": cp.valid_from + 2400000.5, "endjd": cp.valid_to + 2400000.5,
                "nframes": int((cp.qa or {}).get("nframes", 0)) or None, "infobits": 0,
            })
    return out


def update_index(home: Home, engine: Engine) -> int:
    """Add every archived image missing from ``archive_images``; returns the rows added.

    Idempotent: rows are keyed by ``relpath``. Raw files are indexed after the science
    quadrants so that a CCD's footprint can be taken from its quadrants.
    """
    with session(engine) as s:
        known = set(s.scalars(select(ArchiveImage.relpath)))
    added = 0
    sci = _sci_rows(home, engine, known)
    refs = _ref_rows(home, engine, known)
    cal = _cal_rows(engine, known)
    with session(engine) as s:
        for rec in (*sci, *refs, *cal):
            s.add(ArchiveImage(**rec))
            added += 1
    # Raw footprints from every indexed science quadrant (old and new).
    with session(engine) as s:
        sci_all = pd.read_sql(
            select(ArchiveImage.expid, ArchiveImage.ccdid, ArchiveImage.seeing,
                   ArchiveImage.moonillf, *[getattr(ArchiveImage, c) for c in _CORNERS])
            .where(ArchiveImage.tbl == "sci"), s.connection())
    raw = _raw_rows(engine, known, sci_all)
    with session(engine) as s:
        for rec in raw:
            s.add(ArchiveImage(**rec))
            added += 1
    return added


def gnomonic(ra: Any, dec: Any, ra0: float, dec0: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tangent-plane (gnomonic) coordinates (deg) about (ra0, dec0), and the cosine of the
    angular distance from it: points with ``cosc <= 0`` lie on the far side, where x and y
    mean nothing. Great circles project to straight lines, so spherical polygons stay
    polygons."""
    a, d = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    a0, d0 = np.radians(ra0), np.radians(dec0)
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    safe = np.where(cosc > 1e-9, cosc, 1.0)
    x = np.cos(d) * np.sin(a - a0) / safe
    y = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / safe
    return np.degrees(x), np.degrees(y), cosc


def _inside(px: np.ndarray, py: np.ndarray, qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
    """Whether points (px, py) [n, m] lie in the convex quadrilaterals (qx, qy) [n, 4]
    (either orientation; on the edge counts as inside)."""
    cross = []
    for k in range(4):
        x0, y0 = qx[:, k, None], qy[:, k, None]
        x1, y1 = qx[:, (k + 1) % 4, None], qy[:, (k + 1) % 4, None]
        cross.append((x1 - x0) * (py - y0) - (y1 - y0) * (px - x0))
    c = np.stack(cross)
    return np.all(c >= -1e-12, axis=0) | np.all(c <= 1e-12, axis=0)


def _overlaps(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    """Separating-axis test of convex quadrilaterals a [n, 4] and b [n, 4]."""
    sep = np.zeros(len(ax), dtype=bool)
    for px, py in ((ax, ay), (bx, by)):
        for k in range(4):
            ex = px[:, (k + 1) % 4] - px[:, k]
            ey = py[:, (k + 1) % 4] - py[:, k]
            nx, ny = -ey, ex
            pa = ax * nx[:, None] + ay * ny[:, None]
            pb = bx * nx[:, None] + by * ny[:, None]
            sep |= (pa.max(axis=1) < pb.min(axis=1)) | (pb.max(axis=1) < pa.min(axis=1))
    return ~sep


def _ra_clause(ra: float, half: float) -> Any:
    """SQL condition: the image's RA interval meets [ra - half, ra + half]."""
    if half >= 180.0:
        return text("1=1")
    lo, hi = (ra - half) % 360.0, (ra + half) % 360.0
    col_lo, col_hi = ArchiveImage.ramin, ArchiveImage.ramax
    wraps_img = col_lo > col_hi

    def meets(a: float, b: float) -> Any:  # query interval [a, b] without wrap
        plain = and_(~wraps_img, col_lo <= b, col_hi >= a)
        wrapped = and_(wraps_img, or_(col_lo <= b, col_hi >= a))
        return or_(plain, wrapped)

    if lo <= hi:
        return meets(lo, hi)
    return or_(meets(lo, 360.0), meets(0.0, hi))


def _columns(stmt: Select, rows: Sequence[Any]) -> dict[str, np.ndarray]:
    """The rows of ``stmt`` as numpy columns typed from the columns' SQL types.

    Integers as int64 (float64 with NaN when a value is null), floats as float64 (NaN for
    null), anything else (text, timestamps) as objects. Built straight from the declared
    types, without pandas: inferring each column from its values took longer than the query
    itself, and this is the path of every cone search.
    """
    cols = list(stmt.selected_columns)
    values = list(zip(*rows, strict=True)) if rows else [()] * len(cols)
    out: dict[str, np.ndarray] = {}
    for col, vals in zip(cols, values, strict=True):
        try:
            kind = col.type.python_type
        except NotImplementedError:
            kind = object
        if kind in (int, float, bool):
            arr = np.array(vals, dtype=float)  # None -> NaN
            if kind is not float and not np.isnan(arr).any():
                arr = np.array(vals, dtype=np.int64 if kind is int else bool)
        else:
            arr = np.empty(len(vals), dtype=object)
            arr[:] = vals
        out[col.name] = arr
    return out


def image_rows(engine: Engine, tbl: str, ra: float | None = None, dec: float | None = None,
              width: float = 0.0, height: float | None = None, intersect: str = "OVERLAPS",
              where: Any = None, params: Mapping[str, Any] | None = None,
              limit: int | None = None) -> dict[str, np.ndarray]:
    """Archived images of one IBE table matching a search box and/or a WHERE clause.

    Parameters
    ----------
    engine : Engine
    tbl : str
        ``sci``, ``raw``, ``ref``, ``deep`` or ``cal``.
    ra, dec : float, optional
        Centre of the search box (deg, ICRS). Without them only ``where`` selects.
    width, height : float
        Full width along RA and height along Dec of the box (deg, tangent plane); 0 is a
        point. ``height`` defaults to ``width``.
    intersect : str
        ``OVERLAPS`` (any overlap, the default), ``COVERS`` (the image covers the whole box),
        ``ENCLOSED`` (the image lies inside the box) or ``CENTER`` (the image contains the
        box centre).
    where : SQL expression or str, optional
        Extra condition on ``archive_images`` columns (e.g. the output of
        :mod:`zsds.archive.where`), with bound ``params``.
    limit : int, optional
        Maximum rows (applied after the exact spatial test).

    Returns
    -------
    dict of numpy.ndarray
        ``archive_images`` columns (typed as :func:`_columns` says) plus ``dist`` (deg from
        the box centre to the image centre; NaN without a position), sorted by ``dist`` then
        ``obsjd``. :func:`images_at` gives the same as a DataFrame.
    """
    if tbl not in TABLES:
        raise ValueError(f"unknown image table {tbl!r}: use one of {', '.join(TABLES)}")
    intersect = intersect.upper()
    if intersect not in INTERSECTS:
        raise ValueError(f"unknown INTERSECT {intersect!r}: use one of {', '.join(INTERSECTS)}")
    height = width if height is None else height
    if width < 0 or height < 0:
        raise ValueError("SIZE must not be negative")
    stmt = select(ArchiveImage).where(ArchiveImage.tbl == TABLES[tbl])
    if where is not None:
        stmt = stmt.where(text(where) if isinstance(where, str) else where)
    spatial = ra is not None and dec is not None
    if spatial:
        if not (-90.0 <= float(dec) <= 90.0):
            raise ValueError(f"Dec {dec} is outside [-90, 90]")
        ra = float(ra) % 360.0
        pad = 0.5 * float(np.hypot(width, height)) + 1e-6
        stmt = stmt.where(ArchiveImage.decmax >= dec - pad, ArchiveImage.decmin <= dec + pad)
        cosd = np.cos(np.radians(min(89.9, abs(dec) + pad)))
        stmt = stmt.where(_ra_clause(ra, pad / max(cosd, 1e-3)))
    elif limit is not None:
        stmt = stmt.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(stmt, dict(params or {})).fetchall()
    if not spatial or not rows:
        out = _columns(stmt, rows)
        order = np.argsort(out["obsjd"], kind="stable")  # NaN last, as pandas sorts
        out = {k: v[order] for k, v in out.items()}
        out["dist"] = np.full(len(rows), np.nan)
        return out
    # The exact test on the corners, before any DataFrame is built: only the rows kept are.
    names = list(stmt.selected_columns.keys())
    take = [names.index(n) for n in ("ra1", "ra2", "ra3", "ra4", "ra", "dec1", "dec2", "dec3",
                                      "dec4", "dec", "obsjd")]
    num = np.array([[r[i] for i in take] for r in rows], dtype=float)  # None -> NaN
    cra, cdec, obsjd = num[:, 0:5], num[:, 5:10], num[:, 10]
    has_fp = ~np.isnan(cra[:, 0])  # images without a footprint (e.g. bias frames)
    x, y, cosc = gnomonic(cra, cdec, ra, dec)
    ok = has_fp & np.all(cosc > 0.05, axis=1)  # within ~87 deg: the projection is defined
    qx, qy = x[:, :4], y[:, :4]
    hw, hh = width / 2.0, height / 2.0
    n = len(rows)
    bx = np.tile(np.array([-hw, hw, hw, -hw]), (n, 1))
    by = np.tile(np.array([-hh, -hh, hh, hh]), (n, 1))
    if intersect == "CENTER" or (width == 0 and height == 0 and intersect != "ENCLOSED"):
        match = _inside(np.zeros((n, 1)), np.zeros((n, 1)), qx, qy)[:, 0]
    elif intersect == "COVERS":
        match = _inside(bx, by, qx, qy).all(axis=1)
    elif intersect == "ENCLOSED":
        match = ((np.abs(qx) <= hw + 1e-12) & (np.abs(qy) <= hh + 1e-12)).all(axis=1)
    else:
        match = _overlaps(qx, qy, bx, by)
    keep = np.flatnonzero(ok & match)
    dist = np.degrees(np.arccos(np.clip(cosc[keep, 4], -1.0, 1.0)))
    order = keep[np.lexsort((obsjd[keep], dist))][:limit]  # by dist, then obsjd (stable)
    out = _columns(stmt, [rows[i] for i in order])
    out["dist"] = np.degrees(np.arccos(np.clip(cosc[order, 4], -1.0, 1.0)))
    return out


def images_at(engine: Engine, tbl: str, ra: float | None = None, dec: float | None = None,
              width: float = 0.0, height: float | None = None, intersect: str = "OVERLAPS",
              where: Any = None, params: Mapping[str, Any] | None = None,
              limit: int | None = None) -> pd.DataFrame:
    """:func:`image_rows` as a DataFrame (timestamps as ``datetime64``)."""
    df = pd.DataFrame(image_rows(engine, tbl, ra, dec, width, height, intersect, where,
                                 params, limit), copy=False)
    for col in ArchiveImage.__table__.columns:
        if col.name in df and col.type.python_type is dt.datetime:
            df[col.name] = pd.to_datetime(df[col.name])
    return df


def obsdate(jd: float | None) -> str | None:
    """IRSA's ``obsdate`` text of a JD: ``YYYY-MM-DD HH:MM:SS.SSS+00``."""
    if jd is None or not np.isfinite(jd):
        return None
    ms = round((float(jd) - 2451545.0) * 86_400_000.0)  # to the millisecond, rounded
    t = dt.datetime(2000, 1, 1, 12, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
    return f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d}+00"
