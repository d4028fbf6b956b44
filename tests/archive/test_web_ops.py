"""Operations and solar-system pages of the web UI: moving-object search, coverage and QA,
the alert browser and the depot (``zsds.archive.web_ops``)."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from zsds.alerts.packet import decode_alert_packet, read_cutout
from zsds.archive.app import create_app
from zsds.archive.auth import create_user, is_restricted
from zsds.core.naming import nid_of
from zsds.db.schema import (
    AlertRecord,
    ArchiveImage,
    Candidate,
    NightSummaryRecord,
    StreakRecord,
)
from zsds.solar.ephemeris import ephemerides, ephemerides_grid
from zsds.solar.mpcorb import read_mpcorb

from .conftest import NIGHT1, NIGHT2

MJD_JD = 2400000.5


@pytest.fixture(scope="module")
def app(archive_home):
    return create_app(archive_home)


@pytest.fixture(scope="module")
def engine(app):
    return app.state.ctx.engine


@pytest.fixture(scope="module")
def client(app) -> TestClient:
    """An anonymous client."""
    return TestClient(app)


@pytest.fixture(scope="module")
def user_client(app, engine) -> TestClient:
    """A client logged in through IRSA's login endpoint (session cookie)."""
    create_user(engine, "ops", "s3cret")
    c = TestClient(app)
    r = c.get("/account/signon/login.do",
              params={"josso_cmd": "login", "josso_username": "ops", "josso_password": "s3cret"})
    assert r.status_code == 200
    return c


@pytest.fixture(scope="module")
def known(engine) -> tuple[str, pd.DataFrame]:
    """The known asteroid best matched by the pipeline (smallest ssdistnr) and its
    detections."""
    with engine.connect() as conn:
        rows = conn.execute(select(Candidate.candid, Candidate.pid, Candidate.jd, Candidate.ra,
                                   Candidate.dec, Candidate.ssnamenr, Candidate.record)
                            .where(Candidate.ssnamenr.isnot(None))).all()
    df = pd.DataFrame(rows, columns=["candid", "pid", "jd", "ra", "dec", "ssnamenr", "record"])
    assert len(df), "the test home has no candidate tagged with a known asteroid"
    df["ssdistnr"] = [r["ssdistnr"] for r in df["record"]]
    name = df.groupby("ssnamenr")["ssdistnr"].max().idxmin()
    dets = df[df["ssnamenr"] == name].sort_values("jd").reset_index(drop=True)
    assert dets["ssdistnr"].max() < 2.0
    return str(name), dets


def _sep_arcsec(ra1, dec1, ra2, dec2):
    from astropy.coordinates import SkyCoord

    return SkyCoord(ra1, dec1, unit="deg").separation(SkyCoord(ra2, dec2, unit="deg")).arcsec


# ----------------------------------------------------------------------------------------
# Moving-object search
# ----------------------------------------------------------------------------------------


def test_moving_search_by_designation(user_client, archive_home, engine, known):
    """The search of a logged-in user (detections are alert content: depot only; what an
    anonymous caller gets is in tests/security/test_authz.py)."""
    name, dets = known
    r = user_client.get("/api/moving/search", params={"designation": name, "start": NIGHT2,
                                                      "end": NIGHT2})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["query"]["designation"] == name
    imgs = pd.DataFrame(res["images"])
    # every detection of the object lies on an image the search returns
    assert set(dets["pid"]) <= set(imgs["pid"])
    # predictions agree with an independent two-body ephemeris and with the detections
    orbits = read_mpcorb(archive_home.refcat / "MPCORB.DAT")
    orbit = orbits[np.flatnonzero(orbits.designation == name)]
    for _, d in dets.iterrows():
        im = imgs[imgs["pid"] == d["pid"]].iloc[0]
        assert abs(im["jd_mid"] - d["jd"]) < 1e-6  # candidate jd = mid-exposure
        eph = ephemerides(orbit, d["jd"] - MJD_JD, "I41").iloc[0]
        assert _sep_arcsec(im["ra_pred"], im["dec_pred"], eph["ra"], eph["dec"]) < 0.01
        assert _sep_arcsec(im["ra_pred"], im["dec_pred"], d["ra"], d["dec"]) < 2.0
        # predicted pixel = the detection's pixel through the image's WCS
        w = WCS(fits.getheader(archive_home.path(im["relpath"])))
        x, y = w.all_world2pix([d["ra"]], [d["dec"]], 1)
        assert np.hypot(x[0] - im["x"], y[0] - im["y"]) < 2.0
        assert im["cutout_url"].startswith("/ibe/data/ztf/products/sci/")
        assert "size=30arcsec" in im["cutout_url"]
        assert im["viewer_url"].startswith("/ui/image?path=products%2Fsci%2F")
    # every returned image really contains the predicted position
    for _, im in imgs.iterrows():
        h = fits.getheader(archive_home.path(im["relpath"]))
        assert 0.5 <= im["x"] <= h["NAXIS1"] + 0.5 and 0.5 <= im["y"] <= h["NAXIS2"] + 0.5
    # and the night's other images do not
    with engine.connect() as conn:
        night = pd.read_sql(select(ArchiveImage.pid, ArchiveImage.relpath, ArchiveImage.obsjd,
                                   ArchiveImage.exptime)
                            .where(ArchiveImage.tbl == "sci",
                                   ArchiveImage.nid == nid_of(NIGHT2)), conn)
    others = night[~night["pid"].isin(imgs["pid"])]
    assert res["nsearched"] == len(night) > len(others) > 0
    eph = ephemerides_grid(orbit, others["obsjd"] + others["exptime"] / 172800 - MJD_JD)
    for (_, im), ra, dec in zip(others.iterrows(), eph["ra"], eph["dec"], strict=True):
        h = fits.getheader(archive_home.path(im["relpath"]))
        x, y = WCS(h).all_world2pix([ra], [dec], 1)
        assert not (0.5 <= x[0] <= h["NAXIS1"] + 0.5 and 0.5 <= y[0] <= h["NAXIS2"] + 0.5)
    got = pd.DataFrame(res["detections"])
    assert sorted(got["candid"]) == sorted(dets["candid"])
    assert (got["sep"] < 2.0).all()
    assert np.allclose(got.set_index("candid").loc[dets["candid"], "sep"],
                       dets["ssdistnr"], atol=0.05)
    assert len(res["path"]) > 2 and res["tracks"] == []


def test_moving_search_without_range_and_csv(client, known):
    name, dets = known
    res = client.get("/api/moving/search", params={"designation": name}).json()
    assert set(dets["pid"]) <= {im["pid"] for im in res["images"]}
    r = client.get("/api/moving/search", params={"designation": name, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = pd.read_csv(io.StringIO(r.text))
    assert sorted(table["pid"]) == sorted(im["pid"] for im in res["images"])


def test_moving_search_by_ephemeris(user_client, known):
    client = user_client
    _, dets = known
    rows = dets[["jd", "ra", "dec"]].to_numpy()
    csv = "jd,ra,dec\n" + "\n".join(f"{j:.8f},{a:.7f},{d:.7f}" for j, a, d in rows)
    for resp in (
        client.get("/api/moving/search", params={"ephemeris": csv}),
        client.post("/api/moving/search", json={"ephemeris": rows.tolist()}),
        client.post("/api/moving/search", files={"file": ("eph.csv", csv, "text/csv")}),
        client.post("/api/moving/search",
                    data={"ephemeris": json.dumps([{"mjd": j - MJD_JD, "ra": a, "dec": d}
                                                   for j, a, d in rows])}),
    ):
        assert resp.status_code == 200, resp.text
        res = resp.json()
        assert res["query"]["mode"] == "ephemeris"
        assert res["query"]["ephemeris_rows"] == len(rows)
        assert sorted(im["pid"] for im in res["images"]) == sorted(dets["pid"])
        for im in res["images"]:
            d = dets[dets["pid"] == im["pid"]].iloc[0]
            assert _sep_arcsec(im["ra_pred"], im["dec_pred"], d["ra"], d["dec"]) < 0.05
        assert sorted(d["candid"] for d in res["detections"]) == sorted(dets["candid"])


def test_moving_page(client, user_client, known):
    name, dets = known
    r = user_client.get("/ui/moving", params={"designation": name, "start": NIGHT2,
                                              "end": NIGHT2})
    assert r.status_code == 200
    assert "<svg" in r.text and 'class="track"' in r.text
    for candid in dets["candid"]:
        assert str(candid) in r.text
    r = client.post("/ui/moving", data={"designation": "", "ephemeris": ""})
    assert r.status_code == 200 and "<form" in r.text


@pytest.mark.parametrize(("params", "status", "needle"), [
    ({"designation": "NOSUCH1"}, 404, "not in MPCORB"),
    ({}, 400, "missing designation"),
    ({"designation": "X", "ephemeris": "1,2,3\n4,5,6"}, 400, "not both"),
    ({"ephemeris": "2461365.5,10,20"}, 400, "at least two rows"),
    ({"ephemeris": "2461365.5,10,95\n2461366.5,10,20"}, 400, "dec"),
    ({"ephemeris": "jd,ra\n1,2\n3,4"}, 400, "three fields"),
    ({"designation": "X", "start": "yesterday-ish"}, 400, "start="),
    ({"designation": "X", "format": "fits"}, 400, "output format"),
])
def test_moving_search_errors(client, known, params, status, needle):
    if params.get("designation") == "X":
        params = {**params, "designation": known[0]}
    r = client.get("/api/moving/search", params=params)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


# ----------------------------------------------------------------------------------------
# Coverage and QA
# ----------------------------------------------------------------------------------------


def _png(content: bytes) -> np.ndarray:
    assert content[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(content)))


def test_coverage_png(client):
    for params in ({"night": NIGHT2}, {"night": NIGHT1, "projection": "aitoff"},
                   {"night": NIGHT1, "tbl": "raw"}, {}):
        r = client.get("/ui/api/coverage.png", params=params)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        img = _png(r.content)
        assert img.shape[0] > 200 and img.shape[1] > 200
        # filled footprints: the zr colour (tab:red) is on the map
        rgb = img[..., :3].astype(int)
        assert ((rgb[..., 0] > 180) & (rgb[..., 1] < 140) & (rgb[..., 2] < 140)).any()
    assert client.get("/ui/api/coverage.png", params={"night": "21/11/2026"}).status_code == 400
    assert client.get("/ui/api/coverage.png",
                      params={"night": NIGHT2, "projection": "mercator"}).status_code == 400


def test_qa_api_matches_db(client, engine):
    with engine.connect() as conn:
        db = pd.read_sql(select(ArchiveImage.pid, ArchiveImage.seeing, ArchiveImage.maglimit,
                                ArchiveImage.magzp, ArchiveImage.airmass)
                         .where(ArchiveImage.tbl == "sci",
                                ArchiveImage.nid == nid_of(NIGHT2)), conn)
        sums = conn.execute(select(NightSummaryRecord)
                            .where(NightSummaryRecord.night == pd.Timestamp(NIGHT2).date())
                            ).all()
    qa = client.get("/ui/api/qa", params={"night": NIGHT2}).json()
    assert qa["night"] == NIGHT2
    got = pd.DataFrame(qa["images"]).set_index("pid").sort_index()
    db = db.set_index("pid").sort_index()
    assert list(got.index) == list(db.index) and len(db) > 0
    for col in ("seeing", "maglimit", "magzp", "airmass"):
        assert np.allclose(got[col], db[col])
        assert qa["stats"][col]["n"] == len(db)
        assert qa["stats"][col]["median"] == pytest.approx(float(db[col].median()))
    assert "fwhm_px" in qa["metrics"]
    assert len(qa["summaries"]) == len(sums) > 0
    for s, row in zip(qa["summaries"], sums, strict=True):
        rec = row._mapping
        for key in ("quadrants", "failed", "alerts"):
            assert s[key] == rec[key]
        assert s["latency_p50_s"] == pytest.approx(rec["latency_p50_s"])
        assert s["latency_p95_s"] == pytest.approx(rec["latency_p95_s"])
    # the default night is the latest one with science images
    assert client.get("/ui/api/qa").json()["night"] == max(NIGHT1, NIGHT2)
    assert client.get("/ui/api/qa", params={"night": "2026-13-40"}).status_code == 400


def test_nights_and_coverage_page(client, engine):
    with engine.connect() as conn:
        counts = dict(conn.execute(select(ArchiveImage.nid, func.count())
                                   .where(ArchiveImage.tbl == "sci")
                                   .group_by(ArchiveImage.nid)).all())
        nsum = conn.scalar(select(func.count()).select_from(NightSummaryRecord))
    nights = client.get("/ui/api/nights").json()
    assert [n["night"] for n in nights] == [NIGHT2, NIGHT1]
    assert {n["nid"]: n["nsci"] for n in nights} == counts
    r = client.get("/ui/coverage", params={"night": NIGHT1})
    assert r.status_code == 200
    assert f"/ui/api/coverage.png?night={NIGHT1}" in r.text
    assert 'id="qa-charts"' in r.text and "/static/ops.js" in r.text
    assert r.text.count("/ui/coverage?night=") >= nsum
    assert client.get("/static/ops.js").status_code == 200


# ----------------------------------------------------------------------------------------
# Alerts
# ----------------------------------------------------------------------------------------


def _alerts(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(select(AlertRecord.candid, AlertRecord.relpath, AlertRecord.topic,
                                  Candidate.rb, Candidate.jd)
                           .join(Candidate, Candidate.candid == AlertRecord.candid), conn)


def test_alerts_anonymous(client, app, engine):
    alerts = _alerts(engine)
    ctx = app.state.ctx
    public = [c for c, p in zip(alerts["candid"], alerts["relpath"], strict=True)
              if not is_restricted(ctx, p)]
    res = client.get("/ui/api/alerts").json()
    assert res["total"] == len(public)
    assert res["hidden"] == len(alerts) - len(public) > 0
    page = client.get("/ui/alerts")
    assert page.status_code == 200 and "/ui/login?next=/ui/alerts" in page.text
    candid = int(alerts["candid"].iloc[0])
    assert client.get("/ui/api/cutout.png", params={"candid": candid}).status_code == 401
    r = client.get("/ui/alert", params={"candid": candid})
    assert r.status_code == 401 and "Log in" in r.text


def test_alerts_logged_in(user_client, engine):
    alerts = _alerts(engine)
    res = user_client.get("/ui/api/alerts", params={"per_page": 100}).json()
    assert res["total"] == len(alerts) and res["hidden"] == 0
    assert len(res["rows"]) == min(100, len(alerts))
    jds = [r["jd"] for r in res["rows"]]
    assert jds == sorted(jds, reverse=True)
    # paging covers every alert exactly once
    seen = []
    for p in range(1, res["pages"] + 1):
        seen += [r["candid"] for r in user_client.get(
            "/ui/api/alerts", params={"per_page": 100, "page": p}).json()["rows"]]
    assert sorted(seen) == sorted(alerts["candid"])
    r = user_client.get("/ui/api/alerts", params={"rb_min": 0.5, "night": NIGHT2}).json()
    assert r["total"] == int((alerts["rb"] >= 0.5).sum())
    assert user_client.get("/ui/api/alerts", params={"night": NIGHT1}).json()["total"] == 0
    html = user_client.get("/ui/alerts", params={"per_page": 20}).text
    assert html.count('class="alert-row"') == min(20, len(alerts))
    assert user_client.get("/ui/api/alerts", params={"night": "nope"}).status_code == 400
    assert user_client.get("/ui/api/alerts", params={"rb_min": 2}).status_code == 422


def test_cutout_png(user_client, archive_home, engine):
    alerts = _alerts(engine)
    row = alerts.iloc[len(alerts) // 2]
    packet = decode_alert_packet(archive_home.path(row["relpath"]))[0][0]
    for kind, field in (("science", "cutoutScience"), ("template", "cutoutTemplate"),
                        ("difference", "cutoutDifference")):
        r = user_client.get("/ui/api/cutout.png",
                            params={"candid": int(row["candid"]), "kind": kind, "scale": 3})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        img = _png(r.content)
        data = read_cutout(packet[field])
        assert img.shape == (data.shape[0] * 3, data.shape[1] * 3)
        # the brightest pixel of the stamp is white, at its place (FITS row 1 at the bottom)
        iy, ix = np.unravel_index(np.nanargmax(data), data.shape)
        assert img[(data.shape[0] - 1 - iy) * 3, ix * 3] == 255
    bad = user_client.get("/ui/api/cutout.png", params={"candid": int(row["candid"]),
                                                        "kind": "raw"})
    assert bad.status_code == 400
    assert user_client.get("/ui/api/cutout.png", params={"candid": 1}).status_code == 404


def test_alert_page(user_client, archive_home, engine, known):
    alerts = _alerts(engine)
    name, dets = known
    tagged = alerts[alerts["candid"].isin(dets["candid"])]
    row = (tagged if len(tagged) else alerts).iloc[-1]
    packet = decode_alert_packet(archive_home.path(row["relpath"]))[0][0]
    r = user_client.get("/ui/alert", params={"candid": int(row["candid"])})
    assert r.status_code == 200
    assert packet["objectId"] in r.text
    ndet = 1 + sum(p.get("candid") is not None for p in packet["prv_candidates"] or [])
    assert r.text.count('class="pt"') == ndet
    for kind in ("science", "template", "difference"):
        assert f"kind={kind}" in r.text
    if len(tagged):
        assert f"/ui/moving?designation={name}" in r.text
    assert user_client.get("/ui/alert", params={"candid": 7}).status_code == 404


# ----------------------------------------------------------------------------------------
# Depot
# ----------------------------------------------------------------------------------------


def test_depot_needs_login(client):
    r = client.get("/ui/depot")
    assert r.status_code == 401 and "/ui/login?next=%2Fui%2Fdepot" in r.text
    assert client.get("/ui/api/depot").status_code == 401


def test_depot_lists_products(user_client, archive_home, engine):
    r = user_client.get("/ui/depot")
    assert r.status_code == 200
    listing = user_client.get("/ui/api/depot").json()
    reports = sorted(p.relative_to(archive_home.root).as_posix()
                     for p in (archive_home.products / "moving").rglob("*") if p.is_file())
    assert sorted(f["path"] for f in listing["reports"]) == reports and reports
    logs = sorted(p.name for p in (archive_home.root / "logs").iterdir())
    assert sorted(f["name"] for f in listing["qa"]) == logs
    with engine.connect() as conn:
        nstreaks = conn.scalar(select(func.count()).select_from(StreakRecord))
        ntopics = conn.scalar(select(func.count(func.distinct(AlertRecord.topic))))
    assert len(listing["streaks"]) == nstreaks
    assert len(listing["alerts"]) == ntopics
    for f in listing["reports"]:
        assert f["url"] == f"/depot/{f['path']}" and f["path"] in r.text
    # the links are served by the depot route to the logged-in user
    first = listing["reports"][0]
    got = user_client.get(first["url"])
    assert got.status_code == 200
    assert got.content == archive_home.path(first["path"]).read_bytes()
    streak = next((s for s in listing["streaks"] if s["url"]), None)
    if streak is not None:
        assert streak["product"].endswith("_streaks.fits")
        assert user_client.get(streak["url"]).status_code == 200
