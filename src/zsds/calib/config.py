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
    """Options of the calibration-frame pipelines."""

    bias: BiasConfig = field(default_factory=BiasConfig)  #: master-bias stacking
    flat: FlatConfig = field(default_factory=FlatConfig)  #: high-frequency flat stacking
    min_bias: int = 3  #: fewest bias frames a master bias is built from
    min_flat: int = 2  #: fewest dome flats a high-frequency flat is built from
