"""Pixel statistics and photometry of simulated frames against the noise model and the truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from photutils.aperture import CircularAnnulus, CircularAperture, aperture_photometry

from zsds.core import nonlinearity
from zsds.core.instrument import OVERSCAN_GOOD, Filter, amplifier, from_raw_orientation
from zsds.core.rawformat import IMAGE_INDEX, OVERSCAN_INDEX, exposure_id, obs_jd
from zsds.sim.detector import detector_defects, illumination
from zsds.sim.optics import FocalPlanePSF, QuadrantTruePSF

from .conftest import CCD, SIZE


def overscan_corrected(hdul, qid: int) -> np.ndarray:
    """Science-oriented DN minus the row-wise overscan median (floating bias), linearized."""
    raw = hdul[IMAGE_INDEX[qid]].data.astype(np.float64)
    ovs = hdul[OVERSCAN_INDEX[qid]].data.astype(np.float64)[:, OVERSCAN_GOOD]
    h = hdul[IMAGE_INDEX[qid]].header
    a, b = nonlinearity.table_for_jd(obs_jd(hdul[0].header)).coefficients(h["CCD_ID"], h["AMP_ID"])
    lin = nonlinearity.linearize(raw - np.median(ovs, axis=1)[:, None], a, b)
    return from_raw_orientation(lin, qid)


def _exposure(home, path):
    expid = exposure_id(fits.getheader(path), path.name)
    tdir = next(home.truth.glob(f"*/{expid}"))
    exp = json.loads((tdir / "exposure.json").read_text())
    quads = pd.read_parquet(tdir / f"c{CCD:02d}_quadrants.parquet").set_index("qid")
    return exp, quads, tdir


def test_blank_sky_matches_noise_model(blank_home):
    path = sorted(blank_home.incoming.glob("*_o.fits.fz"))[0]
    exp, quads, _ = _exposure(blank_home, path)
    with fits.open(path) as hdul:
        for qid in (1, 3):
            amp = amplifier(CCD, qid)
            d = detector_defects(CCD, qid, SIZE, SIZE)
            illum = illumination(CCD, qid, SIZE, SIZE, Filter.parse(exp["filt"]), "sky")
            img = overscan_corrected(hdul, qid) - d.bias2d
            e_expected = quads.loc[qid, "sky_e"] * illum * d.response + d.dark * 34.0
            mean = e_expected / amp.gain
            # Variance: photons + read noise + quantisation + the overscan-median error.
            var = (e_expected + amp.read_noise**2) / amp.gain**2 + 1 / 12.0
            var += (np.pi / 2) * (amp.read_noise / amp.gain) ** 2 / 20
            good = ~(d.dead | d.hot | d.low_response)
            good[:20] = good[-20:] = False  # stay clear of the edges
            pull = ((img - mean) / np.sqrt(var))[good]
            n = pull.size
            print(f"q{qid}: pull mean {pull.mean():.4f} var {pull.var():.4f} n={n}")
            assert abs(pull.mean()) < 5 / np.sqrt(n) + 0.02, pull.mean()
            assert abs(pull.var() - 1.0) < 0.03, pull.var()


def test_aperture_photometry_recovers_truth(sim_home):
    """Bias from the afternoon stack, flat from the instrument model, photutils apertures."""
    path = sorted(sim_home.incoming.glob("*_o.fits.fz"))[0]
    exp, quads, tdir = _exposure(sim_home, path)
    truth = pd.read_parquet(tdir / f"c{CCD:02d}_sources.parquet")
    fp_psf = FocalPlanePSF.from_exposure(exp)
    biases = sorted(sim_home.incoming.glob("*_b.fits.fz"))
    pulls, ratios = [], []
    for qid in (1, 2, 3, 4):
        amp = amplifier(CCD, qid)
        stack = []
        for b in biases:
            with fits.open(b) as hb:
                stack.append(overscan_corrected(hb, qid))
        master_bias = np.median(stack, axis=0)
        d = detector_defects(CCD, qid, SIZE, SIZE)
        flat = d.response * illumination(CCD, qid, SIZE, SIZE, Filter.parse(exp["filt"]), "sky")
        with fits.open(path) as hdul:
            img = (overscan_corrected(hdul, qid) - master_bias) / np.where(flat > 0, flat, 1)
        t = truth[truth.qid == qid]
        stars = t[(t.kind == 1) & (t.mag > 14.5) & (t.mag < 19.0)]
        stars = stars[
            (stars.x > 20) & (stars.x < SIZE - 21) & (stars.y > 20) & (stars.y < SIZE - 21)
        ]
        # Isolated: no galaxy and nothing brighter than 2.5 mag below the star within 25 px;
        # fainter neighbours whose centre falls inside the aperture count in the expectation.
        iso, blend = [], []
        for _, s in stars.iterrows():
            r = np.hypot(t.x - s.x, t.y - s.y)
            near = t[(r < 25) & ((t.mag < s.mag + 2.5) | (t.kind == 2))]
            if len(near) == 1:
                iso.append(s)
                blend.append(t.flux_dn[(r < 10) & (r > 0) & (t.kind != 2)].sum())
        if not iso:
            continue
        iso = pd.DataFrame(iso)
        pos = np.column_stack([iso.x, iso.y])
        ap = CircularAperture(pos, r=10.0)
        ann = CircularAnnulus(pos, r_in=14.0, r_out=22.0)
        bad = (d.dead | d.hot | d.low_response).astype(bool)
        phot = aperture_photometry(img, ap, mask=bad)
        bkg = []
        for m in ann.to_mask(method="center"):
            vals = m.get_values(img)
            bkg.append(sigma_clipped_stats(vals, sigma=3)[1])
        bkg = np.array(bkg)
        flux = phot["aperture_sum"].data - bkg * ap.area
        psf = QuadrantTruePSF(fp_psf, CCD, qid, SIZE, SIZE)
        # Encircled energy from the true pixel values (not renormalised to the stamp: the
        # Kolmogorov wing beyond 20 px holds ~0.2% of the light).
        stamps = psf.stamps(pos[:, 0], pos[:, 1], 41).astype(float)
        ee = np.array(
            [
                CircularAperture([(20 + x - round(x), 20 + y - round(y))], r=10.0).do_photometry(
                    st
                )[0][0]
                for (x, y), st in zip(pos, stamps, strict=True)
            ]
        )
        expected = (iso.flux_dn.to_numpy() + np.array(blend)) * ee
        sky_var = quads.loc[qid, "sky_dn"] / amp.gain + (amp.read_noise / amp.gain) ** 2
        sigma = np.sqrt(expected / amp.gain + ap.area * sky_var * (1 + ap.area / ann.area))
        pulls.append((flux - expected) / sigma)
        ratios.append(flux / expected)
    pulls = np.concatenate(pulls)
    ratios = np.concatenate(ratios)
    print(
        f"aperture photometry: n={len(pulls)} median ratio={np.median(ratios):.4f} "
        f"median pull={np.median(pulls):.2f}"
    )
    assert len(pulls) >= 20, len(pulls)
    assert abs(np.median(ratios) - 1) < 0.005, np.median(ratios)
    assert abs(np.median(pulls)) < 0.5, np.median(pulls)
    mad_std = 1.4826 * np.median(np.abs(pulls - np.median(pulls)))
    assert 0.6 < mad_std < 1.5, mad_std
