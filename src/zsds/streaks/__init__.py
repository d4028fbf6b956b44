"""Streak detection in difference images (the ZStreak half of pipeline 6). See
``docs/streaks.md``.

Public API
----------
* :func:`find_streaks` -- detect + fit + features + real-bogus score in one call (what the
  pipeline calls);
* :func:`detect_streaks`, :class:`StreakConfig` -- the search (line-segment filter bank);
* :func:`fit_streak`, :func:`trailed_psf`, :func:`trail_norm`,
  :func:`trail_flux_correction` -- the Vereš et al. (2012) trailed-PSF model, its
  least-squares fit and the flux correction for a non-Gaussian PSF;
* :func:`features_table`, :func:`streak_rb`, :func:`load_streak_rb` -- features and the
  streak real-bogus classifier (:func:`train_streak_rb`, :mod:`zsds.streaks.train`, trains it:
  an explicit command, never at run time);
* :func:`simulate_difference`, :class:`SimConfig` -- synthetic difference images with truth;
* :func:`evaluate_streaks`, :func:`match_streaks` -- completeness / false-rate evaluation.
"""

from zsds.streaks.base import DEFAULT_CONFIG, StreakConfig
from zsds.streaks.detect import detect_streaks
from zsds.streaks.evaluate import evaluate_streaks, match_streaks
from zsds.streaks.features import (
    FEATURE_COLUMNS,
    RB_FEATURES,
    StreakModelError,
    features_table,
    load_streak_rb,
    streak_rb,
)
from zsds.streaks.find import STREAK_COLUMNS, find_streaks, fit_detections
from zsds.streaks.fit import fit_streak, trail_flux_correction, trail_norm, trailed_psf
from zsds.streaks.simulate import SimConfig, SimulatedDiff, simulate_difference
from zsds.streaks.train import train_streak_rb

__all__ = [
    "DEFAULT_CONFIG",
    "FEATURE_COLUMNS",
    "RB_FEATURES",
    "STREAK_COLUMNS",
    "SimConfig",
    "SimulatedDiff",
    "StreakConfig",
    "StreakModelError",
    "detect_streaks",
    "evaluate_streaks",
    "features_table",
    "find_streaks",
    "fit_detections",
    "fit_streak",
    "load_streak_rb",
    "match_streaks",
    "simulate_difference",
    "streak_rb",
    "trail_flux_correction",
    "trail_norm",
    "trailed_psf",
    "train_streak_rb",
]
