"""Open redirect: ``next=`` of the login form and page only leads to paths of this site."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import quote

import pytest

from .conftest import ALICE

OFF_SITE = [
    "//evil.example.com/x",            # issue 19 #2: scheme-relative URL
    "https://evil.example.com/x",
    "/\\evil.example.com/x",           # browsers read /\ as //
    "\\\\evil.example.com/x",
    "/\t/evil.example.com/x",          # browsers drop tabs and newlines from URLs
    "/\n/evil.example.com/x",
    "javascript:alert(1)",
    " //evil.example.com/x",
    "http:evil.example.com",
]


@pytest.mark.parametrize("target", OFF_SITE)
def test_login_form_never_redirects_off_site(client, target):
    r = client.post("/account/signon/login.do",
                    data={"josso_username": ALICE[0], "josso_password": ALICE[1],
                          "next": target}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/", target


@pytest.mark.parametrize("target", OFF_SITE)
def test_login_page_never_carries_an_off_site_next(client, target):
    r = client.get(f"/ui/login?next={quote(target)}")
    assert r.status_code == 200
    value = re.search(r'name="next" value="([^"]*)"', r.text).group(1)
    assert unescape(value) == "/", target


@pytest.mark.parametrize("target", ["/ui/depot", "/ui/alert?candid=1", "/ui/moving#x"])
def test_paths_of_the_site_are_kept(client, target):
    r = client.post("/account/signon/login.do",
                    data={"josso_username": ALICE[0], "josso_password": ALICE[1],
                          "next": target}, follow_redirects=False)
    assert r.headers["location"] == target
    page = client.get(f"/ui/login?next={quote(target)}")
    assert unescape(re.search(r'name="next" value="([^"]*)"', page.text).group(1)) == target
