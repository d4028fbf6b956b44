"""Property-based tests of the alert-packet builders (issue 19, item 4).

Inputs are built directly (no pipeline, no simulator) from the shipped ``ztf.alert`` schema:
candidate rows with every field drawn from its Avro type (numpy scalars, NaN and None where
the field is nullable, the edges of float32 and of the ints), RA near 0/360 and Dec near +-90,
histories of previous detections and upper limits from empty to :data:`MAX_HISTORY` rows in jd
order, forced-photometry histories, and stamps of any size up to 63x63 with NaN pixels.

* Valid input: the packet validates against the shipped schema and against the unchanged
  ``.avsc`` files parsed independently; writing and reading it back gives the same record
  (float fields rounded to float32, as Avro writes them); the same input gives the same bytes;
  and what a broker relies on holds: ``objectId``/``candid`` agree with the candidate, the
  history keeps its jd order, none of it later than the candidate, no ``candid`` twice, upper
  limits carry only their fields, ZTF's none-values where a value is missing, null only where
  the schema is nullable and never NaN, cutouts that are gzipped float32 FITS of the stamp's
  shape and pixels.
* Any input: :func:`build_alert` answers with a record that serializes, or refuses with its own
  ``ValueError`` naming the record and field (or cutout); never another exception, and never a
  record that :func:`serialize_alert` then cannot write.
"""

from __future__ import annotations

import copy
import gzip
import io
import math
import pickle
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest
from astropy.io import fits
from fastavro.schema import load_schema
from fastavro.validation import validate
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from zsds.alerts.packet import (
    CUTOUT_FIELDS,
    NONE_999,
    NONE_999_FIELDS,
    SS_FIELDS,
    SSNAMENR_NONE,
    UPPER_LIMIT_FIELDS,
    build_alert,
    cutout_file_name,
    fill_record,
    make_cutout,
    read_alert_file,
    read_cutout,
    serialize_alert,
)
from zsds.alerts.schema import load_alert_schema, packaged_schema_dir, record_fields

PROPS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FAST = settings(PROPS, max_examples=150)

SCHEMA = load_alert_schema()
FIELDS = {rec: record_fields(SCHEMA, rec) for rec in ("candidate", "prv_candidate", "fp_hist")}
#: Longest history generated: 30 days of ZTF at up to ~6 visits a night.
MAX_HISTORY = 200
NAN = float("nan")
#: The messages of the builder's own refusals (``ValueError``), by where the value was.
OWN_ERRORS = ("candidate field ", "prv_candidates[", "fp_hists[", "cutout ",
              "unknown cutout keys")


def _split(avro_type: Any) -> tuple[bool, Any]:
    if isinstance(avro_type, list):
        return "null" in avro_type, next(t for t in avro_type if t != "null")
    return False, avro_type


def _independent_schema() -> dict:
    """The unchanged ``.avsc`` files parsed by fastavro alone, sub-schemas first."""
    folder: Path = packaged_schema_dir()
    named: dict = {}
    for name in ("cutout", "candidate", "prv_candidate", "fp_hist"):
        load_schema(str(folder / f"{name}.avsc"), named_schemas=named)
    return load_schema(str(folder / "alert.avsc"), named_schemas=named)


INDEPENDENT = _independent_schema()


# -- strategies ------------------------------------------------------------------------------
def _f32(x: float) -> float:
    return float(np.float32(x))


float32s = st.one_of(
    st.floats(width=32, allow_nan=False),  # the whole float32 range, +-inf and subnormals
    st.floats(-40.0, 40.0, width=32),
    st.sampled_from([0.0, -0.0, NONE_999, -99999.0, _f32(3.4028235e38), _f32(1.4e-45)]),
).flatmap(lambda x: st.sampled_from([x, np.float32(x)]))
doubles = st.one_of(
    st.floats(allow_nan=False),
    st.sampled_from([0.0, -0.0, NONE_999, 1e-300, -1.7976931348623157e308]),
).flatmap(lambda x: st.sampled_from([x, np.float64(x)]))
int32s = st.integers(-(2**31), 2**31 - 1).flatmap(lambda i: st.sampled_from([i, np.int32(i)]))
int64s = st.integers(-(2**63), 2**63 - 1).flatmap(lambda i: st.sampled_from([i, np.int64(i)]))
texts = st.text(max_size=6)
BY_TYPE = {"float": float32s, "double": doubles, "int": int32s, "long": int64s, "string": texts}

ras = st.one_of(
    st.floats(0.0, 360.0, exclude_max=True),
    st.sampled_from([0.0, 5e-324, 1e-9, 359.999999999, math.nextafter(360.0, 0.0)]),
)
decs = st.one_of(
    st.floats(-90.0, 90.0),
    st.sampled_from([-90.0, 90.0, math.nextafter(90.0, 0.0), -89.9999999, 89.9999999]),
)
mags = st.one_of(st.floats(-5.0, 35.0, width=32), st.sampled_from([-99.0, 99.0, 0.0]))
jds = st.floats(2458000.5, 2462000.5)
#: Field-specific values; the other fields get anything of their Avro type.
OVERRIDES = {
    "jd": jds, "ra": ras, "dec": decs, "ranr": ras, "decnr": decs,
    "magpsf": mags, "diffmaglim": mags, "magap": mags,
    "isdiffpos": st.sampled_from(["t", "f", "1", "0"]),
    "candid": st.integers(1, 2**63 - 1), "pid": st.integers(0, 2**63 - 1),
    "ssnamenr": st.one_of(texts, st.sampled_from(["", SSNAMENR_NONE, "340736"])),
    "rbversion": st.sampled_from(["t17_f5_c3", "", "ü"]),
}  # fmt: skip


def _missing(base: str) -> st.SearchStrategy:
    if base in ("float", "double"):
        return st.sampled_from([None, NAN, np.float32(NAN), np.float64(NAN)])
    return st.just(None)


def _value(name: str, avro_type: Any, rec: str = "") -> st.SearchStrategy:
    nullable, base = _split(avro_type)
    value = OVERRIDES.get(name, BY_TYPE[base])
    # Missing values where the schema allows null, or where ZTF's none-value replaces them.
    if nullable or (rec == "candidate" and name in NONE_999_FIELDS):
        return st.one_of(value, _missing(base))
    return value


def _records(rec: str, *, keep: frozenset[str] | None = None,
             present: tuple[str, ...] = ()) -> st.SearchStrategy[dict]:
    """Dicts of one schema record: required fields always, nullable ones maybe left out."""
    required, optional = {}, {}
    for name, avro_type in FIELDS[rec]:
        if keep is not None and name not in keep:
            continue
        if name in present:  # there and not missing
            required[name] = OVERRIDES.get(name, BY_TYPE[_split(avro_type)[1]])
            continue
        target = optional if _split(avro_type)[0] else required
        target[name] = _value(name, avro_type, rec)
    return st.fixed_dictionaries(required, optional=optional)


candidates = _records("candidate", present=("candid", "pid", "isdiffpos", "jd"))
detections = _records("prv_candidate", present=("candid",))
#: An upper limit: no candid, its own fields, and detection values that must not survive.
upper_limits = st.tuples(
    _records("prv_candidate", keep=UPPER_LIMIT_FIELDS),
    st.sampled_from([None, NAN, "absent"]),
    st.fixed_dictionaries({}, optional={"magpsf": mags, "ra": ras, "ssnamenr": texts}),
).map(lambda t: {**t[0], **t[2], **({} if t[1] == "absent" else {"candid": t[1]})})
fp_rows = _records("fp_hist")
#: Mostly short (what most alerts carry, and cheap), sometimes empty or the longest.
history_lengths = st.one_of(st.sampled_from([0, 1, 2, MAX_HISTORY]), st.integers(0, 12),
                            st.integers(0, MAX_HISTORY))


@st.composite
def histories(draw, templates: st.SearchStrategy[dict], jd: float, candid: int,
              detections: bool) -> list[dict] | None:
    """``n`` rows copied from a few drawn templates, at distinct earlier jds in jd order (ties
    allowed), with distinct candids other than the candidate's; or None."""
    if draw(st.integers(0, 9)) == 0:
        return None
    n = draw(history_lengths)
    rows = draw(st.lists(templates, min_size=1, max_size=3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.uniform(1e-4, 30.0, n))[::-1]
    if n > 1 and draw(st.booleans()):
        offsets[1] = offsets[0]  # two rows at the same jd
    ids = [int(i) for i in rng.choice(2**62, size=n + 1, replace=False) if int(i) != candid]
    out = []
    for i in range(n):
        row = dict(rows[i % len(rows)], jd=float(jd - offsets[i]))
        if detections and not _missing_value(row.get("candid")):
            row["candid"] = ids[i]
        out.append(row)
    return out


@st.composite
def stamps(draw) -> np.ndarray | None:
    """A stamp of any size up to 63x63 (edge stamps are smaller), any dtype, NaN pixels."""
    if draw(st.integers(0, 4)) == 0:
        return None
    shape = draw(st.tuples(st.one_of(st.just(63), st.integers(1, 63)),
                           st.one_of(st.just(63), st.integers(1, 63))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 1e-30, 1e30, 1e4]))
    data = rng.normal(0.0, scale, shape)  # negative pixels too
    frac = draw(st.sampled_from([0.0, 0.05, 1.0]))
    data[rng.random(shape) < frac] = np.nan
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int16]))
    if dtype is np.int16:
        return np.nan_to_num(np.clip(data, -3e4, 3e4)).astype(np.int16)
    return data.astype(dtype)


@st.composite
def alert_inputs(draw) -> dict[str, Any]:
    cand = draw(candidates)
    jd, candid = cand["jd"], cand["candid"]
    prv = draw(histories(st.one_of(detections, upper_limits), jd, candid, True))
    fph = draw(histories(fp_rows, jd, candid, False))
    cut = {kind: draw(stamps()) for kind in CUTOUT_FIELDS if draw(st.booleans())}
    letters = draw(st.text("abcdefghijklmnopqrstuvwxyz", min_size=7, max_size=7))
    return {"object_id": f"ZTF{draw(st.integers(17, 26))}{letters}", "candidate": cand,
            "prv_candidates": prv, "cutouts": cut or draw(st.sampled_from([None, {}])),
            "fp_hists": fph}


def _build(inputs: dict[str, Any]) -> dict[str, Any]:
    return build_alert(inputs["object_id"], inputs["candidate"], inputs["prv_candidates"],
                       inputs["cutouts"], fp_hists=inputs["fp_hists"])


# -- checks ----------------------------------------------------------------------------------
def _missing_value(v: Any) -> bool:
    return v is None or (isinstance(v, float | np.floating) and math.isnan(v))


def _as_written(record: dict, rec: str) -> dict:
    """``record`` as Avro writes it: ``float`` fields rounded to float32."""
    out = dict(record)
    for name, avro_type in FIELDS[rec]:
        if _split(avro_type)[1] == "float" and out[name] is not None:
            out[name] = _f32(out[name])
    return out


def _expected(value: Any, avro_type: Any) -> Any:
    base = _split(avro_type)[1]
    if base == "float":
        return _f32(value)
    if base == "double":
        return float(value)
    if base in ("int", "long"):
        return int(value)
    return str(value)


def _assert_no_nan(node: Any, where: str = "alert") -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _assert_no_nan(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _assert_no_nan(v, f"{where}[{i}]")
    else:
        assert not (isinstance(node, float) and math.isnan(node)), f"NaN in {where}"


def _assert_nulls_where_nullable(record: dict, rec: str, what: str) -> None:
    assert list(record) == [name for name, _ in FIELDS[rec]], what
    for name, avro_type in FIELDS[rec]:
        if not _split(avro_type)[0]:
            assert record[name] is not None, f"{what}.{name} is null but not nullable"


def _assert_cutout(cutout: dict, stamp: np.ndarray) -> None:
    raw = gzip.decompress(cutout["stampData"])
    assert len(raw) % 2880 == 0
    with fits.open(io.BytesIO(raw)) as hdul:
        assert len(hdul) == 1
        header = hdul[0].header
        assert header["BITPIX"] == -32 and header["BUNIT"] == "DN"
        assert (header["NAXIS2"], header["NAXIS1"]) == stamp.shape
    pixels = read_cutout(cutout)
    assert pixels.shape == stamp.shape and pixels.dtype == np.float32
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(pixels, stamp.astype(np.float32))  # NaN where NaN


def _assert_candidate_values(got: dict, given_: dict) -> None:
    """Each candidate value is the one given, or ZTF's none-value where it was missing."""
    for name, avro_type in FIELDS["candidate"]:
        value = given_.get(name)
        if name == "ssnamenr" and (_missing_value(value) or value == ""):
            assert got[name] == SSNAMENR_NONE
        elif _missing_value(value):
            assert got[name] == (NONE_999 if name in NONE_999_FIELDS else None), name
        elif name == "scorr":
            assert got[name] == abs(float(value))
        else:
            assert got[name] == _expected(value, avro_type), name


# -- properties ------------------------------------------------------------------------------
@PROPS
@given(inputs=alert_inputs())
def test_packets_validate_round_trip_and_keep_broker_invariants(inputs):
    frozen = pickle.dumps(inputs)
    alert = _build(inputs)
    assert pickle.dumps(inputs) == frozen  # the builder does not touch its input

    # Valid against the shipped schema (serialize_alert validates, strict types) and against
    # the independently parsed files.
    payload = serialize_alert(alert)
    reader = fastavro.reader(io.BytesIO(payload), reader_schema=INDEPENDENT)
    (got,) = list(reader)
    assert validate(got, INDEPENDENT)
    # Round trip: what was built comes back, float fields as float32.
    assert read_alert_file(payload) == [got]
    expected = dict(alert, candidate=_as_written(alert["candidate"], "candidate"))
    for key, rec in (("prv_candidates", "prv_candidate"), ("fp_hists", "fp_hist")):
        if alert[key] is not None:
            expected[key] = [_as_written(r, rec) for r in alert[key]]
    assert got == expected
    # Deterministic: the same input, built again, gives the same bytes.
    assert serialize_alert(_build(copy.deepcopy(inputs))) == payload

    # -- what a broker relies on --
    cand, prv, fph = got["candidate"], got["prv_candidates"], got["fp_hists"]
    assert got["objectId"] == inputs["object_id"]
    assert got["candid"] == cand["candid"] == int(inputs["candidate"]["candid"])
    assert got["schemavsn"] == "4.02" and got["publisher"] == "zsds"
    _assert_no_nan(got)
    _assert_nulls_where_nullable(cand, "candidate", "candidate")
    _assert_candidate_values(cand, inputs["candidate"])

    given_prv = inputs["prv_candidates"]
    assert (prv is None) == (given_prv is None)
    if prv is not None:
        assert len(prv) == len(given_prv)
        jd_seq = [r["jd"] for r in prv]
        assert jd_seq == sorted(jd_seq) and all(jd < cand["jd"] for jd in jd_seq)
        assert jd_seq == [float(r["jd"]) for r in given_prv]  # order and values kept
        candids = [r["candid"] for r in prv if r["candid"] is not None]
        assert len(set(candids)) == len(candids) and cand["candid"] not in candids
        for i, (row, given_row) in enumerate(zip(prv, given_prv, strict=True)):
            _assert_nulls_where_nullable(row, "prv_candidate", f"prv_candidates[{i}]")
            if _missing_value(given_row.get("candid")):  # upper limit: only its fields
                assert row["candid"] is None
                assert {k for k, v in row.items() if v is not None} <= UPPER_LIMIT_FIELDS
            else:
                name, dist = given_row.get("ssnamenr"), given_row.get("ssdistnr")
                if (_missing_value(name) or name in ("", SSNAMENR_NONE)
                        or _missing_value(dist) or float(dist) == NONE_999):
                    assert all(row[k] is None for k in SS_FIELDS)
                if not _missing_value(given_row.get("scorr")):
                    assert row["scorr"] >= 0
    given_fph = inputs["fp_hists"]
    assert (fph is None) == (given_fph is None)
    if fph is not None:
        assert [r["jd"] for r in fph] == [float(r["jd"]) for r in given_fph]
        assert all(r["jd"] < cand["jd"] for r in fph)
        for i, row in enumerate(fph):
            _assert_nulls_where_nullable(row, "fp_hist", f"fp_hists[{i}]")

    cut = inputs["cutouts"] or {}
    for kind, field in CUTOUT_FIELDS.items():
        if cut.get(kind) is None:
            assert got[field] is None
            continue
        assert got[field]["fileName"] == cutout_file_name(kind, cand["candid"], cand["pid"],
                                                          cand["isdiffpos"])
        _assert_cutout(got[field], cut[kind])


# Values of the wrong kind, edge values and values that only look missing.
SPECIAL = st.sampled_from([
    None, NAN, np.float32(NAN), "nan", "NaN", "inf", "-999", "12.5", "", b"", b"\xff\xfe",
    "\udcff", True, 10**400, -(2**64), 2**63, 1.5, 1j, float("inf"), np.array(3.5),
    np.array([1.0, 2.0]), np.int64(7), np.uint64(2**64 - 1), [], [1.0], {}, {"a": 1}, object(),
])
junk = st.one_of(SPECIAL, SPECIAL, SPECIAL, st.text(max_size=4), st.binary(max_size=3),
                 st.floats(), st.integers())
#: A candidate, a detection, an upper limit and a forced-photometry row, all valid and minimal.
BASE = {
    "candidate": {name: (2460000.5 if name == "jd" else "t" if name == "isdiffpos"
                         else {"float": 18.0, "double": 10.0, "int": 1, "long": 7,
                               "string": "x"}[_split(t)[1]])
                  for name, t in FIELDS["candidate"] if not _split(t)[0]},
    "detection": {"jd": 2459999.5, "fid": 1, "pid": 5, "programid": 1, "rbversion": "x",
                  "candid": 3, "ssnamenr": "340736", "ssdistnr": 2.0, "scorr": -6.0},
    "upper_limit": {"jd": 2459998.5, "fid": 2, "pid": 4, "programid": 1, "rbversion": "x",
                    "diffmaglim": 20.5},
    "fp_hist": {"fid": 1, "pid": 5, "rfid": 9, "programid": 1, "jd": 2459999.5, "ranr": 1.0,
                "decnr": 2.0},
}


def _patches(rec: str) -> st.SearchStrategy[dict]:
    names = [n for n, _ in FIELDS[rec]] + ["not_a_field"]
    return st.dictionaries(st.sampled_from(names), junk, max_size=6)


junk_stamps = st.one_of(
    st.none(), st.just("abc"), st.just([[None, 1.0]]), st.just([[1.0, 2.0], [3.0]]),
    st.just([[{}]]), st.just(np.zeros((0, 4))), st.just(np.zeros(5)), st.just(np.zeros((2, 2, 2))),
    st.just(np.full((3, 2), 1e300)), st.just(np.zeros((2, 2), complex)), st.just(7.0),
    hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_]),
               hnp.array_shapes(min_dims=1, max_dims=3, max_side=4)),
)


@FAST
@given(cand=_patches("candidate"), det=_patches("prv_candidate"),
       ulim=_patches("prv_candidate"), fp=_patches("fp_hist"),
       cutouts=st.dictionaries(st.sampled_from([*CUTOUT_FIELDS, "sci"]), junk_stamps,
                               max_size=3))
def test_any_input_builds_a_writable_packet_or_is_refused_cleanly(cand, det, ulim, fp, cutouts):
    inputs = {"object_id": "ZTF23abcdefg",
              "candidate": {**BASE["candidate"], **cand},
              "prv_candidates": [{**BASE["upper_limit"], **ulim}, {**BASE["detection"], **det}],
              "cutouts": cutouts, "fp_hists": [{**BASE["fp_hist"], **fp}]}
    try:
        with np.errstate(all="ignore"):
            alert = _build(inputs)
    except ValueError as exc:  # the builder's own refusal, naming the record and field
        assert str(exc).startswith(OWN_ERRORS), repr(exc)
        assert exc.__class__ is ValueError, repr(exc)
        return
    payload = serialize_alert(alert)  # what was built is always writable
    (got,) = read_alert_file(payload)
    assert validate(got, INDEPENDENT)
    _assert_no_nan(got)


@FAST
@given(stamp=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=9),
                        elements=st.floats(width=32)))
def test_stamps_are_gzipped_fits_of_their_shape_and_pixels(stamp):
    cutout = make_cutout(stamp, "x.fits.gz")
    assert make_cutout(stamp.copy(), "x.fits.gz") == cutout  # same pixels, same bytes
    _assert_cutout(cutout, stamp)
    back = read_cutout(cutout)
    same = back.view(np.uint32) == stamp.view(np.uint32)  # bit for bit, -0.0 included
    assert (same | (np.isnan(back) & np.isnan(stamp))).all()


@FAST
@given(valid=fp_rows, patch=_patches("fp_hist"))
@example(valid=BASE["fp_hist"], patch={"jd": "nan", "forcediffimflux": "nan"})  # NaN was kept
@example(valid=BASE["fp_hist"], patch={"ranr": 10**400})  # was an OverflowError
@example(valid=BASE["fp_hist"], patch={"procstatus": "\udcff"})  # failed only when written
def test_fill_record_nulls_refuses_or_casts(valid, patch):
    """A missing or NaN value (also one that only the cast reveals) is null where nullable and
    refused where not; nothing but its own ``ValueError`` comes out."""
    values = {**valid, **patch}
    try:
        record = fill_record(values, FIELDS["fp_hist"], what="fp_hist")
    except ValueError as exc:
        assert exc.__class__ is ValueError and str(exc).startswith("fp_hist field "), repr(exc)
        return
    _assert_no_nan(record)
    for value in record.values():
        if isinstance(value, str):
            value.encode()  # writable as an Avro (UTF-8) string
    for name, avro_type in FIELDS["fp_hist"]:
        nullable, _ = _split(avro_type)
        value = values.get(name)
        if _missing_value(value):
            assert nullable and record[name] is None


# -- regressions: inputs the properties above found -------------------------------------------
def _base_inputs(**changes: dict) -> dict[str, Any]:
    parts = {"candidate": BASE["candidate"], "upper_limit": BASE["upper_limit"],
             "detection": BASE["detection"], "fp_hist": BASE["fp_hist"]}
    parts = {k: {**v, **changes.get(k, {})} for k, v in parts.items()}
    return {"object_id": "ZTF23abcdefg", "candidate": parts["candidate"],
            "prv_candidates": [parts["upper_limit"], parts["detection"]],
            "cutouts": changes.get("cutouts", {}), "fp_hists": [parts["fp_hist"]]}


@pytest.mark.parametrize(("changes", "message"), [
    # Each was a TypeError, OverflowError, UnicodeEncodeError or a bare ValueError of numpy or
    # float() (no field named) from inside the builder, or from serialize_alert after it.
    ({"cutouts": {"science": "abc"}}, r"cutout 'candid7_pid7_targ_sci.fits.gz': not an image"),
    ({"cutouts": {"science": [[{}]]}}, r"cutout .*: not an image"),
    ({"cutouts": {"template": [[1.0, 2.0], [3.0]]}}, r"cutout .*: not an image"),
    ({"candidate": {"scorr": ""}}, r"candidate field 'scorr'"),
    ({"candidate": {"scorr": [1.0]}}, r"candidate field 'scorr'"),
    ({"detection": {"ssdistnr": []}}, r"prv_candidates\[1\] field 'ssdistnr'"),
    ({"detection": {"ssdistnr": ""}}, r"prv_candidates\[1\] field 'ssdistnr'"),
    ({"upper_limit": {"jd": 10**400}}, r"prv_candidates\[0\] field 'jd'"),
    ({"fp_hist": {"ranr": 10**400}}, r"fp_hists\[0\] field 'ranr'"),
    ({"candidate": {"rbversion": "\udcff"}}, r"candidate field 'rbversion'"),
    # NaN that only a cast reveals went into non-nullable fields of the packet.
    ({"upper_limit": {"jd": "nan"}}, r"prv_candidates\[0\] field 'jd' \(double\) is required"),
    ({"candidate": {"magpsf": "NaN"}}, r"candidate field 'magpsf' \(float\) is required"),
])  # fmt: skip
def test_invalid_values_are_refused_with_the_field_named(changes, message):
    with pytest.raises(ValueError, match=message) as info:
        _build(_base_inputs(**changes))
    assert info.type is ValueError


def test_a_nan_that_only_the_cast_reveals_is_null_where_nullable():
    inputs = _base_inputs(candidate={"magap": "nan", "distnr": "nan"},
                          fp_hist={"forcediffimflux": "nan"})
    (got,) = read_alert_file(serialize_alert(_build(inputs)))
    _assert_no_nan(got)
    assert got["candidate"]["magap"] is None and got["fp_hists"][0]["forcediffimflux"] is None


def test_a_string_field_given_an_array_is_no_truth_test():
    """``ssnamenr`` was compared with ``==`` before the cast: an array raised numpy's "truth
    value of an array is ambiguous". String fields take ``str()`` of any value."""
    names = np.array(["a", "b"])
    alert = _build(_base_inputs(candidate={"ssnamenr": names}, detection={"ssnamenr": names}))
    assert alert["candidate"]["ssnamenr"] == alert["prv_candidates"][1]["ssnamenr"] == str(names)
    serialize_alert(alert)
