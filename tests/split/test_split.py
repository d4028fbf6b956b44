"""Split / floating-bias tests against the simulator's truth."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from zsds.core.home import Home
from zsds.core.masks import MaskBit
from zsds.sim.camera import SimConfig
from zsds.sim.detector import detector_defects
from zsds.sim.run import simulate_calib, simulate_night
from zsds.split import OverscanConfig, floating_bias, quadrant_qa, read_raw_ccd, split_quadrant

N = 256


@pytest.fixture(scope="module")
def raw_files(tmp_path_factory):
    home = Home(tmp_path_factory.mktemp("splithome"))
    cal = simulate_calib(
        home, "2026-11-20", quad_size=N, ccds=[1], n_bias=1, n_flat=1, filters=("r",)
    )
    sci = simulate_night(
        home, "2026-11-20", 1, quad_size=N, ccds=[1], config=SimConfig(quad_size=N, asteroids=False)
    )
    bias = next(p for p in cal.raw_files if p.name.endswith("_b.fits.fz"))
    return bias, sci.raw_files[0]


@pytest.mark.parametrize("qid", [1, 2, 3, 4])
def test_bias_frame_row_residual(raw_files, qid):
    raw = read_raw_ccd(raw_files[0])
    img = split_quadrant(raw, qid)
    assert img.data.shape == (N, N) and img.data.dtype == np.float32
    resid = img.data - detector_defects(1, qid, N, N).bias2d
    row_level = np.median(resid, axis=1)
    assert np.std(row_level) < 0.3
    assert abs(np.mean(row_level)) < 0.3


def test_science_split_header_mask_variance(raw_files):
    raw = read_raw_ccd(raw_files[1])
    img = split_quadrant(raw, 3)
    h = img.header
    for key in ("GAIN", "READNOI", "SATURATE", "EXPTIME", "FILTER", "CCD_ID", "QID"):
        assert key in h
    assert "XTENSION" not in h and "EXTNAME" not in h
    gain, rn = h["GAIN"], h["READNOI"]
    expect = np.maximum(img.data, 0) / gain + (rn / gain) ** 2
    np.testing.assert_allclose(img.variance, expect, rtol=1e-5)
    sat = raw.images[3] >= h["SATURATE"]
    assert np.array_equal((img.mask & int(MaskBit.SATURATED)) != 0, sat)
    # Every card fits in 80 characters: a truncated comment is a warning users see (the WCS
    # of each quadrant serialises its header).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h.tostring()
    qa = quadrant_qa(img, raw.overscans[3])
    assert 1.0 < qa["overscan_noise"] < 2.5
    assert qa["image_median"] > 50
    assert 500 < qa["overscan_level"] < 1200


def test_overscan_rows_follow_image_rows(raw_files):
    # q1 and q2 are flipped in y: the overscan must be flipped with the image rows.
    raw = read_raw_ccd(raw_files[0])
    for qid in (1, 2, 3, 4):
        fb = floating_bias(raw.overscans[qid])
        rows = np.median(
            raw.images[qid].astype(float) - detector_defects(1, qid, N, N).bias2d, axis=1
        )
        assert np.corrcoef(fb, rows)[0, 1] > 0.5 or np.std(rows - fb) < 0.3


def test_floating_bias_robust_to_cosmic_rays():
    rng = np.random.default_rng(3)
    ny = 300
    truth = 800.0 + 2.0 * np.sin(np.arange(ny) / 60.0)
    ovs = truth[:, None] + rng.normal(0, 1.8, (ny, 30))
    clean = floating_bias(ovs)
    hit = ovs.copy()
    hit[100:104, 12:15] += 5000.0  # a cosmic-ray blob
    hit[200, 10:30] += 3000.0  # a track along a whole overscan row
    est = floating_bias(hit)
    assert np.max(np.abs(est - clean)) < 0.3
    assert np.sqrt(np.mean((est - truth) ** 2)) < 0.3
    # the unsmoothed, unclipped estimate would be biased by hundreds of DN
    naive = floating_bias(hit, OverscanConfig(clip_sigma=1e9, median_rows=1, smooth_rows=1))
    assert np.max(np.abs(naive - truth)) > 100
