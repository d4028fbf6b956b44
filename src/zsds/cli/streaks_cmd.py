"""``zsds rb train-streaks``: the explicit command that trains the streak real-bogus model.

Loading the model never trains one (:func:`zsds.streaks.features.load_streak_rb` raises on a
missing or stale file); this command is the only writer of the packaged model.
"""

from __future__ import annotations

from pathlib import Path

import click

from zsds.cli.common import console, home_option, open_db, user_errors
from zsds.core.home import Home


@click.command("train-streaks")
@click.option("--seed", type=int, default=0, show_default=True,
              help="seed of the simulated images and of the classifier")
@click.option("--images", "n_images", type=int, default=24, show_default=True,
              help="simulated difference images")
@click.option("--size", type=int, default=640, show_default=True, help="image side (pixels)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="where to write the model (default: the packaged streak_rb.joblib)")
@home_option
@click.option("--night", "nights", multiple=True,
              help="also learn from the home's difference images of this night, with trails "
                   "injected (YYYY-MM-DD; repeatable; needs --home)")
@user_errors
def rb_train_streaks(seed: int, n_images: int, size: int, out: Path | None, home: Path | None,
                     db_url: str | None, nights: tuple[str, ...]) -> None:
    """Train the streak real-bogus classifier on simulated difference images (and, with
    --night, on the pipeline's own difference images with injected trails) and write it."""
    from zsds.streaks.features import MODEL_PATH
    from zsds.streaks.quality import training_from_pipeline
    from zsds.streaks.train import save_streak_rb, train_streak_rb

    extra = None
    if nights:
        h = Home.resolve(home, db_url)
        extra = training_from_pipeline(h, open_db(h), list(nights))
        console.print(f"{len(extra[1])} labelled streaks from {len(nights)} night(s) of {h.root}")
    console.print(f"simulating {n_images} images of {size} px (seed {seed}) ...")
    bundle = train_streak_rb(seed=seed, n_images=n_images, size=size, extra=extra)
    path = save_streak_rb(bundle, out or MODEL_PATH)
    click.echo(f"streak rb: {bundle['n_real']} real, {bundle['n_bogus']} bogus candidates, "
               f"trained in {bundle['train_seconds']:.0f} s -> {path}")
