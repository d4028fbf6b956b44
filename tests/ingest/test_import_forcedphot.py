"""Forced photometry on an imported IPAC difference image (``scimrefdiffimg.fits.fz`` with its
``diffimgpsf.fits``, and no uncertainty image, as IRSA serves them).

The science pixels and header are a cut of the real quadrant (``real_images``); the difference
image is written by the test with IPAC's layout: known point sources drawn with the PSF that
the ``diffimgpsf`` holds (stored unnormalised, as IPAC's may be), on noise whose variance is
the sky's plus the science image's own Poisson share, so that fluxes and their uncertainties
have a truth to be measured against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage

from tests.ingest.ipac_files import PID, STEM, crop_real, write_diff_fz
from zsds.core.home import Home
from zsds.db import connect, init_db, session
from zsds.db.schema import DiffImageRecord
from zsds.diffim.forced import forced_photometry, lc_text, read_lc_text
from zsds.ingest.importing import import_paths

N = 200
SKY_SIGMA = 6.0
#: Source (x, y, flux in DN) drawn into the difference image.
SOURCES = [(40.3, 50.7, 4000.0), (120.6, 60.2, 2500.0), (70.5, 150.5, 1500.0),
           (160.2, 140.9, -2000.0)]


def _psf(size: int = 25, fwhm: float = 2.2) -> np.ndarray:
    """A Moffat-like stamp on a 5x finer grid, pixel-integrated (not the fitter's model)."""
    s = 5
    g = (np.arange(size * s) + 0.5) / s - size / 2
    r2 = g[None, :] ** 2 + g[:, None] ** 2
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / 3.0) - 1))
    fine = (1 + r2 / alpha**2) ** -3.0
    return fine.reshape(size, s, size, s).sum(axis=(1, 3))


@pytest.fixture(scope="module")
def imported(real_images: Path, tmp_path_factory) -> tuple[Home, object, WCS]:
    src = tmp_path_factory.mktemp("ipac")
    sci, _ = crop_real(real_images, src, 1400, 1400, N)
    h = fits.getheader(sci)
    gain = float(h["GAIN"])
    psf = _psf()
    c = psf.shape[0] // 2
    # The transients are in the science image (the rising one) or in the reference (the one
    # that faded, negative in the difference; a deep reference adds no noise of its own here).
    model = np.zeros((N, N))
    for x, y, f in SOURCES:
        stamp = np.zeros((N, N))
        xi, yi = round(x), round(y)
        stamp[yi - c:yi + c + 1, xi - c:xi + c + 1] = psf / psf.sum()
        model += f * ndimage.shift(stamp, (y - yi, x - xi), order=3)
    data = fits.getdata(sci).astype(float) + np.clip(model, 0, None)
    crop_real(real_images, src, 1400, 1400, N, data=data)
    rng = np.random.default_rng(42)
    var = SKY_SIGMA**2 + np.clip(data - np.median(data), 0, None) / gain
    diff = model + rng.normal(0.0, np.sqrt(var))
    write_diff_fz(src / f"{STEM}_scimrefdiffimg.fits.fz", h, diff)
    fits.PrimaryHDU((psf * 3.7).astype(np.float32)).writeto(src / f"{STEM}_diffimgpsf.fits")
    home = Home(tmp_path_factory.mktemp("home") / "h").ensure()
    eng = connect(home.db_url)
    init_db(eng)
    res = import_paths(home, eng, [src])
    assert [(r.kind, r.status) for r in res] == [
        ("sciimg", "imported"), ("mskimg", "imported"), ("scimrefdiffimg", "imported"),
        ("diffimgpsf", "imported")], [r.message for r in res]
    yield home, eng, WCS(h)
    eng.dispose()


def test_difference_image_is_registered(imported):
    home, eng, _ = imported
    with session(eng) as s:
        rows = s.query(DiffImageRecord).all()
    assert len(rows) == 1
    r = rows[0]
    assert r.pid == PID and r.rfid == -999  # no reference imported: ZTF's "none"
    assert r.relpath.endswith(f"{STEM}_scimrefdiffimg.fits.fz")
    obsjd = float(fits.getheader(home.path(r.relpath), 1)["OBSJD"])
    assert r.jd == pytest.approx(obsjd + 15.0 / 86400.0, abs=1e-7)  # mid-exposure (30 s)
    assert 0.03 < r.radius < 0.05


def test_forced_fluxes_on_imported_ipac_difference(imported):
    home, eng, w = imported
    for x, y, f in SOURCES:
        ra, dec = w.all_pix2world([x], [y], 0)
        lc = forced_photometry(home, eng, float(ra[0]), float(dec[0]))
        assert len(lc) == 1 and int(lc["procstatus"][0]) == 0
        flux, unc = float(lc["forcediffimflux"][0]), float(lc["forcediffimfluxunc"][0])
        # The truth within 3 sigma, and sigma near its prediction: sky + source Poisson.
        assert abs(flux - f) < 3 * unc, (x, y, f, flux, unc)
        unit = _psf() / _psf().sum()
        sky_only = SKY_SIGMA / np.sqrt((unit**2).sum())
        assert sky_only * 0.9 < unc < sky_only * 1.6, (unc, sky_only)
        assert float(lc["zpdiff"][0]) == pytest.approx(26.285139, abs=1e-4)
    text = lc_text(lc, float(ra[0]), float(dec[0]), None, None)
    assert read_lc_text(text)["forcediffimflux"].iloc[0] == pytest.approx(flux, rel=1e-4)


def test_forced_uncertainties_are_honest_on_blank_positions(imported):
    """Pulls (flux / sigma) at 60 random source-free positions have unit scatter."""
    home, eng, w = imported
    rng = np.random.default_rng(7)
    pulls = []
    while len(pulls) < 60:
        x, y = rng.uniform(15, N - 15, 2)
        if min(np.hypot(x - sx, y - sy) for sx, sy, _ in SOURCES) < 15:
            continue
        ra, dec = w.all_pix2world([x], [y], 0)
        lc = forced_photometry(home, eng, float(ra[0]), float(dec[0]))
        pulls.append(float(lc["forcediffimflux"][0] / lc["forcediffimfluxunc"][0]))
    pulls = np.array(pulls)
    assert abs(np.median(pulls)) < 0.4
    assert 0.75 < np.std(pulls) < 1.3, np.std(pulls)
