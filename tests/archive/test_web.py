"""The web UI (pages and their JSON/PNG APIs) against the archived home's database and files."""

from __future__ import annotations

import io
import re
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.timeseries import LombScargle
from astropy.wcs import WCS
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import text

from zsds.archive.app import create_app
from zsds.archive.auth import create_user
from zsds.archive.web import ibe_url, parse_position
from zsds.core.home import Home
from zsds.core.sphere import angular_distance_deg
from zsds.lightcurves.build import BAD_CATFLAGS
from zsds.lightcurves.matchfile import read_lightcurve, read_matchfile


@pytest.fixture(scope="module")
def client(archive_home: Home) -> TestClient:
    return TestClient(create_app(archive_home))


@pytest.fixture(scope="module")
def engine(client: TestClient):
    return client.app.state.ctx.engine


def _sql(engine, query: str, **params) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(text(query), conn, params=params)


@pytest.fixture(scope="module")
def sci(engine) -> pd.Series:
    """One archived science quadrant of the second night."""
    df = _sql(engine, "SELECT * FROM archive_images WHERE tbl = 'sci' ORDER BY obsjd DESC")
    assert len(df) > 0
    return df.iloc[0]


@pytest.fixture(scope="module")
def lcobj(engine) -> pd.Series:
    """A light-curve object with missed epochs (upper limits) and enough good points."""
    df = _sql(engine, """SELECT o.*, m.nexposures FROM lc_objects o JOIN matchfiles m
                         ON m.field = o.field AND m.rcid = o.rcid AND m.fid = o.fid
                         WHERE o.ngoodobs >= 10 AND o.nobs < m.nexposures
                         ORDER BY o.nobs DESC, o.oid LIMIT 1""")
    assert len(df) == 1
    return df.iloc[0]


def _covering(home: Home, engine, tbl: str, ra: float, dec: float) -> set[str]:
    """Truth: the indexed images whose WCS footprint contains the position."""
    c = SkyCoord(ra * u.deg, dec * u.deg)
    out = set()
    for rel in _sql(engine, "SELECT relpath FROM archive_images WHERE tbl = :t", t=tbl).relpath:
        h = fits.getheader(home.path(rel))
        if WCS(h).footprint_contains(c):
            out.add(rel)
    return out


# --------------------------------------------------------------------------- helpers


def test_parse_position_formats() -> None:
    assert parse_position("338.93 25.62") == pytest.approx((338.93, 25.62))
    assert parse_position("338.93, -5.5") == pytest.approx((338.93, -5.5))
    ra, dec = parse_position("22:35:43.2 +25:37:12")
    assert (ra, dec) == pytest.approx((338.93, 25.62), abs=1e-9)
    assert parse_position("22h35m43.2s +25d37m12s") == pytest.approx((338.93, 25.62), abs=1e-9)
    with pytest.raises(ValueError, match="cannot read a position"):
        parse_position("M31 please")


def test_ibe_url_layout() -> None:
    assert ibe_url("products/sci/2026/1121/090104/x_sciimg.fits") == \
        "/ibe/data/ztf/products/sci/2026/1121/090104/x_sciimg.fits"
    assert ibe_url("products/ref/000/field000645/zr/ccd06/q1/v001/x_refimg.fits") == \
        "/ibe/data/ztf/products/ref/000/field000645/zr/ccd06/q1/x_refimg.fits"
    assert ibe_url("raw/2026/1121/090104/x_o.fits.fz") == \
        "/ibe/data/ztf/products/raw/2026/1121/090104/x_o.fits.fz"


# --------------------------------------------------------------------------- search page


def test_search_page_lists_covering_images(client, engine, archive_home, sci) -> None:
    r = client.get("/", params={"pos": f"{sci.ra} {sci.dec}", "size": "0", "tbl": "sci"})
    assert r.status_code == 200
    html = unescape(r.text)
    shown = set(re.findall(r'class="view" href="/ui/image\?path=([^"&]+)', html))
    assert shown == _covering(archive_home, engine, "sci", sci.ra, sci.dec)
    assert f'href="{ibe_url(sci.relpath)}"' in html
    # Light-curve objects panel: the objects within the radius, from lc_objects.
    objs = _sql(engine, "SELECT oid, ra, dec FROM lc_objects")
    d = angular_distance_deg(sci.ra, sci.dec, objs.ra, objs.dec) * 3600
    want = {str(o) for o in objs.oid[d <= 30]}
    r = client.get("/", params={"pos": f"{sci.ra} {sci.dec}", "radius": "30"})
    got = set(re.findall(r'/ui/lightcurve\?oid=(\d+)', r.text))
    assert want and got == want


def test_search_filters_and_sexagesimal(client, engine, sci) -> None:
    c = SkyCoord(sci.ra * u.deg, sci.dec * u.deg).to_string("hmsdms", sep=":", precision=3)
    night2 = client.get("/", params={"pos": c, "size": "0", "start": "2026-11-21",
                                     "end": "2026-11-21"})
    night1 = client.get("/", params={"pos": c, "size": "0", "end": "2026-11-20"})
    n2 = len(re.findall(r'class="view"', night2.text))
    n1 = len(re.findall(r'class="view"', night1.text))
    cnt = _sql(engine, "SELECT COUNT(*) AS n, obsjd > 2461365.5 AS late FROM archive_images "
                       "WHERE tbl = 'sci' AND rcid = :rc GROUP BY late", rc=int(sci.rcid))
    by = dict(zip(cnt.late.astype(bool), cnt.n, strict=True))
    assert (n1, n2) == (by[False], by[True])
    none = client.get("/", params={"pos": c, "size": "0", "filter": "zg"})
    assert len(re.findall(r'class="view"', none.text)) == 0  # the survey is r-band only
    ref = client.get("/", params={"pos": c, "size": "0", "tbl": "ref"})
    assert "_refimg.fits" in ref.text


@pytest.mark.parametrize("params,needle", [
    ({"pos": "not a place"}, "cannot read a position"),
    ({"pos": "10 20", "tbl": "nope"}, "unknown table"),
    ({"pos": "10 20", "size": "big"}, "size must be a number"),
    ({"pos": "10 20", "start": "yesterday"}, "start='yesterday': expected a date"),
])
def test_search_bad_input_is_400(client, params, needle) -> None:
    r = client.get("/", params=params)
    assert r.status_code == 400
    assert needle in unescape(r.text)


def test_images_json(client, engine, archive_home, sci) -> None:
    r = client.get("/ui/api/images", params={"pos": f"{sci.ra} {sci.dec}", "size": 0})
    assert r.status_code == 200
    rows = r.json()["images"]
    assert {x["relpath"] for x in rows} == _covering(archive_home, engine, "sci", sci.ra, sci.dec)
    row = next(x for x in rows if x["relpath"] == sci.relpath)
    assert row["seeing"] == pytest.approx(sci.seeing)
    assert row["dist_arcsec"] < 1.0


# --------------------------------------------------------------------------- image viewer


def test_image_page(client, sci) -> None:
    r = client.get("/ui/image", params={"path": sci.relpath, "ra": sci.ra, "dec": sci.dec})
    assert r.status_code == 200
    assert Path(sci.relpath).name in r.text
    # the page data is a JSON block (the Content-Security-Policy allows no inline script)
    view = re.search(r'<script type="application/json" id="view-data">(\{.*\})</script>', r.text)
    assert view
    import json
    v = json.loads(view.group(1))
    h = fits.getheader(client.app.state.ctx.home.path(sci.relpath))
    assert (v["nx"], v["ny"], v["catalog"]) == (h["NAXIS1"], h["NAXIS2"], True)
    # The target lands on the pixel the WCS puts it at (the image centre here).
    x, y = WCS(h).all_world2pix(sci.ra, sci.dec, 0)
    assert (v["target"]["x"], v["target"]["y"]) == pytest.approx((float(x), float(y)), abs=1e-3)
    assert "/static/image.js" in r.text


def test_image_png_section_values(client, archive_home, sci) -> None:
    data = fits.getdata(archive_home.path(sci.relpath)).astype(np.float64)
    x0, y0, w, h = 37, 50, 120, 80
    lo, hi = np.percentile(data, [5, 99])
    r = client.get("/ui/api/image.png", params={
        "path": sci.relpath, "x0": x0, "y0": y0, "w": w, "h": h, "scale": 1,
        "stretch": "linear", "lo": lo, "hi": hi})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = np.asarray(Image.open(io.BytesIO(r.content)))
    assert img.shape == (h, w)
    want = np.clip((data[y0:y0 + h, x0:x0 + w] - lo) / (hi - lo), 0, 1) * 255
    assert np.abs(img.astype(float) - want[::-1]).max() <= 1.0  # row 0 of the PNG is the top


@pytest.mark.parametrize("stretch,scale,w,h", [("zscale", 2.5, 64, 40), ("asinh", 0.25, 512, 300),
                                               ("log", 1.0, 10, 10), ("sqrt", 3.0, 33, 7)])
def test_image_png_size(client, sci, stretch, scale, w, h) -> None:
    r = client.get("/ui/api/image.png", params={"path": sci.relpath, "w": w, "h": h,
                                                "scale": scale, "stretch": stretch})
    assert r.status_code == 200
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(r.content)).size == (round(w * scale), round(h * scale))
    assert float(r.headers["x-display-hi"]) > float(r.headers["x-display-lo"])


def test_image_png_bad_params(client, sci) -> None:
    for params, needle in [({"stretch": "rainbow"}, "unknown stretch"),
                           ({"x0": 100000}, "outside"), ({"scale": 0}, "scale"),
                           ({"w": 4000, "scale": 8}, "exceeds"),
                           ({"lo": 5, "hi": 1}, "must exceed")]:
        r = client.get("/ui/api/image.png", params={"path": sci.relpath, **params})
        assert r.status_code == 400, params
        assert needle in r.json()["detail"]


def test_raw_extension(client, engine) -> None:
    raw = _sql(engine, "SELECT relpath FROM archive_images WHERE tbl = 'raw' "
                       "AND imgtypecode = 'o' LIMIT 1").relpath[0]
    r = client.get("/ui/image", params={"path": raw, "hdu": 2})
    # Extensions are listed by index (real raw files' EXTNAMEs are the index as text).
    assert r.status_code == 200 and "HDU 2" in r.text
    r = client.get("/ui/api/image.png", params={"path": raw, "hdu": 2, "scale": 0.5})
    assert Image.open(io.BytesIO(r.content)).size == (256, 256)
    assert client.get("/ui/api/image.png", params={"path": raw, "hdu": 0}).status_code == 400


def test_catalog_json_equals_psfcat(client, archive_home, sci) -> None:
    r = client.get("/ui/api/catalog", params={"path": sci.relpath})
    assert r.status_code == 200
    j = r.json()
    cat = fits.getdata(archive_home.path(sci.relpath.replace("_sciimg.", "_psfcat.")), 1)
    assert j["n"] == len(cat) > 0 and j["origin"] == 1
    np.testing.assert_allclose(j["x"], cat["xpos"])
    np.testing.assert_allclose(j["y"], cat["ypos"])
    np.testing.assert_allclose(np.array(j["mag"], float), cat["mag"], equal_nan=True)
    mask = sci.relpath.replace("_sciimg.", "_mskimg.")
    assert client.get("/ui/api/catalog", params={"path": mask}).status_code == 404


def test_pix2world_and_header(client, archive_home, sci) -> None:
    path = archive_home.path(sci.relpath)
    hdr = fits.getheader(path)
    data = fits.getdata(path)
    r = client.get("/ui/api/pix2world", params={"path": sci.relpath, "x": 123, "y": 45})
    j = r.json()
    ra, dec = WCS(hdr).all_pix2world(123, 45, 0)
    assert (j["ra"], j["dec"]) == pytest.approx((float(ra), float(dec)), abs=1e-10)
    assert j["value"] == pytest.approx(float(data[45, 123]))
    r = client.get("/ui/api/header", params={"path": sci.relpath})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert f"EXPID   = {hdr['EXPID']:>20d}" in r.text
    assert r.text.count("\n") >= len(hdr)


@pytest.mark.parametrize("path,status", [
    ("", 400), ("../zsds.sqlite", 400), ("/etc/passwd", 400),
    ("products/../../../etc/passwd", 400), ("zsds.sqlite", 400), ("products\\sci\\x.fits", 400),
    ("products/sci/x.txt", 400), ("products/sci/2026/none_sciimg.fits", 404),
])
def test_bad_paths(client, path, status) -> None:
    for url in ("/ui/image", "/ui/api/image.png", "/ui/api/header", "/ui/api/catalog",
                "/ui/api/pix2world"):
        assert client.get(url, params={"path": path}).status_code == status, url


def test_symlink_out_of_home_rejected(client, archive_home, tmp_path) -> None:
    outside = tmp_path / "secret.fits"
    fits.writeto(outside, np.zeros((4, 4), np.float32))
    link = archive_home.path("products/sci/leak.fits")
    link.symlink_to(outside)
    try:
        r = client.get("/ui/api/header", params={"path": "products/sci/leak.fits"})
        assert r.status_code == 400 and "leaves the archive home" in r.json()["detail"]
    finally:
        link.unlink()


def test_restricted_product_needs_login(client, engine, archive_home) -> None:
    streaks = next(archive_home.products.glob("sci/*/*/*/*_streaks.fits"))
    rel = str(streaks.relative_to(archive_home.root))
    assert client.get("/ui/api/header", params={"path": rel}).status_code == 401
    create_user(engine, "webviewer", "s3cret-pw", replace=True)
    r = client.get("/ui/api/header", params={"path": rel}, auth=("webviewer", "s3cret-pw"))
    assert r.status_code == 200 and "# HDU 1" in r.text


# --------------------------------------------------------------------------- light curves


def test_lightcurve_json_equals_matchfile(client, archive_home, lcobj) -> None:
    r = client.get("/ui/api/lightcurve", params={"oid": int(lcobj.oid)})
    assert r.status_code == 200
    c = r.json()["curves"][0]
    pts = read_lightcurve(archive_home.path(lcobj.matchfile), int(lcobj.matchid))
    pts = pts[np.argsort(pts["mjd"], kind="stable")]
    assert c["oid"] == lcobj.oid and c["n"] == len(pts) == lcobj.nobs
    np.testing.assert_allclose(c["mjd"], pts["mjd"])
    np.testing.assert_allclose(c["mag"], pts["mag"], rtol=1e-6)
    np.testing.assert_allclose(c["magerr"], pts["magerr"], rtol=1e-6)
    assert c["good"] == ((pts["catflags"] & BAD_CATFLAGS) == 0).tolist()
    assert sum(c["good"]) == lcobj.ngoodobs
    # Upper limits: the matchfile's exposures without a detection, at their limiting mag.
    exps = read_matchfile(archive_home.path(lcobj.matchfile), objects_only=True).exposures
    miss = exps[~np.isin(exps["expid"], pts["expid"])]
    assert len(c["limits"]["mjd"]) == lcobj.nexposures - lcobj.nobs == len(miss) > 0
    assert sorted(c["limits"]["limitmag"]) == pytest.approx(sorted(miss["limitmag"]))


def test_periodogram(client, archive_home, lcobj) -> None:
    r = client.get("/ui/api/periodogram", params={"oid": int(lcobj.oid), "fmax": 15})
    assert r.status_code == 200
    j = r.json()
    pts = read_lightcurve(archive_home.path(lcobj.matchfile), int(lcobj.matchid))
    good = (pts["catflags"] & BAD_CATFLAGS) == 0
    t, m, e = (pts[k][good].astype(float) for k in ("mjd", "mag", "magerr"))
    fmin = 0.5 / np.ptp(t)
    f, p = LombScargle(t, m, e).autopower(minimum_frequency=fmin, maximum_frequency=15,
                                          samples_per_peak=10)
    assert j["n"] == good.sum() == lcobj.ngoodobs
    np.testing.assert_allclose(j["frequency"], f)
    np.testing.assert_allclose(j["power"], p, rtol=1e-6)
    assert j["best_period"] == pytest.approx(1 / f[np.argmax(p)])
    assert 0 <= j["fap"] <= 1
    assert client.get("/ui/api/periodogram", params={"oid": int(lcobj.oid), "fmin": 5,
                                                     "fmax": 1}).status_code == 400


def test_lightcurve_pages(client, engine, lcobj) -> None:
    r = client.get("/ui/lightcurve", params={"oid": int(lcobj.oid)})
    assert r.status_code == 200
    assert str(lcobj.oid) in r.text and "/static/lightcurve.js" in r.text
    assert f"{lcobj.medianmag:.6g}" in r.text and f"{lcobj.stetsonj:.6g}" in r.text
    assert client.get("/ui/lightcurve", params={"oid": "abc"}).status_code == 400
    assert client.get("/ui/lightcurve", params={"oid": "1"}).status_code == 404
    assert client.get("/ui/api/lightcurve", params={"oid": "1"}).status_code == 404
    r = client.get("/ui/api/lightcurve.png", params={"oid": int(lcobj.oid)})
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    # Cone search page: every object within 60" (truth from the table).
    objs = _sql(engine, "SELECT oid, ra, dec FROM lc_objects")
    d = angular_distance_deg(lcobj.ra, lcobj.dec, objs.ra, objs.dec) * 3600
    r = client.get("/ui/lightcurves", params={"pos": f"{lcobj.ra} {lcobj.dec}", "radius": 60})
    assert r.status_code == 200
    assert set(re.findall(r"/ui/lightcurve\?oid=(\d+)", r.text)) == \
        {str(o) for o in objs.oid[d <= 60]}
    assert client.get("/ui/lightcurves").status_code == 200
    assert client.get("/ui/lightcurves", params={"pos": "x y z"}).status_code == 400


# --------------------------------------------------------------------------- finder, login


def test_finder_chart(client, engine, sci) -> None:
    r = client.get("/ui/finder")
    assert r.status_code == 200 and 'name="ra"' in r.text
    r = client.get("/ui/finder", params={"ra": str(sci.ra), "dec": str(sci.dec), "size": "3"})
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    # The deepest image there: the reference of that quadrant.
    ref = _sql(engine, "SELECT relpath FROM archive_images WHERE tbl = 'ref' AND rcid = :rc",
               rc=int(sci.rcid)).relpath[0]
    assert r.headers["x-finder-image"] == ref
    c = SkyCoord(sci.ra * u.deg, sci.dec * u.deg)
    r = client.get("/ui/finder", params={"ra": c.ra.to_string(u.hourangle, sep=":"),
                                         "dec": c.dec.to_string(sep=":", alwayssign=True),
                                         "format": "pdf"})
    assert r.status_code == 200 and r.content[:5] == b"%PDF-"
    assert client.get("/ui/finder", params={"ra": "10", "dec": "-60"}).status_code == 404
    assert client.get("/ui/finder", params={"ra": "abc", "dec": "1"}).status_code == 400
    assert client.get("/ui/finder", params={"ra": str(sci.ra), "dec": str(sci.dec),
                                            "size": "500"}).status_code == 400
    assert client.get("/ui/finder", params={"ra": str(sci.ra), "dec": str(sci.dec),
                                            "format": "gif"}).status_code == 400


def test_login_page_and_form(client, engine) -> None:
    r = client.get("/ui/login", params={"next": "/ui/lightcurves"})
    assert r.status_code == 200
    assert 'action="/account/signon/login.do"' in r.text
    for field in ("josso_username", "josso_password", 'name="next" value="/ui/lightcurves"'):
        assert field in r.text
    create_user(engine, "formuser", "pw-123456", replace=True)
    browser = TestClient(client.app)  # its own cookie jar: the session stays in this test
    assert "log out" not in browser.get("/").text
    r = browser.post("/account/signon/login.do", data={
        "josso_username": "formuser", "josso_password": "pw-123456", "next": "/"},
        follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    page = browser.get("/")
    assert "formuser" in page.text and "log out" in page.text
