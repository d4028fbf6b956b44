"""The ``zsds`` command line: one sub-command group per pipeline stage.

Errors in user input (unknown field, bad date, bad size...) are reported as one clear line, never
as a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console

from zsds import __version__
from zsds.cli.alerts_cmd import alerts, eval_alerts
from zsds.cli.bench_cmd import bench
from zsds.cli.common import (
    config_option,
    console,
    fail_if,
    home_option,
    open_db,
    parse_int_list,
    pipeline_config,
    progress_bar,
    user_errors,
)
from zsds.cli.config_cmd import config_group
from zsds.cli.diffim_cmd import eval_subtract, rb, subtract_cmd
from zsds.cli.import_cmd import import_cmd
from zsds.cli.lightcurves_cmd import (
    eval_lightcurves,
    eval_periods,
    lightcurves,
    simulate_survey_cmd,
)
from zsds.cli.moving_cmd import eval_known, eval_linking, eval_streaks, moving
from zsds.cli.night_cmd import night, status
from zsds.cli.reliability_cmd import eval_reliability
from zsds.cli.send_cmd import alerts_send
from zsds.cli.serve_cmd import serve, users
from zsds.cli.streaks_cmd import rb_train_streaks
from zsds.core.home import Home


@click.group()
@click.version_option(__version__, prog_name="zsds")
def cli() -> None:
    """zsds: the ZTF Science Data System, re-implemented in Python."""


@cli.group()
def simulate() -> None:
    """Camera and sky simulator: raw exposures with ground truth."""


def _sim_common(fn: Callable) -> Callable:
    fn = click.option(
        "--seed", type=int, default=1, show_default=True, help="random seed (sky and noise)"
    )(fn)
    fn = click.option("--ccds", default=None, help="comma-separated CCD ids (default: all 16)")(fn)
    fn = click.option(
        "--quad-size",
        type=int,
        default=None,
        help="small square quadrants (256..1536) for tests and demos; default full size 3072x3080",
    )(fn)
    fn = click.option("--night", required=True, help="UT date of the night, YYYY-MM-DD")(fn)
    return home_option(fn)


@simulate.command("calib")
@_sim_common
@click.option("--n-bias", type=int, default=10, show_default=True)
@click.option("--n-flat", type=int, default=5, show_default=True, help="dome flats per filter")
@user_errors
def simulate_calib_cmd(home, db_url, night, quad_size, ccds, seed, n_bias, n_flat) -> None:
    """Write the afternoon bias and dome-flat sequences into HOME/incoming."""
    from zsds.sim.run import simulate_calib

    h = Home.resolve(home, db_url)
    prog, update = progress_bar("calibration frames")
    with prog:
        res = simulate_calib(
            h, night, quad_size, parse_int_list(ccds, "CCD"), seed, n_bias, n_flat, progress=update
        )
    click.echo(f"wrote {len(res.raw_files)} raw calibration files to {h.incoming}")


@simulate.command("night")
@_sim_common
@click.option("--exposures", type=int, required=True, help="number of science exposures")
@click.option(
    "--fields", default=None, help="comma-separated ZTF field ids (default: chosen near the zenith)"
)
@click.option("--filters", default="r,g", show_default=True, help="filter cycle")
@click.option("--no-asteroids", is_flag=True, help="leave out asteroids (faster)")
@click.option("--realtime", is_flag=True,
              help="deliver the exposures at the survey cadence (for `zsds night watch`)")
@click.option("--speedup", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="with --realtime: play the night this many times faster")
@user_errors
def simulate_night_cmd(
    home, db_url, night, quad_size, ccds, seed, exposures, fields, filters, no_asteroids,
    realtime, speedup,
) -> None:
    """Write a night of science exposures into HOME/incoming (truth into HOME/truth)."""
    from zsds.sim.camera import SimConfig
    from zsds.sim.run import simulate_night, validate_quad_size

    h = Home.resolve(home, db_url)
    config = SimConfig(
        quad_size=validate_quad_size(quad_size), seed=seed, asteroids=not no_asteroids
    )
    filt = tuple(f.strip() for f in filters.split(",") if f.strip())
    prog, update = progress_bar("science exposures")
    with prog:
        res = simulate_night(
            h,
            night,
            exposures,
            parse_int_list(fields, "field"),
            ccds=parse_int_list(ccds, "CCD"),
            seed=seed,
            filters=filt,
            config=config,
            progress=update,
            realtime_speedup=speedup if realtime else None,
        )
    fields_used = sorted({e.field for e in res.exposures})
    click.echo(
        f"wrote {len(res.raw_files)} raw files ({len(res.exposures)} exposures, fields "
        f"{', '.join(map(str, fields_used))}) to {h.incoming}; truth in {res.truth_dir}"
    )


@cli.command()
@home_option
@user_errors
def ingest(home, db_url) -> None:
    """Ingest every raw file in HOME/incoming: validate, archive, record; quarantine bad ones."""
    from zsds.ingest import ingest_incoming

    h = Home.resolve(home, db_url)
    results = ingest_incoming(h, open_db(h))
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
        if r.status == "quarantined":
            click.echo(r.message, err=True)
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing to ingest"
    click.echo(f"ingest: {summary}")
    nq = counts.get("quarantined", 0)
    fail_if([f"{nq} file(s) quarantined under {h.quarantine}" if nq else ""], h, "ingest")


@cli.group()
def calib() -> None:
    """Calibration-frame pipelines: master bias and high-frequency flats."""


@calib.command("build")
@home_option
@config_option
@click.option("--night", required=True, help="UT date of the night, YYYY-MM-DD")
@user_errors
def calib_build(home, db_url, config_file, night) -> None:
    """Build master biases and hi-nu flats for a night from the ingested frames."""
    from zsds.calib.build import build_calibrations

    pipeline = pipeline_config(config_file)
    h = Home.resolve(home, db_url)
    res = build_calibrations(h, open_db(h), night, pipeline)
    kinds: dict[str, int] = {}
    for kind, *_ in res.products:
        kinds[kind] = kinds.get(kind, 0) + 1
    click.echo("calib build: " + (", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
                                  or "nothing built"))
    for s in res.skipped:
        click.echo(f"  skipped {s}", err=True)


@cli.command()
@home_option
@click.option("--night", required=True, help="UT date of the night, YYYY-MM-DD")
@click.option("--exposure", "expid", type=int, default=None, help="only this exposure id")
@click.option("--ccd", type=int, default=None, help="only this CCD")
@click.option("--quad", type=int, default=None, help="only this quadrant (1-4)")
@click.option("--no-cosmics", is_flag=True, help="skip cosmic-ray detection (faster)")
@config_option
@user_errors
def calibrate(home, db_url, night, expid, ccd, quad, no_cosmics, config_file) -> None:
    """Instrumental calibration of a night's science quadrants (sciimg, mskimg, catalogs, PSF)."""
    import dataclasses

    from zsds.core.instrument import check_ccd_quad
    from zsds.instcal.run import calibrate_night

    if ccd is not None:
        check_ccd_quad(ccd)
    if quad is not None:
        check_ccd_quad(1, quad)
    h = Home.resolve(home, db_url)
    config = pipeline_config(config_file)
    if no_cosmics:
        ic = config.instcal
        config = dataclasses.replace(config, instcal=dataclasses.replace(
            ic, mask=dataclasses.replace(ic.mask, cosmic_rays=False)))
    prog, update = progress_bar("calibrate")
    with prog:
        outcomes = calibrate_night(h, open_db(h), night, expid, ccd, quad, config, update)
    ok = [o for o in outcomes if o.ok]
    for o in outcomes:
        if not o.ok:
            click.echo(f"failed: {o.message}", err=True)
    flagged = sum(1 for o in ok if o.infobits)
    nfail = len(outcomes) - len(ok)
    click.echo(f"calibrate: {len(ok)} quadrants calibrated ({flagged} with INFOBITS set), "
               f"{nfail} failed")
    fail_if([f"{nfail} quadrant(s) failed" if nfail else ""], h, "calibrate")


@cli.group()
def refs() -> None:
    """Reference images: co-adds of the best epochs per field, CCD, quadrant and filter."""


@refs.command("build")
@home_option
@click.option("--field", type=int, default=None, help="only this field")
@click.option("--ccd", type=int, default=None, help="only this CCD")
@click.option("--quad", type=int, default=None, help="only this quadrant (1-4)")
@click.option("--filter", "filt", default=None, help="only this filter (g, r, i)")
@config_option
@user_errors
def refs_build(home, db_url, field, ccd, quad, filt, config_file) -> None:
    """Build (or rebuild, as a new version) references where enough good epochs exist."""
    from zsds.core.fields import get_field
    from zsds.core.instrument import Filter, check_ccd_quad
    from zsds.refs.run import build_references

    if field is not None:
        get_field(field)
    if ccd is not None:
        check_ccd_quad(ccd)
    if quad is not None:
        check_ccd_quad(1, quad)
    fobj = Filter.parse(filt) if filt else None
    pipeline = pipeline_config(config_file)
    h = Home.resolve(home, db_url)
    prog, update = progress_bar("references")
    with prog:
        outcomes = build_references(h, open_db(h), field, ccd, quad, fobj, pipeline,
                                    progress=update)
    built = [o for o in outcomes if o.ok]
    for o in outcomes:
        if not o.ok:
            click.echo(f"skipped field {o.field} c{o.ccdid:02d} q{o.qid} fid {o.fid}: "
                       f"{o.message}", err=True)
    click.echo(f"refs build: {len(built)} references built or up to date, "
               f"{len(outcomes) - len(built)} skipped")


@cli.group("eval")
def evaluate() -> None:
    """Science-quality evaluations against the simulator's ground truth."""


@evaluate.command("calibrate")
@home_option
@click.option("--night", required=True, help="UT date of the night, YYYY-MM-DD")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write a PNG of the quality figures per quadrant")
@user_errors
def eval_calibrate(home, db_url, night, plot) -> None:
    """Astrometric rms, zero-point error, PSF-photometry scatter and completeness vs truth."""
    import numpy as np
    from rich.table import Table as RichTable

    from zsds.instcal.evaluate import evaluate_night

    h = Home.resolve(home, db_url)
    df = evaluate_night(h, night)
    if df.empty:
        raise click.ClickException(f"no calibrated quadrants with truth for night {night}")
    table = RichTable(title=f"instrumental calibration vs truth, night {night}")
    cols = [("pid", "pid", "{}"), ("infobits", "INFOBITS", "{}"),
            ("astrom_rms_ra", "astrom RA\"", "{:.4f}"), ("astrom_rms_dec", "astrom Dec\"",
                                                          "{:.4f}"),
            ("zp_error", "ZP-true", "{:+.4f}"), ("psf_median_offset", "mag-true", "{:+.4f}"),
            ("psf_pull_scatter", "PSF pull sd", "{:.2f}"),
            ("completeness", "complete", "{:.3f}"), ("seeing", "seeing\"", "{:.2f}"),
            ("maglim", "maglim", "{:.2f}")]
    for _, title, _ in cols:
        table.add_column(title, justify="right")
    df = df.astype({"pid": "int64", "infobits": "int64"})
    for r in df.to_dict("records"):
        table.add_row(*[fmt.format(r[c]) for c, _, fmt in cols])
    Console(width=130).print(table)
    summary = {
        "quadrants": len(df),
        "astrometric rms per axis (arcsec, median)": float(np.nanmedian(
            np.maximum(df.astrom_rms_ra, df.astrom_rms_dec))),
        "|calibrated star mag - truth| (mag, max)": float(np.nanmax(np.abs(df.psf_median_offset))),
        "MAGZP - truth, the PSF flux's missing wing (mag, median)": float(np.nanmedian(
            df.zp_error)),
        "PSF-mag scatter / reported error (median)": float(np.nanmedian(df.psf_pull_scatter)),
        "completeness at S/N >= 10 (min)": float(np.nanmin(df.completeness)),
    }
    for k, v in summary.items():
        click.echo(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    if plot is not None:
        from zsds.instcal.plots import plot_quality

        plot_quality(df, plot, f"instrumental calibration vs truth, night {night}")
        click.echo(f"plot: {plot}")


@evaluate.command("real")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="folder of the real images (default: $ZSDS_REAL_DATA or "
                                 "~/.cache/zsds-real-data)")
@click.option("--no-fetch", is_flag=True,
              help="do not download missing images from the Python package index")
@click.option("--fakes", type=click.IntRange(min=10), default=300, show_default=True,
              help="fake stars injected into the real quadrant")
@user_errors
def eval_real(data_dir, no_fetch, fakes) -> None:
    """zsds's image steps on a real ZTF quadrant and a real GOTO pair, against their bars.

    The images come from two public packages on PyPI (downloaded once, checksummed). Prints
    one row per check (value, bar, pass) and exits 1 if any check misses its bar.
    """
    from rich.table import Table as RichTable

    from zsds.core.realdata import ZTF_QUADRANT, fetch_real_data
    from zsds.diffim.realcheck import check_goto_pair
    from zsds.instcal.realcheck import check_real_quadrant

    folder = fetch_real_data(data_dir, download=not no_fetch)
    with console.status("real ZTF quadrant: masks, PSF, photometry, fakes"):
        checks = check_real_quadrant(folder / f"{ZTF_QUADRANT}_sciimg.fits",
                                     folder / f"{ZTF_QUADRANT}_mskimg.fits", n_fakes=fakes)
    with console.status("real GOTO pair: ZOGY subtraction"):
        checks += check_goto_pair(folder / "goto_1.fits", folder / "goto_2.fits")
    table = RichTable(title=f"real-data checks ({folder})")
    for col in ("check", "value", "bar", "", "note"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for c in checks:
        table.add_row(c.name, f"{c.value:.4g}", c.bar, "[green]pass" if c.ok else "[red]FAIL",
                      c.note)
    Console(width=200).print(table)
    failed = [c.name for c in checks if not c.ok]
    if failed:
        raise click.ClickException(f"eval real: {len(failed)} of {len(checks)} checks miss "
                                   f"their bar: {'; '.join(failed)}")
    click.echo(f"eval real: all {len(checks)} checks meet their bar")


@evaluate.command("refs")
@home_option
@click.option("--field", type=int, default=None, help="only this field")
@user_errors
def eval_refs(home, db_url, field) -> None:
    """Reference quality vs truth: depth gain, flux zero point, survivors, registration."""
    from rich.table import Table as RichTable

    from zsds.refs.evaluate import evaluate_references

    h = Home.resolve(home, db_url)
    df = evaluate_references(h, field)
    if df.empty:
        raise click.ClickException("no reference images with truth in this home")
    table = RichTable(title="reference images vs truth")
    cols = [c for c in ("rfid", "nframes", "maglim", "inmaglim", "depth_gain", "zp_offset",
                        "phot_rms", "astrom_rms_ra", "astrom_rms_dec", "n_minority",
                        "n_survivors") if c in df.columns]
    for c in cols:
        table.add_column(c, justify="right")
    for r in df.to_dict("records"):
        table.add_row(*[f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols])
    Console(width=160).print(table)


@cli.command()
@home_option
@click.option("--night", default="2026-11-20", show_default=True,
              help="UT date of the reference night (the science night is the next one)")
@click.option("--exposures", type=int, default=4, show_default=True,
              help="science exposures on the second night")
@click.option("--workers", type=int, default=None, help="local Dask workers (default: cores)")
@user_errors
def demo(home, db_url, night, exposures, workers) -> None:
    """Simulate two short nights on small quadrants and run every pipeline on them.

    Night 1: afternoon calibrations and 16 epochs of one field (one CCD, 512 x 512
    quadrants), run by the executive on a local Dask cluster: ingest, master bias and flats,
    instrumental calibration, then references at the end of the night. Night 2: a few
    exposures of the same field with transients, variable stars and asteroids, run the same
    way: calibration, ZOGY subtraction, candidates, real-bogus, objects and alert packets in the
    nightly archive. Then the light curves of both nights (matchfiles, object search).
    Prints where everything is and how to look at it.
    """
    import datetime as dt

    import numpy as np

    from zsds.cli.night_cmd import print_summary
    from zsds.executive import ExecConfig, Executive
    from zsds.instcal.evaluate import evaluate_night
    from zsds.sim.camera import SimConfig
    from zsds.sim.run import simulate_calib, simulate_night

    h = Home.resolve(home or "demo-home", db_url)
    night2 = (dt.date.fromisoformat(night) + dt.timedelta(days=1)).isoformat()
    ccds, field = [6], 645
    # Denser transients and asteroids than the sky's average, so a 0.04 deg^2 quadrant sees
    # some in a few exposures.
    cfg = SimConfig(quad_size=512, seed=1, transient_rate=300.0, asteroid_density=5.0)
    engine = open_db(h)
    summaries = []
    prog, update = progress_bar("demo")
    with prog:
        simulate_calib(h, night, 512, ccds, seed=1, n_bias=5, n_flat=3, filters=("r",),
                       progress=update)
        simulate_night(h, night, 16, [field], ccds=ccds, filters=("r",), config=cfg,
                       progress=update)
        with Executive(h, engine, ExecConfig(n_workers=workers), progress=update) as ex:
            summaries.append(ex.run_night(night))
            simulate_night(h, night2, exposures, [field], ccds=ccds, filters=("r",),
                           config=SimConfig(**{**cfg.__dict__, "seed": 2}), progress=update)
            summaries.append(ex.run_night(night2))
            lc = ex.build_lightcurves()
    for s in summaries:
        print_summary(s)
    lc_failed = [r["unit"] for r in lc if "error" in r]
    problems = [s.problem_line() for s in summaries]
    problems.append(f"{len(lc_failed)} light-curve unit(s) failed" if lc_failed else "")
    fail_if(problems, h, "demo")
    quality = evaluate_night(h, night2)
    console.print(f"[bold green]zsds demo[/] home: {h.root}")
    if len(quality):
        worst = np.maximum(quality.astrom_rms_ra, quality.astrom_rms_dec)
        console.print(f"  astrometric rms       : median {np.nanmedian(worst):.3f} arcsec/axis")
        console.print(f"  star magnitudes       : median |calibrated - true| "
                      f"{np.nanmedian(quality.psf_median_offset.abs()):.4f} mag")
    console.print(f"  raw archive           : {h.raw}")
    console.print(f"  calibrated, references, difference images : {h.products}")
    console.print(f"  alert packets         : {h.alerts}  (zsds alerts tail {h.alerts})")
    n_obj = sum(r.get("sources", 0) + r.get("transients", 0) for r in lc)
    console.print(f"  light curves          : {n_obj} objects in {len(lc)} matchfiles under "
                  f"{h.path('products/lc')}  (zsds lightcurves get --home {h.root} --ra .. "
                  f"--dec .. --plot lc.png)")
    console.print(f"  night summaries       : {h.root / 'logs'}  (zsds status --home {h.root})")
    console.print(f"  archive and web UI    : zsds serve --home {h.root}  "
                  "(then open http://127.0.0.1:8765/)")
    console.print(f"  database              : {h.db_url}")
    console.print(f"  quality reports       : zsds eval calibrate --home {h.root} --night "
                  f"{night2}; zsds eval subtract --home {h.root} --night {night2}")


cli.add_command(import_cmd)
cli.add_command(subtract_cmd)
cli.add_command(rb)
rb.add_command(rb_train_streaks)
alerts.add_command(alerts_send)
cli.add_command(alerts)
cli.add_command(night)
cli.add_command(status)
evaluate.add_command(eval_subtract)
evaluate.add_command(eval_alerts)
evaluate.add_command(eval_lightcurves)
evaluate.add_command(eval_periods)
cli.add_command(lightcurves)
cli.add_command(moving)
evaluate.add_command(eval_linking)
evaluate.add_command(eval_known)
evaluate.add_command(eval_streaks)
evaluate.add_command(eval_reliability)
simulate.add_command(simulate_survey_cmd)
cli.add_command(serve)
cli.add_command(users)
cli.add_command(bench)
cli.add_command(config_group)

if __name__ == "__main__":  # pragma: no cover
    cli()
