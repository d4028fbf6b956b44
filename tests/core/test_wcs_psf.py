import numpy as np
import pytest

from zsds.core.image import QuadrantId, QuadrantImage
from zsds.core.instrument import Filter
from zsds.core.psf import MoffatPSF, PixelPSF, moffat_stamps
from zsds.core.wcs import pixel_scale_arcsec, quadrant_wcs


def test_sip_wcs_round_trip_and_distortion_size():
    w = quadrant_wcs(150.0, 30.0, 1, 1)
    x = np.array([0.0, 1500.0, 3071.0])
    y = np.array([0.0, 1500.0, 3079.0])
    ra, dec = w.all_pix2world(x, y, 0)
    xb, yb = w.all_world2pix(ra, dec, 0)
    assert np.allclose(xb, x, atol=1e-4) and np.allclose(yb, y, atol=1e-4)
    assert abs(pixel_scale_arcsec(w) - 1.012) < 0.01
    lin = quadrant_wcs(150.0, 30.0, 1, 1, distortion_k=0.0)
    ra0, dec0 = lin.all_pix2world(x, y, 0)
    shift = np.hypot((ra - ra0) * np.cos(np.deg2rad(30)), dec - dec0) * 3600
    # A corner CCD is displaced by arcseconds: astrometry must fit the distortion.
    assert 1.0 < shift.max() < 30.0


def test_small_quadrant_sits_at_centre_of_full_one():
    full = quadrant_wcs(10.0, 20.0, 7, 2)
    small = quadrant_wcs(10.0, 20.0, 7, 2, nx=512, ny=512)
    a = small.all_pix2world([255.5], [255.5], 0)
    b = full.all_pix2world([1535.5], [1539.5], 0)
    assert np.allclose(a, b, atol=1e-9)


def test_moffat_stamps_normalised_and_fwhm():
    st = moffat_stamps(np.zeros(1), np.zeros(1), np.array([4.0]), 3.0, 1.0, 0.0, 41, np.float64)[0]
    assert abs(st.sum() - 1) < 1e-9
    row = st[20]
    above = np.nonzero(row >= row.max() / 2)[0]
    assert 3 <= len(above) <= 5  # FWHM of 4 pixels
    psf = MoffatPSF(3.0)
    s = psf.stamp(10.3, 20.7, 25)
    yy, xx = np.mgrid[:25, :25]
    assert abs((s * xx).sum() - 12.3) < 0.02 and abs((s * yy).sum() - 11.7) < 0.02
    p = PixelPSF(psf.stamp(0, 0, 25), 3.0).stamp(4.25, 0, 25)
    assert abs(p.sum() - 1) < 1e-9 and abs((p * xx).sum() - 12.25) < 0.05


def test_quadrant_image_container():
    qid = QuadrantId(361008958, "20261120089583", 700, Filter.r, 6, 1)
    assert qid.rcid == 20 and qid.pid == 3610089582015
    assert str(qid.product("sciimg.fits")).endswith(
        "ztf_20261120089583_000700_zr_c06_o_q1_sciimg.fits"
    )
    img = QuadrantImage(
        np.ones((10, 12)),
        variance=np.ones((10, 12)),
        id=qid,
        wcs=quadrant_wcs(0, 0, 6, 1, nx=12, ny=10),
    )
    cut = img.cutout(2, 3, 4, 5)
    assert cut.shape == (5, 4) and cut.mask.dtype == np.int16
    assert np.allclose(cut.wcs.wcs.crpix, img.wcs.wcs.crpix - [2, 3])
    c = img.copy()
    c.data[0, 0] = 5
    assert img.data[0, 0] == 1


def _models():
    from zsds.core.psf import MoffatFieldPSF, PolyPixelPSF, poly_terms

    n = len(poly_terms(np.zeros(1), np.zeros(1), 1)[0])
    moffat = MoffatFieldPSF(np.array([[2.0] + [0.1] * (n - 1), [0.05] + [0.0] * (n - 1),
                                      [0.0] * n]), 3.0, 1, 512, 512, 40)
    # A pixel grid holding that Moffat (3x oversampled, radius 6): the same PSF by two models.
    g = (np.arange(-18, 19) / 3.0)
    grid = moffat.render(np.array([256.0]), np.array([256.0]), g[None, :], g[None, :])[0]
    pixgrid = PolyPixelPSF(grid[None].astype(np.float32), 3, 0, 512, 512, 40)
    return {"moffat-field": moffat, "pixel-grid": pixgrid, "moffat": MoffatPSF(2.0),
            "pixel": PixelPSF(moffat.stamp(256.0, 256.0, 25), 2.0)}


def test_every_psf_model_speaks_one_interface():
    """Every model renders through PSFModel: stamps sum to ~1, ``render`` on a stamp grid
    equals ``stamps``, derivatives agree with finite differences of ``render``."""
    from zsds.core.psf import PSFModel

    for name, psf in _models().items():
        assert isinstance(psf, PSFModel), name
        x, y = np.array([100.3, 300.8]), np.array([200.6, 50.1])
        st = psf.stamps(x, y, 15)
        assert st.shape == (2, 15, 15), name
        np.testing.assert_allclose(np.asarray(st).sum(axis=(1, 2)), 1.0, atol=0.02, err_msg=name)
        g = np.arange(15) - 7.0
        ux = g[None, :] - (x - np.round(x))[:, None]
        uy = g[None, :] - (y - np.round(y))[:, None]
        m, dx, dy = psf.render(x, y, ux, uy, True)
        e = 0.02
        fdx = (psf.render(x + e, y, ux - e, uy) - psf.render(x - e, y, ux + e, uy)) / (2 * e)
        fdy = (psf.render(x, y + e, ux, uy - e) - psf.render(x, y - e, ux, uy + e)) / (2 * e)
        peak = float(np.max(m))
        assert np.max(np.abs(dx - fdx)) < 0.03 * peak, name
        assert np.max(np.abs(dy - fdy)) < 0.03 * peak, name
        assert 1.5 < psf.fwhm_at(200.0, 200.0) < 3.5, name


def test_persisted_models_round_trip_through_psf_from_hdu():
    import pytest

    from zsds.core.psf import psf_from_hdu

    for name in ("moffat-field", "pixel-grid"):
        psf = _models()[name]
        back = psf_from_hdu(psf.to_hdu())
        assert type(back) is type(psf)
        np.testing.assert_allclose(back.stamp(100.2, 80.7, 11), psf.stamp(100.2, 80.7, 11),
                                   atol=1e-6)
    from astropy.io import fits

    with pytest.raises(ValueError, match="PSFTYPE"):
        psf_from_hdu(fits.ImageHDU(np.zeros((3, 3)), header=fits.Header({"PSFTYPE": "PSFEX"})))


@pytest.mark.parametrize("fwhm, beta, e1, e2", [(2.2, 3.0, 0.0, 0.0), (1.2, 2.5, 0.1, -0.05),
                                                (6.0, 4.0, -0.3, 0.2), (0.9, 1.8, 0.0, 0.4)])
def test_moffat_pixel_jacobian_matches_finite_differences(fwhm, beta, e1, e2) -> None:
    """The analytic derivatives the PSF fit uses equal central differences of the very
    pixel-integrated profile it fits (and the value equals moffat_pixel's)."""
    from zsds.core.psf import moffat_pixel, moffat_pixel_jacobian

    g = np.arange(-7, 8, dtype=float)
    v, u = np.meshgrid(g, g, indexing="ij")
    u, v = u - 0.3, v + 0.17
    jac = moffat_pixel_jacobian(u, v, fwhm, beta, e1, e2, with_beta=True)
    np.testing.assert_allclose(jac[0], moffat_pixel(u, v, fwhm, beta, e1, e2), rtol=1e-12)
    h = 1e-6
    args = np.array([0.0, 0.0, fwhm, e1, e2, beta])

    def model(p):
        du, dv, fw, a, b, be = p
        return moffat_pixel(u + du, v + dv, fw, be, a, b)

    for k in range(6):
        step = np.zeros(6)
        step[k] = h
        num = (model(args + step) - model(args - step)) / (2 * h)
        got = jac[k + 1] if k < 5 else jac[6]
        np.testing.assert_allclose(got, num, rtol=0, atol=1e-7 * np.abs(num).max(), err_msg=k)
