"""IRSA's light-curve API (``/cgi-bin/ZTF/nph_light_curves``) against the archived home.

Every expectation comes from the home itself: ``lc_objects`` rows (cone search) and their
matchfile points (:func:`zsds.lightcurves.query.lightcurve_table`).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from astropy.io import votable
from astropy.table import Table
from fastapi.testclient import TestClient

from zsds.archive.app import create_app
from zsds.db import connect
from zsds.lightcurves.query import IRSA_LC_COLUMNS, lightcurve_table
from zsds.lightcurves.search import cone_search

URL = "/cgi-bin/ZTF/nph_light_curves"
COLS = list(IRSA_LC_COLUMNS)


@pytest.fixture(scope="module")
def engine(archive_home):
    eng = connect(archive_home.db_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def client(archive_home):
    return TestClient(create_app(archive_home))


# -- the expected answers, computed without the service's own code --------------------------
# The route answers with zsds.lightcurves.search.cone_search (HEALPix index) and
# zsds.lightcurves.query.lightcurve_table (zsds's matchfile reader). The expectations below
# come from a brute-force angular distance over every lc_objects row and from the matchfile
# read directly with PyTables, so that a fault shared by the route and its helpers shows.
_EXPOSURE_COLS = {"fracday": "filefracday", "limitmag": "limitmag", "magzp": "magzp",
                  "magzprms": "magzprms", "clrcoeff": "clrcoeff", "clrcounc": "clrcounc",
                  "exptime": "exptime", "airmass": "airmass"}
_POINT_COLS = ("expid", "hjd", "mjd", "mag", "magerr", "catflags", "ra", "dec", "chi", "sharp",
               "programid")


def _brute_cone(engine, ra: float, dec: float, radius_arcsec: float) -> pd.DataFrame:
    """lc_objects rows with a matchfile within the radius (haversine over every row)."""
    objs = pd.read_sql("SELECT * FROM lc_objects WHERE matchfile IS NOT NULL", engine)
    r1, d1 = np.radians(objs["ra"].to_numpy(float)), np.radians(objs["dec"].to_numpy(float))
    r0, d0 = np.radians(ra), np.radians(dec)
    h = np.sin((d1 - d0) / 2) ** 2 + np.cos(d0) * np.cos(d1) * np.sin((r1 - r0) / 2) ** 2
    sep = np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1)))) * 3600
    return objs[sep <= radius_arcsec].reset_index(drop=True)


def _matchfile_points(home, objs: pd.DataFrame) -> pd.DataFrame:
    """The objects' epochs read from their matchfiles with PyTables, joined by hand (sources
    from ``sourcedata``, transients, ``kind`` 1, from ``transientdata``)."""
    import tables

    frames = []
    for mf, group in objs.groupby("matchfile"):
        with tables.open_file(home.path(mf)) as h:
            data = {0: h.root.matches.sourcedata.read(), 1: h.root.matches.transientdata.read()}
            exp = pd.DataFrame({k: h.root.matches.exposures.col(k) for k in
                                ("expid", *_EXPOSURE_COLS)}).rename(columns=_EXPOSURE_COLS)
        for _, o in group.iterrows():
            src = data[int(o["kind"])]
            rows = src[src["matchid"] == o["matchid"]]
            df = pd.DataFrame({k: rows[k] for k in _POINT_COLS}).merge(exp, on="expid",
                                                                        how="left")
            df["oid"], df["filtercode"] = int(o["oid"]), {1: "zg", 2: "zr", 3: "zi"}[o["fid"]]
            df["field"], df["ccdid"], df["qid"] = o["field"], o["ccdid"], o["qid"]
            frames.append(df)
    return pd.concat(frames, ignore_index=True)[COLS]


@pytest.fixture(scope="module")
def target(archive_home, engine) -> dict:
    """A well-observed object with at least one flagged point, its cone and their points."""
    objs = pd.read_sql("SELECT * FROM lc_objects WHERE nobs >= 16 AND matchfile IS NOT NULL "
                       "ORDER BY oid", engine)
    pts = _matchfile_points(archive_home, objs)
    flagged = pts.loc[pts["catflags"] != 0, "oid"]
    assert len(flagged), "the home should hold flagged light-curve points"
    oid = int(flagged.iloc[0])
    row = objs[objs["oid"] == oid].iloc[0]
    radius = 30.0  # arcsec: several objects around it
    cone = _brute_cone(engine, row["ra"], row["dec"], radius)
    return {"oid": oid, "ra": float(row["ra"]), "dec": float(row["dec"]), "radius": radius,
            "cone": cone, "points": _matchfile_points(archive_home, cone)}


def test_expectations_agree_with_the_library(archive_home, engine, target):
    """The library functions the route uses give what the independent reading gives."""
    lib = cone_search(engine, target["ra"], target["dec"], target["radius"])
    lib = lib[lib["matchfile"].notna()]
    assert set(lib["oid"]) == set(target["cone"]["oid"])
    _same(lightcurve_table(archive_home, lib)[COLS], target["points"])


def _csv(resp) -> pd.DataFrame:
    assert resp.status_code == 200, resp.text
    return pd.read_csv(io.StringIO(resp.text))


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Same rows (any order) with the same values."""
    assert list(got.columns) == COLS
    assert len(got) == len(want)
    key = ["oid", "expid"]
    g = got.sort_values(key).reset_index(drop=True)
    w = want.sort_values(key).reset_index(drop=True)
    for c in ("oid", "expid", "catflags", "filefracday", "field", "ccdid", "qid", "programid"):
        np.testing.assert_array_equal(g[c].to_numpy(np.int64), w[c].to_numpy(np.int64), c)
    for c in ("hjd", "mjd", "ra", "dec"):
        np.testing.assert_allclose(g[c].to_numpy(float), w[c].to_numpy(float), rtol=0,
                                   atol=1e-9, err_msg=c)
    for c in ("mag", "magerr", "chi", "sharp", "limitmag", "magzp", "airmass", "clrcounc"):
        np.testing.assert_allclose(g[c].to_numpy(float), w[c].to_numpy(float), rtol=1e-6,
                                   err_msg=c)
    assert list(g["filtercode"]) == list(w["filtercode"])


def _pos(t: dict, radius_arcsec: float | None = None) -> str:
    return f"CIRCLE {t['ra']} {t['dec']} {(radius_arcsec or t['radius']) / 3600}"


def test_pos_cone_matches_lightcurves(client, target):
    got = _csv(client.get(URL, params={"FORMAT": "CSV", "POS": _pos(target)}))
    assert len(target["cone"]) >= 2
    assert set(got["oid"]) == set(target["points"]["oid"])
    _same(got, target["points"])


def test_circle_and_lowercase_keys(client, target):
    r = target["radius"] / 3600
    a = _csv(client.get(f"{URL}?format=csv&circle={target['ra']}+{target['dec']}+{r}"))
    b = _csv(client.get(f"{URL}?Format=CSV&pos=circle%20{target['ra']}%20{target['dec']}%20{r}"))
    _same(a, target["points"])
    _same(b, target["points"])


def test_id_repeated_and_comma_separated(client, target):
    oids = [int(o) for o in target["cone"]["oid"][:2]]
    want = target["points"][target["points"]["oid"].isin(oids)]
    rep = _csv(client.get(f"{URL}?FORMAT=CSV&ID={oids[0]}&ID={oids[1]}"))
    com = _csv(client.get(URL, params={"FORMAT": "CSV", "ID": f"{oids[0]},{oids[1]}"}))
    _same(rep, want)
    _same(com, want)
    one = _csv(client.get(URL, params={"FORMAT": "CSV", "ID": str(target["oid"])}))
    assert set(one["oid"]) == {target["oid"]}


@pytest.mark.parametrize("bands", ["r", "2", "gr", "g,r", "r,i", "R"])
def test_bandname_selects_r(client, target, bands):
    # The home is r-band only (every oid has fid 2).
    assert set(target["cone"]["fid"]) == {2}
    got = _csv(client.get(URL, params={"FORMAT": "CSV", "POS": _pos(target),
                                       "BANDNAME": bands}))
    _same(got, target["points"])


@pytest.mark.parametrize("params", [{"BANDNAME": "g"}, {"BANDNAME": "1,3"},
                                    {"BAND": "4.1e-7 5.5e-7"}, {"BAND": "8.0e-7"}])
def test_band_without_r_is_empty(client, target, params):
    resp = client.get(URL, params={"FORMAT": "CSV", "POS": _pos(target), **params})
    assert resp.status_code == 200
    assert resp.text.strip() == ",".join(COLS)


@pytest.mark.parametrize("band", ["6.4e-7", "6e-7 Inf", "0 1.4e-6"])
def test_band_with_r(client, target, band):
    got = _csv(client.get(URL, params={"FORMAT": "CSV", "POS": _pos(target), "BAND": band}))
    _same(got, target["points"])


def test_time(client, target):
    pts = target["points"]
    night1 = pts[pts["mjd"] < np.floor(pts["mjd"].max())]
    assert 0 < len(night1) < len(pts)
    hi = float(np.floor(pts["mjd"].max()))
    got = _csv(client.get(URL, params={"FORMAT": "CSV", "POS": _pos(target),
                                       "TIME": f"-Inf {hi}"}))
    _same(got, night1)
    allpts = _csv(client.get(URL, params={"FORMAT": "CSV", "POS": _pos(target),
                                          "TIME": "-Inf Inf"}))
    _same(allpts, pts)
    t0 = float(pts["mjd"].iloc[0])
    instant = _csv(client.get(URL, params={"FORMAT": "CSV", "POS": _pos(target),
                                           "TIME": str(t0)}))
    _same(instant, pts[np.abs(pts["mjd"] - t0) < 1e-6])


@pytest.mark.parametrize("key", ["NUM_OBS", "NOBS_MIN", "num_obs"])
def test_num_obs(client, target, engine, key):
    cone = _brute_cone(engine, target["ra"], target["dec"], 120.0)
    nobs = cone["nobs"].astype(float)
    n = int(np.median(nobs[nobs > 0]))
    keep = set(cone.loc[nobs >= n, "oid"])
    assert 0 < len(keep) < (nobs > 0).sum()
    got = _csv(client.get(URL, params={"FORMAT": "CSV", key: str(n),
                                       "POS": f"CIRCLE {target['ra']} {target['dec']} "
                                              f"{120 / 3600}"}))
    assert set(got["oid"]) == keep
    assert (got.groupby("oid").size() >= 1).all()


def test_mag(client, target):
    cone = target["cone"]
    med = cone["medianmag"].dropna()
    lo, hi = float(med.min()), float(med.median())
    want_oids = set(cone.loc[(cone["medianmag"] >= lo) & (cone["medianmag"] <= hi), "oid"])
    got = _csv(client.get(URL, params={"FORMAT": "CSV", "POS": _pos(target),
                                       "MAG": f"{lo} {hi}"}))
    assert set(got["oid"]) == want_oids & set(target["points"]["oid"])
    assert len(want_oids) < len(cone)


def test_bad_catflags_mask(client, target):
    pts = target["points"]
    mask = int(pts.loc[pts["catflags"] != 0, "catflags"].iloc[0])
    got = _csv(client.get(URL, params={"FORMAT": "CSV", "POS": _pos(target),
                                       "BAD_CATFLAGS_MASK": str(mask)}))
    want = pts[(pts["catflags"].to_numpy() & mask) == 0]
    assert len(want) < len(pts)
    _same(got, want)


def test_every_format(client, target):
    want = target["points"]
    params = {"ID": ",".join(str(o) for o in want["oid"].unique())}
    vot = client.get(URL, params=params)  # VOTABLE is the default
    assert vot.status_code == 200 and "votable" in vot.headers["content-type"]
    t = votable.parse_single_table(io.BytesIO(vot.content)).to_table()
    assert t.colnames == COLS
    _same(t.to_pandas(), want)
    for fmt, reader in {
        "IPAC_TABLE": lambda s: Table.read(s, format="ipac").to_pandas(),
        "csv": lambda s: pd.read_csv(io.StringIO(s)),
        "TSV": lambda s: pd.read_csv(io.StringIO(s), sep="\t"),
        "HTML": lambda s: pd.read_html(io.StringIO(s))[0],
        "votable": lambda s: votable.parse_single_table(io.BytesIO(s.encode())).to_table()
        .to_pandas(),
    }.items():
        resp = client.get(URL, params={**params, "FORMAT": fmt})
        assert resp.status_code == 200, (fmt, resp.text)
        got = reader(resp.text)
        assert list(got.columns) == COLS, fmt
        _same(got, want)


def test_empty_result_is_header_only(client, target):
    resp = client.get(URL, params={"FORMAT": "CSV", "POS": "CIRCLE 10.0 -40.0 0.01"})
    assert resp.status_code == 200
    assert resp.text.strip() == ",".join(COLS)
    ipac = client.get(URL, params={"FORMAT": "IPAC_TABLE", "ID": "1"})
    assert Table.read(ipac.text, format="ipac").colnames == COLS
    assert len(Table.read(ipac.text, format="ipac")) == 0


@pytest.mark.parametrize("query, status, text", [
    ("ID=1&BANDNAME=g", 400, "BANDNAME"),
    ("ID=1&NUM_OBS=3", 400, "NUM_OBS"),
    ("ID=1&MAG=15%2018", 400, "MAG"),
    ("ID=1&BAND=6e-7", 400, "BAND"),
    ("ID=abc", 400, "ID"),
    ("POS=CIRCLE%20338.9%2025.5%200.2", 400, "radius"),
    ("POS=CIRCLE%20338.9%2025.5%200", 400, "radius"),
    ("CIRCLE=338.9%2025.5", 400, "CIRCLE"),
    ("POS=BOX%20338.9%2025.5%200.01", 400, "CIRCLE"),
    ("FORMAT=CSV", 400, "ID or POS"),
    ("ID=1&FORMAT=FITS", 400, "FORMAT"),
    ("ID=1&TIME=2%201", 400, "TIME"),
    ("ID=1&TIME=a", 400, "TIME"),
    ("ID=1&BAD_CATFLAGS_MASK=x", 400, "BAD_CATFLAGS_MASK"),
    ("POS=CIRCLE%20338.9%2025.5%200.01&BANDNAME=x", 400, "BANDNAME"),
    ("ID=1&COLLECTION=ptf", 400, "COLLECTION"),
    ("ID=1&COLLECTION=ztf", 401, "login"),
])
def test_errors(client, query, status, text):
    resp = client.get(f"{URL}?{query}")
    assert resp.status_code == status, resp.text
    assert text in resp.text


def test_collection_dr(client, target):
    got = _csv(client.get(URL, params={"FORMAT": "CSV", "ID": str(target["oid"]),
                                       "COLLECTION": "ztf_dr23"}))
    assert set(got["oid"]) == {target["oid"]}


def test_ztfquery_live(live_server, archive_home, target, monkeypatch, tmp_path):
    """ztfquery's LCQuery against the live service (ARCHIVE_API.md section 5 recipe)."""
    import ztfquery.io as zio
    import ztfquery.lightcurve as lc

    from zsds.archive.auth import create_user

    eng = connect(archive_home.db_url)
    create_user(eng, "lc@example.org", "secret", replace=True)
    eng.dispose()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(zio, "LOGIN_URL", f"{live_server}/account/signon/login.do")
    monkeypatch.setattr(lc, "BASEURL", f"{live_server}/cgi-bin/ZTF/nph_light_curves?")
    zio.set_account("irsa", username="lc@example.org", password="secret", test=False)

    q = lc.LCQuery.from_position(target["ra"], target["dec"], target["radius"], bandname="r")
    _same(q.data, target["points"])
    oids = [str(o) for o in target["cone"]["oid"][:2]]
    q2 = lc.LCQuery.from_id(oids, time=[-np.inf, np.inf], bad_catflags_mask=0)
    _same(q2.data, target["points"][target["points"]["oid"].isin([int(o) for o in oids])])
