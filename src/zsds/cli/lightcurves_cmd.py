"""CLI of pipeline 8: ``zsds lightcurves build|get``, ``zsds eval lightcurves`` and
``zsds simulate survey``."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
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


def _bands_option(text: str | None) -> list[str] | None:
    if text is None:
        return None
    bands = [b.strip() for b in text.split(",") if b.strip()]
    if not bands:
        raise click.BadParameter("give at least one band, e.g. g,r")
    return bands


@lightcurves.command("period")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--bands", default=None,
              help="comma-separated bands searched together (default: all bands of a file)")
@click.option("--min-period", type=float, default=0.1, show_default=True, help="d")
@click.option("--max-period", type=float, default=None,
              help="d (default: each light curve's time baseline)")
@user_errors
def lc_period(files, bands, min_period, max_period) -> None:
    """Multi-band period of light-curve CSV files (columns time, mag, magerr, band).

    Prints CSV: id (file name without .csv), period (d), power (combined 1-harmonic
    Lomb-Scargle power, 0..1), n_points (points used).  Aliases at 1 and 2 cycles/day and
    harmonics are compared by the multi-band harmonic fit; see docs/lightcurves.md.
    """
    from zsds.lightcurves.periods import PeriodSearchConfig, periods_of_files

    config = PeriodSearchConfig(min_period=min_period, max_period=max_period)
    table = periods_of_files(list(files), _bands_option(bands), config)
    click.echo("id,period,power,n_points")
    for r in table.itertuples(index=False):
        period = f"{r.period:.8f}" if np.isfinite(r.period) else "nan"
        power = f"{r.power:.4f}" if np.isfinite(r.power) else "nan"
        click.echo(f"{r.id},{period},{power},{r.n_points}")


@click.command("periods")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--bands", "band_sets", multiple=True,
              help="comma-separated band set searched together, e.g. u,g,r,i,z or g,r "
                   "(repeatable; default: all bands, then each band alone)")
@click.option("--half", type=click.Choice(["all", "development", "held-out"]), default="all",
              show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the per-star table (CSV)")
@click.option("--min-period", type=float, default=0.2, show_default=True,
              help="d; with --max-period, the period range searched (default: the RR Lyrae "
                   "prior, the same for every star)")
@click.option("--max-period", type=float, default=1.0, show_default=True, help="d")
@user_errors
def eval_periods(folder, band_sets, half, out, min_period, max_period) -> None:
    """Period recovery (within 1%) on real light curves with published periods.

    FOLDER holds periods.csv (id, period_d) and light-curves/<id>.csv.  Stars are split into
    a development and a held-out half by a hash of their id.  Periods are searched in
    [--min-period, --max-period] (default 0.2-1 d, the RR Lyrae range).
    """
    from zsds.lightcurves.period_eval import (
        HALF_NAMES,
        load_period_set,
        recovery_summary,
        recovery_table,
    )
    from zsds.lightcurves.periods import PeriodSearchConfig

    config = PeriodSearchConfig(min_period=min_period, max_period=max_period)

    which = None if half == "all" else HALF_NAMES.index(half)
    lcs, per = load_period_set(folder, which)
    if per.empty:
        raise click.ClickException(f"no stars in {folder}")
    every = sorted({b for d in lcs.values() for b in d["band"].unique()})
    if band_sets:
        sets = {b.replace(",", ""): _bands_option(b) for b in band_sets}
        unknown = sorted({b for v in sets.values() for b in v or ()} - set(every))
        if unknown:
            raise click.BadParameter(f"band(s) {', '.join(unknown)} not in the light curves "
                                     f"({', '.join(every)}); separate bands by commas",
                                     param_hint="--bands")
    else:
        sets = {"".join(every): every, **{b: [b] for b in every}}
    table = recovery_table(lcs, per, sets, config)
    summary = recovery_summary(table, list(sets))
    t = RichTable(title=f"period within 1% of the published one ({folder.name})")
    t.add_column("bands")
    for h in (*HALF_NAMES, "all"):
        t.add_column(h, justify="right")
    for name, r in summary.iterrows():
        t.add_row(str(name), *(f"{100 * r[h]:.1f}%" if np.isfinite(r[h]) else "-"
                               for h in (*HALF_NAMES, "all")))
    Console(width=120).print(t)
    console.print("stars: " + ", ".join(f"{h} {int(summary[f'n_{h}'].iloc[0])}"
                                        for h in HALF_NAMES))
    if out:
        table.to_csv(out)
        console.print(f"per-star table -> {out}")


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
    from zsds.evaluation.survey import SurveyConfig, simulate_survey

    h = Home.resolve(home, db_url).ensure()
    cfg = SurveyConfig(start=start, field=field, ccds=tuple(parse_int_list(ccds, "CCD")),
                       quad_size=quad_size, ref_epochs=ref_epochs, n_nights=nights,
                       span_days=span, seed=seed)
    prog, update = progress_bar("survey")
    with prog:
        done = simulate_survey(h, open_db(h), cfg, n_workers=workers, progress=update)
    console.print(f"{len(done)} nights simulated and processed in {h.root}")
