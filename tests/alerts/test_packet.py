"""Cutouts, records and Avro packets, checked against the real ZTF schema files and packets."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import fastavro
import numpy as np
import pytest
from astropy.io import fits
from fastavro.schema import load_schema
from fastavro.validation import ValidationError, validate

from tests.conftest import TEST_DATA
from zsds.alerts.packet import (
    NONE_999_FIELDS,
    UPPER_LIMIT_FIELDS,
    build_alert,
    cutout_file_name,
    decode_alert_packet,
    embedded_schema,
    fill_record,
    make_cutout,
    read_alert_file,
    read_cutout,
    serialize_alert,
)
from zsds.alerts.schema import load_alert_schema

CUTOUT_KEYS = {"science": "cutoutScience", "template": "cutoutTemplate",
               "difference": "cutoutDifference"}  # fmt: skip


def independent_schema(folder: Path) -> dict:
    """Parse the unchanged ``.avsc`` files with fastavro alone, sub-schemas first."""
    named: dict = {}
    for name in ("cutout", "candidate", "prv_candidate", "fp_hist"):
        load_schema(str(folder / f"{name}.avsc"), named_schemas=named)
    return load_schema(str(folder / "alert.avsc"), named_schemas=named)


def stamps(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {k: rng.normal(100.0, 5.0, (63, 63)).astype(np.float32) for k in CUTOUT_KEYS}
    out["difference"][0, :3] = np.nan  # off-chip pixels are NaN in real stamps
    return out


# ------------------------------------------------------------------------------------ cutouts
def test_cutout_is_gzipped_ztf_fits():
    stamp = stamps()["difference"]
    cutout = make_cutout(stamp, "x.fits.gz")
    assert cutout["fileName"] == "x.fits.gz"
    raw = gzip.decompress(cutout["stampData"])
    assert len(raw) == 20160  # as the real stamps: one header block + 63*63*4 bytes, padded
    with fits.open(io.BytesIO(raw)) as hdul:
        assert len(hdul) == 1
        header = hdul[0].header
        assert header["BITPIX"] == -32 and header["BUNIT"] == "DN"
        assert (header["NAXIS1"], header["NAXIS2"]) == (63, 63)
        assert not any(k.startswith(("CTYPE", "CRVAL", "CD1_", "WCSAXES")) for k in header)
    back = read_cutout(cutout)
    assert back.dtype == np.float32 and back.dtype.isnative
    np.testing.assert_array_equal(back, stamp)  # NaN compares equal here
    assert make_cutout(stamp, "x.fits.gz") == cutout  # deterministic bytes
    with pytest.raises(ValueError, match="2-D"):
        make_cutout(np.zeros(5), "bad")


def test_cutout_file_names_follow_ipac():
    assert cutout_file_name("science", 12, 3) == "candid12_pid3_targ_sci.fits.gz"
    assert cutout_file_name("template", 12, 3) == "candid12_ref.fits.gz"
    assert cutout_file_name("difference", 12, 3, "t") == "candid12_pid3_targ_scimref.fits.gz"
    assert cutout_file_name("difference", 12, 3, "f") == "candid12_pid3_targ_refmsci.fits.gz"
    with pytest.raises(ValueError, match="unknown cutout kind"):
        cutout_file_name("sky", 1, 2)


# ------------------------------------------------------------------------------------ records
def test_fill_record_casts_and_checks():
    fields = [("a", "int"), ("b", ["null", "float"]), ("c", "long"), ("s", ["null", "string"]),
              ("d", "double"), ("n", ["null", "int"])]  # fmt: skip
    rec = fill_record(
        {"a": np.int32(3), "b": np.float32(np.nan), "c": np.float64(7.0), "s": np.str_("x"),
         "d": np.float32(1.5), "unknown": 1},
        fields,
    )  # fmt: skip
    assert rec == {"a": 3, "b": None, "c": 7, "s": "x", "d": 1.5, "n": None}
    assert type(rec["a"]) is int and type(rec["c"]) is int and type(rec["d"]) is float
    assert type(rec["s"]) is str
    assert list(rec) == [f for f, _ in fields]
    with pytest.raises(ValueError, match=r"candidate field 'd' \(double\) is required"):
        fill_record({"a": 1, "c": 2, "d": float("nan")}, fields, what="candidate")
    with pytest.raises(ValueError, match=r"field 'a'.*non-integral"):
        fill_record({"a": 1.5, "c": 2, "d": 1.0}, fields)
    with pytest.raises(ValueError, match="does not fit"):
        fill_record({"a": 2**40, "c": 2, "d": 1.0}, fields)


def test_missing_non_nullable_candidate_field_raises(sample_v401):
    cand = dict(sample_v401["candidate"])
    del cand["magpsf"]
    with pytest.raises(ValueError, match="candidate field 'magpsf'"):
        build_alert("ZTF23aaaaaaa", cand, None, None)
    cand = dict(sample_v401["candidate"], rfid=None)
    with pytest.raises(ValueError, match="candidate field 'rfid'"):
        build_alert("ZTF23aaaaaaa", cand, None, None)


# ------------------------------------------------------------------------------------ packets
@pytest.mark.parametrize("sample", ["sample_v401", "sample_v33"])
def test_packet_round_trip_through_the_real_schema(request, sample, schema_folder):
    real = request.getfixturevalue(sample)
    cut = stamps()
    alert = build_alert(
        real["objectId"], real["candidate"], real["prv_candidates"], cut,
        fp_hists=real.get("fp_hists"),
    )  # fmt: skip
    payload = serialize_alert(alert)
    assert payload[:4] == b"Obj\x01"
    assert serialize_alert(alert) == payload  # deterministic

    # Decode with fastavro and the unchanged schema files, parsed independently of zsds.
    indep = independent_schema(schema_folder)
    reader = fastavro.reader(io.BytesIO(payload), reader_schema=indep)
    assert reader.codec == "null"
    assert json.loads(reader.metadata["avro.schema"])["name"] == "ztf.alert"
    records = list(reader)
    assert len(records) == 1
    got = records[0]
    assert validate(got, indep)

    assert got["schemavsn"] == "4.02" and got["publisher"] == "zsds"
    assert got["objectId"] == real["objectId"] and got["candid"] == real["candid"]
    # Every candidate field of the real packet round-trips exactly (float32 stays float32).
    for name, value in real["candidate"].items():
        assert got["candidate"][name] == value, name
    assert len(got["prv_candidates"]) == len(real["prv_candidates"])
    for mine, theirs in zip(got["prv_candidates"], real["prv_candidates"], strict=True):
        if theirs["candid"] is None:  # upper limit: only the non-detection fields are set
            assert {k for k, v in mine.items() if v is not None} <= UPPER_LIMIT_FIELDS
        for name, value in theirs.items():
            assert mine[name] == value, name
    if real.get("fp_hists"):
        assert got["fp_hists"] == real["fp_hists"]
    for kind, field in CUTOUT_KEYS.items():
        # Same file names as IPAC gave this candidate.
        assert got[field]["fileName"] == real[field]["fileName"]
        np.testing.assert_array_equal(read_cutout(got[field]), cut[kind])
    # And our own reader gives the same.
    assert read_alert_file(payload)[0]["candidate"] == got["candidate"]


def test_upper_limits_keep_only_non_detection_fields(sample_v401):
    prv = [dict(sample_v401["candidate"], candid=None, magpsf=18.0, ra=1.0)]
    alert = build_alert("ZTF23aaaaaaa", sample_v401["candidate"], prv, {"science": None})
    limit = alert["prv_candidates"][0]
    assert limit["magpsf"] is None and limit["ra"] is None and limit["candid"] is None
    assert limit["diffmaglim"] == pytest.approx(sample_v401["candidate"]["diffmaglim"])
    assert alert["cutoutScience"] is None and alert["fp_hists"] is None
    payload = serialize_alert(alert)
    assert read_alert_file(payload)[0]["prv_candidates"][0] == limit
    with pytest.raises(ValueError, match="unknown cutout keys"):
        build_alert("ZTF23aaaaaaa", sample_v401["candidate"], None, {"sci": None})


def test_serialize_rejects_a_non_conformant_record(sample_v401):
    alert = build_alert("ZTF23aaaaaaa", sample_v401["candidate"], None, None)
    with pytest.raises(ValidationError):
        serialize_alert(dict(alert, candid="not-a-long"))


def test_decode_from_path_bytes_and_file(data_dir: Path):
    path = data_dir / "ztf-avro-alert/data/2019_01_10_739260766315010006.avro"
    records, writer = decode_alert_packet(path)
    assert writer["name"] == "ztf.alert" and records[0]["schemavsn"] == "3.2"
    assert read_alert_file(path.read_bytes()) == records
    with path.open("rb") as fo:
        assert read_alert_file(fo) == records


# ------------------------------------------------------------------------ ZTF conventions
def test_candidate_gets_ztf_none_values(sample_v401):
    """Missing catalogue neighbours are -999, no solar-system match is "null", and scorr is
    the detection's significance also for a negative event, as in real packets."""
    cand = dict(sample_v401["candidate"], isdiffpos="f", scorr=-14.5, ssnamenr=None,
                ssdistnr=None, ssmagnr=float("nan"))
    for name in NONE_999_FIELDS:
        cand[name] = None
    alert = build_alert("ZTF26aaaaaaa", cand, None, None)
    got = alert["candidate"]
    assert {got[name] for name in NONE_999_FIELDS} == {-999}
    assert got["ssnamenr"] == "null" and got["scorr"] == 14.5
    # Values that are there are kept.
    kept = build_alert("ZTF26aaaaaaa", sample_v401["candidate"], None, None)["candidate"]
    assert kept == sample_v401["candidate"]


def test_previous_detections_follow_ztf(sample_v401):
    base = dict(sample_v401["candidate"], candid=1, isdiffpos="f", scorr=-7.0)
    plain = dict(base, ssnamenr=None, ssdistnr=-999.0, ssmagnr=-999.0)
    matched = dict(base, candid=2, ssnamenr="340736", ssdistnr=24.0, ssmagnr=21.3)
    alert = build_alert("ZTF26aaaaaaa", sample_v401["candidate"], [plain, matched], None)
    first, second = alert["prv_candidates"]
    assert (first["ssnamenr"], first["ssdistnr"], first["ssmagnr"]) == (None, None, None)
    assert (second["ssnamenr"], second["ssdistnr"]) == ("340736", 24.0)
    assert first["scorr"] == second["scorr"] == 7.0


def test_embedded_schema_is_the_same_whatever_was_imported_first(tmp_path, sample_v401):
    """fastavro orders a parsed schema's keys by what was imported before it (a validator
    first puts ``doc`` before ``default``); the packets must not depend on that."""
    code = (
        "{pre}\n"
        "import sys\n"
        "from zsds.alerts.packet import build_alert, read_alert_file, serialize_alert\n"
        "a = read_alert_file(sys.argv[1])[0]\n"
        "alert = build_alert(a['objectId'], a['candidate'], a['prv_candidates'], None,\n"
        "                    fp_hists=a['fp_hists'])\n"
        "sys.stdout.buffer.write(serialize_alert(alert))\n"
    )
    sample = TEST_DATA / "alerts/kowalski/20231012/2475433850015010009.avro"
    out = [subprocess.run([sys.executable, "-c", code.format(pre=pre), str(sample)],
                          capture_output=True, check=True).stdout
           for pre in ("", "import fastavro.validation")]
    assert out[0] == out[1]
    header = fastavro.reader(io.BytesIO(out[0])).metadata["avro.schema"]
    assert header == json.dumps(json.loads(header), sort_keys=True)
    assert embedded_schema(load_alert_schema()) == json.loads(header)
