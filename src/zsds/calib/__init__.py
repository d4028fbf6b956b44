"""Master bias and high-frequency (pixel-to-pixel) flat from calibration sequences."""

from zsds.calib.bias import BiasConfig, BiasResult, make_master_bias
from zsds.calib.flat import FlatConfig, FlatResult, make_hifreq_flat

__all__ = [
    "BiasConfig",
    "BiasResult",
    "FlatConfig",
    "FlatResult",
    "make_hifreq_flat",
    "make_master_bias",
]
