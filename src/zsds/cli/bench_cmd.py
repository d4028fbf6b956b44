"""``zsds bench``: benchmarks that ship with the package (``zsds bench realtime``)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click

from zsds.cli.common import progress_bar, user_errors


@click.group()
def bench() -> None:
    """Benchmarks: the real-time chain per quadrant and core, beside its peers."""


@bench.command("realtime")
@click.option("--home", "home_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="survey home to run on (built there if it has no references; "
                                 "default: a temporary one, removed at the end)")
@click.option("--quad-size", type=int, default=None,
              help="small square quadrants (256..1536); default full size 3072x3080")
@click.option("--quick", is_flag=True,
              help="a tiny run (one 384 px field, one worker, no sfft, a 384 px cut of the "
                   "real quadrant): checks that the benchmark runs")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="worker processes, one per core (default: the machine's cores)")
@click.option("--n-ref", type=click.IntRange(min=1), default=None,
              help="epochs per reference when the home is built (default 3)")
@click.option("--no-peers", is_flag=True, help="skip the peer packages")
@click.option("--no-sfft", is_flag=True, help="skip sfft (its numba compilation is long)")
@click.option("--no-photutils", is_flag=True, help="skip photutils (slow on full quadrants)")
@click.option("--no-real", is_flag=True, help="skip the real ZTF quadrant")
@click.option("--real-data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder of the real images (default: the cache of `zsds eval real`)")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write a PNG bar chart of the steps and the peers")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="write the figures as JSON")
@user_errors
def realtime_cmd(home_dir, quad_size, quick, workers, n_ref, no_peers, no_sfft, no_photutils,
                 no_real, real_data, plot, json_path) -> None:
    """The whole real-time chain per quadrant and core, on a survey-like mix, with its peers.

    Each science quadrant of a high-latitude field (345), a mid-latitude one (645) and a
    Galactic-plane one (591) goes through read, split, calibration, subtraction, candidates,
    real-bogus, streaks, known asteroids, database and alert packets in its own
    single-threaded worker process (--workers at a time). Then sep, photutils, reproject,
    sfft and the FFT floor run on one quadrant beside the zsds steps they compare with, and
    zsds's measure_sources on the real ZTF quadrant. Prints seconds per step, seconds per
    quadrant per core, peak memory per job and cores for ZTF's 85 quadrants per minute.
    """
    import os

    from zsds.bench.realtime import RealtimeConfig, run_realtime
    from zsds.bench.report import plot_summary, print_summary, write_json
    from zsds.core.home import Home
    from zsds.core.instrument import SMALL_SIZES

    if quad_size is not None and quad_size not in SMALL_SIZES:
        raise click.BadParameter(f"use one of {', '.join(map(str, SMALL_SIZES))}",
                                 param_hint="--quad-size")
    over = {k: v for k, v in {"quad_size": quad_size, "workers": workers, "n_ref": n_ref,
                              "real_data": real_data}.items() if v is not None}
    over.update({k: False for k, off in (("peers", no_peers), ("sfft", no_sfft),
                                         ("photutils", no_photutils), ("real", no_real)) if off})
    if quick:
        config = RealtimeConfig.quick(**over)
    else:
        config = RealtimeConfig(**{"workers": os.cpu_count() or 1, **over})
    tmp = None
    if home_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="zsds-bench-realtime-"))
        home_dir = tmp / "home"
    home = Home.resolve(home_dir)
    try:
        prog, update = progress_bar("bench realtime")
        with prog:
            summary = run_realtime(
                home, config, update, note=lambda m: prog.console.log(m),
                checkpoint=(lambda s: write_json(s, json_path)) if json_path else None)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print_summary(summary)
    if json_path is not None:
        click.echo(f"json: {write_json(summary, json_path)}")
    if plot is not None:
        click.echo(f"plot: {plot_summary(summary, plot)}")
    failed = [j for j in summary["jobs"] if not j["ok"]]
    if failed:
        raise click.ClickException(f"{len(failed)} quadrant job(s) failed: "
                                   + "; ".join(j["message"] for j in failed))
