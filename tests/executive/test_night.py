"""The executive on Dask: a night on a local cluster and on a separately started scheduler and
workers gives the same products; a killed worker loses no quadrant and duplicates no alert; a
re-run skips what is done and re-runs only what failed; watch mode follows a night as it lands.

A first night of 16 epochs (one 512 px CCD) is run once through the executive: calibrations,
calibration of every quadrant, references at the end. Each test then copies that home, adds a
second night of 3 exposures (identical raw files: same seed) and runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from zsds.core.home import Home
from zsds.db import connect, init_db
from zsds.db.engine import session
from zsds.db.schema import AlertRecord, Candidate, Job
from zsds.executive import ExecConfig, Executive
from zsds.sim.run import simulate_calib, simulate_night

N1, N2 = "2026-11-20", "2026-11-21"
CCD, FIELD, SIZE = 6, 645, 512
DASK = str(Path(sys.executable).with_name("dask"))


def _night2(home: Home, realtime: float | None = None) -> None:
    simulate_night(home, N2, 3, [FIELD], SIZE, [CCD], seed=4, filters=("r",),
                   realtime_speedup=realtime)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("exec") / "base"
    home = Home.resolve(root)
    simulate_calib(home, N1, SIZE, [CCD], seed=2, n_bias=5, n_flat=3, filters=("r",))
    simulate_night(home, N1, 16, [FIELD], SIZE, [CCD], seed=3, filters=("r",))
    engine = connect(home.db_url)
    init_db(engine)
    with Executive(home, engine, ExecConfig(n_workers=2)) as ex:
        s = ex.run_night(N1)
    assert s.failed == 0 and s.quadrants == 64 and s.no_reference == 64
    assert s.refs_built == 4
    engine.dispose()
    return root


def _copy(base: Path, dest: Path) -> tuple[Home, object]:
    shutil.copytree(base, dest)
    home = Home.resolve(dest)
    engine = connect(home.db_url)
    init_db(engine)
    return home, engine


def _candidates(engine) -> tuple[list[tuple], set[frozenset]]:
    """Candidates (id, magnitude, cut) and their grouping into objects. Names themselves depend
    on the order in which parallel workers first saw each object, so only the grouping is
    compared."""
    with session(engine) as s:
        rows = s.execute(select(Candidate).order_by(Candidate.candid)).scalars().all()
        groups: dict[str, set[int]] = {}
        for c in rows:
            groups.setdefault(c.object_id, set()).add(c.candid)
        return ([(c.candid, round(c.magpsf or 0, 4), c.passed) for c in rows],
                {frozenset(g) for g in groups.values()})


class ExternalCluster:
    """``dask scheduler`` and single-threaded ``dask worker`` processes, started separately."""

    def __init__(self, tmp: Path, n_workers: int = 2) -> None:
        self.file = tmp / "scheduler.json"
        common = ["--no-dashboard"]
        self.scheduler = subprocess.Popen(
            [DASK, "scheduler", "--scheduler-file", str(self.file), "--port", "0", *common],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(300):
            if self.file.exists() and self.file.stat().st_size:
                break
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text())["address"]
        self.workers = [subprocess.Popen(
            [DASK, "worker", "--scheduler-file", str(self.file), "--nthreads", "1",
             "--nworkers", "1", "--memory-limit", "4GB", *common],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            for _ in range(n_workers)]
        from distributed import Client

        with Client(self.address, timeout=30) as c:
            c.wait_for_workers(n_workers, timeout=60)

    def kill_worker(self, k: int) -> None:
        os.killpg(self.workers[k].pid, signal.SIGKILL)

    def close(self) -> None:
        for p in [*self.workers, self.scheduler]:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def test_local_and_external_cluster_give_the_same_products(base, tmp_path):
    ha, ea = _copy(base, tmp_path / "a")
    hb, eb = _copy(base, tmp_path / "b")
    _night2(ha)
    _night2(hb)
    with Executive(ha, ea, ExecConfig(n_workers=2)) as ex:
        sa = ex.run_night(N2)
    cluster = ExternalCluster(tmp_path)
    try:
        with Executive(hb, eb, ExecConfig(scheduler=cluster.address)) as ex:
            sb = ex.run_night(N2)
    finally:
        cluster.close()
    for s in (sa, sb):
        assert s.quadrants == 12 and s.subtracted == 12 and s.failed == 0
        assert s.exposures == 3 and s.latency_p95_s is not None
    assert sb.workers == 2
    ca, cb = _candidates(ea), _candidates(eb)
    assert ca[0] and ca == cb
    fa = sorted(p.name for p in ha.alerts.rglob("*.avro"))
    assert fa == sorted(p.name for p in hb.alerts.rglob("*.avro")) and len(fa) == sa.alerts
    # The summary is stored (database and JSON).
    assert (ha.root / "logs" / "night_20261121_batch.json").exists()

    # Re-running is idempotent: nothing done twice.
    with Executive(ha, ea, ExecConfig(n_workers=1, build_refs=False)) as ex:
        again = ex.run_night(N2)
    assert again.quadrants == 0 and again.skipped_done == 12
    assert _candidates(ea) == ca


def test_killed_worker_loses_no_quadrant_and_duplicates_no_alert(base, tmp_path):
    from zsds.alerts.broker import LocalBroker
    from zsds.alerts.kafka import consume_alerts

    home, engine = _copy(base, tmp_path / "k")
    _night2(home)
    cluster = ExternalCluster(tmp_path)
    result = {}
    try:
        with LocalBroker() as broker:
            cfg = ExecConfig(scheduler=cluster.address, kafka=broker.bootstrap,
                             build_refs=False)

            def run() -> None:
                with Executive(home, engine, cfg) as ex:
                    result["summary"] = ex.run_night(N2)

            t = threading.Thread(target=run)
            t.start()
            # Kill a worker once the night is under way (some quadrant calibrated).
            for _ in range(600):
                with session(engine) as s:
                    n = s.scalar(select(func.count()).select_from(Job).where(
                        Job.stage == "calibrate", Job.state == "done",
                        Job.key.like("36110%")))
                if n:
                    break
                time.sleep(0.1)
            cluster.kill_worker(0)
            t.join(300)
            assert not t.is_alive()
            got = [int(m.key) for m in consume_alerts(broker.bootstrap, "^ztf_.*", "check",
                                                      idle_timeout=3.0)]
    finally:
        cluster.close()
    s = result["summary"]
    assert s.quadrants == 12 and s.failed == 0 and s.subtracted == 12
    files = sorted(int(p.stem) for p in home.alerts.rglob("*.avro"))
    assert files and sorted(got) == files  # every alert exactly once
    with session(engine) as ss:
        assert ss.scalar(select(func.count()).select_from(AlertRecord).where(
            AlertRecord.sent_at.is_not(None))) == len(files)


def test_failure_is_isolated_and_rerun_takes_only_the_failed(base, tmp_path):
    home, engine = _copy(base, tmp_path / "f")
    _night2(home)
    # Break quadrant 2's reference: its subtractions fail, the other quadrants do not.
    psf = next(home.products.rglob("*_q2_refpsf.fits"))
    hidden = psf.with_suffix(".hidden")
    psf.rename(hidden)
    with Executive(home, engine, ExecConfig(n_workers=2, build_refs=False, retries=0)) as ex:
        s = ex.run_night(N2)
    assert s.failed == 3 and s.subtracted == 9
    with session(engine) as ss:
        failed = ss.execute(select(Job).where(Job.stage == "subtract",
                                              Job.state == "failed")).scalars().all()
        assert len(failed) == 3 and all("refpsf" in (j.error or "") for j in failed)
    hidden.rename(psf)
    with Executive(home, engine, ExecConfig(n_workers=2, build_refs=False)) as ex:
        s2 = ex.run_night(N2)
    assert s2.skipped_done == 9 and s2.quadrants == 3 and s2.failed == 0


def test_watch_follows_a_realtime_night(base, tmp_path):
    home, engine = _copy(base, tmp_path / "w")
    t = threading.Thread(target=_night2, args=(home, 20.0))
    with Executive(home, engine, ExecConfig(n_workers=2)) as ex:
        t.start()
        # The first exposure takes its own time to simulate (longer on a loaded machine):
        # the watch's idle clock starts once the night has begun.
        for _ in range(600):
            if any(home.incoming.glob("*_o.fits.fz")):
                break
            time.sleep(0.2)
        out = ex.watch(idle=8.0, poll=0.5)
    t.join()
    assert len(out) == 1
    s = out[0]
    assert s.mode == "watch" and s.files == 3 and s.quadrants == 12 and s.failed == 0
    assert s.latency_max_s is not None and s.latency_max_s < 120


def test_cli_night_run_and_status(base, tmp_path):
    from click.testing import CliRunner

    from zsds.cli.main import cli

    home, _ = _copy(base, tmp_path / "c")
    _night2(home)
    r = CliRunner().invoke(cli, ["night", "run", "--home", str(home.root), "--night", N2,
                                 "--workers", "2", "--no-refs"])
    assert r.exit_code == 0, r.output
    assert "12: 12 subtracted" in r.output
    r = CliRunner().invoke(cli, ["status", "--home", str(home.root)])
    assert r.exit_code == 0, r.output
    assert "subtract" in r.output and "night 2026-11-21 batch: 12 quadrants" in r.output
    r = CliRunner().invoke(cli, ["night", "run", "--home", str(home.root), "--night",
                                 "2026-02-30"])
    assert r.exit_code != 0 and "Traceback" not in r.output


def _job_states(home: Home) -> set[str]:
    engine = connect(home.db_url)
    with session(engine) as ss:
        states = set(ss.execute(select(Job.state).distinct()).scalars())
    engine.dispose()
    return states


def test_a_broken_stage_fails_the_command_and_leaves_no_job_running(base, tmp_path,
                                                                     monkeypatch):
    """A stage that raises (here: packets, with no alert schema where one is configured)
    makes ``night run`` exit non-zero with one line, every such job ``failed``; a job a dead
    process left ``running`` is shown stale and redone by the next run."""
    from click.testing import CliRunner

    from zsds.cli.main import cli

    home, engine = _copy(base, tmp_path / "b")
    _night2(home)
    args = ["night", "run", "--home", str(home.root), "--night", N2, "--workers", "2",
            "--no-refs"]
    monkeypatch.setenv("ZSDS_ALERT_SCHEMA_DIR", str(tmp_path / "no-schema"))
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1, r.output
    assert r.output.splitlines()[-1] == (
        f"Error: night run: night {N2}: 12 quadrant(s) failed; see zsds status --home "
        f"{home.root}")
    with session(engine) as ss:
        packets = ss.execute(select(Job).where(Job.stage == "packets",
                                               Job.state == "failed")).scalars().all()
        assert len(packets) == 12 and all("no alert.avsc" in j.error for j in packets)
    assert "running" not in _job_states(home)
    monkeypatch.delenv("ZSDS_ALERT_SCHEMA_DIR")
    # A packets job left 'running' by a process that no longer exists.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    with session(engine) as ss:
        j = ss.execute(select(Job).where(Job.stage == "packets",
                                         Job.state == "failed")).scalars().first()
        j.state, j.pid = "running", int(dead.stdout)
    r = CliRunner().invoke(cli, ["status", "--home", str(home.root)])
    assert "running (stale: process gone)" in r.output and "1 stale" in r.output
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert _job_states(home) <= {"done", "skipped"}
    summary = json.loads((home.root / "logs" / "night_20261121_batch.json").read_text())
    assert summary["stale"] == 1 and summary["alerts"] > 0 and summary["failed"] == 0


def test_demo(tmp_path):
    """The README's main command: two small nights end to end, alerts archived."""
    from click.testing import CliRunner

    from zsds.cli.main import cli

    r = CliRunner().invoke(cli, ["demo", "--home", str(tmp_path / "demo"), "--exposures", "2"])
    assert r.exit_code == 0, r.output
    home = Home.resolve(tmp_path / "demo")
    assert list(home.alerts.rglob("*.avro"))
    assert _job_states(home) <= {"done", "skipped"}
    assert (home.root / "logs" / "night_20261121_batch.json").exists()
    summary = json.loads((home.root / "logs" / "night_20261121_batch.json").read_text())
    assert summary["subtracted"] == 8 and summary["failed"] == 0


def test_night_on_postgresql(tmp_path):
    """The same executive with PostgreSQL as the metadata database (workers connect by URL)."""
    import uuid

    from sqlalchemy import text

    from tests.db.conftest import PG_URL

    try:
        admin = connect(PG_URL, connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:
        if os.environ.get("ZSDS_REQUIRE_PG"):
            raise
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    schema = f"zsds_exec_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        home = Home.resolve(tmp_path / "pg", url)
        simulate_calib(home, N1, 256, [CCD], seed=2, n_bias=5, n_flat=3, filters=("r",))
        simulate_night(home, N1, 2, [FIELD], 256, [CCD], seed=3, filters=("r",))
        engine = connect(url)
        init_db(engine)
        with Executive(home, engine, ExecConfig(n_workers=2)) as ex:
            s = ex.run_night(N1)
        assert s.files == 10 and s.quadrants == 8 and s.failed == 0 and s.no_reference == 8
        with session(engine) as ss:
            states = dict(ss.execute(select(Job.stage, func.count()).where(
                Job.state.in_(["done", "skipped"])).group_by(Job.stage)).all())
        assert states["calibrate"] == 8 and states["subtract"] == 8 and states["calib"] == 1
        engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
