"""What every request of the archive service can reach: the home, the database, the config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from zsds.core.home import Home


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
        packets, QA logs) by default.
    session_hours : float
        Lifetime of a login cookie.
    max_rows : int
        Hard limit of rows of one search (TAP ``hard`` output limit).
    default_rows : int
        Default row limit of TAP/SIA searches.
    collection : str
        The light-curve collection name served (IRSA's ``ztf_drN``); any ``ztf_dr*`` value is
        accepted by the light-curve API.
    """

    title: str = "zsds archive"
    restricted_patterns: tuple[str, ...] = field(default=(
        "products/sci/*_streaks.fits",
        "products/moving/*",
        "alerts/*",
        "logs/*",
        "products/qa/*",
    ))
    session_hours: float = 12.0
    max_rows: int = 1_000_000
    default_rows: int = 20_000
    collection: str = "ztf_dr23"


@dataclass
class ArchiveContext:
    """The shared state of the service (one per app)."""

    home: Home
    engine: Engine
    config: ArchiveConfig


def get_ctx(request: Request) -> ArchiveContext:
    """FastAPI dependency: the app's :class:`ArchiveContext`."""
    return request.app.state.ctx


#: Route-parameter annotation for the shared context.
Ctx = Annotated[ArchiveContext, Depends(get_ctx)]
