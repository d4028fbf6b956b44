"""Real IRSA clients against ``zsds serve``: astroquery's Ibe, ztfquery, pyvo's SIAService.
Positions come from the home's image index so that an empty answer fails."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import text

from zsds.db import connect


@pytest.fixture(scope="module")
def sci0(live_server, archive_home) -> pd.Series:
    engine = connect(archive_home.db_url)
    with engine.connect() as conn:
        df = pd.read_sql(text("SELECT * FROM archive_images WHERE tbl='sci' ORDER BY pid"), conn)
    engine.dispose()
    assert len(df)
    return df.iloc[0]


@pytest.fixture
def ibe(live_server):
    from astroquery.ipac.irsa.ibe import Ibe

    old = Ibe.URL
    Ibe.URL = live_server + "/ibe/"
    yield Ibe
    Ibe.URL = old


def test_astroquery_query_region(ibe, sci0) -> None:
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    pos = SkyCoord(sci0.ra * u.deg, sci0.dec * u.deg)
    t = ibe.query_region(coordinate=pos, mission="ztf", dataset="products", table="sci",
                         where=f"qid={int(sci0.qid)}", columns="field,ccdid,qid,filefracday,pid",
                         width="0.001d")
    assert sci0.pid in set(t["pid"]) and set(t["qid"]) == {sci0.qid}
    assert t.colnames[:3] == ["in_row_id", "in_ra", "in_dec"]
    assert "filefracday" in ibe.get_columns(mission="ztf", dataset="products",
                                            table="sci")["name"]


def test_astroquery_listings(ibe) -> None:
    assert ibe.list_missions(cache=False) == ["ztf"]
    assert ibe.list_datasets(mission="ztf", cache=False) == ["products"]
    assert ibe.list_tables(mission="ztf", dataset="products", cache=False) == [
        "sci", "raw", "ref", "deep", "cal"]


def test_ztfquery_metadata_and_download(live_server, archive_home, sci0, tmp_path,
                                        monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # ztfquery's LOCALSOURCE is ./Data/
    import ztfquery.buildurl as bu
    import ztfquery.io as zio
    import ztfquery.metasearch as ms
    from ztfquery.query import ZTFQuery

    monkeypatch.setattr(zio, "LOGIN_URL", f"{live_server}/account/signon/login.do")
    monkeypatch.setattr(ms, "SEARCH_BASEURL", f"{live_server}/ibe/search/ztf/products/")
    monkeypatch.setattr(bu, "DATA_BASEURL", f"{live_server}/ibe/data/ztf/products/")
    monkeypatch.setattr(bu, "DEFAULT_SOURCE", bu.DATA_BASEURL)
    zio.set_account("irsa", username="u@x", password="p", test=False)

    zq = ZTFQuery()
    zq.load_metadata(radec=[sci0.ra, sci0.dec], size=0.001)
    meta = zq.metatable
    assert sci0.pid in set(meta["pid"]) and len(meta) >= 2
    zq.load_metadata(radec=[sci0.ra, sci0.dec], size=0.001,
                     sql_query=f"obsjd>{sci0.obsjd} AND fid={int(sci0.fid)}")
    assert len(zq.metatable) == len(meta[(meta.obsjd > sci0.obsjd) & (meta.fid == sci0.fid)])

    zq.load_metadata(radec=[sci0.ra, sci0.dec], size=0.001, sql_query=f"pid={sci0.pid}")
    assert list(zq.metatable["pid"]) == [sci0.pid]
    urls = zq.get_data_path(suffix="sciimg.fits", source=bu.DATA_BASEURL)
    assert urls[0].endswith(sci0.relpath.removeprefix("products/"))
    zq.download_data("sciimg.fits", show_progress=False, overwrite=True)
    local = zq.get_local_data("sciimg.fits")
    assert len(local) == 1
    with open(local[0], "rb") as fh:
        assert fh.read() == archive_home.path(sci0.relpath).read_bytes()


def test_pyvo_sia(live_server, sci0) -> None:
    from pyvo.dal import SIAService

    res = SIAService(live_server + "/ibe/sia/ztf/products/sci").search(
        (sci0.ra, sci0.dec), size=0.001)
    assert len(res) >= 1
    recs = {rec.title: rec for rec in res}
    name = sci0.relpath.rsplit("/", 1)[1]
    assert name in recs
    rec = recs[name]
    assert rec.getdataurl().endswith(sci0.relpath.removeprefix("products/"))
    assert rec.format == "image/fits" and rec.naxes == 2
    assert abs(rec.pos.ra.deg - sci0.ra) < 1e-6
