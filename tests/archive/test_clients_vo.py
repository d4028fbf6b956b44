"""Real VO clients against ``zsds serve``: pyvo SCS / SIA2 / TAP and astroquery's Irsa."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from sqlalchemy import text

from zsds.db import connect
from zsds.lightcurves.search import cone_search

pyvo = pytest.importorskip("pyvo")


@pytest.fixture(scope="module")
def engine(archive_home, live_server):
    eng = connect(archive_home.db_url)  # live_server first: its app fills archive_images
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def obj(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT oid, ra, dec FROM lc_objects ORDER BY oid "
                                 "LIMIT 1 OFFSET 40")).one()


def _truth(engine, obj, arcsec):
    return sorted(cone_search(engine, obj.ra, obj.dec, arcsec)["oid"].tolist())


def _cone_adql(obj, arcsec):
    return (f"SELECT * FROM ztf_objects_dr23 WHERE CONTAINS(POINT('ICRS',ra,dec),"
            f"CIRCLE('ICRS',{obj.ra!r},{obj.dec!r},{arcsec / 3600!r}))=1")


def test_pyvo_scs(live_server, engine, obj):
    svc = pyvo.dal.SCSService(live_server + "/SCS?table=ztf_objects_dr23")
    res = svc.search(pos=(obj.ra, obj.dec), radius=20.0 / 3600)
    assert sorted(int(r.id) for r in res) == _truth(engine, obj, 20.0)
    first = res[0]
    assert int(first.id) == obj.oid
    assert first.pos.separation(SkyCoord(obj.ra, obj.dec, unit="deg")).arcsec < 1e-3
    with pytest.raises(pyvo.dal.DALQueryError, match="unknown table"):
        pyvo.dal.SCSService(live_server + "/SCS?table=nope").search(pos=(1, 2), radius=0.1)


def test_pyvo_sia2(live_server, engine):
    with engine.connect() as conn:
        img = conn.execute(text("SELECT relpath, ra, dec FROM archive_images WHERE tbl = 'sci' "
                                "ORDER BY id LIMIT 1")).one()
    svc = pyvo.dal.SIA2Service(live_server + "/SIA")
    res = svc.search(pos=(img.ra * u.deg, img.dec * u.deg, 0.001 * u.deg),
                     collection="ztf_sci")
    urls = [r.access_url for r in res]
    assert f"{live_server}/ibe/data/ztf/{img.relpath}" in urls
    rec = res[urls.index(f"{live_server}/ibe/data/ztf/{img.relpath}")]
    assert rec.obs_collection == "ztf_sci" and rec.dataproduct_type == "image"
    assert abs(u.Quantity(rec.s_ra, u.deg).value - img.ra) < 1e-6
    assert abs(u.Quantity(rec.s_dec, u.deg).value - img.dec) < 1e-6


def test_pyvo_tap_sync_async(live_server, engine, obj):
    svc = pyvo.dal.TAPService(live_server + "/TAP")
    truth = _truth(engine, obj, 30.0)
    sync = svc.run_sync(_cone_adql(obj, 30.0)).to_table()
    assert sorted(sync["oid"].tolist()) == truth
    asyn = svc.run_async(_cone_adql(obj, 30.0)).to_table()
    assert sorted(asyn["oid"].tolist()) == truth
    assert np.allclose(np.sort(asyn["ra"]), np.sort(sync["ra"]))
    schema = svc.run_async("SELECT table_name FROM TAP_SCHEMA.tables").to_table()
    assert "ztf_objects_dr23" in schema["table_name"].tolist()
    cols = svc.run_sync("SELECT column_name FROM TAP_SCHEMA.columns WHERE "
                        "table_name = 'ztf_objects_dr23'").to_table()
    assert {"oid", "ra", "dec"} <= set(cols["column_name"].tolist())
    assert svc.maxrec > 0 and svc.hardlimit >= svc.maxrec
    assert "ztf_objects_dr23" in [t.name for t in svc.tables]
    with pytest.raises(pyvo.dal.DALQueryError, match="unknown column"):
        svc.run_sync("SELECT nope FROM ztf_objects_dr23")
    with pytest.raises(pyvo.dal.DALQueryError, match="unknown column"):
        svc.run_async("SELECT nope FROM ztf_objects_dr23")


def test_astroquery_irsa(live_server, engine, obj):
    from astroquery.ipac.irsa import Irsa

    old = Irsa.tap_url, Irsa._tap
    Irsa.tap_url, Irsa._tap = live_server + "/TAP", None
    try:
        coord = SkyCoord(obj.ra, obj.dec, unit="deg")
        t = Irsa.query_region(coord, catalog="ztf_objects_dr23", spatial="Cone",
                              radius=30 * u.arcsec)
        assert sorted(t["oid"].tolist()) == _truth(engine, obj, 30.0)
        cats = Irsa.list_catalogs()
        assert list(cats) == ["ztf_objects_dr23"]
    finally:
        Irsa.tap_url, Irsa._tap = old
