"""Training of the streak real-bogus classifier (an explicit command: ``zsds rb train-streaks``).

Simulated difference images (:mod:`zsds.streaks.simulate`) are searched with the pipeline's own
detection and fit (:func:`zsds.streaks.detect.detect_streaks`,
:func:`zsds.streaks.find.fit_detections`); candidates matching an injected streak
(:func:`zsds.streaks.evaluate.match_streaks`) are real, all others bogus. The model is written
to ``zsds/streaks/models/streak_rb.joblib`` only by :func:`save_streak_rb`, never by loading.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from zsds.streaks.base import StreakConfig
from zsds.streaks.detect import detect_streaks
from zsds.streaks.evaluate import match_streaks
from zsds.streaks.features import (
    MODEL_FORMAT,
    MODEL_PATH,
    RB_FEATURES,
    feature_matrix,
    features_table,
)
from zsds.streaks.find import fit_detections
from zsds.streaks.simulate import SimConfig, simulate_difference

__all__ = ["rb_sim_config", "save_streak_rb", "train_streak_rb", "training_set"]


def training_set(
    seed: int,
    n_images: int = 24,
    size: int = 640,
    config: Any | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Simulated candidates with labels (1 = matches an injected streak, 0 = bogus).

    Images come from :func:`zsds.streaks.simulate.simulate_difference` with artefact-rich
    settings (:func:`rb_sim_config`) and random FWHM in [2, 3.5] px; candidates are found with
    :func:`zsds.streaks.detect.detect_streaks` and :func:`zsds.streaks.find.fit_detections`
    (default: ``StreakConfig(snr_min=5)``, i.e. deeper than the default reporting cut, so the
    classifier also sees faint candidates) and labelled with
    :func:`zsds.streaks.evaluate.match_streaks`.
    """
    cfg = config if config is not None else StreakConfig(snr_min=5.0)
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for _ in range(n_images):
        fwhm = float(rng.uniform(2.0, 3.5))
        sim = simulate_difference(rng, rb_sim_config((size, size), fwhm))
        det = detect_streaks(sim.image, sim.sigma, fwhm, sim.mask, cfg)
        fits = fit_detections(sim.image, sim.sigma, fwhm, det, sim.mask, cfg)
        if len(fits) == 0:
            continue
        feats = features_table(sim.image, sim.sigma, fwhm, fits, sim.mask)
        table = pd.concat([fits, feats[[c for c in feats if c not in fits]]], axis=1)
        owner, _ = match_streaks(table, sim.truth)
        parts.append(table)
        labels.append((owner >= 0).astype(int))
    if not parts:
        return pd.DataFrame(columns=list(RB_FEATURES)), np.zeros(0, int)
    return pd.concat(parts, ignore_index=True), np.concatenate(labels)


def rb_sim_config(shape: tuple[int, int], fwhm: float) -> Any:
    """Artefact-rich :class:`~zsds.streaks.simulate.SimConfig` used to train the classifier."""
    return SimConfig(
        shape=shape,
        fwhm=fwhm,
        n_streaks=4.0,
        snr_range=(5.0, 150.0),
        n_cosmics=30.0,
        n_tracks=10.0,
        n_dipoles=8.0,
        n_rings=6.0,
        n_variables=10.0,
        n_badcols=2.0,
        badcol_masked=0.3,
        n_saturated=1.5,
    )


def train_streak_rb(seed: int = 0, n_images: int = 24, size: int = 640,
                    extra: tuple[pd.DataFrame, np.ndarray] | None = None) -> dict[str, Any]:
    """Train the streak real-bogus classifier on simulated images (deterministic per seed).

    Parameters
    ----------
    seed : int
        Seeds both the simulation and the classifier.
    n_images, size : int
        Number and side of the simulated images (the defaults take ~10-20 s on one core).
    extra : (features, labels), optional
        More labelled streaks, e.g. from the pipeline's own difference images with injected
        trails (:func:`zsds.streaks.quality.training_from_pipeline`); appended to the
        simulated set.

    Returns
    -------
    dict
        Bundle ``{"model", "features", "format", "seed", "n_real", "n_bogus", "sklearn",
        "train_seconds"}``; pass it as ``model`` to :func:`streak_rb`.
    """
    import sklearn
    from sklearn.ensemble import HistGradientBoostingClassifier

    t0 = time.perf_counter()
    table, y = training_set(seed, n_images, size)
    n_pipeline = 0
    if extra is not None and len(extra[0]):
        table = pd.concat([table, extra[0][list(RB_FEATURES)]], ignore_index=True)
        y = np.concatenate([np.asarray(y, int), np.asarray(extra[1], int)])
        n_pipeline = len(extra[0])
    clf = HistGradientBoostingClassifier(
        max_iter=150,
        learning_rate=0.08,
        max_leaf_nodes=15,
        min_samples_leaf=10,
        l2_regularization=1e-3,
        random_state=seed,
    )
    with threadpool_limits(limits=1, user_api="openmp"):
        clf.fit(feature_matrix(table), y)
    return {
        "model": clf,
        "features": list(RB_FEATURES),
        "format": MODEL_FORMAT,
        "seed": seed,
        "n_images": n_images,
        "size": size,
        "n_real": int(y.sum()),
        "n_bogus": int(len(y) - y.sum()),
        "n_pipeline": n_pipeline,
        "sklearn": sklearn.__version__,
        "train_seconds": time.perf_counter() - t0,
    }


def save_streak_rb(bundle: dict[str, Any], path: Path = MODEL_PATH) -> Path:
    """Write a bundle from :func:`train_streak_rb` with joblib (compressed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(bundle, path, compress=3)
    return path
