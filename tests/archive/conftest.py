"""A small archived survey for the archive-service tests, built once per test session.

Two simulated nights of one field (one CCD, 512 x 512 quadrants) run through the executive,
as ``zsds demo`` does: calibrations, 16 reference epochs and references on night 1; three
science exposures with subtraction, candidates and alerts on night 2; then the light curves.
Set ``ZSDS_TEST_ARCHIVE_HOME`` to a home built by :func:`build_archive_home` to reuse it
(it is copied, never modified).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from zsds.core.home import Home

NIGHT1, NIGHT2 = "2026-11-20", "2026-11-21"
FIELD, CCD, SIZE = 645, 6, 512


def build_archive_home(root: Path) -> Home:
    """Simulate and process the two nights into ``root`` (about 3 minutes on 2 cores)."""
    from zsds.db import connect, init_db
    from zsds.executive import ExecConfig, Executive
    from zsds.sim.camera import SimConfig
    from zsds.sim.run import simulate_calib, simulate_night

    home = Home.resolve(root)
    cfg = SimConfig(quad_size=SIZE, seed=1, transient_rate=300.0, asteroid_density=5.0)
    engine = connect(home.db_url)
    init_db(engine)
    simulate_calib(home, NIGHT1, SIZE, [CCD], seed=1, n_bias=5, n_flat=3, filters=("r",))
    simulate_night(home, NIGHT1, 16, [FIELD], ccds=[CCD], filters=("r",), config=cfg)
    with Executive(home, engine, ExecConfig(n_workers=2)) as ex:
        ex.run_night(NIGHT1)
        simulate_night(home, NIGHT2, 3, [FIELD], ccds=[CCD], filters=("r",),
                       config=SimConfig(**{**cfg.__dict__, "seed": 2}))
        ex.run_night(NIGHT2)
        ex.build_lightcurves()
    engine.dispose()
    return home


@pytest.fixture(scope="session")
def archive_base(tmp_path_factory) -> Path:
    """The processed two-night home (read-only: copy it before changing anything).

    Built once per test run, not once per xdist worker: the workers share pytest's base
    temporary folder, and an exclusive lock (``fcntl.flock``) lets the first one build while
    the others wait for it.
    """
    import fcntl

    prebuilt = os.environ.get("ZSDS_TEST_ARCHIVE_HOME")
    if prebuilt:
        return Path(prebuilt)
    shared = tmp_path_factory.getbasetemp().parent
    root = shared / "archive-home"
    with open(shared / "archive-home.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "archive-home.done").exists():
            shutil.rmtree(root, ignore_errors=True)
            build_archive_home(root)
            (shared / "archive-home.done").touch()
    return root


@pytest.fixture(scope="module")
def archive_home(archive_base: Path, tmp_path_factory) -> Home:
    """A private copy of the archived home for one test module."""
    dest = tmp_path_factory.mktemp("archive-copy") / "home"
    shutil.copytree(archive_base, dest)
    return Home.resolve(dest)


@pytest.fixture(scope="module")
def live_server(archive_home: Home):
    """``zsds serve`` on a free loopback port in a thread (for real HTTP clients); yields the
    base URL, e.g. ``http://127.0.0.1:53123``."""
    import socket
    import threading
    import time

    import uvicorn

    from zsds.archive.app import create_app

    app = create_app(archive_home)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline:
            raise RuntimeError("zsds serve did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def archive_engine(request: pytest.FixtureRequest, archive_home: Home):
    """The archived home's database on each backend: its own SQLite file, or a copy of it in a
    fresh PostgreSQL schema (the same code serves both)."""
    from tests.db.conftest import pg_engine
    from zsds.db import connect, init_db
    from zsds.db.engine import copy_database

    local = connect(archive_home.db_url)
    init_db(local)
    if request.param == "sqlite":
        yield local
        local.dispose()
        return
    gen = pg_engine()
    pg = next(gen)
    copy_database(local, pg)
    local.dispose()
    yield pg
    gen.close()
