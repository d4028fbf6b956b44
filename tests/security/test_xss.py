"""Reflected XSS: no HTML page echoes request input unescaped, and no page needs inline
script (the Content-Security-Policy forbids it, so an injection would not run anyway)."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from .conftest import ALICE

#: What an attacker puts in a URL.
PAYLOAD = "<svg onload=alert(1)>"
#: Markup that must never come back as such.
RAW = re.compile(r"<svg onload", re.IGNORECASE)


def test_depot_listing_escapes_the_path(alice):
    """Issue 19 #1: ``/depot/products%2F<svg onload=alert(1)>%2F..`` echoed the path into
    ``<h1>`` of the listing for a logged-in user."""
    r = alice.get("/depot/products%2F%3Csvg%20onload%3Dalert(1)%3E%2F..",
                  headers={"Accept": "text/html"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert not RAW.search(r.text), r.text[:300]
    assert "&lt;svg onload=alert(1)&gt;" in r.text
    # the links of the listing stay well-formed URLs of the depot
    assert all(h.startswith("/depot/") for h in re.findall(r'href="([^"]*)"', r.text))


@pytest.mark.parametrize("url", [
    "/?pos={p}",
    "/?pos=10+20&tbl={p}",
    "/?field={p}",
    "/ui/lightcurves?pos={p}",
    "/ui/lightcurves?pos=10+20&filter={p}",
    "/ui/finder?ra={p}&dec=1",
    "/ui/finder?ra=1&dec=1&format={p}",
    "/ui/login?next={p}",
    "/ui/login?next=/{p}",
    "/ui/moving?designation={p}",
    "/ui/moving?ephemeris={p}",
    "/ui/moving?designation=X&start={p}",
    "/ui/alerts?object_id={p}",
    "/ui/alerts?ssnamenr={p}",
    "/ui/coverage?night={p}",
    "/ui/alert?candid=1",
    "/ui/image?path=products/{p}.fits",
    "/ui/lightcurve?oid={p}",
    "/ui/depot",
    "/ibe/data/ztf/products/sci/{p}/",
    "/ibe/search/ztf/products/{p}?ct=html",
    "/ibe/search/ztf/products/sci?POS={p}&ct=html",
    "/ibe/search/ztf/products/sci?WHERE={p}&ct=html",
    "/cgi-bin/ZTF/nph_light_curves?FORMAT=HTML&ID={p}",
    "/cgi-bin/ZTF/nph_light_curves?FORMAT=HTML&POS={p}",
    "/api/moving/search?format=html&designation={p}",
    "/cgi-bin/getForcedPhotometryRequests.cgi?email={e}&userpass={w}&option={p}",
    "/TAP/sync?QUERY=SELECT+{p}+FROM+ztf_objects&FORMAT=html",
    "/SCS?table={p}&RA=1&DEC=1&SR=0.1&format=html",
])
def test_no_page_reflects_markup(alice, url):
    """Every page that echoes a parameter (forms, errors, listings) escapes it."""
    r = alice.get(url.format(p=quote(PAYLOAD), e=quote(ALICE[0]), w=quote(ALICE[1])),
                  headers={"Accept": "text/html"})
    assert r.status_code < 500, r.text[:300]
    assert r.headers["x-content-type-options"] == "nosniff"
    # JSON, XML and plain-text errors may quote the input: with nosniff no browser renders
    # them as HTML. An HTML answer must have escaped it.
    ctype = r.headers.get("content-type", "")
    assert ctype.split(";")[0] in ("text/html", "application/json", "text/xml",
                                   "application/xml", "text/plain",
                                   "application/x-votable+xml"), ctype
    if ctype.startswith("text/html"):
        assert not RAW.search(r.text), (url, r.text[:500])


_PAGES = ["/", "/?pos=10+20", "/ui/lightcurves", "/ui/finder", "/ui/login", "/ui/moving",
          "/ui/alerts", "/ui/coverage", "/ui/depot"]


def _inline_code(html: str) -> list[str]:
    """Inline scripts, event-handler attributes, ``style`` attributes and ``javascript:``
    URLs of a page (JSON data blocks are data, not script)."""
    found = [m.group(0) for m in re.finditer(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)"
                                             r"[^>]*>", html, re.IGNORECASE)]
    found += re.findall(r"\son[a-z]+\s*=", html, re.IGNORECASE)
    found += re.findall(r"\sstyle\s*=", html, re.IGNORECASE)
    found += re.findall(r"javascript:", html, re.IGNORECASE)
    return found


@pytest.mark.parametrize("page", _PAGES)
def test_pages_need_no_inline_script(alice, page):
    """The CSP (script-src 'self', no 'unsafe-inline') must not break a page: none holds
    inline script, handlers or style attributes."""
    r = alice.get(page)
    assert r.status_code in (200, 401), page
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert _inline_code(r.text) == [], page


def test_viewer_pages_carry_their_data_as_json(alice, engine):
    """The image and light-curve viewers hand their data to the scripts in JSON blocks."""
    from sqlalchemy import text

    with engine.connect() as conn:
        rel = conn.execute(text("SELECT relpath FROM archive_images WHERE tbl = 'sci' "
                                "LIMIT 1")).scalar()
        oid = conn.execute(text("SELECT oid FROM lc_objects LIMIT 1")).scalar()
    for url, block in ((f"/ui/image?path={quote(rel)}", "view-data"),
                       (f"/ui/lightcurve?oid={oid}", "lc-data")):
        r = alice.get(url)
        assert r.status_code == 200, url
        assert f'<script type="application/json" id="{block}">' in r.text
        assert _inline_code(r.text) == [], url
