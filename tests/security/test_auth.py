"""Authentication: rate limiting with lockout, constant-time logins, no password in the
access log, security headers everywhere, Secure cookies behind HTTPS, and no state change
on a GET with a cookie alone."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from zsds.db import connect, init_db
from zsds.db.schema import ForcedPhotRequest

from .conftest import ALICE, MALLORY, login


def _forget_failed_logins(engine) -> None:
    from sqlalchemy import delete

    from zsds.db.schema import LoginFailure, LoginLockout

    with engine.begin() as conn:
        conn.execute(delete(LoginFailure))
        conn.execute(delete(LoginLockout))


@pytest.fixture
def fresh_app(sec_home, engine):
    """A service of its own on the shared home and database, with a lower per-address limit.

    The failed-login counts are in the database, shared by every service on it (as by the
    workers of ``zsds serve --workers N``): they are cleared before and after, so that the
    lockouts of one test do not reach the others.
    """
    from zsds.archive.app import create_app
    from zsds.archive.context import ArchiveConfig

    _forget_failed_logins(engine)
    yield create_app(sec_home, engine, ArchiveConfig(login_max_failures_per_client=12),
                     refresh_index=False)
    _forget_failed_logins(engine)


def _login(c: TestClient, user: str, password: str):
    return c.get("/account/signon/login.do", params={"josso_username": user,
                                                     "josso_password": password})


def test_failed_logins_lock_the_account_out(fresh_app):
    """Issue 19 #8: 200 wrong passwords were processed (~24/s) with no limit or lockout."""
    c = TestClient(fresh_app)
    codes = [_login(c, MALLORY[0], f"guess{k}").status_code for k in range(8)]
    assert codes[:5] == [401] * 5
    assert codes[5:] == [429] * 3
    r = _login(c, MALLORY[0], MALLORY[1])  # even the right password, while locked
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    # the lockout covers every way of sending the password
    assert c.get("/depot/", auth=MALLORY).status_code == 429
    # and is per name: other accounts still log in
    assert _login(c, ALICE[0], ALICE[1]).status_code == 200


def test_guessing_many_names_from_one_address_is_stopped(fresh_app):
    c = TestClient(fresh_app)
    limit = fresh_app.state.ctx.config.login_max_failures_per_client
    codes = [_login(c, f"nobody{k}@example.org", "x").status_code for k in range(limit + 2)]
    assert codes[-1] == 429 and codes.count(401) == limit


def test_lockout_expires(tmp_path):
    from zsds.archive.security import LoginThrottle

    db = connect(f"sqlite:///{tmp_path / 'throttle.db'}")
    init_db(db)
    now = [1000.0]
    t = LoginThrottle(db, max_failures=3, window_s=60, lockout_s=30, clock=lambda: now[0])
    for _ in range(3):
        t.failure("bob", "1.2.3.4")
    assert t.retry_after("bob", "1.2.3.4") == 30
    now[0] = 1031.0
    assert t.retry_after("bob", "1.2.3.4") == 0
    t.failure("bob", "1.2.3.4")  # the count started again
    assert t.retry_after("bob", "1.2.3.4") == 0


def test_processes_share_the_failure_counts(tmp_path):
    """Two throttles on one database (two worker processes of ``zsds serve``) count the same
    failures: the limit holds for the service, not per process; old failures expire."""
    from sqlalchemy import func, select

    from zsds.archive.security import LoginThrottle
    from zsds.db.schema import LoginFailure

    url = f"sqlite:///{tmp_path / 'throttle.db'}"
    init_db(connect(url))
    now = [5000.0]
    a, b = (LoginThrottle(connect(url), max_failures=4, window_s=60, lockout_s=30,
                          clock=lambda: now[0]) for _ in range(2))
    for k in range(3):
        (a if k % 2 else b).failure("Bob", "10.0.0.1")
    assert a.retry_after("bob", "10.0.0.2") == 0 == b.retry_after("bob", "10.0.0.2")
    now[0] += 61  # the three fall out of the window
    a.failure("bob", "10.0.0.1")
    with a.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(LoginFailure)).scalar() == 2
    for _ in range(3):
        b.failure("BOB ", "10.0.0.3")
    assert a.retry_after("bob", "10.0.0.9") == 30 == b.retry_after("bob", "10.0.0.9")
    b.success("bob", "10.0.0.1")  # a lockout is not lifted by a success elsewhere
    assert a.retry_after("bob", "10.0.0.9") == 30


def test_login_time_does_not_tell_which_users_exist(engine):
    """Issue 19 #8: 50-80 ms for an existing user, 1.8 ms otherwise."""
    from zsds.archive.auth import AuthError, authenticate

    def timed(name: str) -> float:
        t0 = time.perf_counter()
        with pytest.raises(AuthError):
            authenticate(engine, name, "wrong password")
        return time.perf_counter() - t0

    timed("nobody@example.org")  # the dummy hash is made once
    # The fastest of a few tries: other load on the machine only ever adds time.
    exists = min(timed(ALICE[0]) for _ in range(6))
    missing = min(timed(f"nobody{k}@example.org") for k in range(6))
    assert missing > 0.3 * exists, (exists, missing)  # before: 1.8 ms against 50-80 ms


def test_password_never_reaches_the_access_log(live):
    """Issue 19 #8: ztfquery's GET login put the password in the access log."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep()
    logging.getLogger("uvicorn.access").addHandler(handler)
    try:
        r = httpx.get(f"{live}/account/signon/login.do",
                      params={"josso_cmd": "login", "josso_username": ALICE[0],
                              "josso_password": ALICE[1]})
        assert r.status_code == 200
        r = httpx.get(f"{live}/cgi-bin/getForcedPhotometryRequests.cgi",
                      params={"email": ALICE[0], "userpass": ALICE[1]})
        time.sleep(0.2)  # the access line is written after the response
    finally:
        logging.getLogger("uvicorn.access").removeHandler(handler)
    logged = "\n".join(records)
    assert "/account/signon/login.do" in logged and "josso_password=***" in logged
    assert "correct" not in logged and "horse" not in logged


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


@pytest.mark.parametrize("url", ["/", "/ui/login", "/account/whoami", "/ibe/search/",
                                 "/ibe/search/ztf/products/sci?FORMAT=METADATA", "/TAP/tables",
                                 "/static/style.css", "/no/such/page", "/depot/",
                                 "/SCS?table=x", "/docs"])
def test_security_headers_on_every_response(client, url):
    """Issue 19 #8: no CSP, frame-ancestors, nosniff or Referrer-Policy."""
    r = client.get(url)
    for name, value in SECURITY_HEADERS.items():
        assert r.headers.get(name) == value, (url, name)
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "strict-transport-security" not in r.headers  # plain HTTP


def test_secure_cookies_behind_https(app, sec_home, engine):
    from zsds.archive.app import create_app
    from zsds.archive.context import ArchiveConfig

    plain = _login(TestClient(app), *ALICE)
    assert "secure" not in plain.headers["set-cookie"].lower()
    proxied = TestClient(app).get("/account/signon/login.do", params={
        "josso_username": ALICE[0], "josso_password": ALICE[1]},
        headers={"X-Forwarded-Proto": "https"})
    cookie = proxied.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert proxied.headers["strict-transport-security"].startswith("max-age=")
    forced = create_app(sec_home, engine, ArchiveConfig(secure_cookies=True),
                        refresh_index=False)
    assert "secure" in _login(TestClient(forced), *ALICE).headers["set-cookie"].lower()


def test_forced_photometry_get_needs_more_than_a_cookie(app, engine):
    """Issue 19 #8: ``requestForcedPhotometry.cgi`` changes state on GET; an ``<img>`` of
    another site could submit requests with the victim's cookie."""
    alice = login(app, ALICE)

    def count() -> int:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(ForcedPhotRequest))

    before = count()
    params = {"ra": 10.0, "dec": 20.0, "jdstart": 2461000.5, "jdend": 2461001.5}
    r = alice.get("/cgi-bin/requestForcedPhotometry.cgi", params=params)
    assert r.status_code == 403 and count() == before
    r = alice.get("/cgi-bin/requestForcedPhotometry.cgi", params=params,
                  headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 403 and count() == before  # a token, not an Origin, is needed
    r = alice.get("/cgi-bin/requestForcedPhotometry.cgi", params=params,
                  auth=("ztffps", "dontgocrazy!"))  # the public service credential
    assert r.status_code in (401, 403) and count() == before
    token = alice.get("/account/whoami").json()["csrf_token"]
    assert alice.get("/cgi-bin/requestForcedPhotometry.cgi",
                     params={**params, "csrf_token": token}).status_code == 200
    # IPAC's scripts: service Basic credentials plus email/userpass, no cookie
    anon = TestClient(app)
    assert anon.get("/cgi-bin/requestForcedPhotometry.cgi",
                    params={**params, "email": ALICE[0], "userpass": ALICE[1]},
                    auth=("ztffps", "dontgocrazy!")).status_code == 200
    assert count() == before + 2


def test_ztfquery_login_still_works(client):
    """The compatible GET login (what ztfquery sends before every call) is kept."""
    r = _login(client, *ALICE)
    assert r.status_code == 200 and "JOSSO_SESSIONID" in r.cookies
    assert r.headers["cache-control"] == "no-store"
    assert client.get("/account/whoami").json()["user"] == ALICE[0]
