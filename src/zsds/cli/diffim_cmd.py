"""CLI of pipeline 6: ``zsds subtract``, ``zsds rb train``/``train-drb``, ``zsds eval subtract``."""

from __future__ import annotations

from pathlib import Path

import click

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


@click.command("subtract")
@home_option
@click.option("--night", required=True, help="UT date of the night, YYYY-MM-DD")
@click.option("--exposure", "expid", type=int, default=None, help="only this exposure id")
@click.option("--ccd", type=int, default=None, help="only this CCD")
@click.option("--quad", type=int, default=None, help="only this quadrant (1-4)")
@config_option
@user_errors
def subtract_cmd(home, db_url, night, expid, ccd, quad, config_file) -> None:
    """ZOGY subtraction, candidates, real-bogus, objects and alert packets for a night's
    quadrants (each quadrant's packets are built and archived right after it, as the
    executive does; ``zsds alerts send`` publishes them)."""
    from zsds.alerts.send import build_quadrant_packets
    from zsds.diffim.run import subtract_night

    pipeline = pipeline_config(config_file)
    h = Home.resolve(home, db_url)
    engine = open_db(h)
    packets: list = []
    packet_errors: list[str] = []

    def build_packets(o) -> None:
        if o.state != "done":
            return
        try:
            packets.extend(build_quadrant_packets(h, engine, night, o.pid))
        except Exception as exc:  # recorded as the failed job ("packets", pid)
            packet_errors.append(f"pid {o.pid}: {type(exc).__name__}: {exc}")

    prog, update = progress_bar("subtract")
    with prog:
        outcomes = subtract_night(h, engine, night, expid, ccd, quad, pipeline,
                                  progress=lambda d, t, item: update(item, d, t),
                                  after=build_packets)
    ok = [o for o in outcomes if o.ok]
    for o in outcomes:
        if not o.ok:
            click.echo(f"not subtracted ({o.state}): pid {o.pid}: {o.message}", err=True)
    for e in packet_errors:
        click.echo(f"packets not built: {e}", err=True)
    ncand = sum(o.ncand for o in ok)
    npass = sum(o.npassed for o in ok)
    nfail = sum(o.state == "failed" for o in outcomes)
    click.echo(f"subtract: {len(ok)} quadrants subtracted, {len(outcomes) - len(ok) - nfail} "
               f"skipped (no reference), {nfail} failed; {ncand} candidates, {npass} pass the "
               f"packet cuts; {len(packets)} alert packets archived under {h.alerts}")
    fail_if([f"{nfail} quadrant(s) failed" if nfail else "",
             f"packets of {len(packet_errors)} quadrant(s) failed" if packet_errors else ""],
            h, "subtract")


@click.group("rb")
def rb() -> None:
    """Real-bogus classifier: train it on simulator-labelled candidates."""


@rb.command("train")
@click.option("--home", "homes", multiple=True, required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="zsds home(s) with references and calibrated science (repeatable)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="model path stem (default: the packaged model)")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the ROC figure here (PNG)")
@click.option("--table", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also save the labelled training table (Parquet)")
@click.option("--fakes", type=int, default=40, show_default=True, help="fakes per quadrant")
@click.option("--night", default=None, help="only science of this night (YYYY-MM-DD)")
@click.option("--target-fpr", type=float, default=0.003, show_default=True,
              help="false-positive rate of the operating threshold (held-out set)")
@user_errors
def rb_train(homes, out, plot, table, fakes, night, target_fpr) -> None:
    """Inject fakes, subtract, label candidates against truth, train, print ROC figures."""
    import pandas as pd

    from zsds.diffim.evaluate import FakeConfig, evaluate_home
    from zsds.diffim.run import SubtractRunConfig, rb_features
    from zsds.realbogus import packaged_model_stem, plot_roc, train

    parts = []
    for k, home in enumerate(homes):
        h = Home.resolve(home)
        prog, update = progress_bar(f"label {h.root.name}")
        with prog:
            cand, _ = evaluate_home(h, open_db(h), SubtractRunConfig(score_rb=False),
                                    FakeConfig(n=fakes, seed=7 + k), night=night,
                                    progress=lambda d, t, item, u=update: u(item, d, t))
        parts.append(cand.assign(home=str(h.root)))
    cand = pd.concat(parts, ignore_index=True)
    cand = cand[cand.real >= 0].reset_index(drop=True)
    if table:
        cand.to_parquet(table)
    model = train(rb_features(cand), cand.real.to_numpy(), target_fpr=target_fpr)
    stem = out or packaged_model_stem()
    model.save(stem)
    m = model.metrics
    console.print(f"[bold]real-bogus {model.version}[/]: trained on {model.n_train} candidates; "
                  f"held-out test set: {int(m['n_real'])} real, {int(m['n_bogus'])} bogus")
    for key in ("auc", "threshold", "fpr_at_threshold", "fnr_at_threshold", "fpr_at_0p5",
                "fnr_at_0p5", "fnr_at_fpr_1pct", "fpr_at_fnr_1pct", "fpr_at_fnr_5pct"):
        console.print(f"  {key:18s} {m[key]:.4f}")
    console.print(f"  model -> {stem}.joblib / .json")
    if plot:
        from zsds.realbogus.model import split_train_test

        _, test = split_train_test(cand.real.to_numpy(), model.config)
        sub = cand.iloc[test]
        plot_roc(sub.real.to_numpy(), model.score(rb_features(sub)), plot,
                 f"real-bogus {model.version}", threshold=model.threshold)
        console.print(f"  ROC figure -> {plot}")


@rb.command("train-drb")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="labelled triplets (.npz): read if it exists, else simulated and saved here")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder for the simulated homes (default: a temporary one, removed)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="weights file (default: the packaged model)")
@click.option("--passes", type=int, default=3, show_default=True,
              help="injection rounds per simulated science image")
@click.option("--epochs", type=int, default=10, show_default=True, help="training epochs")
@click.option("--threads", type=int, default=2, show_default=True,
              help="CPU threads (and processes simulating the nights)")
@click.option("--seed", type=int, default=0, show_default=True, help="training seed")
@click.option("--target-fpr", type=float, default=0.01, show_default=True,
              help="false-positive rate of the operating threshold (validation images)")
@click.option("--alerts", "alert_dirs", multiple=True,
              type=click.Path(exists=True, path_type=Path),
              help="real ZTF alerts to compare with braai's drb (file or folder; repeatable)")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the held-out ROC figure here (PNG)")
@user_errors
def rb_train_drb(data, work, out, passes, epochs, threads, seed, target_fpr, alert_dirs,
                 plot) -> None:
    """Train the drb network on simulated cutout triplets; print its held-out figures.

    Two homes are simulated and processed by the pipeline (or --data is read), events and
    artefacts are injected into their science images and labelled, and the network is trained
    with PyTorch (the `train` extra) on some images, its threshold chosen on others, and
    measured on the rest.
    """
    import shlex
    import sys
    import time
    from dataclasses import replace

    from zsds import __version__ as zsds_version
    from zsds.realbogus.drb import DRB_VERSION
    from zsds.realbogus.drb_data import TripletSet, build_training_set
    from zsds.realbogus.drb_train import DRBTrainConfig, compare_with_braai, train_drb
    from zsds.realbogus.model import jsonable

    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise click.ClickException("training needs PyTorch: pip install 'zsds[train]'") from exc
    t0 = time.perf_counter()
    read_data = data is not None and data.exists()
    if read_data:
        ts = TripletSet.load(data)
        console.print(f"read {len(ts)} triplets from {data}")
    else:
        console.print(f"simulating two homes, {passes} injection passes per image ...")
        ts = build_training_set(passes=passes, work=work, workers=threads,
                                log=lambda line: console.print(line))
        if data is not None:
            ts.save(data)
            console.print(f"triplets -> {data}")
    t_data = time.perf_counter() - t0
    cfg = DRBTrainConfig(epochs=epochs, seed=seed, threads=threads, target_fpr=target_fpr)
    model, rep = train_drb(ts, cfg, log=lambda line: console.print(line))
    cmp = compare_with_braai(model, alert_dirs) if alert_dirs else None
    meta = dict(model.meta)
    if cmp is not None:
        meta["braai_comparison"] = {k: v for k, v in cmp.items() if k != "scores"}
    # How these weights were made, so that a reviewer can rerun it.
    argv = sys.argv[1:] if Path(sys.argv[0]).name == "zsds" else None
    command = (shlex.join(["zsds", *argv]) if argv
               else click.get_current_context().command_path)
    meta["provenance"] = {
        "command": command,
        "triplets": (f"read from {data} (simulated by an earlier run)" if read_data
                     else "simulated by this run"),
        "zsds_version": zsds_version,
        "seconds_to_weights": round(time.perf_counter() - t0, 1),
    }
    model = replace(model, meta=jsonable(meta))
    dest = out or (Path(__file__).resolve().parents[1] / "realbogus" / "models"
                   / f"{DRB_VERSION}.npz")
    path = model.save(dest)
    m, mp = rep["test"], rep["test_passed"]
    click.echo(f"drb {model.version}: {rep['n_train']} training, {rep['n_val']} validation, "
               f"{rep['n_test']} held-out triplets (split by image); best epoch "
               f"{rep['best_epoch']}")
    click.echo(f"held-out test set: {m['n_real']} real, {m['n_bogus']} bogus")
    click.echo(f"  threshold          {model.threshold:.4f}  (FPR <= {target_fpr} on validation)")
    click.echo(f"  FPR at threshold   {m['fpr_at_threshold']:.4f}")
    click.echo(f"  FNR at threshold   {m['fnr_at_threshold']:.4f}")
    click.echo(f"  ROC AUC            {m['auc']:.4f}")
    click.echo(f"  FPR / FNR at 0.5   {m['fpr_at_0p5']:.4f} / {m['fnr_at_0p5']:.4f}")
    if mp:
        click.echo(f"  packet candidates ({mp['n_real']} real, {mp['n_bogus']} bogus): AUC "
                   f"{mp['auc']:.4f}, FPR {mp['fpr_at_threshold']:.4f}, "
                   f"FNR {mp['fnr_at_threshold']:.4f}")
    click.echo(f"  feature model rb on the same candidates: AUC {rep['rb_test_auc']:.4f} "
               f"(drb {rep['drb_test_auc_where_rb']:.4f})")
    click.echo("  called real, by kind: " + ", ".join(
        f"{k} {v:.3f}" for k, v in rep["per_kind_called_real"].items()))
    if cmp is not None:
        click.echo(f"real ZTF alerts: {cmp['n_alerts']} ({cmp['n_with_drb']} with braai drb: "
                   f"{cmp['n_braai_real']} >= 0.5, {cmp['n_braai_bogus']} < 0.5)")
        click.echo(f"  braai >= 0.5 that zsds scores >= 0.5: {cmp['agree_real_0p5']:.3f}, "
                   f">= threshold: {cmp['agree_real_threshold']:.3f}; braai < 0.5 that zsds "
                   f"scores < 0.5: {cmp['agree_bogus_0p5']:.3f}; Spearman "
                   f"{cmp['spearman']:.3f}")
    click.echo(f"  weights -> {path}  (data {t_data:.0f} s, training "
               f"{rep['train_seconds']:.0f} s wall / {rep['train_cpu_seconds']:.0f} s CPU, "
               f"numpy vs torch {rep['numpy_vs_torch']:.1e})")
    if plot:
        from zsds.realbogus import plot_roc

        sub = ts.subset((ts.table["split"] == "test").to_numpy())
        plot_roc(sub.table["label"].to_numpy(), model.score_normalized(
            sub.x.astype("float32")), plot, f"drb {model.version}", threshold=model.threshold)
        click.echo(f"  ROC figure -> {plot}")


@click.command("subtract")
@home_option
@click.option("--fakes", type=int, default=40, show_default=True, help="fakes per quadrant")
@click.option("--limit", type=int, default=None, help="at most this many quadrants")
@click.option("--night", default=None, help="only science of this night (YYYY-MM-DD)")
@user_errors
def eval_subtract(home, db_url, fakes, limit, night) -> None:
    """Completeness, photometry and false candidates of subtraction, with injected fakes."""
    from zsds.diffim.evaluate import FakeConfig, evaluate_home, summarize
    from zsds.realbogus import load_default_model

    h = Home.resolve(home, db_url)
    prog, update = progress_bar("eval subtract")
    with prog:
        cand, fk = evaluate_home(h, open_db(h), fakes=FakeConfig(n=fakes), limit=limit,
                                 night=night,
                                 progress=lambda d, t, item: update(item, d, t))
    s = summarize(cand, fk, load_default_model().threshold)
    for k, v in s.items():
        console.print(f"  {k:30s} {v:.4f}" if isinstance(v, float) else f"  {k:30s} {v}")
