"""A safe translator of IRSA's IBE ``WHERE=`` fragment into SQL with bound parameters.

IBE accepts a restricted SQL condition (``ARCHIVE_API.md`` section 1.1): comparisons,
arithmetic, ``AND OR NOT IN BETWEEN LIKE IS NULL``, numeric and single-quoted string literals,
and the columns of the searched table. Nothing else is let through: the fragment is tokenized,
parsed by a small recursive-descent parser and re-emitted, so the output is always a
well-formed condition in which

* every identifier is a whitelisted column, replaced by a server-defined SQL expression;
* every literal is a bound parameter (``:w0``, ``:w1``, ...), never interpolated text;
* functions, subqueries, semicolons, comments, quoted identifiers and any other keyword are
  rejected with a :class:`WhereError` that names the offending token;
* integers beyond 64 bits and nesting (parentheses, NOT, signs) deeper than
  :data:`zsds.archive.limits.MAX_NESTING` are refused too, before the database or Python's
  stack would fail on them.

Grammar (case-insensitive keywords)::

    expr      := and_expr (OR and_expr)*
    and_expr  := not_expr (AND not_expr)*
    not_expr  := NOT not_expr | predicate
    predicate := sum [ cmp sum | [NOT] BETWEEN sum AND sum | [NOT] IN '(' sum (',' sum)* ')'
                     | [NOT] LIKE sum | IS [NOT] NULL ]
    sum       := product (('+' | '-') product)*
    product   := unary (('*' | '/') unary)*
    unary     := ('+' | '-') unary | NUMBER | STRING | column | '(' expr ')'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import TextClause, text

from zsds.archive.limits import MAX_NESTING, MAX_OPERATORS, LimitError, check_int64

#: Keywords of the fragment language; any other SQL keyword is an unknown column.
KEYWORDS = frozenset({"and", "or", "not", "in", "between", "like", "is", "null"})
#: SQL words that are named as such when rejected (they would otherwise be "unknown columns").
SQL_WORDS = frozenset({"select", "from", "union", "insert", "update", "delete", "drop",
                       "alter", "create", "exists", "case", "when", "then", "else", "end",
                       "join", "having", "group", "order", "limit", "offset", "into", "exec",
                       "attach", "pragma", "cast", "escape", "true", "false", "all", "any"})
COMPARISONS = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})
MAX_LENGTH = 4000

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|<>|!=|=|<|>|\+|-|\*|/|\(|\)|,)
    """,
    re.VERBOSE,
)


class WhereError(ValueError):
    """A WHERE fragment that is not allowed or not well formed."""


@dataclass(frozen=True)
class Token:
    """One lexical token: ``kind`` is ``string``, ``number``, ``ident``, ``keyword``, ``op``
    or ``end``; ``value`` is the source text (lower-cased for identifiers and keywords)."""

    kind: str
    value: str
    pos: int


def tokenize(fragment: str) -> list[Token]:
    """Split a WHERE fragment into tokens (a final ``end`` token included).

    Raises
    ------
    WhereError
        On a character that starts no token (``;``, ``"``, ``|`` ...), an unterminated
        string, a comment (``--``, ``/*``) or a number glued to a name (``1e``, ``2abc``).
    """
    tokens: list[Token] = []
    pos = 0
    while pos < len(fragment):
        if fragment.startswith("--", pos) or fragment.startswith("/*", pos):
            raise WhereError(f"comments are not allowed in WHERE: {fragment[pos:pos + 2]!r} "
                             f"at position {pos}")
        m = _TOKEN_RE.match(fragment, pos)
        if m is None:
            ch = fragment[pos]
            if ch == "'":
                raise WhereError(f"unterminated string starting at position {pos}")
            raise WhereError(f"character {ch!r} is not allowed in WHERE (position {pos})")
        kind = m.lastgroup or ""
        value = m.group()
        if kind == "number" and m.end() < len(fragment) and (
                fragment[m.end()].isalpha() or fragment[m.end()] == "_"):
            bad = re.match(r"[\w.]+", fragment[pos:])
            raise WhereError(f"malformed number {bad.group() if bad else value!r} in WHERE")
        if kind == "ident":
            value = value.lower()
            if value in KEYWORDS:
                kind = "keyword"
        if kind != "ws":
            tokens.append(Token(kind, value, pos))
        pos = m.end()
    tokens.append(Token("end", "", pos))
    return tokens


class _Parser:
    """Recursive-descent parser emitting SQL text and parameters."""

    def __init__(self, tokens: list[Token], columns: Mapping[str, str | None], prefix: str,
                 table: str):
        self.tokens = tokens
        self.i = 0
        self.columns = columns
        self.prefix = prefix
        self.table = table
        self.params: dict[str, Any] = {}
        self.depth = 0
        self.operators = 0

    # -- helpers -------------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _is(self, kind: str, *values: str) -> bool:
        return self.tok.kind == kind and (not values or self.tok.value in values)

    def _expect(self, kind: str, value: str) -> None:
        if not self._is(kind, value):
            raise WhereError(f"expected {value!r} but found {self._describe(self.tok)}")
        self.i += 1

    @staticmethod
    def _describe(tok: Token) -> str:
        return "the end of WHERE" if tok.kind == "end" else f"{tok.value!r} (position {tok.pos})"

    def _nest(self) -> None:
        """Count one more level of nesting (undone by ``self.depth -= 1``)."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise WhereError(f"WHERE is nested more than {MAX_NESTING} levels deep "
                             f"(position {self.tok.pos})")

    def _operator(self) -> None:
        """Count one more AND, OR or arithmetic operator."""
        self.operators += 1
        if self.operators > MAX_OPERATORS:
            raise WhereError(f"WHERE has more than {MAX_OPERATORS} operators")

    def _param(self, value: Any) -> str:
        name = f"{self.prefix}{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    # -- grammar -------------------------------------------------------------------------
    def parse(self) -> str:
        if self._is("end"):
            raise WhereError("empty WHERE condition")
        sql = self.expr()
        if not self._is("end"):
            raise WhereError(f"unexpected {self._describe(self.tok)} in WHERE")
        return sql

    def expr(self) -> str:
        parts = [self.and_expr()]
        while self._is("keyword", "or"):
            self.i += 1
            self._operator()
            parts.append(self.and_expr())
        return " OR ".join(parts)

    def and_expr(self) -> str:
        parts = [self.not_expr()]
        while self._is("keyword", "and"):
            self.i += 1
            self._operator()
            parts.append(self.not_expr())
        return " AND ".join(parts)

    def not_expr(self) -> str:
        if self._is("keyword", "not"):
            self.i += 1
            self._nest()
            inner = self.not_expr()
            self.depth -= 1
            return f"NOT {inner}"
        return self.predicate()

    def predicate(self) -> str:
        left = self.sum()
        if self._is("op") and self.tok.value in COMPARISONS:
            op = self._next().value
            return f"{left} {'<>' if op == '!=' else op} {self.sum()}"
        if self._is("keyword", "is"):
            self.i += 1
            neg = " NOT" if self._is("keyword", "not") else ""
            if neg:
                self.i += 1
            self._expect("keyword", "null")
            return f"{left} IS{neg} NULL"
        neg = ""
        if self._is("keyword", "not"):
            self.i += 1
            neg = "NOT "
            if not self._is("keyword", "between", "in", "like"):
                raise WhereError(f"expected BETWEEN, IN or LIKE after NOT but found "
                                 f"{self._describe(self.tok)}")
        if self._is("keyword", "between"):
            self.i += 1
            low = self.sum()
            self._expect("keyword", "and")
            return f"{left} {neg}BETWEEN {low} AND {self.sum()}"
        if self._is("keyword", "in"):
            self.i += 1
            self._expect("op", "(")
            items = [self.sum()]
            while self._is("op", ","):
                self.i += 1
                items.append(self.sum())
            self._expect("op", ")")
            return f"{left} {neg}IN ({', '.join(items)})"
        if self._is("keyword", "like"):
            self.i += 1
            return f"{left} {neg}LIKE {self.sum()}"
        return left

    def sum(self) -> str:
        out = self.product()
        while self._is("op", "+", "-"):
            op = self._next().value
            self._operator()
            out = f"{out} {op} {self.product()}"
        return out

    def product(self) -> str:
        out = self.unary()
        while self._is("op", "*", "/"):
            op = self._next().value
            self._operator()
            out = f"{out} {op} {self.unary()}"
        return out

    def unary(self) -> str:
        tok = self._next()
        if tok.kind == "op" and tok.value in ("+", "-"):
            self._nest()
            inner = self.unary()
            self.depth -= 1
            return f"{tok.value}{inner}"
        if tok.kind == "number":
            num: int | float = (int(tok.value) if re.fullmatch(r"\d+", tok.value)
                                else float(tok.value))
            if isinstance(num, int):
                try:
                    check_int64(num, "WHERE")
                except LimitError as exc:
                    raise WhereError(f"{exc} (position {tok.pos})") from None
            return self._param(num)
        if tok.kind == "string":
            return self._param(tok.value[1:-1].replace("''", "'"))
        if tok.kind == "op" and tok.value == "(":
            self._nest()
            inner = self.expr()
            self._expect("op", ")")
            self.depth -= 1
            return f"({inner})"
        if tok.kind == "ident":
            if self._is("op", "("):
                raise WhereError(f"functions are not allowed in WHERE: {tok.value!r}")
            return self.column(tok)
        if tok.kind == "keyword" and tok.value == "null":
            raise WhereError("NULL is only allowed in 'IS [NOT] NULL'")
        raise WhereError(f"unexpected {self._describe(tok)} in WHERE")

    def column(self, tok: Token) -> str:
        if tok.value in SQL_WORDS and tok.value not in self.columns:
            raise WhereError(f"SQL keyword {tok.value.upper()!r} is not allowed in WHERE "
                             "(only AND OR NOT IN BETWEEN LIKE IS NULL)")
        if tok.value not in self.columns:
            where = f" of table {self.table!r}" if self.table else ""
            raise WhereError(f"unknown column {tok.value!r}{where} in WHERE (allowed: "
                             f"{', '.join(sorted(k for k, v in self.columns.items() if v))})")
        expr = self.columns[tok.value]
        if not expr:
            raise WhereError(f"column {tok.value!r} is not searchable in this archive "
                             "(it has no stored value)")
        return f"({expr})"


def translate_where(fragment: str, columns: Mapping[str, str | None], *, prefix: str = "w",
                    table: str = "") -> tuple[str, dict[str, Any]]:
    """Translate an IBE ``WHERE`` fragment into an SQL condition and its bound parameters.

    Parameters
    ----------
    fragment : str
        The fragment as the client sent it (already URL-decoded), e.g.
        ``fid=2 AND obsjd>2458150.5``.
    columns : mapping
        Whitelist: lower-case IRSA column name to the SQL expression it stands for (a trusted,
        server-defined string), or ``None`` for a known column that cannot be searched.
    prefix : str
        Prefix of the parameter names (``w`` gives ``:w0``, ``:w1`` ...).
    table : str
        Table name used in error messages.

    Returns
    -------
    sql : str
        The condition, e.g. ``(fid) = :w0 AND (obsjd) > :w1``.
    params : dict
        Values of the parameters, e.g. ``{"w0": 2, "w1": 2458150.5}``.

    Raises
    ------
    WhereError
        On anything outside the grammar, naming the offending token.
    """
    if len(fragment) > MAX_LENGTH:
        raise WhereError(f"WHERE is longer than {MAX_LENGTH} characters")
    lower = {k.lower(): v for k, v in columns.items()}
    parser = _Parser(tokenize(fragment), lower, prefix, table)
    sql = parser.parse()
    return sql, parser.params


def where_clause(fragment: str, columns: Mapping[str, str | None], **kwargs: Any
                 ) -> TextClause:
    """:func:`translate_where` as a SQLAlchemy ``text()`` clause with the parameters bound."""
    sql, params = translate_where(fragment, columns, **kwargs)
    return text(sql).bindparams(**params)
