"""The subtraction runner's streak step on a synthetic difference image with a real WCS:
sky coordinates, position angle, rate, magnitude, the FITS product and the database rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
from astropy.coordinates import SkyCoord
from astropy.io import fits

from zsds.core.home import Home
from zsds.core.instrument import PIXEL_SCALE
from zsds.core.wcs import quadrant_wcs
from zsds.db import connect, init_db, session
from zsds.db.schema import DiffImageRecord, QuadrantProduct, StreakRecord
from zsds.diffim.run import find_diff_streaks, streak_records, write_streaks
from zsds.diffim.stage import DiffImage, DiffTile
from zsds.streaks.simulate import SimConfig, simulate_difference

N = 512
FWHM = 2.5


def _diff_image() -> tuple[DiffImage, pd.DataFrame]:
    rng = np.random.default_rng(11)
    truth = pd.DataFrame({"x0": [100.0], "y0": [150.0], "x1": [260.0], "y1": [230.0]})
    sim = simulate_difference(rng, SimConfig(shape=(N, N), n_streaks=0, snr_range=(40, 40),
                                             fwhm=FWHM, n_cosmics=5, n_badcols=0,
                                             n_saturated=0), streaks=truth.assign(snr=40.0))
    h = quadrant_wcs(30.0, 10.0, 6, 1, 0.0, N, N).to_header(relax=True)
    h["OBSMJD"] = (61000.3, "start")
    h["EXPTIME"] = (30.0, "s")
    h["MAGZP"] = (26.0, "")
    h["DIFFFWHM"] = (FWHM, "px")
    s = FWHM / 2.3548
    yy, xx = np.mgrid[-12:13, -12:13]
    psf = np.exp(-0.5 * (xx**2 + yy**2) / s**2)
    tile = DiffTile(0, N, 0, N, psf / psf.sum(), 1.0, FWHM)
    z = np.zeros((N, N), np.float32)
    d = DiffImage(sim.image.astype(np.float32), sim.sigma.astype(np.float32), z, z, z,
                  sim.mask.astype(np.int32), z, z, [tile], fits.Header(h))
    return d, sim.truth


def test_streak_in_sky_coordinates_product_and_rows(tmp_path) -> None:
    diff, truth = _diff_image()
    st = find_diff_streaks(diff)
    good = st[st["rb"] >= 0.5]
    assert len(good) == 1, st[["x0", "y0", "x1", "y1", "snr", "rb"]]
    s = good.iloc[0]
    t = truth.iloc[0]
    ends = sorted([(s.x0, s.y0), (s.x1, s.y1)])
    assert np.hypot(ends[0][0] - t.x0, ends[0][1] - t.y0) < 2.0
    assert np.hypot(ends[1][0] - t.x1, ends[1][1] - t.y1) < 2.0
    length_px = np.hypot(t.x1 - t.x0, t.y1 - t.y0)
    assert abs(s.length_arcsec / (length_px * PIXEL_SCALE) - 1) < 0.03
    # 30 s exposure: rate = length / exptime in deg/day.
    assert abs(s.rate - s.length_arcsec / 3600 * 86400 / 30) < 1e-9
    c0, c1 = SkyCoord(s.ra0, s.dec0, unit="deg"), SkyCoord(s.ra1, s.dec1, unit="deg")
    assert abs((c0.position_angle(c1).deg % 180) - s.pa) < 1e-6
    assert np.isfinite(s.mag) and 0 < s.sigmamag < 0.1

    home = Home.resolve(tmp_path / "home").ensure()
    path = write_streaks(home, "products/sci/x_sciimg.fits", diff.header, st, diff.diff)
    with fits.open(path) as f:
        assert f["STREAKS"].header["NAXIS2"] == len(st) == f[0].header["NSTREAK"]
        k = int(np.flatnonzero(st["rb"].to_numpy() >= 0.5)[0])
        cut = f[f"CUT{k}"].data
        # The whole trail (length ~179 px) fits in the stamp, with its flux.
        assert cut.shape[0] == cut.shape[1] >= length_px and cut.shape[0] % 2 == 1
        assert np.nansum(cut) > 0.8 * s.flux
    engine = connect(home.db_url)
    init_db(engine)
    q = QuadrantProduct(pid=7, expid=70, ccdid=6, qid=1, rcid=20, field=645, fid=2,
                        kind="sciimg", relpath="x", infobits=0, magzp=26.0)
    with session(engine) as ses:
        ses.add(DiffImageRecord(pid=7, expid=70, nid=1, field=645, ccdid=6, qid=1, rcid=20,
                                fid=2, programid=1, jd=2461000.8, rfid=1, ra=30.0, dec=10.0,
                                radius=0.1, relpath="x", ncand=0))
        ses.flush()
        ses.add_all(streak_records(st, 7, q, diff.header, 2461000.8))
    with session(engine) as ses:
        rows = ses.query(StreakRecord).order_by(StreakRecord.streakid).all()
        assert [r.streakid for r in rows] == [7000 + k for k in range(len(st))]
        assert abs(rows[0].length - st.iloc[0].length_arcsec) < 1e-9


def test_short_streak_on_a_bright_star_is_a_residual() -> None:
    """star_ratio: a short segment next to a bright template star scores high (and the
    runner sets its rb to 0); the same segment on empty template sky scores ~0."""
    from zsds.diffim.run import STAR_RESIDUAL_RATIO, star_ratio

    s = FWHM / 2.3548
    yy, xx = np.mgrid[0:100, 0:100]
    template = (5e5 / (2 * np.pi * s**2) * np.exp(-((xx - 30) ** 2 + (yy - 30) ** 2)
                                                  / (2 * s**2))).astype(np.float32)
    near = pd.DataFrame({"x0": [28.0], "y0": [32.0], "x1": [34.0], "y1": [33.0],
                         "flux": [400.0], "length": [6.1]})
    far = near.assign(x0=[68.0], x1=[74.0], y0=[72.0], y1=[73.0])
    long_faint = near.assign(x0=[10.0], x1=[60.0], y0=[31.0], y1=[31.0], flux=[5000.0],
                             length=[50.0])
    r_near, r_far, r_long = (star_ratio(t, template, FWHM)[0] for t in (near, far, long_faint))
    assert r_near > STAR_RESIDUAL_RATIO > 1.0 > r_far
    # A long trail crossing the star: the ratio is high too, but only short ones are vetoed.
    assert r_long > 0


def test_injected_trails_stay_apart() -> None:
    from zsds.core.image import QuadrantImage
    from zsds.streaks.quality import _segments_apart, inject_trails

    class Psf:  # the pipeline PSF's vectorised interface, a unit Gaussian
        def stamps(self, x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
            h = size // 2
            yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
            dx = (np.asarray(x) - np.round(x))[:, None, None]
            dy = (np.asarray(y) - np.round(y))[:, None, None]
            return np.exp(-((xx - dx) ** 2 + (yy - dy) ** 2) / 2.0)

    rng = np.random.default_rng(3)
    img = QuadrantImage(rng.normal(100.0, 5.0, (256, 256)).astype(np.float32),
                        header=fits.Header({"SEEING": 2.0}), psf=Psf())
    for _ in range(5):
        tr = inject_trails(img, rng, n=4, length=(40.0, 120.0), min_gap=20.0)
        segs = [tuple(r) for r in tr[["x0", "y0", "x1", "y1"]].itertuples(index=False)]
        assert len(segs) == 4
        assert all(_segments_apart(a, b, 20.0) for i, a in enumerate(segs) for b in segs[i + 1:])
