"""The IVOA endpoints (SCS, SIA v2, TAP sync/async, VOSI) through FastAPI's TestClient."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io.votable import parse as vo_parse
from astropy.io.votable import parse_single_table
from astropy.table import Table
from fastapi.testclient import TestClient
from sqlalchemy import text

from zsds.archive.app import create_app
from zsds.lightcurves.search import cone_search


@pytest.fixture(scope="module")
def app(archive_home):
    return create_app(archive_home)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


@pytest.fixture(scope="module")
def engine(app):
    return app.state.ctx.engine


def _votable(content: bytes) -> Table:
    return parse_single_table(io.BytesIO(content)).to_table()


def _status(content: bytes) -> tuple[str, str]:
    vot = vo_parse(io.BytesIO(content))
    for res in vot.resources:
        for info in res.infos:
            if info.name == "QUERY_STATUS":
                return info.value, info.content or ""
    raise AssertionError("no QUERY_STATUS")


def _an_object(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT oid, ra, dec FROM lc_objects ORDER BY oid "
                                 "LIMIT 1 OFFSET 20")).one()


# --------------------------------------------------------------------------- SCS


def test_scs_matches_cone_search(client, engine):
    obj = _an_object(engine)
    sr = 20.0 / 3600
    r = client.get("/SCS", params={"table": "ztf_objects_dr23", "RA": obj.ra, "DEC": obj.dec,
                                   "SR": sr})
    assert r.status_code == 200
    t = _votable(r.content)
    truth = cone_search(engine, obj.ra, obj.dec, 20.0)
    assert t["oid"].tolist() == truth["oid"].tolist()  # nearest first, as cone_search
    assert t["oid"][0] == obj.oid and t["dist"][0] < 1e-3
    fields = {f.name: f.ucd for f in parse_single_table(io.BytesIO(r.content)).fields}
    assert fields["ra"] == "POS_EQ_RA_MAIN" and fields["oid"] == "ID_MAIN"
    # VERB=1 and CSV
    r = client.get("/SCS", params={"table": "ztf_objects", "RA": obj.ra, "DEC": obj.dec,
                                   "SR": sr, "VERB": 1, "format": "csv"})
    csv = Table.read(r.text, format="ascii.csv")
    assert csv.colnames == ["oid", "ra", "dec", "dist"]
    assert csv["oid"].tolist() == truth["oid"].tolist()


@pytest.mark.parametrize("params, message", [
    ({"RA": 1, "DEC": 2, "SR": 0.1}, "missing required parameter table"),
    ({"table": "ztf_sources", "RA": 1, "DEC": 2, "SR": 0.1}, "unknown table"),
    ({"table": "ztf_objects_dr23", "DEC": 2, "SR": 0.1}, "missing required parameter RA"),
    ({"table": "ztf_objects_dr23", "RA": "x", "DEC": 2, "SR": 0.1}, "RA must be a number"),
    ({"table": "ztf_objects_dr23", "RA": 1, "DEC": 100, "SR": 0.1}, "DEC must be in"),
    ({"table": "ztf_objects_dr23", "RA": 1, "DEC": 2, "SR": -1}, "SR: the radius must be"),
    ({"table": "ztf_objects_dr23", "RA": 1, "DEC": 2, "SR": 0}, "at least 0.01 arcsec"),
    ({"table": "ztf_objects_dr23", "RA": 1, "DEC": 2, "SR": 11}, "at most 10.0 deg"),
])
def test_scs_errors(client, params, message):
    r = client.get("/SCS", params=params)
    assert r.status_code == 400
    assert 'INFO name="Error"' in r.text and message in r.text


# --------------------------------------------------------------------------- SIA v2


def test_sia_capabilities(client):
    for path in ("/SIA/capabilities", "/capabilities"):
        r = client.get(path)
        assert r.status_code == 200
        assert 'standardID="ivo://ivoa.net/std/SIA#query-2.0"' in r.text
        assert "http://testserver/SIA</accessURL>" in r.text


def test_sia_finds_covering_science_image(client, engine):
    with engine.connect() as conn:
        img = conn.execute(text("SELECT relpath, ra, dec, ra1, dec1, ra3, dec3, fid FROM "
                                "archive_images WHERE tbl = 'sci' ORDER BY id LIMIT 1")).one()
        n_sci = conn.execute(text("SELECT count(*) FROM archive_images WHERE tbl = 'sci'")
                             ).scalar_one()
    # A point a quarter of the way from the centre to corner 1: inside this image only.
    ra = img.ra + 0.25 * (img.ra1 - img.ra)
    dec = img.dec + 0.25 * (img.dec1 - img.dec)
    r = client.get("/SIA", params={"POS": f"CIRCLE {ra} {dec} 0.0001",
                                   "COLLECTION": "ztf_sci"})
    assert r.status_code == 200 and _status(r.content)[0] == "OK"
    t = _votable(r.content)
    assert 0 < len(t) <= n_sci
    assert set(t["obs_collection"]) == {"ztf_sci"}
    urls = [str(u) for u in t["access_url"]]
    assert f"http://testserver/ibe/data/ztf/{img.relpath}" in urls
    row = t[urls.index(f"http://testserver/ibe/data/ztf/{img.relpath}")]
    assert row["s_region"].startswith("POLYGON ICRS")
    assert row["calib_level"] == 2 and row["dataproduct_type"] == "image"
    assert row["em_min"] < 6.4e-7 < row["em_max"]  # r band
    # The file it points to is served.
    assert client.get(urls[0]).status_code == 200
    # BAND outside ZTF's r filter and TIME before the survey exclude it.
    r = client.get("/SIA", params={"POS": f"CIRCLE {ra} {dec} 0.0001", "BAND": "1e-6 2e-6"})
    assert len(_votable(r.content)) == 0
    r = client.get("/SIA", params={"POS": f"CIRCLE {ra} {dec} 0.0001", "TIME": "50000 50001"})
    assert len(_votable(r.content)) == 0
    r = client.get("/SIA", params={"POS": f"RANGE {ra - 0.01} {ra + 0.01} {dec - 0.01} "
                                          f"{dec + 0.01}", "COLLECTION": "ztf_sci",
                                   "MAXREC": 1})
    assert len(_votable(r.content)) == 1 and _status(r.content)[0] == "OVERFLOW"
    # Far away: nothing.
    r = client.get("/SIA", params={"POS": f"CIRCLE {(ra + 180) % 360} {-dec} 0.1"})
    assert len(_votable(r.content)) == 0


def test_sia_maxrec0_lists_collections(client):
    r = client.get("/SIA", params={"maxrec": 0})
    vot = vo_parse(io.BytesIO(r.content))
    params = [p for res in vot.resources for g in res.groups for p in g.entries]
    coll = next(p for p in params if p.name == "COLLECTION")
    assert [o[1] for o in coll.values.options] == ["ztf_sci", "ztf_ref", "ztf_raw", "ztf_cal"]


@pytest.mark.parametrize("params, message", [
    ({"POS": "CIRCLE 1 2"}, "POS must be"),
    ({"POS": "CIRCLE 1 100 1"}, "dec"),
    ({"COLLECTION": "ztf_deep"}, "unknown COLLECTION"),
    ({"TIME": "60000 50000"}, "lower bound"),
    ({"MAXREC": "-3"}, "MAXREC"),
])
def test_sia_errors(client, params, message):
    r = client.get("/SIA", params=params)
    assert r.status_code == 400 and message in r.text
    assert _status(r.content)[0] == "ERROR"


# --------------------------------------------------------------------------- TAP


def _cone_query(obj, r_deg):
    return (f"SELECT oid, ra, dec FROM ztf_objects_dr23 WHERE CONTAINS(POINT('ICRS',ra,dec),"
            f"CIRCLE('ICRS',{obj.ra!r},{obj.dec!r},{r_deg!r}))=1")


def test_tap_sync_get_post_and_formats(client, engine):
    obj = _an_object(engine)
    truth = sorted(cone_search(engine, obj.ra, obj.dec, 30.0)["oid"].tolist())
    q = _cone_query(obj, 30.0 / 3600)
    r = client.post("/TAP/sync", data={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": q})
    assert r.status_code == 200 and _status(r.content)[0] == "OK"
    assert sorted(_votable(r.content)["oid"].tolist()) == truth
    r = client.get("/TAP/sync", params={"request": "doQuery", "lang": "ADQL", "query": q,
                                        "format": "csv"})
    assert sorted(Table.read(r.text, format="ascii.csv")["oid"].tolist()) == truth
    r = client.get("/TAP/sync", params={"QUERY": q, "FORMAT": "ipac_table"})
    assert sorted(Table.read(r.text, format="ipac")["oid"].tolist()) == truth
    r = client.get("/TAP/sync", params={"QUERY": "SELECT oid FROM ztf_objects_dr23",
                                        "MAXREC": 3})
    assert len(_votable(r.content)) == 3 and _status(r.content)[0] == "OVERFLOW"


@pytest.mark.parametrize("params, message", [
    ({"QUERY": "SELECT oid FROM users"}, "unknown table"),
    ({"QUERY": "SELEC oid FROM x"}, "expected SELECT"),
    ({"LANG": "PQL", "QUERY": "SELECT oid FROM ztf_objects_dr23"}, "LANG must be ADQL"),
    ({"REQUEST": "getCapabilities", "QUERY": "x"}, "REQUEST must be doQuery"),
    ({"QUERY": "SELECT oid FROM ztf_objects_dr23", "UPLOAD": "t,param:t"}, "uploads"),
    ({"REQUEST": "doQuery"}, "missing required parameter QUERY"),
    ({"QUERY": "SELECT oid FROM ztf_objects_dr23", "FORMAT": "fits"}, "unknown output format"),
])
def test_tap_sync_errors(client, params, message):
    r = client.post("/TAP/sync", data=params)
    assert r.status_code == 400
    status, msg = _status(r.content)
    assert status == "ERROR" and message in msg


def test_tap_async_flow(client, engine):
    obj = _an_object(engine)
    truth = sorted(cone_search(engine, obj.ra, obj.dec, 30.0)["oid"].tolist())
    r = client.post("/TAP/async", data={"REQUEST": "doQuery", "LANG": "ADQL",
                                        "QUERY": _cone_query(obj, 30.0 / 3600)},
                    follow_redirects=False)
    assert r.status_code == 303
    url = r.headers["location"]
    jid = url.rsplit("/", 1)[1]
    job = client.get(url).text
    assert "<uws:phase>PENDING</uws:phase>" in job and f"<uws:jobId>{jid}</uws:jobId>" in job
    assert client.get(f"{url}/phase").text == "PENDING"
    r = client.post(f"{url}/phase", data={"PHASE": "RUN"}, follow_redirects=False)
    assert r.status_code == 303
    job = client.get(url, params={"WAIT": -1}).text
    assert "<uws:phase>COMPLETED</uws:phase>" in job
    assert f'xlink:href="http://testserver/TAP/async/{jid}/results/result"' in job
    r = client.get(f"{url}/results/result")
    assert sorted(_votable(r.content)["oid"].tolist()) == truth
    assert jid in client.get("/TAP/async").text
    assert client.delete(url, follow_redirects=False).status_code == 303
    assert client.get(url).status_code == 404


def test_tap_async_error_and_run_on_create(client):
    r = client.post("/TAP/async", data={"QUERY": "SELECT nope FROM ztf_objects_dr23",
                                        "PHASE": "RUN"}, follow_redirects=False)
    url = r.headers["location"]
    job = client.get(url).text
    assert "<uws:phase>ERROR</uws:phase>" in job and "unknown column" in job
    assert "unknown column" in client.get(f"{url}/error").text
    assert client.get(f"{url}/results/result").status_code == 404
    assert client.get("/TAP/async/doesnotexist").status_code == 404


def test_tap_async_job_belongs_to_its_owner(app, client, engine):
    """A logged-in user's job (its result may hold restricted rows) is invisible to others:
    not listed, 404 for its document, result, phase change and deletion."""
    from zsds.archive.auth import create_user, issue_token

    auth = {}
    for name in ("carol", "dave"):
        uid = create_user(engine, name, "pw", replace=True)
        auth[name] = {"Authorization": f"Bearer {issue_token(engine, uid)}"}
    r = client.post("/TAP/async", data={"QUERY": "SELECT TOP 1 oid FROM ztf_objects",
                                        "PHASE": "RUN"}, headers=auth["carol"],
                    follow_redirects=False)
    url = r.headers["location"]
    jid = url.rsplit("/", 1)[1]
    assert "<uws:ownerId>carol</uws:ownerId>" in client.get(url, headers=auth["carol"]).text
    assert client.get(f"{url}/results/result", headers=auth["carol"]).status_code == 200
    assert client.get(f"{url}/owner", headers=auth["carol"]).text == "carol"
    for other in ({}, auth["dave"]):
        assert jid not in client.get("/TAP/async", headers=other).text
        for path in ("", "/phase", "/results", "/results/result", "/parameters"):
            assert client.get(url + path, headers=other).status_code == 404, path
        assert client.post(f"{url}/phase", data={"PHASE": "ABORT"},
                           headers=other).status_code == 404
        assert client.delete(url, headers=other, follow_redirects=False).status_code == 404
    assert jid in client.get("/TAP/async", headers=auth["carol"]).text
    assert client.delete(url, headers=auth["carol"],
                         follow_redirects=False).status_code == 303


def test_tap_async_jobs_are_bounded(app, client):
    """One client's anonymous jobs are bounded: its oldest are deleted first (the quotas
    per owner are tested in tests/security/test_tap_jobs.py)."""
    from zsds.archive.tapjobs import JobStore

    app.state.tap_jobs = JobStore(app.state.ctx.engine, per_client=3)
    urls = [client.post("/TAP/async", data={"QUERY": "SELECT TOP 1 oid FROM ztf_objects"},
                        follow_redirects=False).headers["location"] for _ in range(5)]
    assert [client.get(u).status_code for u in urls] == [404, 404, 200, 200, 200]


def test_tap_capabilities_tables_availability(client, app):
    cfg = app.state.ctx.config
    cap = client.get("/TAP/capabilities").text
    assert 'standardID="ivo://ivoa.net/std/TAP"' in cap
    assert f'<default unit="row">{cfg.default_rows}</default>' in cap
    assert f'<hard unit="row">{cfg.max_rows}</hard>' in cap
    assert "uploadMethod" not in cap
    tables = client.get("/TAP/tables").text
    for name in ("ztf_objects_dr23", "ztf.ztf_current_meta_sci", "TAP_SCHEMA.columns"):
        assert f"<name>{name}</name>" in tables
    assert "<name>medianmag</name>" in tables
    assert "<column>" not in client.get("/TAP/tables", params={"detail": "min"}).text
    one = client.get("/TAP/tables/ztf_objects_dr23").text
    assert "<name>oid</name>" in one
    assert "<vosi:available>true</vosi:available>" in client.get("/TAP/availability").text


def test_tap_image_table_matches_database(client, engine):
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, field, ccdid, qid, obsjd FROM archive_images "
                                 "WHERE tbl = 'sci' AND qid = 2 ORDER BY obsjd")).all()
    r = client.get("/TAP/sync", params={
        "QUERY": "SELECT meta_id, obsjd, obsdate FROM ztf.ztf_current_meta_sci WHERE qid = 2 "
                 "ORDER BY obsjd"})
    t = _votable(r.content)
    assert t["meta_id"].tolist() == [row.id for row in rows]
    assert np.allclose(t["obsjd"], [row.obsjd for row in rows])
