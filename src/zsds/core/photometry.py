"""Flux to magnitude: the one conversion behind every catalogue's ``mag``/``sigmag``."""

from __future__ import annotations

import numpy as np

#: Magnitude error per unit fractional flux error, 2.5 / ln 10 = 1.0857.
MAG_ERR = 2.5 / np.log(10.0)


def flux_to_mag(flux: np.ndarray, fluxerr: np.ndarray, zp: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude ``zp - 2.5 log10(flux)`` and its 1-sigma error ``1.0857 fluxerr / flux``.

    Parameters
    ----------
    flux, fluxerr : numpy.ndarray
        Fluxes and their errors in the unit of the zero point (DN for ``MAGZP``).
    zp : float
        Zero point (0 gives instrumental magnitudes).

    Returns
    -------
    mag, sigmag : numpy.ndarray
        float64, NaN where the flux is not positive.
    """
    flux = np.asarray(flux, dtype=np.float64)
    fluxerr = np.asarray(fluxerr, dtype=np.float64)
    good = flux > 0
    safe = np.where(good, flux, 1.0)
    with np.errstate(invalid="ignore"):
        mag = np.where(good, zp - 2.5 * np.log10(safe), np.nan)
        sig = np.where(good, MAG_ERR * fluxerr / safe, np.nan)
    return mag, sig
