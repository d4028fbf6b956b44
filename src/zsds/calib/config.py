"""Settings of the calibration-frame pipelines (:func:`zsds.calib.build.build_calibrations`).

Kept apart from the runner so that :class:`zsds.config.PipelineConfig`, which every runner
imports, can hold them without importing the runner (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zsds.calib.bias import BiasConfig
from zsds.calib.flat import FlatConfig

__all__ = ["CalibBuildConfig"]


@dataclass(frozen=True)
class CalibBuildConfig:
    """Options of the calibration-frame pipelines.

    Attributes
    ----------
    bias : BiasConfig
        Master-bias stacking.
    flat : FlatConfig
        High-frequency flat stacking.
    min_bias : int
        Fewest bias frames a quadrant's master bias is built from.
    min_flat : int
        Fewest dome flats a quadrant's high-frequency flat is built from.
    """

    bias: BiasConfig = field(default_factory=BiasConfig)
    flat: FlatConfig = field(default_factory=FlatConfig)
    min_bias: int = 3
    min_flat: int = 2
