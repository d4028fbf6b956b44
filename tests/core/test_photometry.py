"""Flux to magnitude."""

from __future__ import annotations

import numpy as np

from zsds.core.photometry import MAG_ERR, flux_to_mag


def test_flux_to_mag() -> None:
    mag, sig = flux_to_mag(np.array([100.0, 1.0, 0.0, -5.0, np.nan]),
                           np.array([1.0, 0.1, 1.0, 1.0, 1.0]), 25.0)
    assert np.allclose(mag[:2], [20.0, 25.0]) and np.allclose(sig[:2], [0.010857, 0.10857],
                                                              rtol=1e-4)
    assert np.isnan(mag[2:]).all() and np.isnan(sig[2:]).all()
    assert mag.dtype == np.float64 and np.isclose(MAG_ERR, 1.0857362)
