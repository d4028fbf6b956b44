"""CLI of pipeline 8: ``zsds lightcurves build|get``, ``zsds eval lightcurves`` and
``zsds simulate survey``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table as RichTable

from zsds.cli.common import (
    console,
    home_option,
    open_db,
    parse_int_list,
    progress_bar,
    user_errors,
)
from zsds.core.home import Home


@click.group("lightcurves")
def lightcurves() -> None:
    """Light curves: source matching, relative photometry, matchfiles, metrics, search."""


@lightcurves.command("build")
@home_option
@click.option("--field", "fields", multiple=True, type=int,
              help="only this field (repeatable; default: every field with a reference)")
@click.option("--workers", type=int, default=None, help="local Dask workers (default: cores)")
@click.option("--scheduler", default=None, help="address of an existing Dask scheduler")
@click.option("--no-features", is_flag=True, help="IPAC metrics only (skip the > 100 "
              "features and the periodogram)")
@user_errors
def lc_build(home, db_url, fields, workers, scheduler, no_features) -> None:
    """Match every epoch to its reference catalogue, refine the zero points, compute metrics,
    write the matchfiles, the object rows of the database and the HATS catalogue."""
    from zsds.executive import ExecConfig, Executive

    h = Home.resolve(home, db_url)
    engine = open_db(h)
    prog, update = progress_bar("light curves")
    with prog, Executive(h, engine, ExecConfig(scheduler=scheduler, n_workers=workers),
                         progress=update) as ex:
        results = ex.build_lightcurves(list(fields) or None, features=not no_features)
    if not results:
        raise click.ClickException("nothing to do: no field/quadrant/filter with calibrated "
                                   "epochs and a reference image")
    t = RichTable(title="light curves")
    for c in ("unit", "exposures", "sources", "transients", "points", "zprefine_rms",
              "bad_epochs"):
        t.add_column(c, justify="right")
    for r in results:
        if "error" in r:
            t.add_row(r["unit"], f"[red]{r['error']}", "", "", "", "", "")
            continue
        t.add_row(r["unit"], str(r["exposures"]), str(r["sources"]), str(r["transients"]),
                  str(r["points"]), f"{r['zprefine_rms']:.4f}", str(r["bad_epochs"]))
    Console(width=140, stderr=True).print(t)
    failed = [r for r in results if "error" in r]
    console.print(f"matchfiles under {h.path('products/lc')}; HATS catalogue "
                  f"{h.path('products/lc/hats/ztf_lc_objects')}")
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(results)} units failed")


@lightcurves.command("get")
@home_option
@click.option("--ra", type=float, required=True, help="deg")
@click.option("--dec", type=float, required=True, help="deg")
@click.option("--radius", type=click.FloatRange(min=0, min_open=True), default=2.0,
              show_default=True, help="arcsec")
@click.option("--band", type=click.Choice(["g", "r", "i"]), default=None)
@click.option("--bad-catflags-mask", type=int, default=0, show_default=True,
              help="drop points with catflags & mask != 0 (32768: bad epochs)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the points as CSV (IRSA light-curve columns)")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write a PNG: light curve per band with errors, periodogram, folded curve")
@user_errors
def lc_get(home, db_url, ra, dec, radius, band, bad_catflags_mask, out, plot) -> None:
    """Objects within RADIUS of (RA, DEC) and their light curves."""
    from zsds.core.instrument import Filter
    from zsds.lightcurves.plot import Curve, plot_lightcurves
    from zsds.lightcurves.query import find_objects, lightcurve_points, lightcurve_table

    h = Home.resolve(home, db_url)
    engine = open_db(h)
    fid = Filter.parse(band).fid if band else None
    objs = find_objects(engine, ra, dec, radius, fid=fid)
    if objs.empty:
        raise click.ClickException(f"no light-curve object within {radius}\" of "
                                   f"({ra}, {dec})")
    t = RichTable(title=f"objects within {radius}\"")
    for c in ("oid", "band", "dist\"", "ra", "dec", "nobs", "ngood", "median", "rms",
              "period d"):
        t.add_column(c, justify="right")
    for r in objs.to_dict("records"):
        t.add_row(str(r["oid"]), Filter(int(r["fid"])).code, f"{r['dist_arcsec']:.2f}",
                  f"{r['ra']:.6f}", f"{r['dec']:.6f}", str(r["nobs"]), str(r["ngoodobs"]),
                  f"{r['medianmag']:.3f}", f"{r['magrms']:.4f}", f"{r['period']:.5f}")
    Console(width=140, stderr=True).print(t)
    table = lightcurve_table(h, objs, bad_catflags_mask=bad_catflags_mask)
    if out:
        table.to_csv(out, index=False)
        console.print(f"{len(table)} points -> {out}")
    elif len(objs) == 1 or plot is None:
        click.echo(table.to_csv(index=False), nl=False)
    if plot:
        pts = lightcurve_points(h, objs)
        # One curve per band: the nearest object of each.
        curves, seen = [], set()
        for r in objs.to_dict("records"):
            if r["fid"] in seen:
                continue
            seen.add(r["fid"])
            curves.append(Curve(int(r["oid"]), int(r["fid"]), pts[int(r["oid"])],
                                r["period"]))
        plot_lightcurves(curves, plot, f"({ra:.5f}, {dec:+.5f}) r = {radius}\"")
        console.print(f"plot -> {plot}")


@click.command("lightcurves")
@home_option
@click.option("--min-epochs", type=int, default=30, show_default=True,
              help="periodic variables need this many good epochs")
@click.option("--min-amp", type=float, default=0.1, show_default=True,
              help="... and this peak-to-peak amplitude (mag)")
@click.option("--bright-snr", type=float, default=300.0, show_default=True,
              help="bright stars: median S/N at least this")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write a PNG: rms vs S/N before/after refinement, found vs true periods")
@user_errors
def eval_lightcurves(home, db_url, min_epochs, min_amp, bright_snr, plot) -> None:
    """Light curves vs truth: repeatability of bright non-variable stars, periods found."""
    from zsds.lightcurves.evaluate import evaluate_lightcurves, save_report

    h = Home.resolve(home, db_url)
    q, bright, var = evaluate_lightcurves(h, open_db(h), min_epochs=min_epochs,
                                          min_amp=min_amp, bright_snr=bright_snr)
    if q.matchfiles == 0:
        raise click.ClickException("no matchfiles: run zsds lightcurves build first")
    console.print(f"matchfiles                      : {q.matchfiles}")
    console.print(f"bright non-variable stars       : {q.n_bright} (S/N >= {bright_snr:g}, "
                  "isolated)")
    console.print(f"repeatability, raw (median rms) : {q.rms_raw_mmag:.2f} mmag")
    console.print(f"repeatability, refined          : {q.rms_refined_mmag:.2f} mmag")
    console.print(f"periodic variables              : {q.n_periodic} (amp >= {min_amp}, "
                  f">= {min_epochs} epochs); period recovered {100 * q.period_recovered:.1f}%")
    console.print(f"  well measured (amp >= 3 sigma): {q.n_periodic_well}; recovered "
                  f"{100 * q.period_recovered_well:.1f}%")
    from zsds.lightcurves.evaluate import period_recovery_home

    rec = period_recovery_home(h, open_db(h), min_amp=min_amp)
    if rec is not None:
        console.print(f"injected variables at this cadence ({rec.n_epochs} good epochs over "
                      f"{rec.baseline_days:.0f} d) and the pipeline's errors, recovered:")
        for k in sorted(rec.n):
            console.print(f"  {k:<10}: {100 * rec.recovered[k]:5.1f}% of {rec.n[k]} "
                          f"({100 * rec.share[k]:.0f}% of the sky's variables)")
        console.print(f"  all       : {100 * rec.overall:5.1f}% (weighted by the sky's mix)")
    save_report(h.root / "logs" / "lightcurves_quality.json", q, rec)
    if plot:
        from zsds.lightcurves.evaluate import plot_quality

        plot_quality(bright, var, plot)
        console.print(f"plot -> {plot}")


@click.command("survey")
@home_option
@click.option("--start", default="2026-09-10", show_default=True, help="UT date of night 0")
@click.option("--field", type=int, default=645, show_default=True)
@click.option("--ccds", default="6", show_default=True, help="comma-separated CCD ids")
@click.option("--quad-size", type=int, default=512, show_default=True)
@click.option("--nights", type=int, default=30, show_default=True,
              help="nights with one exposure after night 0")
@click.option("--span", type=int, default=60, show_default=True,
              help="days the nights are drawn from")
@click.option("--ref-epochs", type=int, default=15, show_default=True,
              help="consecutive exposures on night 0 (for the reference)")
@click.option("--workers", type=int, default=None, help="local Dask workers")
@click.option("--seed", type=int, default=1, show_default=True)
@user_errors
def simulate_survey_cmd(home, db_url, start, field, ccds, quad_size, nights, span,
                        ref_epochs, workers, seed) -> None:
    """Simulate a multi-night survey of one field and run each night through the pipeline
    (for light curves; no transients or asteroids)."""
    from zsds.lightcurves.survey import SurveyConfig, simulate_survey

    h = Home.resolve(home, db_url).ensure()
    cfg = SurveyConfig(start=start, field=field, ccds=tuple(parse_int_list(ccds, "CCD")),
                       quad_size=quad_size, ref_epochs=ref_epochs, n_nights=nights,
                       span_days=span, seed=seed)
    prog, update = progress_bar("survey")
    with prog:
        done = simulate_survey(h, open_db(h), cfg, n_workers=workers, progress=update)
    console.print(f"{len(done)} nights simulated and processed in {h.root}")
