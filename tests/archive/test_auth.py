"""Accounts, tokens, logins and the depot."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from zsds.archive.app import create_app
from zsds.archive.auth import (
    COOKIE,
    AuthError,
    authenticate,
    create_user,
    hash_password,
    issue_token,
    user_for_token,
    verify_password,
)
from zsds.db import connect


@pytest.fixture(scope="module")
def client(archive_home, archive_engine):
    """The service on each backend (SQLite and PostgreSQL)."""
    create_user(archive_engine, "alice@example.org", "correct horse", replace=True)
    return TestClient(create_app(archive_home, archive_engine))


def test_password_hashing():
    h = hash_password("pw1")
    assert h.startswith("scrypt$") and "pw1" not in h
    assert verify_password("pw1", h) and not verify_password("pw2", h)
    assert hash_password("pw1") != h  # salted


def test_users_and_tokens(archive_home):
    engine = connect(archive_home.db_url)
    uid = create_user(engine, "bob", "pw")
    with pytest.raises(ValueError, match="exists"):
        create_user(engine, "bob", "other")
    assert authenticate(engine, "bob", "pw").id == uid
    with pytest.raises(AuthError):
        authenticate(engine, "bob", "wrong")
    tok = issue_token(engine, uid)
    assert user_for_token(engine, tok).username == "bob"
    assert user_for_token(engine, tok + "x") is None
    expired = issue_token(engine, uid, hours=-1.0)
    assert user_for_token(engine, expired) is None


def test_depot_needs_a_login(client, archive_home):
    alerts = sorted(p for p in archive_home.alerts.rglob("*") if p.is_file())
    assert alerts, "the archived home has alert packets"
    rel = str(alerts[0].relative_to(archive_home.root))
    assert client.get(f"/depot/{rel}").status_code == 401
    r = client.get(f"/depot/{rel}", auth=("alice@example.org", "correct horse"))
    assert r.status_code == 200 and r.content == alerts[0].read_bytes()
    assert client.get(f"/depot/{rel}", auth=("alice@example.org", "nope")).status_code == 401
    # A bearer token made through the API.
    tok = client.post("/account/token", auth=("alice@example.org", "correct horse")).json()
    r = client.get(f"/depot/{rel}", headers={"Authorization": f"Bearer {tok['token']}"})
    assert r.status_code == 200
    listing = client.get("/depot/", auth=("alice@example.org", "correct horse")).json()
    assert {e["name"] for e in listing["entries"]} >= {"products/", "alerts/"}


def test_depot_never_serves_the_database_or_truth(client):
    auth = ("alice@example.org", "correct horse")
    for bad in ("zsds.sqlite", "truth/", "refcat/", "../etc/passwd", "products/../zsds.sqlite"):
        assert client.get(f"/depot/{bad}", auth=auth).status_code == 404, bad


def test_cookie_login_as_ztfquery_does(client, archive_home):
    c = TestClient(client.app)
    r = c.get("/account/signon/login.do", params={"josso_cmd": "login",
              "josso_username": "alice@example.org", "josso_password": "correct horse"})
    assert r.status_code == 200 and COOKIE in r.cookies
    assert c.get("/account/whoami").json()["user"] == "alice@example.org"
    assert c.get("/depot/").status_code == 200
    c.get("/account/signon/logout.do", follow_redirects=False)
    c.cookies.clear()
    assert c.get("/depot/").status_code == 401
    bad = c.get("/account/signon/login.do", params={"josso_username": "alice@example.org",
                                                    "josso_password": "x"})
    assert bad.status_code == 401


def test_openapi_describes_the_service(client):
    import warnings

    with warnings.catch_warnings():  # e.g. duplicate operation ids: a defect of ours
        warnings.simplefilter("error")
        spec = client.get("/openapi.json").json()
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert "/account/signon/login.do" in spec["paths"] and "/depot/{relpath}" in spec["paths"]
