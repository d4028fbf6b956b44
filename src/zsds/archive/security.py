"""Security machinery of the archive service, installed on the app by :func:`install`.

* **Headers** (:class:`SecurityHeadersMiddleware`): every response carries a
  Content-Security-Policy (scripts, styles and frames from the service itself only,
  ``frame-ancestors 'none'``), ``X-Frame-Options: DENY``, ``X-Content-Type-Options:
  nosniff`` and ``Referrer-Policy: same-origin``; ``Strict-Transport-Security`` when the
  request came over HTTPS.
* **Request size** (:class:`BodyLimitMiddleware`): a body above
  :attr:`~zsds.archive.context.ArchiveConfig.max_body_bytes` is refused with 413, by its
  ``Content-Length`` before it is read, or as soon as the streamed bytes pass the limit.
* **CSRF** (:func:`csrf_token`, :func:`csrf_ok`, :func:`same_origin`): a request that changes
  state and is authenticated by the session cookie must carry the session's CSRF token
  (``X-CSRF-Token`` header, or a ``csrf_token`` form field or query parameter) or come from
  a page of the service itself (``Sec-Fetch-Site``, ``Origin`` or ``Referer`` naming this
  origin). Bearer tokens are never sent by a browser on its own, so they need neither.
* **Logins** (:class:`LoginThrottle`): failed passwords are counted per user name and per
  client address; past the limit the name (or address) is locked out for a while and gets
  429 without its password being checked.
* **Redirects** (:func:`safe_next`): only same-origin relative paths.
* **Logs** (:class:`RedactSecrets`): passwords and tokens in query strings are replaced by
  ``***`` in uvicorn's access log (ztfquery logs in with a GET that carries the password).
* **Safety net** (:func:`bad_input_handler`): errors that only bad input raises deep in the
  stack (integers beyond 64 bits, too-deep recursion, impossible allocations, values the
  database refuses) become a 4xx with a clear message, logged with their traceback so that a
  server bug hiding behind one is still seen; every other exception stays a logged 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.exc import DataError
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from zsds.db.schema import LoginFailure, LoginLockout

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Policy of every page: nothing from elsewhere, no inline script or style, no framing.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
#: FastAPI's interactive API pages load Swagger UI / ReDoc from their CDN with an inline
#: bootstrap script; they reflect no input, so they alone get this wider policy.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net "
            "https://fonts.googleapis.com; font-src https://fonts.gstatic.com; "
            "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
            "worker-src blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})

#: Header and form/query names of the CSRF token.
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
#: Methods that do not change state (RFC 9110 "safe" methods).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: Query parameters whose values never reach a log.
SECRET_PARAMS = ("josso_password", "userpass", "password", "passwd", "pass", "pw", "token",
                 "access_token", "csrf_token", "apikey", "api_key")
_SECRET_RE = re.compile(r"(?i)((?:^|[?&;])(?:" + "|".join(SECRET_PARAMS) + r")=)[^&;\s\"]*")


# --------------------------------------------------------------------------- HTTPS


def is_https(headers: Headers, scheme: str, forced: bool = False) -> bool:
    """Whether a request reached the service over HTTPS: its own scheme, or the
    ``X-Forwarded-Proto`` of a TLS-terminating proxy in front of it, or ``forced``
    (:attr:`~zsds.archive.context.ArchiveConfig.secure_cookies`)."""
    if forced or scheme == "https":
        return True
    proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return proto == "https"


def request_is_https(request: Request) -> bool:
    """:func:`is_https` of a request (with the app's ``secure_cookies`` setting)."""
    return is_https(request.headers, request.url.scheme,
                    request.app.state.ctx.config.secure_cookies)


# --------------------------------------------------------------------------- middleware


class SecurityHeadersMiddleware:
    """ASGI middleware adding the security headers to every HTTP response (see the module
    docstring); headers a route set itself are kept."""

    def __init__(self, app: ASGIApp, *, force_https: bool = False):
        self.app = app
        self.force_https = force_https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope.get("path") in DOCS_PATHS else CSP
        https = is_https(Headers(scope=scope), scope.get("scheme", "http"), self.force_https)
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                h = MutableHeaders(scope=message)
                h.setdefault("Content-Security-Policy", csp)
                h.setdefault("X-Frame-Options", "DENY")
                h.setdefault("X-Content-Type-Options", "nosniff")
                h.setdefault("Referrer-Policy", "same-origin")
                h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                if https:
                    h.setdefault("Strict-Transport-Security", "max-age=31536000")
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if started:
                raise
            # A server bug: Starlette's error middleware, outside this one, would answer a
            # bare 500; answer it here with the headers, and let the exception go on to be
            # logged by the server.
            resp = JSONResponse({"detail": "internal server error"}, status_code=500)
            await send_with_headers({"type": "http.response.start", "status": 500,
                                     "headers": resp.raw_headers})
            await send_with_headers({"type": "http.response.body", "body": resp.body})
            raise


class RequestTooLarge(StarletteHTTPException):
    """A request body beyond the service's limit (413). An ``HTTPException`` so that FastAPI's
    body parsing passes it on instead of turning it into a 400."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit} bytes")


class BodyLimitMiddleware:
    """ASGI middleware refusing request bodies above ``max_bytes`` with 413.

    A declared ``Content-Length`` above the limit is refused before anything is read; a
    chunked body is counted as it streams in, and reading stops at the limit.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _json_error(send, 400, "invalid Content-Length header")
                return
            if size > self.max_bytes:
                await _json_error(send, 413, f"request body larger than {self.max_bytes} "
                                             "bytes")
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise RequestTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


async def _json_error(send: Send, status: int, detail: str) -> None:
    resp = JSONResponse({"detail": detail}, status_code=status)
    await send({"type": "http.response.start", "status": status,
                "headers": resp.raw_headers})
    await send({"type": "http.response.body", "body": resp.body})


# --------------------------------------------------------------------------- CSRF


def csrf_token(session_token: str) -> str:
    """The CSRF token of a login session: a keyed hash of the session cookie.

    A page of another site can make the browser *send* the cookie but never *read* it (it is
    ``HttpOnly``), so it cannot compute this value; deriving it instead of storing it keeps
    it valid across workers and restarts for the session's lifetime.
    """
    digest = hmac.new(b"zsds-csrf-v1", session_token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def service_origin(request: Request) -> str:
    """This service's origin as the browser sees it (scheme from a proxy's
    ``X-Forwarded-Proto``, host from ``X-Forwarded-Host`` or ``Host``)."""
    scheme = "https" if request_is_https(request) else request.url.scheme
    host = (request.headers.get("x-forwarded-host", "").split(",")[0].strip()
            or request.headers.get("host") or request.url.netloc)
    return f"{scheme}://{host.lower()}"


def same_origin(request: Request) -> bool | None:
    """Whether a browser says the request comes from a page of this service.

    Returns True (same origin), False (another site, or an opaque ``Origin: null``) or None
    when the request carries none of ``Sec-Fetch-Site``, ``Origin`` and ``Referer`` (a
    script or command-line client rather than a browser).
    """
    site = request.headers.get("sec-fetch-site", "").strip().lower()
    if site:
        # "none": typed in the address bar or a bookmark, which no other site can forge
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.strip().lower() == service_origin(request)
    referer = request.headers.get("referer")
    if referer:
        return _origin(referer) == service_origin(request)
    return None


def sent_csrf_token(request: Request) -> str | None:
    """The CSRF token a request carries: header, form field (read by :func:`read_form_token`)
    or query parameter."""
    return (request.headers.get(CSRF_HEADER)
            or getattr(request.state, "csrf_form_token", None)
            or request.query_params.get(CSRF_FIELD))


def csrf_ok(request: Request, session_token: str) -> bool:
    """Whether a cookie-authenticated request that changes state may proceed: it carries the
    session's CSRF token, or the browser positively says it comes from this origin (no
    signal at all is not enough: that is a strict Origin/Referer check)."""
    sent = sent_csrf_token(request)
    if sent and hmac.compare_digest(sent.encode(), csrf_token(session_token).encode()):
        return True
    return same_origin(request) is True


async def read_form_token(request: Request) -> None:
    """FastAPI dependency: the ``csrf_token`` field of a form body, kept on ``request.state``
    for :func:`sent_csrf_token` (Starlette caches the parsed form, so the route reads the
    same one)."""
    if request.method in SAFE_METHODS:
        return
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        request.state.csrf_form_token = value if isinstance(value, str) else None


# --------------------------------------------------------------------------- redirects


def safe_next(target: str | None, default: str = "/") -> str:
    """``target`` when it is a same-origin relative path (``/ui/depot?x=1``), else
    ``default``: no scheme, no host, no scheme-relative ``//host`` or ``/\\host`` (which
    browsers read as ``//host``), no control characters."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return default
    try:
        parts = urlsplit(target)
    except ValueError:
        return default
    if parts.scheme or parts.netloc:
        return default
    return target


# --------------------------------------------------------------------------- login throttle


class LoginThrottle:
    """Counts failed logins and locks out a user name or a client address past a limit.

    The counts live in the database (tables ``login_failures`` and ``login_lockouts``), so
    every worker process of ``zsds serve --workers N`` sees the same ones: the limit holds
    for the service as a whole, whichever process the kernel hands a connection to.

    Parameters
    ----------
    engine : Engine
        The service's database.
    max_failures : int
        Failed passwords for one user name within ``window_s`` that lock the name out.
    window_s : float
        Sliding window of the count (seconds).
    lockout_s : float
        How long a locked name or address is refused (seconds).
    max_failures_per_client : int
        Failed passwords from one client address within ``window_s`` (any names) that lock
        the address out: guessing many names from one place is stopped too.
    clock : callable
        Wall-clock seconds (shared by the processes; replaceable in tests).

    Notes
    -----
    Failures older than the window are deleted as new ones come, so a flood of made-up
    names leaves at most a window's worth of rows. Two processes counting the same key at
    the same instant may each let one more attempt through; the limit is otherwise exact.
    """

    def __init__(self, engine: Engine, max_failures: int = 5, window_s: float = 900.0,
                 lockout_s: float = 900.0, max_failures_per_client: int = 50,
                 clock: Callable[[], float] = time.time):
        self.engine = engine
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_failures_per_client = max_failures_per_client
        self.clock = clock

    @staticmethod
    def _keys(username: str, client: str) -> tuple[str, str]:
        return f"user:{username.strip().lower()}"[:200], f"client:{client}"[:200]

    def retry_after(self, username: str, client: str) -> float:
        """Seconds until a login of ``username`` from ``client`` is accepted again (0: now)."""
        now = self.clock()
        with self.engine.connect() as conn:
            until = conn.execute(select(func.max(LoginLockout.until)).where(
                LoginLockout.key.in_(self._keys(username, client)))).scalar()
        return max(0.0, (until or 0.0) - now)

    def failure(self, username: str, client: str) -> None:
        """Count a failed password (and lock out what passed its limit)."""
        now = self.clock()
        limits = dict(zip(self._keys(username, client),
                          (self.max_failures, self.max_failures_per_client), strict=True))
        with self.engine.begin() as conn:
            conn.execute(delete(LoginFailure).where(LoginFailure.at <= now - self.window_s))
            conn.execute(delete(LoginLockout).where(LoginLockout.until <= now))
            conn.execute(insert(LoginFailure), [{"key": k, "at": now} for k in limits])
            counts = dict(conn.execute(
                select(LoginFailure.key, func.count()).where(LoginFailure.key.in_(limits))
                .group_by(LoginFailure.key)).all())
            for key, limit in limits.items():
                if counts.get(key, 0) >= limit:
                    conn.execute(delete(LoginLockout).where(LoginLockout.key == key))
                    conn.execute(insert(LoginLockout).values(key=key,
                                                             until=now + self.lockout_s))
                    conn.execute(delete(LoginFailure).where(LoginFailure.key == key))

    def success(self, username: str, client: str) -> None:
        """Forget the failures of a user name after a correct password."""
        with self.engine.begin() as conn:
            conn.execute(delete(LoginFailure).where(
                LoginFailure.key == self._keys(username, client)[0]))


def client_address(request: Request) -> str:
    """The peer address of a request (a proxy's own address when behind one)."""
    return request.client.host if request.client else "unknown"


# --------------------------------------------------------------------------- logs


class RedactSecrets(logging.Filter):
    """Logging filter replacing the values of password and token query parameters
    (:data:`SECRET_PARAMS`) with ``***`` in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_SECRET_RE.sub(r"\1***", a) if isinstance(a, str) else a
                                for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _SECRET_RE.sub(r"\1***", record.msg)
        return True


def redact(text: str) -> str:
    """``text`` with the values of secret query parameters replaced by ``***``."""
    return _SECRET_RE.sub(r"\1***", text)


def install_log_redaction(names: tuple[str, ...] = ("uvicorn.access", "uvicorn.error",
                                                    "gunicorn.access")) -> None:
    """Add :class:`RedactSecrets` to the server loggers (once per logger)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())


# --------------------------------------------------------------------------- safety net


#: Exceptions that reach the top of a request only through bad input, and their answers.
BAD_INPUT: dict[type[BaseException], tuple[int, str]] = {
    OverflowError: (400, "a numeric parameter is out of range"),
    RecursionError: (400, "the request is nested too deeply"),
    MemoryError: (413, "the request needs more memory than the service allows"),
    DataError: (400, "a parameter value is out of range for the database"),
}


async def bad_input_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer an exception of :data:`BAD_INPUT` with its 4xx, and log it with its
    traceback (a warning: it is most likely bad input, but a server bug would look alike)."""
    status, message = next((v for k, v in BAD_INPUT.items() if isinstance(exc, k)),
                           (400, "bad request"))
    log.warning("%s %s answered %d: %s: %s", request.method, redact(str(request.url)), status,
                type(exc).__name__, str(exc)[:200], exc_info=exc)
    return JSONResponse({"detail": f"{message} ({type(exc).__name__})"}, status_code=status)


def install(app: FastAPI, *, max_body_bytes: int, force_https: bool) -> None:
    """Install the middleware, the safety net and the log redaction on an app."""
    for exc_type in BAD_INPUT:
        app.add_exception_handler(exc_type, bad_input_handler)
    # Added last = outermost: the headers are set on every response, 413s included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware, force_https=force_https)
    install_log_redaction()


def retry_after_header(seconds: float) -> dict[str, str]:
    """``Retry-After`` header of a wait (whole seconds, at least 1)."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
