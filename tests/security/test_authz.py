"""Authorization: one policy decides what is depot content, and no route hands restricted
files or rows to an anonymous caller."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select

from zsds.db.schema import AlertRecord, Candidate


@pytest.fixture(scope="module")
def known(engine) -> tuple[str, list[int], list[list[float]]]:
    """A known asteroid the pipeline detected: its designation, candids and jd/ra/dec."""
    with engine.connect() as conn:
        rows = conn.execute(select(Candidate.ssnamenr, Candidate.candid, Candidate.jd,
                                   Candidate.ra, Candidate.dec)
                            .where(Candidate.ssnamenr.isnot(None))
                            .order_by(Candidate.ssnamenr, Candidate.jd)).all()
    assert rows, "the test home has no candidate of a known asteroid"
    name = rows[0].ssnamenr
    mine = [r for r in rows if r.ssnamenr == name]
    return name, [r.candid for r in mine], [[r.jd, r.ra, r.dec] for r in mine]


def _night(rows: list[list[float]]) -> str:
    """The UT date of the first detection (the searches are limited to that night)."""
    from astropy.time import Time

    return Time(rows[0][0], format="jd").to_datetime().strftime("%Y-%m-%d")


def _products(home, suffix: str) -> list[str]:
    return sorted(str(p.relative_to(home.products)) for p in home.products.rglob(f"*_{suffix}"))


def test_moving_search_hides_detections_from_anonymous(client, alice, known):
    """Issue 19 #3: ``POST /api/moving/search`` returned the pipeline's detections (candid,
    objectId, position, magpsf, rb) to anyone, though candidates are alert content."""
    name, candids, rows = known
    night = _night(rows)
    for req in (lambda c: c.post("/api/moving/search", json={"ephemeris": rows, "radius": 1e6}),
                lambda c: c.get("/api/moving/search", params={"designation": name,
                                                              "start": night, "end": night})):
        anon = req(client)
        assert anon.status_code == 200, anon.text
        res = anon.json()
        assert res["images"], "the images of the object stay public"
        assert res["detections"] == [] and res["tracks"] == []
        assert set(res["withheld"]) == {"detections", "tracks"}
        assert not any(str(c) in anon.text for c in candids)
        mine = req(alice).json()
        assert set(candids) <= {d["candid"] for d in mine["detections"]}
        assert mine["withheld"] == []


def test_moving_page_hides_detections_from_anonymous(client, alice, known):
    name, candids, rows = known
    params = {"designation": name, "start": _night(rows), "end": _night(rows)}
    anon = client.get("/ui/moving", params=params)
    assert anon.status_code == 200
    assert not any(str(c) in anon.text for c in candids)
    assert all(str(c) in alice.get("/ui/moving", params=params).text for c in candids)


@pytest.mark.parametrize("suffix", ["candcutouts.fits", "diffcands.fits"])
def test_alert_content_files_are_depot_only(client, alice, sec_home, suffix):
    """Issue 19 #3: ``candcutouts.fits`` and ``diffcands.fits`` were served anonymously
    under ``/ibe/data``."""
    rels = _products(sec_home, suffix)
    assert rels, f"the test home has no {suffix}"
    for rel in rels:
        url = f"/ibe/data/ztf/products/{rel}"
        assert client.get(url).status_code == 401, url
        assert client.head(url).status_code == 401, url
        assert client.get(url, params={"center": "100,100px", "size": "10px"}
                          ).status_code == 401, url
        home_rel = quote(f"products/{rel}")
        for viewer in ("/ui/image", "/ui/api/header", "/ui/api/image.png",
                       "/ui/api/pix2world"):
            assert client.get(f"{viewer}?path={home_rel}").status_code == 401, viewer
        assert client.get(f"/depot/products/{rel}").status_code == 401
    r = alice.get(f"/ibe/data/ztf/products/{rels[0]}")
    assert r.status_code == 200 and r.content == (sec_home.products / rels[0]).read_bytes()


def test_alerts_are_depot_only(client, alice, engine):
    with engine.connect() as conn:
        candid = conn.execute(select(AlertRecord.candid).limit(1)).scalar()
    assert candid is not None
    listing = client.get("/ui/api/alerts").json()
    assert listing["total"] == 0 and listing["rows"] == [] and listing["hidden"] > 0
    assert client.get("/ui/api/cutout.png", params={"candid": candid}).status_code == 401
    assert client.get("/ui/alert", params={"candid": candid}).status_code == 401
    assert str(candid) not in client.get("/ui/alerts").text.replace(f"candid={candid}", "")
    assert alice.get("/ui/api/alerts").json()["total"] > 0
    assert alice.get("/ui/api/cutout.png", params={"candid": candid}).status_code == 200


@pytest.mark.parametrize("url", ["/depot/", "/depot/alerts/", "/ui/api/depot",
                                 "/api/forcedphot?ra=1&dec=1"])
def test_login_routes_refuse_anonymous(client, url):
    r = client.get(url)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic")


def test_every_route_is_classified(app):
    """The policy lists every route; an unlisted one would be login-only (deny by default),
    so a new route cannot serve depot content by accident."""
    import importlib

    from zsds.archive.app import ROUTERS
    from zsds.archive.policy import ROUTES, AccessPolicy, Rule

    # the routers are included without a prefix: their paths are the app's
    paths = {r.path for name in ROUTERS
             for r in importlib.import_module(f"zsds.archive.{name}").router.routes
             if isinstance(r, APIRoute)}
    assert len(paths) > 60
    assert paths - set(ROUTES) == set()
    assert set(ROUTES) - paths == set(), "stale entries in the policy"
    assert AccessPolicy.route_rule("/a/new/route") is Rule.LOGIN


def test_restricted_images_are_hidden_everywhere(client, alice, engine):
    """An image flagged ``restricted`` in the index is left out of the searches of an
    anonymous caller (IBE, SIA v1/v2, TAP, the web UI), and listed for a logged-in one."""
    from sqlalchemy import text

    with engine.begin() as conn:
        row = conn.execute(text("SELECT id, pid, relpath, ra, dec FROM archive_images "
                                "WHERE tbl = 'sci' ORDER BY id LIMIT 1")).first()
        conn.execute(text("UPDATE archive_images SET restricted = true WHERE id = :i"),
                     {"i": row.id})
    try:
        marks = (str(row.pid), row.relpath.rsplit("/", 1)[1].removesuffix(".fits"))
        pos = f"{row.ra},{row.dec}"
        searches = [
            ("/ibe/search/ztf/products/sci", {"POS": pos, "ct": "csv", "columns": "pid"}),
            ("/ibe/sia/ztf/products/sci", {"POS": pos, "SIZE": "0"}),
            ("/SIA", {"POS": f"CIRCLE {row.ra} {row.dec} 0.01"}),
            ("/TAP/sync", {"QUERY": f"SELECT pid FROM ztf.ztf_current_meta_sci WHERE "
                                    f"pid = {row.pid}", "FORMAT": "csv"}),
            ("/ui/api/images", {"pos": f"{row.ra} {row.dec}"}),
        ]
        for url, params in searches:
            anon, mine = client.get(url, params=params), alice.get(url, params=params)
            assert anon.status_code == mine.status_code == 200, (url, anon.text[:200])
            assert any(m in mine.text for m in marks), url
            assert not any(m in anon.text for m in marks), url
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE archive_images SET restricted = false WHERE id = :i"),
                         {"i": row.id})
