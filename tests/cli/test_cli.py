"""The command line: one clear error line for bad input, working simulate commands."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from zsds.cli.main import cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--night", "2026-02-30", "--exposures", "1"], "invalid night '2026-02-30'"),
        (
            ["--night", "2026-11-20", "--exposures", "1", "--fields", "4000"],
            "unknown ZTF field id 4000",
        ),
        (
            ["--night", "2026-11-20", "--exposures", "1", "--quad-size", "100"],
            "quadrant size 100 is not allowed",
        ),
        (["--night", "2026-11-20", "--exposures", "1", "--ccds", "0"], "CCD id must be 1..16"),
        (["--night", "2026-11-20", "--exposures", "1", "--fields", "x"], "invalid field list"),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path, args, message):
    res = CliRunner().invoke(cli, ["simulate", "night", "--home", str(tmp_path), *args])
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert lines[0].startswith("Error: ") and message in lines[0]
    assert "Traceback" not in res.output


def test_simulate_calib_and_night(tmp_path):
    runner = CliRunner()
    home = str(tmp_path / "h")
    res = runner.invoke(
        cli,
        [
            "simulate",
            "calib",
            "--home",
            home,
            "--night",
            "2026-11-20",
            "--quad-size",
            "256",
            "--ccds",
            "3",
            "--n-bias",
            "2",
            "--n-flat",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "wrote 5 raw calibration files" in res.output
    res = runner.invoke(
        cli,
        [
            "simulate",
            "night",
            "--home",
            home,
            "--night",
            "2026-11-20",
            "--exposures",
            "2",
            "--quad-size",
            "256",
            "--ccds",
            "3",
            "--no-asteroids",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "wrote 2 raw files (2 exposures" in res.output
    assert len(list((tmp_path / "h" / "incoming").glob("*.fits.fz"))) == 7


def test_home_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ZSDS_HOME", str(tmp_path / "envhome"))
    res = CliRunner().invoke(
        cli,
        [
            "simulate",
            "calib",
            "--night",
            "2026-11-20",
            "--quad-size",
            "256",
            "--ccds",
            "1",
            "--n-bias",
            "1",
            "--n-flat",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "envhome" / "incoming").glob("*_b.fits.fz"))) == 1


def test_ingest_and_calibrate_exit_1_when_work_failed(tmp_path):
    """A quarantined raw file fails ``zsds ingest``; quadrants that cannot be calibrated (no
    master bias) fail ``zsds calibrate``; each ends with one line and leaves no job running."""
    from sqlalchemy import select

    from zsds.core.home import Home
    from zsds.db import connect
    from zsds.db.engine import session
    from zsds.db.schema import Job

    runner = CliRunner()
    home = tmp_path / "h"
    res = runner.invoke(cli, ["simulate", "night", "--home", str(home), "--night", "2026-11-20",
                              "--exposures", "1", "--quad-size", "256", "--ccds", "3",
                              "--no-asteroids"])
    assert res.exit_code == 0, res.output
    bad = home / "incoming" / "ztf_20261120300000_000645_zr_c03_o.fits.fz"
    bad.write_bytes(b"not a FITS file")
    res = runner.invoke(cli, ["ingest", "--home", str(home)])
    assert res.exit_code == 1, res.output
    assert "ingest: 1 ingested, 1 quarantined" in res.output
    assert res.output.splitlines()[-1] == (
        f"Error: ingest: 1 file(s) quarantined under {home / 'quarantine'}; see zsds status "
        f"--home {home}")
    res = runner.invoke(cli, ["calibrate", "--home", str(home), "--night", "2026-11-20"])
    assert res.exit_code == 1, res.output
    assert "no valid master bias" in res.output
    assert res.output.splitlines()[-1] == (
        f"Error: calibrate: 4 quadrant(s) failed; see zsds status --home {home}")
    engine = connect(Home.resolve(home).db_url)
    with session(engine) as s:
        jobs = s.execute(select(Job.stage, Job.state)).all()
    engine.dispose()
    assert sorted(jobs) == [("calibrate", "failed")] * 4
