"""CLI of pipeline 9: ``zsds moving link|report|tracks|fit`` and
``zsds eval linking|known|streaks``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table as RichTable

from zsds.cli.common import console, home_option, open_db, user_errors
from zsds.core.home import Home


@click.group("moving")
def moving() -> None:
    """Moving objects: link detections into tracks, fit orbits, write MPC/ADES reports."""


@moving.command("link")
@home_option
@click.option("--end-night", required=True, help="last night of the window, YYYY-MM-DD")
@click.option("--window", type=click.IntRange(min=1), default=3, show_default=True,
              help="nights in the window")
@click.option("--min-rb", type=float, default=0.2, show_default=True,
              help="smallest real-bogus score of a detection used")
@click.option("--no-orbits", is_flag=True, help="skip the orbit-fit check of each linkage")
@user_errors
def moving_link(home, db_url, end_night, window, min_rb, no_orbits) -> None:
    """Link the window's positive detections into tracks with orbits (idempotent)."""
    from zsds.moving.run import LinkRunConfig, link_window

    h = Home.resolve(home, db_url)
    engine = open_db(h)
    cfg = LinkRunConfig(window_nights=window, min_rb=min_rb, fit_orbits=not no_orbits)
    with console.status("linking"):
        out = link_window(h, engine, end_night, cfg)
    console.print(f"window ending {out.end_night}: {out.ndet} detections, "
                  f"{out.nstationary} stationary, {out.ntracklets} tracklets -> "
                  f"[bold]{out.ntracks} tracks[/] ({out.nknown} known objects)")
    if out.tracks is not None and len(out.tracks):
        _tracks_table(out.tracks)


def _tracks_table(tracks) -> None:
    t = RichTable(title="tracks")
    for c in ("trksub", "known as", "ndet", "nights", "arc (d)", "a (au)", "e", "i (deg)",
              "H", "rms (\")", "orbit"):
        t.add_column(c, justify="right")
    for r in tracks.to_dict("records"):
        def f(v, fmt):
            return "" if v is None or v != v else format(v, fmt)

        des = r.get("designation")
        t.add_row(r["trksub"], des if isinstance(des, str) else "", str(r["ndet"]),
                  str(r["nnights"]),
                  f"{r['jdend'] - r['jdstart']:.2f}", f(r.get("a"), ".3f"), f(r.get("e"), ".3f"),
                  f(r.get("inc"), ".2f"), f(r.get("H"), ".1f"), f(r.get("rms"), ".2f"),
                  "ok" if r.get("orbit_ok") else "[red]no")
    console.print(t)


@moving.command("tracks")
@home_option
@click.option("--end-night", default=None, help="only the window ending this night")
@user_errors
def moving_tracks(home, db_url, end_night) -> None:
    """List the stored tracks."""
    import pandas as pd
    from sqlalchemy import select

    from zsds.core.naming import nid_of
    from zsds.db.engine import session
    from zsds.db.schema import SSTrack

    h = Home.resolve(home, db_url)
    engine = open_db(h)
    q = select(SSTrack)
    if end_night:
        q = q.where(SSTrack.window_end == nid_of(end_night))
    with session(engine) as s:
        rows = [{c.name: getattr(t, c.name) for c in SSTrack.__table__.columns}
                for t in s.execute(q.order_by(SSTrack.trksub)).scalars()]
    if not rows:
        console.print("no tracks")
        return
    _tracks_table(pd.DataFrame(rows))


@moving.command("report")
@home_option
@click.option("--end-night", required=True, help="last night of the window, YYYY-MM-DD")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="folder (default HOME/products/moving/YYYYMMDD)")
@user_errors
def moving_report(home, db_url, end_night, out_dir) -> None:
    """Write the window's MPC 80-column and ADES PSV reports (station I41); the PSV is
    validated with iau-ades."""
    from zsds.moving.run import write_reports

    h = Home.resolve(home, db_url)
    engine = open_db(h)
    paths = write_reports(h, engine, end_night, out_dir)
    for k, p in paths.items():
        n = sum(1 for line in p.read_text().splitlines() if line and not line[:3].isupper()
                and not line.startswith(("#", "!", "permID", "provID", "trkSub")))
        console.print(f"{k:6s}: {p}  ({n} observations)")


@click.command("linking")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--density", type=float, default=1.0, show_default=True,
              help="asteroid density scale of the simulated window")
@click.option("--nights", type=int, default=3, show_default=True)
@click.option("--orbits/--no-orbits", default=True, show_default=True,
              help="check every linkage with an orbit fit")
@user_errors
def eval_linking(seed, density, nights, orbits) -> None:
    """Linking completeness and purity on a simulated window (catalogue level)."""
    from zsds.moving.evaluate import format_summary, run_linking_evaluation

    kw = {}
    if orbits:
        from zsds.moving.run import fit_track_orbit

        def accept(df):
            f = fit_track_orbit(df)
            return bool(f.ok), -float(f.rms_arcsec)

        kw["accept"] = accept
    with console.status("simulating and linking"):
        res = run_linking_evaluation(seed=seed, density_scale=density, n_nights=nights,
                                     verbose=False, **kw)
    console.print(format_summary(res))


@click.command("known")
@home_option
@click.option("--night", required=True, help="UT date of a processed night, YYYY-MM-DD")
@user_errors
def eval_known(home, db_url, night) -> None:
    """Known-object tagging of a processed night against the simulator's truth: the fraction
    of detected known asteroids brighter than the limit tagged within 2"."""
    from zsds.moving.quality import evaluate_known_night

    h = Home.resolve(home, db_url)
    engine = open_db(h)
    res = evaluate_known_night(h, engine, night)
    for k, v in res.items():
        console.print(f"{k:18s} {v if not isinstance(v, float) else round(v, 4)}")
    if res["n_detected"] == 0:
        console.print("[yellow]no known asteroid was detected on this night's images")


@click.command("streaks")
@click.option("--images", type=click.IntRange(min=1), default=16, show_default=True,
              help="simulated difference images")
@click.option("--size", type=click.IntRange(min=128), default=1024, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fwhm", type=float, default=2.5, show_default=True, help="PSF FWHM (px)")
@click.option("--home", default=None, help="a processed home: evaluate its night instead")
@click.option("--night", default=None, help="with --home: UT date of a processed night")
@user_errors
def eval_streaks(images, size, seed, fwhm, home, night) -> None:
    """Streak completeness (integrated S/N >= 10) and false streaks per full quadrant: on
    simulated difference images with cosmic rays, star residuals and bad columns, or (with
    --home and --night) on a processed night against the camera simulator's trails."""
    from zsds.streaks.evaluate import evaluate_streaks

    if home or night:
        if not (home and night):
            raise click.UsageError("--home and --night go together")
        from zsds.moving.quality import evaluate_streaks_night
        from zsds.streaks.quality import evaluate_injected_streaks

        h = Home.resolve(home)
        engine = open_db(h)
        console.print("[bold]simulated trails on the night's images (truth)")
        for k, v in evaluate_streaks_night(h, engine, night).items():
            console.print(f"  {k:26s} {round(v, 4) if isinstance(v, float) else v}")
        console.print("[bold]injected trails, subtracted and searched like the pipeline")
        with console.status("injecting and subtracting"):
            res = evaluate_injected_streaks(h, engine, night, seed=seed)
        for k, v in res.items():
            if k not in ("truth", "found"):
                console.print(f"  {k:26s} {round(v, 4) if isinstance(v, float) else v}")
        return

    with console.status("simulating and searching"):
        res = evaluate_streaks(images, size, seed, fwhm=fwhm, verbose=False)
    keys = ("n_images", "size", "n_true_snr10", "completeness_snr10", "completeness_snr10_rb",
            "false_per_quadrant", "false_per_quadrant_rb", "endpoint_err_median_px",
            "angle_err_median_deg", "flux_ratio_median", "seconds_per_512sq")
    for k in keys:
        v = res.get(k)
        console.print(f"{k:24s} {round(v, 4) if isinstance(v, float) else v}")
    console.print("bars: completeness (rb >= 0.5) >= 0.90, false per quadrant (rb) <= 0.5")


@moving.command("fit")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["auto", "mpc80", "ades"]), default="auto",
              show_default=True, help="input format (auto: XML or '|' columns are ADES)")
@click.option("--object", "object_id", default=None,
              help="designation (or trkSub) to fit when the file holds several objects")
@click.option("--engine", type=click.Choice(["auto", "nbody", "two-body"]), default="auto",
              show_default=True, help="propagation (auto: N-body beyond the two-body budget)")
@click.option("--bound-only", is_flag=True, help="refuse hyperbolic (unbound) solutions")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="write a residual plot (PNG)")
@click.option("--residuals/--no-residuals", default=True, show_default=True,
              help="print every observation's O-C")
@user_errors
def moving_fit(path, fmt, object_id, engine, bound_only, plot_path, residuals) -> None:
    """Fit an orbit to the astrometry in PATH (MPC 80-column or ADES PSV/XML), any arc length,
    with N-body least squares, per-observation weights and outlier rejection; prints the
    elements with their 1-sigma uncertainties, the rms and the residuals."""
    import numpy as np

    from zsds.moving.orbitdet import (
        OrbitDeterminationConfig,
        determine_orbit,
        element_uncertainties,
    )

    obs = _read_astrometry(path, fmt)
    obs, name = _one_object(obs, object_id)
    cfg = OrbitDeterminationConfig(engine=engine, allow_hyperbolic=not bound_only)
    with console.status(f"fitting {len(obs)} observations of {name}"):
        fit = determine_orbit(obs, cfg, designation=name)
    mjd = obs["mjd"].to_numpy(float)
    stn = obs["stn"].astype(str).to_numpy() if "stn" in obs else np.full(len(obs), "?")
    first, last = _iso(mjd.min()), _iso(mjd.max())
    click.echo(f"{name}: {len(obs)} observations, {first[:10]} .. {last[:10]} "
               f"({(mjd.max() - mjd.min()) / 365.25:.2f} yr), {len(set(stn))} stations")
    click.echo(f"engine: {fit.engine}" + (" (ASSIST + REBOUND, DE440 + 16 asteroids)"
                                          if fit.engine == "nbody" else ""))
    if fit.orbit is None:
        raise click.ClickException(f"no orbit: {fit.message}")
    used = ~fit.rejected
    res = fit.residuals[used]
    click.echo(f"observations used {fit.n_used}, rejected {int(fit.rejected.sum())}; "
               f"rms {fit.rms_arcsec:.3f}\" (RA {np.sqrt(np.mean(res[:, 0] ** 2)):.3f}\", "
               f"Dec {np.sqrt(np.mean(res[:, 1] ** 2)):.3f}\"); chi2/dof "
               f"{fit.chi2 / max(fit.dof, 1):.3f}; {'ok' if fit.ok else 'NOT OK'}")
    click.echo(f"epoch MJD {fit.epoch:.6f} TDB ({_iso(fit.epoch, 'tdb')[:19]} TDB); "
               "heliocentric osculating elements, ecliptic and equinox J2000")
    sig = element_uncertainties(fit)
    o = fit.orbit
    rows = [("a", "au", o.a[0]), ("e", "", o.e[0]), ("i", "deg", o.inc[0]),
            ("node", "deg", o.node[0]), ("argperi", "deg", o.argperi[0]),
            ("M", "deg", o.mean_anomaly[0]), ("q", "au", o.a[0] * (1 - o.e[0]))]
    keys = ("a", "e", "inc", "node", "argperi", "mean_anomaly", "q")
    click.echo(f"  {'element':14s} {'value':>16s}  {'1-sigma':>10s}")
    for (label, unit, val), k in zip(rows, keys, strict=True):
        click.echo(f"  {(label + (' (' + unit + ')' if unit else '')):14s} {val:16.10f}  "
                   f"{sig[k]:10.3g}")
    click.echo("  (1-sigma from the covariance, scaled by chi2/dof when above 1)")
    click.echo(f"fit: {fit.message}")
    if residuals:
        click.echo("residuals (O-C, arcsec; RA includes cos Dec):")
        click.echo(f"  {'date (UTC)':23s} {'stn':4s} {'dRA':>8s} {'dDec':>8s} {'sigma':>6s}")
        order = np.argsort(mjd, kind="stable")
        for i in order:
            flag = "  rejected" if fit.rejected[i] else ""
            d = fit.residuals[i]
            click.echo(f"  {_iso(mjd[i])[:23]:23s} {stn[i]:4s} {d[0]:8.2f} {d[1]:8.2f} "
                       f"{fit.sigma[i] if fit.sigma.size else float('nan'):6.2f}{flag}")
    if plot_path is not None:
        _residual_plot(plot_path, mjd, fit, name)
        click.echo(f"plot: {plot_path}")


def _read_astrometry(path: Path, fmt: str):
    from zsds.moving.ades import read_ades
    from zsds.moving.mpc80 import read_mpc80

    if fmt == "auto":
        head = path.read_text(encoding="utf-8", errors="replace")[:4096].lstrip()
        fmt = "ades" if head.startswith("<") or any(
            "|" in ln for ln in head.splitlines() if ln and not ln.startswith(("#", "!"))
        ) else "mpc80"
    return read_ades(path) if fmt == "ades" else read_mpc80(path)


def _one_object(obs, object_id):
    import pandas as pd

    key = obs["designation"].where(obs["designation"].notna(), obs["trksub"])
    names = pd.unique(key.dropna().astype(str))
    if object_id is not None:
        sel = key.astype(str) == str(object_id)
        if not sel.any():
            raise click.UsageError(f"no observations of {object_id!r}; the file holds "
                                   f"{', '.join(names[:20])}")
        return obs[sel.to_numpy()].reset_index(drop=True), str(object_id)
    if len(names) > 1:
        raise click.UsageError(f"the file holds {len(names)} objects ({', '.join(names[:20])}"
                               f"{', ...' if len(names) > 20 else ''}); choose one with --object")
    if len(obs) == 0:
        raise click.UsageError("the file holds no observations")
    return obs.reset_index(drop=True), (str(names[0]) if len(names) else "fit")


def _iso(mjd: float, scale: str = "utc") -> str:
    from astropy.time import Time

    return str(Time(float(mjd), format="mjd", scale=scale).isot)


def _residual_plot(path: Path, mjd, fit, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    year = 2000.0 + (np.asarray(mjd) - 51544.5) / 365.25
    rej = fit.rejected
    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for ax, k, label in zip(axes, (0, 1), ("dRA cos Dec (\")", "dDec (\")"), strict=True):
        ax.scatter(year[~rej], fit.residuals[~rej, k], s=6, label="used")
        if rej.any():
            ax.scatter(year[rej], fit.residuals[rej, k], s=14, marker="x", color="red",
                       label="rejected")
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.set_ylabel(label)
        lim = max(1.0, 4.0 * fit.rms_arcsec)
        ax.set_ylim(-lim, lim)
    axes[0].set_title(f"{name}: rms {fit.rms_arcsec:.3f}\", {fit.n_used} used, "
                      f"{int(rej.sum())} rejected ({fit.engine})")
    axes[0].legend(loc="upper left", fontsize=8)
    axes[1].set_xlabel("year (UTC)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
