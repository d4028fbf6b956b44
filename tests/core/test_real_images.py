"""The real images fetched by the test setup (``real_images`` in ``tests/conftest.py``) are
there, checksummed, and hold what their provenance says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from tests.conftest import ZTF_QUADRANT


def test_real_ztf_quadrant_and_goto_pair(real_images: Path):
    with fits.open(real_images / f"{ZTF_QUADRANT}_sciimg.fits") as sci, \
            fits.open(real_images / f"{ZTF_QUADRANT}_mskimg.fits") as msk:
        h = sci[0].header
        assert sci[0].data.shape == msk[0].data.shape == (3080, 3072)
        assert (h["FIELDID"], h["CCDID"], h["QID"], h["FILTER"].strip()) == (655, 13, 3, "ZTF_r")
        assert "DATE-OBS" not in h and abs(h["OBSJD"] - 2459116.93177) < 1e-4
        assert h["CTYPE1"] == "RA---TPV" and abs(h["MAGZP"] - 26.2851) < 1e-3
        # Bits 1 and 11 mark where sources are; most pixels carry no bit at all.
        bits = np.asarray(msk[0].data)
        assert (bits == 0).mean() > 0.5 and ((bits & (1 << 1)) > 0).any()
    for name in ("goto_1.fits", "goto_2.fits"):
        with fits.open(real_images / name) as g:
            assert g[0].data.shape == (1850, 1850)
