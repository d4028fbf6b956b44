"""``zsds eval reliability``: the fault scenarios of issue 19 and their outcome table."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from zsds import __version__
from zsds.cli.common import console, user_errors

#: PostgreSQL of the test suite (trust authentication, database ``test``).
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg_reachable(url: str) -> str | None:
    """None if a connection works, else why not."""
    from sqlalchemy import text

    from zsds.db import connect

    try:
        engine = connect(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:
        return str(exc).splitlines()[0]
    return None


def _cell(n: int | None, skipped: bool) -> str:
    return "-" if skipped or n is None else str(n)


def markdown_table(results: list) -> str:
    """The outcome table as Markdown (``docs/reliability.md``)."""
    lines = ["| scenario | fault | outcome | lost | duplicated | time |",
             "|---|---|---|---:|---:|---:|"]
    for r in results:
        skipped = bool(r.facts.get("skipped"))
        blank = skipped or bool(r.facts.get("uncounted"))
        status = "skipped" if skipped else ("ok" if r.ok else "**FAILED**")
        outcome = r.outcome.replace("|", "\\|")
        lines.append(f"| {r.name} | {r.fault} | {status}: {outcome} | "
                     f"{_cell(r.lost, blank)} | {_cell(r.duplicated, blank)} | "
                     f"{r.seconds:.0f} s |")
    return "\n".join(lines) + "\n"


@click.command("reliability")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder for the scenarios' homes (default: a temporary one, removed)")
@click.option("--survey", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=None,
              help="a home with the survey's references to copy (default: build one, ~3 min)")
@click.option("--kills", type=click.IntRange(min=1), default=20, show_default=True,
              help="kill -9 of the kill loop")
@click.option("--seed", type=int, default=19, show_default=True,
              help="seed of the kill moments and targets")
@click.option("--max-delay", type=click.FloatRange(min=1.0), default=60.0, show_default=True,
              help="latest kill moment, in seconds after the Dask workers are up")
@click.option("--pg-url", default=None,
              help=f"PostgreSQL where a throw-away schema can be made (default: "
                   f"$ZSDS_TEST_PG_URL or {DEFAULT_PG_URL}; skipped if unreachable)")
@click.option("--only", multiple=True,
              type=click.Choice(["matchfile", "broker", "broker-part", "postgres", "disk",
                                 "kill", "corpus"]),
              help="run only these scenarios (repeatable)")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="also write the results (with their facts) as JSON")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the table as Markdown")
@user_errors
def eval_reliability(work, survey, kills, seed, max_delay, pg_url, only, json_path,
                     markdown) -> None:
    """Inject each fault of issue 19 with the real services and count what was lost.

    Scenarios: a light curve whose matchfile is missing (the archive must answer 404); the
    Kafka broker down for a night and for part of one (every packet delivered exactly once
    when it is back); PostgreSQL connections dropped mid-transaction (nothing half-written,
    no job left running); a full products disk (a clear error, inputs untouched, the rerun
    completes); a loop of kill -9 of `zsds night run` at random moments, each followed by a
    rerun (nothing lost or duplicated); and the size of the attack corpus (tests/security,
    tests/faults). Prints one row per scenario and exits 1 if any lost or duplicated
    anything, or did not behave.
    """
    from zsds.reliability.run import run_reliability

    url = pg_url or os.environ.get("ZSDS_TEST_PG_URL") or DEFAULT_PG_URL
    why = _pg_reachable(url) if not only or "postgres" in only else None
    if why is not None:
        console.print(f"[yellow]PostgreSQL at {url} unreachable ({why}): skipped")
        url = None
    temporary = work is None
    folder = Path(tempfile.mkdtemp(prefix="zsds-reliability-")) if temporary else work
    started = dt.datetime.now(dt.UTC)
    try:
        results = run_reliability(folder, survey=survey, kills=kills, seed=seed, pg_url=url,
                                  only=list(only) or None, max_delay=max_delay,
                                  log=lambda m: console.print(f"[dim]{m}"))
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
    table = Table(title=f"zsds eval reliability ({len(results)} scenarios)")
    for col, just in (("scenario", "left"), ("fault", "left"), ("outcome", "left"),
                      ("lost", "right"), ("duplicated", "right"), ("time", "right")):
        table.add_column(col, justify=just, overflow="fold")
    for r in results:
        skipped = bool(r.facts.get("skipped"))
        blank = skipped or bool(r.facts.get("uncounted"))
        mark = ("[yellow]skipped[/]" if skipped else "[green]ok[/]" if r.ok
                else "[red]FAILED[/]")
        table.add_row(r.name, r.fault, f"{mark}: {r.outcome}", _cell(r.lost, blank),
                      _cell(r.duplicated, blank), f"{r.seconds:.0f} s")
    Console(width=160).print(table)
    machine = f"{platform.node()} ({os.cpu_count()} cores, {platform.platform(terse=True)})"
    if markdown is not None:
        markdown.write_text(
            f"Produced by `zsds eval reliability` (zsds {__version__}) on {machine}, "
            f"{started:%Y-%m-%d %H:%M} UTC, {kills} kills, seed {seed}.\n\n"
            + markdown_table(results))
    if json_path is not None:
        json_path.write_text(json.dumps(
            {"started": started.isoformat(), "machine": machine, "version": __version__,
             "kills": kills, "seed": seed,
             "results": [{k: v for k, v in asdict(r).items() if k != "integrity"}
                         | {"integrity": asdict(r.integrity) if r.integrity else None}
                         for r in results]}, indent=1, default=str))
    lost = sum(r.lost for r in results)
    dup = sum(r.duplicated for r in results)
    failed = [r.name for r in results if not r.ok]
    if lost or dup or failed:
        raise click.ClickException(f"eval reliability: {lost} lost, {dup} duplicated; "
                                   f"failed: {', '.join(failed) or 'none'}")
    click.echo(f"eval reliability: {len(results)} scenarios, 0 lost, 0 duplicated")
