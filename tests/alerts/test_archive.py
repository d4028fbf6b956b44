"""The nightly archive: atomic idempotent packet files, tarballs, iteration."""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from zsds.alerts.archive import (
    archive_dir,
    iter_archive,
    pack_night,
    tarball_name,
    write_packet,
)
from zsds.cli.alerts_cmd import alerts

TOPIC = "ztf_20261120_programid1"


def test_write_packet_is_idempotent_and_atomic(tmp_path: Path):
    assert archive_dir(tmp_path, TOPIC) == tmp_path / TOPIC
    first = write_packet(tmp_path, TOPIC, 123, b"one")
    again = write_packet(tmp_path, TOPIC, 123, b"two")
    assert first == again == tmp_path / TOPIC / "123.avro"
    assert [p.name for p in (tmp_path / TOPIC).iterdir()] == ["123.avro"]  # no tmp leftovers
    assert first.read_bytes() == b"two"
    with pytest.raises(ValueError, match="invalid alert topic"):
        write_packet(tmp_path, "../escape", 1, b"x")


def test_pack_night_and_iterate(tmp_path: Path):
    for candid in (30, 4, 100):
        write_packet(tmp_path, TOPIC, candid, f"packet {candid}".encode())
    tarball = pack_night(tmp_path, TOPIC)
    assert tarball == tmp_path / "ztf_public_20261120.tar.gz"
    with tarfile.open(tarball) as tar:
        assert tar.getnames() == ["4.avro", "30.avro", "100.avro"]  # by candid
    first = tarball.read_bytes()
    assert pack_night(tmp_path, TOPIC).read_bytes() == first  # deterministic

    got = list(iter_archive([tarball]))
    assert [label.rsplit(":", 1)[1] for label, _ in got] == ["4.avro", "30.avro", "100.avro"]
    assert got[0][1] == b"packet 4"
    # A folder is searched recursively, for packets and tarballs alike.
    from_folder = [payload for _, payload in iter_archive([tmp_path])]
    assert sorted(from_folder) == sorted([b"packet 4", b"packet 30", b"packet 100"] * 2)
    assert tarball_name("ztf_20180401_programid2") == "ztf_partnership_20180401.tar.gz"


def test_iter_archive_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        list(iter_archive([tmp_path / "none.avro"]))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"not an \.avro packet"):
        list(iter_archive([tmp_path / "x.txt"]))
    with pytest.raises(FileNotFoundError, match="no packets"):
        pack_night(tmp_path, TOPIC)


def test_tail_reads_a_tarball_of_real_packets(tmp_path: Path, data_dir: Path):
    real = sorted((data_dir / "alerts" / "kowalski" / "20231012").glob("*.avro"))
    for path in real:
        write_packet(tmp_path, "ztf_20231012_programid1", int(path.stem), path.read_bytes())
    tarball = pack_night(tmp_path, "ztf_20231012_programid1")
    shutil.rmtree(tmp_path / "ztf_20231012_programid1")
    res = CliRunner().invoke(alerts, ["tail", str(tarball)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) == len(real) and all(ln.startswith("4.01 ") for ln in lines)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_archived_files_are_readable_as_the_umask_allows(tmp_path: Path, umask, mode):
    old = os.umask(umask)
    try:
        packet = write_packet(tmp_path, TOPIC, 7, b"packet")
        tarball = pack_night(tmp_path, TOPIC)
    finally:
        os.umask(old)
    assert stat.S_IMODE(packet.stat().st_mode) == mode  # not mkstemp's 0600
    assert stat.S_IMODE(tarball.stat().st_mode) == mode


def test_tail_exits_non_zero_on_a_corrupt_packet(tmp_path: Path, data_dir: Path):
    real = next((data_dir / "alerts" / "kowalski" / "20231012").glob("*.avro"))
    good = write_packet(tmp_path, TOPIC, 1, real.read_bytes())
    write_packet(tmp_path, TOPIC, 2, real.read_bytes()[:5000])  # truncated
    res = CliRunner().invoke(alerts, ["tail", str(tmp_path / TOPIC)])
    assert res.exit_code == 1
    assert len(res.stdout.splitlines()) == 1  # the good one is still shown
    assert "2.avro" in res.stderr and "1 packet(s) could not be decoded" in res.stderr
    res = CliRunner().invoke(alerts, ["tail", str(good)])
    assert res.exit_code == 0, res.output
