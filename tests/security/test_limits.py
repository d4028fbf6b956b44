"""Resource limits: every size, count, depth and radius parameter ends in a clear 4xx (never a
500, never a large allocation first), and slow work stays off the event loop."""

from __future__ import annotations

import threading
import time
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import text

BIG = "99999999999999999999"  # beyond 64 bits


@pytest.fixture(scope="module")
def sci(engine) -> tuple[str, float, float]:
    """A science image of the home: relpath, RA, Dec of its centre."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT relpath, ra, dec FROM archive_images WHERE tbl = 'sci' "
                                "ORDER BY id LIMIT 1")).first()
    return row.relpath, row.ra, row.dec


def _adql(client, query: str):
    return client.post("/TAP/sync", data={"QUERY": query})


def _clear_4xx(r, *needles: str) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    for needle in needles:
        assert needle in r.text, (needle, r.text[:300])


# -------------------------------------------------------------------- allocations (#6, #7)


def test_image_png_bounds_the_section_before_allocating(client, sci):
    """Issue 19 #6: a 8000 x 8000 section at scale 0.1 (an 800 x 800 PNG) was allocated in
    full (+1.1 GB) before any check."""
    rel, _, _ = sci
    r = client.get("/ui/api/image.png", params={"path": rel, "x0": 0, "y0": 0, "w": 8000,
                                                "h": 8000, "scale": 0.1})
    _clear_4xx(r, "too large")
    ok = client.get("/ui/api/image.png", params={"path": rel, "w": 256, "h": 256,
                                                 "scale": 0.5})
    assert ok.status_code == 200 and ok.content[:4] == b"\x89PNG"


@pytest.mark.parametrize("size", ["1e300px", "1e300", "1e300arcsec", "200000px"])
def test_absurd_cutout_sizes(client, sci, size):
    """Issue 19 #7: ``size=1e300px`` was a 500."""
    rel, ra, dec = sci
    r = client.get(f"/ibe/data/ztf/{rel}", params={"center": f"{ra},{dec}", "size": size})
    _clear_4xx(r, "exceeds the largest cutout")


def test_cutout_far_off_the_image(client, sci):
    rel, _, _ = sci
    r = client.get(f"/ibe/data/ztf/{rel}", params={"center": "1e300,1e300px", "size": "5px"})
    _clear_4xx(r, "does not overlap")


# -------------------------------------------------------------------- integers (#7)


@pytest.mark.parametrize("url", [
    f"/ibe/search/ztf/products/sci?WHERE=field={BIG}",
    f"/ibe/search/ztf/products/sci?WHERE=pid+IN+(1,{BIG})&ct=csv",
    f"/TAP/sync?QUERY=SELECT+oid+FROM+ztf_objects+WHERE+oid={BIG}",
    f"/TAP/sync?QUERY=SELECT+TOP+1+oid+FROM+ztf_objects+OFFSET+{BIG}",
    f"/TAP/sync?QUERY=SELECT+{BIG}+FROM+ztf_objects",
    f"/cgi-bin/ZTF/nph_light_curves?ID={BIG}",
    f"/cgi-bin/ZTF/nph_light_curves?POS=CIRCLE+10+20+0.01&NOBS_MIN={BIG}",
    f"/cgi-bin/ZTF/nph_light_curves?ID=1&BAD_CATFLAGS_MASK={BIG}",
    f"/ui/lightcurve?oid={BIG}",
    f"/ui/api/lightcurve?oid={BIG}",
    f"/?field={BIG}",
    f"/ui/lightcurves?pos=10+20&minobs={BIG}",
    f"/ui/alert?candid={BIG}",
    f"/ui/api/cutout.png?candid={BIG}",
    f"/ui/api/images?field={BIG}",
    f"/ui/image?path=x.fits&hdu={BIG}",
    f"/ui/api/image.png?path=x.fits&x0={BIG}",
])
def test_integers_beyond_64_bits(client, url):
    """Issue 19 #7: integers beyond int64 in WHERE, ADQL and light-curve parameters were
    500s (SQLite's OverflowError)."""
    r = client.get(url)
    assert 400 <= r.status_code < 500, (url, r.status_code, r.text[:300])


def test_a_wide_catflags_mask_is_no_error(client, engine):
    with engine.connect() as conn:
        oid = conn.execute(text("SELECT oid FROM lc_objects WHERE matchfile IS NOT NULL "
                                "LIMIT 1")).scalar()
    plain = client.get("/cgi-bin/ZTF/nph_light_curves", params={"ID": oid, "FORMAT": "CSV"})
    wide = client.get("/cgi-bin/ZTF/nph_light_curves",
                      params={"ID": oid, "FORMAT": "CSV", "BAD_CATFLAGS_MASK": 2**40})
    assert plain.status_code == wide.status_code == 200
    assert wide.text == plain.text  # catflags has 16 bits: bit 40 matches nothing


# -------------------------------------------------------------------- depth and counts (#7)


@pytest.mark.parametrize("depth", [60, 140, 2000])
def test_deep_nesting(client, depth):
    """Issue 19 #7: ~140 nested parentheses raised RecursionError (a 500)."""
    cond = "(" * depth + "fid=1" + ")" * depth
    # (a WHERE of 4000 characters and more is refused for its length first)
    _clear_4xx(client.get("/ibe/search/ztf/products/sci", params={"WHERE": cond}),
               "nested" if len(cond) <= 4000 else "longer")
    _clear_4xx(client.get("/ibe/search/ztf/products/sci",
                          params={"WHERE": "NOT " * depth + "fid=1"}),
               "nested" if depth < 1000 else "longer")
    _clear_4xx(_adql(client, f"SELECT oid FROM ztf_objects WHERE {cond}"), "nested")
    value = "(" * depth + "1" + ")" * depth
    _clear_4xx(_adql(client, f"SELECT {value} FROM ztf_objects"), "nested")
    _clear_4xx(_adql(client, "SELECT oid FROM ztf_objects WHERE " + "NOT " * depth + "fid=1"),
               "nested")
    _clear_4xx(_adql(client, "SELECT oid FROM ztf_objects WHERE fid = " + "- " * depth + "1"),
               "nested")


def test_shallow_nesting_still_works(client):
    cond = "(" * 20 + "fid=1" + ")" * 20
    assert client.get("/ibe/search/ztf/products/sci", params={"WHERE": cond}).status_code == 200
    assert _adql(client, f"SELECT oid FROM ztf_objects WHERE {cond}").status_code == 200


def test_five_thousand_columns(client):
    """Issue 19 #7: a 5,000-column ADQL select was a 500."""
    cols = ",".join(["oid"] * 5000)
    _clear_4xx(_adql(client, f"SELECT {cols} FROM ztf_objects"), "select list")


@pytest.mark.parametrize("query", [
    "SELECT oid FROM ztf_objects WHERE " + " OR ".join(["fid=1"] * 2000),
    "SELECT oid FROM ztf_objects WHERE fid = " + "+".join(["1"] * 2000),
    "SELECT oid FROM ztf_objects WHERE fid IN (" + ",".join(["1"] * 9000) + ")",
    "SELECT oid FROM ztf_objects WHERE fid = 1" + " AND fid = 1" * 8000,
])
def test_long_chains_and_lists(client, query):
    """Expression trees deeper than SQLite's 1000, more parameters than it binds."""
    r = _adql(client, query)
    assert 400 <= r.status_code < 500, r.text[:300]


def test_long_where_chains(client):
    r = client.get("/ibe/search/ztf/products/sci", params={"WHERE": "fid=" + "+".join(
        ["1"] * 1500)})
    _clear_4xx(r, "operators")


# -------------------------------------------------------------------- radii (#7)


@pytest.mark.parametrize("sr", ["0", "0.0", "1e-12", "-1"])
def test_cone_search_radius_zero(client, sr):
    """Issue 19 #7: radius 0 reached cdshealpix, which panics (a BaseException)."""
    r = client.get("/SCS", params={"table": "ztf_objects_dr23", "RA": 10, "DEC": 20, "SR": sr})
    assert r.status_code == 400 and 'name="Error"' in r.text


@pytest.mark.parametrize("where", [
    "CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 10, 20, 0)) = 1",
    "CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 10, 20, 1e-12)) = 1",
    "DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', 10, 20)) < 0",
])
def test_adql_circle_radius_zero(client, where):
    _clear_4xx(_adql(client, f"SELECT oid FROM ztf_objects WHERE {where}"), "radius")


def test_adql_degenerate_box_is_a_point_search(client):
    r = _adql(client, "SELECT oid FROM ztf_objects WHERE "
                      "CONTAINS(POINT('ICRS', ra, dec), BOX('ICRS', 10, 20, 0, 0)) = 1")
    assert r.status_code == 200


@pytest.mark.parametrize("url", [
    "/?pos=10+20&radius=0",
    "/ui/lightcurves?pos=10+20&radius=0",
    "/cgi-bin/ZTF/nph_light_curves?POS=CIRCLE+10+20+0",
    "/cgi-bin/ZTF/nph_light_curves?POS=CIRCLE+10+20+1e-12",
])
def test_web_cone_radius_zero(client, url):
    _clear_4xx(client.get(url), "radius")


# -------------------------------------------------------------------- bodies (#5)


def test_oversized_bodies(client, app):
    limit = app.state.ctx.config.max_body_bytes
    body = b"x" * (limit + 1)
    r = client.post("/TAP/sync", content=body,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(limit // 65536 + 2):
            yield b"y" * 65536

    r = client.post("/api/moving/search", content=chunks(), headers={"Content-Type": "text/csv"})
    assert r.status_code == 413


def test_ephemeris_row_limit(client):
    from zsds.archive.limits import MAX_EPHEMERIS_ROWS

    rows = "\n".join(f"{2461000 + k * 1e-3},10,20" for k in range(MAX_EPHEMERIS_ROWS + 2))
    r = client.post("/api/moving/search", content=rows, headers={"Content-Type": "text/csv"})
    _clear_4xx(r, "rows")
    assert r.status_code == 413


def test_deeply_nested_json(client):
    r = client.post("/api/moving/search", content="[" * 100_000 + "]" * 100_000,
                    headers={"Content-Type": "application/json"})
    _clear_4xx(r, "JSON")


def test_moving_search_runs_off_the_event_loop(live, monkeypatch):
    """Issue 19 #5: a large ephemeris upload stalled every other request for 22 s: the
    search ran inside the event loop."""
    from zsds.archive import web_ops

    def slow_search(*args, **kwargs):
        time.sleep(2.0)  # blocking work, as a 1M-row ephemeris is
        return {"query": {}, "nsearched": 0, "images": [], "detections": [], "tracks": [],
                "path": [], "withheld": []}

    monkeypatch.setattr(web_ops, "search_moving", slow_search)
    done = threading.Event()

    def search() -> None:
        httpx.post(f"{live}/api/moving/search", json={"ephemeris": [[2461000, 1, 2],
                                                                    [2461001, 1, 2]]},
                   timeout=30)
        done.set()

    worker = threading.Thread(target=search)
    worker.start()
    time.sleep(0.3)  # the search is running now
    t0 = time.perf_counter()
    r = httpx.get(f"{live}/TAP/availability", timeout=30)
    waited = time.perf_counter() - t0
    worker.join(timeout=30)
    assert r.status_code == 200 and done.is_set()
    assert waited < 1.0, f"a light request waited {waited:.2f} s behind the search"


# -------------------------------------------------------------------- the safety net


def test_safety_net_turns_bad_input_errors_into_4xx(caplog):
    """Errors only bad input raises deep in the stack become a 4xx, logged with their
    traceback; a real bug stays a 500."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from zsds.archive import security

    app = FastAPI()
    security.install(app, max_body_bytes=1000, force_https=False)

    @app.get("/overflow")
    def overflow() -> None:
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    @app.get("/recursion")
    def recursion() -> None:
        raise RecursionError("maximum recursion depth exceeded")

    @app.get("/bug")
    def bug() -> None:
        raise KeyError("a server bug")

    c = TestClient(app, raise_server_exceptions=False)
    with caplog.at_level("WARNING", logger="zsds.archive.security"):
        assert c.get("/overflow").status_code == 400
        assert c.get("/recursion").status_code == 400
    assert "OverflowError" in caplog.text and "Traceback" in caplog.text
    r = c.get("/bug")
    assert r.status_code == 500
    assert r.headers["x-content-type-options"] == "nosniff"


def test_no_500_from_a_sweep_of_bad_values(client, sci):
    """Bad values in every parameter of the main searches: never a 500."""
    rel, _, _ = sci
    bad = ["", "nan", "-1e999", BIG, "'", "a" * 5000, "(((("]
    urls = ["/ibe/search/ztf/products/sci?POS={v}", "/ibe/search/ztf/products/sci?SIZE={v}"
            "&POS=1,2", "/ibe/search/ztf/products/sci?WHERE={v}",
            "/ibe/search/ztf/products/sci?POS=1,2&INTERSECT={v}",
            f"/ibe/data/ztf/{quote(rel)}?center={{v}}&size=5px",
            f"/ibe/data/ztf/{quote(rel)}?center=10,10px&size={{v}}",
            "/SCS?table=ztf_objects_dr23&RA={v}&DEC=1&SR=0.1",
            "/SCS?table=ztf_objects_dr23&RA=1&DEC=1&SR={v}",
            "/SIA?POS={v}", "/SIA?POS=CIRCLE+10+20+{v}", "/SIA?MAXREC={v}",
            "/TAP/sync?QUERY={v}", "/TAP/sync?MAXREC={v}&QUERY=SELECT+oid+FROM+ztf_objects",
            "/cgi-bin/ZTF/nph_light_curves?POS=CIRCLE+{v}+1+0.01",
            "/cgi-bin/ZTF/nph_light_curves?ID=1&TIME={v}",
            f"/ui/api/image.png?path={quote(rel)}&scale={{v}}",
            f"/ui/api/image.png?path={quote(rel)}&lo={{v}}&hi=1",
            f"/ui/api/pix2world?path={quote(rel)}&x={{v}}",
            "/api/moving/search?ephemeris={v}", "/api/moving/search?designation=X&start={v}",
            "/?pos={v}", "/?pos=1+2&size={v}", "/ui/finder?ra={v}&dec=1",
            "/ui/api/periodogram?oid=1&fmax={v}", "/ui/api/qa?night={v}"]
    for url in urls:
        for v in bad:
            r = client.get(url.format(v=quote(v)))
            assert r.status_code < 500, (url, v, r.status_code, r.text[:200])
