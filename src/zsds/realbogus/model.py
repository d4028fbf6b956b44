"""Feature-based real-bogus classifier for difference-image candidates.

ZTF scores every difference-image candidate with ``rb``, the probability that it is a real
astrophysical (or solar-system) source rather than a subtraction artefact (see
``shared/reference/ZTF_REFERENCE.md`` section 2.4 item 8). IPAC used a random forest on
per-candidate features (Mahabal+2019; rbversion ``t8_f5_c3``/``t17_f5_c3``). This module keeps
the feature-table approach but uses scikit-learn's
:class:`~sklearn.ensemble.HistGradientBoostingClassifier`, which handles missing features (NaN)
natively, so candidates with e.g. no nearby reference source (``distnr``) need no imputation.

Conventions
-----------
* A candidate is called real when ``rb >= threshold`` (the same ``>=`` as
  :func:`sklearn.metrics.roc_curve`).
* Labels are 1 for real (injected transient, variable or asteroid), 0 for bogus.
* Every reported metric is measured on a stratified held-out split that the estimator never saw;
  the operating threshold is chosen on that same split, so its FNR is mildly optimistic (the
  choice uses the split) while the AUC and the fixed-threshold (0.5) figures are unbiased.
* ``±inf`` feature values are treated as missing (scikit-learn rejects infinities).

A model is saved as two files sharing a stem: ``<stem>.joblib`` (the pickled estimator; only load
files you trust) and ``<stem>.json`` (everything else, human-readable).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import train_test_split

__all__ = [
    "DEFAULT_FEATURES",
    "DEFAULT_MODEL_VERSION",
    "RETRAIN_COMMAND",
    "RBConfig",
    "RBModel",
    "RBModelLoadError",
    "RBModelVersionWarning",
    "choose_threshold",
    "feature_matrix",
    "load_default_model",
    "packaged_model_stem",
    "plot_roc",
    "roc_metrics",
    "split_train_test",
    "train",
]

DEFAULT_FEATURES: tuple[str, ...] = (
    "snr",
    "scorr",
    "chipsf",
    "fwhm",
    "elong",
    "aimagerat",
    "bimagerat",
    "nneg",
    "nbad",
    "sumrat",
    "magdiff",
    "seeratio",
    "dsnrms",
    "ssnrms",
    "dsdiff",
    "distnr",
    "magfromlim",
    "classtar",
    "isdiffpos_pos",
)
"""Candidate features used by default (``isdiffpos_pos``: 1 positive, 0 negative event)."""

DEFAULT_MODEL_VERSION = "zsds_rb_v1"
"""Version (and file stem) of the model shipped in ``zsds/realbogus/models/``."""

RETRAIN_COMMAND = "zsds rb train"
"""CLI command that (re)builds a model; quoted in load errors."""

MODEL_FORMAT = "zsds-realbogus-model/1"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MODELS_DIR = Path(__file__).resolve().parent / "models"


class RBModelLoadError(RuntimeError):
    """A saved model exists but cannot be used (corrupt, mismatched or incompatible)."""


class RBModelVersionWarning(UserWarning):
    """A model saved with another scikit-learn version was loaded; retraining is advised."""


@dataclass(frozen=True)
class RBConfig:
    """Settings of :func:`train`.

    ``learning_rate`` to ``min_samples_leaf`` are passed to
    :class:`~sklearn.ensemble.HistGradientBoostingClassifier`. With ``early_stopping``,
    boosting stops when the loss on an internal validation split (``validation_fraction`` of
    the training rows) has not improved for ``n_iter_no_change`` rounds; both are ignored when
    it is off.
    """

    features: tuple[str, ...] = DEFAULT_FEATURES  #: feature columns, in the estimator's order
    learning_rate: float = 0.1  #: ``HistGradientBoostingClassifier`` learning rate
    max_iter: int = 300  #: most boosting rounds (an upper bound with early stopping)
    max_leaf_nodes: int = 31  #: most leaves per tree (``HistGradientBoostingClassifier``)
    l2_regularization: float = 0.0  #: L2 penalty of the leaves (``HistGradientBoostingClassifier``)
    min_samples_leaf: int = 20  #: fewest rows per leaf (``HistGradientBoostingClassifier``)
    test_fraction: float = 0.3  #: rows held out (stratified) for the metrics and the threshold
    seed: int = 42  #: seed of the train/test split and of the estimator
    early_stopping: bool = True  #: stop when the validation loss stops improving
    validation_fraction: float = 0.1  #: training rows of the early-stopping validation split
    n_iter_no_change: int = 10  #: rounds without improvement that stop boosting
    class_weight: str | None = None  #: None or "balanced" (classes to equal total weight)

    def __post_init__(self) -> None:
        # Frozen dataclass: normalise a list passed by the caller (or read from JSON) to a tuple.
        object.__setattr__(self, "features", tuple(str(f) for f in self.features))
        if not self.features:
            raise ValueError("RBConfig.features must not be empty")
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"RBConfig.features has duplicates: {self.features}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary of the settings."""
        d = asdict(self)
        d["features"] = list(self.features)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RBConfig:
        """Inverse of :meth:`to_dict`; unknown keys (from newer versions) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def feature_matrix(df: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """Extract the feature columns of ``df`` as a float64 array.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per candidate; extra columns are ignored and column order does not matter.
    features : sequence of str
        Columns to extract, in this order.

    Returns
    -------
    numpy.ndarray
        ``(len(df), len(features))`` float64; NaN (and former ``±inf``) marks missing values.

    Raises
    ------
    KeyError
        If any feature column is missing; the message names all of them.
    """
    missing = [f for f in features if f not in df.columns]
    if missing:
        raise KeyError(f"missing real-bogus feature column(s): {', '.join(missing)}")
    dup = [f for f in features if np.count_nonzero(df.columns == f) > 1]
    if dup:
        raise ValueError(f"duplicated feature column(s) in the table: {', '.join(dup)}")
    # pd.NA / nullable dtypes become NaN here; bools become 0/1.
    x = df.loc[:, list(features)].to_numpy(dtype=np.float64, na_value=np.nan)
    inf = np.isinf(x)
    if inf.any():
        x = x.copy()  # to_numpy may hand back a read-only view under copy-on-write
        x[inf] = np.nan
    return x


def _as_labels(labels: Any, n: int | None = None) -> np.ndarray:
    """Validate 0/1 (or bool) labels and return them as int8."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {y.shape}")
    if n is not None and y.size != n:
        raise ValueError(f"{y.size} labels for {n} rows")
    if y.dtype == bool:
        return y.astype(np.int8)
    yf = y.astype(np.float64)
    if not np.all((yf == 0) | (yf == 1)):
        raise ValueError("labels must be 0 (bogus) or 1 (real)")
    return yf.astype(np.int8)


def _scores_1d(scores: Any, n: int) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (n,):
        raise ValueError(f"scores have shape {s.shape}, expected ({n},)")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    return s


def choose_threshold(labels: Any, scores: Any, target_fpr: float = 0.01) -> float:
    """Operating threshold with the lowest FNR whose FPR is at most ``target_fpr``.

    Parameters
    ----------
    labels : array-like of {0, 1}
        Truth (1 = real).
    scores : array-like of float
        Classifier scores; a candidate is real when ``score >= threshold``.
    target_fpr : float
        Largest allowed false-positive rate on these labels.

    Returns
    -------
    float
        One of the score values (so ``>=`` comparisons are exact). Among thresholds with the same
        (best) true-positive rate the highest one is taken, since it has the lowest FPR. If no
        threshold keeps any real candidate within the FPR budget, a value just above the highest
        score is returned (nothing is called real).
    """
    y = _as_labels(labels)
    s = _scores_1d(scores, y.size)
    if y.min() == y.max():
        raise ValueError("choose_threshold needs both real and bogus labels")
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    ok = np.flatnonzero(fpr <= target_fpr)  # never empty: fpr[0] == 0
    best = ok[np.argmax(tpr[ok])]  # argmax takes the first, i.e. the highest threshold
    t = float(thr[best])
    if not math.isfinite(t):
        t = float(np.nextafter(s.max(), np.inf))
    return t


def roc_metrics(
    labels: Any,
    scores: Any,
    threshold: float | None = None,
    target_fpr: float = 0.01,
) -> dict[str, float | int]:
    """ROC figures of merit of ``scores`` against ``labels``.

    Parameters
    ----------
    labels : array-like of {0, 1}
        Truth (1 = real); both classes must be present.
    scores : array-like of float
        Classifier scores; real when ``score >= threshold``.
    threshold : float, optional
        Operating threshold to report; ``None`` chooses it with :func:`choose_threshold`.
    target_fpr : float
        FPR budget used when ``threshold`` is ``None``.

    Returns
    -------
    dict
        ``auc``; ``fpr_at_0p5``/``fnr_at_0p5``; ``threshold``, ``target_fpr``,
        ``fpr_at_threshold``/``fnr_at_threshold``; ``fnr_at_fpr_1pct`` (best FNR with FPR <= 1%),
        ``fpr_at_fnr_1pct``/``fpr_at_fnr_5pct`` (best FPR with FNR <= 1%/5%); ``n_real``,
        ``n_bogus``. Rates are fractions in [0, 1].
    """
    y = _as_labels(labels)
    s = _scores_1d(scores, y.size)
    real = y == 1
    n_real, n_bogus = int(real.sum()), int((~real).sum())
    if n_real == 0 or n_bogus == 0:
        raise ValueError(f"roc_metrics needs both classes (n_real={n_real}, n_bogus={n_bogus})")
    if threshold is None:
        threshold = choose_threshold(y, s, target_fpr)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)

    def rates(t: float) -> tuple[float, float]:
        called = s >= t
        return float(called[~real].mean()), float((~called[real]).mean())

    fpr05, fnr05 = rates(0.5)
    fprt, fnrt = rates(threshold)
    return {
        "auc": float(roc_auc_score(y, s)),
        "fpr_at_0p5": fpr05,
        "fnr_at_0p5": fnr05,
        "threshold": float(threshold),
        "target_fpr": float(target_fpr),
        "fpr_at_threshold": fprt,
        "fnr_at_threshold": fnrt,
        "fnr_at_fpr_1pct": float(1.0 - tpr[fpr <= 0.01].max()),
        "fpr_at_fnr_1pct": float(fpr[tpr >= 0.99].min()),
        "fpr_at_fnr_5pct": float(fpr[tpr >= 0.95].min()),
        "n_real": n_real,
        "n_bogus": n_bogus,
    }


def split_train_test(labels: Any, config: RBConfig = RBConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified train/test row indices, as used by :func:`train`.

    Parameters
    ----------
    labels : array-like of {0, 1}
        Truth for every row.
    config : RBConfig
        Supplies ``test_fraction`` and ``seed``.

    Returns
    -------
    train_idx, test_idx : numpy.ndarray
        Sorted, disjoint positional indices covering all rows.
    """
    y = _as_labels(labels)
    idx = np.arange(y.size)
    tr, te = train_test_split(
        idx, test_size=config.test_fraction, random_state=config.seed, stratify=y
    )
    return np.sort(tr), np.sort(te)


def jsonable(obj: Any) -> Any:
    """Recursively replace non-finite floats (invalid JSON) by None and numpy scalars by Python."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _stem_paths(path_stem: str | Path) -> tuple[Path, Path]:
    stem = Path(path_stem)
    if stem.suffix in (".json", ".joblib"):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".joblib"), stem.with_name(stem.name + ".json")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class RBModel:
    """A trained real-bogus classifier plus its provenance and held-out metrics."""

    version: str  #: model name, e.g. "zsds_rb_v1" (ZTF's ``rbversion`` analogue)
    features: tuple[str, ...]  #: feature columns, in estimator order
    estimator: HistGradientBoostingClassifier  #: the fitted classifier (0 = bogus, 1 = real)
    metrics: dict[str, Any]  #: held-out :func:`roc_metrics`, n_test, n_iter, auc_train
    threshold: float  #: operating point: ``rb >= threshold`` is real
    trained_at: str  #: ISO 8601 UTC time of training
    n_train: int  #: rows fitted (with the early-stopping validation rows)
    sklearn_version: str  #: scikit-learn version that fitted (and pickled) the estimator
    config: RBConfig | None = None  #: training settings, when known
    _real_col: int = field(default=1, init=False, repr=False)  #: predict_proba column of "real"

    def __post_init__(self) -> None:
        self.features = tuple(self.features)
        classes = [int(c) for c in getattr(self.estimator, "classes_", (0, 1))]
        if sorted(classes) != [0, 1]:
            raise ValueError(f"estimator classes must be [0, 1], got {classes}")
        self._real_col = classes.index(1)

    def score(self, df: pd.DataFrame) -> np.ndarray:
        """Real-bogus score ``rb`` of each row of ``df``.

        Parameters
        ----------
        df : pandas.DataFrame
            Candidate features; must contain every column in :attr:`features` (others are
            ignored). NaN marks a missing feature.

        Returns
        -------
        numpy.ndarray
            float32 probabilities of being real, in [0, 1], one per row.

        Raises
        ------
        KeyError
            Naming the missing feature columns.
        """
        x = feature_matrix(df, self.features)
        if x.shape[0] == 0:
            return np.empty(0, dtype=np.float32)  # sklearn refuses zero-row input
        p = self.estimator.predict_proba(x)[:, self._real_col]
        return np.clip(p, 0.0, 1.0).astype(np.float32)

    def is_real(self, df: pd.DataFrame) -> np.ndarray:
        """Boolean mask ``score(df) >= threshold``."""
        return self.score(df) >= self.threshold

    def to_json_dict(self) -> dict[str, Any]:
        """Everything but the estimator, as a JSON-ready dictionary."""
        return jsonable(
            {
                "format": MODEL_FORMAT,
                "version": self.version,
                "features": list(self.features),
                "threshold": self.threshold,
                "trained_at": self.trained_at,
                "n_train": self.n_train,
                "sklearn_version": self.sklearn_version,
                "estimator_class": type(self.estimator).__name__,
                "config": None if self.config is None else self.config.to_dict(),
                "metrics": self.metrics,
            }
        )

    def save(self, path_stem: str | Path) -> tuple[Path, Path]:
        """Write ``<stem>.joblib`` (estimator) and ``<stem>.json`` (the rest).

        Parameters
        ----------
        path_stem : str or Path
            Output path without suffix (a ``.json``/``.joblib`` suffix is stripped); parent
            folders are created.

        Returns
        -------
        joblib_path, json_path : Path
        """
        jl, js = _stem_paths(path_stem)
        jl.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.estimator, jl)
        meta = self.to_json_dict()
        # The hash ties the pair together, so a stale .joblib next to a new .json is caught.
        meta["estimator_file"] = jl.name
        meta["estimator_sha256"] = _sha256(jl)
        js.write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        return jl, js

    @classmethod
    def load(cls, path_stem: str | Path) -> RBModel:
        """Load a model written by :meth:`save`.

        Parameters
        ----------
        path_stem : str or Path
            The stem given to :meth:`save`.

        Returns
        -------
        RBModel

        Raises
        ------
        FileNotFoundError
            If either file is missing.
        RBModelLoadError
            If the files do not match, or the estimator cannot be unpickled or used (typically a
            scikit-learn version change); the message says to run ``zsds rb train``.

        Warns
        -----
        RBModelVersionWarning
            If the model was saved with another scikit-learn version but still works.
        """
        jl, js = _stem_paths(path_stem)
        for p in (js, jl):
            if not p.is_file():
                raise FileNotFoundError(
                    f"real-bogus model file {p} not found; run `{RETRAIN_COMMAND}` to build it"
                )
        hint = f"run `{RETRAIN_COMMAND}` to retrain the model"
        try:
            meta = json.loads(js.read_text(encoding="utf-8"))
            features = tuple(meta["features"])
            saved_skl = str(meta["sklearn_version"])
            version = str(meta["version"])
            threshold = float(meta["threshold"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RBModelLoadError(
                f"{js} is not a valid real-bogus model file ({exc}); {hint}"
            ) from exc
        sha = meta.get("estimator_sha256")
        if sha is not None and sha != _sha256(jl):
            raise RBModelLoadError(f"{jl} does not match {js} (checksum differs); {hint}")
        same_skl = saved_skl == sklearn.__version__
        mismatch = (
            f"model {jl} was saved with scikit-learn {saved_skl} but {sklearn.__version__} is "
            "installed"
        )
        try:
            with warnings.catch_warnings():
                # Replaced by the clearer RBModelVersionWarning below.
                warnings.simplefilter("ignore", InconsistentVersionWarning)
                est = joblib.load(jl)
            if not isinstance(est, HistGradientBoostingClassifier):
                raise TypeError(f"expected HistGradientBoostingClassifier, got {type(est)}")
            if int(est.n_features_in_) != len(features):
                raise ValueError(
                    f"estimator expects {est.n_features_in_} features, JSON lists {len(features)}"
                )
            # Smoke test: an unpickled estimator from another version may only fail on use.
            est.predict_proba(np.full((1, len(features)), np.nan))
        except Exception as exc:
            what = mismatch if not same_skl else f"cannot use model {jl}"
            raise RBModelLoadError(f"{what} ({type(exc).__name__}: {exc}); {hint}") from exc
        if not same_skl:
            warnings.warn(f"{mismatch}; {hint}", RBModelVersionWarning, stacklevel=2)
        cfg = meta.get("config")
        metrics = {k: (math.nan if v is None else v) for k, v in meta.get("metrics", {}).items()}
        return cls(
            version=version,
            features=features,
            estimator=est,
            metrics=metrics,
            threshold=threshold,
            trained_at=str(meta.get("trained_at", "")),
            n_train=int(meta.get("n_train", 0)),
            sklearn_version=saved_skl,
            config=None if cfg is None else RBConfig.from_dict(cfg),
        )


def train(
    df: pd.DataFrame,
    labels: Any,
    config: RBConfig = RBConfig(),
    version: str = DEFAULT_MODEL_VERSION,
    target_fpr: float = 0.01,
) -> RBModel:
    """Fit a real-bogus classifier and measure it on a held-out split.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per candidate with at least ``config.features``.
    labels : array-like of {0, 1}
        1 = real (injected transient, variable or asteroid), 0 = bogus; same length as ``df``.
    config : RBConfig
        Estimator and split settings.
    version : str
        Model name (letters, digits, ``_``, ``.``, ``-``); also the saved file stem.
    target_fpr : float
        FPR budget on the held-out split that sets :attr:`RBModel.threshold`.

    Returns
    -------
    RBModel
        Fitted on the training split only, so :attr:`RBModel.metrics` describe unseen data.
    """
    if not _VERSION_RE.match(version):
        raise ValueError(f"invalid model version {version!r}")
    if not 0.0 < target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr}")
    x = feature_matrix(df, config.features)
    y = _as_labels(labels, n=x.shape[0])
    counts = np.bincount(y, minlength=2)
    if counts.min() < 10:
        raise ValueError(
            f"need at least 10 real and 10 bogus rows, got {counts[1]} and {counts[0]}"
        )
    tr, te = split_train_test(y, config)
    est = HistGradientBoostingClassifier(
        learning_rate=config.learning_rate,
        max_iter=config.max_iter,
        max_leaf_nodes=config.max_leaf_nodes,
        l2_regularization=config.l2_regularization,
        min_samples_leaf=config.min_samples_leaf,
        early_stopping=config.early_stopping,
        validation_fraction=config.validation_fraction if config.early_stopping else None,
        n_iter_no_change=config.n_iter_no_change,
        class_weight=config.class_weight,
        random_state=config.seed,
    )
    est.fit(x[tr], y[tr])
    model = RBModel(
        version=version,
        features=config.features,
        estimator=est,
        metrics={},
        threshold=0.5,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        n_train=int(tr.size),
        sklearn_version=sklearn.__version__,
        config=config,
    )
    # Score through RBModel.score so metrics use the same float32 values users will see.
    s_test = model.score(df.iloc[te])
    s_train = model.score(df.iloc[tr])
    metrics: dict[str, Any] = roc_metrics(y[te], s_test, target_fpr=target_fpr)
    metrics["n_test"] = int(te.size)
    metrics["n_iter"] = int(est.n_iter_)
    metrics["auc_train"] = float(roc_auc_score(y[tr], s_train))  # vs auc: overfitting check
    model.metrics = metrics
    model.threshold = float(metrics["threshold"])
    return model


def plot_roc(
    labels: Any,
    scores: Any,
    path: str | Path,
    title: str = "real-bogus",
    threshold: float | None = None,
) -> Path:
    """Save a PNG with the ROC curve (log FPR axis) and the real/bogus score histograms.

    Parameters
    ----------
    labels : array-like of {0, 1}
        Truth (1 = real).
    scores : array-like of float
        Scores in [0, 1].
    path : str or Path
        Output PNG path (parent folders are created).
    title : str
        Figure title; the AUC is appended.
    threshold : float, optional
        Operating point to mark; ``None`` marks the :func:`choose_threshold` one (FPR <= 1%).

    Returns
    -------
    Path
        The written file.
    """
    # Figure + Agg canvas directly: no pyplot global state, no GUI backend needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = roc_metrics(labels, scores, threshold=threshold)
    y = _as_labels(labels)
    s = _scores_1d(scores, y.size)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    fpr_floor = 0.5 / m["n_bogus"]  # FPR = 0 cannot sit on a log axis

    fig = Figure(figsize=(10, 4.2))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    # Straight segments between all ROC points (tied scores give the diagonal ones).
    ax1.plot(np.maximum(fpr, fpr_floor), tpr, color="C0")
    ax1.plot(
        max(m["fpr_at_threshold"], fpr_floor),
        1.0 - m["fnr_at_threshold"],
        "o",
        color="C3",
        label=f"rb ≥ {m['threshold']:.3f}: FPR {m['fpr_at_threshold']:.2%}, "
        f"FNR {m['fnr_at_threshold']:.2%}",
    )
    ax1.plot(
        max(m["fpr_at_0p5"], fpr_floor),
        1.0 - m["fnr_at_0p5"],
        "s",
        color="C2",
        label=f"rb ≥ 0.5: FPR {m['fpr_at_0p5']:.2%}, FNR {m['fnr_at_0p5']:.2%}",
    )
    ax1.set_xscale("log")
    ax1.set_xlim(fpr_floor, 1.0)
    ax1.set_ylim(0.0, 1.01)
    ax1.set_xlabel("false-positive rate (bogus called real)")
    ax1.set_ylabel("true-positive rate (real kept)")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(loc="lower right", fontsize=8)

    bins = np.linspace(0.0, 1.0, 51)
    ax2.hist(s[y == 0], bins=bins, histtype="step", color="C1", label=f"bogus ({m['n_bogus']})")
    ax2.hist(s[y == 1], bins=bins, histtype="step", color="C0", label=f"real ({m['n_real']})")
    ax2.axvline(m["threshold"], color="C3", ls="--", lw=1)
    ax2.set_yscale("log")
    ax2.set_xlabel("rb score")
    ax2.set_ylabel("candidates")
    ax2.legend(loc="upper center", fontsize=8)

    fig.suptitle(f"{title} (AUC {m['auc']:.4f})")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=100)
    return out


def packaged_model_stem(version: str = DEFAULT_MODEL_VERSION) -> Path:
    """Stem of the model shipped with the package: ``zsds/realbogus/models/<version>``."""
    if not _VERSION_RE.match(version):
        raise ValueError(f"invalid model version {version!r}")
    return _MODELS_DIR / version


@lru_cache(maxsize=4)
def load_default_model(version: str = DEFAULT_MODEL_VERSION) -> RBModel:
    """Load (once per process; ``load_default_model.cache_clear()`` resets) the packaged model.

    Raises
    ------
    FileNotFoundError
        If the packaged model is missing; the message says to run ``zsds rb train``.
    RBModelLoadError
        See :meth:`RBModel.load`.
    """
    stem = packaged_model_stem(version)
    jl, js = _stem_paths(stem)
    if not (jl.is_file() and js.is_file()):
        raise FileNotFoundError(
            f"no packaged real-bogus model {version!r} in {stem.parent}; run `{RETRAIN_COMMAND}` "
            "to train it"
        )
    return RBModel.load(stem)
