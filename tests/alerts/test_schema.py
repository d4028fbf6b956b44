"""Locating and parsing the real ZTF alert schema (v4.02)."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import pytest

from zsds.alerts import schema as sch


def test_schema_is_found_and_parsed(schema_folder: Path):
    assert sch.schema_dir().resolve() == schema_folder.resolve()
    parsed = sch.load_alert_schema()
    assert parsed["name"] == "ztf.alert"
    assert sch.load_alert_schema() is parsed  # cached
    assert sch.load_alert_schema(schema_folder / "alert.avsc") is parsed
    assert sch.schema_version(parsed) == "4.02"


def test_record_fields_match_the_field_table(test_data: Path):
    """Names, order and types agree with ``schema_fields_v4.02.tsv`` (103/57/29/2/10 fields)."""
    with (test_data / "ztf-avro-alert" / "schema_fields_v4.02.tsv").open() as fo:
        rows = list(csv.DictReader(fo, delimiter="\t"))
    counts = {"alert": 10, "candidate": 103, "prv_candidate": 57, "fp_hist": 29, "cutout": 2}
    for record, n in counts.items():
        fields = sch.record_fields(None, record)
        assert len(fields) == n
        table = [(r["field"], r["type"]) for r in rows if r["record"] == record]
        assert [name for name, _ in fields] == [name for name, _ in table]
        for (name, avro_type), (_, tsv_type) in zip(fields, table, strict=True):
            if isinstance(avro_type, str):
                assert avro_type == tsv_type, name
            elif isinstance(avro_type, list) and all(isinstance(t, str) for t in avro_type):
                assert "|".join(avro_type) == tsv_type, name
    assert dict(sch.record_fields(None, "candidate"))["magpsf"] == "float"
    assert dict(sch.record_fields(None, "prv_candidate"))["magpsf"] == ["null", "float"]
    with pytest.raises(KeyError, match="no record 'nope'"):
        sch.record_fields(None, "nope")


def test_env_overrides_and_clear_errors(monkeypatch, tmp_path: Path, schema_folder: Path):
    monkeypatch.delenv("ZSDS_ALERT_SCHEMA_DIR", raising=False)
    assert sch.schema_dir() == schema_folder
    other = tmp_path / "v9"
    shutil.copytree(schema_folder, other)
    monkeypatch.setenv("ZSDS_ALERT_SCHEMA_DIR", str(other))
    assert sch.schema_dir() == other
    monkeypatch.setenv("ZSDS_ALERT_SCHEMA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"no alert\.avsc .*ZSDS_ALERT_SCHEMA_DIR"):
        sch.schema_dir()
    with pytest.raises(FileNotFoundError, match=r"no alert schema version '0\.1'"):
        sch.packaged_schema_dir("0.1")


#: sha256 of the upstream files (ZwickyTransientFacility/ztf-avro-alert ``schema/`` at 75a9831):
#: the packaged interface data must stay byte-identical to what ZTF publishes.
UPSTREAM_SHA256 = {
    "alert.avsc": "9fc911a451b78109626175e522d287ba8de44282ce632a2d0e9d6ccc7a1ff828",
    "candidate.avsc": "e6e5d2f7d396e7ef66d8e1c1cd47484e862121a5d2cfac7e35a82768227ba146",
    "cutout.avsc": "296411ea9f5be86fbe2454dcb5d130fe0a345a173c02f1c5e614a5abda86c2a9",
    "fp_hist.avsc": "6b04494ea59cb0a15ba6042030b0dff8bedba98280d1e86d8ccf1d2296324d96",
    "prv_candidate.avsc": "944cc95acfcbe4618e8145fc2f22ee034c8edd210398b105002720b816a9302c",
}


def test_packaged_schema_is_the_upstream_schema(schema_folder: Path):
    got = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
           for p in schema_folder.glob("*.avsc")}
    assert got == UPSTREAM_SHA256
    assert "/zsds/data/alert_schema/4.02" in schema_folder.as_posix()
