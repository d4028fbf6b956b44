"""A raw file with the real camera layout and keywords, written here by hand (not by zsds's
simulator), is ingested, filed in the IRSA layout and split into four sky-oriented quadrants."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import select

from zsds.core import nonlinearity
from zsds.core.home import Home
from zsds.core.rawformat import RawFormatError
from zsds.db import Exposure, RawFile, init_db, session
from zsds.ingest import ingest_file
from zsds.split import read_raw_ccd, split_quadrant

NAME = "ztf_20200924431759_000655_zr_c13_o.fits.fz"
NY, NX = 48, 64  # not square, so that a transposition cannot pass
BIAS = 500


def sky_pattern(qid: int) -> np.ndarray:
    """A distinct value for every pixel of a quadrant, in sky orientation (DN above bias)."""
    y, x = np.mgrid[0:NY, 0:NX]
    return 1000.0 * qid + 3.0 * x + 40.0 * y


# How the camera reads each quadrant out: from the outer corner of the CCD (q2|q1 over q3|q4).
# Written out here rather than taken from zsds.core.instrument, so that the test pins it down.
READOUT = {
    1: lambda a: a[::-1, ::-1],
    2: lambda a: a[::-1, :],
    3: lambda a: a,
    4: lambda a: a[:, ::-1],
}


def primary_header() -> fits.Header:
    """Primary keywords as in a real raw file (values of the real CCD 13 exposure at hand)."""
    h = fits.Header()
    cards = [
        ("ORIGIN", "Zwicky Transient Facility"), ("OBSERVER", "ZTF Robotic Observing Software"),
        ("INSTRUME", "ZTF/MOSAIC"), ("IMGTYPE", "object"), ("EXPOSURE", 30.0),
        ("EXPTIME", 30.0), ("CCDSUM", "1 1"), ("PIXSCALE", 1.012),
        ("FILENAME", NAME.removesuffix(".fz")), ("FIELDID", 655), ("OBJRA", "+03h40m14.59s"),
        ("OBJDEC", "+33d21m00s"), ("MOONILLF", 0.540086), ("PROGRMID", 1), ("FILTERID", 2),
        ("FILTER", "ZTF_r"), ("FILTPOS", 2), ("OBSJD", 2459116.9317708),
        ("OBSMJD", 59116.4317708), ("RA", "+03:40:14.59"), ("DEC", "+33:21:00"),
        ("RAD", 55.0608), ("DECD", 33.35), ("TELRA", "+03:40:14.59"), ("TELDEC", "+33:20:59.9"),
        ("AZIMUTH", 85.88), ("ELVATION", 79.13), ("AIRMASS", 1.018),
        ("OBSERVAT", "Palomar Observatory"), ("TELESCOP", "Palomar 48-inch"),
        ("OBSLON", -116.8598), ("OBSLAT", 33.3573), ("OBSALT", 1668.0),
        ("SHUTOPEN", "2020-09-24T10:21:45.646"), ("SHUTCLSD", "2020-09-24T10:22:15.610"),
        ("NFRAMES", 8),
    ]  # fmt: skip
    for key, value in cards:
        h[key] = value
    return h


def write_real_layout(path, drop_overscan: bool = False) -> None:
    """fpacked MEF: header-only primary, quadrant images at HDU 1-4, overscans at 5-8.

    No EXPID, DATE-OBS, QID, RCID or SATURATE (real raw files have none); the image extensions
    are named by index as in real files and the overscans carry no EXTNAME at all.
    """
    hdus = [fits.PrimaryHDU(header=primary_header())]
    for qid in (1, 2, 3, 4):
        h = fits.Header()
        for key, value in (("HDUVERS", 1), ("CCD_ID", 13), ("CCDNAME", "S13"),
                           ("AMP_ID", qid - 1), ("AMP_NAME", "HGFE"[qid - 1]), ("GAIN", 6.0),
                           ("READNOI", 9.0), ("DARKCUR", 1.0)):  # fmt: skip
            h[key] = value
        raw = READOUT[qid](sky_pattern(qid)) + BIAS
        hdus.append(fits.CompImageHDU(raw.astype(np.uint16), header=h, name=str(qid),
                                      compression_type="RICE_1"))  # fmt: skip
    if not drop_overscan:
        for _ in range(4):
            ovs = np.full((NY, 30), BIAS, np.uint16)
            hdus.append(fits.CompImageHDU(ovs, compression_type="RICE_1"))
    fits.HDUList(hdus).writeto(path)


def test_real_layout_ingests_and_splits(tmp_path, engine):
    home = Home(tmp_path / "home").ensure()
    path = home.incoming / NAME
    write_real_layout(path)
    with fits.open(path) as hdul:  # really fpacked: compressed HDUs behind the primary
        assert [type(h).__name__ for h in hdul] == ["PrimaryHDU"] + ["CompImageHDU"] * 8
    with fits.open(path, disable_image_compression=True) as hdul:
        assert all(h.header["ZCMPTYPE"] == "RICE_1" for h in hdul[1:])

    init_db(engine)
    r = ingest_file(home, engine, path)
    assert r.status == "ingested", r.message
    assert r.path == home.path(f"raw/2020/0924/431759/{NAME}") and r.path.exists()
    with session(engine) as s:
        exp = s.scalars(select(Exposure)).one()
        # EXPID is derived from the name (nid 1362, day fraction 0.43175); IPAC's is 136243177
        assert exp.expid == 136243175 and exp.nid == 1362 and exp.field == 655
        assert exp.fid == 2 and exp.programid == 1 and exp.imgtype == "object"
        assert exp.mjd == pytest.approx(59116.4317708)
        assert (exp.ra, exp.dec) == pytest.approx((55.06079, 33.34997), abs=1e-4)  # TELRA/DEC
        assert s.scalars(select(RawFile)).one().ccdid == 13

    raw = read_raw_ccd(r.path)
    a_b = nonlinearity.load_table("202004")  # 2020-09-24 is after 2020-04-28
    for qid in (1, 2, 3, 4):
        img = split_quadrant(raw, qid)
        a, b = a_b.coefficients(13, qid - 1)
        expect = sky_pattern(qid) / (a * sky_pattern(qid) ** 2 + b * sky_pattern(qid) + 1)
        assert img.data.shape == (NY, NX)
        np.testing.assert_allclose(img.data, expect, rtol=1e-6, atol=1e-3)
        h = img.header
        assert (h["CCD_ID"], h["QID"], h["RCID"], h["EXPID"]) == (13, qid, 48 + qid - 1, 136243175)
        assert h["NLTABLE"] == "202004" and h["OVSLEVEL"] == BIAS
        assert "SATURATE" in h and "EXTNAME" not in h and "DATE-OBS" not in h


def test_real_layout_missing_extension_is_quarantined(tmp_path, engine):
    home = Home(tmp_path / "home").ensure()
    path = home.incoming / NAME
    write_real_layout(path, drop_overscan=True)
    init_db(engine)
    r = ingest_file(home, engine, path)
    assert (r.status, r.reason) == ("quarantined", "bad_structure")
    assert r.message.startswith(NAME) and "expected 9 HDUs" in r.message and "found 5" in r.message
    with pytest.raises(RawFormatError, match=rf"^{NAME}: expected 9 HDUs"):
        read_raw_ccd(r.path)
