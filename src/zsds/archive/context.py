"""What every request of the archive service can reach: the home, the database, the config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from zsds.core.home import Home

if TYPE_CHECKING:
    from zsds.archive.policy import AccessPolicy
    from zsds.archive.security import LoginThrottle


@dataclass(frozen=True)
class ArchiveConfig:
    """Settings of the archive service.

    Parameters
    ----------
    title : str
        Name shown by the web UI and the OpenAPI description.
    restricted_patterns : tuple of str
        ``fnmatch`` patterns of home-relative paths that only logged-in users may fetch: the
        real-time products of the depot (streaks, moving-object tracks and reports, alert
        packets and the difference-image candidate tables and cutouts they are made of, QA
        logs) by default (:mod:`zsds.archive.policy`).
    restricted_tables : tuple of str
        Database tables whose rows only logged-in users may read: the alert stream
        (``candidates``, ``alerts``) and the real-time solar-system products by default.
    session_hours : float
        Lifetime of a login cookie.
    max_rows : int
        Hard limit of rows of one search (TAP ``hard`` output limit).
    default_rows : int
        Default row limit of TAP/SIA searches.
    collection : str
        The light-curve collection name served (IRSA's ``ztf_drN``); any ``ztf_dr*`` value is
        accepted by the light-curve API.
    max_body_bytes : int
        Largest request body accepted (413 beyond).
    secure_cookies : bool
        Mark cookies ``Secure`` and send HSTS on every response: set it when the service is
        reached over HTTPS through a proxy that does not send ``X-Forwarded-Proto`` (with
        that header, or over HTTPS directly, it is automatic).
    login_max_failures : int
        Failed passwords for one user name within ``login_window_s`` that lock it out.
    login_max_failures_per_client : int
        Failed passwords from one client address within ``login_window_s`` that lock the
        address out.
    login_window_s, login_lockout_s : float
        The counting window and the lockout time (seconds).
    tap_jobs_per_user : int
        Async TAP jobs a logged-in user keeps at most (their own oldest finished jobs are
        deleted first; 429 when all are still pending).
    tap_jobs_per_client : int
        Anonymous async TAP jobs one client address keeps at most (its own oldest go first).
    tap_jobs_anonymous : int
        Anonymous async TAP jobs kept at most in all (the oldest anonymous ones go first;
        a logged-in user's jobs are never removed for anybody else's).
    """

    title: str = "zsds archive"
    restricted_patterns: tuple[str, ...] = field(default=(
        "products/sci/*_streaks.fits",
        "products/sci/*_diffcands.fits",
        "products/sci/*_candcutouts.fits",
        "products/moving/*",
        "alerts/*",
        "logs/*",
        "products/qa/*",
    ))
    restricted_tables: tuple[str, ...] = field(default=(
        "candidates", "alerts", "ss_tracks", "ss_track_members", "streaks",
    ))
    session_hours: float = 12.0
    max_rows: int = 1_000_000
    default_rows: int = 20_000
    collection: str = "ztf_dr23"
    max_body_bytes: int = 16 * 1024 * 1024
    secure_cookies: bool = False
    login_max_failures: int = 5
    login_max_failures_per_client: int = 50
    login_window_s: float = 900.0
    login_lockout_s: float = 900.0
    tap_jobs_per_user: int = 100
    tap_jobs_per_client: int = 20
    tap_jobs_anonymous: int = 500


@dataclass
class ArchiveContext:
    """The shared state of the service (one per app)."""

    home: Home
    engine: Engine
    config: ArchiveConfig
    policy: AccessPolicy = field(init=False)
    throttle: LoginThrottle = field(init=False)

    def __post_init__(self) -> None:
        from zsds.archive.policy import AccessPolicy
        from zsds.archive.security import LoginThrottle

        cfg = self.config
        self.policy = AccessPolicy(tuple(cfg.restricted_patterns),
                                   frozenset(cfg.restricted_tables))
        self.throttle = LoginThrottle(self.engine, cfg.login_max_failures, cfg.login_window_s,
                                      cfg.login_lockout_s, cfg.login_max_failures_per_client)


def get_ctx(request: Request) -> ArchiveContext:
    """FastAPI dependency: the app's :class:`ArchiveContext`."""
    return request.app.state.ctx


#: Route-parameter annotation for the shared context.
Ctx = Annotated[ArchiveContext, Depends(get_ctx)]
