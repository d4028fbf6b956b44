"""Accounts, tokens and logins of the archive.

* Passwords are hashed with scrypt (:func:`hashlib.scrypt`, RFC 7914; n=2**14, r=8, p=1, a
  16-byte random salt), the standard library's memory-hard KDF, so no extra dependency.
* Tokens are 32 random bytes (:func:`secrets.token_urlsafe`); only their SHA-256 is stored.
  ``api`` tokens are made by ``zsds users token`` and sent as ``Authorization: Bearer T`` (or
  ``token T``); ``session`` tokens are the login cookie.
* A request is authenticated by, in order: a bearer token, HTTP Basic credentials (what
  ``curl --user`` and the ZFPS scripts send), or the session cookie set by the IRSA login
  endpoint ``/account/signon/login.do`` (cookie ``JOSSO_SESSIONID``, as ztfquery expects).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fnmatch
import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import Engine, delete, select, update

from zsds.archive.context import ArchiveContext, Ctx
from zsds.db.engine import session
from zsds.db.schema import ApiToken, User, utcnow

COOKIE = "JOSSO_SESSIONID"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


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
    """The enabled user with these credentials.

    Raises
    ------
    AuthError
        On any mismatch.
    """
    with session(engine) as s:
        user = s.scalar(select(User).where(User.username == username.strip()))
        if user is None or user.disabled or not verify_password(password, user.password_hash):
            raise AuthError("invalid user name or password")
        s.expunge(user)
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


def request_user(request: Request, ctx: ArchiveContext) -> User | None:
    """The user a request authenticates as (bearer token, Basic, cookie), or None."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme in ("bearer", "token") and value:
        return user_for_token(ctx.engine, value.strip())
    if scheme == "basic" and value:
        try:
            name, _, pw = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        try:
            return authenticate(ctx.engine, name, pw)
        except AuthError:
            return None
    cookie = request.cookies.get(COOKIE)
    if cookie:
        return user_for_token(ctx.engine, cookie)
    return None


def current_user(request: Request, ctx: Ctx
                 ) -> User | None:
    """FastAPI dependency: the authenticated user, or None for an anonymous request."""
    return request_user(request, ctx)


#: Route-parameter annotation for the authenticated user, or None when anonymous.
MaybeUser = Annotated[User | None, Depends(current_user)]


def require_user(user: MaybeUser) -> User:
    """FastAPI dependency: the authenticated user; 401 (with a Basic challenge) otherwise."""
    if user is None:
        raise HTTPException(status_code=401, detail="login required",
                            headers={"WWW-Authenticate": 'Basic realm="zsds"'})
    return user


def is_restricted(ctx: ArchiveContext, relpath: str) -> bool:
    """Whether a home-relative path belongs to the depot (login needed)."""
    return any(fnmatch.fnmatch(relpath, pat) for pat in ctx.config.restricted_patterns)


router = APIRouter(tags=["accounts"])


def _login(ctx: ArchiveContext, username: str, password: str, next_url: str | None
           ) -> Response:
    try:
        user = authenticate(ctx.engine, username, password)
    except AuthError as exc:
        raise HTTPException(status_code=401, detail=str(exc)) from None
    token = issue_token(ctx.engine, user.id, kind="session", hours=ctx.config.session_hours)
    resp: Response = (RedirectResponse(next_url, status_code=303) if next_url
                      else JSONResponse({"status": "ok", "user": user.username}))
    resp.set_cookie(COOKIE, token, httponly=True, samesite="lax", path="/",
                    max_age=int(ctx.config.session_hours * 3600))
    return resp


@router.get("/account/signon/login.do")
def login_get(ctx: Ctx, josso_cmd: str = "login",
              josso_username: str = "", josso_password: str = "") -> Response:
    """IRSA's login (what ztfquery calls before every request): sets the session cookie."""
    return _login(ctx, josso_username, josso_password, None)


@router.post("/account/signon/login.do")
def login_post(ctx: Ctx,
               josso_username: Annotated[str, Form()] = "",
               josso_password: Annotated[str, Form()] = "",
               next: Annotated[str | None, Form()] = None) -> Response:
    """Form login of the web UI (redirects to ``next``) and of curl ``-d`` recipes."""
    if next is not None and not next.startswith("/"):
        next = "/"  # never redirect off-site
    return _login(ctx, josso_username, josso_password, next)


@router.get("/account/signon/logout.do")
def logout(request: Request, ctx: Ctx) -> Response:
    """Forget the session cookie."""
    cookie = request.cookies.get(COOKIE)
    if cookie:
        revoke_token(ctx.engine, cookie)
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


@router.post("/account/token")
def new_token(ctx: Ctx,
              user: Annotated[User, Depends(require_user)],
              name: Annotated[str | None, Form()] = None,
              hours: Annotated[float | None, Form()] = None) -> dict:
    """A new API token for the authenticated user (shown once), for ``Authorization: Bearer``."""
    return {"token": issue_token(ctx.engine, user.id, kind="api", name=name, hours=hours),
            "user": user.username}


@router.get("/account/whoami")
def whoami(user: MaybeUser) -> dict:
    """The logged-in user (``null`` when anonymous)."""
    return {"user": user.username if user else None,
            "admin": bool(user.is_admin) if user else False}
