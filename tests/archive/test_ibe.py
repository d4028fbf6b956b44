"""IBE through the app: searches on every table and format, METADATA, listings, files,
cutouts, traversal and restricted files. Expected values come from the home's database."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table
from fastapi.testclient import TestClient
from sqlalchemy import text

from zsds.archive.app import create_app
from zsds.archive.auth import create_user
from zsds.archive.ibe import DEFAULTS, table_columns

SEARCH = "/ibe/search/ztf/products"
DATA = "/ibe/data/ztf/products"


@pytest.fixture(scope="module")
def client(archive_home, archive_engine) -> TestClient:
    """The service on each backend (SQLite and PostgreSQL)."""
    return TestClient(create_app(archive_home, archive_engine))


@pytest.fixture(scope="module")
def images(client) -> pd.DataFrame:
    with client.app.state.ctx.engine.connect() as conn:
        return pd.read_sql(text("SELECT * FROM archive_images"), conn)


@pytest.fixture(scope="module")
def sci0(images) -> pd.Series:
    sci = images[images.tbl == "sci"].sort_values("pid")
    assert len(sci) >= 4
    return sci.iloc[0]


def _containing(images: pd.DataFrame, tbl: str, ra: float, dec: float) -> pd.DataFrame:
    """Rows whose corner box holds (ra, dec): a test independent of images_at's geometry."""
    df = images[images.tbl == tbl].dropna(subset=["ra1"])
    ras = df[["ra1", "ra2", "ra3", "ra4"]].to_numpy(float)
    decs = df[["dec1", "dec2", "dec3", "dec4"]].to_numpy(float)
    inside = ((ras.min(1) < ra) & (ra < ras.max(1)) & (decs.min(1) < dec) & (dec < decs.max(1)))
    return df[inside]


def _read(resp, fmt: str) -> pd.DataFrame:
    assert resp.status_code == 200, resp.text
    if fmt in ("ipac", "ipac_table"):
        return Table.read(resp.text, format="ipac", guess=False).to_pandas()
    if fmt == "html":
        return pd.read_html(io.StringIO(resp.text))[0]
    return pd.read_csv(io.StringIO(resp.text), sep="\t" if fmt == "tsv" else ",")


@pytest.mark.parametrize("fmt", ["ipac", "ipac_table", "csv", "tsv", "html"])
def test_sci_pos_search_every_format(client, images, sci0, fmt) -> None:
    expected = _containing(images, "sci", sci0.ra, sci0.dec)
    ct = "" if fmt == "ipac" else f"&ct={fmt}"
    got = _read(client.get(f"{SEARCH}/sci?POS={sci0.ra},{sci0.dec}{ct}"), fmt)
    assert list(got.columns[:3]) == ["in_row_id", "in_ra", "in_dec"]
    assert list(got.columns[3:]) == DEFAULTS["sci"]
    assert sorted(got.pid) == sorted(expected.pid) and sci0.pid in set(got.pid)
    row = got[got.pid == sci0.pid].iloc[0]
    assert row.filefracday == sci0.filefracday and row.rcid == sci0.rcid
    assert row.filtercode == sci0.filtercode and row.imgtypecode == "o"
    assert row.obsjd == pytest.approx(sci0.obsjd)
    assert str(row.obsdate).endswith("+00") and str(row.obsdate)[:4] == str(sci0.filefracday)[:4]
    assert np.allclose(got.in_ra, sci0.ra) and np.allclose(got.in_dec, sci0.dec)


def test_ipac_types_and_units(client, sci0) -> None:
    resp = client.get(f"{SEARCH}/sci?POS={sci0.ra},{sci0.dec}&columns=field,obsjd,obsdate,"
                      "filefracday,seeing")
    lines = resp.text.splitlines()
    types = [t.strip() for t in lines[1].strip("|").split("|")]
    units = [t.strip() for t in lines[2].strip("|").split("|")]
    assert types == ["long", "double", "double", "long", "double", "char", "long", "double"]
    assert units[1:3] == ["deg", "deg"] and units[4] == "d" and units[7] == "arcsec"


def test_where_search_matches_database(client, images) -> None:
    sci = images[images.tbl == "sci"]
    cut = float(np.median(sci.obsjd))
    resp = client.get(f"{SEARCH}/sci?WHERE=fid%3D2+AND+obsjd%3E{cut}&ct=csv")
    got = _read(resp, "csv")
    expected = sci[(sci.fid == 2) & (sci.obsjd > cut)]
    assert len(expected) > 0 and sorted(got.pid) == sorted(expected.pid)
    assert "in_row_id" not in got.columns
    # lower-case names as astroquery sends them, with COLUMNS
    got = _read(client.get(f"{SEARCH}/sci?where=qid%3D2&columns=pid,qid&ct=csv"), "csv")
    assert list(got.columns) == ["pid", "qid"]
    assert sorted(got.pid) == sorted(sci[sci.qid == 2].pid)


def test_pos_and_where_combined_and_mcen(client, images, sci0) -> None:
    expected = _containing(images, "sci", sci0.ra, sci0.dec)
    later = expected[expected.obsjd > sci0.obsjd]
    got = _read(client.get(f"{SEARCH}/sci?POS={sci0.ra},{sci0.dec}&WHERE=obsjd>{sci0.obsjd}"
                           "&ct=csv"), "csv")
    assert sorted(got.pid) == sorted(later.pid)
    one = _read(client.get(f"{SEARCH}/sci?POS={sci0.ra},{sci0.dec}&mcen&ct=csv"), "csv")
    assert len(one) == 1 and one.pid[0] in set(expected.pid)


@pytest.mark.parametrize("table", ["ref", "deep"])
def test_ref_search(client, images, sci0, table) -> None:
    expected = _containing(images, "ref", sci0.ra, sci0.dec)
    got = _read(client.get(f"{SEARCH}/{table}?POS={sci0.ra},{sci0.dec}&SIZE=0&ct=csv"), "csv")
    assert len(expected) >= 1 and sorted(got.rfid) == sorted(expected.rfid)
    assert {"field", "ccdid", "filtercode", "qid", "startobsdate"} <= set(got.columns)
    got = _read(client.get(f"{SEARCH}/{table}?WHERE=nframes>1"), "ipac")
    ref = images[images.tbl == "ref"]
    assert sorted(got.rfid) == sorted(ref[ref.nframes > 1].rfid)


def test_raw_search(client, images) -> None:
    raw = images[(images.tbl == "raw") & (images.imgtypecode == "o")]
    got = _read(client.get(f"{SEARCH}/raw?WHERE=imgtypecode='o'&ct=csv"), "csv")
    assert len(raw) > 0 and sorted(got.expid) == sorted(raw.expid)
    assert list(got.columns) == DEFAULTS["raw"]
    r = raw.dropna(subset=["ra1"]).iloc[0]
    got = _read(client.get(f"{SEARCH}/raw?POS={r.ra},{r.dec}&ct=csv"), "csv")
    assert r.expid in set(got.expid)


def test_moon_and_pointing_are_searchable(client, images) -> None:
    raw = images[(images.tbl == "raw") & (images.imgtypecode == "o")]
    cut = float(raw.moonillf.median())
    got = _read(client.get(f"{SEARCH}/raw?WHERE=moonillf<={cut} AND telra>0&ct=csv"), "csv")
    want = raw[(raw.moonillf <= cut) & (raw.telra > 0)]
    assert len(want) > 0 and sorted(got.expid) == sorted(want.expid)
    assert np.allclose(got.sort_values("expid").teldec, want.sort_values("expid").teldec)
    assert got.moonesb.isna().all() and got.ccdrot.isna().all()  # not modelled: null


def test_cal_search(client, images) -> None:
    cal = images[images.tbl == "cal"]
    for caltype in ("bias", "hifreqflat"):
        got = _read(client.get(f"{SEARCH}/cal?WHERE=caltype='{caltype}'&ct=csv"), "csv")
        want = cal[cal.caltype == caltype]
        assert len(want) > 0 and sorted(got.meta_id) == sorted(want.id)
        assert set(got.nightdate) == set(want.nightdate)
    assert list(got.columns) == DEFAULTS["cal"]


@pytest.mark.parametrize("table", ["sci", "raw", "ref", "cal"])
def test_metadata(client, table) -> None:
    meta = _read(client.get(f"{SEARCH}/{table}?FORMAT=METADATA"), "ipac")
    assert list(meta.columns) == ["name", "description", "ucd", "datatype", "size",
                                  "ascii_type", "unit", "nullable", "principal", "indexed",
                                  "std"]
    assert list(meta.name) == table_columns(table)


def test_errors_are_xml_400(client) -> None:
    for url in (f"{SEARCH}/sci", f"{SEARCH}/sci?WHERE=fid=2;DROP+TABLE+users",
                f"{SEARCH}/sci?WHERE=password_hash='x'", f"{SEARCH}/nope?POS=1,2",
                f"{SEARCH}/sci?POS=1,2&ct=pdf", f"{SEARCH}/sci?POS=1", f"{SEARCH}/sci?POS=1,95",
                f"{SEARCH}/sci?POS=1,2&INTERSECT=NEAR", f"{SEARCH}/sci?POS=1,2&columns=bogus"):
        resp = client.get(url)
        assert resp.status_code == 400, url
        assert resp.text.startswith("<?xml version"), url


def test_listings(client) -> None:
    assert '<a href="/ibe/search/ztf">' in client.get("/ibe/search/").text
    assert '<a href="/ibe/search/ztf/products">products</a>' in client.get(
        "/ibe/search/ztf/").text
    page = client.get(f"{SEARCH}/").text
    for t in ("sci", "raw", "ref", "deep", "cal"):
        assert f"<tr><td>{t}</td>" in page


def test_file_download_is_byte_identical(client, archive_home, images, sci0) -> None:
    for rel in (sci0.relpath, images[images.tbl == "raw"].relpath.iloc[0],
                images[images.tbl == "cal"].relpath.iloc[0]):
        url = DATA + "/" + rel.removeprefix("products/")
        resp = client.get(url)
        body = archive_home.path(rel).read_bytes()
        assert resp.status_code == 200, url
        assert resp.content == body and int(resp.headers["content-length"]) == len(body)


def test_ref_without_version_folder(client, archive_home, images) -> None:
    rel = images[images.tbl == "ref"].relpath.iloc[0]
    parts = rel.split("/")
    assert parts[-2].startswith("v")  # stored in a version folder, asked for in IRSA's layout
    irsa = "/".join(parts[1:-2] + parts[-1:])
    resp = client.get(f"{DATA}/{irsa}")
    assert resp.status_code == 200 and resp.content == archive_home.path(rel).read_bytes()


def test_directory_listing(client, sci0) -> None:
    folder = sci0.relpath.removeprefix("products/").rsplit("/", 1)[0]
    page = client.get(f"{DATA}/{folder}/")
    assert page.status_code == 200 and sci0.relpath.rsplit("/", 1)[1] in page.text


def test_cutout_through_url(client, archive_home, sci0) -> None:
    url = DATA + "/" + sci0.relpath.removeprefix("products/")
    src = fits.getdata(archive_home.path(sci0.relpath))
    resp = client.get(f"{url}?center=101,51px&size=9,5px&gzip=false")
    assert resp.status_code == 200
    np.testing.assert_array_equal(fits.getdata(io.BytesIO(resp.content)), src[48:53, 96:105])
    resp = client.get(f"{url}?center={sci0.ra},{sci0.dec}&size=20arcsec")
    assert resp.status_code == 200 and resp.content[:2] == b"\x1f\x8b"
    cut = fits.getdata(io.BytesIO(gzip.decompress(resp.content)))
    assert 18 <= cut.shape[0] <= 22 and 18 <= cut.shape[1] <= 22
    assert client.get(f"{url}?center={sci0.ra + 5},{sci0.dec}&size=20arcsec").status_code == 400
    assert client.get(f"{url}?center=1,2&size=bad").status_code == 400


@pytest.mark.parametrize("path", ["sci/..%2F..%2Fzsds.sqlite", "..%2Fzsds.sqlite",
                                  "raw/..%2F..%2Fzsds.sqlite", "ref/%2E%2E/%2E%2E/zsds.sqlite",
                                  "sci/%2Fetc%2Fpasswd", "logs/x"])
def test_traversal_rejected(client, path) -> None:
    resp = client.get(f"{DATA}/{path}")
    assert resp.status_code == 404 and b"SQLite" not in resp.content


def test_restricted_file_needs_login(client, archive_home) -> None:
    streaks = sorted(archive_home.products.glob("sci/*/*/*/*_streaks.fits"))
    assert streaks, "the home has no restricted streak products"
    rel = streaks[0].relative_to(archive_home.root).as_posix()
    url = DATA + "/" + rel.removeprefix("products/")
    assert client.get(url).status_code == 401
    create_user(client.app.state.ctx.engine, "ibe-user", "s3cret", replace=True)
    assert client.get(url, auth=("ibe-user", "wrong")).status_code == 401
    resp = client.get(url, auth=("ibe-user", "s3cret"))
    assert resp.status_code == 200 and resp.content == streaks[0].read_bytes()


def test_sia_v1(client, sci0) -> None:
    from astropy.io.votable import parse_single_table

    resp = client.get(f"/ibe/sia/ztf/products/sci?POS={sci0.ra},{sci0.dec}&SIZE=0.001")
    t = parse_single_table(io.BytesIO(resp.content)).to_table()
    assert sci0.pid in set(t["pid"])
    url = t["sia_url"][list(t["pid"]).index(sci0.pid)]
    assert url.endswith(sci0.relpath.removeprefix("products/"))
    assert client.get(url).status_code == 200
    meta = client.get("/ibe/sia/ztf/products/sci?FORMAT=METADATA")
    assert meta.status_code == 200 and b"INPUT:POS" in meta.content
    assert client.get("/ibe/sia/ztf/products/sci").status_code == 400
