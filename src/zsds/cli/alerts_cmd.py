"""``zsds alerts``: look at alert packets in files, archives and Kafka; run a local broker.

Registered in :mod:`zsds.cli.main` with ``cli.add_command(alerts)``.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

#: Default subscription: every ZTF alert topic (same as ``zsds.alerts.kafka.ALL_TOPICS``, not
#: imported so that loading the CLI does not load Kafka and astropy).
ALL_TOPICS = "^ztf_.*"


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report library errors as one clear line instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from confluent_kafka import KafkaException

        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError, LookupError, RuntimeError, TimeoutError) as exc:
            raise click.ClickException(str(exc)) from None
        except KafkaException as exc:
            raise click.ClickException(f"Kafka: {exc.args[0].str()}") from None

    return wrapper


def _echo_err(text: str) -> None:
    click.echo(text, err=True)


@click.group("alerts")
def alerts() -> None:
    """Alert packets (Avro): inspect files, archives and Kafka topics."""


@alerts.command("tail")
@click.argument(
    "paths", nargs=-1, type=click.Path(exists=True, path_type=Path), metavar="[FILES/DIRS...]"
)
@click.option("--kafka", "bootstrap", metavar="HOST:PORT", help="consume from this Kafka broker")
@click.option(
    "--topic",
    "topics",
    multiple=True,
    metavar="T",
    help=f"topic or ^regex to consume (repeatable; default {ALL_TOPICS!r})",
)
@click.option(
    "--group",
    default=None,
    help="consumer group; offsets are committed under it (default: a fresh group, no commits)",
)
@click.option("--max", "max_messages", type=click.IntRange(min=1), default=None,
              help="stop after N messages (Kafka)")  # fmt: skip
@click.option("--idle", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="stop after S seconds without a message (Kafka)")  # fmt: skip
@click.option("--table", is_flag=True, help="one table at the end instead of plain lines")
@_user_errors
def tail_cmd(
    paths: tuple[Path, ...],
    bootstrap: str | None,
    topics: tuple[str, ...],
    group: str | None,
    max_messages: int | None,
    idle: float,
    table: bool,
) -> None:
    """Print one line per alert: from FILES/DIRS (.avro, folders, .tar.gz) or from --kafka.

    \b
    Columns: schemavsn objectId candid UTC band magpsf±sigmapsf isdiffpos rb drb ra dec
    prv=<detections>d/<upper limits>u fp=<forced photometry> ss=<solar-system name>
    cut=<S T D cutouts present>; '-' marks what a packet (version) does not have.
    A packet that cannot be decoded is reported on stderr and the command ends with exit
    status 1 after showing the others.
    """
    from zsds.alerts.tail import tail_files, tail_kafka

    corrupt: list[str] = []

    def on_error(text: str) -> None:
        corrupt.append(text)
        _echo_err(text)

    if bootstrap is None:
        if not paths:
            raise click.UsageError("give FILES/DIRS to read, or --kafka HOST:PORT to consume")
        if topics or group:
            raise click.UsageError("--topic/--group need --kafka")
        count = tail_files(paths, click.echo, table=table, errors=on_error)
    else:
        if paths:
            raise click.UsageError("give either FILES/DIRS or --kafka, not both")
        commit = group is not None
        group_id = group or f"zsds-tail-{os.getpid()}-{int(time.time())}"
        count = tail_kafka(
            bootstrap,
            list(topics) or ALL_TOPICS,
            group_id,
            click.echo,
            table=table,
            max_messages=max_messages,
            idle_timeout=idle,
            commit=commit,
            errors=on_error,
        )
    _echo_err(f"{count} alert(s)")
    if corrupt:
        raise click.ClickException(f"{len(corrupt)} packet(s) could not be decoded")


@alerts.command("broker")
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="TCP port (default: a free one)")  # fmt: skip
@_user_errors
def broker_cmd(port: int) -> None:
    """Run a local in-memory Kafka-protocol broker (Tansu) until Ctrl-C, to try things out."""
    from zsds.alerts.broker import LocalBroker

    # The broker runs in its own session: make Ctrl-C, SIGTERM and SIGHUP all unwind the
    # context manager below, which stops it, instead of leaving it orphaned.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        with LocalBroker(port or None) as broker:
            click.echo(f"Kafka broker (Tansu, in memory) at {broker.bootstrap}; Ctrl-C stops it")
            click.echo(f"  try: zsds alerts tail --kafka {broker.bootstrap}")
            sys.stdout.flush()
            status = broker.wait()
            log = broker.log_text()
    except KeyboardInterrupt:
        click.echo("stopped")
        return
    raise click.ClickException(f"the broker exited with status {status}:\n{log}")


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@click.command("alerts")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="zsds home folder (default: $ZSDS_HOME or ./zsds-home)")
@click.option("--night", default=None, help="only the packets of this night (YYYY-MM-DD)")
@click.option("--against", type=click.Path(exists=True, path_type=Path), default=None,
              help="folder (or .avro / .tar.gz) of real ZTF alerts to compare with")
@_user_errors
def eval_alerts(home: Path | None, night: str | None, against: Path | None) -> None:
    """How real are the packets? Field by field against real ZTF alerts.

    \b
    Prints packet sizes, history lengths and cutout NaN figures side by side; the fields whose
    null / -999 / "null" / constant use or range differ; and the fields that every real v4
    packet fills but zsds leaves null (with --against).
    """
    from zsds.alerts.evaluate import is_v4, packet_stats, read_packets, report_lines
    from zsds.alerts.kafka import PROGRAMS, topic_name
    from zsds.core.home import Home

    root = Home.resolve(home).alerts
    folders = [root / topic_name(night, p) for p in PROGRAMS] if night else [root]
    folders = [f for f in folders if f.is_dir()]
    ours = read_packets(folders)
    if not ours:
        raise click.ClickException(f"no alert packets under {root}"
                                   + (f" for {night}" if night else ""))
    real = read_packets([against]) if against is not None else None
    if real is not None and not real:
        raise click.ClickException(f"no alert packets in {against}")
    lines = report_lines(
        packet_stats(ours),
        None if real is None else packet_stats(real),
        None if real is None or not any(map(is_v4, real))
        else packet_stats([p for p in real if is_v4(p)]),
    )
    for line in lines:
        click.echo(line)
