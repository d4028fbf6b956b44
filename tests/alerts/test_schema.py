"""Locating and parsing the real ZTF alert schema (v4.02)."""

from __future__ import annotations

import csv
import re
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


def test_record_fields_match_the_field_table(schema_folder: Path):
    """Names, order and types agree with ``schema_fields_v4.02.tsv`` (103/57/29/2/10 fields)."""
    with (schema_folder.parent / "schema_fields_v4.02.tsv").open() as fo:
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


def test_env_overrides_and_clear_errors(monkeypatch, tmp_path: Path, data_dir: Path):
    monkeypatch.setenv("ZSDS_SHARED", str(data_dir.parent))
    assert sch.shared_dir() == data_dir.parent
    monkeypatch.setenv("ZSDS_SHARED", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="ZSDS_SHARED"):
        sch.shared_dir()
    monkeypatch.delenv("ZSDS_SHARED")
    monkeypatch.setenv("ZSDS_ALERT_SCHEMA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"no alert\.avsc"):
        sch.schema_dir()


def test_shared_dir_search_names_what_it_searched(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("ZSDS_SHARED", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sch, "__file__", str(tmp_path / "pkg" / "schema.py"))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "shared"))):
        sch.shared_dir()
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert sch.shared_dir() == tmp_path.resolve() / "shared"
