"""Unit tests of the ADQL subset: tokenizer, parser, regions, translation and execution."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from zsds.archive import adql
from zsds.core.sphere import angular_distance_deg
from zsds.db import connect
from zsds.lightcurves.search import cone_search

# --------------------------------------------------------------------------- parsing


def test_tokenize_strings_numbers_comments():
    toks = adql.tokenize("SELECT 'it''s', 1.5e-3, \"Odd Name\" -- comment\nFROM t")
    kinds = [(t.kind, t.value) for t in toks]
    assert ("str", "'it''s'") in kinds
    assert ("num", "1.5e-3") in kinds
    assert ("qid", '"Odd Name"') in kinds
    assert kinds[-1][0] == "eof"
    assert all("comment" not in v for _, v in kinds)


def test_tokenize_rejects_garbage():
    with pytest.raises(adql.ADQLError, match="position"):
        adql.tokenize("SELECT ra FROM t WHERE ra = 'unterminated")


def test_parse_full_query():
    q = adql.parse("select distinct top 10 o.oid, ra as alpha, o.* FROM ztf_objects_dr23 AS o "
                   "WHERE (fid = 2 OR fid IN (1, 3)) AND NOT nobs BETWEEN 1 AND 5 "
                   "AND filtercode LIKE 'z%' AND refmag IS NOT NULL "
                   "ORDER BY ra DESC, 1 OFFSET 3")
    assert q.distinct and q.top == 10 and q.offset == 3
    assert q.table == "ztf_objects_dr23" and q.alias == "o"
    assert q.items[0] == adql.SelectItem(adql.ColumnRef("oid", "o"))
    assert q.items[1].alias == "alpha"
    assert q.items[2].expr == adql.Star("o")
    assert isinstance(q.where, adql.And) and len(q.where.items) == 4
    assert isinstance(q.where.items[0], adql.Or)
    assert isinstance(q.where.items[1], adql.Not)
    assert q.where.items[2] == adql.Like(adql.ColumnRef("filtercode"), adql.Literal("z%"))
    assert q.where.items[3] == adql.IsNull(adql.ColumnRef("refmag"), negated=True)
    assert [o.desc for o in q.order] == [True, False]


def test_parse_parenthesised_value_vs_condition():
    q = adql.parse("SELECT ra FROM ztf_objects WHERE (ra + 1) * 2 > 3")
    assert isinstance(q.where, adql.Compare) and isinstance(q.where.left, adql.BinOp)
    q = adql.parse("SELECT ra FROM ztf_objects WHERE (ra > 1)")
    assert isinstance(q.where, adql.Compare)


def test_parse_irsa_cone_query():
    q = adql.parse("SELECT * FROM ztf_objects_dr23 WHERE CONTAINS(POINT('ICRS',ra,dec),"
                   "CIRCLE('ICRS',255.57691,12.28378,0.0027777))=1")
    f = q.where.left
    assert f.name == "contains" and f.args[0].name == "point" and f.args[1].name == "circle"
    assert q.where.right == adql.Literal(1)


@pytest.mark.parametrize("query, message", [
    ("", "empty"),
    ("SELECT ra FROM a, b", "joins"),
    ("SELECT ra FROM a JOIN b ON a.x = b.x", "joins"),
    ("SELECT ra FROM (SELECT ra FROM a)", "sub-queries"),
    ("SELECT ra FROM a WHERE ra IN (SELECT ra FROM b)", "sub-queries"),
    ("SELECT ra FROM a GROUP BY ra", "GROUP BY"),
    ("SELECT ra FROM a LIMIT 5", "TOP"),
    ("SELECT ra FROM a UNION SELECT ra FROM b", "set operations"),
    ("SELECT ra FROM a WHERE", "expected a value"),
    ("SELECT ra FROM a WHERE ra = 1; DROP TABLE lc_objects", "unexpected text"),
    ("DELETE FROM lc_objects", "expected SELECT"),
])
def test_parse_rejections(query, message):
    with pytest.raises(adql.ADQLError, match=message):
        adql.parse(query)


# --------------------------------------------------------------------------- regions


def test_region_circle_and_box_and_polygon():
    c = adql.Region.circle(10.0, 20.0, 0.5)
    assert c.contains([10.0, 10.0, 10.0], [20.0, 20.49, 20.51]).tolist() == [True, True, False]
    b = adql.Region.box(10.0, 20.0, 1.0, 0.2)
    assert b.contains([10.0, 10.4, 10.0], [20.0, 20.0, 20.15]).tolist() == [True, True, False]
    p = adql.Region.polygon([9.0, 11.0, 11.0, 9.0], [19.0, 19.0, 21.0, 21.0])
    assert p.contains([10.0, 12.0], [20.0, 20.0]).tolist() == [True, False]
    # Enclosing circle holds every vertex.
    assert np.all(angular_distance_deg(*p.center, [9, 11, 11, 9], [19, 19, 21, 21])
                  <= p.radius + 1e-9)
    # Wrap through RA 0.
    w = adql.Region.circle(359.99, 0.0, 0.05)
    assert w.contains([0.02, 359.95, 0.1], [0.0, 0.0, 0.0]).tolist() == [True, True, False]


def test_region_rejections():
    with pytest.raises(adql.ADQLError, match="radius"):
        adql.Region.circle(1, 2, -1)
    with pytest.raises(adql.ADQLError, match="dec"):
        adql.Region.circle(1, 95, 1)
    with pytest.raises(adql.ADQLError, match="3 vertices"):
        adql.Region.polygon([1, 2], [1, 2])


# --------------------------------------------------------------------------- execution


@pytest.fixture(scope="module")
def engine(archive_home):
    from zsds.archive.index import update_index
    from zsds.db import init_db

    eng = connect(archive_home.db_url)
    init_db(eng)
    update_index(archive_home, eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def catalog():
    return adql.Catalog(("ztf_objects_dr23",))


def _run(q, catalog, engine, maxrec=10_000):
    return adql.run(q, catalog, engine, maxrec=maxrec, hard_limit=100_000)


def _objects(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT oid, ra, dec, fid, nobs FROM lc_objects")).all()


def test_cone_equals_cone_search(engine, catalog):
    oid, ra, dec = _objects(engine)[10][:3]
    r = 30.0 / 3600
    res = _run(f"SELECT oid, ra, dec FROM ztf_objects_dr23 WHERE CONTAINS(POINT('ICRS', ra, "
               f"dec), CIRCLE('ICRS', {ra!r}, {dec!r}, {r!r})) = 1", catalog, engine)
    truth = cone_search(engine, ra, dec, 30.0)
    assert sorted(res.table["oid"].tolist()) == sorted(truth["oid"].tolist())
    assert oid in res.table["oid"] and len(res.table) >= 1 and not res.overflow
    # DISTANCE form gives the same rows.
    res2 = _run(f"SELECT oid FROM ztf_objects_dr23 WHERE DISTANCE(POINT('ICRS', ra, dec), "
                f"POINT('ICRS', {ra!r}, {dec!r})) < {r!r}", catalog, engine)
    assert sorted(res2.table["oid"].tolist()) == sorted(truth["oid"].tolist())


def test_box_and_polygon_match_numpy_truth(engine, catalog):
    rows = np.array([r[:3] for r in _objects(engine)], dtype=float)
    ra0, dec0 = float(np.median(rows[:, 1])), float(np.median(rows[:, 2]))
    res = _run(f"SELECT oid FROM ztf_objects_dr23 WHERE CONTAINS(POINT('ICRS', ra, dec), "
               f"BOX('ICRS', {ra0}, {dec0}, 0.1, 0.1)) = 1", catalog, engine)
    dra = (rows[:, 1] - ra0) * np.cos(np.radians(dec0))
    sure = (np.abs(dra) < 0.049) & (np.abs(rows[:, 2] - dec0) < 0.049)
    maybe = (np.abs(dra) < 0.051) & (np.abs(rows[:, 2] - dec0) < 0.051)
    got = set(res.table["oid"].tolist())
    assert set(rows[sure, 0].astype(np.int64)) <= got <= set(rows[maybe, 0].astype(np.int64))
    assert len(got) > 0
    poly = (f"POLYGON('ICRS', {ra0 - 0.05}, {dec0 - 0.05}, {ra0 + 0.05}, {dec0 - 0.05}, "
            f"{ra0}, {dec0 + 0.05})")
    res = _run(f"SELECT oid, ra, dec FROM ztf_objects_dr23 WHERE "
               f"CONTAINS(POINT('ICRS', ra, dec), {poly}) = 1 AND fid = 2", catalog, engine)
    assert len(res.table) > 0
    # Every returned point is inside the triangle (below both slanted edges).
    x, y = np.asarray(res.table["ra"]) - ra0, np.asarray(res.table["dec"]) - dec0
    assert np.all(y >= -0.0501) and np.all(np.abs(x) * np.cos(np.radians(dec0)) <= 0.0501)


def test_where_top_order_and_overflow(engine, catalog):
    objs = _objects(engine)
    res = _run("SELECT TOP 5 oid, nobs FROM ztf_objects_dr23 WHERE nobs >= 2 "
               "ORDER BY oid DESC", catalog, engine)
    want = sorted((o for o, _, _, _, n in objs if n is not None and n >= 2), reverse=True)[:5]
    assert res.table["oid"].tolist() == want and not res.overflow
    res = _run("SELECT oid FROM ztf_objects_dr23", catalog, engine, maxrec=7)
    assert len(res.table) == 7 and res.overflow
    res = _run("SELECT oid, filtercode FROM ztf_objects_dr23 WHERE filtercode = 'zr' "
               f"AND oid IN ({objs[0][0]}, {objs[1][0]})", catalog, engine)
    assert sorted(res.table["oid"].tolist()) == sorted([objs[0][0], objs[1][0]])
    assert set(res.table["filtercode"]) == {"zr"}


def test_literals_are_bound_not_interpolated(engine, catalog):
    res = _run("SELECT oid FROM ztf_objects_dr23 WHERE filtercode = 'x'' OR 1=1 --'",
               catalog, engine)
    assert len(res.table) == 0
    plan = adql.translate(adql.parse("SELECT oid FROM ztf_objects_dr23 WHERE oid = 12345"),
                          catalog, engine, limit=10)
    assert "12345" not in str(plan.sql)


def test_image_tables(engine, catalog):
    with engine.connect() as conn:
        img = conn.execute(text("SELECT id, ra, dec, field, ccdid, qid FROM archive_images "
                                "WHERE tbl = 'sci' ORDER BY id LIMIT 1")).one()
    res = _run(f"SELECT meta_id, field, ccdid, qid, obsdate, obsjd FROM "
               f"ztf.ztf_current_meta_sci WHERE CONTAINS(POINT('ICRS', {img.ra}, {img.dec}), "
               "poly) = 1", catalog, engine)
    assert img.id in res.table["meta_id"]
    assert all(str(d).endswith("+00") for d in res.table["obsdate"])
    res = _run(f"SELECT meta_id FROM ztf.ztf_current_meta_sci WHERE CONTAINS(POINT('ICRS', "
               f"ra, dec), CIRCLE('ICRS', {img.ra}, {img.dec}, 0.0001)) = 1", catalog, engine)
    assert img.id in res.table["meta_id"]
    with pytest.raises(adql.ADQLError, match="can only be selected"):
        _run("SELECT obsdate FROM ztf.ztf_current_meta_sci WHERE obsdate > '2020'",
             catalog, engine)


def test_tap_schema(engine, catalog):
    res = _run("SELECT * FROM TAP_SCHEMA.tables WHERE irsa_dbms=21 AND irsa_pos='y'",
               catalog, engine)
    assert res.table["table_name"].tolist() == ["ztf_objects_dr23"]
    res = _run("SELECT column_name, datatype FROM TAP_SCHEMA.columns "
               "WHERE table_name = 'ztf_objects_dr23'", catalog, engine)
    assert {"oid", "ra", "dec", "nobs", "medianmag"} <= set(res.table["column_name"])


@pytest.mark.parametrize("query, message", [
    ("SELECT oid FROM lc_objects", "unknown table"),
    ("SELECT oid FROM users", "unknown table"),
    ("SELECT password_hash FROM ztf_objects_dr23", "unknown column"),
    ("SELECT oid FROM ztf_objects_dr23 WHERE matchfile = 'x'", "unknown column"),
    ("SELECT COUNT(*) FROM ztf_objects_dr23", "aggregate"),
    ("SELECT oid FROM ztf_objects_dr23 WHERE lower(filtercode) = 'zr'", "LOWER"),
    ("SELECT oid FROM ztf_objects_dr23 WHERE fid = 1 OR CONTAINS(POINT('ICRS', ra, dec), "
     "CIRCLE('ICRS', 1, 2, 3)) = 1", "top-level AND"),
    ("SELECT oid FROM ztf_objects_dr23 WHERE CONTAINS(POINT('GALACTIC', ra, dec), "
     "CIRCLE('ICRS', 1, 2, 3)) = 1", "ICRS"),
    ("SELECT oid FROM ztf_objects_dr23 WHERE CONTAINS(POINT('ICRS', ra, dec), "
     "CIRCLE('ICRS', 1, 2, 3)) = 0", "= 1"),
    ("SELECT oid FROM ztf_objects_dr23 WHERE CONTAINS(POINT('ICRS', ra, dec), "
     "CIRCLE('ICRS', ra, 2, 3)) = 1", "constants"),
    ("SELECT oid FROM ztf_objects_dr23 WHERE CONTAINS(POINT('ICRS', 1, 2), poly) = 1",
     "footprint"),
    ("SELECT x.oid FROM ztf_objects_dr23 AS o", "qualifier"),
])
def test_translation_rejections(engine, catalog, query, message):
    with pytest.raises(adql.ADQLError, match=message):
        _run(query, catalog, engine)
