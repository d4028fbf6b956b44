"""Operations and solar-system pages of the web UI, with their JSON APIs.

* **Moving-object search** (IRSA's MOST): ``/ui/moving`` and ``/api/moving/search`` find the
  archived science images that contain an asteroid, from its orbit in ``refcat/MPCORB.DAT``
  (two-body ephemerides from Palomar, I41, with light time; :mod:`zsds.solar`) or from an
  ephemeris the user gives (``jd,ra,dec`` rows, linearly interpolated on the sphere). Each
  match gives the predicted position and pixel, an IBE cutout and a viewer link; the
  pipeline's detections and linked tracks of the object are listed too.
* **Coverage and QA**: ``/ui/coverage`` shows a night's footprints
  (``/ui/api/coverage.png``), QA series and histograms drawn by ``static/ops.js`` from
  ``/ui/api/qa``, and the night summaries; ``/ui/api/nights`` lists the nights.
* **Alert browser**: ``/ui/alerts`` (``/ui/api/alerts`` as JSON) and ``/ui/alert?candid=``,
  with the packets' cutouts as PNGs (``/ui/api/cutout.png``). Alert packets are depot
  content (``alerts/*`` in :attr:`ArchiveConfig.restricted_patterns`): an alert whose packet
  path is restricted is shown to logged-in users only, and the ``alerts`` rows themselves are
  depot content (:attr:`ArchiveConfig.restricted_tables`), so with the default configuration
  anonymous users see none (and a login link). Remove ``alerts``/``candidates`` from the
  tables and ``alerts/*`` from the patterns to publish the stream, as ZTF does for
  programid 1.
* **Depot** (login required): ``/ui/depot`` (``/ui/api/depot``) lists the real-time products
  -- streaks, moving-object tracks and MPC/ADES reports, alert archives, QA logs -- with links
  to ``/depot/<home-relative path>``.

What an anonymous visitor gets goes through the archive's authorization policy
(:class:`zsds.archive.policy.Access`): the moving-object search lists the images of an
object for anyone, but its detections (candidates) and tracks only for logged-in users. The
search runs off the event loop (its ephemerides and footprint tests take seconds on a large
upload), on an ephemeris of at most :data:`~zsds.archive.limits.MAX_EPHEMERIS_ROWS` rows in a
body of at most :attr:`ArchiveConfig.max_body_bytes` bytes.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import math
import os
import re
import warnings
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd
from astropy.table import Table
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import Select, and_, false, func, or_, select
from starlette.concurrency import run_in_threadpool

from zsds.archive import params
from zsds.archive.auth import request_access
from zsds.archive.context import ArchiveContext, Ctx
from zsds.archive.index import images_at
from zsds.archive.limits import INT64_MAX, MAX_EPHEMERIS_ROWS
from zsds.archive.params import MJD_JD
from zsds.archive.policy import Access
from zsds.archive.tables import FormatError, parse_format, table_response
from zsds.archive.templating import render
from zsds.core.naming import NID_EPOCH, nid_of, parse_night
from zsds.db.schema import (
    AlertRecord,
    ArchiveImage,
    Candidate,
    DiffImageRecord,
    NightSummaryRecord,
    QAMetric,
    SSTrack,
    SSTrackMember,
    StreakRecord,
)

__all__ = ["parse_ephemeris", "parse_jd", "router", "search_moving", "svg_plot"]

router = APIRouter(tags=["operations"])


#: Colours of the ZTF filters (matplotlib tab10 green, red, orange).
FILTER_COLOURS = {"zg": "#2ca02c", "zr": "#d62728", "zi": "#ff7f0e"}
FILTER_CODES = {1: "zg", 2: "zr", 3: "zi"}
#: QA quantities of science images shown by the dashboard (archive_images columns).
QA_COLUMNS = ("seeing", "maglimit", "magzp", "airmass")
#: How far (days) beyond its first and last rows an ephemeris is extrapolated: one minute, so
#: that rows given at the exposures' mid-times (rounded) still cover them.
EPHEM_MARGIN = 60.0 / 86400.0
CUTOUT_KINDS = {"science": "cutoutScience", "template": "cutoutTemplate",
                "difference": "cutoutDifference"}


def _bad(message: str, status: int = 400) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


def _too_many_rows() -> HTTPException:
    return _bad(f"the ephemeris has more than {MAX_EPHEMERIS_ROWS} rows: split the interval",
                413)


def _finite(v: Any) -> Any:
    """JSON-safe scalar: numpy types to Python, NaN/inf to None."""
    if v is None:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dt.date | dt.datetime):
        return v.isoformat()
    return v


def _records(df: pd.DataFrame, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    cols = [c for c in (columns or df.columns) if c in df.columns]
    return [{c: _finite(v) for c, v in zip(cols, row, strict=True)}
            for row in df[cols].itertuples(index=False, name=None)]


def _product_path(relpath: str) -> str:
    """IBE data path of a home-relative product path (``products/`` dropped)."""
    return relpath[len("products/"):] if relpath.startswith("products/") else relpath


def _mean_ra(ra: np.ndarray) -> float:
    """Circular mean of right ascensions in [0, 360) (0 for none)."""
    ra = np.asarray(ra, float).ravel()
    ra = ra[np.isfinite(ra)]
    if not ra.size:
        return 0.0
    return float(np.degrees(np.angle(np.exp(1j * np.radians(ra)).mean()))) % 360.0


def _night_of_nid(nid: int) -> dt.date:
    return NID_EPOCH + dt.timedelta(days=int(nid))


# ----------------------------------------------------------------------------------------
# Small SVG plots (server-side, no JavaScript needed)
# ----------------------------------------------------------------------------------------


def svg_plot(layers: Sequence[dict[str, Any]], *, width: int = 520, height: int = 320,
             xlabel: str = "", ylabel: str = "", invert_x: bool = False,
             invert_y: bool = False, title: str = "") -> str:
    """A small scatter/line plot as inline SVG markup.

    Parameters
    ----------
    layers : sequence of dict
        Each with ``x``, ``y`` (arrays), optional ``kind`` (``points``, ``line`` or
        ``limits``: downward triangles), ``color``, ``label``, ``r`` (marker radius, px),
        ``yerr`` (error bars) and ``open`` (hollow markers).
    width, height : int
        Size in pixels.
    xlabel, ylabel, title : str
    invert_x, invert_y : bool
        Reverse an axis (RA increasing to the left; magnitudes brighter upwards).

    Returns
    -------
    str
        ``<svg>`` markup (labels escaped).
    """
    from matplotlib.ticker import MaxNLocator

    ml, mr, mt, mb = 62, 12, 22 if title else 10, 40
    xs = [np.asarray(lay["x"], float) for lay in layers]
    ys = [np.asarray(lay["y"], float) + np.nan_to_num(np.asarray(lay.get("yerr", 0.0), float))
          * s for lay in layers for s in (-1, 1)]
    allx = np.concatenate([a[np.isfinite(a)] for a in xs] or [np.array([])])
    ally = np.concatenate([a[np.isfinite(a)] for a in ys] or [np.array([])])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" font-size="11" '
             f'font-family="sans-serif">',
             f'<rect x="{ml}" y="{mt}" width="{width - ml - mr}" height="{height - mt - mb}" '
             'fill="none" stroke="#56627d"/>']
    if title:
        parts.append(f'<text x="{width / 2}" y="14" text-anchor="middle" fill="#cfd6e4">'
                     f'{escape(title)}</text>')
    if allx.size == 0 or ally.size == 0:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
                     'fill="#9aa3b5">no data</text></svg>')
        return "".join(parts)

    def limits(a: np.ndarray) -> tuple[float, float]:
        lo, hi = float(a.min()), float(a.max())
        pad = 0.06 * (hi - lo) if hi > lo else max(abs(lo) * 1e-3, 1e-3)
        return lo - pad, hi + pad

    (x0, x1), (y0, y1) = limits(allx), limits(ally)
    pw, ph = width - ml - mr, height - mt - mb

    def px(v: np.ndarray) -> np.ndarray:
        f = (np.asarray(v, float) - x0) / (x1 - x0)
        return ml + pw * (1.0 - f if invert_x else f)

    def py(v: np.ndarray) -> np.ndarray:
        f = (np.asarray(v, float) - y0) / (y1 - y0)
        return mt + ph * (f if invert_y else 1.0 - f)

    def ticks(lo: float, hi: float) -> list[tuple[float, str]]:
        vals = MaxNLocator(5).tick_values(lo, hi)
        step = float(np.min(np.diff(vals))) if len(vals) > 1 else 1.0
        decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 0
        return [(float(t), f"{t:.{decimals}f}") for t in vals if lo <= t <= hi]

    for t, label in ticks(x0, x1):
        xp = float(px(t))
        parts.append(f'<line x1="{xp:.1f}" x2="{xp:.1f}" y1="{mt + ph}" y2="{mt + ph + 4}" '
                     f'stroke="#56627d"/><text x="{xp:.1f}" y="{mt + ph + 15}" '
                     f'text-anchor="middle" fill="#9aa3b5">{label}</text>')
    for t, label in ticks(y0, y1):
        yp = float(py(t))
        parts.append(f'<line x1="{ml - 4}" x2="{ml}" y1="{yp:.1f}" y2="{yp:.1f}" '
                     f'stroke="#56627d"/><text x="{ml - 6}" y="{yp + 4:.1f}" '
                     f'text-anchor="end" fill="#9aa3b5">{label}</text>')
    parts.append(f'<text x="{ml + pw / 2}" y="{height - 6}" text-anchor="middle" '
                 f'fill="#cfd6e4">{escape(xlabel)}</text>')
    parts.append(f'<text transform="translate(14,{mt + ph / 2}) rotate(-90)" '
                 f'text-anchor="middle" fill="#cfd6e4">{escape(ylabel)}</text>')
    legend = []
    for lay in layers:
        x, y = np.asarray(lay["x"], float), np.asarray(lay["y"], float)
        ok = np.isfinite(x) & np.isfinite(y)
        color = escape(str(lay.get("color", "#5fb3ff")))
        kind = lay.get("kind", "points")
        r = float(lay.get("r", 3.0))
        xp, yp = px(x[ok]), py(y[ok])
        if kind == "line" and ok.sum() > 1:
            pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(xp, yp, strict=True))
            parts.append(f'<polyline class="track" points="{pts}" fill="none" '
                         f'stroke="{color}" stroke-width="1.5"/>')
        elif kind == "limits":
            for a, b in zip(xp, yp, strict=True):
                parts.append(f'<path class="limit" d="M{a - r:.1f},{b - r:.1f}H{a + r:.1f}'
                             f'L{a:.1f},{b + r:.1f}Z" fill="none" stroke="{color}"/>')
        else:
            if "yerr" in lay:
                err = np.nan_to_num(np.asarray(lay["yerr"], float)[ok])
                for a, b0, b1 in zip(xp, py(y[ok] - err), py(y[ok] + err), strict=True):
                    parts.append(f'<line x1="{a:.1f}" x2="{a:.1f}" y1="{b0:.1f}" '
                                 f'y2="{b1:.1f}" stroke="{color}"/>')
            fill = "none" if lay.get("open") else color
            for a, b in zip(xp, yp, strict=True):
                parts.append(f'<circle class="pt" cx="{a:.1f}" cy="{b:.1f}" r="{r}" '
                             f'fill="{fill}" stroke="{color}"/>')
        if lay.get("label"):
            legend.append((str(lay["label"]), color))
    for k, (label, color) in enumerate(legend):
        y = mt + 12 + 14 * k
        parts.append(f'<rect x="{ml + 8}" y="{y - 8}" width="9" height="9" fill="{color}"/>'
                     f'<text x="{ml + 22}" y="{y}" fill="#cfd6e4">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ----------------------------------------------------------------------------------------
# Moving-object search
# ----------------------------------------------------------------------------------------



def parse_jd(value: str | float | None, name: str, *, end: bool = False) -> float | None:
    """:func:`zsds.archive.params.parse_jd`, with a 400 naming the parameter on bad input."""
    try:
        return params.parse_jd(value, name, end=end)
    except ValueError as exc:
        raise _bad(str(exc)) from None


def parse_ephemeris(data: str | bytes | list | dict) -> pd.DataFrame:
    """An ephemeris (``jd``, ``ra``, ``dec`` rows) from JSON or CSV-like text.

    Accepted: a JSON list of ``[jd, ra, dec]`` rows or of objects with ``jd`` (or ``mjd``),
    ``ra``, ``dec``; a JSON object of columns, or one holding such a list under
    ``ephemeris``; or text rows separated by newlines or ``;`` with fields separated by commas
    or blanks, optionally after a header line naming the columns (``#`` starts a comment).
    Times below 2400000 are MJD.

    Returns
    -------
    pandas.DataFrame
        ``jd``, ``ra``, ``dec`` sorted by ``jd``.

    Raises
    ------
    HTTPException
        400 explaining what is wrong.
    """
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    if isinstance(data, str):
        text = data.strip()
        if not text:
            raise _bad("ephemeris is empty: give jd,ra,dec rows")
        if text[0] in "[{":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise _bad(f"ephemeris is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        data = data.get("ephemeris", data)
    if isinstance(data, dict):
        if any(isinstance(v, list) and len(v) > MAX_EPHEMERIS_ROWS for v in data.values()):
            raise _too_many_rows()
        try:
            df = pd.DataFrame(data)
        except (TypeError, ValueError) as exc:
            raise _bad(f"ephemeris columns cannot be read: {exc}") from None
    elif isinstance(data, list):
        if len(data) > MAX_EPHEMERIS_ROWS:
            raise _too_many_rows()
        if data and isinstance(data[0], dict):
            df = pd.DataFrame(data)
        else:
            try:
                arr = np.asarray(data, dtype=float)
            except (TypeError, ValueError):
                raise _bad("ephemeris rows must be [jd, ra, dec] numbers") from None
            if arr.ndim != 2 or arr.shape[1] < 3:
                raise _bad("ephemeris rows must be [jd, ra, dec] numbers")
            df = pd.DataFrame(arr[:, :3], columns=["jd", "ra", "dec"])
    else:
        rows = [ln.split("#")[0].strip() for ln in re.split(r"[\n;]", str(data))]
        rows = [r for r in rows if r]
        if len(rows) > MAX_EPHEMERIS_ROWS + 1:  # a header line may come first
            raise _too_many_rows()
        split = [re.split(r"[,\s]+", r) for r in rows]
        header = None
        if split and any(re.search(r"[a-zA-Z_]", f) for f in split[0]):
            header, split = [f.lower() for f in split[0]], split[1:]
        try:
            arr = np.array([[float(f) for f in r[:3 if header is None else len(header)]]
                            for r in split], dtype=float)
        except ValueError as exc:
            raise _bad(f"ephemeris: cannot read a number ({exc})") from None
        if arr.ndim != 2 or arr.shape[1] < 3:
            raise _bad("ephemeris rows need three fields: jd, ra, dec")
        df = pd.DataFrame(arr, columns=header or ["jd", "ra", "dec"])
    df.columns = [str(c).strip().lower() for c in df.columns]
    if "jd" not in df and "mjd" in df:
        df["jd"] = pd.to_numeric(df["mjd"], errors="coerce") + MJD_JD
    missing = [c for c in ("jd", "ra", "dec") if c not in df]
    if missing:
        raise _bad(f"ephemeris lacks column(s) {', '.join(missing)}")
    out = pd.DataFrame({c: pd.to_numeric(df[c], errors="coerce") for c in ("jd", "ra", "dec")})
    if out.isna().any().any():
        raise _bad("ephemeris holds missing or non-numeric values")
    if len(out) < 2:
        raise _bad("ephemeris needs at least two rows (positions are interpolated in time)")
    if not out["dec"].between(-90, 90).all():
        raise _bad("ephemeris dec must lie in [-90, 90] deg")
    out["jd"] = np.where(out["jd"] < MJD_JD, out["jd"] + MJD_JD, out["jd"])
    out["ra"] = np.mod(out["ra"], 360.0)
    out = out.sort_values("jd", kind="stable").drop_duplicates("jd").reset_index(drop=True)
    if len(out) < 2:
        raise _bad("ephemeris needs at least two distinct times")
    return out


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    a, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)


def _radec(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    return (np.mod(np.degrees(np.arctan2(u[..., 1], u[..., 0])), 360.0),
            np.degrees(np.arcsin(np.clip(u[..., 2], -1.0, 1.0))))


def _sep_arcsec(ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray
                ) -> np.ndarray:
    chord = np.linalg.norm(_unit(ra1, dec1) - _unit(ra2, dec2), axis=-1)
    return np.degrees(2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))) * 3600.0


def _interpolate(ephem: pd.DataFrame, jd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions at ``jd`` from an ephemeris: unit vectors interpolated linearly between rows
    (extrapolated from the end rows just outside, see :data:`EPHEM_MARGIN`)."""
    u = _unit(ephem["ra"].to_numpy(float), ephem["dec"].to_numpy(float))
    t = ephem["jd"].to_numpy(float)
    jd = np.asarray(jd, float)
    k = np.clip(np.searchsorted(t, jd) - 1, 0, len(t) - 2)
    f = (jd - t[k]) / (t[k + 1] - t[k])
    return _radec(u[k] + f[:, None] * (u[k + 1] - u[k]))


def _inside_footprints(df: pd.DataFrame, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Whether each image's corner quadrilateral contains its point (one point per image).

    A point is inside a convex spherical polygon when it lies on the same side of every edge's
    great circle: the signs of ``(v_k x v_k+1) . p`` agree (either orientation).
    """
    corners = np.stack([_unit(df[f"ra{k}"].to_numpy(float), df[f"dec{k}"].to_numpy(float))
                        for k in range(1, 5)], axis=1)  # (n, 4, 3)
    p = _unit(ra, dec)
    side = np.einsum("nkj,nj->nk", np.cross(corners, np.roll(corners, -1, axis=1)), p)
    near = np.einsum("nkj,nj->nk", corners, p).max(axis=1) > 0.9  # same hemisphere, < 25 deg
    return near & (np.all(side >= -1e-12, axis=1) | np.all(side <= 1e-12, axis=1))


def _pixels(ctx: ArchiveContext, rows: pd.DataFrame, ra: np.ndarray, dec: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """FITS (1-based) pixel positions of (ra, dec) on each image, from the image's header WCS
    (distortion included), or its linear WCS in the index when the file cannot be read."""
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    x = np.full(len(rows), np.nan)
    y = np.full(len(rows), np.nan)
    for k, rec in enumerate(rows.itertuples(index=False)):
        try:
            header = fits.getheader(ctx.home.path(rec.relpath), 0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                w = WCS(header)
        except (OSError, ValueError):
            if rec.crval1 is None or not np.isfinite(rec.crval1):
                continue
            w = WCS(naxis=2)
            w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
            w.wcs.crpix = [rec.crpix1, rec.crpix2]
            w.wcs.crval = [rec.crval1, rec.crval2]
            w.wcs.cd = [[rec.cd11, rec.cd12], [rec.cd21, rec.cd22]]
        px, py = w.all_world2pix([ra[k]], [dec[k]], 1)
        x[k], y[k] = float(px[0]), float(py[0])
    return x, y


def _find_orbit(ctx: ArchiveContext, designation: str):
    """The MPCORB orbit of a designation (packed, as in columns 1-7 of ``MPCORB.DAT``)."""
    from zsds.moving.run import known_orbits, mpcorb_path

    orbits = known_orbits(ctx.home)
    if orbits is None:
        raise _bad(f"no orbit file {mpcorb_path(ctx.home).relative_to(ctx.home.root)} in "
                   "this archive", 404)
    want = designation.strip()
    hit = np.flatnonzero(orbits.designation == want)
    if hit.size == 0:
        hit = np.flatnonzero(np.char.lower(orbits.designation) == want.lower())
    if hit.size == 0:
        raise _bad(f"designation {want!r} is not in MPCORB.DAT (use the packed designation "
                   "of columns 1-7)", 404)
    return orbits[hit[:1]]


def _detections(ctx: ArchiveContext, stmt: Select) -> pd.DataFrame:
    with ctx.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    cols = ["candid", "jd", "ra", "dec", "magpsf", "sigmapsf", "rb", "fid", "pid", "object_id",
            "isdiffpos", "ssnamenr", "record"]
    df = pd.DataFrame(rows, columns=cols)
    df["ssdistnr"] = [(r or {}).get("ssdistnr") for r in df["record"]]
    df["filtercode"] = df["fid"].map(FILTER_CODES)
    return df.drop(columns="record")


def _alerted(candids: Sequence[int], ctx: ArchiveContext) -> set[int]:
    """The candids among ``candids`` that were sent as alerts."""
    if not candids:
        return set()
    with ctx.engine.connect() as conn:
        return set(conn.scalars(select(AlertRecord.candid)
                                .where(AlertRecord.candid.in_([int(c) for c in candids]))))


def _candidate_select() -> Select:
    c = Candidate
    return select(c.candid, c.jd, c.ra, c.dec, c.magpsf, c.sigmapsf, c.rb, c.fid, c.pid,
                  c.object_id, c.isdiffpos, c.ssnamenr, c.record)


_TRACK_COLS = ("track_id", "trksub", "designation", "window_end", "ndet", "nnights", "jdstart",
               "jdend", "ra", "dec", "rms", "orbit_ok", "a", "e", "inc", "H")


def _tracks(ctx: ArchiveContext, designation: str | None, candids: Sequence[int]
            ) -> list[dict[str, Any]]:
    """Linked tracks of an object: by designation, or holding any of the candids."""
    members = (select(SSTrackMember.track_id, func.count().label("nmembers"))
               .group_by(SSTrackMember.track_id).subquery())
    stmt = (select(*[getattr(SSTrack, c) for c in _TRACK_COLS],
                   func.coalesce(members.c.nmembers, 0))
            .outerjoin(members, members.c.track_id == SSTrack.track_id))
    conds = []
    if designation:
        conds.append(SSTrack.designation == designation)
    if candids:
        sub = select(SSTrackMember.track_id).where(
            SSTrackMember.candid.in_([int(c) for c in candids]))
        conds.append(SSTrack.track_id.in_(sub))
    if not conds:
        return []
    with ctx.engine.connect() as conn:
        rows = conn.execute(stmt.where(or_(*conds)).order_by(SSTrack.jdstart)).all()
    return [{k: _finite(v) for k, v in zip((*_TRACK_COLS, "nmembers"), r, strict=True)}
            for r in rows]


def search_moving(ctx: ArchiveContext, *, designation: str | None = None,
                  ephemeris: pd.DataFrame | None = None, jd_start: float | None = None,
                  jd_end: float | None = None, obscode: str = "I41", radius: float = 5.0,
                  access: Access | None = None) -> dict[str, Any]:
    """Archived science images containing a moving object, and its detections and tracks.

    Parameters
    ----------
    ctx : ArchiveContext
    designation : str, optional
        Packed designation of an object of ``refcat/MPCORB.DAT``.
    ephemeris : DataFrame, optional
        ``jd``, ``ra``, ``dec`` rows (instead of a designation); images whose mid-exposure
        lies more than :data:`EPHEM_MARGIN` outside its time span are not searched.
    jd_start, jd_end : float, optional
        Time range (JD) of the exposures' starts.
    obscode : str
        MPC observatory code of the ephemerides (I41: Palomar).
    radius : float
        With an ephemeris, how close (arcsec) a candidate of a matched image must be to the
        predicted position to be listed as a detection.
    access : Access, optional
        What the caller may read (:mod:`zsds.archive.policy`): restricted images, the
        candidates (detections), tracks and alerts are left out for an anonymous caller and
        named in ``withheld``. None: everything (a trusted, in-process caller).

    Returns
    -------
    dict
        ``query``, ``nsearched`` (images in the time range), ``images`` (matches in time
        order, with ``ra_pred``, ``dec_pred``, 1-based pixel ``x``, ``y`` and links),
        ``detections`` (with ``sep`` to the prediction, arcsec), ``tracks``, ``path``
        (positions along the searched interval, for plots) and ``withheld`` (what the
        caller needs a login for).
    """
    def may(table: str) -> bool:
        return access is None or access.may_read_table(table)

    if (designation is None) == (ephemeris is None):
        raise _bad("give either designation= or ephemeris=")
    if jd_start is not None and jd_end is not None and jd_end < jd_start:
        raise _bad(f"end ({jd_end}) is before start ({jd_start})")
    orbit = _find_orbit(ctx, designation) if designation is not None else None
    lo, hi = jd_start, jd_end
    if ephemeris is not None:
        e0 = float(ephemeris["jd"].iloc[0]) - EPHEM_MARGIN
        e1 = float(ephemeris["jd"].iloc[-1]) + EPHEM_MARGIN
        # exposure starts precede their mid-times by up to a few minutes
        lo = e0 - 600 / 86400 if lo is None else max(lo, e0 - 600 / 86400)
        hi = e1 if hi is None else min(hi, e1)
    conds = [ArchiveImage.obsjd.isnot(None), ArchiveImage.ra1.isnot(None)]
    if lo is not None:
        conds.append(ArchiveImage.obsjd >= lo)
    if hi is not None:
        conds.append(ArchiveImage.obsjd <= hi)
    visible = access.image_condition() if access is not None else None
    if visible is not None:
        conds.append(visible)
    imgs = images_at(ctx.engine, "sci", where=and_(*conds), limit=ctx.config.max_rows)
    imgs = imgs.sort_values(["obsjd", "pid"], kind="stable").reset_index(drop=True)
    mid = imgs["obsjd"].to_numpy(float) + imgs["exptime"].fillna(30.0).to_numpy(float) / 172800
    extra: dict[str, np.ndarray] = {}
    if orbit is not None:
        from zsds.solar.ephemeris import ephemerides_grid

        eph = ephemerides_grid(orbit, mid - MJD_JD, obscode) if len(mid) else None
        ra = eph["ra"].to_numpy(float) if eph is not None else np.array([])
        dec = eph["dec"].to_numpy(float) if eph is not None else np.array([])
        if eph is not None:
            extra = {"V": eph["V"].to_numpy(float), "delta": eph["delta"].to_numpy(float),
                     "rate": np.hypot(eph["ra_rate"], eph["dec_rate"]).to_numpy(float) * 150.0}
    else:
        keep = ((mid >= ephemeris["jd"].iloc[0] - EPHEM_MARGIN)
                & (mid <= ephemeris["jd"].iloc[-1] + EPHEM_MARGIN))
        imgs, mid = imgs[keep].reset_index(drop=True), mid[keep]
        ra, dec = _interpolate(ephemeris, mid)
    inside = _inside_footprints(imgs, ra, dec) if len(imgs) else np.zeros(0, bool)
    hits = imgs[inside].reset_index(drop=True)
    hits["jd_mid"] = mid[inside]
    hits["ra_pred"], hits["dec_pred"] = ra[inside], dec[inside]
    for k, v in extra.items():
        hits[k] = v[inside]
    hits["x"], hits["y"] = _pixels(ctx, hits, hits["ra_pred"].to_numpy(),
                                   hits["dec_pred"].to_numpy())
    images = _records(hits, ["relpath", "pid", "expid", "nid", "field", "ccdid", "qid", "rcid",
                             "fid", "filtercode", "obsjd", "jd_mid", "exptime", "seeing",
                             "maglimit", "airmass", "infobits", "ra_pred", "dec_pred", "x", "y",
                             "V", "delta", "rate"])
    for rec in images:
        path = _product_path(rec["relpath"])
        center = f"{rec['ra_pred']:.6f},{rec['dec_pred']:.6f}"
        rec["ibe_url"] = f"/ibe/data/ztf/products/{quote(path)}"
        rec["cutout_url"] = (f"/ibe/data/ztf/products/{quote(path)}?center={center}"
                             "&size=30arcsec&gzip=false")
        rec["viewer_url"] = "/ui/image?" + urlencode({"path": rec["relpath"],
                                                       "ra": rec["ra_pred"],
                                                       "dec": rec["dec_pred"]})
        rec["night"] = str(_night_of_nid(rec["nid"])) if rec.get("nid") is not None else None

    # The pipeline's detections of the object.
    if orbit is not None:
        stmt = _candidate_select().where(Candidate.ssnamenr == str(orbit.designation[0]))
        if jd_start is not None:
            stmt = stmt.where(Candidate.jd >= jd_start)
        if jd_end is not None:
            stmt = stmt.where(Candidate.jd <= jd_end)
        if not may("candidates"):  # detections are alert content: depot only
            stmt = stmt.where(false())
        dets = _detections(ctx, stmt.order_by(Candidate.jd, Candidate.candid))
        if len(dets):
            from zsds.solar.ephemeris import ephemerides_grid

            de = ephemerides_grid(orbit, dets["jd"].to_numpy(float) - MJD_JD, obscode)
            dets["ra_pred"], dets["dec_pred"] = de["ra"].to_numpy(), de["dec"].to_numpy()
    else:
        pids = [int(p) for p in hits["pid"].dropna()]
        stmt = _candidate_select().where(Candidate.pid.in_(pids)).order_by(Candidate.jd)
        dets = _detections(ctx, stmt if pids and may("candidates") else stmt.where(false()))
        if len(dets):
            dets["ra_pred"], dets["dec_pred"] = _interpolate(ephemeris,
                                                             dets["jd"].to_numpy(float))
    if len(dets):
        dets["sep"] = _sep_arcsec(dets["ra"].to_numpy(float), dets["dec"].to_numpy(float),
                                  dets["ra_pred"].to_numpy(float),
                                  dets["dec_pred"].to_numpy(float))
        if orbit is None:
            dets = dets[dets["sep"] <= radius].reset_index(drop=True)
    detections = _records(dets, ["candid", "jd", "ra", "dec", "ra_pred", "dec_pred", "sep",
                                 "magpsf", "sigmapsf", "rb", "fid", "filtercode", "pid",
                                 "object_id", "isdiffpos", "ssnamenr", "ssdistnr"])
    alerted = _alerted([d["candid"] for d in detections], ctx) if may("alerts") else set()
    for rec in detections:
        rec["alert_url"] = f"/ui/alert?candid={rec['candid']}" if rec["candid"] in alerted \
            else None
    tracks = _tracks(ctx, str(orbit.designation[0]) if orbit is not None else None,
                     [d["candid"] for d in detections]) if may("ss_tracks") else []
    withheld = [name for name, table in (("detections", "candidates"), ("tracks", "ss_tracks"))
                if not may(table)]

    # A path along the searched interval for the sky plot.
    if orbit is not None:
        t0 = jd_start if jd_start is not None else (float(mid.min()) if len(mid) else None)
        t1 = jd_end if jd_end is not None else (float(mid.max()) if len(mid) else None)
        path: list[dict[str, Any]] = []
        if t0 is not None and t1 is not None:
            from zsds.solar.ephemeris import ephemerides_grid

            t = np.linspace(t0, max(t1, t0 + 1e-3), 120)
            pe = ephemerides_grid(orbit, t - MJD_JD, obscode)
            path = _records(pd.DataFrame({"jd": t, "ra": pe["ra"], "dec": pe["dec"]}))
    else:
        path = _records(ephemeris)
    query = {"designation": str(orbit.designation[0]) if orbit is not None else None,
             "mode": "designation" if orbit is not None else "ephemeris",
             "start": jd_start, "end": jd_end, "obscode": obscode,
             "ephemeris_rows": None if ephemeris is None else len(ephemeris)}
    return {"query": query, "nsearched": len(imgs), "images": images,
            "detections": detections, "tracks": tracks, "path": path, "withheld": withheld}


def _sky_svg(result: dict[str, Any]) -> str:
    """Sky track of a search: the predicted path, the matched images' predictions and the
    pipeline's detections (RA unwrapped around the path, increasing to the left)."""
    path = pd.DataFrame(result["path"], columns=["jd", "ra", "dec"])
    imgs = pd.DataFrame(result["images"], columns=["ra_pred", "dec_pred"])
    dets = pd.DataFrame(result["detections"], columns=["ra", "dec"])
    allra = np.concatenate([path["ra"], imgs["ra_pred"], dets["ra"]]).astype(float)
    ref = _mean_ra(allra)

    def unwrap(a: pd.Series) -> np.ndarray:
        return ref + np.mod(np.asarray(a, float) - ref + 180.0, 360.0) - 180.0

    layers = [
        {"x": unwrap(path["ra"]), "y": path["dec"], "kind": "line", "color": "#9aa3b5",
         "label": "predicted path"},
        {"x": unwrap(imgs["ra_pred"]), "y": imgs["dec_pred"], "color": "#5fb3ff", "r": 4,
         "open": True, "label": f"in images ({len(imgs)})"},
        {"x": unwrap(dets["ra"]), "y": dets["dec"], "color": "#ffb347", "r": 2.5,
         "label": f"detections ({len(dets)})"},
    ]
    return svg_plot(layers, xlabel="RA (deg)", ylabel="Dec (deg)", invert_x=True,
                    title="sky track")


_JSON_BODY = "_json_body"


async def _moving_params(request: Request) -> dict[str, Any]:
    """Search parameters of a GET query, a JSON body or a (multipart) form with an upload.

    Only the reading happens here, on the event loop; a JSON body is kept as bytes and
    decoded with the search, in a worker thread (:func:`_run_moving`).
    """
    params: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            params[_JSON_BODY] = await request.body()
        elif ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            form = await request.form()
            for key, value in form.multi_items():
                if hasattr(value, "read"):  # an uploaded file
                    content = await value.read()
                    if content.strip():
                        params[key if key != "file" else "ephemeris"] = content
                elif str(value).strip():
                    params[key] = value
        elif ctype.startswith("text/"):
            params["ephemeris"] = await request.body()
    return params


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with a JSON body (kept by :func:`_moving_params`) decoded into it."""
    raw = params.pop(_JSON_BODY, None)
    if raw is None:
        return params
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested arrays
        raise _bad("request body is not valid JSON") from None
    if isinstance(body, list):
        body = {"ephemeris": body}
    if not isinstance(body, dict):
        raise _bad("JSON body must be an object or a list of ephemeris rows")
    return {**params, **body}


def _run_moving(ctx: ArchiveContext, params: dict[str, Any], access: Access
                ) -> dict[str, Any]:
    """The search of a request's parameters (blocking: run it in a worker thread)."""
    params = _json_params(params)
    designation = str(params.get("designation") or "").strip() or None
    eph_raw = params.get("ephemeris")
    if isinstance(eph_raw, str | bytes) and not str(eph_raw).strip():
        eph_raw = None
    if designation and eph_raw is not None:
        raise _bad("give either designation= or ephemeris=, not both")
    if not designation and eph_raw is None:
        raise _bad("missing designation= (an object of MPCORB.DAT) or ephemeris= "
                   "(jd,ra,dec rows)")
    ephem = parse_ephemeris(eph_raw) if eph_raw is not None else None
    try:
        radius = float(params.get("radius") or 5.0)
    except ValueError:
        raise _bad(f"radius={params.get('radius')!r} is not a number") from None
    obscode = str(params.get("obscode") or "I41").strip()
    from zsds.solar.observer import OBSCODES

    if obscode not in OBSCODES:
        raise _bad(f"unsupported obscode {obscode!r}: use one of {', '.join(OBSCODES)}")
    return search_moving(ctx, designation=designation, ephemeris=ephem,
                         jd_start=parse_jd(params.get("start"), "start"),
                         jd_end=parse_jd(params.get("end"), "end", end=True),
                         obscode=obscode, radius=radius, access=access)


@router.get("/api/moving/search")
@router.post("/api/moving/search")
async def moving_search_api(request: Request, ctx: Ctx) -> Response:
    """Archived science images containing a moving object (IRSA MOST equivalent).

    Query or form/JSON parameters: ``designation`` (packed, as in ``MPCORB.DAT``) or
    ``ephemeris`` (``jd,ra,dec`` rows as JSON or CSV text, or an uploaded file), ``start``,
    ``end`` (dates, JD or MJD), ``obscode`` (default I41), ``radius`` (arcsec, ephemeris
    mode), ``format`` (``json`` by default; ``csv``, ``ipac_table``, ``votable``, ``html``
    return the image table). Detections and tracks need a login (``withheld`` says what was
    left out).
    """
    params = await _moving_params(request)
    return await run_in_threadpool(_moving_response, ctx, params, request_access(request))


def _moving_response(ctx: ArchiveContext, params: dict[str, Any], access: Access
                     ) -> Response:
    params = _json_params(params)
    try:
        fmt = parse_format(params.get("format"), default="json")
    except FormatError as exc:
        raise _bad(str(exc)) from None
    result = _run_moving(ctx, params, access)
    if fmt == "json":
        return JSONResponse(result)
    cols = [c for c in result["images"][0]] if result["images"] else ["relpath", "pid", "obsjd",
                                                                       "ra_pred", "dec_pred"]
    table = Table(rows=[[r[c] for c in cols] for r in result["images"]], names=cols) \
        if result["images"] else Table(names=cols, dtype=["U1", "i8", "f8", "f8", "f8"])
    return table_response(table, fmt, title="moving-object search")


@router.get("/ui/moving", response_class=HTMLResponse)
@router.post("/ui/moving", response_class=HTMLResponse)
async def moving_page(request: Request, ctx: Ctx) -> Response:
    """The moving-object search page: a form, and the results when a query is given (the
    search and the page are made in a worker thread)."""
    params = await _moving_params(request)
    return await run_in_threadpool(_moving_page, request, ctx, params)


def _moving_page(request: Request, ctx: ArchiveContext, params: dict[str, Any]) -> Response:
    result, error = None, None
    try:
        params = _json_params(params)
    except HTTPException as exc:
        params, error = {}, exc.detail
    form = {k: (v if isinstance(v, str) else "") for k, v in params.items()}
    if params.get("designation") or params.get("ephemeris"):
        try:
            result = _run_moving(ctx, params, request_access(request))
        except HTTPException as exc:
            error = exc.detail
    return render(request, "moving.html", status_code=400 if error else 200, form=form,
                  result=result, error=error, sky_svg=_sky_svg(result) if result else "")


# ----------------------------------------------------------------------------------------
# Coverage and QA
# ----------------------------------------------------------------------------------------


def night_list(ctx: ArchiveContext) -> list[dict[str, Any]]:
    """Nights with science or raw images or a night summary, newest first, with counts."""
    with ctx.engine.connect() as conn:
        imgs = conn.execute(
            select(ArchiveImage.nid, ArchiveImage.tbl, func.count())
            .where(ArchiveImage.nid.isnot(None), ArchiveImage.tbl.in_(("sci", "raw")))
            .group_by(ArchiveImage.nid, ArchiveImage.tbl)).all()
        sums = conn.execute(select(NightSummaryRecord.night, func.count())
                            .group_by(NightSummaryRecord.night)).all()
    nights: dict[dt.date, dict[str, Any]] = {}

    def entry(d: dt.date) -> dict[str, Any]:
        return nights.setdefault(d, {"night": d.isoformat(), "nid": nid_of(d), "nsci": 0,
                                     "nraw": 0, "nsummaries": 0})

    for nid, tbl, n in imgs:
        entry(_night_of_nid(nid))[f"n{tbl}"] = int(n)
    for night, n in sums:
        entry(parse_night(night) if not isinstance(night, dt.date) else night)[
            "nsummaries"] = int(n)
    return [nights[d] for d in sorted(nights, reverse=True)]


def _night_arg(ctx: ArchiveContext, night: str | None) -> dt.date | None:
    """The requested night, or the latest night with science images; 400 if unreadable."""
    if night:
        try:
            return parse_night(night)
        except ValueError as exc:
            raise _bad(str(exc)) from None
    for n in night_list(ctx):
        if n["nsci"]:
            return dt.date.fromisoformat(n["night"])
    return None


def _night_images(ctx: ArchiveContext, night: dt.date | None, tbl: str = "sci",
                  access: Access | None = None) -> pd.DataFrame:
    cols = ["id", "relpath", "pid", "expid", "field", "ccdid", "qid", "rcid", "fid",
            "filtercode", "obsjd", "exptime", "seeing", "maglimit", "magzp", "airmass",
            "infobits", "ra", "dec", *[f"{a}{k}" for k in range(1, 5) for a in ("ra", "dec")]]
    if night is None:
        return pd.DataFrame(columns=cols)
    stmt = (select(*[getattr(ArchiveImage, c) for c in cols])
            .where(ArchiveImage.tbl == tbl, ArchiveImage.nid == nid_of(night))
            .order_by(ArchiveImage.obsjd, ArchiveImage.pid, ArchiveImage.id))
    visible = access.image_condition() if access is not None else None
    if visible is not None:
        stmt = stmt.where(visible)
    with ctx.engine.connect() as conn:
        return pd.read_sql(stmt, conn)


def _summaries(ctx: ArchiveContext, night: dt.date | None = None) -> list[dict[str, Any]]:
    stmt = select(NightSummaryRecord).order_by(NightSummaryRecord.night.desc(),
                                               NightSummaryRecord.id)
    if night is not None:
        stmt = stmt.where(NightSummaryRecord.night == night)
    with ctx.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    keys = ("id", "night", "mode", "quadrants", "failed", "alerts", "wall_s", "latency_p50_s",
            "latency_p95_s", "created_at")
    out = []
    for row in rows:
        rec = {k: _finite(row._mapping[k]) for k in keys}
        summary = row._mapping["summary"] or {}
        for k in ("exposures", "calibrated", "subtracted", "candidates", "tracks",
                  "quadrants_per_min"):
            rec[k] = _finite(summary.get(k))
        out.append(rec)
    return out


@router.get("/ui/api/nights")
def nights_api(ctx: Ctx) -> list[dict[str, Any]]:
    """Nights of the archive (newest first) with their numbers of sci/raw images and night
    summaries."""
    return night_list(ctx)


@router.get("/ui/api/qa")
def qa_api(request: Request, ctx: Ctx, night: str | None = None) -> dict[str, Any]:
    """QA of a night's science images: per-image seeing, maglimit, magzp, airmass (as in the
    image index), their statistics, medians of the pipeline's QA metrics and the night
    summaries. Without ``night``, the latest night with science images."""
    d = _night_arg(ctx, night)
    imgs = _night_images(ctx, d, access=request_access(request))
    stats = {}
    for col in QA_COLUMNS:
        v = pd.to_numeric(imgs[col], errors="coerce").dropna().to_numpy(float)
        stats[col] = ({"n": int(v.size), "min": float(v.min()), "median": float(np.median(v)),
                       "mean": float(v.mean()), "max": float(v.max())} if v.size
                      else {"n": 0, "min": None, "median": None, "mean": None, "max": None})
    metrics: dict[str, dict[str, Any]] = {}
    pids = [int(p) for p in imgs["pid"].dropna()]
    if pids:
        with ctx.engine.connect() as conn:
            rows = conn.execute(
                select(QAMetric.name, QAMetric.value)
                .where(QAMetric.subject_kind == "quadrant", QAMetric.subject_id.in_(pids))).all()
        qa = pd.DataFrame(rows, columns=["name", "value"]).dropna()
        for name, g in qa.groupby("name"):
            metrics[str(name)] = {"n": len(g), "median": float(g["value"].median())}
    return {"night": d.isoformat() if d else None, "nid": nid_of(d) if d else None,
            "images": _records(imgs, ["pid", "relpath", "field", "ccdid", "qid", "rcid", "fid",
                                      "filtercode", "obsjd", "exptime", *QA_COLUMNS,
                                      "infobits"]),
            "stats": stats, "metrics": metrics, "summaries": _summaries(ctx, d) if d else []}


@router.get("/ui/api/coverage.png")
def coverage_png(request: Request, ctx: Ctx, night: str | None = None, tbl: str = "sci",
                 projection: str = "local") -> Response:
    """Map of a night's image footprints coloured by filter (matplotlib PNG).

    ``projection``: ``local`` (RA/Dec around the footprints, RA increasing to the left) or
    ``aitoff`` (whole sky); ``tbl``: ``sci`` (quadrants) or ``raw`` (CCDs).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if tbl not in ("sci", "raw"):
        raise _bad(f"tbl={tbl!r}: use sci or raw")
    if projection not in ("local", "aitoff"):
        raise _bad(f"projection={projection!r}: use local or aitoff")
    d = _night_arg(ctx, night)
    imgs = _night_images(ctx, d, tbl, request_access(request)).dropna(
        subset=["ra1", "dec1", "ra3", "dec3"])
    fig = Figure(figsize=(7.5, 5.0), dpi=100)
    ra = np.stack([imgs[f"ra{k}"].to_numpy(float) for k in range(1, 5)], axis=1)
    dec = np.stack([imgs[f"dec{k}"].to_numpy(float) for k in range(1, 5)], axis=1)
    colours = [FILTER_COLOURS.get(str(f), "#7f7f7f") for f in imgs["filtercode"]]
    if projection == "aitoff":
        ax = fig.add_subplot(projection="aitoff")
        # x = 180 - RA so that RA grows to the left, as on the sky
        x, y = np.radians(180.0 - ra), np.radians(dec)
        ticks = np.arange(-150, 151, 30)
        ax.set_xticks(np.radians(ticks))
        ax.set_xticklabels([f"{(180 - t) % 360:d}°" for t in ticks], fontsize=8)
        ax.grid(True, alpha=0.4)
        wide = (np.ptp(x, axis=1) > np.pi) if len(x) else np.zeros(0, bool)
        x, y = x[~wide], y[~wide]
        colours = [c for c, w in zip(colours, wide, strict=True) if not w]
        if len(x):
            ax.scatter(x.mean(axis=1), y.mean(axis=1), s=6, c=colours, zorder=3)
    else:
        ax = fig.add_subplot()
        ref = _mean_ra(ra)
        x = ref + np.mod(ra - ref + 180.0, 360.0) - 180.0
        y = dec
        ax.set_xlabel("RA (deg)")
        ax.set_ylabel("Dec (deg)")
        if ra.size:
            pad = 0.1
            ax.set_xlim(x.max() + pad, x.min() - pad)
            ax.set_ylim(y.min() - pad, y.max() + pad)
            ax.set_aspect(1.0 / max(np.cos(np.radians(float(np.mean(y)))), 0.05))
        ax.grid(True, alpha=0.3)
    if len(x):
        ax.add_collection(PolyCollection(np.stack([x, y], axis=-1), facecolors=colours,
                                         edgecolors="k", linewidths=0.4, alpha=0.45))
    counts = imgs["filtercode"].value_counts()
    handles = [Patch(color=FILTER_COLOURS.get(str(f), "#7f7f7f"), alpha=0.6, label=f"{f} ({n})")
               for f, n in counts.items()]
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=8)
    label = d.isoformat() if d else "no nights"
    ax.set_title(f"{tbl} footprints, night {label}: {len(imgs)} images", fontsize=10,
                 pad=20 if projection == "aitoff" else 6)
    if not len(imgs):
        ax.text(0.5, 0.5, "no images", transform=ax.transAxes, ha="center", va="center")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return Response(buf.getvalue(), media_type="image/png")


@router.get("/ui/coverage", response_class=HTMLResponse)
def coverage_page(request: Request, ctx: Ctx, night: str | None = None) -> Response:
    """Coverage map, QA dashboard and night summaries of a night."""
    d = _night_arg(ctx, night)
    return render(request, "coverage.html", night=d.isoformat() if d else "",
                  nights=night_list(ctx), summaries=_summaries(ctx),
                  nimages=len(_night_images(ctx, d, access=request_access(request))))


# ----------------------------------------------------------------------------------------
# Alerts
# ----------------------------------------------------------------------------------------


def _may_read_alerts(access: Access) -> bool:
    """Whether the caller may read alert rows at all (alerts and their candidates)."""
    return access.may_read_table("alerts") and access.may_read_table("candidates")


def _hidden_topics(ctx: ArchiveContext, access: Access) -> list[str]:
    """Topics the caller may not read: every topic when the alert rows are depot content
    for them, else those whose packets are (all packets of a topic share its folder, so the
    restriction is decided per topic); none for a logged-in user."""
    if access.logged_in:
        return []
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(AlertRecord.topic, func.min(AlertRecord.relpath))
                            .group_by(AlertRecord.topic)).all()
    everything = not _may_read_alerts(access)
    return [t for t, rp in rows if everything or not access.may_read_path(rp)]


def _alert_conditions(night: str | None, rb_min: float | None, rb_max: float | None,
                      object_id: str | None, ssnamenr: str | None) -> list[Any]:
    conds: list[Any] = []
    if night:
        try:
            d = parse_night(night)
        except ValueError as exc:
            raise _bad(str(exc)) from None
        conds.append(Candidate.nid == nid_of(d))
    if rb_min is not None:
        conds.append(Candidate.rb >= rb_min)
    if rb_max is not None:
        conds.append(Candidate.rb <= rb_max)
    if object_id:
        conds.append(AlertRecord.object_id == object_id.strip())
    if ssnamenr:
        conds.append(Candidate.ssnamenr == ssnamenr.strip())
    return conds


def list_alerts(ctx: ArchiveContext, access: Access, *, night: str | None = None,
                rb_min: float | None = None, rb_max: float | None = None,
                object_id: str | None = None, ssnamenr: str | None = None, page: int = 1,
                per_page: int = 50) -> dict[str, Any]:
    """One page of the alerts the user may see, newest first, with the filters applied."""
    conds = _alert_conditions(night, rb_min, rb_max, object_id, ssnamenr)
    hidden = _hidden_topics(ctx, access)
    base = select(AlertRecord.candid).join(Candidate, Candidate.candid == AlertRecord.candid)
    with ctx.engine.connect() as conn:
        nhidden = 0
        if hidden:
            nhidden = conn.scalar(select(func.count()).select_from(
                base.where(*conds, AlertRecord.topic.in_(hidden)).subquery())) or 0
            conds.append(AlertRecord.topic.not_in(hidden))
        total = conn.scalar(select(func.count()).select_from(base.where(*conds).subquery()))
        rows = conn.execute(
            select(AlertRecord.object_id, AlertRecord.candid, AlertRecord.topic,
                   AlertRecord.relpath, Candidate.jd, Candidate.fid, Candidate.ra,
                   Candidate.dec, Candidate.magpsf, Candidate.sigmapsf, Candidate.rb,
                   Candidate.isdiffpos, Candidate.ssnamenr, Candidate.programid)
            .join(Candidate, Candidate.candid == AlertRecord.candid).where(*conds)
            .order_by(Candidate.jd.desc(), AlertRecord.candid.desc())
            .limit(per_page).offset((page - 1) * per_page)).all()
    keys = ("objectId", "candid", "topic", "relpath", "jd", "fid", "ra", "dec", "magpsf",
            "sigmapsf", "rb", "isdiffpos", "ssnamenr", "programid")
    out = [{k: _finite(v) for k, v in zip(keys, row, strict=True)} for row in rows]
    for rec in out:
        rec["filtercode"] = FILTER_CODES.get(rec["fid"])
        rec["url"] = f"/ui/alert?candid={rec['candid']}"
    return {"total": int(total or 0), "page": page, "per_page": per_page,
            "pages": max(1, math.ceil((total or 0) / per_page)), "hidden": int(nhidden),
            "rows": out}


#: An alert's ``candid`` parameter (a 64-bit id).
_CANDID = Query(..., ge=0, le=INT64_MAX)

_ALERT_QUERY = dict(
    night=Query(None, description="UT night YYYY-MM-DD"),
    rb_min=Query(None, ge=0, le=1), rb_max=Query(None, ge=0, le=1),
    page=Query(1, ge=1), per_page=Query(50, ge=1, le=500),
)


@router.get("/ui/api/alerts")
def alerts_api(request: Request, ctx: Ctx, night: str | None = _ALERT_QUERY["night"],
               rb_min: float | None = _ALERT_QUERY["rb_min"],
               rb_max: float | None = _ALERT_QUERY["rb_max"], object_id: str | None = None,
               ssnamenr: str | None = None, page: int = _ALERT_QUERY["page"],
               per_page: int = _ALERT_QUERY["per_page"]) -> dict[str, Any]:
    """Alerts (newest first) as JSON: ``total`` visible, ``hidden`` (needing login) and one
    page of ``rows`` (objectId, candid, jd, magpsf, rb, ssnamenr, topic, ...)."""
    return list_alerts(ctx, request_access(request), night=night, rb_min=rb_min,
                       rb_max=rb_max, object_id=object_id, ssnamenr=ssnamenr, page=page,
                       per_page=per_page)


@router.get("/ui/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, ctx: Ctx,
                night: str | None = _ALERT_QUERY["night"],
                rb_min: float | None = _ALERT_QUERY["rb_min"],
                rb_max: float | None = _ALERT_QUERY["rb_max"], object_id: str | None = None,
                ssnamenr: str | None = None, page: int = _ALERT_QUERY["page"],
                per_page: int = _ALERT_QUERY["per_page"]) -> Response:
    """The alert stream browser: latest alerts with cutout thumbnails, filters and pages."""
    night = night or None
    res = list_alerts(ctx, request_access(request), night=night, rb_min=rb_min, rb_max=rb_max,
                      object_id=object_id, ssnamenr=ssnamenr, page=page, per_page=per_page)
    filters = {"night": night or "", "rb_min": "" if rb_min is None else rb_min,
               "rb_max": "" if rb_max is None else rb_max, "object_id": object_id or "",
               "ssnamenr": ssnamenr or "", "per_page": per_page}
    keep = {k: v for k, v in filters.items() if v != ""}

    def page_url(p: int) -> str:
        return "/ui/alerts?" + urlencode({**keep, "page": p})

    nights = [n["night"] for n in night_list(ctx) if n["nsci"]]
    return render(request, "alerts.html", res=res, filters=filters, nights=nights,
                  prev_url=page_url(page - 1) if page > 1 else None,
                  next_url=page_url(page + 1) if page < res["pages"] else None)


@functools.lru_cache(maxsize=256)
def _read_packet(path: str, mtime_ns: int) -> dict[str, Any]:
    from zsds.alerts.packet import decode_alert_packet

    records, _ = decode_alert_packet(path)
    if not records:
        raise ValueError(f"{path}: empty packet")
    return records[0]


def _alert_packet(ctx: ArchiveContext, access: Access, candid: int
                  ) -> tuple[Any, dict[str, Any]]:
    """The alert row and decoded packet of a candid; 404 if unknown, 401 if restricted."""
    with ctx.engine.connect() as conn:
        rec = conn.execute(select(AlertRecord.candid, AlertRecord.topic, AlertRecord.relpath)
                           .where(AlertRecord.candid == candid)).first()
    if rec is None:
        raise _bad(f"no alert with candid {candid}", 404)
    if not (_may_read_alerts(access) and access.may_read_path(rec.relpath)):
        raise HTTPException(status_code=401, detail="login required: alert packets are "
                            "depot content", headers={"WWW-Authenticate": 'Basic realm="zsds"'})
    path = ctx.home.path(rec.relpath)
    try:
        packet = _read_packet(str(path), os.stat(path).st_mtime_ns)
    except FileNotFoundError:
        raise _bad(f"packet of candid {candid} is missing from the archive", 404) from None
    return rec, packet


def cutout_png(packet: dict[str, Any], kind: str, scale: int = 4) -> bytes:
    """A packet's cutout as an 8-bit greyscale PNG: zscale limits (astropy), north up as in
    the FITS (row 1 at the bottom), enlarged ``scale`` times by pixel replication."""
    from astropy.visualization import ZScaleInterval
    from PIL import Image

    from zsds.alerts.packet import read_cutout

    cut = packet.get(CUTOUT_KINDS[kind])
    if not cut or not cut.get("stampData"):
        raise _bad(f"the packet has no {kind} cutout", 404)
    data = read_cutout(cut)
    good = np.isfinite(data)
    if good.any():
        lo, hi = ZScaleInterval().get_limits(data[good])
        if not hi > lo:
            lo, hi = float(data[good].min()), float(data[good].max()) + 1e-6
    else:
        lo, hi = 0.0, 1.0
    img = np.clip((np.where(good, data, lo) - lo) / (hi - lo), 0.0, 1.0)
    pix = np.flipud((img * 255.0 + 0.5).astype(np.uint8))
    pix = np.repeat(np.repeat(pix, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(pix, mode="L").save(buf, format="PNG")
    return buf.getvalue()


@router.get("/ui/api/cutout.png")
def cutout_api(request: Request, ctx: Ctx, candid: int = _CANDID,
               kind: str = Query("difference", description="science, template or difference"),
               scale: int = Query(4, ge=1, le=8)) -> Response:
    """A cutout of an archived alert packet as a PNG (login needed for restricted packets)."""
    if kind not in CUTOUT_KINDS:
        raise _bad(f"kind={kind!r}: use science, template or difference")
    _, packet = _alert_packet(ctx, request_access(request), candid)
    return Response(cutout_png(packet, kind, scale), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})


def _lightcurve_svg(packet: dict[str, Any]) -> str:
    """Difference-image light curve of an alert: its candidate and ``prv_candidates``
    (detections with error bars, upper limits as triangles), by filter."""
    cand = packet.get("candidate") or {}
    rows = [*(packet.get("prv_candidates") or []), cand]
    df = pd.DataFrame([{"mjd": r.get("jd", np.nan) - MJD_JD, "fid": r.get("fid"),
                        "mag": r.get("magpsf"), "err": r.get("sigmapsf"),
                        "lim": r.get("diffmaglim"), "det": r.get("candid") is not None}
                       for r in rows], columns=["mjd", "fid", "mag", "err", "lim", "det"])
    df = df.astype({"mjd": float, "mag": float, "err": float, "lim": float})
    layers = []
    for fid, g in df.groupby("fid"):
        code = FILTER_CODES.get(int(fid), str(fid))
        colour = FILTER_COLOURS.get(code, "#7f7f7f")
        det, lim = g[g["det"] & g["mag"].notna()], g[~g["det"] & g["lim"].notna()]
        layers.append({"x": det["mjd"], "y": det["mag"], "yerr": det["err"], "color": colour,
                       "label": f"{code} ({len(det)})"})
        if len(lim):
            layers.append({"x": lim["mjd"], "y": lim["lim"], "kind": "limits", "color": colour,
                           "r": 4})
    return svg_plot(layers, xlabel="MJD", ylabel="magpsf", invert_y=True,
                    title="light curve (prv_candidates + this alert)")


@router.get("/ui/alert", response_class=HTMLResponse)
def alert_page(request: Request, ctx: Ctx, candid: int = _CANDID) -> Response:
    """One alert: the candidate's fields, its light curve and the three cutouts."""
    try:
        rec, packet = _alert_packet(ctx, request_access(request), candid)
    except HTTPException as exc:
        return render(request, "alert.html", status_code=exc.status_code, candid=candid,
                      error=exc.detail, need_login=exc.status_code == 401)
    cand = packet.get("candidate") or {}
    fields = [(k, v) for k, v in cand.items() if v is not None and not isinstance(v, bytes)]
    prv = packet.get("prv_candidates") or []
    ndet = sum(1 for p in prv if p.get("candid") is not None)
    night = (dt.date(2000, 1, 1) + dt.timedelta(days=float(cand.get("jd", 0)) - 2451544.5)
             ).isoformat() if cand.get("jd") else None
    return render(request, "alert.html", candid=candid, error=None, need_login=False,
                  alert={"objectId": packet.get("objectId"), "topic": rec.topic,
                         "relpath": rec.relpath, "schemavsn": packet.get("schemavsn"),
                         "nprv": len(prv), "nprv_det": ndet, "night": night},
                  fields=fields, lc_svg=_lightcurve_svg(packet), kinds=list(CUTOUT_KINDS),
                  ssnamenr=cand.get("ssnamenr"))


# ----------------------------------------------------------------------------------------
# Depot
# ----------------------------------------------------------------------------------------


def _file_entry(ctx: ArchiveContext, path: Any) -> dict[str, Any]:
    st = path.stat()
    rel = path.relative_to(ctx.home.root).as_posix()
    return {"path": rel, "name": path.name, "size": st.st_size,
            "modified": dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).isoformat(
                timespec="seconds"), "url": "/depot/" + quote(rel)}


def _files_under(ctx: ArchiveContext, *folders: str) -> list[dict[str, Any]]:
    out = []
    for folder in folders:
        root = ctx.home.root / folder
        if root.is_dir():
            out += [_file_entry(ctx, p) for p in sorted(root.rglob("*"))
                    if p.is_file() and not p.name.startswith(".")]
    return out


def depot_listing(ctx: ArchiveContext, limit: int = 500) -> dict[str, Any]:
    """The real-time products of the depot: streaks, tracks, moving-object reports, alert
    archives and QA logs, with ``/depot/...`` links."""
    with ctx.engine.connect() as conn:
        srows = conn.execute(
            select(StreakRecord.streakid, StreakRecord.pid, StreakRecord.jd, StreakRecord.fid,
                   StreakRecord.ra, StreakRecord.dec, StreakRecord.length, StreakRecord.rate,
                   StreakRecord.mag, StreakRecord.snr, StreakRecord.rb, StreakRecord.ssnamenr,
                   DiffImageRecord.relpath)
            .join(DiffImageRecord, DiffImageRecord.pid == StreakRecord.pid, isouter=True)
            .order_by(StreakRecord.jd.desc(), StreakRecord.streakid).limit(limit)).all()
        members = (select(SSTrackMember.track_id, func.count().label("n"))
                   .group_by(SSTrackMember.track_id).subquery())
        trows = conn.execute(
            select(SSTrack.track_id, SSTrack.trksub, SSTrack.designation, SSTrack.window_end,
                   SSTrack.ndet, SSTrack.nnights, SSTrack.jdstart, SSTrack.jdend, SSTrack.rms,
                   SSTrack.orbit_ok, func.coalesce(members.c.n, 0))
            .outerjoin(members, members.c.track_id == SSTrack.track_id)
            .order_by(SSTrack.window_end.desc(), SSTrack.trksub).limit(limit)).all()
        topics = conn.execute(select(AlertRecord.topic, func.count())
                              .group_by(AlertRecord.topic).order_by(AlertRecord.topic)).all()
    streaks = []
    for r in srows:
        rec = {k: _finite(v) for k, v in zip(
            ("streakid", "pid", "jd", "fid", "ra", "dec", "length", "rate", "mag", "snr", "rb",
             "ssnamenr"), r[:-1], strict=True)}
        rec["filtercode"] = FILTER_CODES.get(rec["fid"])
        product = re.sub(r"\.fits$", "_streaks.fits", r[-1]) if r[-1] else None
        exists = product is not None and ctx.home.path(product).is_file()
        rec["product"] = product if exists else None
        rec["url"] = "/depot/" + quote(product) if exists else None
        streaks.append(rec)
    tracks = []
    for r in trows:
        rec = {k: _finite(v) for k, v in zip(
            ("track_id", "trksub", "designation", "window_end", "ndet", "nnights", "jdstart",
             "jdend", "rms", "orbit_ok", "nmembers"), r, strict=True)}
        day = f"{_night_of_nid(rec['window_end']):%Y%m%d}"
        folder = f"products/moving/{day}"
        rec["reports"] = [{"name": p.name, "url": "/depot/" + quote(f"{folder}/{p.name}")}
                          for p in sorted((ctx.home.root / folder).glob("*"))
                          if p.is_file()] if (ctx.home.root / folder).is_dir() else []
        tracks.append(rec)
    alerts = [{"topic": t, "count": int(n), "url": "/depot/" + quote(f"alerts/{t}/"),
               "browse": "/ui/alerts?" + urlencode({"night": _topic_night(t)})
               if _topic_night(t) else None} for t, n in topics]
    tarballs = [_file_entry(ctx, p) for p in sorted(ctx.home.alerts.glob("*.tar*"))] \
        if ctx.home.alerts.is_dir() else []
    return {"streaks": streaks, "tracks": tracks,
            "reports": _files_under(ctx, "products/moving"),
            "qa": _files_under(ctx, "logs", "products/qa"),
            "alerts": alerts, "alert_tarballs": tarballs}


def _topic_night(topic: str) -> str | None:
    m = re.match(r"^ztf_(\d{4})(\d{2})(\d{2})_", topic)
    return f"{m[1]}-{m[2]}-{m[3]}" if m else None


@router.get("/ui/api/depot")
def depot_api(ctx: Ctx) -> dict[str, Any]:
    """The depot's real-time products as JSON (login required: a LOGIN route of the policy)."""
    return depot_listing(ctx)


@router.get("/ui/depot", response_class=HTMLResponse)
def depot_page(request: Request, ctx: Ctx) -> Response:
    """The depot page: real-time products for logged-in users, a login link otherwise."""
    if not request_access(request).logged_in:
        return render(request, "depot.html", status_code=401, listing=None,
                      login_url="/ui/login?" + urlencode({"next": "/ui/depot"}))
    return render(request, "depot.html", listing=depot_listing(ctx), login_url=None)
