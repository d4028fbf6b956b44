"""Accounts, tokens and logins of the archive.

* Passwords are hashed with scrypt (:func:`hashlib.scrypt`, RFC 7914; n=2**14, r=8, p=1, a
  16-byte random salt), the standard library's memory-hard KDF, so no extra dependency.
  A login costs one scrypt whether or not the user exists (a dummy hash is checked for an
  unknown name), so response times do not tell which names exist.
* Failed passwords are counted per user name and per client address
  (:class:`~zsds.archive.security.LoginThrottle`): past the limit the name or address gets
  429 with ``Retry-After``, and its passwords are not even checked until the lockout ends.
* Tokens are 32 random bytes (:func:`secrets.token_urlsafe`); only their SHA-256 is stored.
  ``api`` tokens are made by ``zsds users token`` and sent as ``Authorization: Bearer T`` (or
  ``token T``); ``session`` tokens are the login cookie.
* A request is authenticated by, in order: a bearer token, HTTP Basic credentials (what
  ``curl --user`` and the ZFPS scripts send), or the session cookie set by the IRSA login
  endpoint ``/account/signon/login.do`` (cookie ``JOSSO_SESSIONID``, as ztfquery expects).
  The cookie is ``HttpOnly``, ``SameSite=Lax`` and ``Secure`` behind HTTPS; a request that
  changes state with it must pass the CSRF check of :func:`zsds.archive.security.csrf_ok`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import hmac
import math
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import Engine, delete, select, update

from zsds.archive.context import ArchiveContext, Ctx
from zsds.archive.policy import READ_ONLY_POSTS, Access, Rule, login_required
from zsds.archive.security import (
    SAFE_METHODS,
    client_address,
    csrf_ok,
    csrf_token,
    request_is_https,
    retry_after_header,
    safe_next,
    same_origin,
)
from zsds.db.engine import session
from zsds.db.schema import ApiToken, User, utcnow

COOKIE = "JOSSO_SESSIONID"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
#: Longest user name and password looked at (longer ones cannot match any account).
MAX_CREDENTIAL_CHARS = 1024
#: IPAC's public service-level credentials of ZFPS (HTTP Basic), sent by its scripts with
#: every call: they identify nobody, so they are neither an account nor a failed login.
SERVICE_CREDENTIALS = ("ztffps", "dontgocrazy!")


class AuthError(ValueError):
    """A bad user name, password or token (the message never says which)."""


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$<salt hex>$<hash hex>`` of a password."""
    if not password:
        raise ValueError("empty password")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches the stored hash (constant-time comparison)."""
    try:
        algo, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if algo != "scrypt":
        return False
    got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                         p=int(p), dklen=len(digest) // 2)
    return hmac.compare_digest(got.hex(), digest)


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, checked when the user does not exist: the login then
    costs the same scrypt as for a real user."""
    return hash_password(secrets.token_urlsafe(16))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(engine: Engine, username: str, password: str, *, admin: bool = False,
                replace: bool = False) -> int:
    """Create an account (or reset its password with ``replace``); returns its id.

    Raises
    ------
    ValueError
        If the user exists and ``replace`` is False, or the name or password is empty.
    """
    username = username.strip()
    if not username:
        raise ValueError("empty user name")
    pw = hash_password(password)
    with session(engine) as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is not None and not replace:
            raise ValueError(f"user {username!r} exists (use --replace to reset the password)")
        if user is None:
            user = User(username=username, password_hash=pw, is_admin=admin)
            s.add(user)
        else:
            user.password_hash, user.is_admin, user.disabled = pw, admin, False
        s.flush()
        return user.id


def authenticate(engine: Engine, username: str, password: str) -> User:
    """The enabled user with these credentials, in the same time whatever the mismatch.

    Raises
    ------
    AuthError
        On any mismatch.
    """
    name = username.strip()[:MAX_CREDENTIAL_CHARS + 1]
    with session(engine) as s:
        user = s.scalar(select(User).where(User.username == name)) \
            if len(name) <= MAX_CREDENTIAL_CHARS else None
        # Always one scrypt: against the user's hash, or a dummy one for an unknown name.
        stored = user.password_hash if user is not None else _dummy_hash()
        ok = verify_password(password[:MAX_CREDENTIAL_CHARS + 1], stored)
        if user is None or user.disabled or not ok or len(password) > MAX_CREDENTIAL_CHARS:
            raise AuthError("invalid user name or password")
        s.expunge(user)
        return user


def login_user(ctx: ArchiveContext, request: Request, username: str, password: str) -> User:
    """:func:`authenticate` behind the login throttle of the service.

    Raises
    ------
    HTTPException
        429 (with ``Retry-After``) while the name or the client address is locked out.
    AuthError
        On wrong credentials (counted as a failure).
    """
    client = client_address(request)
    wait = ctx.throttle.retry_after(username, client)
    if wait > 0:
        raise HTTPException(429, f"too many failed logins: try again in {math.ceil(wait)} s",
                            headers=retry_after_header(wait))
    try:
        user = authenticate(ctx.engine, username, password)
    except AuthError:
        ctx.throttle.failure(username, client)
        raise
    ctx.throttle.success(username, client)
    return user


def issue_token(engine: Engine, user_id: int, *, kind: str = "api", name: str | None = None,
                hours: float | None = None) -> str:
    """A new token of a user (returned once; only its hash is kept)."""
    token = secrets.token_urlsafe(32)
    expires = utcnow() + dt.timedelta(hours=hours) if hours else None
    with session(engine) as s:
        s.add(ApiToken(user_id=user_id, token_hash=_token_hash(token), kind=kind, name=name,
                       expires_at=expires))
    return token


def revoke_token(engine: Engine, token: str) -> None:
    """Forget a token (logout)."""
    with session(engine) as s:
        s.execute(delete(ApiToken).where(ApiToken.token_hash == _token_hash(token)))


def user_for_token(engine: Engine, token: str) -> User | None:
    """The enabled user owning an unexpired token, or None."""
    now = utcnow()
    with session(engine) as s:
        row = s.execute(
            select(User, ApiToken).join(ApiToken, ApiToken.user_id == User.id)
            .where(ApiToken.token_hash == _token_hash(token))
        ).first()
        if row is None:
            return None
        user, tok = row
        expires = tok.expires_at
        if expires is not None and expires.tzinfo is None:  # SQLite drops the zone
            expires = expires.replace(tzinfo=dt.UTC)
        if user.disabled or (expires is not None and expires < now):
            return None
        s.execute(update(ApiToken).where(ApiToken.id == tok.id).values(last_used_at=now))
        s.expunge(user)
        return user


def _changes_state(request: Request) -> bool:
    """Whether a request may change state: every method but the safe ones, except the POSTs
    of searches (:data:`~zsds.archive.policy.READ_ONLY_POSTS`). (The two GETs that change
    state, IRSA's logout and ZFPS requests, check their callers themselves.)"""
    route = request.scope.get("route")
    return (request.method not in SAFE_METHODS
            and getattr(route, "path", None) not in READ_ONLY_POSTS)


def _forbidden_cross_site() -> HTTPException:
    return HTTPException(403, "cross-site request refused (CSRF): send the X-CSRF-Token header "
                              "of your session (GET /account/whoami), or use an API token")


def _resolve_user(request: Request, ctx: ArchiveContext) -> User | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme in ("bearer", "token") and value:
        # A browser never adds a bearer token by itself: no CSRF check is needed.
        return user_for_token(ctx.engine, value.strip())
    if scheme == "basic" and value:
        try:
            name, _, pw = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if (name, pw) == SERVICE_CREDENTIALS:
            return None
        # Browsers replay cached Basic credentials: refuse them from another site's page.
        if _changes_state(request) and same_origin(request) is False:
            raise _forbidden_cross_site()
        try:
            return login_user(ctx, request, name, pw)
        except AuthError:
            return None
    cookie = request.cookies.get(COOKIE)
    if cookie:
        user = user_for_token(ctx.engine, cookie)
        if user is not None and _changes_state(request) and not csrf_ok(request, cookie):
            raise _forbidden_cross_site()
        return user
    return None


def request_user(request: Request, ctx: ArchiveContext) -> User | None:
    """The user a request authenticates as (bearer token, Basic, cookie), or None.

    Resolved once per request (kept on ``request.state``).

    Raises
    ------
    HTTPException
        403 for a request that changes state with the session cookie (or cached Basic
        credentials) but fails the CSRF check; 429 while Basic logins are locked out.
    """
    cached = getattr(request.state, "zsds_user", None)
    if cached is not None:
        return cached[0]
    user = _resolve_user(request, ctx)
    request.state.zsds_user = (user,)
    return user


def authorize(request: Request) -> Access:
    """App-wide FastAPI dependency: resolve the caller, enforce the route's :class:`Rule` and
    keep the caller's :class:`Access` on ``request.state.access``."""
    ctx = request.app.state.ctx
    route = request.scope.get("route")
    rule = ctx.policy.route_rule(getattr(route, "path", None))
    if rule is Rule.PUBLIC:
        # Nothing restricted here: the caller is resolved only if the route asks (a cone
        # search with Basic credentials does not pay for a password hash).
        return Access(ctx.policy, None)
    user = request_user(request, ctx)
    access = Access(ctx.policy, user)
    request.state.access = access
    if rule is Rule.LOGIN and user is None:
        raise login_required()
    return access


def request_access(request: Request) -> Access:
    """The :class:`Access` of a request (resolved by :func:`authorize`, or now)."""
    access = getattr(request.state, "access", None)
    if access is None:
        ctx = request.app.state.ctx
        access = Access(ctx.policy, request_user(request, ctx))
        request.state.access = access
    return access


def current_user(request: Request) -> User | None:
    """FastAPI dependency: the authenticated user, or None for an anonymous request."""
    return request_access(request).user


#: Route-parameter annotation for the authenticated user, or None when anonymous.
MaybeUser = Annotated[User | None, Depends(current_user)]


def require_user(user: MaybeUser) -> User:
    """FastAPI dependency: the authenticated user; 401 (with a Basic challenge) otherwise."""
    if user is None:
        raise HTTPException(status_code=401, detail="login required",
                            headers={"WWW-Authenticate": 'Basic realm="zsds"'})
    return user


def is_restricted(ctx: ArchiveContext, relpath: str) -> bool:
    """Whether a home-relative path belongs to the depot (login needed): the service's
    :class:`~zsds.archive.policy.AccessPolicy`."""
    return ctx.policy.path_restricted(relpath)


router = APIRouter(tags=["accounts"])

#: Longest lifetime of an API token made through the API (ten years, in hours).
MAX_TOKEN_HOURS = 24.0 * 3653


def _login(ctx: ArchiveContext, request: Request, username: str, password: str,
           next_url: str | None) -> Response:
    try:
        user = login_user(ctx, request, username, password)
    except AuthError as exc:
        raise HTTPException(status_code=401, detail=str(exc)) from None
    token = issue_token(ctx.engine, user.id, kind="session", hours=ctx.config.session_hours)
    resp: Response = (RedirectResponse(safe_next(next_url), status_code=303) if next_url
                      else JSONResponse({"status": "ok", "user": user.username,
                                         "csrf_token": csrf_token(token)}))
    resp.set_cookie(COOKIE, token, httponly=True, samesite="lax", path="/",
                    secure=request_is_https(request),
                    max_age=int(ctx.config.session_hours * 3600))
    resp.headers["Cache-Control"] = "no-store"
    return resp


@router.get("/account/signon/login.do")
def login_get(request: Request, ctx: Ctx, josso_cmd: str = "login",
              josso_username: str = "", josso_password: str = "") -> Response:
    """IRSA's login (what ztfquery calls before every request): sets the session cookie.

    The password travels in the query string because ztfquery sends it there; the service
    never logs it (:class:`~zsds.archive.security.RedactSecrets`), and forms post instead.
    """
    return _login(ctx, request, josso_username, josso_password, None)


@router.post("/account/signon/login.do")
def login_post(request: Request, ctx: Ctx,
               josso_username: Annotated[str, Form()] = "",
               josso_password: Annotated[str, Form()] = "",
               next: Annotated[str | None, Form()] = None) -> Response:
    """Form login of the web UI (redirects to ``next``, a same-origin path only) and of
    curl ``-d`` recipes."""
    if same_origin(request) is False:  # another site logging the browser in (login CSRF)
        raise _forbidden_cross_site()
    return _login(ctx, request, josso_username, josso_password,
                  None if next is None else safe_next(next))


@router.get("/account/signon/logout.do")
def logout(request: Request, ctx: Ctx) -> Response:
    """Forget the session cookie (refused from another site's page)."""
    if same_origin(request) is False:
        raise _forbidden_cross_site()
    cookie = request.cookies.get(COOKIE)
    if cookie:
        revoke_token(ctx.engine, cookie)
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax",
                       secure=request_is_https(request))
    return resp


@router.post("/account/token")
def new_token(ctx: Ctx,
              user: Annotated[User, Depends(require_user)],
              name: Annotated[str | None, Form(max_length=128)] = None,
              hours: Annotated[float | None, Form(gt=0, le=MAX_TOKEN_HOURS)] = None) -> dict:
    """A new API token for the authenticated user (shown once), for ``Authorization: Bearer``.

    With the session cookie, the request needs the session's CSRF token (``X-CSRF-Token``).
    """
    return {"token": issue_token(ctx.engine, user.id, kind="api", name=name, hours=hours),
            "user": user.username}


@router.get("/account/whoami")
def whoami(request: Request, user: MaybeUser) -> JSONResponse:
    """The logged-in user (``null`` when anonymous), and the CSRF token of a cookie session
    (to send as ``X-CSRF-Token`` with requests that change state)."""
    cookie = request.cookies.get(COOKIE)
    via_cookie = user is not None and cookie and not request.headers.get("authorization")
    return JSONResponse({"user": user.username if user else None,
                         "admin": bool(user.is_admin) if user else False,
                         "csrf_token": csrf_token(cookie) if via_cookie else None},
                        headers={"Cache-Control": "no-store"})
