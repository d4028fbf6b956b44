"""The IBE WHERE translator: accepted fragments become valid SQL with bound literals; anything
outside the grammar is refused with an error naming the offending token."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, insert, text

from zsds.archive.ibe import where_columns
from zsds.archive.where import WhereError, tokenize, translate_where, where_clause
from zsds.db.schema import ArchiveImage, Base

SCI = where_columns("sci")

ROWS = [
    {"tbl": "sci", "relpath": "a", "ccdid": 6, "qid": 1, "rcid": 21, "fid": 2, "filtercode": "zr",
     "obsjd": 2458150.4, "field": 535, "seeing": 2.0, "imgtypecode": "o", "infobits": 0},
    {"tbl": "sci", "relpath": "b", "ccdid": 6, "qid": 2, "rcid": 22, "fid": 2, "filtercode": "zr",
     "obsjd": 2458150.6, "field": 535, "seeing": None, "imgtypecode": "o", "infobits": 0},
    {"tbl": "sci", "relpath": "c", "ccdid": 7, "qid": 3, "rcid": 30, "fid": 1, "filtercode": "zg",
     "obsjd": 2458151.0, "field": 600, "seeing": 1.5, "imgtypecode": "o", "infobits": 4},
]


@pytest.fixture(scope="module")
def engine():
    eng = create_engine("sqlite://")
    Base.metadata.create_all(eng, tables=[ArchiveImage.__table__])
    with eng.begin() as conn:
        conn.execute(insert(ArchiveImage), ROWS)
    return eng


def _match(engine, fragment: str) -> list[str]:
    """relpaths of the rows the fragment selects, run through SQLite."""
    sql, params = translate_where(fragment, SCI)
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT relpath FROM archive_images WHERE {sql} "
                                 "ORDER BY relpath"), params)
        return [r[0] for r in rows]


def test_ztfquery_fragment() -> None:
    sql, params = translate_where("fid=2 AND obsjd>2458150.5", SCI)
    assert sql == "(fid) = :w0 AND (obsjd) > :w1"
    assert params == {"w0": 2, "w1": 2458150.5}


@pytest.mark.parametrize(("fragment", "expected"), [
    ("fid=2 AND obsjd>2458150.5", ["b"]),
    ("FID = 2 and OBSJD < 2458150.5", ["a"]),
    ("filtercode='zg'", ["c"]),
    ("filtercode = 'zr' OR field=600", ["a", "b", "c"]),
    ("NOT (fid = 2)", ["c"]),
    ("qid IN (1, 3)", ["a", "c"]),
    ("qid NOT IN (1,3)", ["b"]),
    ("obsjd BETWEEN 2458150.5 AND 2458150.7", ["b"]),
    ("obsjd NOT BETWEEN 2458150.5 AND 2458150.7", ["a", "c"]),
    ("filtercode LIKE 'z%'", ["a", "b", "c"]),
    ("filtercode NOT LIKE '%g'", ["a", "b"]),
    ("seeing IS NULL", ["b"]),
    ("seeing IS NOT NULL AND seeing*2 > 3.5", ["a"]),
    ("field - 35 = 500 AND -qid >= -1", ["a"]),
    ("(fid=1 OR qid=2) AND infobits <> 0", ["c"]),
    ("infobits != 0", ["c"]),
    ("imgtype = 'object' AND itid = 1 AND meta_id > 0", ["a", "b", "c"]),
    ("obsdate > '2018-02-01'", ["b", "c"]),
    ("obsjd > 2.4581505e6", ["b", "c"]),
    ("rcid * 1.0 / 4 = 5 + 0.25", ["a"]),
])
def test_accepted_fragments_select_the_right_rows(engine, fragment, expected) -> None:
    assert _match(engine, fragment) == expected


def test_string_quotes_are_bound_not_interpolated(engine) -> None:
    sql, params = translate_where("filtercode = 'z''r' OR filtercode='x; DROP TABLE t'", SCI)
    assert params == {"w0": "z'r", "w1": "x; DROP TABLE t"}
    assert "DROP" not in sql and "'" not in sql
    assert _match(engine, "filtercode = 'zr'' OR ''1''=''1'") == []


def test_where_clause_is_a_text_clause(engine) -> None:
    clause = where_clause("ccdid = 7", SCI)
    with engine.connect() as conn:
        rows = conn.execute(ArchiveImage.__table__.select().where(clause)).all()
    assert [r.relpath for r in rows] == ["c"]


@pytest.mark.parametrize(("fragment", "named"), [
    ("fid=2; DROP TABLE archive_images", "';'"),
    ("fid=2 -- comment", "'--'"),
    ("fid=2 /* c */", "'/*'"),
    ("lower(filtercode)='zr'", "'lower'"),
    ("fid IN (SELECT fid FROM users)", "'SELECT'"),
    ("password_hash = 'x'", "'password_hash'"),
    ("relpath LIKE '%'", "'relpath'"),
    ("\"fid\" = 2", "'\"'"),
    ("fid = 2 UNION SELECT 1", "'union'"),
    ("filtercode = 'zr", "unterminated"),
    ("fid = ", "end of WHERE"),
    ("fid == 2", "'='"),
    ("fid = 2abc", "2abc"),
    ("moonesb > 0.5", "'moonesb'"),
    ("fid = NULL", "NULL"),
    ("fid NOT = 2", "NOT"),
    ("(fid = 2", "')'"),
    ("fid = 2)", "')'"),
    ("fid || 'x'", "'|'"),
    ("", "empty"),
])
def test_rejected_fragments_name_the_token(fragment, named) -> None:
    with pytest.raises(WhereError) as err:
        translate_where(fragment, SCI)
    assert named.lower() in str(err.value).lower()


def test_tokenizer_kinds() -> None:
    kinds = [(t.kind, t.value) for t in tokenize("a>=1.5e3 AND b<>'x''y'")]
    assert kinds == [("ident", "a"), ("op", ">="), ("number", "1.5e3"), ("keyword", "and"),
                     ("ident", "b"), ("op", "<>"), ("string", "'x''y'"), ("end", "")]


def test_whitelist_is_per_table() -> None:
    translate_where("caltype = 'bias' AND nightdate > 20180101", where_columns("cal"))
    with pytest.raises(WhereError, match="caltype"):
        translate_where("caltype = 'bias'", SCI)
    with pytest.raises(WhereError, match="qid"):
        translate_where("qid = 1", where_columns("raw"))
    sql, _ = translate_where("startobsdate > '2018-01-01'", where_columns("ref"))
    assert "obsjd" in sql
