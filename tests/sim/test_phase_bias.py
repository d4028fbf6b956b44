"""The pipeline's PSF photometry on the new simulator at ZTF's sharpest seeing (1.2 px FWHM).

The simulator draws Kolmogorov x optics x pixel profiles (``zsds.sim.optics``), which the
pipeline's Moffat model does not mirror. Issue 18's bar: PSF mag - true mag at a pixel centre
minus at a pixel corner <= 0.01 mag.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from zsds.core.home import Home
from zsds.core.instrument import Filter, amplifier
from zsds.core.masks import BAD_PIXEL_BITS, MASK_DTYPE, MaskBit
from zsds.instcal.masking import MaskConfig
from zsds.instcal.stage import InstCalConfig, measure_sources
from zsds.sim.camera import SimConfig
from zsds.sim.detector import detector_defects, illumination
from zsds.sim.observing import SEEING_RANGE
from zsds.sim.run import simulate_night
from zsds.split.split import read_raw_ccd, split_quadrant

CCD, SIZE, QIDS = 6, 1024, (1, 2)


def _isolated_bright_stars(truth: pd.DataFrame) -> pd.DataFrame:
    """Stars with nothing within 8 px brighter than 5 mag below them, away from the edges, with
    an expected S/N > 50 (flux over the noise of a PSF fit on this sky, from the truth)."""
    tree = cKDTree(np.c_[truth.x, truth.y])
    stars = truth[(truth.kind == 1).to_numpy()]
    iso = np.array([
        sum(truth.mag.to_numpy()[j] < s.mag + 5 for j in tree.query_ball_point((s.x, s.y), 8.0))
        == 1
        for s in stars.itertuples()
    ], bool)  # fmt: skip
    inside = ((stars.x > 5) & (stars.x < SIZE - 6) & (stars.y > 5) & (stars.y < SIZE - 6))
    return stars[iso & inside.to_numpy()].reset_index(drop=True)


def _match(cat: pd.DataFrame, stars: pd.DataFrame) -> pd.DataFrame:
    """Each star with its nearest PSF fit: ``ok`` when within 0.5 px, unflagged by the fit and
    with no bad mask bit around it."""
    dist, j = cKDTree(np.c_[cat.x, cat.y]).query(np.c_[stars.x, stars.y])
    p = cat.iloc[j].reset_index(drop=True)
    ok = (dist < 0.5) & (p["fitflags"].to_numpy() == 0)
    ok &= (p["flags"].to_numpy() & BAD_PIXEL_BITS) == 0
    snr = (p.flux / p.fluxerr).to_numpy()
    return pd.DataFrame({
        "ok": ok,
        "dist": dist,
        "snr": snr,
        "dm": -2.5 * np.log10(p.flux.to_numpy() / stars.flux_dn.to_numpy()),
        "phx": stars.x.to_numpy() - np.round(stars.x.to_numpy()),
        "phy": stars.y.to_numpy() - np.round(stars.y.to_numpy()),
        "dx": p.x.to_numpy() - stars.x.to_numpy(),
        "dy": p.y.to_numpy() - stars.y.to_numpy(),
    })  # fmt: skip


@pytest.fixture(scope="module")
def sharp(tmp_path_factory):
    """Two 1024 px quadrants at the best seeing, measured by the pipeline (instcal's
    ``measure_sources``, calibrated with the true bias and flat) with its default configuration
    and with cosmic-ray masking off; the bright isolated stars matched to each catalogue."""
    home = Home.resolve(tmp_path_factory.mktemp("sharphome"))
    cfg = SimConfig(quad_size=SIZE, seed=11, seeing=SEEING_RANGE[0], asteroids=False,
                    satellites=False, airplane_prob=0.0, transients=False, flares=False)
    simulate_night(home, "2026-11-20", 1, [645], ccds=[CCD], config=cfg)
    raw = read_raw_ccd(sorted(home.incoming.glob("*_o.fits.fz"))[0])
    edir = next((home.truth / "20261120").glob("[0-9]*"))
    exp = json.loads((edir / "exposure.json").read_text())
    quads = pd.read_parquet(edir / f"c{CCD:02d}_quadrants.parquet").set_index("qid")
    truth_all = pd.read_parquet(edir / f"c{CCD:02d}_sources.parquet")
    configs = {"default": InstCalConfig(),
               "no_cr": InstCalConfig(mask=MaskConfig(cosmic_rays=False))}  # fmt: skip
    out = {name: [] for name in configs}
    for qid in QIDS:
        q = split_quadrant(raw, qid)
        amp = amplifier(CCD, qid)
        d = detector_defects(CCD, qid, SIZE, SIZE)
        flat = d.response * illumination(CCD, qid, SIZE, SIZE, Filter.parse(exp["filt"]), "sky")
        mask = q.mask.astype(MASK_DTYPE)
        mask[flat <= 0.1] |= MASK_DTYPE(int(MaskBit.DEAD))
        mask[d.hot] |= MASK_DTYPE(int(MaskBit.NOISY))
        flat = np.where(flat > 0.1, flat, 1.0)
        cal = ((q.data - d.bias2d) / flat).astype(np.float32)
        var = ((np.clip(cal, 0, None) / amp.gain + (amp.read_noise / amp.gain) ** 2) / flat**2)
        sat = float(q.header["SATURATE"]) - float(q.header["OVSLEVEL"])
        stars = _isolated_bright_stars(truth_all[truth_all.qid == qid].reset_index(drop=True))
        for name, icfg in configs.items():
            m = measure_sources(cal, var.astype(np.float32), mask, amp.gain, amp.read_noise, sat,
                                float(quads.loc[qid, "fwhm_center_px"]), icfg)  # fmt: skip
            out[name].append(_match(m.psfcat, stars))
    res = {name: pd.concat(v, ignore_index=True) for name, v in out.items()}
    # Bright: found (within 0.5 px) with S/N > 50 in the run without cosmic-ray masking; the
    # same stars in both runs.
    bright = ((res["no_cr"].dist < 0.5) & (res["no_cr"].snr > 50)).to_numpy()
    return dict(quads=quads, **{name: r[bright].reset_index(drop=True) for name, r in res.items()})


def _centreness(ph: pd.DataFrame) -> np.ndarray:
    """+1 for a star at a pixel centre, -1 at a pixel corner, 0 midway along an edge."""
    return 0.5 * (np.cos(2 * np.pi * ph.phx) + np.cos(2 * np.pi * ph.phy))


def _robust_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Straight-line fit with iterative 4-sigma clipping (saturated or blended outliers):
    (slope, robust scatter)."""
    keep = np.isfinite(y)
    for _ in range(5):
        slope, icpt = np.polyfit(x[keep], y[keep], 1)
        r = y - (slope * x + icpt)
        s = 1.4826 * np.median(np.abs(r[keep]))
        keep = np.isfinite(y) & (np.abs(r) < 4 * s)
    return float(slope), float(s)


def test_sharp_seeing_is_1p2_px(sharp):
    assert (sharp["quads"].fwhm_center_px < 1.25).all()
    assert len(sharp["no_cr"]) >= 200


def test_bright_stars_survive_cosmic_ray_masking(sharp):
    """>= 95% of the S/N > 50 isolated stars keep a clean PSF fit with the default
    configuration, both near pixel centres and near pixel corners."""
    ph = sharp["default"]
    c = _centreness(ph)
    kept = {name: float(ph.ok[sel].mean()) for name, sel in
            (("all", c > -2), ("centre", c > 0.3), ("corner", c < -0.3))}  # fmt: skip
    print(f"kept with cosmic-ray masking: {kept} of {len(ph)} stars; without: "
          f"{float(sharp['no_cr'].ok.mean()):.3f}")
    assert min(kept.values()) >= 0.95


def test_psf_mag_does_not_depend_on_pixel_phase(sharp):
    """PSF mag - true mag at a pixel centre minus at a pixel corner: |.| <= 0.01 mag.

    Measured as twice the slope of dm against the centreness (+1 centre, -1 corner), which
    uses every star (~250 S/N > 50 isolated stars), on the run without cosmic-ray masking (the
    photometry alone; the test above holds the masking). Measured: +0.009 +- 0.002 mag."""
    ph = sharp["no_cr"][sharp["no_cr"].ok]
    c = _centreness(ph)
    slope, scatter = _robust_line(c, ph.dm.to_numpy())
    centre, corner = ph.dm[c > 0.3], ph.dm[c < -0.3]
    print(f"n={len(ph)}: median dm {np.median(ph.dm):+.4f}, scatter {scatter:.4f}; centre - "
          f"corner: fit {2 * slope:+.4f} (+- {2 * scatter / np.sqrt(len(ph)) / np.std(c):.4f}),"
          f" medians {np.median(centre) - np.median(corner):+.4f}")
    assert abs(2 * slope) <= 0.01


def test_psf_positions_have_no_phase_bias(sharp):
    """Fitted minus true position does not follow the sub-pixel phase (a model that is too
    narrow or wrongly integrated pulls positions toward pixel centres): slope < 0.03 px/px."""
    ph = sharp["no_cr"][sharp["no_cr"].ok]
    sx, rx = _robust_line(ph.phx.to_numpy(), ph.dx.to_numpy())
    sy, ry = _robust_line(ph.phy.to_numpy(), ph.dy.to_numpy())
    print(f"position error vs phase: slope x {sx:+.4f}, y {sy:+.4f}; scatter {rx:.4f}, "
          f"{ry:.4f} px")
    assert abs(sx) < 0.03 and abs(sy) < 0.03
