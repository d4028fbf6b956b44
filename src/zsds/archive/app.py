"""The archive service as one FastAPI application.

:func:`create_app` mounts every router of :mod:`zsds.archive` on a shared
:class:`~zsds.archive.context.ArchiveContext`; ``zsds serve`` runs it under uvicorn. Every
route runs behind the app-wide authorization dependency
(:func:`zsds.archive.policy.authorize`) and the security middleware of
:mod:`zsds.archive.security` (headers, body limit, bad-input safety net, log redaction).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from zsds import __version__
from zsds.archive import security
from zsds.archive.context import ArchiveConfig, ArchiveContext
from zsds.archive.policy import authorize
from zsds.core.home import Home
from zsds.db import connect, init_db

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
    app = FastAPI(
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
    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for name in ROUTERS:
        module = importlib.import_module(f"zsds.archive.{name}")
        app.include_router(module.router)
    return app
