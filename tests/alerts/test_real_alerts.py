"""Every real ZTF packet of ``tests/data`` (schema 1.7 .. 4.01) decodes, formats and tails."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.alerts.helpers import real_alert_files
from tests.conftest import TEST_DATA
from zsds.alerts.packet import decode_alert_packet, read_alert_file, read_cutout
from zsds.alerts.tail import format_line, summarize
from zsds.cli.alerts_cmd import alerts

FILES = real_alert_files()


def test_the_real_packets_are_there(data_dir: Path):
    assert len(FILES) >= 60, f"expected ~62 real packets under {data_dir}"
    versions = {decode_alert_packet(f)[1].get("version") for f in FILES}
    assert {"2.0", "3.3", "4.01"} <= versions


@pytest.mark.parametrize(
    "path", FILES, ids=[str(f.relative_to(TEST_DATA)) for f in FILES]
)
def test_real_packet_decodes_and_formats(path: Path):
    records = read_alert_file(path)
    assert len(records) == 1
    alert = records[0]
    candid = alert["candid"]
    assert str(candid) in path.name and alert["candidate"]["candid"] == candid
    assert re.fullmatch(r"ZTF\d\d[a-z]{7}", alert["objectId"])
    line = format_line(alert)
    assert alert["objectId"] in line and str(candid) in line and "\n" not in line
    info = summarize(alert)
    assert info["band"] in ("g", "r", "i") and info["utc"].startswith("20")
    if "drb" not in alert["candidate"]:
        assert "drb=- " in line
    for field in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
        stamp = read_cutout(alert[field])
        assert stamp.ndim == 2 and max(stamp.shape) <= 63 and stamp.dtype == np.float32


def test_tail_cli_prints_one_line_per_packet(data_dir: Path):
    res = CliRunner().invoke(alerts, ["tail", str(data_dir)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) == len(FILES)
    assert f"{len(FILES)} alert(s)" in res.stderr
    assert any(ln.startswith("4.01 ") for ln in lines)
    assert any(ln.startswith("(1.7) ") for ln in lines)  # 1.x packets have no schemavsn


def test_tail_cli_table_and_usage_errors(data_dir: Path):
    one = data_dir / "ztf-avro-alert" / "data"
    res = CliRunner().invoke(alerts, ["tail", "--table", str(one)])
    assert res.exit_code == 0, res.output
    assert "objectId" in res.stdout and "ZTF17aaacxxf" in res.stdout
    res = CliRunner().invoke(alerts, ["tail"])
    assert res.exit_code != 0 and "--kafka" in res.output
    res = CliRunner().invoke(alerts, ["tail", "--topic", "x", str(one)])
    assert res.exit_code != 0 and "need --kafka" in res.output
