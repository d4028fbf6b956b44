"""Empirical PSF and PSF-fit photometry on a simulated 512 px quadrant."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from scipy.spatial import cKDTree

from zsds.core.home import Home
from zsds.core.instrument import Filter, amplifier
from zsds.core.masks import MaskBit
from zsds.core.psf import MoffatFieldPSF, PolyPixelPSF
from zsds.instcal.moffat import build_moffat_psf
from zsds.instcal.psf import build_psf, select_psf_stars
from zsds.instcal.psfphot import psf_photometry
from zsds.sim.detector import detector_defects, illumination
from zsds.sim.optics import FocalPlanePSF, QuadrantTruePSF
from zsds.sim.run import simulate_night
from zsds.split.split import SplitConfig, read_raw_ccd, split_quadrant

sep = pytest.importorskip("sep")
CCD, QID, SIZE = 6, 1, 512


@pytest.fixture(scope="module", params=["moffat", "pixelgrid"])
def quad(request, tmp_path_factory):
    """Calibrated, background-subtracted quadrant with variance, mask, detections and truth."""
    home = Home.resolve(tmp_path_factory.mktemp("psfhome"))
    simulate_night(home, "2026-11-20", 1, [645], quad_size=SIZE, ccds=[CCD], seed=3)
    raw = sorted(home.incoming.glob("*_o.fits.fz"))[0]
    # Overscan-subtracted by the split step. The non-linearity correction is left out here so
    # that the PSF's photometry is judged alone: with it, the brightest stars (~7e4 DN) come
    # out ~0.1% fainter than with a linear read-out, which moves their pulls by ~0.6 sigma
    # (the correction's own round trip is tested in tests/split/test_nonlinearity.py).
    q = split_quadrant(read_raw_ccd(raw), QID, SplitConfig(nonlinearity=False))
    img = q.data
    sat = float(q.header["SATURATE"]) - float(q.header["OVSLEVEL"])
    amp = amplifier(CCD, QID)
    edir = next((home.truth / "20261120").glob("[0-9]*"))
    exp = json.loads((edir / "exposure.json").read_text())
    defects = detector_defects(CCD, QID, SIZE, SIZE)
    flat = defects.response * illumination(CCD, QID, SIZE, SIZE, Filter.parse(exp["filt"]), "sky")
    mask = ((q.mask & int(MaskBit.SATURATED)) != 0) | (flat <= 0.1) | defects.hot
    flat = np.where(mask, 1.0, flat)
    cal = (img - defects.bias2d) / flat
    bkg = sep.Background(np.ascontiguousarray(cal, np.float32), mask=mask)
    sub = (cal - bkg.back()).astype(np.float32)
    var = (np.clip(cal, 0, None) / amp.gain + (amp.read_noise / amp.gain) ** 2) / flat**2
    obj = sep.extract(sub, 3.0, err=bkg.globalrms, mask=mask)
    xw, yw, _ = sep.winpos(sub, obj["x"], obj["y"], np.full(len(obj), 1.0), mask=mask)
    truth = pd.read_parquet(edir / "c06_sources.parquet")
    truth = truth[truth.qid == QID].reset_index(drop=True)
    fp = FocalPlanePSF.from_exposure(exp)
    sel = select_psf_stars(sub, mask, xw, yw, obj["flux"], obj["peak"], sat)
    if request.param == "moffat":  # the analytic model the pipeline uses
        psf = build_moffat_psf(sub, var.astype(np.float32), mask, xw[sel], yw[sel])
    else:  # the oversampled pixel-grid alternative
        psf = build_psf(sub, var.astype(np.float32), mask, xw[sel], yw[sel])
    phot = psf_photometry(sub, var.astype(np.float32), mask, psf, xw, yw)
    return dict(
        psf=psf,
        phot=phot,
        truth=truth,
        tpsf=QuadrantTruePSF(fp, CCD, QID, SIZE, SIZE),
        model=request.param,
    )


@pytest.mark.parametrize("pos", [(51.2, 51.2), (256.0, 256.0), (395.3, 308.4), (100.5, 400.5)])
def test_psf_matches_truth(quad, pos):
    model, truth = quad["psf"].stamp(*pos, 25), quad["tpsf"].stamp(*pos, 25)
    assert np.isclose(model.sum(), 1.0)
    assert np.sqrt(np.mean((model - truth) ** 2)) < 0.02 * truth.max()
    if quad["model"] == "moffat":
        # FWHM before pixelisation, as the truth's sky_fwhm_at. The Moffat is not the truth's
        # family (Kolmogorov x Gaussian) and the stars are undersampled (1.3-1.4 px), so the
        # profile before the pixel is only loosely fixed by the data (5% here at one corner);
        # the observable, the FWHM after the pixel, is held to 5% below.
        assert abs(quad["psf"].fwhm_at(*pos) / quad["tpsf"].sky_fwhm_at(*pos) - 1) < 0.08
        pixel_fwhm = quad["psf"].measured_fwhm(*pos)
    else:  # a pixel grid holds the PSF convolved with the pixel
        pixel_fwhm = quad["psf"].fwhm_at(*pos)
    # The truth's fwhm_at is the FWHM of its pixel-convolved profile.
    assert abs(pixel_fwhm / quad["tpsf"].fwhm_at(*pos) - 1) < 0.05


def _isolated_bright(quad):
    phot, truth = quad["phot"], quad["truth"]
    stars = truth[truth.kind == 1]
    d, j = cKDTree(np.c_[phot.x, phot.y]).query(np.c_[stars.x, stars.y])
    n_near = np.array(
        [
            len(v)
            for v in cKDTree(np.c_[truth.x, truth.y]).query_ball_point(np.c_[stars.x, stars.y], 6.0)
        ]
    )
    p = phot.iloc[j].reset_index(drop=True)
    ok = (d < 1.0) & (n_near == 1) & (p["flags"].to_numpy() == 0)
    ok &= (p.flux / p.fluxerr).to_numpy() > 50
    return p[ok], stars.flux_dn.to_numpy()[ok]


def test_psf_flux_median_ratio(quad):
    """Median PSF-fit flux over true (total) flux of ~25 isolated S/N > 50 stars.

    The pipeline's Moffat misses the part of the true Kolmogorov wing that a Moffat lacks:
    measured 0.976 here (FWHM 1.3 px), a normalisation that the zero point absorbs (MAGZP is
    fitted on PSF-fit magnitudes, as ZTF's): it may take up to 5% of the light, never add any,
    and must not depend on the flux (faint and bright halves within 1.5%). The pixel grid,
    normalised over its 25 px stamp, holds 99.8% of the light; its own noise scatters single
    fluxes by ~5%, so its median of ~25 is good to ~1.3% (1 sigma) and gets 2%."""
    p, true = _isolated_bright(quad)
    assert len(p) >= 10
    ratio = (p.flux / true).to_numpy()
    if quad["model"] == "moffat":
        assert 0.95 <= np.median(ratio) <= 1.005
        order = np.argsort(true)
        faint, bright = ratio[order[: len(order) // 2]], ratio[order[len(order) // 2 :]]
        assert abs(np.median(faint) / np.median(bright) - 1) < 0.015
    else:
        assert abs(np.median(ratio) - 1) < 0.02


def test_psf_flux_pulls(quad):
    """The issue's bar: S/N > 50 PSF-fit fluxes scatter <= 1.5x their reported errors."""
    if quad["model"] == "pixelgrid":
        pytest.skip(
            "pixel-grid model: with ~50 stars its own noise dominates the brightest "
            "stars (pull scatter 3-7); the pipeline uses the analytic model"
        )
    p, true = _isolated_bright(quad)
    # Against the true flux times the model's normalisation (test_psf_flux_median_ratio).
    pull = (p.flux - np.median(p.flux / true) * true) / p.fluxerr
    assert 1.4826 * np.median(np.abs(pull - np.median(pull))) <= 1.5


def test_photometry_columns(quad):
    cols = ["x", "y", "flux", "fluxerr", "chi", "sharp", "npix_bad", "niter", "flags"]
    assert list(quad["phot"].columns) == cols
    failed = (quad["phot"]["flags"] & 8) > 0
    assert quad["phot"].flux[failed].isna().all()


def test_hdu_round_trip(quad):
    psf = quad["psf"]
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), psf.to_hdu()]).writeto(buf)
    buf.seek(0)
    cls = MoffatFieldPSF if quad["model"] == "moffat" else PolyPixelPSF
    with fits.open(buf) as hdul:
        back = cls.from_hdu(hdul["PSF"])
    assert back.degree == psf.degree
    np.testing.assert_allclose(back.stamp(100.3, 200.7, 15), psf.stamp(100.3, 200.7, 15), atol=1e-6)
    assert psf.center_stamp().shape[0] % 2 == 1
