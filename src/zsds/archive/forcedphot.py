"""Forced photometry service: IPAC's ZFPS interface over :mod:`zsds.diffim.forced`.

Service (``ARCHIVE_API.md`` 3.1): ``requestForcedPhotometry.cgi`` (one position),
``batchfp.py/submit`` (up to 1500), the status tables ``getForcedPhotometryRequests.cgi`` /
``getBatchForcedPhotometryRequests.cgi`` and the ``lc.txt`` downloads under
``/ztf/ops/forcedphot/lc/``. Requests are rows of ``forcedphot_requests``, measured in a
FastAPI background task after the response (``exitcode`` 0 when done). Callers authenticate
with ``email``/``userpass`` (a zsds account), or any zsds credential (token, Basic, login
cookie); IPAC's public service account (HTTP Basic ``ztffps``/``dontgocrazy!``) is accepted as
the service-level credential that the ZFPS scripts send, and identifies nobody. ``lc.txt``
files live under a random directory (an unguessable capability path that only the owner's
status table shows), downloadable by any zsds user or with the service credential.
``GET /api/forcedphot`` measures synchronously for the web UI (login required).

``requestForcedPhotometry.cgi`` changes state on a GET (as at IPAC, for its scripts): a page
of another site could make a logged-in browser send that GET with its cookie, so there the
session cookie alone is not accepted -- the caller must give ``email``/``userpass``, an
``Authorization`` header (bearer token or Basic), or the session's ``csrf_token``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import html
import json
import logging
import math
import re
import secrets
from typing import Annotated, Any

import numpy as np
import pandas as pd
from astropy.table import Table
from fastapi import APIRouter, BackgroundTasks, Depends, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy import Engine, select, update

from zsds.archive.auth import (
    COOKIE,
    SERVICE_CREDENTIALS,
    AuthError,
    login_user,
    request_user,
    require_user,
)
from zsds.archive.context import ArchiveContext, Ctx
from zsds.archive.security import csrf_token, sent_csrf_token
from zsds.archive.tables import table_response
from zsds.core.home import Home
from zsds.db.engine import session
from zsds.db.schema import ForcedPhotRequest, User, utcnow
from zsds.diffim.forced import (
    DEFAULT_FORCED,
    LC_COLUMNS,
    ForcedPhotConfig,
    forced_photometry,
    lc_text,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["forced photometry"])

#: IPAC's public service-level credentials of ZFPS (HTTP Basic), sent by its scripts.
SERVICE_USER, SERVICE_PASSWORD = SERVICE_CREDENTIALS
#: Most positions of one batch request (ZFPS limit).
MAX_BATCH = 1500
#: URL prefix of the ``lc.txt`` downloads and the home folder that holds them.
LC_URL = "/ztf/ops/forcedphot/lc"
LC_DIR = "products/forcedphot/lc"
SINGLE_PREFIX, BATCH_PREFIX = "forcedphotometry_req", "batchfp_req"

# --------------------------------------------------------------------------- requests


def _lc_relpath(reqid: int, batch: bool) -> str:
    name = f"{BATCH_PREFIX if batch else SINGLE_PREFIX}{reqid:08d}_lc.txt"
    # A random folder: the download URL is a capability only the owner's status shows.
    return f"{LC_DIR}/{secrets.token_hex(8)}/{name}"


def create_requests(engine: Engine, user_id: int, positions: list[tuple[float, float]],
                    jdstart: float | None, jdend: float | None, batch: bool) -> list[int]:
    """Store pending requests (one per position); returns their ``reqid``."""
    ids = []
    with session(engine) as s:
        for ra, dec in positions:
            r = ForcedPhotRequest(user_id=user_id, ra=ra, dec=dec, jdstart=jdstart,
                                  jdend=jdend)
            s.add(r)
            s.flush()
            r.relpath = _lc_relpath(r.reqid, batch)
            ids.append(r.reqid)
    return ids


def run_requests(home: Home, engine: Engine, reqids: list[int],
                 config: ForcedPhotConfig = DEFAULT_FORCED) -> None:
    """Measure pending requests and write their ``lc.txt`` (the background job).

    Each request gets ``started``, ``ended``, ``npoints`` and ``exitcode`` (0, or 1 with the
    error in ``message``); a failure of one does not stop the others.
    """
    for reqid in reqids:
        with session(engine) as s:
            req = s.get(ForcedPhotRequest, reqid)
            if req is None or req.exitcode is not None:
                continue
            req.started = utcnow()
            ra, dec, j0, j1, rel = req.ra, req.dec, req.jdstart, req.jdend, req.relpath
        values: dict[str, Any]
        try:
            lc = forced_photometry(home, engine, ra, dec, j0, j1, config)
            path = home.path(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(lc_text(lc, ra, dec, j0, j1, reqid=reqid))
            values = {"exitcode": 0, "npoints": len(lc), "message": None}
        except Exception as exc:  # a failed request is reported, never raised into the app
            log.exception("forced-photometry request %d failed", reqid)
            values = {"exitcode": 1, "message": f"{type(exc).__name__}: {exc}"}
        with session(engine) as s:
            s.execute(update(ForcedPhotRequest).where(ForcedPhotRequest.reqid == reqid)
                      .values(ended=utcnow(), **values))


# --------------------------------------------------------------------------- HTTP


def _basic(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        name, _, pw = base64.b64decode(value.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return name, pw


def _is_service(request: Request) -> bool:
    return _basic(request) == (SERVICE_USER, SERVICE_PASSWORD)


def _caller(request: Request, ctx: ArchiveContext, email: str | None,
            userpass: str | None, *, cookie_alone: bool = True) -> User:
    """The zsds user of a ZFPS call: ``email``/``userpass``, else any zsds credential.

    With ``cookie_alone`` False, a caller known by the session cookie only must also send the
    session's CSRF token (``csrf_token``, or the ``X-CSRF-Token`` header).

    Raises
    ------
    HTTPException
        401 for wrong credentials or none; 403 for a cookie without its CSRF token when
        ``cookie_alone`` is False; 429 while logins are locked out.
    """
    basic = _basic(request)
    if basic is not None and basic != (SERVICE_USER, SERVICE_PASSWORD):
        user = request_user(request, ctx)
        if user is None:
            raise HTTPException(401, "wrong HTTP Basic credentials",
                                headers={"WWW-Authenticate": 'Basic realm="ZFPS"'})
    if email or userpass:
        try:
            return login_user(ctx, request, email or "", userpass or "")
        except AuthError:
            raise HTTPException(401, "invalid email or userpass") from None
    user = None if _is_service(request) else request_user(request, ctx)
    if user is None:
        raise HTTPException(401, "give email and userpass of a zsds account",
                            headers={"WWW-Authenticate": 'Basic realm="ZFPS"'})
    cookie = request.cookies.get(COOKIE)
    # The public service credential identifies nobody: with it, the cookie is still alone.
    own_header = bool(request.headers.get("authorization")) and not _is_service(request)
    if not cookie_alone and not own_header and cookie:
        sent = sent_csrf_token(request) or ""
        if not hmac.compare_digest(sent.encode(), csrf_token(cookie).encode()):
            raise HTTPException(403, "this GET changes state: with the session cookie it needs "
                                     "the session's csrf_token (or give email and userpass, "
                                     "or an API token)")
    return user


def _jd(value: str | float | None, name: str) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        v = float(value)
    except ValueError:
        raise HTTPException(400, f"{name}: {value!r} is not a Julian date") from None
    if not math.isfinite(v) or v < 0:
        raise HTTPException(400, f"{name} must be a finite, non-negative Julian date")
    return v


def _position(ra: Any, dec: Any, where: str = "") -> tuple[float, float]:
    try:
        r, d = float(ra), float(dec)
    except (TypeError, ValueError):
        raise HTTPException(400, f"ra/dec{where}: {ra!r}, {dec!r} are not numbers") from None
    if not (math.isfinite(r) and math.isfinite(d) and 0 <= r <= 360 and -90 <= d <= 90):
        raise HTTPException(400, f"ra/dec{where} out of range: ra in [0, 360], dec in "
                                 f"[-90, 90], got {r}, {d}")
    return r % 360.0, d


def _jd_range(jdstart: Any, jdend: Any) -> tuple[float | None, float | None]:
    j0, j1 = _jd(jdstart, "jdstart"), _jd(jdend, "jdend")
    if j0 is not None and j1 is not None and j0 > j1:
        raise HTTPException(400, f"jdstart {j0} is after jdend {j1}")
    return j0, j1


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
                        f"{html.escape(title)}</title></head><body><h1>{html.escape(title)}"
                        f"</h1>{body}</body></html>", status_code=status)


def _submitted(reqids: list[int], positions: list[tuple[float, float]]) -> HTMLResponse:
    rows = "".join(f"<tr><td>{r}</td><td>{ra:.7f}</td><td>{dec:.7f}</td></tr>"
                   for r, (ra, dec) in zip(reqids, positions, strict=True))
    return _page("Forced photometry request submitted",
                 f"<p>Your request has been submitted ({len(reqids)} position(s)). Poll the "
                 "status page for the light curves.</p><table border='1'><tr><th>reqId</th>"
                 f"<th>ra</th><th>dec</th></tr>{rows}</table>")


@router.get("/cgi-bin/requestForcedPhotometry.cgi")
def request_single(request: Request, background: BackgroundTasks,
                   ctx: Ctx,
                   ra: str | None = None, dec: str | None = None,
                   jdstart: str | None = None, jdend: str | None = None,
                   email: str | None = None, userpass: str | None = None) -> HTMLResponse:
    """ZFPS single-position request (measured in the background). A GET that changes state:
    the session cookie alone does not authenticate it (see the module docstring)."""
    user = _caller(request, ctx, email, userpass, cookie_alone=False)
    if ra is None or dec is None:
        raise HTTPException(400, "ra and dec are required (degrees)")
    pos = _position(ra, dec)
    j0, j1 = _jd_range(jdstart, jdend)
    ids = create_requests(ctx.engine, user.id, [pos], j0, j1, batch=False)
    background.add_task(run_requests, ctx.home, ctx.engine, ids)
    return _submitted(ids, [pos])


def _json_list(text: str, name: str) -> list[Any]:
    try:
        v = json.loads(text)
    except json.JSONDecodeError:
        v = [t for t in re.split(r"[\s,]+", text.strip().strip("[]")) if t]
    if not isinstance(v, list):
        v = [v]
    if not v:
        raise HTTPException(400, f"{name} is empty")
    return v


@router.post("/cgi-bin/batchfp.py/submit")
def request_batch(request: Request, background: BackgroundTasks,
                  ctx: Ctx,
                  ra: Annotated[str, Form()], dec: Annotated[str, Form()],
                  jdstart: Annotated[str | None, Form()] = None,
                  jdend: Annotated[str | None, Form()] = None,
                  email: Annotated[str | None, Form()] = None,
                  userpass: Annotated[str | None, Form()] = None) -> HTMLResponse:
    """ZFPS batch request: ``ra`` and ``dec`` are JSON lists (at most 1500 positions)."""
    user = _caller(request, ctx, email, userpass)
    ras, decs = _json_list(ra, "ra"), _json_list(dec, "dec")
    if len(ras) != len(decs):
        raise HTTPException(400, f"ra has {len(ras)} values, dec {len(decs)}")
    if len(ras) > MAX_BATCH:
        raise HTTPException(400, f"{len(ras)} positions: at most {MAX_BATCH} per request")
    pos = [_position(r, d, f" #{k}") for k, (r, d) in enumerate(zip(ras, decs, strict=True))]
    j0, j1 = _jd_range(jdstart, jdend)
    ids = create_requests(ctx.engine, user.id, pos, j0, j1, batch=True)
    background.add_task(run_requests, ctx.home, ctx.engine, ids)
    return _submitted(ids, pos)


def _when(t: dt.datetime | None) -> str:
    return "" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")


def _status(request: Request, ctx: ArchiveContext, email: str | None, userpass: str | None,
            option: str | None, batch: bool) -> HTMLResponse:
    user = _caller(request, ctx, email, userpass)
    prefix = BATCH_PREFIX if batch else SINGLE_PREFIX
    t = ForcedPhotRequest
    q = select(t).where(t.user_id == user.id, t.relpath.like(f"%/{prefix}%"))
    if option and "pending" in option.lower():
        q = q.where(t.exitcode.is_(None))
    with session(ctx.engine) as s:
        reqs = s.execute(q.order_by(t.reqid)).scalars().all()
        rows = [(r.reqid, r.ra, r.dec, r.jdstart, r.jdend, r.created, r.started, r.ended,
                 r.exitcode, r.relpath, r.message) for r in reqs]
    if not rows:
        return _page("Forced photometry requests",
                     f"<p>Zero records returned for {html.escape(user.username)} "
                     f"({html.escape(option or 'All recent jobs')}).</p>", status=400)
    names = ("reqId", "ra", "dec", "startJD", "endJD", "created", "started", "ended",
             "machine", "exitcode", "lightcurve")
    head = "".join(f"<th>{n}</th>" for n in names)
    body = []
    for reqid, ra, dec, j0, j1, c, st, en, code, rel, msg in rows:
        link = f"/ztf/ops/forcedphot/lc/{rel[len(LC_DIR) + 1:]}" if code == 0 and rel else ""
        cells = [reqid, f"{ra:.7f}", f"{dec:.7f}", "" if j0 is None else f"{j0:.6f}",
                 "" if j1 is None else f"{j1:.6f}", _when(c), _when(st), _when(en),
                 "zsds" if st else "", "" if code is None else code,
                 link if link else html.escape(msg or "")]
        body.append("<tr>" + "".join(f"<td>{v}</td>" for v in cells) + "</tr>")
    return _page("Forced photometry requests",
                 f"<table border='1'><tr>{head}</tr>{''.join(body)}</table>")


@router.get("/cgi-bin/getBatchForcedPhotometryRequests.cgi")
def status_batch(request: Request, ctx: Ctx,
                 email: str | None = None, userpass: str | None = None,
                 option: str | None = None, action: str | None = None) -> HTMLResponse:
    """The caller's batch requests as an HTML table (``option``: All recent jobs / Pending
    jobs); 400 "Zero records" when there are none."""
    return _status(request, ctx, email, userpass, option, batch=True)


@router.get("/cgi-bin/getForcedPhotometryRequests.cgi")
def status_single(request: Request, ctx: Ctx,
                  email: str | None = None, userpass: str | None = None,
                  option: str | None = None, action: str | None = None) -> HTMLResponse:
    """The caller's single-position requests (as :func:`status_batch`)."""
    return _status(request, ctx, email, userpass, option, batch=False)


@router.get(LC_URL + "/{token}/{name}")
def download_lc(token: str, name: str, request: Request,
                ctx: Ctx,
                email: str | None = None, userpass: str | None = None) -> FileResponse:
    """One ``lc.txt``: for any zsds user, or with the ZFPS service credential."""
    if not _is_service(request):
        _caller(request, ctx, email, userpass)
    rel = f"{LC_DIR}/{token}/{name}"
    with session(ctx.engine) as s:
        req = s.scalar(select(ForcedPhotRequest).where(ForcedPhotRequest.relpath == rel))
        done = req is not None and req.exitcode == 0
    path = ctx.home.path(rel)
    if not done or not path.is_file():
        raise HTTPException(404, f"no such light curve: {name}")
    return FileResponse(path, media_type="text/plain", filename=name)


def _plain(s: pd.Series) -> np.ndarray:
    """A column as plain numpy (nullable integers with a null become float NaN)."""
    if s.name == "filter":
        return s.to_numpy(dtype=str)
    if isinstance(s.dtype, pd.Int64Dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan) if s.hasnans else s.to_numpy(
            dtype=np.int64)
    return s.to_numpy(dtype=np.float64)


@router.get("/api/forcedphot")
def api_forcedphot(ctx: Ctx,
                   user: Annotated[User, Depends(require_user)],
                   ra: Annotated[float, Query(ge=0, le=360)],
                   dec: Annotated[float, Query(ge=-90, le=90)],
                   jdstart: float | None = None, jdend: float | None = None,
                   format: str = "json") -> Response:
    """Forced photometry measured now, as JSON (``{columns, rows}``), CSV or lc.txt
    (``format=json|csv|lc``); for the web UI."""
    j0, j1 = _jd_range(jdstart, jdend)
    fmt = format.strip().lower()
    if fmt not in ("json", "csv", "lc", "txt"):
        raise HTTPException(400, f"unknown format {format!r}: use json, csv or lc")
    lc = forced_photometry(ctx.home, ctx.engine, ra, dec, j0, j1)
    if fmt in ("lc", "txt"):
        return Response(lc_text(lc, ra, dec, j0, j1), media_type="text/plain")
    t = Table({c: _plain(lc[c]) for c in LC_COLUMNS})
    return table_response(t, fmt)
