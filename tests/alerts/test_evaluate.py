"""Field-by-field realism statistics of packets, and ``zsds eval alerts``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import TEST_DATA
from zsds.alerts.archive import write_packet
from zsds.alerts.evaluate import (
    always_null_fields,
    compare,
    is_v4,
    packet_stats,
    read_packets,
    report_lines,
    summarize_packets,
)
from zsds.alerts.packet import build_alert, read_alert_file, serialize_alert
from zsds.cli.main import cli

REAL = TEST_DATA / "alerts"
TOPIC = "ztf_20231012_programid1"


@pytest.fixture(scope="module")
def real():
    return read_packets([REAL])


def ours_from(real_packets, **change):
    """zsds packets rebuilt from the real v4 candidates, with some values changed."""
    out = []
    for alert, _, _ in real_packets:
        if not str(alert.get("schemavsn", "")).startswith("4."):
            continue
        cand = dict(alert["candidate"], **change)
        payload = serialize_alert(build_alert(alert["objectId"], cand, alert["prv_candidates"],
                                              None, fp_hists=alert["fp_hists"]))
        out.append(payload)
    return out


def test_statistics_of_the_real_packets(real):
    stats = packet_stats(real)
    assert stats.n == len(real) >= 58 and stats.versions["4.01"] == 24
    f = stats.fields
    assert f.loc["candidate.ssnamenr", "nullstr"] > 0.5  # "null": no known asteroid
    assert f.loc["candidate.sgmag1", "sentinel"] > 0  # -999: PS1 has no g
    assert f.loc["fp_hist.forcediffimflux", "sentinel"] > 0  # -99999: no flux
    assert f.loc["prv_ul.magpsf", "null"] == 1.0
    figures = summarize_packets(stats)
    assert 40 < figures["kbytes_median"] < 100
    assert 0 < figures["stamps_with_nan_fraction"] < 0.5
    real4 = packet_stats([p for p in real if is_v4(p)])
    assert always_null_fields(real4, real4) == []
    assert compare(real4, real4).empty


def test_a_field_always_null_is_found(real):
    payloads = ours_from(real, drb=None, ssnamenr=None)
    ours = [(read_alert_file(p)[0], len(p), "4.02") for p in payloads]
    stats = packet_stats(ours)
    real4 = packet_stats([p for p in real if is_v4(p)])
    assert always_null_fields(stats, real4) == ["candidate.drb"]
    # ssnamenr None became "null", as in real packets: no convention difference.
    diff = compare(stats, packet_stats(real))
    assert "candidate.ssnamenr" not in set(diff.field)
    assert ("candidate.drb", "null") in set(zip(diff.field, diff.check, strict=True))
    text = "\n".join(report_lines(stats, packet_stats(real), real4))
    assert "always null in zsds: 1 (1 unexplained)" in text and "candidate.drb" in text


def test_eval_alerts_command(tmp_path: Path, real):
    for payload in ours_from(real, drb=None):
        write_packet(tmp_path / "alerts", TOPIC, read_alert_file(payload)[0]["candid"],
                     payload)
    res = CliRunner().invoke(cli, ["eval", "alerts", "--home", str(tmp_path), "--night",
                                   "2023-10-12", "--against", str(REAL)])
    assert res.exit_code == 0, res.output
    assert "packets: zsds 24 (v4.02: 24); real" in res.output
    assert "always null in zsds: 1 (1 unexplained)" in res.output
    assert "  candidate.drb" in res.output
    res = CliRunner().invoke(cli, ["eval", "alerts", "--home", str(tmp_path), "--night",
                                   "2023-10-13"])
    assert res.exit_code != 0 and "no alert packets" in res.output
    (tmp_path / "alerts" / TOPIC / "9.avro").write_bytes(b"garbage")
    res = CliRunner().invoke(cli, ["eval", "alerts", "--home", str(tmp_path)])
    assert res.exit_code != 0 and "9.avro" in res.output and "Traceback" not in res.output
