"""The fast mapped resampler agrees with reproject_interp on a TAN-SIP input."""

from __future__ import annotations

import numpy as np
from reproject import reproject_interp

from zsds.core.psf import moffat_stamps
from zsds.core.resample import resample_fast
from zsds.core.wcs import quadrant_wcs
from zsds.refs.coadd import reference_grid


def test_resample_fast_matches_reproject():
    n = 512
    rng = np.random.default_rng(3)
    img = rng.normal(300.0, 8.0, (n, n)).astype(np.float32)
    st = moffat_stamps(rng.uniform(-0.5, 0.5, 60), rng.uniform(-0.5, 0.5, 60),
                       np.full(60, 2.0), 3.0, 1.0, 0.0, 21)
    for k, (x, y) in enumerate(rng.integers(20, n - 20, (60, 2))):
        img[y - 10 : y + 11, x - 10 : x + 11] += 2e4 * st[k]
    win = quadrant_wcs(54.52367 + 3 / 3600, 40.55, 6, 1, 0.002, n, n)  # SIP, shifted, rotated
    grid = reference_grid(700, 6, 1, n, n)
    ref, _ = reproject_interp((img, win), grid, shape_out=(n, n), order="bilinear",
                              roundtrip_coords=False)
    fast = resample_fast(img[None], win, grid, (n, n))[0]
    ok = np.isfinite(ref) & np.isfinite(fast)
    assert ok.mean() > 0.95
    assert (np.isfinite(ref) != np.isfinite(fast)).mean() < 1e-3
    assert np.abs(ref - fast)[ok].max() < 0.05 * 8.0  # far below the noise
