"""Robust statistics with named constants, shared by every stage.

The robust scale of a sample is ``MAD_TO_SIGMA`` times its median absolute deviation: the
standard deviation for normal data (astropy's :func:`~astropy.stats.mad_std`, used wherever a
whole array is reduced). The constant is named here once for the grouped and axis-wise
reductions that astropy does not offer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.stats import mad_std

__all__ = ["MAD_TO_SIGMA", "robust_std"]

#: 1 / Phi^-1(3/4): the median absolute deviation of a normal sample times this is its sigma.
MAD_TO_SIGMA = 1.482602218505602


def robust_std(x: Any) -> float:
    """``MAD_TO_SIGMA`` x the median absolute deviation of the finite values (NaN if none)."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(mad_std(x)) if len(x) else np.nan
