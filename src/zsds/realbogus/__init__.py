"""Real-bogus classification of difference-image candidates (:mod:`zsds.realbogus.model`)."""

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
