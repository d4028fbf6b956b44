"""Master bias and high-frequency flat against the simulator's truth."""

from __future__ import annotations

import numpy as np
import pytest

from zsds.calib import make_hifreq_flat, make_master_bias
from zsds.core.home import Home
from zsds.sim.detector import detector_defects
from zsds.sim.run import simulate_calib
from zsds.split import read_raw_ccd, split_quadrant

N = 256
QIDS = (1, 2, 3, 4)


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    home = Home(tmp_path_factory.mktemp("calhome"))
    res = simulate_calib(
        home, "2026-11-20", quad_size=N, ccds=[1], n_bias=5, n_flat=3, filters=("r",)
    )
    raws = [read_raw_ccd(p) for p in res.raw_files]
    out = {}
    for qid in QIDS:
        bias = [split_quadrant(r, qid).data for r in raws if r.header["IMGTYPE"] == "bias"]
        flats = [split_quadrant(r, qid).data for r in raws if r.header["IMGTYPE"] == "dome"]
        assert len(bias) == 5 and len(flats) == 3
        br = make_master_bias(bias)
        fr = make_hifreq_flat(flats, br.bias, br.cmask)
        out[qid] = (br, fr, detector_defects(1, qid, N, N))
    return out


@pytest.mark.parametrize("qid", QIDS)
def test_master_bias_matches_truth(products, qid):
    br, _, truth = products[qid]
    good = ~br.cmask
    resid = (br.bias - truth.bias2d)[good]
    assert np.sqrt(np.mean(resid**2)) < 2.0 * br.bias_unc[good].mean()
    assert abs(np.mean(resid)) < 0.1
    assert br.cmask.mean() < 0.01


@pytest.mark.parametrize("qid", QIDS)
def test_hifreq_flat_matches_response(products, qid):
    _, fr, truth = products[qid]
    resp = truth.response / np.median(truth.response)
    good = (fr.mask == 0) & ~truth.dead & ~truth.low_response & ~truth.hot
    assert abs(np.median(fr.flat[good]) - 1.0) < 1e-3
    assert np.std((fr.flat - resp)[good]) < 0.003


@pytest.mark.parametrize("qid", QIDS)
def test_hifreq_flat_has_no_low_nu(products, qid):
    _, fr, truth = products[qid]
    resp = truth.response / np.median(truth.response)
    ratio = np.where((fr.mask == 0) & (resp > 0), fr.flat / np.where(resp > 0, resp, 1), np.nan)
    blocks = np.nanmedian(ratio.reshape(8, N // 8, 8, N // 8), axis=(1, 3))
    assert np.std(blocks) < 0.003
    # no residual gradient: plane fit across the quadrant
    yy, xx = np.mgrid[0:8, 0:8]
    design = np.column_stack([np.ones(64), xx.ravel(), yy.ravel()])
    coef, *_ = np.linalg.lstsq(design, blocks.ravel(), rcond=None)
    assert np.all(np.abs(coef[1:]) * 8 < 0.003)


@pytest.mark.parametrize("qid", QIDS)
def test_flat_mask_catches_defects(products, qid):
    _, fr, truth = products[qid]
    bad = truth.dead | truth.low_response
    assert ((fr.mask != 0) & bad).sum() >= 0.9 * bad.sum()
    assert (fr.mask != 0).mean() < 0.01
