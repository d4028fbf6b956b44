"""The archive service as one FastAPI application.

:func:`create_app` mounts every router of :mod:`zsds.archive` on a shared
:class:`~zsds.archive.context.ArchiveContext`; ``zsds serve`` runs it under uvicorn, and
:func:`app_from_env` builds it in each worker process of ``zsds serve --workers N``. Every
route runs behind the app-wide authorization dependency
(:func:`zsds.archive.policy.authorize`) and the security middleware of
:mod:`zsds.archive.security` (headers, body limit, bad-input safety net, log redaction).
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from zsds import __version__
from zsds.archive import security
from zsds.archive.auth import authorize
from zsds.archive.context import ArchiveConfig, ArchiveContext
from zsds.archive.lightcurve import matchfile_unavailable_handler
from zsds.core.home import ENV_DB_URL, ENV_HOME, Home
from zsds.db import connect, init_db
from zsds.lightcurves.query import MatchfileUnavailable

#: Routers, in mounting order (the web UI last: it owns ``/``).
ROUTERS = ("auth", "ibe", "lightcurve", "forcedphot", "vo", "depot", "web_ops", "web")

STATIC = Path(__file__).with_name("static")

def create_app(home: Home, engine: Engine | None = None, config: ArchiveConfig | None = None,
               *, refresh_index: bool = True) -> FastAPI:
    """The archive application over a home.

    Parameters
    ----------
    home : Home
        The zsds home whose products and database are served.
    engine : Engine, optional
        Database engine (default: the home's database URL); its schema is brought up to date.
    config : ArchiveConfig, optional
    refresh_index : bool
        Bring the image index (``archive_images``) up to date with the products first.
    """
    from zsds.archive.index import update_index

    engine = engine or connect(home.db_url)
    init_db(engine)
    if refresh_index:
        update_index(home, engine)
    cfg = config or ArchiveConfig()
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The requests are Python work holding the GIL: beyond a few threads per process,
        # more only queue on the GIL and the database pool (throughput fell by a third from
        # 1 to 8 concurrent cone searches with anyio's 40).
        anyio.to_thread.current_default_thread_limiter().total_tokens = cfg.request_threads
        yield

    app = FastAPI(
        lifespan=lifespan,
        title=cfg.title,
        version=__version__,
        description=(
            "IRSA-compatible access to the zsds archive: IBE image search, files and cutouts, "
            "the ZTF light-curve API, forced photometry, IVOA cone search, SIA and TAP, "
            "and the web UI. Clients written for IRSA work with only a base-URL change."
        ),
        # Before any route's own dependencies: the CSRF token of a form body, then the caller
        # and the authorization policy (zsds.archive.policy), in one place for every route.
        dependencies=[Depends(security.read_form_token), Depends(authorize)],
    )
    app.state.ctx = ArchiveContext(home=home, engine=engine, config=cfg)
    security.install(app, max_body_bytes=cfg.max_body_bytes, force_https=cfg.secure_cookies)
    # A light-curve object whose matchfile is missing or damaged: a 404, not a 500.
    app.add_exception_handler(MatchfileUnavailable, matchfile_unavailable_handler)
    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for name in ROUTERS:
        module = importlib.import_module(f"zsds.archive.{name}")
        app.include_router(module.router)
    return app


def app_from_env() -> FastAPI:
    """The archive application of one worker process (a uvicorn app factory).

    ``zsds serve --workers N`` runs ``uvicorn.run("zsds.archive.app:app_from_env",
    factory=True, workers=N)``; each worker calls this after it starts, so every process has
    its own database engine (connection pools are never shared across a fork) over the same
    home and database. The home comes from ``$ZSDS_HOME`` and ``$ZSDS_DB_URL``
    (:meth:`Home.resolve <zsds.core.home.Home.resolve>`). The image index is not refreshed
    here: the parent process has done it once before starting the workers. Everything the
    service keeps (sessions, tokens, TAP jobs, the login throttle's counts) is in the
    database, shared by the workers.

    Returns
    -------
    FastAPI
    """
    if not os.environ.get(ENV_HOME):
        raise RuntimeError(f"app_from_env needs ${ENV_HOME} (and optionally ${ENV_DB_URL})")
    return create_app(Home.resolve(), config=ArchiveConfig(), refresh_index=False)
