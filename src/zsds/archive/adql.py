"""A safe subset of ADQL for the archive's TAP service: tokenizer, parser and translator.

What is understood::

    SELECT [DISTINCT] [TOP n] * | t.* | expr [AS alias], ...
    FROM <one whitelisted table> [[AS] t]
    [WHERE <predicate>]
    [ORDER BY expr|alias|position [ASC|DESC], ...]
    [OFFSET n]

Predicates: ``= <> != < <= > >=``, ``AND OR NOT``, ``[NOT] BETWEEN``, ``[NOT] IN (...)``,
``[NOT] LIKE``, ``IS [NOT] NULL`` and arithmetic (``+ - * /``) over whitelisted columns and
literals, plus the geometric constraints IRSA's clients send, as top-level ``AND`` terms::

    CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', ra0, dec0, r)) = 1     (also BOX, POLYGON)
    DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', ra0, dec0)) < r
    CONTAINS(POINT('ICRS', ra0, dec0), poly) = 1                          (image tables)
    INTERSECTS(CIRCLE|BOX|POLYGON(...), poly) = 1                         (image tables)

The query text is tokenized and parsed by a small recursive-descent parser into a tree; the
tree is translated to a SQLAlchemy Core ``SELECT`` in which every column is looked up in the
table's whitelist and every literal is a bound parameter, so no user text ever reaches SQL.
Geometric terms become an indexed prefilter (HEALPix ranges on ``lc_objects.healpix29`` as
:func:`zsds.lightcurves.search.cone_search` uses them; :func:`zsds.archive.index.images_at`
for image footprints; a declination band otherwise) plus an exact test in numpy/shapely on
the candidate rows. Anything else (joins, sub-queries, GROUP BY, functions, uploads) raises
:class:`ADQLError` with a message naming what is not supported, and so does a query beyond
the limits of :mod:`zsds.archive.limits` (its length, nesting depth, number of select items,
literals, operators and geometric terms, integers beyond 64 bits, cone radii below 0.01
arcsec), before the database or Python's stack would fail on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import shapely
from astropy.table import Column, MaskedColumn, Table
from astropy.time import Time
from sqlalchemy import (
    Column as SAColumn,
)
from sqlalchemy import (
    Engine,
    Integer,
    MetaData,
    String,
    Text,
    and_,
    bindparam,
    case,
    create_engine,
    literal,
    not_,
    or_,
    select,
)
from sqlalchemy import (
    Table as SATable,
)
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import ColumnElement

from zsds.archive import index
from zsds.archive.limits import (
    MAX_ADQL_CHARS,
    MAX_GEOMETRY_TERMS,
    MAX_LITERALS,
    MAX_NESTING,
    MAX_OPERATORS,
    MAX_SELECT_ITEMS,
    MIN_CONE_RADIUS_DEG,
    LimitError,
    check_cone_radius,
    check_int64,
)
from zsds.core.sphere import angular_distance_deg, unit_vectors
from zsds.db.schema import ArchiveImage, LightCurveObject
from zsds.lightcurves.search import cone_ranges


class ADQLError(ValueError):
    """A query the service cannot run (syntax error or unsupported construct)."""


# =========================================================================== tokenizer


@dataclass(frozen=True)
class Token:
    """One lexical token: ``kind`` is num, str, id, qid (quoted identifier), op, punct, eof."""

    kind: str
    value: str
    pos: int


_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+|--[^\n]*)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<str>'(?:[^']|'')*')
  | (?P<qid>"(?:[^"]|"")+")
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|<>|!=|\|\||[=<>+\-*/])
  | (?P<punct>[(),.;])
""", re.VERBOSE)


def tokenize(text: str) -> list[Token]:
    """Tokens of an ADQL query (comments and whitespace dropped), ending with an ``eof`` token.

    Raises
    ------
    ADQLError
        At the first character that starts no token (e.g. an unterminated string).
    """
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            snippet = text[pos:pos + 20]
            raise ADQLError(f"unexpected character at position {pos}: {snippet!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Token(kind, m.group(), pos))
        pos = m.end()
    out.append(Token("eof", "", len(text)))
    return out


# =========================================================================== syntax tree


@dataclass(frozen=True)
class Literal:
    value: int | float | str


@dataclass(frozen=True)
class ColumnRef:
    name: str
    qualifier: str | None = None


@dataclass(frozen=True)
class Star:
    qualifier: str | None = None


@dataclass(frozen=True)
class Neg:
    expr: Any


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True)
class Func:
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Compare:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True)
class Between:
    expr: Any
    lo: Any
    hi: Any
    negated: bool = False


@dataclass(frozen=True)
class InList:
    expr: Any
    items: tuple[Any, ...]
    negated: bool = False


@dataclass(frozen=True)
class Like:
    expr: Any
    pattern: Any
    negated: bool = False


@dataclass(frozen=True)
class IsNull:
    expr: Any
    negated: bool = False


@dataclass(frozen=True)
class And:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    item: Any


@dataclass(frozen=True)
class SelectItem:
    expr: Any
    alias: str | None = None


@dataclass(frozen=True)
class OrderItem:
    expr: Any
    desc: bool = False


@dataclass
class Query:
    """A parsed ``SELECT``."""

    items: list[SelectItem]
    table: str
    alias: str | None = None
    where: Any = None
    order: list[OrderItem] = field(default_factory=list)
    top: int | None = None
    offset: int | None = None
    distinct: bool = False


# =========================================================================== parser

_RESERVED = frozenset("""select from where and or not between in like is null order by asc desc
top as distinct offset join inner outer left right full on group having union intersect except
limit natural using cross exists""".split())
_GEOMETRY = frozenset({"point", "circle", "box", "polygon", "contains", "intersects", "distance"})
_COMPARE = frozenset({"=", "<>", "!=", "<", "<=", ">", ">="})


class _Parser:
    """Recursive descent over the token list (one instance per query)."""

    def __init__(self, text: str):
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0
        self.literals = 0
        self.operators = 0

    # -- limits
    def nest(self) -> None:
        """Enter one more level of nesting (leave it with ``self.depth -= 1``)."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ADQLError(f"the query is nested more than {MAX_NESTING} levels deep "
                            f"(position {self.tok.pos})")

    def operator(self) -> None:
        """Count one more AND, OR or arithmetic operator."""
        self.operators += 1
        if self.operators > MAX_OPERATORS:
            raise ADQLError(f"the query has more than {MAX_OPERATORS} operators")

    def literal(self) -> None:
        """Count one more literal (each becomes a bound parameter)."""
        self.literals += 1
        if self.literals > MAX_LITERALS:
            raise ADQLError(f"the query has more than {MAX_LITERALS} literals")

    # -- token helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def _kw(self, tok: Token | None = None) -> str:
        t = tok or self.tok
        return t.value.lower() if t.kind == "id" else ""

    def at_kw(self, *words: str) -> bool:
        return self._kw() in words

    def accept_kw(self, word: str) -> bool:
        if self._kw() == word:
            self.i += 1
            return True
        return False

    def expect_kw(self, word: str) -> None:
        if not self.accept_kw(word):
            self.fail(f"expected {word.upper()}")

    def accept(self, value: str) -> bool:
        if self.tok.kind in ("op", "punct") and self.tok.value == value:
            self.i += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if not self.accept(value):
            self.fail(f"expected {value!r}")

    def fail(self, what: str) -> None:
        t = self.tok
        found = "end of query" if t.kind == "eof" else repr(t.value)
        raise ADQLError(f"{what} at position {t.pos}, found {found}")

    def identifier(self) -> str:
        t = self.tok
        if t.kind == "qid":
            self.i += 1
            return t.value[1:-1].replace('""', '"')
        if t.kind == "id" and t.value.lower() not in _RESERVED:
            self.i += 1
            return t.value.lower()
        self.fail("expected a name")
        raise AssertionError  # unreachable

    def integer(self, what: str) -> int:
        t = self.tok
        if t.kind != "num" or not t.value.isdigit():
            self.fail(f"expected a non-negative integer after {what}")
        self.i += 1
        return _int64(int(t.value), what, t.pos)

    # -- statement
    def query(self) -> Query:
        self.expect_kw("select")
        distinct = self.accept_kw("distinct")
        self.accept_kw("all")
        top = self.integer("TOP") if self.accept_kw("top") else None
        items = [self.select_item()]
        while self.accept(","):
            if len(items) >= MAX_SELECT_ITEMS:
                raise ADQLError(f"more than {MAX_SELECT_ITEMS} items in the select list")
            items.append(self.select_item())
        self.expect_kw("from")
        if self.tok.kind == "punct" and self.tok.value == "(":
            raise ADQLError("sub-queries are not supported")
        parts = [self.identifier()]
        while self.accept("."):
            parts.append(self.identifier())
        table = ".".join(parts)
        alias = None
        if self.accept_kw("as"):
            alias = self.identifier()
        elif self.tok.kind in ("id", "qid") and self._kw() not in _RESERVED:
            alias = self.identifier()
        if (self.tok.kind == "punct" and self.tok.value == ",") or self.at_kw(
                "join", "inner", "left", "right", "full", "natural", "cross"):
            raise ADQLError("joins (more than one table in FROM) are not supported"
                            " (table uploads neither)")
        where = self.or_expr() if self.accept_kw("where") else None
        if self.at_kw("group", "having"):
            raise ADQLError("GROUP BY / HAVING are not supported")
        order: list[OrderItem] = []
        if self.accept_kw("order"):
            self.expect_kw("by")
            while True:
                expr = self.value_expr()
                desc = self.accept_kw("desc")
                if not desc:
                    self.accept_kw("asc")
                order.append(OrderItem(expr, desc))
                if not self.accept(","):
                    break
                if len(order) >= MAX_SELECT_ITEMS:
                    raise ADQLError(f"more than {MAX_SELECT_ITEMS} ORDER BY items")
        offset = self.integer("OFFSET") if self.accept_kw("offset") else None
        if self.at_kw("limit"):
            raise ADQLError("LIMIT is not ADQL: use SELECT TOP n")
        if self.at_kw("union", "intersect", "except"):
            raise ADQLError("set operations (UNION, INTERSECT, EXCEPT) are not supported")
        self.accept(";")
        if self.tok.kind != "eof":
            self.fail("unexpected text after the query")
        return Query(items, table, alias, where, order, top, offset, distinct)

    def select_item(self) -> SelectItem:
        if self.accept("*"):
            return SelectItem(Star())
        last = len(self.toks) - 1  # the end token: "SELECT" alone has nothing after it
        t, t1, t2 = self.tok, self.toks[min(self.i + 1, last)], self.toks[min(self.i + 2, last)]
        if t.kind in ("id", "qid") and t1.value == "." and t2.value == "*":
            self.i += 3
            return SelectItem(Star(t.value.lower() if t.kind == "id" else t.value[1:-1]))
        expr = self.value_expr()
        alias = None
        if self.accept_kw("as"):
            alias = self.identifier()
        elif self.tok.kind in ("id", "qid") and self._kw() not in _RESERVED:
            alias = self.identifier()
        return SelectItem(expr, alias)

    # -- boolean expressions
    def or_expr(self) -> Any:
        items = [self.and_expr()]
        while self.accept_kw("or"):
            self.operator()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Any:
        items = [self.not_expr()]
        while self.accept_kw("and"):
            self.operator()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Any:
        if self.accept_kw("not"):
            self.nest()
            inner = self.not_expr()
            self.depth -= 1
            return Not(inner)
        return self.predicate()

    def predicate(self) -> Any:
        if self.at_kw("exists"):
            raise ADQLError("sub-queries are not supported")
        if self.tok.kind == "punct" and self.tok.value == "(":
            # Either a parenthesised condition or a parenthesised value: try the former.
            save = (self.i, self.depth, self.literals, self.operators)
            try:
                self.i += 1
                self.nest()
                cond = self.or_expr()
                self.expect(")")
                self.depth -= 1
                if not (self.tok.kind == "op"
                        or self.at_kw("between", "in", "like", "is", "not")):
                    return cond
            except ADQLError:
                pass
            self.i, self.depth, self.literals, self.operators = save
        left = self.value_expr()
        if self.tok.kind == "op" and self.tok.value in _COMPARE:
            op = self.tok.value
            self.i += 1
            return Compare("<>" if op == "!=" else op, left, self.value_expr())
        if self.accept_kw("is"):
            neg = self.accept_kw("not")
            self.expect_kw("null")
            return IsNull(left, neg)
        neg = self.accept_kw("not")
        if self.accept_kw("between"):
            lo = self.value_expr()
            self.expect_kw("and")
            return Between(left, lo, self.value_expr(), neg)
        if self.accept_kw("in"):
            self.expect("(")
            if self.at_kw("select"):
                raise ADQLError("sub-queries are not supported")
            items = [self.value_expr()]
            while self.accept(","):
                items.append(self.value_expr())
            self.expect(")")
            return InList(left, tuple(items), neg)
        if self.accept_kw("like"):
            return Like(left, self.value_expr(), neg)
        if self.accept_kw("ilike"):
            raise ADQLError("ILIKE is not supported: use LIKE")
        self.fail("expected a comparison, BETWEEN, IN, LIKE or IS NULL")
        raise AssertionError  # unreachable

    # -- value expressions
    def value_expr(self) -> Any:
        left = self.term()
        while self.tok.kind == "op" and self.tok.value in ("+", "-", "||"):
            op = self.tok.value
            self.i += 1
            self.operator()
            left = BinOp(op, left, self.term())
        return left

    def term(self) -> Any:
        left = self.factor()
        while self.tok.kind == "op" and self.tok.value in ("*", "/"):
            op = self.tok.value
            self.i += 1
            self.operator()
            left = BinOp(op, left, self.factor())
        return left

    def factor(self) -> Any:
        if self.accept("-"):
            self.nest()
            inner = self.factor()
            self.depth -= 1
            if isinstance(inner, Literal) and not isinstance(inner.value, str):
                return Literal(-inner.value)
            return Neg(inner)
        if self.accept("+"):
            self.nest()
            inner = self.factor()
            self.depth -= 1
            return inner
        return self.primary()

    def primary(self) -> Any:
        t = self.tok
        if t.kind == "num":
            self.i += 1
            self.literal()
            if re.fullmatch(r"\d+", t.value) is not None:
                return Literal(_int64(int(t.value), "integer literal", t.pos))
            return Literal(float(t.value))
        if t.kind == "str":
            self.i += 1
            self.literal()
            return Literal(t.value[1:-1].replace("''", "'"))
        if self.accept("("):
            if self.at_kw("select"):
                raise ADQLError("sub-queries are not supported")
            self.nest()
            expr = self.value_expr()
            self.expect(")")
            self.depth -= 1
            return expr
        if t.kind == "id" and self.toks[self.i + 1].value == "(":
            name = t.value.lower()
            self.i += 2
            self.nest()
            args: list[Any] = []
            if name == "count" and self.accept("*"):
                args.append(Star())
            elif not (self.tok.kind == "punct" and self.tok.value == ")"):
                args.append(self.value_expr())
                while self.accept(","):
                    args.append(self.value_expr())
            self.expect(")")
            self.depth -= 1
            return Func(name, tuple(args))
        if t.kind in ("id", "qid"):
            if t.kind == "id" and t.value.lower() == "null":
                raise ADQLError(f"NULL is only allowed in IS [NOT] NULL (position {t.pos})")
            first = self.identifier()
            if self.accept("."):
                second = self.identifier()
                if self.accept("."):  # schema.table.column
                    return ColumnRef(self.identifier(), f"{first}.{second}")
                return ColumnRef(second, first)
            return ColumnRef(first)
        self.fail("expected a value")
        raise AssertionError  # unreachable


def parse(text: str) -> Query:
    """Parse one ADQL ``SELECT`` into a :class:`Query`.

    Raises
    ------
    ADQLError
        On a syntax error or an unsupported construct, with the position.
    """
    if not text or not text.strip():
        raise ADQLError("empty query")
    if len(text) > MAX_ADQL_CHARS:
        raise ADQLError(f"the query is longer than {MAX_ADQL_CHARS} characters")
    return _Parser(text).query()


def _int64(value: int, what: str, pos: int) -> int:
    """An integer of the query, refused beyond 64 bits (the database's widest integers)."""
    try:
        return check_int64(value, what)
    except LimitError as exc:
        raise ADQLError(f"{exc} (position {pos})") from None


# =========================================================================== regions


def gnomonic(ra: Any, dec: Any, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """:func:`zsds.archive.index.gnomonic` with a front-side mask instead of the cosine."""
    x, y, cosc = index.gnomonic(ra, dec, ra0, dec0)
    return x, y, cosc > 1e-9


@dataclass(frozen=True)
class Region:
    """A sky region: ``kind`` circle, box or polygon, in ICRS degrees.

    ``center``/``radius`` give an enclosing circle (the indexed prefilter); :meth:`contains`
    is the exact test, :meth:`plane` the shape in the tangent plane at ``center``.
    """

    kind: str
    center: tuple[float, float]
    radius: float
    vertices: tuple[tuple[float, float], ...] = ()
    size: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def circle(cls, ra: float, dec: float, r: float) -> Region:
        _check_pos(ra, dec)
        if not (np.isfinite(r) and 0 <= r < 90):
            raise ADQLError(f"circle radius must be in [0, 90) deg, got {r}")
        return cls("circle", (float(ra) % 360.0, float(dec)), float(r))

    @classmethod
    def box(cls, ra: float, dec: float, width: float, height: float) -> Region:
        _check_pos(ra, dec)
        if not (0 <= width < 90 and 0 <= height < 90):
            raise ADQLError(f"box width and height must be in [0, 90) deg, got {width}, {height}")
        return cls("box", (float(ra) % 360.0, float(dec)),
                   float(np.hypot(width / 2, height / 2)), size=(float(width), float(height)))

    @classmethod
    def polygon(cls, ras: Any, decs: Any) -> Region:
        ras, decs = np.asarray(ras, float), np.asarray(decs, float)
        if ras.size < 3:
            raise ADQLError("a polygon needs at least 3 vertices")
        for a, d in zip(ras, decs, strict=True):
            _check_pos(a, d)
        v = unit_vectors(ras, decs).sum(axis=0)
        norm = np.linalg.norm(v)
        if norm < 1e-9:
            raise ADQLError("polygon vertices must lie within one hemisphere")
        v /= norm
        cra = float(np.degrees(np.arctan2(v[1], v[0])) % 360.0)
        cdec = float(np.degrees(np.arcsin(np.clip(v[2], -1, 1))))
        r = float(np.max(angular_distance_deg(cra, cdec, ras, decs)))
        if r >= 90:
            raise ADQLError("polygon vertices must lie within one hemisphere")
        return cls("polygon", (cra, cdec), r,
                   vertices=tuple((float(a) % 360.0, float(d)) for a, d in zip(ras, decs,
                                                                               strict=True)))

    @classmethod
    def range(cls, ra1: float, ra2: float, dec1: float, dec2: float) -> Region:
        """An RA/Dec range (SIA2 ``RANGE``); its parallels are densified into a polygon."""
        if not (-90 <= dec1 <= dec2 <= 90):
            raise ADQLError(f"RANGE needs -90 <= dec1 <= dec2 <= 90, got {dec1} {dec2}")
        span = (ra2 - ra1) % 360.0 or (360.0 if ra2 != ra1 else 0.0)
        if span >= 180 or dec2 - dec1 >= 90:
            raise ADQLError("RANGE is limited to less than 180 deg in RA and 90 deg in Dec")
        ras = ra1 + span * np.linspace(0, 1, 16)
        return cls.polygon(np.r_[ras, ras[::-1]], np.r_[np.full(16, dec1), np.full(16, dec2)])

    def plane(self) -> shapely.Geometry:
        """The region in the tangent plane about :attr:`center` (deg; exact for circles)."""
        ra0, dec0 = self.center
        if self.kind == "circle":
            return shapely.Point(0, 0).buffer(float(np.degrees(np.tan(np.radians(self.radius)))),
                                              quad_segs=32)
        if self.kind == "box":
            w, h = self.size
            return shapely.box(-w / 2, -h / 2, w / 2, h / 2)
        ras, decs = zip(*self.vertices, strict=True)
        x, y, _ = gnomonic(ras, decs, ra0, dec0)
        return shapely.Polygon(np.column_stack([x, y])).buffer(0)

    def contains(self, ra: Any, dec: Any) -> np.ndarray:
        """Exact test of points (boolean array)."""
        ra, dec = np.asarray(ra, float), np.asarray(dec, float)
        if self.kind == "circle":
            return angular_distance_deg(self.center[0], self.center[1], ra, dec) <= self.radius
        x, y, front = gnomonic(ra, dec, *self.center)
        return front & shapely.intersects_xy(self.plane(), x, y)

    def footprint_test(self, corners_ra: np.ndarray, corners_dec: np.ndarray,
                       intersect: str = "OVERLAPS") -> np.ndarray:
        """Which quadrilaterals (``(n, 4)`` corner arrays) overlap / cover / lie in the region."""
        n = corners_ra.shape[0]
        if n == 0:
            return np.zeros(0, bool)
        x, y, front = gnomonic(corners_ra, corners_dec, *self.center)
        ok = front.all(axis=1)
        polys = shapely.polygons(np.stack([np.where(ok[:, None], x, 0),
                                           np.where(ok[:, None], y, 0)], axis=-1))
        polys = shapely.make_valid(polys)
        reg = self.plane()
        if intersect == "COVERS":
            hit = shapely.covers(polys, reg)
        elif intersect == "ENCLOSED":
            hit = shapely.covers(reg, polys)
        elif intersect == "CENTER":
            hit = shapely.covers(polys, shapely.Point(0, 0))
        else:
            hit = shapely.intersects(polys, reg)
        return np.asarray(hit, bool) & ok


def _check_pos(ra: float, dec: float) -> None:
    if not (np.isfinite(ra) and np.isfinite(dec) and -90 <= dec <= 90):
        raise ADQLError(f"invalid position ({ra}, {dec}): dec must be in [-90, 90]")


# =========================================================================== tables


@dataclass
class ColumnDef:
    """A column of a queryable table: its SQL expression and its VO metadata."""

    name: str
    sql: ColumnElement | None
    datatype: str  # long, int, short, double, char, boolean
    unit: str = ""
    ucd: str = ""
    description: str = ""
    principal: bool = True
    derive: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None  # output-only
    needs: tuple[str, ...] = ()


@dataclass
class TableDef:
    """A table clients may query (ADQL name, columns, base SQL and positional support)."""

    name: str
    description: str
    columns: dict[str, ColumnDef]
    base: Any
    kind: str  # objects, images, schema
    fixed: list[Any] = field(default_factory=list)
    image_tbl: str | None = None
    irsa_dbms: int = 0
    irsa_pos: str = "n"
    engine: Engine | None = None  # TAP_SCHEMA lives in memory
    spatial: bool = True


_O = LightCurveObject.__table__.c
_FILTERCODE_OBJ = case({1: "zg", 2: "zr", 3: "zi"}, value=_O.fid, else_=None)

_OBJECT_COLUMNS: list[tuple[str, Any, str, str, str, str]] = [
    ("oid", _O.oid, "long", "", "meta.id;meta.main", "object id"),
    ("ra", _O.ra, "double", "deg", "pos.eq.ra;meta.main", "right ascension (J2000)"),
    ("dec", _O.dec, "double", "deg", "pos.eq.dec;meta.main", "declination (J2000)"),
    ("field", _O.field, "int", "", "meta.id", "ZTF field"),
    ("ccdid", _O.ccdid, "int", "", "meta.id", "CCD number (1..16)"),
    ("qid", _O.qid, "int", "", "meta.id", "CCD quadrant (1..4)"),
    ("rcid", _O.rcid, "int", "", "meta.id", "readout channel (0..63)"),
    ("fid", _O.fid, "int", "", "instr.filter", "filter id (1 g, 2 r, 3 i)"),
    ("filtercode", _FILTERCODE_OBJ, "char", "", "instr.filter", "filter code (zg, zr, zi)"),
    ("nobs", _O.nobs, "int", "", "meta.number", "number of epochs"),
    ("ngoodobs", _O.ngoodobs, "int", "", "meta.number", "number of good epochs"),
    ("refmag", _O.refmag, "double", "mag", "phot.mag", "magnitude on the reference image"),
    ("medianmag", _O.medianmag, "double", "mag", "phot.mag;stat.median", "median magnitude"),
    ("meanmag", _O.meanmag, "double", "mag", "phot.mag;stat.mean", "mean magnitude"),
    ("magrms", _O.magrms, "double", "mag", "stat.stdev;phot.mag", "RMS of magnitudes"),
    ("chisq", _O.chisq, "double", "", "stat.fit.chi2", "reduced chi-square about the mean"),
    ("stetsonj", _O.stetsonj, "double", "", "stat", "Stetson J variability index"),
    ("vonneumannratio", _O.vonneumannratio, "double", "", "stat", "von Neumann ratio"),
    ("matchid", _O.matchid, "int", "", "meta.id", "source id in the matchfile"),
    ("period", _O.period, "double", "d", "time.period", "best period (zsds)"),
    ("periodpower", _O.periodpower, "double", "", "stat", "periodogram power (zsds)"),
    ("amplitude", _O.amplitude, "double", "mag", "src.var.amplitude", "amplitude (zsds)"),
    ("mjdmin", _O.mjdmin, "double", "d", "time.start", "first epoch (MJD)"),
    ("mjdmax", _O.mjdmax, "double", "d", "time.end", "last epoch (MJD)"),
]

#: The ``ztf_objects`` columns, in output order.
OBJECT_COLUMNS: tuple[str, ...] = tuple(c[0] for c in _OBJECT_COLUMNS)

_OBJECTS_RE = re.compile(r"(?:ztf\.)?ztf_objects(?:_dr(\d+))?")


def objects_table(name: str) -> TableDef:
    """The ``ztf_objects_dr<N>`` table (any N, all served from ``lc_objects``)."""
    cols = {n: ColumnDef(n, sql, t, u, ucd, d, principal=i < 18)
            for i, (n, sql, t, u, ucd, d) in enumerate(_OBJECT_COLUMNS)}
    return TableDef(name, "ZTF light-curve objects (one per field, CCD quadrant and filter)",
                    cols, LightCurveObject.__table__, "objects", irsa_dbms=21, irsa_pos="y")


_I = ArchiveImage.__table__.c


def _iso(jd: np.ndarray) -> np.ndarray:
    """Julian dates as IRSA ``obsdate`` strings (``YYYY-MM-DD HH:MM:SS.SSS+00``)."""
    jd = np.asarray(jd, float)
    out = np.full(jd.shape, None, object)
    ok = np.isfinite(jd)
    if ok.any():
        iso = Time(jd[ok], format="jd", scale="utc").iso
        out[ok] = np.char.add(np.asarray(iso, str), "+00")
    return out


_IMG = {
    "ra": ("double", "deg", "pos.eq.ra;meta.main", "image centre right ascension"),
    "dec": ("double", "deg", "pos.eq.dec;meta.main", "image centre declination"),
    "infobits": ("long", "", "meta.code", "processing flags (0: good)"),
    "field": ("int", "", "meta.id", "ZTF field"),
    "ccdid": ("int", "", "meta.id", "CCD number (1..16)"),
    "qid": ("int", "", "meta.id", "CCD quadrant (1..4)"),
    "rcid": ("int", "", "meta.id", "readout channel (0..63)"),
    "fid": ("int", "", "instr.filter", "filter id (1 g, 2 r, 3 i)"),
    "filtercode": ("char", "", "instr.filter", "filter code (zg, zr, zi)"),
    "pid": ("long", "", "meta.id", "processed-image id"),
    "nid": ("int", "", "meta.id", "night id (days since 2017-01-01)"),
    "expid": ("long", "", "meta.id", "exposure id"),
    "imgtypecode": ("char", "", "meta.code", "image type (o: science)"),
    "obsjd": ("double", "d", "time.start", "exposure start (JD)"),
    "exptime": ("double", "s", "time.duration;obs.exposure", "exposure time"),
    "filefracday": ("long", "", "meta.id", "YYYYMMDDdddddd"),
    "seeing": ("double", "arcsec", "instr.obsty.seeing", "seeing FWHM"),
    "airmass": ("double", "", "obs.airMass", "airmass"),
    "moonillf": ("double", "", "obs.param", "Moon illuminated fraction"),
    "telra": ("double", "deg", "pos.eq.ra;instr.tel", "telescope pointing right ascension"),
    "teldec": ("double", "deg", "pos.eq.dec;instr.tel", "telescope pointing declination"),
    "maglimit": ("double", "mag", "phot.mag;stat.max", "5-sigma limiting magnitude"),
    "magzp": ("double", "mag", "phot.mag;arith.zp", "photometric zero point"),
    "rfid": ("long", "", "meta.id", "reference-image id"),
    "nframes": ("int", "", "meta.number", "number of input frames"),
    "caltype": ("char", "", "meta.code", "calibration type (bias, hifreqflat)"),
    "nightdate": ("int", "", "time", "night (YYYYMMDD)"),
    "ipac_gid": ("int", "", "meta.id", "program group id"),
    "meta_id": ("long", "", "meta.id", "row id"),
    **{f"crpix{i}": ("double", "pix", "pos.wcs.crpix", f"WCS reference pixel {i}")
       for i in (1, 2)},
    **{f"crval{i}": ("double", "deg", "pos.wcs.crval", f"WCS reference value {i}")
       for i in (1, 2)},
    **{f"cd{i}{j}": ("double", "deg/pix", "pos.wcs.cdmatrix", f"WCS CD matrix {i}{j}")
       for i in (1, 2) for j in (1, 2)},
    **{f"ra{i}": ("double", "deg", "pos.eq.ra", f"corner {i} right ascension")
       for i in (1, 2, 3, 4)},
    **{f"dec{i}": ("double", "deg", "pos.eq.dec", f"corner {i} declination")
       for i in (1, 2, 3, 4)},
}
_SQL_ALIAS = {"ipac_gid": _I.programid, "meta_id": _I.id}
_WCS = ["crpix1", "crpix2", "crval1", "crval2", "cd11", "cd12", "cd21", "cd22"]
_CORNERS = ["ra1", "dec1", "ra2", "dec2", "ra3", "dec3", "ra4", "dec4"]
_IMAGE_LAYOUT = {
    "sci": ["ra", "dec", "infobits", "field", "ccdid", "qid", "rcid", "fid", "filtercode", "pid",
            "nid", "expid", "imgtypecode", "obsdate", "obsjd", "exptime", "filefracday",
            "seeing", "airmass", "moonillf", "maglimit", "magzp", *_WCS, *_CORNERS, "ipac_gid",
            "meta_id"],
    "raw": ["infobits", "field", "ccdid", "fid", "filtercode", "nid", "expid", "imgtypecode",
            "filefracday", "obsdate", "obsjd", "exptime", "seeing", "airmass", "moonillf",
            "telra", "teldec", "ra", "dec", "ipac_gid", "meta_id"],
    "ref": ["infobits", "field", "ccdid", "qid", "rcid", "fid", "filtercode", "rfid", "nframes",
            "maglimit", "startobsdate", "endobsdate", *_WCS, "ra", "dec", *_CORNERS,
            "ipac_gid", "meta_id"],
    "cal": ["caltype", "ccdid", "qid", "rcid", "fid", "filtercode", "nightdate",
            "startobsdate", "endobsdate", "nid", "nframes", "ra", "dec", "meta_id"],
}
_IMAGE_DESC = {"sci": "ZTF science image (CCD quadrant) metadata",
               "raw": "ZTF raw CCD image metadata",
               "ref": "ZTF reference image metadata",
               "cal": "ZTF calibration image (bias, high-frequency flat) metadata"}
_IMAGES_RE = re.compile(r"(?:ztf\.)?ztf_current_meta_(sci|raw|ref|cal)")


def images_table(tbl: str) -> TableDef:
    """``ztf.ztf_current_meta_<tbl>``: the ``archive_images`` rows of one IBE table."""
    cols: dict[str, ColumnDef] = {}
    for name in _IMAGE_LAYOUT[tbl]:
        if name == "obsdate":
            cols[name] = ColumnDef(name, None, "char", "", "time.start", "exposure start (UTC)",
                                   derive=lambda d: _iso(d["obsjd"]), needs=("obsjd",))
        elif name == "startobsdate":
            cols[name] = ColumnDef(name, None, "char", "", "time.start", "first input (UTC)",
                                   derive=lambda d: _iso(d["obsjd"]), needs=("obsjd",))
        elif name == "endobsdate":
            cols[name] = ColumnDef(name, None, "char", "", "time.end", "last input (UTC)",
                                   derive=lambda d: _iso(d["endjd"]), needs=("endjd",))
        else:
            t, u, ucd, d = _IMG[name]
            cols[name] = ColumnDef(name, _SQL_ALIAS[name] if name in _SQL_ALIAS else _I[name],
                                   t, u, ucd, d)
    # Hidden helpers of the derived columns.
    for name in ("obsjd", "endjd"):
        if name not in cols:
            cols[name] = ColumnDef(name, _I[name], "double", "d", "time", name, principal=False)
    return TableDef(f"ztf.ztf_current_meta_{tbl}", _IMAGE_DESC[tbl], cols, ArchiveImage.__table__,
                    "images", fixed=[_I.tbl == tbl], image_tbl=tbl, irsa_dbms=0, irsa_pos="y")


# --------------------------------------------------------------------------- TAP_SCHEMA

_TS_META = MetaData()
_TS_SCHEMAS = SATable("tap_schema_schemas", _TS_META,
                      SAColumn("schema_name", String), SAColumn("utype", String),
                      SAColumn("description", Text))
_TS_TABLES = SATable("tap_schema_tables", _TS_META,
                     SAColumn("schema_name", String), SAColumn("table_name", String),
                     SAColumn("table_type", String), SAColumn("utype", String),
                     SAColumn("description", Text), SAColumn("table_index", Integer),
                     SAColumn("irsa_dbms", Integer), SAColumn("irsa_pos", String))
_TS_COLUMNS = SATable("tap_schema_columns", _TS_META,
                      SAColumn("table_name", String), SAColumn("column_name", String),
                      SAColumn("utype", String), SAColumn("ucd", String),
                      SAColumn("unit", String), SAColumn("description", Text),
                      SAColumn("datatype", String), SAColumn("arraysize", String),
                      SAColumn("xtype", String), SAColumn("size", Integer),
                      SAColumn("principal", Integer), SAColumn("indexed", Integer),
                      SAColumn("std", Integer), SAColumn("column_index", Integer))
_TS_KEYS = SATable("tap_schema_keys", _TS_META,
                   SAColumn("key_id", String), SAColumn("from_table", String),
                   SAColumn("target_table", String), SAColumn("utype", String),
                   SAColumn("description", Text))
_TS_KEY_COLUMNS = SATable("tap_schema_key_columns", _TS_META,
                          SAColumn("key_id", String), SAColumn("from_column", String),
                          SAColumn("target_column", String))
_TS = {"schemas": _TS_SCHEMAS, "tables": _TS_TABLES, "columns": _TS_COLUMNS, "keys": _TS_KEYS,
       "key_columns": _TS_KEY_COLUMNS}
_TS_TYPES = {"String": "char", "Text": "char", "Integer": "int"}
_TS_CACHE: dict[tuple[str, ...], Engine] = {}


def _schema_table(part: str, engine: Engine) -> TableDef:
    sat = _TS[part]
    cols = {c.name: ColumnDef(c.name, c, _TS_TYPES[type(c.type).__name__]) for c in sat.columns}
    return TableDef(f"TAP_SCHEMA.{part}", f"TAP_SCHEMA.{part}: service metadata", cols, sat,
                    "schema", engine=engine, spatial=False)


class Catalog:
    """The tables a TAP service serves, and their ``TAP_SCHEMA`` (an in-memory SQLite).

    Parameters
    ----------
    object_tables : sequence of str
        Names of the object tables listed in ``TAP_SCHEMA`` (any ``ztf_objects_dr<N>`` can be
        queried regardless).
    """

    def __init__(self, object_tables: tuple[str, ...] = ("ztf_objects_dr23",)):
        self.object_tables = tuple(object_tables)
        self.listed = [objects_table(n) for n in self.object_tables] + [
            images_table(t) for t in ("sci", "ref", "raw", "cal")]
        key = self.object_tables
        if key not in _TS_CACHE:
            _TS_CACHE[key] = self._build_schema()
        self.schema_engine = _TS_CACHE[key]

    def all_tables(self) -> list[TableDef]:
        """Every listed table, ``TAP_SCHEMA`` ones included (for VOSI tables)."""
        return self.listed + [_schema_table(p, self.schema_engine) for p in _TS]

    def _build_schema(self) -> Engine:
        eng = create_engine("sqlite://", poolclass=StaticPool,
                            connect_args={"check_same_thread": False})
        _TS_META.create_all(eng)
        tables: list[dict[str, Any]] = []
        columns: list[dict[str, Any]] = []
        defs = self.listed + [_schema_table(p, eng) for p in _TS]
        for i, t in enumerate(defs):
            schema = t.name.split(".")[0] if "." in t.name else "public"
            tables.append(dict(schema_name=schema, table_name=t.name, table_type="table",
                               utype=None, description=t.description, table_index=i,
                               irsa_dbms=t.irsa_dbms, irsa_pos=t.irsa_pos))
            for j, c in enumerate(c for c in t.columns.values() if c.principal or c.derive
                                  or t.kind != "images"):
                columns.append(dict(
                    table_name=t.name, column_name=c.name, utype=None, ucd=c.ucd or None,
                    unit=c.unit or None, description=c.description or None,
                    datatype=_VO_TYPES[c.datatype], arraysize="*" if c.datatype == "char"
                    else None, xtype=None, size=None, principal=int(c.principal),
                    indexed=int(c.name in ("oid", "ra", "dec", "field", "obsjd")),
                    std=0, column_index=j))
        with eng.begin() as conn:
            conn.execute(_TS_SCHEMAS.insert(), [
                dict(schema_name="public", utype=None, description="ZTF catalogs"),
                dict(schema_name="ztf", utype=None, description="ZTF image metadata"),
                dict(schema_name="TAP_SCHEMA", utype=None, description="TAP metadata")])
            conn.execute(_TS_TABLES.insert(), tables)
            conn.execute(_TS_COLUMNS.insert(), columns)
        return eng

    def resolve(self, name: str) -> TableDef:
        """The table an ADQL ``FROM`` names (case-insensitive).

        Raises
        ------
        ADQLError
            For a table that is not served.
        """
        low = name.lower()
        if _OBJECTS_RE.fullmatch(low):
            return objects_table(low.removeprefix("ztf."))
        m = _IMAGES_RE.fullmatch(low)
        if m:
            return images_table(m.group(1))
        if low.startswith("tap_schema.") and low.split(".", 1)[1] in _TS:
            return _schema_table(low.split(".", 1)[1], self.schema_engine)
        names = ", ".join(t.name for t in self.listed)
        raise ADQLError(f"unknown table {name!r}; tables: {names}, TAP_SCHEMA.tables, "
                        "TAP_SCHEMA.columns")


_VO_TYPES = {"long": "long", "int": "int", "short": "short", "double": "double",
             "char": "char", "boolean": "boolean"}


# =========================================================================== translation


@dataclass
class Spatial:
    """A geometric ``WHERE`` term: points of the table inside ``region`` (``point`` mode) or
    image footprints against it (``footprint`` mode with an IBE intersect keyword)."""

    region: Region
    mode: str = "point"
    intersect: str = "OVERLAPS"


@dataclass
class Plan:
    """A translated query: the SQL plus what is done in Python after fetching."""

    sql: Any
    table: TableDef
    outputs: list[tuple[str, ColumnDef | None]]  # output name and source column (if a column)
    spatial: list[Spatial]
    limit: int | None
    offset: int
    engine_override: Engine | None


def _const(node: Any, what: str) -> float:
    """A numeric constant expression (literals and arithmetic)."""
    if isinstance(node, Literal) and not isinstance(node.value, str):
        return float(node.value)
    if isinstance(node, Neg):
        return -_const(node.expr, what)
    if isinstance(node, BinOp) and node.op in "+-*/":
        a, b = _const(node.left, what), _const(node.right, what)
        if node.op == "/" and b == 0:
            raise ADQLError(f"division by zero in {what}")
        return {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else 0.0}[node.op]
    raise ADQLError(f"{what} must be numeric constants")


def _radius(r: float, what: str) -> float:
    """A cone radius of the query: at least 0.01 arcsec (below, the HEALPix cover fails)."""
    try:
        return check_cone_radius(r, what)
    except LimitError as exc:
        raise ADQLError(str(exc)) from None


def _coord_args(func: Func, n: int | None) -> list[Any]:
    args = list(func.args)
    if args and isinstance(args[0], Literal) and isinstance(args[0].value, str):
        frame = args[0].value.strip().upper()
        if frame not in ("ICRS", "J2000", "FK5", "", "GEOCENTER", "ICRS GEOCENTER"):
            raise ADQLError(f"{func.name.upper()}: only ICRS coordinates are supported, "
                            f"got {args[0].value!r}")
        args = args[1:]
    if n is not None and len(args) != n:
        raise ADQLError(f"{func.name.upper()} takes {n} coordinates, got {len(args)}")
    return args


def _region(node: Any) -> Region:
    if not isinstance(node, Func) or node.name not in ("circle", "box", "polygon"):
        raise ADQLError("expected CIRCLE, BOX or POLYGON as a region")
    what = f"{node.name.upper()} arguments"
    if node.name == "circle":
        ra, dec, r = (_const(a, what) for a in _coord_args(node, 3))
        return Region.circle(ra, dec, _radius(r, "CIRCLE radius"))
    if node.name == "box":
        return Region.box(*(_const(a, what) for a in _coord_args(node, 4)))
    vals = [_const(a, what) for a in _coord_args(node, None)]
    if len(vals) % 2:
        raise ADQLError("POLYGON needs an even number of coordinates")
    return Region.polygon(vals[0::2], vals[1::2])


class _Translator:
    def __init__(self, table: TableDef, alias: str | None):
        self.t = table
        self.qualifiers = {table.name.lower(), table.name.lower().split(".")[-1]}
        if alias:
            self.qualifiers.add(alias)

    def column(self, ref: ColumnRef) -> ColumnDef:
        if ref.qualifier is not None and ref.qualifier.lower() not in self.qualifiers:
            raise ADQLError(f"unknown table qualifier {ref.qualifier!r} in "
                            f"{ref.qualifier}.{ref.name}")
        col = self.t.columns.get(ref.name.lower())
        if col is None:
            raise ADQLError(f"unknown column {ref.name!r} in {self.t.name}; columns: "
                            + ", ".join(c for c, d in self.t.columns.items() if d.principal))
        return col

    def sql_column(self, ref: ColumnRef) -> ColumnElement:
        col = self.column(ref)
        if col.sql is None:
            raise ADQLError(f"column {col.name!r} can only be selected, not used in "
                            "conditions or ORDER BY")
        return col.sql

    def value(self, node: Any) -> ColumnElement:
        if isinstance(node, Literal):
            return bindparam(None, node.value, unique=True)
        if isinstance(node, ColumnRef):
            return self.sql_column(node)
        if isinstance(node, Neg):
            return -self.value(node.expr)
        if isinstance(node, BinOp):
            a, b = self.value(node.left), self.value(node.right)
            if node.op == "||":
                return a.concat(b)
            return {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[node.op]
        if isinstance(node, Func):
            if node.name in _GEOMETRY:
                raise ADQLError(f"{node.name.upper()} is only supported in a top-level "
                                "CONTAINS/INTERSECTS(...) = 1 or DISTANCE(...) < r condition")
            raise ADQLError(f"function {node.name.upper()} is not supported")
        if isinstance(node, Star):
            raise ADQLError("* is only allowed in the select list")
        raise ADQLError(f"unsupported expression {node!r}")

    def condition(self, node: Any) -> ColumnElement:
        if isinstance(node, And):
            return and_(*(self.condition(i) for i in node.items))
        if isinstance(node, Or):
            return or_(*(self.condition(i) for i in node.items))
        if isinstance(node, Not):
            return not_(self.condition(node.item))
        if isinstance(node, Compare):
            if _is_geometry(node.left) or _is_geometry(node.right):
                raise ADQLError("geometric conditions (CONTAINS, INTERSECTS, DISTANCE) are "
                                "only supported as top-level AND terms of WHERE")
            a, b = self.value(node.left), self.value(node.right)
            return {"=": a == b, "<>": a != b, "<": a < b, "<=": a <= b, ">": a > b,
                    ">=": a >= b}[node.op]
        if isinstance(node, Between):
            c = self.value(node.expr).between(self.value(node.lo), self.value(node.hi))
            return not_(c) if node.negated else c
        if isinstance(node, InList):
            e = self.value(node.expr)
            c = e.in_([self.value(i) for i in node.items])
            return not_(c) if node.negated else c
        if isinstance(node, Like):
            c = self.value(node.expr).like(self.value(node.pattern))
            return not_(c) if node.negated else c
        if isinstance(node, IsNull):
            e = self.value(node.expr)
            return e.is_not(None) if node.negated else e.is_(None)
        raise ADQLError("expected a condition in WHERE")

    # -- geometry
    def is_position(self, x: Any, y: Any) -> bool:
        if not (isinstance(x, ColumnRef) and isinstance(y, ColumnRef)):
            return False
        return self.column(x).name == "ra" and self.column(y).name == "dec"

    def spatial(self, node: Any) -> Spatial | None:
        """A :class:`Spatial` for a geometric top-level term, else None."""
        if not isinstance(node, Compare):
            return None
        left, right, op = node.left, node.right, node.op
        if _is_geometry(right) and not _is_geometry(left):
            left, right = right, left
            op = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(op, op)
        if not isinstance(left, Func) or left.name not in _GEOMETRY:
            return None
        if left.name == "distance":
            if op not in ("<", "<="):
                raise ADQLError("DISTANCE(...) is only supported as DISTANCE(...) < r")
            r = _radius(_const(right, "the DISTANCE bound"), "the DISTANCE bound")
            a, b = left.args if len(left.args) == 2 else (None, None)
            pts = [p for p in (a, b) if isinstance(p, Func) and p.name == "point"]
            if len(pts) != 2:
                raise ADQLError("DISTANCE needs two POINTs")
            col = [p for p in pts if self.is_position(*_coord_args(p, 2))]
            lit = [p for p in pts if p not in col]
            if len(col) != 1 or len(lit) != 1:
                raise ADQLError("DISTANCE needs POINT('ICRS', ra, dec) of the table and a "
                                "constant POINT")
            ra0, dec0 = (_const(v, "POINT arguments") for v in _coord_args(lit[0], 2))
            return self._checked(Spatial(Region.circle(ra0, dec0, r)))
        if left.name not in ("contains", "intersects") or op != "=":
            raise ADQLError(f"{left.name.upper()} is only supported as "
                            "CONTAINS(...) = 1 or INTERSECTS(...) = 1")
        if _const(right, "the CONTAINS/INTERSECTS value") != 1:
            raise ADQLError(f"only {left.name.upper()}(...) = 1 is supported")
        if len(left.args) != 2:
            raise ADQLError(f"{left.name.upper()} takes two geometries")
        a, b = left.args
        if isinstance(a, Func) and a.name == "point":
            xy = _coord_args(a, 2)
            if self.is_position(*xy):
                return self._checked(Spatial(_region(b)))
            if self._is_poly(b):
                ra0, dec0 = (_const(v, "POINT arguments") for v in xy)
                return self._checked(Spatial(Region.circle(ra0, dec0, 0.0), "footprint",
                                             "CENTER"))
            raise ADQLError("CONTAINS(POINT(...), ...) needs the table's ra, dec columns in "
                            "the POINT or the poly column as the region")
        if self._is_poly(b):
            return self._checked(Spatial(_region(a), "footprint",
                                         "ENCLOSED" if left.name == "contains" else "OVERLAPS"))
        if self._is_poly(a):
            return self._checked(Spatial(_region(b), "footprint",
                                         "COVERS" if left.name == "contains" else "OVERLAPS"))
        raise ADQLError(f"unsupported {left.name.upper()} arguments: use "
                        "CONTAINS(POINT('ICRS', ra, dec), CIRCLE|BOX|POLYGON(...)) = 1")

    def _is_poly(self, node: Any) -> bool:
        if isinstance(node, ColumnRef) and node.name.lower() in ("poly", "s_region"):
            if self.t.kind != "images":
                raise ADQLError(f"{self.t.name} has no footprint column {node.name!r}")
            return True
        return False

    def _checked(self, sp: Spatial) -> Spatial:
        if not self.t.spatial:
            raise ADQLError(f"{self.t.name} has no position columns")
        return sp


def _is_geometry(node: Any) -> bool:
    return isinstance(node, Func) and node.name in _GEOMETRY


def _conjuncts(node: Any) -> list[Any]:
    if node is None:
        return []
    if isinstance(node, And):
        return [c for i in node.items for c in _conjuncts(i)]
    return [node]


def translate(query: Query, catalog: Catalog, engine: Engine, *, limit: int | None,
              anonymous: bool = True) -> Plan:
    """SQL and post-processing of a parsed query.

    Parameters
    ----------
    query : Query
    catalog : Catalog
    engine : Engine
        The archive database (image footprints are looked up there during translation).
    limit : int, optional
        Rows to return at most (TOP and MAXREC already combined by the caller).
    anonymous : bool
        Hide restricted images (login needed for them).
    """
    t = catalog.resolve(query.table)
    tr = _Translator(t, query.alias)
    outputs: list[tuple[str, ColumnDef | None]] = []
    exprs: list[ColumnElement] = []
    used: set[str] = set()

    def add(name: str, col: ColumnDef | None, expr: ColumnElement | None) -> None:
        base, k = name, 2
        while name.lower() in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name.lower())
        outputs.append((name, col))
        if expr is not None:
            exprs.append(expr.label(f"c{len(outputs) - 1}"))

    for i, item in enumerate(query.items):
        if isinstance(item.expr, Star):
            if item.expr.qualifier and item.expr.qualifier not in tr.qualifiers:
                raise ADQLError(f"unknown table qualifier {item.expr.qualifier!r}")
            for c in t.columns.values():
                if c.principal or t.kind != "images":
                    add(c.name, c, c.sql)
        elif isinstance(item.expr, ColumnRef):
            c = tr.column(item.expr)
            add(item.alias or c.name, c, c.sql)
        elif isinstance(item.expr, Func) and item.expr.name in ("count", "min", "max", "avg",
                                                                  "sum"):
            raise ADQLError("aggregate functions (COUNT, MIN, MAX, AVG, SUM) are not supported")
        else:
            add(item.alias or f"col{i + 1}", None, tr.value(item.expr))
    # Columns the derived outputs need, fetched under hidden labels.
    hidden: dict[str, ColumnElement] = {}
    for _, c in outputs:
        for n in (c.needs if c is not None else ()):
            hidden[n] = t.columns[n].sql
    spatial: list[Spatial] = []
    conds = list(t.fixed)
    if anonymous and t.kind == "images":
        conds.append(_I.restricted.is_(False))
    for term in _conjuncts(query.where):
        sp = tr.spatial(term)
        if sp is None:
            conds.append(tr.condition(term))
        else:
            spatial.append(sp)
    if len(spatial) > MAX_GEOMETRY_TERMS:
        raise ADQLError(f"more than {MAX_GEOMETRY_TERMS} geometric conditions")
    for k, sp in enumerate(spatial):
        if sp.mode == "point":
            ra0, dec0 = sp.region.center
            if t.kind == "objects" and k == 0:
                # The cover is a prefilter (the exact test follows), so a degenerate region
                # (a zero-size BOX) may take the smallest cone the HEALPix cover supports.
                ranges = cone_ranges(ra0, dec0, max(sp.region.radius, MIN_CONE_RADIUS_DEG))
                conds.append(or_(*(_O.healpix29.between(literal(int(lo)), literal(int(hi)))
                                   for lo, hi in ranges)))
            else:
                r = sp.region.radius
                conds.append(t.columns["dec"].sql.between(
                    bindparam(None, dec0 - r, unique=True), bindparam(None, dec0 + r,
                                                                      unique=True)))
            hidden["_ra"], hidden["_dec"] = t.columns["ra"].sql, t.columns["dec"].sql
        else:
            ids = _footprint_ids(engine, t, sp)
            conds.append(_I.id.in_(bindparam(None, ids, unique=True, expanding=True)))
    cols = exprs + [e.label(f"h_{n}") for n, e in hidden.items()]
    if not cols:
        raise ADQLError("nothing selected")
    stmt = select(*cols).select_from(t.base)
    if conds:
        stmt = stmt.where(*conds)
    if query.distinct:
        stmt = stmt.distinct()
    for o in query.order:
        stmt = stmt.order_by(_order_expr(o, query, outputs, exprs, tr))
    post = any(sp.mode == "point" for sp in spatial)
    offset = query.offset or 0
    if not post:
        if limit is not None:
            stmt = stmt.limit(limit + 1)
        if offset:
            stmt = stmt.offset(offset)
    return Plan(stmt, t, outputs, spatial, limit, offset, t.engine)


def _order_expr(o: OrderItem, query: Query, outputs: list[tuple[str, ColumnDef | None]],
                exprs: list[ColumnElement], tr: _Translator) -> ColumnElement:
    e = o.expr
    if isinstance(e, Literal) and isinstance(e.value, int):
        if not 1 <= e.value <= len(exprs):
            raise ADQLError(f"ORDER BY position {e.value} is out of range")
        sql = exprs[e.value - 1]
    elif isinstance(e, ColumnRef) and e.qualifier is None and any(
            it.alias and it.alias.lower() == e.name.lower() for it in query.items):
        idx = [n.lower() for n, _ in outputs].index(e.name.lower())
        sql = exprs[idx]
    else:
        sql = tr.value(e)
    return sql.desc() if o.desc else sql.asc()


def _footprint_ids(engine: Engine, t: TableDef, sp: Spatial) -> list[int]:
    """Ids of the images whose footprint matches (``images_at`` prefilter, exact shapely test)."""
    df = footprint_candidates(engine, t.image_tbl or "sci", sp.region, sp.intersect)
    if df.empty:
        return []
    return [int(i) for i in df["id"]]


def footprint_candidates(engine: Engine, tbl: str, region: Region, intersect: str = "OVERLAPS",
                         **kwargs: Any) -> Any:
    """Rows of ``archive_images`` (a DataFrame) whose footprint overlaps / covers / lies in a
    region: :func:`zsds.archive.index.images_at` on the enclosing box, then the exact test.

    ``kwargs`` go to ``images_at`` (``where``, ``params``).
    """
    from zsds.archive.index import images_at

    ra0, dec0 = region.center
    box = 2 * region.radius
    df = images_at(engine, tbl, ra0, dec0, width=max(box, 0.0),
                   intersect="OVERLAPS" if intersect != "CENTER" else "CENTER", **kwargs)
    if df.empty or intersect == "CENTER":
        return df
    cra = df[["ra1", "ra2", "ra3", "ra4"]].to_numpy(float)
    cdec = df[["dec1", "dec2", "dec3", "dec4"]].to_numpy(float)
    keep = region.footprint_test(cra, cdec, intersect)
    return df[keep].reset_index(drop=True)


# =========================================================================== execution


@dataclass
class Result:
    """The output of a query: the table and whether MAXREC cut it short."""

    table: Table
    overflow: bool


def to_column(name: str, values: list[Any] | np.ndarray, col: ColumnDef | None) -> Column:
    """An astropy column of ``values`` typed as ``col`` says (NULL/NaN masked or NaN)."""
    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if arr.dtype == object:
        mask = np.asarray(pd.isna(arr), bool).reshape(arr.shape)
    elif arr.dtype.kind == "f":
        mask = np.isnan(arr)
    else:
        mask = np.zeros(arr.shape, bool)
    dtype = col.datatype if col is not None else None
    if dtype is None:
        sample = next((v for v, m in zip(arr, mask, strict=True) if not m), None)
        dtype = ("long" if isinstance(sample, int | np.integer) and not isinstance(sample, bool)
                 else "double" if isinstance(sample, float | np.floating)
                 else "char" if sample is not None else "double")
    if dtype in ("long", "int", "short"):
        data: np.ndarray = np.where(mask, 0, arr).astype(
            {"long": np.int64, "int": np.int32, "short": np.int16}[dtype])
    elif dtype == "double":
        data, mask = np.where(mask, np.nan, arr).astype(np.float64), np.zeros(arr.shape, bool)
    elif dtype == "boolean":
        data = np.where(mask, False, arr).astype(bool)
    else:
        data = np.array(["" if m else str(v) for v, m in zip(arr, mask, strict=True)], dtype=str)
        if data.dtype.itemsize == 0:
            data = data.astype("U1")
    meta: dict[str, Any] = {}
    if col is not None:
        meta = {"unit": col.unit or None, "description": col.description or None}
    out: Column = (MaskedColumn(data, name=name, mask=mask, **meta) if mask.any()
                   else Column(data, name=name, **meta))
    if col is not None and col.ucd:
        out.meta["ucd"] = col.ucd
    return out


def execute(plan: Plan, engine: Engine, *, chunk: int = 5000) -> Result:
    """Run a :class:`Plan` and build the result table (exact geometric cut, TOP/MAXREC)."""
    eng = plan.engine_override or engine
    want = None if plan.limit is None else plan.limit + 1
    rows: list[Any] = []
    keys: list[str] = []
    skip = plan.offset if plan.spatial else 0
    with eng.connect() as conn:
        res = conn.execution_options(stream_results=True).execute(plan.sql)
        keys = list(res.keys())
        ki = {k: i for i, k in enumerate(keys)}
        for part in res.partitions(chunk):
            if plan.spatial:
                mask = np.ones(len(part), bool)
                for sp in plan.spatial:
                    if sp.mode == "point":
                        ra = np.fromiter((r[ki["h__ra"]] for r in part), float, len(part))
                        dec = np.fromiter((r[ki["h__dec"]] for r in part), float, len(part))
                        mask &= sp.region.contains(ra, dec)
                part = [r for r, m in zip(part, mask, strict=True) if m]
                if skip:
                    drop = min(skip, len(part))
                    part, skip = part[drop:], skip - drop
            rows.extend(part)
            if want is not None and len(rows) >= want:
                break
    overflow = want is not None and len(rows) >= want
    if want is not None:
        rows = rows[:plan.limit]
    cols_by_label = {k: [r[i] for r in rows] for k, i in ((k, ki[k]) for k in keys)}
    hidden = {k[2:]: np.array(v, dtype=object) for k, v in cols_by_label.items()
              if k.startswith("h_")}
    out = Table()
    for i, (name, col) in enumerate(plan.outputs):
        if col is not None and col.derive is not None:
            src = {n: np.array([np.nan if v is None else v for v in hidden[n]], float)
                   for n in col.needs}
            vals = col.derive(src) if rows else np.array([], dtype=object)
            out[name] = to_column(name, vals, col)
        else:
            out[name] = to_column(name, cols_by_label[f"c{i}"], col)
    return Result(out, overflow)


def iter_tables(catalog: Catalog) -> Iterator[TableDef]:
    """The tables of :meth:`Catalog.all_tables` (VOSI ``tables`` listing order)."""
    yield from catalog.all_tables()


def run(text: str, catalog: Catalog, engine: Engine, *, maxrec: int, hard_limit: int,
        anonymous: bool = True) -> Result:
    """Parse, translate and run an ADQL query.

    Parameters
    ----------
    text : str
        The ADQL.
    catalog : Catalog
    engine : Engine
        The archive database.
    maxrec : int
        Requested row limit (MAXREC; the service default when absent); rows beyond it are
        dropped and the result is flagged ``overflow``. ``TOP n`` lowers it silently.
    hard_limit : int
        The service's hard limit on MAXREC.
    anonymous : bool
        Hide restricted images.
    """
    q = parse(text)
    maxrec = max(0, min(int(maxrec), int(hard_limit)))
    top_limits = q.top is not None and q.top <= maxrec
    plan = translate(q, catalog, engine, limit=q.top if top_limits else maxrec, anonymous=anonymous)
    result = execute(plan, engine)
    if top_limits:
        result.overflow = False
    return result
