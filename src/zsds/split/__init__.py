"""Split a raw CCD file into overscan-corrected, trimmed, science-oriented quadrant images."""

from zsds.split.split import (
    OverscanConfig,
    RawCCD,
    SplitConfig,
    floating_bias,
    quadrant_qa,
    read_raw_ccd,
    split_quadrant,
)

__all__ = [
    "OverscanConfig",
    "RawCCD",
    "SplitConfig",
    "floating_bias",
    "quadrant_qa",
    "read_raw_ccd",
    "split_quadrant",
]
