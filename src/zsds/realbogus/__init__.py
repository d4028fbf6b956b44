"""Real-bogus classification of difference-image candidates.

:mod:`zsds.realbogus.model` scores candidate features (``rb``); :mod:`zsds.realbogus.drb`
scores the three cutouts with a small convolutional network (``drb``).
"""

from zsds.realbogus.drb import DRB_VERSION, DRBModel, drb_score, load_drb_model
from zsds.realbogus.model import (
    DEFAULT_FEATURES,
    DEFAULT_MODEL_VERSION,
    RETRAIN_COMMAND,
    RBConfig,
    RBModel,
    RBModelLoadError,
    RBModelVersionWarning,
    choose_threshold,
    feature_matrix,
    load_default_model,
    packaged_model_stem,
    plot_roc,
    roc_metrics,
    split_train_test,
    train,
)

__all__ = [
    "DEFAULT_FEATURES",
    "DEFAULT_MODEL_VERSION",
    "DRB_VERSION",
    "RETRAIN_COMMAND",
    "DRBModel",
    "RBConfig",
    "RBModel",
    "RBModelLoadError",
    "RBModelVersionWarning",
    "choose_threshold",
    "drb_score",
    "feature_matrix",
    "load_default_model",
    "load_drb_model",
    "packaged_model_stem",
    "plot_roc",
    "roc_metrics",
    "split_train_test",
    "train",
]
