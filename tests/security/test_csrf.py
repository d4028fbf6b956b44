"""CSRF: no request that changes state is accepted on the strength of the session cookie
alone -- it needs the session's CSRF token or a same-origin Origin/Referer."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from .conftest import ALICE, MALLORY, login

EVIL = {"Origin": "https://evil.example.com"}
EVIL_FETCH = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example.com"}


def _csrf(c: TestClient) -> str:
    token = c.get("/account/whoami").json()["csrf_token"]
    assert token
    return token


def test_token_theft_by_cross_site_post_is_refused(alice):
    """Issue 19 #1: a script of another page (or an XSS) posting to ``/account/token`` with
    the victim's cookie got an API token for the account."""
    for headers in (EVIL, EVIL_FETCH, {"Referer": "https://evil.example.com/x"},
                    {"Origin": "null"}, {}):
        r = alice.post("/account/token", headers=headers)
        assert r.status_code == 403, (headers, r.text)
        assert "token" not in r.json() or "CSRF" in r.json()["detail"]


def test_state_changes_with_the_csrf_token_or_from_the_site(alice, app):
    assert alice.post("/account/token", headers={"X-CSRF-Token": _csrf(alice)}
                      ).status_code == 200
    assert alice.post("/account/token", data={"csrf_token": _csrf(alice)}).status_code == 200
    assert alice.post("/account/token", headers={"Origin": "http://testserver"}
                      ).status_code == 200
    assert alice.post("/account/token", headers={"Sec-Fetch-Site": "same-origin"}
                      ).status_code == 200
    # a token of another session is no token
    other = _csrf(login(app, MALLORY))
    assert alice.post("/account/token", headers={"X-CSRF-Token": other}).status_code == 403


def test_bearer_and_basic_clients_need_no_csrf_token(client, alice):
    """Scripts (curl, pyvo) send no Origin and no cookie: unchanged."""
    tok = alice.post("/account/token", headers={"X-CSRF-Token": _csrf(alice)}).json()["token"]
    assert client.post("/account/token", headers={"Authorization": f"Bearer {tok}"}
                       ).status_code == 200
    assert client.post("/account/token", auth=ALICE).status_code == 200


def test_cached_basic_credentials_are_refused_from_another_site(client):
    basic = base64.b64encode(":".join(ALICE).encode()).decode()
    r = client.post("/account/token", headers={"Authorization": f"Basic {basic}", **EVIL})
    assert r.status_code == 403


def test_tap_jobs_are_not_created_cross_site(alice):
    r = alice.post("/TAP/async", data={"QUERY": "SELECT TOP 1 oid FROM ztf_objects"},
                   headers=EVIL, follow_redirects=False)
    assert r.status_code == 403
    r = alice.post("/TAP/async", data={"QUERY": "SELECT TOP 1 oid FROM ztf_objects",
                                       "csrf_token": _csrf(alice)}, follow_redirects=False)
    assert r.status_code == 303


def test_login_csrf_is_refused(client):
    """Another site must not log the browser into the attacker's account."""
    r = client.post("/account/signon/login.do", data={"josso_username": MALLORY[0],
                                                      "josso_password": MALLORY[1]},
                    headers=EVIL, follow_redirects=False)
    assert r.status_code == 403 and "JOSSO_SESSIONID" not in r.cookies


def test_logout_from_another_site_is_refused(alice):
    r = alice.get("/account/signon/logout.do", headers=EVIL_FETCH, follow_redirects=False)
    assert r.status_code == 403
    assert alice.get("/account/whoami").json()["user"] == ALICE[0]
    alice.get("/account/signon/logout.do", follow_redirects=False)  # curl's logout still works
    assert alice.get("/account/whoami").json()["user"] is None


def test_search_posts_are_not_state_changes(alice):
    """POSTs that only carry search parameters change nothing: a script with a cookie jar
    keeps posting them (and the web UI's forms carry the token anyway)."""
    page = alice.get("/ui/moving")
    assert 'name="csrf_token"' in page.text and 'name="csrf-token"' in page.text
    assert alice.post("/ui/moving", data={"designation": "", "ephemeris": ""}).status_code == 200
    r = alice.post("/TAP/sync", data={"QUERY": "SELECT TOP 1 oid FROM ztf_objects"})
    assert r.status_code == 200
