"""Fixtures of the attack corpus: the archive-service tests' processed home, shared.

The home is the one of ``tests/archive`` (:func:`tests.archive.conftest.build_archive_home`,
built once per test run, or ``ZSDS_TEST_ARCHIVE_HOME``), copied once for this package.
Every test here reproduces an attack or an abuse of ``zsds serve`` (issue 19) against it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.archive.conftest import archive_base  # noqa: F401  (the shared, built-once home)
from zsds.archive.app import create_app
from zsds.archive.auth import create_user
from zsds.core.home import Home

#: The accounts of the attack tests (user name, password).
ALICE = ("alice@example.org", "correct horse")
MALLORY = ("mallory@example.org", "battery staple")


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link a product (instant; nothing here rewrites a product in place), copy the
    database (which the tests change) and anything that cannot be linked."""
    if Path(src).name.startswith("zsds.sqlite"):
        shutil.copy2(src, dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@pytest.fixture(scope="package")
def sec_home(archive_base: Path, tmp_path_factory) -> Home:  # noqa: F811
    """A private copy of the processed home for the security tests (products hard-linked,
    the database copied)."""
    dest = tmp_path_factory.mktemp("security") / "home"
    shutil.copytree(archive_base, dest, copy_function=_link_or_copy)
    return Home.resolve(dest)


@pytest.fixture(scope="package")
def app(sec_home: Home):
    """The archive service on the copy, with the two accounts."""
    application = create_app(sec_home)
    for name, pw in (ALICE, MALLORY):
        create_user(application.state.ctx.engine, name, pw, replace=True)
    return application


@pytest.fixture(scope="package")
def engine(app):
    return app.state.ctx.engine


@pytest.fixture
def client(app) -> TestClient:
    """An anonymous client (its own cookie jar)."""
    return TestClient(app)


def login(app, who: tuple[str, str] = ALICE) -> TestClient:
    """A client logged in as ztfquery does (GET login, session cookie)."""
    c = TestClient(app)
    r = c.get("/account/signon/login.do", params={"josso_cmd": "login",
                                                  "josso_username": who[0],
                                                  "josso_password": who[1]})
    assert r.status_code == 200, r.text
    return c


@pytest.fixture
def alice(app) -> TestClient:
    """A client logged in as alice (session cookie)."""
    return login(app, ALICE)


@pytest.fixture(scope="package")
def live(app) -> Iterator[str]:
    """The service under uvicorn on a free loopback port (in a thread): its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline:
            raise RuntimeError("zsds serve did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
