"""CLI of pipeline 6: ``zsds subtract``, ``zsds rb train`` and ``zsds eval subtract``."""

from __future__ import annotations

from pathlib import Path

import click

from zsds.cli.common import (
    console,
    fail_if,
    home_option,
    open_db,
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
@user_errors
def subtract_cmd(home, db_url, night, expid, ccd, quad) -> None:
    """ZOGY subtraction, candidates, real-bogus and objects for a night's quadrants."""
    from zsds.diffim.run import subtract_night

    h = Home.resolve(home, db_url)
    prog, update = progress_bar("subtract")
    with prog:
        outcomes = subtract_night(h, open_db(h), night, expid, ccd, quad,
                                  progress=lambda d, t, item: update(item, d, t))
    ok = [o for o in outcomes if o.ok]
    for o in outcomes:
        if not o.ok:
            click.echo(f"not subtracted ({o.state}): pid {o.pid}: {o.message}", err=True)
    ncand = sum(o.ncand for o in ok)
    npass = sum(o.npassed for o in ok)
    nfail = sum(o.state == "failed" for o in outcomes)
    click.echo(f"subtract: {len(ok)} quadrants subtracted, {len(outcomes) - len(ok) - nfail} "
               f"skipped (no reference), {nfail} failed; {ncand} candidates, {npass} pass the "
               "packet cuts")
    fail_if([f"{nfail} quadrant(s) failed" if nfail else ""], h, "subtract")


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
