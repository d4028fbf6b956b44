"""Read and write IPAC matchfiles (PyTables HDF5), the on-disk form of a :class:`MatchSet`.

A matchfile holds the light curves of one field, CCD quadrant and filter.  The layout is that
of the real IPAC files (samples in ``tests/data/matchfiles``)::

    /matches                 group 'Matched Sources', attributes MATCH_ATTRS (+ extras)
    /matches/exposures       'List of Exposures'
    /matches/sources         'Field FFFFFF RC NN Matched Sources Table'
    /matches/sourcedata      'Field FFFFFF RC NN Matched Sources Data'
    /matches/transients      'Field FFFFFF RC NN Transients Table'
    /matches/transientdata   'Field FFFFFF RC NN Transients Data'
    /matches/features        zsds extension: matchid + one float32 column per feature

Our tables carry the zsds columns after the IPAC ones (see :mod:`zsds.lightcurves.model`), so
readers of the real files (Kowalski, ``pandas.read_hdf``) read ours unchanged, and
:func:`read_matchfile` reads both.
"""

from __future__ import annotations

import functools
import gc
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import pandas as pd
import tables

from zsds import __version__
from zsds.io.fitsio import current_config_hash
from zsds.lightcurves.model import (
    EXPOSURES_DTYPE,
    MATCH_ATTRS,
    SOURCEDATA_DTYPE,
    SOURCES_DTYPE,
    TRANSIENT_MATCHID0,
    TRANSIENTDATA_DTYPE,
    TRANSIENTS_DTYPE,
    MatchSet,
)

__all__ = [
    "FILTERCODES",
    "MATCHFILE_FILTERS",
    "matchfile_name",
    "read_lightcurve",
    "read_matchfile",
    "write_matchfile",
]

#: Filter codes of the IPAC file names, by ZTF filter id.
FILTERCODES = {1: "zg", 2: "zr", 3: "zi"}

#: Compression of the tables we write.  Blosc/LZ4 with byte shuffle: on 640k sourcedata rows it
#: writes ~5x faster than zlib-5 or blosc:zstd-5 (0.8 s vs 4-6 s CPU) for files only ~15 %
#: larger, and reads ~4x faster.  PyTables (hence pandas.read_hdf, Kowalski) reads it natively;
#: h5py needs ``hdf5plugin``.  The IPAC files are uncompressed and read the same way.
MATCHFILE_FILTERS = tables.Filters(complevel=5, complib="blosc:lz4", shuffle=True)

_GROUP = "matches"
_TABLE_DTYPES: dict[str, np.dtype] = {
    "exposures": EXPOSURES_DTYPE,
    "sources": SOURCES_DTYPE,
    "sourcedata": SOURCEDATA_DTYPE,
    "transients": TRANSIENTS_DTYPE,
    "transientdata": TRANSIENTDATA_DTYPE,
}
_DATA_TABLES = ("sourcedata", "transientdata")
_FEATURES = "features"
# Up to this many matchids are looked up one by one through the index; more are read as one
# matchid range and filtered (one pass instead of many small reads).
_MAX_POINT_QUERIES = 32


_P = ParamSpec("_P")
_R = TypeVar("_R")
_PYTABLES_LOCK = threading.RLock()


def _pytables_section(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``fn`` as the only PyTables user of the process, its garbage collected in-thread.

    PyTables is not thread-safe, and its nodes form reference cycles that the cyclic garbage
    collector frees. A collection triggered by another thread (Dask's event loop in a worker,
    a web server's thread pool) then runs ``Node.__del__`` there, closing nodes of a file this
    thread is writing; PyTables reports it as "a closed node found in the registry" and
    "trying to register a node with an existing key" (seen once in the demo's light-curve
    step). So: one PyTables section at a time, automatic collection paused during it, and the
    section's own garbage collected by the thread that made it before collection resumes.
    PyTables still finds closed index nodes (``_i_sourcedata/...``) of a file it reopens in
    its node cache and replaces them, warning "a closed node found in the registry" (seen in
    the wheel check's demo); the files round-trip intact (tests/lightcurves), so that warning
    is silenced inside the section, which no other thread enters.

    The collection at the end is of the two young generations only: with automatic collection
    paused, everything the section made is still in generation 0, and a full collection of a
    long-lived process (the archive server's heap) took 0.25 s, which made every light-curve
    request cost a quarter of a second.
    """

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with _PYTABLES_LOCK:
            enabled = gc.isenabled()
            gc.disable()
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "a closed node found in the registry",
                                            UserWarning)
                    return fn(*args, **kwargs)
            finally:
                gc.collect(1)
                if enabled:
                    gc.enable()

    return wrapper


def matchfile_name(field: int, filtercode: str, ccdid: int, qid: int) -> str:
    """IPAC matchfile name, ``ztf_<field:06d>_<fc>_c<CC:02d>_q<Q>_match.pytable``.

    Parameters
    ----------
    field : int
        ZTF field id.
    filtercode : str
        ``'zg'``, ``'zr'`` or ``'zi'``.
    ccdid : int
        CCD id (1..16).
    qid : int
        Quadrant id (1..4).

    Returns
    -------
    str
        E.g. ``matchfile_name(245, 'zr', 10, 1) == 'ztf_000245_zr_c10_q1_match.pytable'``.
    """
    if filtercode not in FILTERCODES.values():
        raise ValueError(f"filtercode must be one of {sorted(FILTERCODES.values())}, "
                         f"not {filtercode!r}")
    if not 1 <= ccdid <= 16 or not 1 <= qid <= 4:
        raise ValueError(f"ccdid {ccdid} / qid {qid} out of range (1..16 / 1..4)")
    return f"ztf_{field:06d}_{filtercode}_c{ccdid:02d}_q{qid}_match.pytable"


# --------------------------------------------------------------------------------------------
# writing


def _titles(fieldid: int, rcid: int) -> dict[str, str]:
    prefix = f"Field {fieldid:06d} RC {rcid:02d}"
    return {
        "exposures": "List of Exposures",
        "sources": f"{prefix} Matched Sources Table",
        "sourcedata": f"{prefix} Matched Sources Data",
        "transients": f"{prefix} Transients Table",
        "transientdata": f"{prefix} Transients Data",
    }


def _sorted_data(arr: np.ndarray) -> np.ndarray:
    """``arr`` sorted by (matchid, mjd), without copying when it already is."""
    if len(arr) < 2:
        return arr
    m = arr["matchid"].astype(np.int64)
    dm = np.diff(m)
    if np.all((dm > 0) | ((dm == 0) & (np.diff(arr["mjd"]) >= 0))):
        return arr
    return arr[np.lexsort((arr["mjd"], m))]


def _features_array(features: pd.DataFrame) -> np.ndarray:
    """The features DataFrame as a structured array (``matchid`` int32 + float32 columns)."""
    names = [str(c) for c in features.columns]
    bad = [n for n in names if not n.isidentifier() or n == "matchid"]
    if bad:
        raise ValueError(f"feature names must be Python identifiers other than 'matchid': {bad}")
    if len(set(names)) != len(names):
        raise ValueError("duplicate feature names")
    matchid = np.asarray(features.index, dtype=np.int64)
    if len(matchid) and (matchid.min() < np.iinfo(np.int32).min
                         or matchid.max() > np.iinfo(np.int32).max):
        raise ValueError("features index (matchid) does not fit in int32")
    arr = np.empty(len(features), np.dtype([("matchid", "<i4")] + [(n, "<f4") for n in names]))
    arr["matchid"] = matchid
    for name, col in zip(names, features.columns, strict=True):
        arr[name] = features[col].to_numpy(dtype=np.float32, na_value=np.nan)
    return arr


#: Attributes of ``/matches`` naming the software and configuration that wrote the file.
PROVENANCE_ATTRS = ("ZSDSVER", "CFGHASH")


def _write_attr_value(key: str, value: Any) -> Any:
    """Attribute value with the type IPAC uses for it (numpy scalar or str)."""
    kind = MATCH_ATTRS.get(key)
    if kind is None:
        return value
    if kind is str:
        return value.decode() if isinstance(value, bytes) else str(value)
    return kind(value)


def _write(f: tables.File, ms: MatchSet) -> None:
    group = f.create_group("/", _GROUP, "Matched Sources", filters=MATCHFILE_FILTERS)
    for key, value in ms.attrs.items():
        if key not in PROVENANCE_ATTRS:  # never carried over from a prior version of the file
            group._v_attrs[key] = _write_attr_value(key, value)
    # Provenance, as the FITS products' ZSDSVER and CFGHASH (zsds config show --hash).
    group._v_attrs["ZSDSVER"] = __version__
    if (cfg := current_config_hash()) is not None:
        group._v_attrs["CFGHASH"] = cfg
    titles = _titles(int(ms.attrs.get("fieldID", 0)), int(ms.attrs.get("rcID", 0)))
    for name, dtype in _TABLE_DTYPES.items():
        arr = _to_model(getattr(ms, name), dtype, f"MatchSet.{name}")
        if name in _DATA_TABLES:
            arr = _sorted_data(arr)
        table = f.create_table(group, name, description=dtype, title=titles[name],
                               expectedrows=max(len(arr), 1000))
        if name in _DATA_TABLES:
            # read_lightcurve's read_where('matchid == x') goes through this index.  Created
            # before the append so it is filled from the in-memory rows, not by reading the
            # compressed table back.
            table.cols.matchid.create_index(optlevel=6, kind="medium")
        table.append(arr)
    if ms.features is not None:
        arr = _features_array(ms.features)
        table = f.create_table(group, _FEATURES, description=arr.dtype,
                               title="zsds object features", expectedrows=max(len(arr), 1000))
        table.cols.matchid.create_index(optlevel=6, kind="medium")
        table.append(arr)


@_pytables_section
def write_matchfile(path: Path, ms: MatchSet) -> None:
    """Write ``ms`` as a matchfile with the layout of the real IPAC files (plus zsds columns).

    The file is written to a temporary file in the same directory and moved into place, so a
    reader never sees a partial file and a re-run simply replaces the previous one.

    Parameters
    ----------
    path : Path
        Output file; conventionally named by :func:`matchfile_name`.
    ms : MatchSet
        The light curves.  Tables are cast to the model dtypes (absent columns filled with NaN
        / 0); ``sourcedata`` and ``transientdata`` are written sorted by (matchid, mjd).
        Attributes of :data:`MATCH_ATTRS` get the IPAC types; extra attributes are written
        as given.  ``ms.features`` (if not None) becomes ``/matches/features``: ``matchid``
        (int32) and one float32 column per feature (names must be Python identifiers).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with tables.open_file(tmp, mode="w") as f:
            _write(f, ms)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; keep the usual data-file permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------
# reading


def _to_model(arr: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """``arr`` mapped onto the model ``dtype``: shared columns copied, absent ones filled with
    NaN (floats) or 0, columns unknown to the model dropped."""
    arr = np.asarray(arr)
    if arr.dtype == dtype:
        return arr
    if arr.dtype.names is None:
        raise ValueError(f"{what}: expected a structured array, got dtype {arr.dtype}")
    out = np.zeros(len(arr), dtype)  # 0 / b'' for absent integer and string columns
    have = set(arr.dtype.names)
    for name in dtype.names:
        if name in have:
            try:
                out[name] = arr[name]
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{what}: column {name!r} of dtype {arr.dtype[name]} does not "
                                 f"fit the model's {dtype[name]}: {exc}") from exc
        elif dtype[name].base.kind in "fc":
            out[name] = np.nan
    return out


def _attr_value(value: Any) -> Any:
    """PyTables attribute value as a plain Python/numpy value (``np.str_`` -> ``str``)."""
    if isinstance(value, np.str_):
        return str(value)
    if isinstance(value, np.bytes_):
        return bytes(value)
    return value


def _open(path: Path) -> tables.File:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such matchfile")
    try:
        if not tables.is_hdf5_file(path):
            raise ValueError(f"{path}: not a matchfile (not an HDF5 file)")
        return tables.open_file(path, mode="r")
    except (tables.HDF5ExtError, OSError) as exc:
        # HDF5 messages carry a long back trace; its last line says what failed.
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a readable matchfile ({last})") from exc


def _group(f: tables.File, path: Path) -> tables.Group:
    """The ``/matches`` group, checked to name the five tables (by name only: opening a
    PyTables table costs ~20 ms, so tables are opened, and type-checked, when used)."""
    try:
        group = f.get_node("/", _GROUP)
    except tables.NoSuchNodeError:
        raise ValueError(f"{path}: not a matchfile (no /{_GROUP} group)") from None
    if not isinstance(group, tables.Group):
        raise ValueError(f"{path}: not a matchfile (/{_GROUP} is not a group)")
    missing = [n for n in _TABLE_DTYPES if n not in group]
    if missing:
        raise ValueError(f"{path}: not a matchfile (missing table(s) "
                         f"{', '.join('/' + _GROUP + '/' + n for n in missing)})")
    return group


def _table(group: tables.Group, name: str, path: Path) -> tables.Table:
    node = group._f_get_child(name)
    if not isinstance(node, tables.Table):
        raise ValueError(f"{path}: not a matchfile (/{_GROUP}/{name} is not a table)")
    return node


@_pytables_section
def read_matchfile(path: Path, objects_only: bool = False) -> MatchSet:
    """Read a matchfile (a real IPAC one or one of ours) into a :class:`MatchSet`.

    Parameters
    ----------
    path : Path
        The ``.pytable`` file.
    objects_only : bool, optional
        Skip the per-epoch tables (``sourcedata``, ``transientdata`` are returned empty);
        reads only exposures, objects and features.

    Returns
    -------
    MatchSet
        Tables mapped onto the model dtypes: columns missing from the file (the zsds columns
        of IPAC files) are NaN for floats and 0 for integers, columns unknown to the model are
        dropped.  ``attrs`` holds the user attributes of ``/matches`` (``str`` for strings,
        numpy scalars otherwise); ``features`` is a DataFrame indexed by matchid (int64) with
        float32 columns, or None when the file has no ``/matches/features``.

    Raises
    ------
    ValueError
        If the file is not a matchfile (not HDF5, no ``/matches`` group, missing tables, or
        columns whose types do not fit the model); the message names the file.
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = Path(path)
    with _open(path) as f:
        group = _group(f, path)
        attrs = {k: _attr_value(group._v_attrs[k]) for k in group._v_attrs._f_list("user")}
        arrays = {}
        for name, dtype in _TABLE_DTYPES.items():
            if objects_only and name in _DATA_TABLES:
                arrays[name] = np.zeros(0, dtype)
            else:
                arrays[name] = _to_model(_table(group, name, path).read(), dtype,
                                         f"{path}: /{_GROUP}/{name}")
        features = None
        if _FEATURES in group:
            raw = _table(group, _FEATURES, path).read()
            features = pd.DataFrame({n: raw[n] for n in raw.dtype.names if n != "matchid"},
                                    index=pd.Index(raw["matchid"].astype(np.int64),
                                                   name="matchid"))
    return MatchSet(attrs=attrs, features=features, **arrays)


def read_exposures(path: Path) -> np.ndarray:
    """The ``/matches/exposures`` table of a matchfile (model dtype), read once per version.

    Every light-curve request needs it beside the few rows it reads, and opening the other
    tables as :func:`read_matchfile` does cost most of the request. A matchfile is replaced
    whole (written aside and renamed), so its inode, size and modification time name one
    version; the last 64 versions read are kept by the process. Each call gets its own copy.

    Raises
    ------
    ValueError, FileNotFoundError
        As :func:`read_matchfile`.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such matchfile") from None
    return _exposures_of_version(path, st.st_ino, st.st_size, st.st_mtime_ns).copy()


@functools.lru_cache(maxsize=64)
def _exposures_of_version(path: Path, ino: int, size: int, mtime_ns: int) -> np.ndarray:
    return _read_exposures_table(path)


@_pytables_section
def _read_exposures_table(path: Path) -> np.ndarray:
    with _open(path) as f:
        group = _group(f, path)
        return _to_model(_table(group, "exposures", path).read(), EXPOSURES_DTYPE,
                         f"{path}: /{_GROUP}/exposures")


def _query(table: tables.Table, ids: np.ndarray) -> np.ndarray:
    """Rows of ``table`` whose matchid is in ``ids`` (sorted unique, within uint32)."""
    if len(ids) == 0 or table.nrows == 0:
        return np.zeros(0, table.dtype)
    if len(ids) <= _MAX_POINT_QUERIES:
        parts = [table.read_where("matchid == m", condvars={"m": int(m)}) for m in ids]
        return np.concatenate(parts)
    rows = table.read_where("(matchid >= lo) & (matchid <= hi)",
                            condvars={"lo": int(ids[0]), "hi": int(ids[-1])})
    return rows[np.isin(rows["matchid"].astype(np.int64), ids)]


@_pytables_section
def read_lightcurve(path: Path, matchid: int | Sequence[int] | np.ndarray) -> np.ndarray:
    """Epoch rows of one or more objects, read through the matchid index.

    Only the requested rows are read (PyTables ``read_where`` on the indexed ``matchid``
    column of our files; an in-kernel scan on the unindexed IPAC files), not the whole table.

    Parameters
    ----------
    path : Path
        The matchfile.
    matchid : int or sequence of int
        Object id(s).  In our files ids below :data:`TRANSIENT_MATCHID0` are sources (looked
        up in ``sourcedata``), the others transients (``transientdata``).  IPAC files number
        transients independently, so both tables are searched there.

    Returns
    -------
    numpy.ndarray
        Rows sorted by (matchid, mjd); empty if no id is found.  The dtype is
        :data:`SOURCEDATA_DTYPE` when no transient row is returned, else
        :data:`TRANSIENTDATA_DTYPE` (a superset of its columns: source rows have NaN
        ``x``, ``y``, ``z``).  Columns absent from the file are NaN / 0 as in
        :func:`read_matchfile`.
    """
    path = Path(path)
    ids = np.unique(np.atleast_1d(np.asarray(matchid, dtype=np.int64)))
    ids = ids[(ids >= 0) & (ids <= np.iinfo(np.uint32).max)]  # matchid is uint32 in *data
    with _open(path) as f:
        group = _group(f, path)
        sd = _table(group, "sourcedata", path)
        ours = "sid" in sd.colnames  # a zsds column: our files keep the two id ranges apart
        src_ids = ids[ids < TRANSIENT_MATCHID0] if ours else ids
        tr_ids = ids[ids >= TRANSIENT_MATCHID0] if ours else ids
        src = _to_model(_query(sd, src_ids), SOURCEDATA_DTYPE, f"{path}: sourcedata")
        tr = np.zeros(0, TRANSIENTDATA_DTYPE)
        if len(tr_ids):  # open the second table only when needed
            tr = _to_model(_query(_table(group, "transientdata", path), tr_ids),
                           TRANSIENTDATA_DTYPE, f"{path}: transientdata")
    out = src if len(tr) == 0 else np.concatenate(
        [_to_model(src, TRANSIENTDATA_DTYPE, "sourcedata"), tr])
    return out[np.lexsort((out["mjd"], out["matchid"].astype(np.int64)))]
