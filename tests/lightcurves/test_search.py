"""Positional search of light-curve objects (HEALPix order-29 ranges) on SQLite and PostgreSQL."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord
from sqlalchemy import inspect, text

from tests.db.conftest import engine  # noqa: F401
from zsds.db import SCHEMA_VERSION, init_db, schema_version
from zsds.db.engine import MIGRATIONS
from zsds.lightcurves.ids import oid as make_oid
from zsds.lightcurves.model import SOURCES_DTYPE, TRANSIENT_MATCHID0
from zsds.lightcurves.search import (
    FILTER_COLUMNS,
    bulk_load_objects,
    cone_ranges,
    cone_search,
    count_objects,
    delete_objects,
    get_object,
    healpix29,
    upsert_matchfile,
    upsert_objects,
)


def _sphere_patch(rng: np.random.Generator, n: int, ra: tuple[float, float],
                  dec: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Points uniform on the sphere inside an RA/Dec box."""
    z = rng.uniform(np.sin(np.radians(dec[0])), np.sin(np.radians(dec[1])), n)
    return rng.uniform(*ra, n) % 360.0, np.degrees(np.arcsin(z))


def _objects(seed: int = 7) -> pd.DataFrame:
    """~56k objects: a 3x3 deg patch, close pairs, a strip across RA=0 and a polar cap."""
    rng = np.random.default_rng(seed)
    ra, dec = _sphere_patch(rng, 50_000, (150.0, 153.0), (20.0, 23.0))
    pairs = rng.integers(0, ra.size, 2_000)  # neighbours within a few arcsec
    ra2 = ra[pairs] + rng.normal(0, 3 / 3600, pairs.size) / np.cos(np.radians(dec[pairs]))
    dec2 = dec[pairs] + rng.normal(0, 3 / 3600, pairs.size)
    wra, wdec = _sphere_patch(rng, 2_000, (-0.2, 0.2), (-0.2, 0.2))
    pra, pdec = _sphere_patch(rng, 2_000, (0.0, 360.0), (89.8, 90.0))
    ra = np.concatenate([ra, ra2 % 360.0, wra, pra])
    dec = np.concatenate([dec, dec2, wdec, pdec])
    n = ra.size
    fid = rng.integers(1, 3, n)
    ccdid = rng.integers(1, 17, n)
    qid = rng.integers(1, 5, n)
    matchid = np.arange(n) + np.where(rng.random(n) < 0.1, TRANSIENT_MATCHID0, 1)
    oids = make_oid(686, fid, ccdid, qid, matchid)  # type: ignore[arg-type]
    nobs = rng.integers(1, 400, n).astype(float)
    nobs[rng.random(n) < 0.05] = np.nan  # NULLs
    stetsonj = rng.normal(0.0, 1.0, n)
    stetsonj[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "oid": oids, "ra": ra, "dec": dec, "medianmag": rng.uniform(13.0, 21.0, n),
        "stetsonj": stetsonj, "nobs": nobs, "period": rng.uniform(0.1, 100.0, n),
        "matchfile": np.where(fid == 1, "lc/0/field000686/ztf_000686_zg_c03_q4_dr.h5", None),
    })


@pytest.fixture
def loaded(engine):  # noqa: F811
    init_db(engine)
    df = _objects()
    assert upsert_objects(engine, df) == len(df)
    return engine, df


def _brute(df: pd.DataFrame, ra: float, dec: float, radius_arcsec: float) -> pd.Series:
    """Exact separations (arcsec) of every object, by astropy."""
    c = SkyCoord(ra * u.deg, dec * u.deg)
    sep = c.separation(SkyCoord(df["ra"].to_numpy() * u.deg, df["dec"].to_numpy() * u.deg))
    return pd.Series(sep.arcsec, index=df["oid"].to_numpy())


def _check_cone(eng, df, ra, dec, radius):
    got = cone_search(eng, ra, dec, radius)
    sep = _brute(df, ra, dec, radius)
    want = set(sep.index[sep.to_numpy() <= radius])
    assert set(got["oid"]) == want, (ra, dec, radius)
    assert got["dist_arcsec"].is_monotonic_increasing
    np.testing.assert_allclose(got["dist_arcsec"], sep.loc[got["oid"]].to_numpy(), atol=1e-6)
    return got


def test_cone_search_matches_brute_force(loaded):
    eng, df = loaded
    rng = np.random.default_rng(1)
    patch = df[(df.ra > 150) & (df.ra < 153) & (df.dec < 23) & (df.dec > 20)]
    centres = [tuple(patch.iloc[i][["ra", "dec"]]) for i in rng.integers(0, len(patch), 15)]
    centres += list(zip(rng.uniform(150.1, 152.9, 15), rng.uniform(20.1, 22.9, 15),
                        strict=True))
    nonempty = 0
    for ra, dec in centres:
        radius = float(np.exp(rng.uniform(np.log(5.0), np.log(300.0))))
        nonempty += len(_check_cone(eng, df, ra, dec, radius)) > 0
    assert nonempty >= 15  # the centres on objects always find one
    # Across RA = 0/360 and at the pole.
    for ra, dec, radius in [(0.0, 0.0, 300.0), (359.98, 0.05, 120.0), (0.01, -0.03, 60.0),
                            (360.0, 0.1, 200.0), (123.0, 89.9, 300.0), (0.0, 90.0, 600.0),
                            (301.0, 89.97, 150.0), (45.0, 89.85, 10.0)]:
        got = _check_cone(eng, df, ra, dec, radius)
        if radius >= 120:
            assert len(got) > 0
    # The wrap really is crossed: both sides of RA = 0 in one result.
    got = cone_search(eng, 0.0, 0.0, 300.0)
    assert (got.ra < 1).any() and (got.ra > 359).any()
    # limit keeps the nearest.
    full = cone_search(eng, 151.5, 21.5, 300.0)
    top = cone_search(eng, 151.5, 21.5, 300.0, limit=5)
    assert len(full) > 5 and list(top.oid) == list(full.oid[:5])


def test_result_columns_and_types(loaded):
    eng, df = loaded
    got = cone_search(eng, 151.5, 21.5, 200.0)
    assert got.columns[-1] == "dist_arcsec" and "healpix29" in got.columns
    assert str(got["nobs"].dtype) == "Int64" and got["oid"].dtype == np.int64
    assert got["refmag"].isna().all()  # never given: NULL
    empty = cone_search(eng, 10.0, -40.0, 60.0)
    assert len(empty) == 0 and list(empty.columns) == list(got.columns)
    row = df.iloc[123]
    obj = get_object(eng, int(row.oid))
    assert obj is not None and obj["field"] == 686 and obj["refmag"] is None
    assert obj["healpix29"] == int(healpix29(row.ra, row.dec))
    assert obj["kind"] == int(obj["matchid"] >= TRANSIENT_MATCHID0)
    assert obj["rcid"] == 4 * (obj["ccdid"] - 1) + obj["qid"] - 1
    assert get_object(eng, 1) is None


def test_metric_filters(loaded):
    eng, df = loaded
    ra, dec, radius = 151.2, 21.7, 300.0
    sep = _brute(df, ra, dec, radius)
    inside = df[sep.to_numpy() <= radius]
    assert len(inside) > 30
    where = {"nobs": (30, None), "stetsonj": (0.5, None), "medianmag": (None, 18.0)}
    got = cone_search(eng, ra, dec, radius, where={**where, "nobs": (np.int64(30), None)})
    want = inside[(inside.nobs >= 30) & (inside.stetsonj >= 0.5) & (inside.medianmag <= 18.0)]
    assert len(want) > 0 and set(got.oid) == set(want.oid)
    got = cone_search(eng, ra, dec, radius, fid=2, where={"period": (1.0, 10.0)})
    fid = (inside.oid // 10**11) % 10
    want = inside[(fid == 2) & inside.period.between(1.0, 10.0)]
    assert len(want) > 0 and set(got.oid) == set(want.oid)
    got = cone_search(eng, ra, dec, radius, where={"kind": 1})
    assert set(got.oid) == set(inside.oid[inside.oid % 10**8 >= TRANSIENT_MATCHID0])
    for bad in ({"nosuch": (1, 2)}, {"nobs; DROP TABLE lc_objects": (1, None)},
                {"matchfile": ("a", "b")}, {"nobs": (1, 2, 3)}):
        with pytest.raises(ValueError):
            cone_search(eng, ra, dec, radius, where=bad)
    assert "nobs" in FILTER_COLUMNS and count_objects(eng) == len(df)


def test_upsert_is_idempotent_and_updates(loaded):
    eng, df = loaded
    assert upsert_objects(eng, df) == len(df)
    assert count_objects(eng) == len(df)
    changed = df.iloc[:1000].copy()
    changed["medianmag"] = 99.0
    changed["stetsonj"] = np.nan  # an update may also clear a value
    dup = pd.concat([changed.iloc[:10].assign(medianmag=1.0), changed])  # last one wins
    assert upsert_objects(eng, dup) == 1000
    assert count_objects(eng) == len(df)
    for i in (0, 9, 999):
        obj = get_object(eng, int(df.oid[i]))
        assert obj["medianmag"] == 99.0 and obj["stetsonj"] is None
    assert get_object(eng, int(df.oid[1000]))["medianmag"] == df.medianmag[1000]
    # A search result goes back in unchanged (nullable Int64, extra dist_arcsec column).
    res = cone_search(eng, 151.5, 21.5, 300.0)
    assert res["nobs"].isna().any() and upsert_objects(eng, res) == len(res)
    assert cone_search(eng, 151.5, 21.5, 300.0).equals(res)
    assert upsert_objects(eng, df.iloc[:0]) == 0 and count_objects(eng) == len(df)
    with pytest.raises(ValueError, match="out of range"):
        upsert_objects(eng, df.iloc[:1].assign(field=2**40))
    # The bulk path (COPY on PostgreSQL) writes the same rows, in place or from empty.
    assert bulk_load_objects(eng, df.iloc[:2000]) == 2000
    assert count_objects(eng) == len(df)
    ref = {int(o): get_object(eng, int(o)) for o in df.oid[[5, 1500, 3000]]}
    with eng.begin() as conn:
        conn.execute(text("DELETE FROM lc_objects"))
    assert bulk_load_objects(eng, df) == len(df)
    assert count_objects(eng) == len(df)
    assert {o: get_object(eng, o) for o in ref} == ref
    assert set(inspect(eng).get_indexes("lc_objects")[0]) >= {"name", "column_names"}
    assert {i["name"] for i in inspect(eng).get_indexes("lc_objects")} == {
        "ix_lc_objects_healpix29", "ix_lc_objects_quadrant"}
    assert len(cone_search(eng, 151.5, 21.5, 300.0)) > 0


def test_structured_input_delete_and_matchfile(engine):  # noqa: F811
    init_db(engine)
    rng = np.random.default_rng(3)
    src = np.zeros(100, SOURCES_DTYPE)
    src["matchid"] = np.r_[np.arange(1, 91), TRANSIENT_MATCHID0 + np.arange(10)]
    src["oid"] = make_oid(700, 2, 5, 3, src["matchid"])
    src["ra"], src["dec"] = rng.uniform(30, 30.1, 100), rng.uniform(-5, -4.9, 100)
    src["nobs"], src["medianmag"], src["period"] = 50, 17.5, np.nan
    assert upsert_objects(engine, src) == 100
    other = src.copy()
    other["oid"] = make_oid(700, 1, 5, 3, src["matchid"])  # same quadrant, other filter
    upsert_objects(engine, other)
    got = cone_search(engine, 30.05, -4.95, 600.0, fid=2)
    assert len(got) == 100 and set(got.field) == {700} and set(got.rcid) == {18}
    assert set(got.ccdid) == {5} and set(got.qid) == {3} and got.kind.sum() == 10
    assert got.nobs.eq(50).all() and got.period.isna().all()
    assert delete_objects(engine, 700, 18, 2) == 100
    assert count_objects(engine) == 100 and delete_objects(engine, 700, 18, 2) == 0
    kw = dict(field=700, rcid=18, ccdid=5, qid=3, fid=2, path="lc/a.h5", nexposures=40,
              nsources=90, ntransients=10, npoints=4000)
    i = upsert_matchfile(engine, **kw, qa={"nbad": 1})
    assert upsert_matchfile(engine, **{**kw, "npoints": 4100}, reference_pid=12345678901) == i
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT npoints, reference_pid, qa FROM matchfiles")).all()
    assert len(rows) == 1 and rows[0][0] == 4100 and rows[0][1] == 12345678901
    with pytest.raises(ValueError):
        upsert_matchfile(engine, **kw, bogus=1)
    with pytest.raises(ValueError, match="oid"):
        upsert_objects(engine, pd.DataFrame({"ra": [1.0], "dec": [2.0]}))


def test_migration_from_v4(engine):  # noqa: F811
    with engine.begin() as conn:
        for migrate in MIGRATIONS[:4]:
            migrate(conn)
        conn.execute(text("INSERT INTO schema_version (version, applied_at) "
                          "VALUES (4, CURRENT_TIMESTAMP)"))
    assert schema_version(engine) == 4
    assert not inspect(engine).has_table("lc_objects")
    assert init_db(engine) == SCHEMA_VERSION >= 5
    assert schema_version(engine) == SCHEMA_VERSION
    names = set(inspect(engine).get_table_names())
    assert {"lc_objects", "matchfiles", "night_summaries", "references"} <= names
    assert upsert_objects(engine, {"oid": [686103400000001], "ra": [1.0], "dec": [2.0]}) == 1


def test_healpix29_agrees_with_hats():
    shim = pytest.importorskip("hats.pixel_math.healpix_shim")
    spatial = pytest.importorskip("hats.pixel_math.spatial_index")
    rng = np.random.default_rng(5)
    ra = np.r_[rng.uniform(0, 360, 5000), 0.0, 360.0, 359.9999999, 180.0, 10.0]
    dec = np.r_[np.degrees(np.arcsin(rng.uniform(-1, 1, 5000))), 0.0, 0.0, 89.9999, -90.0, 90.0]
    ours = healpix29(ra, dec)
    assert ours.dtype == np.int64
    np.testing.assert_array_equal(ours, shim.radec2pix(29, ra, dec))
    np.testing.assert_array_equal(ours, spatial.compute_spatial_index(ra, dec))
    assert healpix29(ra[0], dec[0]).shape == () and int(healpix29(ra[0], dec[0])) == ours[0]
    with pytest.raises(ValueError):
        healpix29([1.0], [np.nan])


@pytest.mark.parametrize("radius_arcsec", [0.5, 5.0, 60.0, 600.0, 7200.0])
def test_cone_ranges_cover_the_cone(radius_arcsec):
    rng = np.random.default_rng(int(radius_arcsec * 10))
    for ra0, dec0 in [(10.0, 20.0), (0.0, 0.0), (250.0, -89.95), (90.0, 41.8)]:
        r = radius_arcsec / 3600
        ranges = cone_ranges(ra0, dec0, r)
        assert ranges.dtype == np.int64 and ranges.shape[1] == 2 and len(ranges) <= 30
        assert np.all(ranges[:, 0] <= ranges[:, 1])
        assert np.all(ranges[1:, 0] > ranges[:-1, 1] + 1)  # sorted, disjoint, merged
        # Points just inside the rim (the hardest case) all fall in a range.
        pa = rng.uniform(0, 2 * np.pi, 2000)
        rho = r * np.sqrt(rng.uniform(0.98, 0.99999, pa.size))
        c = SkyCoord(ra0 * u.deg, dec0 * u.deg).directional_offset_by(pa * u.rad, rho * u.deg)
        hp = healpix29(c.ra.deg, c.dec.deg)
        i = np.searchsorted(ranges[:, 0], hp, side="right") - 1
        assert np.all((i >= 0) & (hp <= ranges[np.maximum(i, 0), 1]))
    with pytest.raises(ValueError):
        cone_ranges(0.0, 0.0, -1.0)
