"""The source-catalogue products' columns and their one writer (``psfcat``, ``refpsfcat``).

Calibration (:mod:`zsds.instcal.run`) and references (:mod:`zsds.refs.run`) write PSF-fit
catalogues of the same layout, IPAC's (``zsds.ingest.ipac.PSFCAT_COLUMNS`` reads the same
names), through :func:`psfcat_table`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from astropy.table import Table

__all__ = ["PSFCAT_COLUMNS", "catalog_table", "psfcat_table"]

#: psfcat columns as written (ZTF names; positions 1-based as in IPAC catalogs): unit, meaning.
PSFCAT_COLUMNS = {
    "sourceid": ("", "source number in this image"),
    "xpos": ("pix", "x position (1-based)"),
    "ypos": ("pix", "y position (1-based)"),
    "ra": ("deg", "right ascension (ICRS)"),
    "dec": ("deg", "declination (ICRS)"),
    "flux": ("adu", "PSF-fit flux (DN)"),
    "sigflux": ("adu", "uncertainty in flux (DN)"),
    "mag": ("mag", "PSF-fit magnitude, MAGZP applied (no colour term)"),
    "sigmag": ("mag", "uncertainty in mag (instrumental)"),
    "snr": ("", "signal-to-noise ratio"),
    "chi": ("", "reduced chi-square of the PSF fit"),
    "sharp": ("", "sharpness (0 for point sources)"),
    "flags": ("", "OR of mask bits in a 5x5 box; -1 near edges"),
    "fitflags": ("", "PSF-fit flags: 1 bad pixels, 2 edge, 4 position not converged, 8 failed"),
}


def catalog_table(df: pd.DataFrame, columns: dict[str, tuple[str, str]]) -> Table:
    """An astropy table of ``columns`` (name -> (unit, description)) taken from ``df``."""
    t = Table()
    for name, (unit, desc) in columns.items():
        t[name] = df[name].to_numpy()
        t[name].unit = unit or None
        t[name].description = desc
    return t


def psfcat_table(cat: pd.DataFrame) -> Table:
    """The psfcat table of a PSF-fit source list (``x, y`` 0-based, ``flux, fluxerr``...).

    ``sourceid`` numbers the rows from 1, ``xpos, ypos`` are 1-based, ``sigflux`` is
    ``fluxerr``; columns the list lacks are NaN. An empty list gives the empty columns.
    """
    if not len(cat):
        return Table({c: [] for c in PSFCAT_COLUMNS})
    cat = cat.reset_index(drop=True).copy()
    cat["sourceid"] = np.arange(1, len(cat) + 1)
    cat["xpos"], cat["ypos"] = cat["x"] + 1.0, cat["y"] + 1.0
    cat["sigflux"] = cat["fluxerr"]
    for col in PSFCAT_COLUMNS:
        if col not in cat:
            cat[col] = np.nan
    return catalog_table(cat, PSFCAT_COLUMNS)
