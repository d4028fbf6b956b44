"""IBE cutouts: pixel and sky centres, size units, clipping, misses; pixels equal the source."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from zsds.archive.cutout import CutoutError, cutout_fits, parse_center, parse_size

NX, NY = 200, 150
SCALE = 1.0 / 3600  # 1 arcsec pixels


def _header() -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [100.5, 75.5]
    w.wcs.cd = [[-SCALE, 0.0], [0.0, SCALE]]
    h = w.to_header()
    h["SEEING"] = (1.9, "arcsec")
    h["FIELDID"] = 645
    return h


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    data = np.arange(NX * NY, dtype=np.float32).reshape(NY, NX)
    path = tmp_path_factory.mktemp("cut") / "img.fits"
    fits.PrimaryHDU(data, _header()).writeto(path)
    return path, data


def _open(raw: bytes) -> fits.PrimaryHDU:
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return fits.open(io.BytesIO(raw))[0]


def test_pixel_centre_values_equal_source(image) -> None:
    path, data = image
    hdu = _open(cutout_fits(path, "51,41px", "11,7px", compress=False))
    # FITS pixel (51, 41) is array [40, 50]; 11 wide (x), 7 high (y)
    np.testing.assert_array_equal(hdu.data, data[37:44, 45:56])
    assert hdu.header["FIELDID"] == 645 and hdu.header["SEEING"] == 1.9
    assert (hdu.header["CUTOUTX0"], hdu.header["CUTOUTY0"]) == (46, 38)


def test_sky_centre_and_wcs_follow_the_cutout(image) -> None:
    path, data = image
    w = WCS(_header())
    ra, dec = w.pixel_to_world_values(120, 60)  # 0-based array position [60, 120]
    hdu = _open(cutout_fits(path, f"{ra},{dec}", "21arcsec"))
    assert hdu.data.shape == (21, 21)
    np.testing.assert_array_equal(hdu.data, data[50:71, 110:131])
    x, y = WCS(hdu.header).world_to_pixel_values(ra, dec)
    assert (round(float(x), 6), round(float(y), 6)) == (10.0, 10.0)
    assert hdu.data[10, 10] == data[60, 120]


@pytest.mark.parametrize("size", ["21arcsec", "0.35arcmin", f"{21 / 3600}", f"{21 / 3600}deg",
                                  f"{np.radians(21 / 3600)}rad", "21px", "21pix", "21pixels"])
def test_size_units_agree(image, size) -> None:
    path, data = image
    hdu = _open(cutout_fits(path, "101,76px", size, compress=False))
    np.testing.assert_array_equal(hdu.data, data[65:86, 90:111])


def test_centre_units(image) -> None:
    path, _ = image
    a = _open(cutout_fits(path, "150.001,2.0002", "9px", compress=False)).data
    b = _open(cutout_fits(path, "150.001,2.0002deg", "9px", compress=False)).data
    c = _open(cutout_fits(path, f"{np.radians(150.001)},{np.radians(2.0002)}rad", "9px",
                          compress=False)).data
    d = _open(cutout_fits(path, f"{150.001 * 60},{2.0002 * 60}arcmin", "9px",
                          compress=False)).data
    for other in (b, c, d):
        np.testing.assert_array_equal(a, other)


def test_rectangle_and_partial_overlap_is_clipped(image) -> None:
    path, data = image
    hdu = _open(cutout_fits(path, "3,2px", "10,6px", compress=False))
    # requested x 1-based -2..7 and y -1..4: clipped to the image
    np.testing.assert_array_equal(hdu.data, data[0:4, 0:7])
    hdu = _open(cutout_fits(path, f"{NX},{NY}px", "5px", compress=False))
    np.testing.assert_array_equal(hdu.data, data[NY - 3:, NX - 3:])


def test_gzip_default_and_plain(image) -> None:
    path, _ = image
    zipped = cutout_fits(path, "50,50px", "5px")
    plain = cutout_fits(path, "50,50px", "5px", compress=False)
    assert zipped[:2] == b"\x1f\x8b" and gzip.decompress(zipped) == plain
    assert plain.startswith(b"SIMPLE  =")


def test_miss_is_an_error(image) -> None:
    path, _ = image
    with pytest.raises(CutoutError, match="does not overlap"):
        cutout_fits(path, "500,500px", "10px")
    with pytest.raises(CutoutError, match="does not overlap"):
        cutout_fits(path, "150.5,2", "0.01")  # 0.5 deg away from a 200" image
    with pytest.raises(CutoutError, match="does not overlap"):
        cutout_fits(path, "330,-2", "0.01")  # the other side of the sky


def test_compressed_image(tmp_path, image) -> None:
    _, data = image
    path = tmp_path / "img.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, _header(),
                                                       quantize_level=0.0)]).writeto(path)
    hdu = _open(cutout_fits(path, "51,41px", "11,7px"))
    np.testing.assert_allclose(hdu.data, data[37:44, 45:56])


@pytest.mark.parametrize(("center", "size", "msg"), [
    ("1,2,3", "1", "two values"),
    ("1", "1", "two values"),
    ("a,b", "1", "not a number"),
    ("10,95", "1", "declination"),
    ("1,2furlong", "1", "unknown unit"),
    ("1px,2deg", "1", "mixed units"),
    ("1,2", "-1", "positive"),
    ("1,2", "0,1px", "positive"),
    ("1,2", "nan", "not a number"),
])
def test_bad_parameters(image, center, size, msg) -> None:
    path, _ = image
    with pytest.raises(CutoutError, match=msg):
        cutout_fits(path, center, size)


def test_parsers() -> None:
    c = parse_center("300.5,120px")
    assert (c.x, c.y, c.pixel) == (300.5, 120.0, True)
    s = parse_size("0.1")
    assert (s.x, s.y, s.pixel, str(s.unit)) == (0.1, 0.1, False, "deg")
    s = parse_size("2,5arcmin")
    assert (s.x, s.y, str(s.unit)) == (2.0, 5.0, "arcmin")


def test_image_without_wcs_needs_pixels(tmp_path) -> None:
    path = tmp_path / "nowcs.fits"
    fits.PrimaryHDU(np.ones((10, 10), dtype=np.float32)).writeto(path)
    assert _open(cutout_fits(path, "5,5px", "3px")).data.shape == (3, 3)
    with pytest.raises(CutoutError, match="no celestial WCS"):
        cutout_fits(path, "5,5", "3px")


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint16, np.float64])
def test_distorted_and_alternate_wcs_follow_the_cutout(tmp_path, dtype) -> None:
    """SIP distortion and an alternate WCS survive the cutout: every pixel of the cutout
    maps to the sky as the same pixel of the source does; pixel types astropy writes with
    BZERO (uint16) come back as they were."""
    h = _header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    h["A_ORDER"], h["B_ORDER"] = 2, 2
    h["A_2_0"], h["B_0_2"], h["A_1_1"] = 2e-5, -3e-5, 1e-5
    h["WCSNAMEA"], h["CTYPE1A"], h["CTYPE2A"] = "PHYSICAL", "LINEAR", "LINEAR"
    h["CRPIX1A"], h["CRPIX2A"], h["CRVAL1A"], h["CRVAL2A"] = 1.0, 1.0, 1000.0, 2000.0
    data = (np.arange(NX * NY) % 30000).astype(dtype).reshape(NY, NX)
    path = tmp_path / "sip.fits"
    fits.PrimaryHDU(data, h).writeto(path)
    hdu = _open(cutout_fits(path, "150,60px", "41,31px"))
    x0, y0 = hdu.header["CUTOUTX0"] - 1, hdu.header["CUTOUTY0"] - 1
    np.testing.assert_array_equal(hdu.data, data[y0:y0 + 31, x0:x0 + 41])
    assert hdu.data.dtype == np.dtype(dtype).newbyteorder(">") or hdu.data.dtype == dtype
    src, cut = WCS(h), WCS(hdu.header)
    assert cut.sip is not None
    xs, ys = np.meshgrid(np.arange(0, 41, 8.0), np.arange(0, 31, 6.0))
    np.testing.assert_allclose(np.array(cut.pixel_to_world_values(xs, ys)),
                               np.array(src.pixel_to_world_values(xs + x0, ys + y0)),
                               rtol=0, atol=1e-10)
    alt_src, alt_cut = WCS(h, key="A"), WCS(hdu.header, key="A")
    np.testing.assert_allclose(alt_cut.pixel_to_world_values(xs, ys),
                               alt_src.pixel_to_world_values(xs + x0, ys + y0), atol=1e-9)
