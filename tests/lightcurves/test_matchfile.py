"""Matchfile I/O: the real IPAC files, round trips of ours, and per-object reads."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tables

from zsds.lightcurves.matchfile import (
    PROVENANCE_ATTRS,
    matchfile_name,
    read_lightcurve,
    read_matchfile,
    write_matchfile,
)
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

TABLES = ("exposures", "sources", "sourcedata", "transients", "transientdata")


def _real(test_data: Path, name: str = "ztf_000245_zr_c10_q1_match.pytable") -> Path:
    return test_data / "matchfiles" / name


def _random_fill(arr: np.ndarray, rng: np.random.Generator) -> None:
    """Fill every column of a structured array with random values of its type."""
    for name in arr.dtype.names:
        dt = arr.dtype[name]
        shape = arr[name].shape
        if dt.base.kind == "f":
            arr[name] = rng.normal(10.0, 3.0, shape)
        elif dt.base.kind in "iu":
            arr[name] = rng.integers(0, 200, shape)
        else:
            arr[name] = rng.choice([b"g-R", b"r-i", b""], shape)


def make_matchset(n_src: int = 30, n_epochs: int = 12, n_tr: int = 4,
                  seed: int = 1) -> MatchSet:
    """A seeded random MatchSet with sources, transients (sparse epochs) and features."""
    rng = np.random.default_rng(seed)
    exposures = np.zeros(n_epochs, EXPOSURES_DTYPE)
    _random_fill(exposures, rng)
    exposures["expid"] = 1000 + np.arange(n_epochs)
    exposures["obsmjd"] = 58300.0 + np.sort(rng.uniform(0, 800, n_epochs))

    def objects(n: int, dtype: np.dtype, first: int) -> np.ndarray:
        arr = np.zeros(n, dtype)
        _random_fill(arr, rng)
        arr["matchid"] = first + np.arange(n)
        arr["ra"] = rng.uniform(40, 41, n)
        arr["dec"] = rng.uniform(-26, -25, n)
        return arr

    def data(obj: np.ndarray, dtype: np.dtype, frac: float) -> np.ndarray:
        keep = rng.random((len(obj), n_epochs)) < frac
        i_obj, i_exp = np.nonzero(keep)
        arr = np.zeros(len(i_obj), dtype)
        _random_fill(arr, rng)
        arr["matchid"] = obj["matchid"][i_obj]
        arr["expid"] = exposures["expid"][i_exp]
        arr["mjd"] = exposures["obsmjd"][i_exp]
        return arr  # already sorted by (matchid, mjd)

    sources = objects(n_src, SOURCES_DTYPE, 1)
    transients = objects(n_tr, TRANSIENTS_DTYPE, TRANSIENT_MATCHID0)
    attrs = {
        "fieldID": 250, "ccdID": 1, "quadrantID": 1, "rcID": 0, "filterID": 1,
        "referenceImageID": 2500001, "referenceZeroPoint": 27.0,
        "referenceZeroPointErr": 0.0, "saturatedMagnitude": np.inf,
        "globalMaglimit": 20.5, "goodSystematicErrorLimit": np.inf,
        "nCalibrationSources": 12, "calibratedSinceLastMatch": -1,
        "datetimeMatched": "2026-01-02 03:04:05.000000", "datetimeCalibrated": "",
        "zsdsVersion": "test",  # an extra attribute
    }
    ids = np.concatenate([sources["matchid"], transients["matchid"]])
    features = pd.DataFrame(
        {f"f{k:03d}": rng.normal(size=len(ids)).astype(np.float32) for k in range(120)},
        index=pd.Index(ids.astype(np.int64), name="matchid"))
    features.iloc[0, 3] = np.nan
    return MatchSet(attrs=attrs, exposures=exposures, sources=sources,
                    sourcedata=data(sources, SOURCEDATA_DTYPE, 0.8),
                    transients=transients,
                    transientdata=data(transients, TRANSIENTDATA_DTYPE, 0.3),
                    features=features)


def assert_records_equal(x: np.ndarray, y: np.ndarray, what: str = "") -> None:
    """Structured arrays equal column by column (NaN == NaN, unlike ``==`` on records)."""
    assert x.dtype == y.dtype, what
    assert len(x) == len(y), what
    for col in x.dtype.names:
        np.testing.assert_array_equal(x[col], y[col], err_msg=f"{what}.{col}")


def assert_matchsets_equal(a: MatchSet, b: MatchSet) -> None:
    for name in TABLES:
        assert_records_equal(getattr(a, name), getattr(b, name), name)
    # b read back from a file: plus the provenance the writer adds (test_..._provenance)
    assert a.attrs.keys() - set(PROVENANCE_ATTRS) == b.attrs.keys() - set(PROVENANCE_ATTRS)
    for key, value in a.attrs.items():
        if key in PROVENANCE_ATTRS:
            continue
        assert b.attrs[key] == value, key
        if key in MATCH_ATTRS:
            assert isinstance(b.attrs[key], MATCH_ATTRS[key]), key
    if a.features is None:
        assert b.features is None
    else:
        pd.testing.assert_frame_equal(a.features, b.features)


def _layout(path: Path) -> tuple[set[str], dict[str, list[str]], dict[str, str]]:
    with tables.open_file(path) as f:
        g = f.root.matches
        attrs = set(g._v_attrs._f_list("user"))
        cols = {t.name: list(t.colnames) for t in g._f_iter_nodes("Table")}
        titles = {t.name: t.title for t in g._f_iter_nodes("Table")}
    return attrs, cols, titles


# --------------------------------------------------------------------------------------------


def test_matchfile_name() -> None:
    assert matchfile_name(245, "zr", 10, 1) == "ztf_000245_zr_c10_q1_match.pytable"
    assert matchfile_name(1, "zg", 1, 4) == "ztf_000001_zg_c01_q4_match.pytable"
    with pytest.raises(ValueError):
        matchfile_name(1, "r", 1, 1)


def test_read_real_ipac_file(test_data: Path) -> None:
    ms = read_matchfile(_real(test_data))
    assert ms.fieldid == 245 and ms.rcid == 36 and ms.filterid == 2
    assert ms.attrs["ccdID"] == 10 and ms.attrs["quadrantID"] == 1
    assert ms.attrs["referenceImageID"] == 2450236
    assert ms.attrs["datetimeMatched"] == "2020-10-22 17:14:55.565146"
    assert isinstance(ms.attrs["datetimeMatched"], str)
    assert isinstance(ms.attrs["globalMaglimit"], np.float32)
    assert ms.attrs["globalMaglimit"] == pytest.approx(20.827957)
    assert set(MATCH_ATTRS) == set(ms.attrs)

    assert ms.exposures.dtype == EXPOSURES_DTYPE and len(ms.exposures) == 5
    assert ms.exposures["expid"][0] == 56648128
    assert ms.exposures["pcolor"][0] == b"g-R" and ms.exposures["programpi"][0] == b"Kulkarni"
    assert np.isnan(ms.exposures["zprefine"]).all()  # zsds column absent from IPAC files
    assert (ms.exposures["pid"] == 0).all()

    assert ms.sources.dtype == SOURCES_DTYPE and len(ms.sources) == 10
    np.testing.assert_array_equal(ms.sources["matchid"], np.arange(10))
    assert ms.sources["nobs"][:2].tolist() == [70, 77]
    assert ms.sources["refmag"][1] == pytest.approx(16.433, abs=1e-3)
    assert ms.sources["percentiles"].shape == (10, 12)
    assert ms.sources["ra"][0] == pytest.approx(2.6104292)

    assert ms.sourcedata.dtype == SOURCEDATA_DTYPE and len(ms.sourcedata) == 336
    ids, counts = np.unique(ms.sourcedata["matchid"], return_counts=True)
    assert dict(zip(ids.tolist(), counts.tolist(), strict=True))[0] == 56
    assert np.isnan(ms.sourcedata["psfmag"]).all() and (ms.sourcedata["sid"] == 0).all()
    assert len(ms.transients) == 0 and len(ms.transientdata) == 0
    assert ms.transientdata.dtype == TRANSIENTDATA_DTYPE
    assert ms.features is None

    other = read_matchfile(_real(test_data, "ztf_000269_zr_c10_q1_match.pytable"))
    assert other.fieldid == 269 and len(other.sources) == 10 and len(other.sourcedata) == 101

    objs = read_matchfile(_real(test_data), objects_only=True)
    assert len(objs.sources) == 10 and len(objs.sourcedata) == 0
    assert objs.sourcedata.dtype == SOURCEDATA_DTYPE


def test_read_lightcurve_real_file(test_data: Path) -> None:
    path = _real(test_data)
    ms = read_matchfile(path)
    lc = read_lightcurve(path, 0)
    assert lc.dtype == SOURCEDATA_DTYPE and len(lc) == 56
    assert np.all(np.diff(lc["mjd"]) >= 0)
    ref = ms.sourcedata[ms.sourcedata["matchid"] == 0]
    assert_records_equal(lc, ref[np.argsort(ref["mjd"], kind="stable")])
    assert len(read_lightcurve(path, 2)) == 0  # a source without epochs
    assert len(read_lightcurve(path, [0, 1, 9])) == 56 + 61 + 67


def test_round_trip(tmp_path: Path) -> None:
    ms = make_matchset()
    path = tmp_path / matchfile_name(250, "zg", 1, 1)
    write_matchfile(path, ms)
    back = read_matchfile(path)
    assert_matchsets_equal(ms, back)
    assert len(back.transientdata) > 0

    objs = read_matchfile(path, objects_only=True)
    assert len(objs.sourcedata) == 0 and len(objs.transientdata) == 0
    assert_records_equal(objs.sources, ms.sources)
    pd.testing.assert_frame_equal(objs.features, ms.features)

    # without features: no /matches/features, read back as None
    ms.features = None
    write_matchfile(path, ms)
    assert read_matchfile(path).features is None


def test_read_lightcurve(tmp_path: Path) -> None:
    ms = make_matchset()
    path = tmp_path / "m.pytable"
    write_matchfile(path, ms)

    src_id = int(ms.sources["matchid"][3])
    lc = read_lightcurve(path, src_id)
    assert lc.dtype == SOURCEDATA_DTYPE
    assert_records_equal(lc, ms.sourcedata[ms.sourcedata["matchid"] == src_id])
    assert len(lc) > 0

    tr_id = int(np.unique(ms.transientdata["matchid"])[0])
    assert tr_id >= TRANSIENT_MATCHID0
    lc = read_lightcurve(path, tr_id)
    assert lc.dtype == TRANSIENTDATA_DTYPE
    assert_records_equal(lc, ms.transientdata[ms.transientdata["matchid"] == tr_id])

    # several ids, both kinds, in any order: sorted by (matchid, mjd), superset dtype
    lc = read_lightcurve(path, [tr_id, src_id, 2])
    assert lc.dtype == TRANSIENTDATA_DTYPE
    sel = np.isin(ms.sourcedata["matchid"], [src_id, 2])
    assert len(lc) == sel.sum() + (ms.transientdata["matchid"] == tr_id).sum()
    assert np.all(np.diff(lc["matchid"].astype(np.int64)) >= 0)
    np.testing.assert_array_equal(lc["mag"][: sel.sum()], ms.sourcedata["mag"][sel])
    assert np.isnan(lc["x"][: sel.sum()]).all()

    # many ids take the range-read path; unknown ids give nothing
    many = ms.sources["matchid"][::1]
    lc = read_lightcurve(path, many)
    assert_records_equal(lc, ms.sourcedata)
    assert len(read_lightcurve(path, [999_999, -5])) == 0

    with tables.open_file(path) as f:  # the per-object reads go through the index
        sd = f.root.matches.sourcedata
        assert sd.cols.matchid.is_indexed
        assert f.root.matches.transientdata.cols.matchid.is_indexed
        assert sd.will_query_use_indexing("matchid == m", {"m": src_id})
        assert sd.cols.matchid.index.nelements == sd.nrows  # complete, not dirty
        assert not sd.cols.matchid.index.dirty


def test_layout_matches_real_file(test_data: Path, tmp_path: Path) -> None:
    real_attrs, real_cols, real_titles = _layout(_real(test_data))
    ms = make_matchset()
    ms.attrs.pop("zsdsVersion")
    ms.attrs.update(fieldID=245, rcID=36)
    path = tmp_path / "ours.pytable"
    write_matchfile(path, ms)
    attrs, cols, titles = _layout(path)
    assert attrs - set(PROVENANCE_ATTRS) == real_attrs and "ZSDSVER" in attrs  # + provenance
    assert set(cols) == set(real_cols) | {"features"}
    for name, real in real_cols.items():
        assert cols[name][: len(real)] == real, name  # IPAC columns first, in IPAC order
    assert {k: titles[k] for k in real_titles} == real_titles
    with tables.open_file(path) as f:
        assert f.root.matches._v_title == "Matched Sources"
        assert f.root.matches.sources.filters.complevel > 0
        assert f.root.matches.features.nrows == len(ms.features)


def test_write_is_idempotent(tmp_path: Path) -> None:
    ms = make_matchset(seed=7)
    path = tmp_path / "m.pytable"
    write_matchfile(path, ms)
    first = read_matchfile(path)
    write_matchfile(path, ms)
    assert_matchsets_equal(first, read_matchfile(path))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pytable"]  # no temporary file left


def test_write_casts_foreign_dtypes(tmp_path: Path) -> None:
    """Tables of another dtype (e.g. IPAC's) are mapped onto the model's on write."""
    ms = make_matchset(n_src=3, n_epochs=4, n_tr=0)
    ipac_names = [n for n in SOURCEDATA_DTYPE.names if n not in ("psfmag", "psfmagerr", "snr",
                                                                  "sid")]
    ms.sourcedata = ms.sourcedata[ipac_names].copy()  # IPAC sourcedata: no zsds columns
    path = tmp_path / "m.pytable"
    write_matchfile(path, ms)
    back = read_matchfile(path)
    assert back.sourcedata.dtype == SOURCEDATA_DTYPE
    np.testing.assert_array_equal(back.sourcedata["mag"], ms.sourcedata["mag"])
    assert np.isnan(back.sourcedata["psfmag"]).all()


def test_bad_features_rejected(tmp_path: Path) -> None:
    ms = make_matchset(n_src=3, n_epochs=2, n_tr=0)
    ms.features = pd.DataFrame({"not an identifier": [1.0, 2.0, 3.0]},
                               index=pd.Index([1, 2, 3], name="matchid"))
    path = tmp_path / "m.pytable"
    with pytest.raises(ValueError, match="identifiers"):
        write_matchfile(path, ms)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_not_a_matchfile(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pytable"
    garbage.write_bytes(b"this is not HDF5\n" * 100)
    with pytest.raises(ValueError, match=re.escape(str(garbage))):
        read_matchfile(garbage)
    with pytest.raises(ValueError, match=re.escape(str(garbage))):
        read_lightcurve(garbage, 1)

    nogroup = tmp_path / "nogroup.h5"
    with tables.open_file(nogroup, "w") as f:
        f.create_group("/", "other")
    with pytest.raises(ValueError, match=r"nogroup\.h5.*no /matches group"):
        read_matchfile(nogroup)

    notables = tmp_path / "notables.h5"
    with tables.open_file(notables, "w") as f:
        g = f.create_group("/", "matches")
        f.create_table(g, "exposures", description=EXPOSURES_DTYPE)
    with pytest.raises(ValueError, match=r"notables\.h5.*missing table.*sources"):
        read_matchfile(notables)

    with pytest.raises(FileNotFoundError):
        read_matchfile(tmp_path / "absent.pytable")


def test_no_warnings_on_write_and_read(tmp_path: Path) -> None:
    path = tmp_path / "m.pytable"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_matchfile(path, make_matchset(n_src=5, n_epochs=3))
        read_matchfile(path)
        read_lightcurve(path, 1)


def test_matchfile_records_its_provenance(tmp_path: Path) -> None:
    """Like the FITS products' ZSDSVER and CFGHASH: the version always, the configuration's
    hash when written under config_provenance; a prior file's values are never carried over."""
    from zsds import __version__
    from zsds.io.fitsio import config_provenance

    path = tmp_path / matchfile_name(250, "zg", 1, 1)
    with config_provenance("0123456789abcdef"):
        write_matchfile(path, make_matchset())
    first = read_matchfile(path, objects_only=True)
    assert (first.attrs["ZSDSVER"], first.attrs["CFGHASH"]) == (__version__, "0123456789abcdef")
    write_matchfile(path, first)  # rewritten without a configuration (e.g. a hand-made set)
    again = read_matchfile(path, objects_only=True)
    assert again.attrs["ZSDSVER"] == __version__ and "CFGHASH" not in again.attrs
