"""Property-based tests of the IBE ``WHERE`` and the ADQL translators (issue 19, item 4).

* Any text at all: the translator answers with SQL and bound parameters, or refuses with its own
  error (``WhereError`` / ``ADQLError`` / ``LimitError``, each a 4xx in the service); never
  another exception, which the service would turn into a 500.
* Any fragment of the documented grammar (generated from it): the translation selects exactly
  the rows that SQLite selects when it runs the same fragment as plain SQL, and every literal
  travels as a bound parameter, never as text in the statement.
"""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from zsds.archive import adql
from zsds.archive.limits import LimitError
from zsds.archive.where import WhereError, translate_where

PROPS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow])

#: The table of the equivalence test: numeric and string columns, some NULLs.
NUM_COLS = ("a", "b", "c")
STR_COLS = ("s",)
COLUMNS = {c: c for c in NUM_COLS + STR_COLS}


@pytest.fixture(scope="module")
def table():
    """SQLite table ``t(id, a, b, c, s)`` of 200 deterministic rows with some NULLs."""
    rng = random.Random(19)
    eng = create_engine("sqlite://")
    rows = []
    for i in range(200):
        def num(rng=rng):
            return None if rng.random() < 0.1 else rng.choice([rng.randint(-5, 5),
                                                               round(rng.uniform(-5, 5), 2)])
        s = None if rng.random() < 0.1 else "".join(rng.choice("ab%_'x") for _ in range(3))
        rows.append({"id": i, "a": num(), "b": num(), "c": num(), "s": s})
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER, a REAL, b REAL, c REAL, s TEXT)"))
        conn.execute(text("INSERT INTO t VALUES (:id, :a, :b, :c, :s)"), rows)
    yield eng
    eng.dispose()


# -- the grammar of ``zsds.archive.where``, as hypothesis strategies ---------------------------

numbers = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.floats(-100, 100, allow_nan=False, allow_infinity=False).map(lambda x: f"{abs(x):.3f}"),
    st.sampled_from(["0", "1e2", ".5", "2.", "1.5E-1"]),
)
#: Single-quoted SQL strings, quotes doubled; including the characters of injection attempts.
strings = st.text(alphabet="ab%_'x; -", max_size=6).map(lambda s: "'" + s.replace("'", "''") + "'")


def _sums(atoms):
    return st.recursive(
        atoms,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*"]), inner).map(" ".join),
            inner.map(lambda e: f"({e})"),
            inner.map(lambda e: f"-({e})"),  # not "--x": a comment in SQL
        ),
        max_leaves=4,
    )


num_sums = _sums(st.one_of(numbers, st.sampled_from(NUM_COLS)))
cmp_ops = st.sampled_from(["=", "!=", "<>", "<", "<=", ">", ">="])
predicates = st.one_of(
    st.tuples(num_sums, cmp_ops, num_sums).map(" ".join),
    st.tuples(st.sampled_from(STR_COLS), cmp_ops, strings).map(" ".join),
    st.tuples(num_sums, st.sampled_from(["BETWEEN", "NOT BETWEEN"]), num_sums, num_sums).map(
        lambda t: f"{t[0]} {t[1]} {t[2]} AND {t[3]}"),
    st.tuples(num_sums, st.sampled_from(["IN", "NOT IN"]), st.lists(numbers, min_size=1,
                                                                     max_size=4)).map(
        lambda t: f"{t[0]} {t[1]} ({', '.join(t[2])})"),
    st.tuples(st.sampled_from(STR_COLS), st.sampled_from(["LIKE", "NOT LIKE"]), strings).map(
        " ".join),
    st.tuples(st.sampled_from(NUM_COLS + STR_COLS),
              st.sampled_from(["IS NULL", "IS NOT NULL"])).map(" ".join),
)
conditions = st.recursive(
    predicates,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["AND", "OR", "and", "Or"]), inner).map(" ".join),
        inner.map(lambda e: f"NOT ({e})"),
        inner.map(lambda e: f"({e})"),
    ),
    max_leaves=6,
)


def _ids(engine, where: str, params: dict | None = None) -> list[int] | str:
    """Row ids the condition selects, or the database's error class when it refuses it."""
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(
                text(f"SELECT id FROM t WHERE {where} ORDER BY id"), params or {})]
    except Exception as exc:  # compared, not hidden: both sides must agree
        return type(getattr(exc, "orig", exc)).__name__


@PROPS
@given(fragment=conditions)
def test_grammar_fragments_select_what_sql_selects(table, fragment):
    sql, params = translate_where(fragment, COLUMNS)
    # Every literal is bound: no quote and no digit-led literal survives in the statement.
    assert "'" not in sql
    assert _ids(table, sql, params) == _ids(table, fragment)


@PROPS
@given(fragment=st.text(max_size=80))
def test_any_text_is_translated_or_refused_cleanly(fragment):
    try:
        sql, _ = translate_where(fragment, COLUMNS)
    except (WhereError, LimitError) as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert "'" not in sql


#: Tokens of SQL and of attacks, glued at random: far likelier to reach deep in the parsers
#: than uniform text.
_TOKENS = ["a", "b", "s", "(", ")", "AND", "OR", "NOT", "IN", "BETWEEN", "LIKE", "IS", "NULL",
           "=", "<", ">=", "<>", "+", "-", "*", "/", ",", ";", "--", "/*", "'x'", "''", "'",
           "1", "1e400", "99999999999999999999", "0.5", "SELECT", "UNION", "DROP", "sqlite_master",
           "CAST", "\"a\"", "`a`", "\\", "\x00", "é"]


@PROPS
@given(tokens=st.lists(st.sampled_from(_TOKENS), max_size=25))
def test_token_soup_is_translated_or_refused_cleanly(table, tokens):
    fragment = " ".join(tokens)
    try:
        sql, params = translate_where(fragment, COLUMNS)
    except (WhereError, LimitError):
        return
    # Whatever was accepted runs on the database (the parser only emits well-formed SQL).
    assert isinstance(_ids(table, sql, params), list)


# -- ADQL -------------------------------------------------------------------------------------

_ADQL_TOKENS = [*_TOKENS, "SELECT", "TOP", "10", "*", "FROM", "ztf.ztf_current_meta_sci",
                "ztf_objects_dr23", "WHERE", "ORDER", "BY", "DESC", "COUNT", "AS", "CONTAINS",
                "POINT", "CIRCLE", "BOX", "POLYGON", "'ICRS'", "ra", "dec", "1=", "DISTINCT",
                "GROUP", "JOIN", "."]


@PROPS
@given(text_=st.text(max_size=80))
def test_adql_any_text_parses_or_is_refused(text_):
    try:
        adql.parse(text_)
    except (adql.ADQLError, LimitError) as exc:
        assert str(exc)


@PROPS
@given(tokens=st.lists(st.sampled_from(_ADQL_TOKENS), max_size=30),
       head=st.booleans())
def test_adql_token_soup_parses_or_is_refused(tokens, head):
    query = " ".join((["SELECT"] if head else []) + tokens)
    try:
        adql.parse(query)
    except (adql.ADQLError, LimitError) as exc:
        assert str(exc)


@PROPS
@given(cond=conditions)
def test_adql_accepts_the_where_grammar(cond):
    """The IBE grammar is a subset of ADQL's search conditions: every fragment parses."""
    q = adql.parse(f"SELECT TOP 5 a, b FROM t WHERE {cond}")
    assert q.where is not None


def test_strategies_generate_injection_characters():
    """The string strategy reaches quotes and semicolons (else the properties prove little)."""
    seen = set()

    @settings(max_examples=200, derandomize=True, database=None)
    @given(strings)
    def collect(s):
        seen.update(set(s) & set(string.punctuation))

    collect()
    assert {"'", ";", "%", "_"} <= seen
