"""Reference co-addition on synthetic inputs (fixed star list, random sub-pixel pointings)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from zsds.core.fields import get_field
from zsds.core.image import QuadrantImage
from zsds.core.psf import moffat_stamps
from zsds.core.wcs import quadrant_wcs
from zsds.refs import (
    CoaddConfig,
    SelectConfig,
    candidates_from_headers,
    coadd,
    reference_grid,
    select_epochs,
)

FIELD, CCD, QID, N = 600, 5, 2, 512
NIN = 15
ZP = 27.0
GAIN, RN, SKY = 6.0, 10.0, 150.0
STAMP = 31
BOX = 18  # half-size of the box used for star fluxes (> stamp half-size + interpolation)
SCALE_DEG = 1.012 / 3600.0


def _render(wcs, ra, dec, flux, fwhm, rng, extra=()):
    """Sky + Moffat stars (+ extra (x, y, flux) sources) with Poisson + read noise, in DN."""
    x, y = wcs.all_world2pix(ra, dec, 0)
    if extra:
        ex = np.array(extra, float)
        x, y, flux = np.r_[x, ex[:, 0]], np.r_[y, ex[:, 1]], np.r_[flux, ex[:, 2]]
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)
    st = moffat_stamps(x - ix, y - iy, np.full(len(x), fwhm), 2.5, 0.95, 0.3, STAMP, np.float64)
    h = STAMP // 2
    off = np.arange(-h, h + 1)
    yy = iy[:, None, None] + off[None, :, None]
    xx = ix[:, None, None] + off[None, None, :]
    yy, xx = np.broadcast_to(yy, st.shape), np.broadcast_to(xx, st.shape)
    ok = (yy >= 0) & (yy < N) & (xx >= 0) & (xx < N)
    model = np.full((N, N), SKY)
    np.add.at(model, (yy[ok], xx[ok]), (st * flux[:, None, None])[ok])
    noise = rng.normal(0.0, np.sqrt(model / GAIN + (RN / GAIN) ** 2))
    return (model + noise).astype(np.float32)


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(42)
    ref = reference_grid(FIELD, CCD, QID, N, N)
    # Stars on a jittered 8x8 grid (isolated: > 2 BOX apart), fluxes at ZP 27.
    g = np.arange(8) * 60.0 + 46.0
    sx, sy = (a.ravel() + rng.uniform(-5, 5, 64) for a in np.meshgrid(g, g))
    flux27 = 10 ** rng.uniform(4.3, 5.3, sx.size)
    ra, dec = ref.all_pix2world(sx, sy, 0)
    f = get_field(FIELD)
    images, magzp, fwhms = [], [], []
    for i in range(NIN):
        dx, dy = rng.uniform(-4, 4, 2) * SCALE_DEG
        if i == 0:
            dx += 40 * SCALE_DEG  # shifted input: a 40 px strip of the grid lacks it
        wcs = quadrant_wcs(f.ra + dx / np.cos(np.deg2rad(f.dec)), f.dec + dy, CCD, QID, 0.0, N, N)
        zp_i = rng.uniform(26.0, 26.4)
        fwhm = rng.uniform(2.0, 2.8)
        extra = ()
        if i == 3:  # transient, only in this input
            extra = [(*wcs.all_world2pix(*ref.all_pix2world(300.0, 200.0, 0), 0), 3e4)]
        if i == 7:  # asteroid: a short trail of point sources
            p = ref.all_pix2world(np.linspace(150, 158, 5), np.full(5, 330.0), 0)
            xa, ya = wcs.all_world2pix(*p, 0)
            extra = [(a, b, 4e3) for a, b in zip(xa, ya, strict=True)]
        data = _render(wcs, ra, dec, flux27 * 10 ** (-0.4 * (ZP - zp_i)), fwhm, rng, extra)
        hdr = fits.Header({"MAGZP": zp_i, "GAIN": GAIN, "READNOI": RN, "SEEING": fwhm * 1.012})
        images.append(QuadrantImage(data, wcs=wcs, header=hdr))
        magzp.append(zp_i)
        fwhms.append(fwhm)
    t0 = time.perf_counter()
    res = coadd(images, ref, (N, N), CoaddConfig(zp=ZP))
    dt = time.perf_counter() - t0
    print(f"\ncoadd of {NIN} inputs {N}x{N}: {dt:.2f} s")
    return dict(ref=ref, sx=sx, sy=sy, flux27=flux27, images=images, res=res,
                magzp=np.array(magzp), fwhm=np.array(fwhms), rng=rng)


def _blank_apertures(img, sx, sy, r, rng, margin=60, n=400):
    """Sums in circular apertures of radius r at random positions far from every star."""
    ny, nx = img.shape
    px = rng.uniform(margin, nx - margin, 4 * n)
    py = rng.uniform(margin, ny - margin, 4 * n)
    d = np.hypot(px[:, None] - sx[None], py[:, None] - sy[None]).min(axis=1)
    px, py = np.round(px[d > 25][:n]).astype(int), np.round(py[d > 25][:n]).astype(int)
    k = int(np.ceil(r))
    yy, xx = np.mgrid[-k:k + 1, -k:k + 1]
    foot = (xx**2 + yy**2 <= r * r).astype(float)
    cut = np.stack([img[y - k:y + k + 1, x - k:x + k + 1] for x, y in zip(px, py, strict=True)])
    return (cut * foot).sum(axis=(1, 2))


def _robust_std(a):
    return 1.4826 * np.median(np.abs(a - np.median(a)))


def test_depth_gain(scene):
    res, rng = scene["res"], scene["rng"]
    r = 3.0
    maglims = []
    for img, zp in zip(scene["images"], scene["magzp"], strict=True):
        sx, sy = img.wcs.all_world2pix(*scene["ref"].all_pix2world(scene["sx"], scene["sy"], 0), 0)
        s = _robust_std(_blank_apertures(img.data - np.median(img.data), sx, sy, r, rng))
        maglims.append(zp - 2.5 * np.log10(5 * s))
    s_co = _robust_std(_blank_apertures(res.image, scene["sx"], scene["sy"], r, rng))
    lim_co = res.zp - 2.5 * np.log10(5 * s_co)
    gain = lim_co - np.median(maglims)
    print(f"\nmedian input 5-sigma limit {np.median(maglims):.3f}, co-add {lim_co:.3f}, "
          f"gain {gain:.3f} mag (ideal 1.25 log10({NIN}) = {1.25 * np.log10(NIN):.3f})")
    assert gain >= 1.0
    # The uncertainty map agrees with the measured pixel noise within the interpolation smoothing.
    sky = res.image[100:400, 100:400]
    pred = np.median(res.uncertainty[100:400, 100:400])
    assert 0.6 < _robust_std(sky.ravel()) / pred < 1.1


def test_star_fluxes(scene):
    res, sx, sy = scene["res"], scene["sx"], scene["sy"]
    inside = (sx > 70) & (sx < N - 30) & (sy > 30) & (sy < N - 30)
    ix, iy = np.round(sx[inside]).astype(int), np.round(sy[inside]).astype(int)
    meas = np.array([res.image[y - BOX:y + BOX + 1, x - BOX:x + BOX + 1].sum()
                     for x, y in zip(ix, iy, strict=True)])
    ratio = meas / scene["flux27"][inside]
    med, tot = np.median(ratio), meas.sum() / scene["flux27"][inside].sum()
    print(f"\nstar flux ratio co-add/truth: median {med:.4f}, total {tot:.4f}, "
          f"rms {np.std(ratio):.4f} ({inside.sum()} stars)")
    assert abs(med - 1) < 0.01
    assert abs(tot - 1) < 0.01


@pytest.mark.parametrize("xy", [(300, 200), (154, 330)], ids=["transient", "asteroid"])
def test_minority_sources_rejected(scene, xy):
    res, rng = scene["res"], scene["rng"]
    r = 4.0
    yy, xx = np.mgrid[0:N, 0:N]
    ap = (xx - xy[0]) ** 2 + (yy - xy[1]) ** 2 <= r * r
    resid = res.image[ap].sum()
    sigma = _robust_std(_blank_apertures(res.image, scene["sx"], scene["sy"], r, rng))
    print(f"\nresidual at {xy}: {resid / sigma:+.2f} sigma")
    assert abs(resid) < 3 * sigma


def test_coverage(scene):
    res = scene["res"]
    cov = res.coverage
    # Expected: number of inputs whose footprint (reproject keeps half a pixel past the edge)
    # grid pixel, computed independently from the WCSs.
    yy, xx = np.mgrid[0:N, 0:N]
    ra, dec = scene["ref"].all_pix2world(xx.ravel(), yy.ravel(), 0)
    expect = np.zeros(N * N, int)
    for img in scene["images"]:
        x, y = img.wcs.all_world2pix(ra, dec, 0)
        expect += (x >= -0.5) & (x <= N - 0.5) & (y >= -0.5) & (y <= N - 0.5)
    expect = expect.reshape(N, N)
    assert expect.max() == NIN and (expect == NIN - 1).mean() > 0.05  # the shifted input
    match = np.mean(cov == expect)
    print(f"\ncoverage equals the footprint count in {100 * match:.2f} % of pixels; "
          f"rejected fraction {100 * res.rejected_fraction:.3f} %")
    assert match > 0.99
    assert np.all(cov <= expect)
    assert ((res.mask != 0) == (cov == 0)).all()
    assert 0 < res.rejected_fraction < 0.01


def test_zero_coverage_masked(scene):
    img = scene["images"][1]
    far = reference_grid(FIELD, CCD, QID, N, N)
    far.wcs.crpix = np.asarray(far.wcs.crpix) + np.array([N / 2, 0])  # grid half off the input
    res = coadd([img], far, (N, N))
    assert (res.coverage == 0).any() and (res.coverage == 1).any()
    assert ((res.mask != 0) == (res.coverage == 0)).all()
    assert np.all(res.image[res.coverage == 0] == 0)
    assert np.all(np.isinf(res.variance[res.coverage == 0]))


def _candidates(n_good, n_bad):
    rng = np.random.default_rng(1)
    n = n_good + n_bad
    df = pd.DataFrame({
        "infobits": np.zeros(n, int), "seeing": rng.uniform(1.5, 2.5, n),
        "maglim": rng.uniform(20.3, 20.8, n), "magzp": rng.uniform(26.0, 26.4, n),
        "astrrms1": np.full(n, 0.04), "astrrms2": np.full(n, 0.05),
    })
    df.loc[n_good:, "infobits"] = 1 << 26
    return df


def test_select_best_seeing_first():
    df = _candidates(50, 5)
    df.loc[3, "seeing"] = 4.0
    sel = select_epochs(df)
    assert len(sel) == 40
    assert np.all(np.diff(sel["seeing"].to_numpy()) >= 0)
    assert (sel["infobits"] == 0).all() and 3 not in sel.index
    best = df[df.infobits == 0].drop(index=3)["seeing"].nsmallest(40)
    assert set(sel.index) == set(best.index)


def test_select_raises_with_too_few():
    df = _candidates(10, 8)
    df.loc[0, "seeing"] = -999.0
    with pytest.raises(ValueError, match=r"9 of 18 .*min_epochs=15.*INFOBITS != 0: 8.*seeing"):
        select_epochs(df)
    with pytest.raises(ValueError, match="lacks required column"):
        select_epochs(df.drop(columns="magzp"))
    assert len(select_epochs(df, SelectConfig(min_epochs=5))) == 9


def test_candidates_from_headers():
    h = fits.Header({"INFOBITS": 0, "SEEING": 2.0, "MAGLIM": 20.5, "MAGZP": 26.2,
                     "ASTRRMS1": 0.03, "ASTRRMS2": 0.04})
    df = candidates_from_headers([h] * 3 + [fits.Header()])
    assert len(select_epochs(df, SelectConfig(min_epochs=3))) == 3
