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

    The restricted products and tables default to the real-time products
    (:mod:`zsds.archive.policy`). Any ``ztf_dr*`` collection is accepted by the light-curve API.
    ``secure_cookies`` is needed only when the service is reached over HTTPS through a proxy
    that does not send ``X-Forwarded-Proto`` (with that header, or over HTTPS directly, it is
    automatic). Past ``tap_jobs_per_user`` a user's own oldest finished jobs are deleted first
    (429 when all are still pending); past the anonymous limits the oldest anonymous jobs go
    first, and a logged-in user's jobs are never removed for anybody else's.
    """

    title: str = "zsds archive"  #: name shown by the web UI and the OpenAPI description
    #: ``fnmatch`` patterns of home-relative paths only logged-in users may fetch: streaks,
    #: moving-object tracks and reports, alert packets with their candidate tables and
    #: cutouts, QA logs by default.
    restricted_patterns: tuple[str, ...] = field(default=(
        "products/sci/*_streaks.fits",
        "products/sci/*_diffcands.fits",
        "products/sci/*_candcutouts.fits",
        "products/moving/*",
        "alerts/*",
        "logs/*",
        "products/qa/*",
    ))
    #: Database tables whose rows only logged-in users may read: the alert stream and the
    #: real-time solar-system products by default.
    restricted_tables: tuple[str, ...] = field(default=(
        "candidates", "alerts", "ss_tracks", "ss_track_members", "streaks",
    ))
    session_hours: float = 12.0  #: lifetime of a login cookie (hours)
    max_rows: int = 1_000_000  #: hard row limit of one search (TAP ``hard`` output limit)
    default_rows: int = 20_000  #: default row limit of TAP/SIA searches
    collection: str = "ztf_dr23"  #: light-curve collection served (IRSA's ``ztf_drN``)
    max_body_bytes: int = 16 * 1024 * 1024  #: largest request body accepted (413 beyond)
    request_threads: int = 8  #: threads running a worker's blocking requests (anyio's: 40)
    secure_cookies: bool = False  #: ``Secure`` cookies and HSTS on every response
    login_max_failures: int = 5  #: failed passwords per user name in the window: lockout
    login_max_failures_per_client: int = 50  #: failed passwords per client address: lockout
    login_window_s: float = 900.0  #: window counting failed passwords (s)
    login_lockout_s: float = 900.0  #: lockout time (s)
    tap_jobs_per_user: int = 100  #: async TAP jobs a logged-in user keeps at most
    tap_jobs_per_client: int = 20  #: anonymous async TAP jobs one client address keeps at most
    tap_jobs_anonymous: int = 500  #: anonymous async TAP jobs kept at most in all


@dataclass
class ArchiveContext:
    """The shared state of the service (one per app)."""

    home: Home  #: the data home served
    engine: Engine  #: database of the home
    config: ArchiveConfig  #: the service's settings
    policy: AccessPolicy = field(init=False)  #: access policy of the restricted patterns, tables
    throttle: LoginThrottle = field(init=False)  #: login lockout counter (``login_*`` settings)

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
