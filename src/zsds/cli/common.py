"""Helpers shared by the ``zsds`` sub-command modules: options, errors, progress, database."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from zsds.core.home import Home

console = Console(stderr=True)


def user_errors(fn: Callable) -> Callable:
    """Turn ValueError/FileNotFoundError from the library into a one-line click error."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError, LookupError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def home_option(fn: Callable) -> Callable:
    fn = click.option(
        "--home",
        "home",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="zsds home folder (default: $ZSDS_HOME or ./zsds-home)",
    )(fn)
    return click.option(
        "--db-url",
        default=None,
        help="database URL (default: $ZSDS_DB_URL or the home's SQLite file)",
    )(fn)


def parse_int_list(text: str | None, what: str) -> list[int] | None:
    """Parse ``1,2,5`` into integers; raise ValueError naming the option."""
    if text is None or text == "":
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(
            f"invalid {what} list {text!r}: expected comma-separated integers"
        ) from None


def progress_bar(description: str) -> tuple[Progress, Callable[[str, int, int], None]]:
    prog = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[item]}"),
        console=console,
        disable=not sys.stderr.isatty(),
    )
    task = prog.add_task(description, total=None, item="")

    def update(item: str, done: int, total: int) -> None:
        prog.update(task, completed=done, total=total, item=item)

    return prog, update


def open_db(home: Home):
    """Engine for the home's database, schema created or upgraded."""
    from zsds.db import connect, init_db

    home.ensure()
    engine = connect(home.db_url)
    init_db(engine)
    return engine


def fail_if(problems: list[str], home: Home, command: str) -> None:
    """End a command that was asked to do work: exit 1 with one line if any of it failed.

    ``problems`` are short counts in words ("2 quadrant(s) failed"); the line names where to
    look for the details.
    """
    problems = [p for p in problems if p]
    if problems:
        raise click.ClickException(f"{command}: {'; '.join(problems)}; see zsds status "
                                   f"--home {home.root}")


def config_option(fn: Callable) -> Callable:
    """``--config FILE.toml``: the pipeline configuration (default: every stage's defaults;
    ``zsds config show`` prints them as such a file)."""
    return click.option(
        "--config",
        "config_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="pipeline configuration (TOML; default: the defaults, see `zsds config show`)",
    )(fn)


def pipeline_config(config_file: Path | None):
    """The :class:`~zsds.config.PipelineConfig` of ``--config`` (the defaults without one);
    an unknown key or a bad value is a one-line error naming the key and the file."""
    from zsds.config import load_config

    return load_config(config_file)
