"""Positional search of light-curve objects: HEALPix order-29 ranges on a B-tree.

Every row of ``lc_objects`` carries ``healpix29``, the HEALPix nested order-29 index of its
position (the ``_healpix_29`` column of HATS catalogues). Nested indices are hierarchical: the
order-29 descendants of a cell ``p`` at depth ``d`` are the contiguous range
``[p << 2(29-d), (p+1) << 2(29-d))``. A cone is therefore covered by a handful of coarse cells,
i.e. a handful of integer ranges, which any B-tree answers with one descent each. The SQL is a
plain ``healpix29 BETWEEN lo AND hi OR ...`` with bound parameters, the same on SQLite and
PostgreSQL (no q3c or pg_sphere), and the exact angular-distance cut is done afterwards in
numpy on the few candidate rows.

Loading is an idempotent upsert keyed by ``oid`` (``INSERT ... ON CONFLICT (oid) DO
UPDATE``); :func:`bulk_load_objects` streams large tables through PostgreSQL ``COPY``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import astropy.units as u
import cdshealpix.nested
import numpy as np
import pandas as pd
from astropy.coordinates import Latitude, Longitude
from sqlalchemy import (
    Connection,
    Engine,
    Index,
    bindparam,
    column,
    delete,
    null,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite

from zsds.core.sphere import angular_distance_deg
from zsds.db.schema import LightCurveObject, MatchfileRecord, utcnow
from zsds.lightcurves.model import TRANSIENT_MATCHID0

#: HEALPix order of the ``healpix29`` column (the deepest order that fits in an int64).
ORDER = 29

#: Mean cell size at depth 0, in degrees: ``sqrt(4 pi / 12)`` rad.
_PIX0_DEG = float(np.degrees(np.sqrt(4.0 * np.pi / 12.0)))

_TABLE = LightCurveObject.__table__

#: Columns of ``lc_objects`` in table order.
OBJECT_COLUMNS: tuple[str, ...] = tuple(c.name for c in _TABLE.columns)

#: Columns a ``where`` filter may name (every numeric column; the only names that reach SQL).
FILTER_COLUMNS: frozenset[str] = frozenset(OBJECT_COLUMNS) - {"matchfile"}

_INT_COLUMNS = frozenset({"oid", "field", "rcid", "ccdid", "qid", "fid", "matchid", "kind",
                          "healpix29", "nobs", "ngoodobs"})
_NULLABLE = frozenset(c.name for c in _TABLE.columns if c.nullable)
_REQUIRED = ("oid", "ra", "dec")
#: Range of the 16/32-bit integer columns (checked before the data reach a database).
_INT_BOUNDS = {c: ((-(2**15), 2**15 - 1) if c == "kind" else (-(2**31), 2**31 - 1))
               for c in _INT_COLUMNS - {"oid", "healpix29"}}

#: Rows per executemany / COPY batch (bounds the Python objects alive at once).
CHUNK_ROWS = 100_000


# --------------------------------------------------------------------------- HEALPix


def healpix29(ra: Any, dec: Any) -> np.ndarray:
    """HEALPix nested order-29 index of positions (HATS ``_healpix_29``).

    Computed exactly as ``hats.pixel_math.healpix_shim.radec2pix(29, ra, dec)`` does
    (:func:`cdshealpix.nested.lonlat_to_healpix`), so the values match HATS catalogues.

    Parameters
    ----------
    ra, dec : float or array_like
        ICRS coordinates in degrees (``ra`` wraps modulo 360; ``|dec| <= 90``).

    Returns
    -------
    numpy.ndarray of int64
        The indices, with the broadcast shape of the inputs.
    """
    ra_a, dec_a = np.broadcast_arrays(np.asarray(ra, np.float64), np.asarray(dec, np.float64))
    if not (np.all(np.isfinite(ra_a)) and np.all(np.isfinite(dec_a))):
        raise ValueError("ra and dec must be finite")
    pix = cdshealpix.nested.lonlat_to_healpix(
        Longitude(ra_a.ravel(), unit=u.deg), Latitude(dec_a.ravel(), unit=u.deg), ORDER)
    return pix.astype(np.int64).reshape(ra_a.shape)


def auto_depth(radius_deg: float) -> int:
    """Coarse HEALPix depth for a cone: cells about half as large as the radius.

    There a cone touches ~10-20 cells that merge into ~5 (at most ~10) index ranges covering
    2-3.5 times the cone's area. One depth coarser reads twice as many rows for the same
    answer (which shows from ~1000 rows up); finer ones add ranges and SQL for little gain.
    """
    if radius_deg <= 0:
        return ORDER
    return int(np.clip(np.floor(np.log2(_PIX0_DEG / radius_deg)) + 1, 0, ORDER))


def cone_ranges(ra: float, dec: float, radius_deg: float, depth: int | None = None
                ) -> np.ndarray:
    """Order-29 index ranges that cover a cone.

    Parameters
    ----------
    ra, dec : float
        Centre (deg).
    radius_deg : float
        Radius (deg), ``0 <= radius_deg < 180``.
    depth : int, optional
        HEALPix depth of the covering cells; default :func:`auto_depth` of the radius.

    Returns
    -------
    numpy.ndarray of int64, shape (n, 2)
        Sorted, disjoint, non-adjacent inclusive ranges ``[lo, hi]``. Every order-29 cell that
        overlaps the cone lies in one of them (the cover may hold a little more).
    """
    if not (np.isfinite(ra) and np.isfinite(dec) and np.isfinite(radius_deg)):
        raise ValueError("ra, dec and radius must be finite")
    if not 0 <= radius_deg < 180:
        raise ValueError(f"radius_deg must be in [0, 180), got {radius_deg}")
    d = auto_depth(radius_deg) if depth is None else int(depth)
    if not 0 <= d <= ORDER:
        raise ValueError(f"depth must be in [0, {ORDER}], got {depth}")
    ipix, _, _ = cdshealpix.nested.cone_search(
        Longitude(float(ra), unit=u.deg), Latitude(float(dec), unit=u.deg),
        float(radius_deg) * u.deg, d, flat=True)
    cells = np.unique(ipix.astype(np.int64))
    # Runs of consecutive cells at depth d are one contiguous order-29 range.
    cut = np.flatnonzero(np.diff(cells) != 1) + 1
    first = cells[np.r_[0, cut]]
    last = cells[np.r_[cut - 1, cells.size - 1]]
    shift = 2 * (ORDER - d)
    return np.column_stack([first << shift, ((last + 1) << shift) - 1])


# --------------------------------------------------------------------------- loading


def _columns(rows: Any) -> dict[str, np.ndarray]:
    """Table columns of ``rows`` as numpy arrays, completed and de-duplicated by oid.

    Missing identifiers are decoded from ``oid`` (:func:`zsds.lightcurves.ids.oid` layout),
    ``kind`` from ``matchid`` (transients start at ``TRANSIENT_MATCHID0``), ``healpix29`` from
    the position; missing metrics are NULL. Integer columns come out int64, the others
    float64 with NaN for NULL (nullable integers too), ``matchfile`` object with ``None``.
    Of rows sharing an oid the last wins (what a row-by-row upsert would leave; one
    ``INSERT ... ON CONFLICT`` statement refuses to touch a row twice).
    """
    if isinstance(rows, pd.DataFrame):
        names, get = list(rows.columns), (lambda c: _series_values(rows[c]))
    elif isinstance(rows, np.ndarray) and rows.dtype.names:
        names, get = list(rows.dtype.names), (lambda c: rows[c])
    elif isinstance(rows, Mapping):
        names, get = list(rows), (lambda c: np.asarray(rows[c]))
    else:
        raise TypeError("rows must be a pandas DataFrame, a structured ndarray or a mapping")
    missing = [c for c in _REQUIRED if c not in names]
    if missing:
        raise ValueError(f"rows lack required column(s) {missing}")
    cols = {c: np.asarray(get(c)) for c in OBJECT_COLUMNS if c in names}
    oid = cols["oid"].astype(np.int64)
    n = oid.size
    for c, v in {"field": oid // 10**12, "fid": (oid // 10**11) % 10,
                 "ccdid": (oid // 10**9) % 100, "qid": (oid // 10**8) % 10,
                 "matchid": oid % 10**8}.items():
        cols.setdefault(c, v)
    cols.setdefault("rcid", 4 * (np.asarray(cols["ccdid"], np.int64) - 1)
                    + np.asarray(cols["qid"], np.int64) - 1)
    cols.setdefault("kind", (np.asarray(cols["matchid"]) >= TRANSIENT_MATCHID0).astype(np.int64))
    if "healpix29" not in cols:
        cols["healpix29"] = healpix29(cols["ra"], cols["dec"])
    out: dict[str, np.ndarray] = {}
    for c in OBJECT_COLUMNS:
        v = cols.get(c)
        if v is None:
            out[c] = (np.full(n, None, object) if c == "matchfile"
                      else np.full(n, np.nan))
            continue
        if v.shape != (n,):
            raise ValueError(f"column {c!r} has shape {v.shape}, expected ({n},)")
        if c == "matchfile":
            v = v.astype(object)
            v[pd.isna(v)] = None
        elif c in _NULLABLE:
            v = v.astype(np.float64)
        elif v.dtype.kind in "iub" and c in _INT_COLUMNS:
            v = v.astype(np.int64)
        else:
            v = v.astype(np.float64)
            if not np.all(np.isfinite(v)):
                raise ValueError(f"column {c!r} must be finite (it is NOT NULL)")
            if c in _INT_COLUMNS:
                v = v.astype(np.int64)
        if c in _INT_BOUNDS:
            lo, hi = _INT_BOUNDS[c]
            ok = (v >= lo) & (v <= hi) if v.dtype.kind == "i" else ~(v < lo) & ~(v > hi)
            if not ok.all():
                raise ValueError(f"column {c!r} out of range [{lo}, {hi}]")
        out[c] = v
    _, last = np.unique(oid[::-1], return_index=True)
    if last.size != n:
        keep = np.sort(n - 1 - last)
        out = {c: v[keep] for c, v in out.items()}
    return out


def _series_values(s: pd.Series) -> np.ndarray:
    """A DataFrame column as numpy; nullable extension types (``Int64``...) with NaN for NA."""
    if s.name == "matchfile":
        return s.to_numpy(dtype=object)
    if isinstance(s.dtype, pd.api.extensions.ExtensionDtype) and s.dtype.kind in "iufb":
        return s.to_numpy(dtype=np.float64, na_value=np.nan) if s.hasnans else s.to_numpy(
            dtype=np.int64 if s.dtype.kind in "iub" else np.float64)
    return s.to_numpy()


def _all_null(v: np.ndarray) -> bool:
    """Whether a normalised column is NULL on every row."""
    if v.dtype == object:
        return bool(pd.isna(v).all())
    return v.dtype.kind == "f" and bool(np.isnan(v).all())


def _upsert_stmt(dialect_name: str, source: Any = None) -> Any:
    """``INSERT INTO lc_objects ... ON CONFLICT (oid) DO UPDATE SET <every other column>``.

    The update is skipped where no column changes (``IS DISTINCT FROM`` on PostgreSQL, ``IS
    NOT`` on SQLite, both NULL-safe), so re-running a load writes nothing: an update costs a
    new row version and an entry in every index.
    """
    mod = postgresql if dialect_name == "postgresql" else sqlite
    stmt = mod.insert(_TABLE)
    if source is not None:
        stmt = stmt.from_select(list(OBJECT_COLUMNS), source)
    others = [c for c in OBJECT_COLUMNS if c != "oid"]
    return stmt.on_conflict_do_update(
        index_elements=["oid"],
        set_={c: stmt.excluded[c] for c in others},
        where=or_(*(_TABLE.c[c].is_distinct_from(stmt.excluded[c]) for c in others)))


def _secondary_indexes() -> list[Index]:
    return sorted(_TABLE.indexes, key=lambda i: str(i.name))


def _is_empty(conn: Connection) -> bool:
    return conn.execute(select(_TABLE.c.oid).limit(1)).first() is None


# SQLite ------------------------------------------------------------------------------------


def _sqlite_upsert(conn: Connection, cols: dict[str, np.ndarray], chunk_rows: int) -> None:
    """Upsert by ``executemany`` of positional tuples, in ``oid`` (rowid) order.

    Binding ``None`` goes through the sqlite3 module's adapter lookup and is several times
    slower than a number, so NULLs avoid it: NULL floats are bound as NaN (which SQLite
    stores as NULL), rows without a ``matchfile`` go in a second batch whose statement has a
    literal NULL there, and so does any column NULL on every row. Rows in rowid order append
    to the table B-tree instead of splitting pages all over it.
    """
    has_path = ~pd.isna(cols["matchfile"])
    for part in (has_path, ~has_path):
        rows = np.flatnonzero(part)
        if rows.size:
            rows = rows[np.argsort(cols["oid"][rows], kind="stable")]
            _sqlite_executemany(conn, cols, rows, chunk_rows)


def _sqlite_executemany(conn: Connection, cols: dict[str, np.ndarray], rows: np.ndarray,
                        chunk_rows: int) -> None:
    """Upsert ``rows`` (indices into ``cols``, in that order) by ``executemany``."""
    params = [c for c in OBJECT_COLUMNS if not _all_null(cols[c][rows])]
    stmt = _upsert_stmt("sqlite").values(
        {c: (bindparam(c) if c in params else null()) for c in OBJECT_COLUMNS})
    compiled = stmt.compile(dialect=conn.dialect)
    order = tuple(compiled.positiontup or ())
    if sorted(order) != sorted(params):
        raise RuntimeError(f"unexpected upsert parameters {order}")
    for i in range(0, rows.size, chunk_rows):
        take = rows[i:i + chunk_rows]
        lists = [cols[c][take].tolist() for c in order]
        conn.exec_driver_sql(compiled.string, list(zip(*lists, strict=True)))


# PostgreSQL --------------------------------------------------------------------------------

#: Binary COPY wire type (big-endian) of every column but ``matchfile`` (text).
_PG_WIRE = {c: ">i8" if c in ("oid", "healpix29") else ">i2" if c == "kind"
            else ">i4" if c in _INT_COLUMNS else ">f8"
            for c in OBJECT_COLUMNS if c != "matchfile"}
_PG_LOAD = "_zsds_lc_load"
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_COPY_TRAILER = b"\xff\xff"


class _CopyEncoder:
    """Rows of normalised columns as PostgreSQL binary ``COPY`` tuples, without a Python loop.

    A chunk is first laid out as fixed-width records (field count, then a length and a
    big-endian value per column, ``matchfile`` padded to the longest path); the bytes of NULL
    values and of the padding are then dropped with one boolean mask over the byte matrix
    (row-major, so what remains is the stream of variable-length tuples), and the lengths of
    NULL fields are -1. Several times faster than ``Copy.write_row`` on Python tuples.
    """

    def __init__(self, cols: dict[str, np.ndarray], order: np.ndarray):
        self.cols, self.order = cols, order
        self.codes, uniq = pd.factorize(cols["matchfile"], use_na_sentinel=True)  # NULL: -1
        paths = [str(p).encode() for p in uniq]
        width = max([1, *map(len, paths)])
        self.paths = np.array([*paths, b""], dtype=f"S{width}")  # code -1 -> b""
        self.path_len = np.array([*map(len, paths), 0], np.int64)
        fields: list[tuple[str, Any]] = [("_n", ">i2")]
        for k, c in enumerate(OBJECT_COLUMNS):
            fields += [(f"_l{k}", ">i4"), (c, f"S{width}" if c == "matchfile" else _PG_WIRE[c])]
        self.dtype = np.dtype(fields)

    def block(self, i: int, j: int) -> bytes:
        """Tuples of rows ``order[i:j]``."""
        take = self.order[i:j]
        rec = np.zeros(j - i, self.dtype)
        keep = np.ones((j - i, self.dtype.itemsize), bool)
        rec["_n"] = len(OBJECT_COLUMNS)
        for k, c in enumerate(OBJECT_COLUMNS):
            off, size = self.dtype.fields[c][1], self.dtype[c].itemsize
            if c == "matchfile":
                code = self.codes[take]
                n = self.path_len[code]
                rec[c] = self.paths[code]
                rec[f"_l{k}"] = np.where(code < 0, -1, n)
                keep[:, off:off + size] = np.arange(size) < n[:, None]
                continue
            v = self.cols[c][take]
            if v.dtype.kind == "f" and c in _NULLABLE:
                null = np.isnan(v)
                rec[c] = np.where(null, 0, v)
                rec[f"_l{k}"] = np.where(null, -1, size)
                keep[null, off:off + size] = False
            else:
                rec[c] = v
                rec[f"_l{k}"] = size
        return rec.view(np.uint8).reshape(j - i, -1)[keep].tobytes()


def _pg_copy(conn: Connection, target: str, cols: dict[str, np.ndarray], chunk_rows: int
             ) -> None:
    """Stream the rows into ``target`` (a table with the columns of ``lc_objects``).

    In ``healpix29`` order: the rows come out clustered by position in the heap (a cone
    then reads few pages) and the order-29 index is built from nearly sorted input.
    """
    enc = _CopyEncoder(cols, np.argsort(cols["healpix29"], kind="stable"))
    n = cols["oid"].size
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(
            f"COPY {target} ({', '.join(OBJECT_COLUMNS)}) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.write(_COPY_SIGNATURE)
        for i in range(0, n, chunk_rows):
            copy.write(enc.block(i, min(n, i + chunk_rows)))
        copy.write(_COPY_TRAILER)


def _pg_upsert(conn: Connection, cols: dict[str, np.ndarray], chunk_rows: int) -> None:
    """Upsert through binary ``COPY`` into a temporary table, then one INSERT ... SELECT."""
    conn.exec_driver_sql(f"CREATE TEMP TABLE {_PG_LOAD} (LIKE lc_objects) ON COMMIT DROP")
    _pg_copy(conn, _PG_LOAD, cols, chunk_rows)
    src = table(_PG_LOAD, *(column(c) for c in OBJECT_COLUMNS))
    conn.execute(_upsert_stmt("postgresql", select(*(src.c[c] for c in OBJECT_COLUMNS))))


def _upsert(conn: Connection, cols: dict[str, np.ndarray], chunk_rows: int) -> None:
    if conn.dialect.name == "postgresql":
        _pg_upsert(conn, cols, chunk_rows)
    else:
        _sqlite_upsert(conn, cols, chunk_rows)


def upsert_objects(engine: Engine, rows: Any, *, chunk_rows: int = CHUNK_ROWS) -> int:
    """Insert or update light-curve objects by ``oid`` (idempotent), in one transaction.

    SQLite: ``INSERT ... ON CONFLICT(oid) DO UPDATE`` by ``executemany``. PostgreSQL: the
    rows are streamed with binary ``COPY`` into a temporary table and moved with one
    ``INSERT ... SELECT ... ON CONFLICT (oid) DO UPDATE`` (row-by-row ``executemany`` there
    manages ~15k rows/s, COPY several times that).

    Parameters
    ----------
    engine : Engine
        SQLite or PostgreSQL, schema v5 or later.
    rows : pandas.DataFrame, structured numpy.ndarray or mapping of arrays
        Needs ``oid``, ``ra``, ``dec``; any other ``lc_objects`` column is used when present
        (extra columns, e.g. the rest of a matchfile ``sources`` table, are ignored). Missing
        ``field``/``fid``/``ccdid``/``qid``/``rcid``/``matchid`` are decoded from ``oid``,
        ``kind`` from ``matchid``, ``healpix29`` from the position; missing metrics and NaN
        are NULL. Every column of an existing row is overwritten; of duplicate oids in
        ``rows`` the last wins.
    chunk_rows : int
        Rows converted or sent at a time (bounds memory).

    Returns
    -------
    int
        Number of distinct oids written.
    """
    cols = _columns(rows)
    n = int(cols["oid"].size)
    if n:
        with engine.begin() as conn:
            _upsert(conn, cols, chunk_rows)
    return n


def bulk_load_objects(engine: Engine, rows: Any, *, chunk_rows: int = 200_000,
                      rebuild_indexes: bool | None = None, analyze: bool = True) -> int:
    """Upsert a large table of objects (millions of rows); same result as :func:`upsert_objects`.

    On top of :func:`upsert_objects`: into an empty table, PostgreSQL gets the rows by binary
    ``COPY`` straight into ``lc_objects`` (no temporary table, no ``ON CONFLICT`` probe; the
    rows are de-duplicated here and the table is locked against other writers), in
    ``healpix29`` order so that the heap comes out clustered by position; SQLite gets them in
    ``oid`` (rowid) order with a 1 GiB page cache. The secondary indexes can be dropped
    before and rebuilt after (a sort instead of random B-tree inserts, about twice as fast),
    and the planner statistics are refreshed.

    Parameters
    ----------
    engine : Engine
    rows : pandas.DataFrame, structured numpy.ndarray or mapping of arrays
        As for :func:`upsert_objects`.
    chunk_rows : int
        Rows converted or sent at a time (bounds memory).
    rebuild_indexes : bool, optional
        Drop and re-create the secondary indexes; default: only when the table is empty
        (on PostgreSQL the dropped indexes block readers of the table until the commit).
    analyze : bool
        Run ``ANALYZE lc_objects`` afterwards.

    Returns
    -------
    int
        As :func:`upsert_objects`: the number of distinct oids written.
    """
    cols = _columns(rows)
    n = int(cols["oid"].size)
    if n == 0:
        return 0
    pg = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        if pg:
            # Other writers wait for the load (readers do not), so "empty" stays true.
            conn.exec_driver_sql("LOCK TABLE lc_objects IN SHARE ROW EXCLUSIVE MODE")
            conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '1GB'")
        else:
            cache = int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())
            conn.exec_driver_sql("PRAGMA cache_size = -1048576")
        try:
            empty = _is_empty(conn)
            rebuild = empty if rebuild_indexes is None else rebuild_indexes
            if rebuild:
                for idx in _secondary_indexes():
                    idx.drop(conn)
            if pg and empty:
                _pg_copy(conn, "lc_objects", cols, chunk_rows)
            else:
                _upsert(conn, cols, chunk_rows)
            if rebuild:
                for idx in _secondary_indexes():
                    idx.create(conn)
        finally:
            if not pg:
                conn.exec_driver_sql(f"PRAGMA cache_size = {cache}")
    if analyze:
        analyze_objects(engine)
    return n


def analyze_objects(engine: Engine) -> None:
    """Refresh the planner statistics of ``lc_objects`` (after a large load).

    On SQLite the index statistics are sampled (``PRAGMA analysis_limit``) so that this
    takes well under a second on any table size.
    """
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA analysis_limit = 1000")
        conn.exec_driver_sql("ANALYZE lc_objects")


def delete_objects(engine: Engine, field: int, rcid: int, fid: int) -> int:
    """Delete the objects of one field/CCD-quadrant/filter (before rebuilding it).

    Returns
    -------
    int
        Number of rows deleted.
    """
    stmt = delete(_TABLE).where(_TABLE.c.field == int(field), _TABLE.c.rcid == int(rcid),
                                _TABLE.c.fid == int(fid))
    with engine.begin() as conn:
        return int(conn.execute(stmt).rowcount)


def upsert_matchfile(engine: Engine, **cols: Any) -> int:
    """Insert or update the ``matchfiles`` row of one field/CCD-quadrant/filter.

    Parameters
    ----------
    engine : Engine
    **cols
        Columns of :class:`zsds.db.schema.MatchfileRecord`: ``field``, ``rcid``, ``ccdid``,
        ``qid``, ``fid``, ``path``, ``nexposures``, ``nsources``, ``ntransients``, ``npoints``,
        optional ``reference_pid``, ``qa`` (dict) and ``built_at`` (default now).

    Returns
    -------
    int
        The row's ``id`` (unchanged by an update).
    """
    tab = MatchfileRecord.__table__
    unknown = set(cols) - {c.name for c in tab.columns} - {"id"}
    if unknown or "id" in cols:
        raise ValueError(f"unknown matchfiles column(s) {sorted(unknown | ({'id'} & set(cols)))}")
    cols.setdefault("built_at", utcnow())
    mod = postgresql if engine.dialect.name == "postgresql" else sqlite
    stmt = mod.insert(tab).values(**cols)
    key = ("field", "rcid", "fid")
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key),
        set_={c: stmt.excluded[c] for c in cols if c not in key}).returning(tab.c.id)
    with engine.begin() as conn:
        return int(conn.execute(stmt).scalar_one())


# --------------------------------------------------------------------------- queries


def _frame(keys: list[str], rows: list[Any], extra: dict[str, np.ndarray] | None = None
           ) -> pd.DataFrame:
    """Rows as a DataFrame with the same dtypes on every backend (NULL floats are NaN).

    Built column by column from numpy arrays: one DataFrame construction instead of
    per-column ``astype`` calls, which cost milliseconds on a handful of rows.
    """
    values = list(zip(*rows, strict=True)) if rows else [()] * len(keys)
    data: dict[str, Any] = {}
    for c, v in zip(keys, values, strict=True):
        if c == "matchfile":
            data[c] = np.array(v, dtype=object)
        elif c in ("nobs", "ngoodobs"):
            data[c] = pd.array(v, dtype="Int64")
        elif c in _INT_COLUMNS:
            data[c] = np.array(v, dtype=np.int64)
        else:
            data[c] = np.array(v, dtype=np.float64)  # None -> NaN
    data.update(extra or {})
    return pd.DataFrame(data, copy=False)


def _native(x: Any) -> Any:
    """numpy scalars as Python ones (neither sqlite3 nor psycopg binds ``numpy.int64``)."""
    return x.item() if isinstance(x, np.generic) else x


def _where_clauses(where: Mapping[str, Any] | None) -> list[Any]:
    """SQL conditions of a ``where`` mapping; column names are checked against a whitelist."""
    out: list[Any] = []
    for name, bounds in (where or {}).items():
        if name not in FILTER_COLUMNS:
            raise ValueError(f"unknown filter column {name!r}; use one of "
                             f"{sorted(FILTER_COLUMNS)}")
        col = _TABLE.c[name]
        if isinstance(bounds, tuple | list):
            if len(bounds) != 2:
                raise ValueError(f"filter {name!r}: expected (min, max), got {bounds!r}")
            lo, hi = (_native(b) for b in bounds)
            if lo is not None:
                out.append(col >= lo)
            if hi is not None:
                out.append(col <= hi)
        elif bounds is not None:
            out.append(col == _native(bounds))
    return out


def cone_search(engine: Engine, ra: float, dec: float, radius_arcsec: float, *,
                fid: int | None = None, where: Mapping[str, Any] | None = None,
                limit: int | None = None) -> pd.DataFrame:
    """Light-curve objects within ``radius_arcsec`` of (``ra``, ``dec``), nearest first.

    Parameters
    ----------
    engine : Engine
    ra, dec : float
        Centre (deg, ICRS).
    radius_arcsec : float
        Radius (arcsec).
    fid : int, optional
        Only this filter (1 g, 2 r, 3 i).
    where : mapping, optional
        Metric filters ``{column: (min, max)}`` (inclusive, ``None`` for an open end) or
        ``{column: value}`` for equality, e.g. ``{"nobs": (30, None), "medianmag": (None,
        18.0)}``. Column names must be in :data:`FILTER_COLUMNS` (values are bound
        parameters); NULL never passes a bound.
    limit : int, optional
        Keep the ``limit`` nearest objects (applied after the exact distance cut).

    Returns
    -------
    pandas.DataFrame
        Every ``lc_objects`` column plus ``dist_arcsec``, sorted by distance.

    Raises
    ------
    ValueError
        For an unknown ``where`` column or an invalid position/radius.
    """
    radius_deg = float(radius_arcsec) / 3600.0
    ranges = cone_ranges(ra, dec, radius_deg)
    conds = [_TABLE.c.healpix29.between(int(lo), int(hi)) for lo, hi in ranges]
    stmt = select(_TABLE).where(or_(*conds))
    if fid is not None:
        stmt = stmt.where(_TABLE.c.fid == int(fid))
    clauses = _where_clauses(where)
    if clauses:
        stmt = stmt.where(*clauses)
    # One SELECT needs no transaction: autocommit saves the BEGIN/ROLLBACK round trips.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        res = conn.execute(stmt)
        keys = list(res.keys())
        rows = res.all()
    # Exact cut on the candidates of the covering cells, before building the frame.
    ira, idec = keys.index("ra"), keys.index("dec")
    cra = np.fromiter((r[ira] for r in rows), np.float64, len(rows))
    cdec = np.fromiter((r[idec] for r in rows), np.float64, len(rows))
    dist = angular_distance_deg(ra, dec, cra, cdec) * 3600.0
    inside = np.flatnonzero(dist <= radius_arcsec)
    inside = inside[np.argsort(dist[inside], kind="stable")]
    if limit is not None:
        inside = inside[:max(int(limit), 0)]
    return _frame(keys, [rows[i] for i in inside], {"dist_arcsec": dist[inside]})


def get_object(engine: Engine, oid: int) -> dict[str, Any] | None:
    """The ``lc_objects`` row of ``oid`` as a dict (NULL as ``None``), or ``None``."""
    with engine.connect() as conn:
        row = conn.execute(select(_TABLE).where(_TABLE.c.oid == int(oid))).mappings().first()
    return None if row is None else dict(row)


def count_objects(engine: Engine) -> int:
    """Number of rows of ``lc_objects``."""
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM lc_objects")).scalar_one())
