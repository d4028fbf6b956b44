"""``zsds night run|watch`` (the executive on Dask) and ``zsds status``."""

from __future__ import annotations

import click
from rich.table import Table

from zsds.cli.common import (
    config_option,
    console,
    fail_if,
    home_option,
    open_db,
    pipeline_config,
    progress_bar,
    user_errors,
)
from zsds.core.home import Home


def _exec_options(fn):
    fn = click.option("--scheduler", default=None, metavar="ADDRESS",
                      help="an existing Dask scheduler (default: a local cluster)")(fn)
    fn = click.option("--workers", type=int, default=None,
                      help="local cluster worker processes (default: one per core)")(fn)
    fn = click.option("--kafka", default=None, metavar="HOST:PORT",
                      help="publish alerts to this Kafka broker (default: archive only)")(fn)
    fn = config_option(fn)
    return home_option(fn)


def print_summary(s) -> None:
    t = Table(title=f"night {s.night} ({s.mode})", show_header=False)
    rows = [
        ("raw files", f"{s.files} ({s.quarantined} quarantined, {s.waiting} still being "
                      "written)"),
        ("exposures", s.exposures),
        ("quadrants processed", f"{s.quadrants}: {s.subtracted} subtracted, {s.no_reference} "
                                f"without reference, {s.failed} failed, {s.skipped_done} "
                                "already done"),
        ("candidates", s.candidates),
        ("alerts", f"{s.alerts} archived, {s.alerts_sent} sent to Kafka"
                   + (f", {s.alerts_unsent} not delivered (broker unreachable)"
                      if s.alerts_unsent else "")),
        ("latency p50 / p90 / p95 / max",
         " / ".join("-" if v is None else f"{v:.1f} s" for v in
                    (s.latency_p50_s, s.latency_p90_s, s.latency_p95_s, s.latency_max_s))),
        ("throughput", f"{s.quadrants_per_min:.1f} quadrants/min on {s.workers} workers "
                       f"(peak worker memory {s.peak_worker_memory_gb} GB)"),
        ("references built", s.refs_built),
        ("end-of-night steps failed", ", ".join(s.failed_steps) or "none"),
        ("stale jobs re-run", s.stale),
        ("wall time", f"{s.wall_s:.1f} s"),
    ]
    for k, v in rows:
        t.add_row(k, str(v))
    console.print(t)
    for e in s.errors[:10]:
        console.print(f"[red]error[/] {e}")


@click.group("night")
def night() -> None:
    """Pipeline executive: run a night's raw files to alerts on Dask distributed."""


@night.command("run")
@_exec_options
@click.option("--night", "night_", required=True, help="UT date, YYYY-MM-DD")
@click.option("--redo", is_flag=True, help="process everything again (default: skip done)")
@click.option("--no-refs", is_flag=True, help="do not build references at the end")
@user_errors
def night_run(home, db_url, config_file, scheduler, workers, kafka, night_, redo,
              no_refs) -> None:
    """Process everything waiting for a night, start to end."""
    from zsds.executive import ExecConfig, Executive

    pipeline = pipeline_config(config_file)
    h = Home.resolve(home, db_url)
    cfg = ExecConfig(scheduler=scheduler, n_workers=workers, kafka=kafka, redo=redo,
                     build_refs=not no_refs, pipeline=pipeline)
    console.print(f"configuration {pipeline.config_hash()}"
                  + (f" ({config_file})" if config_file else " (defaults)"))
    prog, update = progress_bar(f"night {night_}")
    with prog, Executive(h, open_db(h), cfg, progress=update) as ex:
        s = ex.run_night(night_)
    print_summary(s)
    fail_if([s.problem_line()], h, "night run")


@night.command("watch")
@_exec_options
@click.option("--idle", type=float, default=None,
              help="stop after this many seconds without new files (default: run until Ctrl-C)")
@user_errors
def night_watch(home, db_url, config_file, scheduler, workers, kafka, idle) -> None:
    """Follow HOME/incoming and process each raw file as it lands."""
    from zsds.executive import ExecConfig, Executive

    pipeline = pipeline_config(config_file)
    h = Home.resolve(home, db_url)
    cfg = ExecConfig(scheduler=scheduler, n_workers=workers, kafka=kafka, build_refs=False,
                     pipeline=pipeline)
    console.print(f"watching {h.incoming} (Ctrl-C to stop)")
    with Executive(h, open_db(h), cfg) as ex:
        try:
            out = ex.watch(idle=idle)
        except KeyboardInterrupt:
            out = []
    for s in out:
        print_summary(s)
    fail_if([s.problem_line() for s in out], h, "night watch")


@click.command("status")
@home_option
@click.option("--night", "night_", default=None, help="UT date, YYYY-MM-DD")
@user_errors
def status(home, db_url, night_) -> None:
    """Jobs by stage and state, recent failures and the last night summaries."""
    from collections import Counter

    from sqlalchemy import func, select

    from zsds.db.engine import session
    from zsds.db.jobs import is_stale
    from zsds.db.schema import Job, NightSummaryRecord

    h = Home.resolve(home, db_url)
    engine = open_db(h)
    with session(engine) as s:
        rows = s.execute(select(Job.stage, Job.state, func.count()).group_by(
            Job.stage, Job.state).order_by(Job.stage, Job.state)).all()
        running = s.execute(select(Job).where(Job.state == "running")).scalars().all()
        fails = s.execute(select(Job).where(Job.state == "failed").order_by(
            Job.finished_at.desc()).limit(10)).scalars().all()
        q = select(NightSummaryRecord).order_by(NightSummaryRecord.created_at.desc())
        if night_:
            from zsds.core.naming import parse_night

            q = q.where(NightSummaryRecord.night == parse_night(night_))
        summ = s.execute(q.limit(5)).scalars().all()
        # A running job whose process is gone is shown as stale (the next night run redoes it).
        liveness = [is_stale(j) for j in running]
        stale = Counter(j.stage for j, dead in zip(running, liveness, strict=True) if dead)
        elsewhere = Counter(j.stage for j, dead in zip(running, liveness, strict=True)
                            if dead is None)
        t = Table(title=f"jobs in {h.db_url}")
        for c in ("stage", "state", "count"):
            t.add_column(c)
        for stage, state, n in rows:
            if state == "running":
                for label, k in (("running (stale: process gone)", stale[stage]),
                                 ("running (on another host)", elsewhere[stage]),
                                 ("running", n - stale[stage] - elsewhere[stage])):
                    if k:
                        t.add_row(stage, label, str(k))
            else:
                t.add_row(stage, state, str(n))
        console.print(t)
        for j, dead in zip(running, liveness, strict=True):
            if dead:
                console.print(f"[yellow]stale[/] {j.stage} {j.key}: process {j.pid} on "
                              f"{j.host} is gone (started {j.started_at:%Y-%m-%d %H:%M:%S}); "
                              "`zsds night run` redoes it")
        for j in fails:
            console.print(f"[red]failed[/] {j.stage} {j.key} (attempts {j.attempts}, "
                          f"{j.host}): {(j.error or '').splitlines()[0] if j.error else ''}")
        for r in summ:
            d = r.summary
            console.print(f"night {r.night} {r.mode}: {r.quadrants} quadrants, {r.failed} failed,"
                          f" {r.alerts} alerts, latency p50 {d.get('latency_p50_s')} s, p95 "
                          f"{d.get('latency_p95_s')} s, wall {r.wall_s:.0f} s")
    nstale = sum(stale.values())
    nfailed = sum(n for _, state, n in rows if state == "failed")
    click.echo(f"status: {sum(r[2] for r in rows)} jobs, {nfailed} failed, {nstale} stale")
