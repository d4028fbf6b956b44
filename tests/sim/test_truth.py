"""Ground truth is complete and consistent with the pixels' geometry."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS

from zsds.core.instrument import raw_flip
from zsds.sim.camera import KIND_GALAXY, KIND_STAR, KIND_TRANSIENT

from .conftest import CCD, SIZE


def _truth_dirs(home):
    return sorted(
        p
        for p in home.truth.glob("2026*/*")
        if (p / "exposure.json").exists()
        and json.loads((p / "exposure.json").read_text())["imgtype"] == "science"
    )


def test_truth_tables_complete(sim_home):
    tdir = _truth_dirs(sim_home)[0]
    src = pd.read_parquet(tdir / f"c{CCD:02d}_sources.parquet")
    kinds = set(src.kind.unique())
    assert {KIND_STAR, KIND_GALAXY, KIND_TRANSIENT} <= kinds
    assert (src.flux_e > 0).all() and set(src.qid) == {1, 2, 3, 4}
    quads = pd.read_parquet(tdir / f"c{CCD:02d}_quadrants.parquet")
    for col in ("magzp", "clrcoeff", "sky_e", "fwhm_center_px", "wcs_header", "gain"):
        assert col in quads
    assert quads.magzp.between(24.0, 28.0).all()
    assert len(pd.read_parquet(tdir / f"c{CCD:02d}_cosmics.parquet")) > 0
    night = sim_home.truth / "20261120"
    assert (night / "asteroids_mpcorb.dat").exists()
    assert len(pd.read_parquet(night / "science_exposures.parquet")) == 2


def test_truth_positions_follow_true_wcs_and_raw_wcs_is_close(sim_home):
    tdir = _truth_dirs(sim_home)[0]
    exp = json.loads((tdir / "exposure.json").read_text())
    src = pd.read_parquet(tdir / f"c{CCD:02d}_sources.parquet")
    quads = pd.read_parquet(tdir / f"c{CCD:02d}_quadrants.parquet").set_index("qid")
    raw = next(sim_home.incoming.glob(f"ztf_{exp['filefracday']}_*_c{CCD:02d}_o.fits.fz"))
    for qid in (1, 2, 3, 4):
        w = WCS(fits.Header.fromstring(quads.loc[qid, "wcs_header"]))
        s = src[(src.qid == qid) & (src.kind == KIND_STAR)]
        x, y = w.all_world2pix(s.ra.to_numpy(), s.dec.to_numpy(), 0)
        assert np.allclose(x, s.x, atol=1e-3) and np.allclose(y, s.y, atol=1e-3)
        # The camera's raw-header WCS (commanded pointing, no distortion, readout order) is
        # off by the pointing error and the distortion: arcseconds, not arcminutes.
        hdr = fits.getheader(raw, qid)  # quadrant qid is HDU qid
        fy, fx = raw_flip(qid)
        xr = SIZE - 1 - s.x.to_numpy() if fx else s.x.to_numpy()
        yr = SIZE - 1 - s.y.to_numpy() if fy else s.y.to_numpy()
        ra, dec = WCS(hdr).all_pix2world(xr, yr, 0)
        sep = np.hypot((ra - s.ra) * np.cos(np.deg2rad(s.dec)), dec - s.dec) * 3600
        assert 0.05 < np.median(sep) < 30.0, np.median(sep)


def test_satellite_and_airplane_tracks_have_truth_and_pixels(tmp_path):
    from zsds.core.home import Home
    from zsds.core.instrument import from_raw_orientation
    from zsds.sim.camera import KIND_AIRPLANE, KIND_SATELLITE, SimConfig
    from zsds.sim.run import simulate_night

    cfg = SimConfig(
        quad_size=512,
        seed=2,
        satellite_prob=1.0,
        airplane_prob=1.0,
        asteroids=False,
        transients=False,
        galaxies=False,
    )
    home = Home.resolve(tmp_path)
    simulate_night(home, "2026-11-20", 1, [645], ccds=list(range(1, 17)), config=cfg)
    files = sorted(home.truth.glob("*/*/c*_streaks.parquet"))
    assert files
    for f in files:
        st = pd.read_parquet(f)
        assert set(st.kind) <= {KIND_SATELLITE, KIND_AIRPLANE}
        ccd = int(f.name[1:3])
        raw = next(home.incoming.glob(f"*_c{ccd:02d}_o.fits.fz"))
        for _, s in st.iterrows():
            with fits.open(raw) as h:
                img = from_raw_orientation(h[int(s.qid)].data.astype(float), int(s.qid))
            t = np.linspace(0.0, 1.0, 200001)
            xs = np.rint(s.x0 + t * (s.x1 - s.x0)).astype(int)
            ys = np.rint(s.y0 + t * (s.y1 - s.y0)).astype(int)
            inside = (xs >= 3) & (xs < 509) & (ys >= 3) & (ys < 509)
            if inside.any():
                ix, iy = xs[inside][len(xs[inside]) // 2], ys[inside][len(ys[inside]) // 2]
                # A point on the track is far above the median sky.
                assert img[iy - 1 : iy + 2, ix - 1 : ix + 2].max() > np.median(img) + 200
