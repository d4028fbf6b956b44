import datetime as dt

import pytest

from zsds.core.instrument import Filter, ccd_quad_of, rcid_of
from zsds.core.naming import (
    cal_product,
    expid_of,
    filefracday,
    nid_of,
    parse_night,
    parse_raw_name,
    pid_of,
    raw_name,
    ref_product,
    sci_product,
)


def test_nid_and_ids_match_real_alert_conventions():
    # Real alert 2019_01_10_739260766315010006: pid 739260766315 -> expid 73926076, rcid 63.
    assert nid_of("2019-01-10") == 739
    assert pid_of(73926076, *ccd_quad_of(63)) == 739260766315
    assert rcid_of(16, 4) == 63 and rcid_of(1, 1) == 0


def test_expid_and_filefracday_from_mjd():
    mjd = 58493.0 + 0.2607663  # 2019-01-10 06:15:30 UT
    assert filefracday(mjd) == "20190110260766"
    assert expid_of(mjd) == 739 * 100_000 + 26076


def test_raw_name_round_trip():
    name = raw_name(58493.2607663, 658, "zr", 7, "science")
    assert name.filename == "ztf_20190110260766_000658_zr_c07_o.fits.fz"
    assert str(name.relpath) == "raw/2019/0110/260766/ztf_20190110260766_000658_zr_c07_o.fits.fz"
    assert parse_raw_name(name.filename) == name


@pytest.mark.parametrize(
    "bad",
    [
        "foo.fits",
        "ztf_2019011026076_000658_zr_c07_o.fits.fz",
        "ztf_20190110260766_000658_zr_c17_o.fits",
    ],
)
def test_bad_raw_names_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_raw_name(bad)


def test_product_paths_follow_irsa_layout():
    sci = sci_product("20190110260766", 658, Filter.r, 7, 3, "sciimg.fits")
    assert str(sci) == (
        "products/sci/2019/0110/260766/ztf_20190110260766_000658_zr_c07_o_q3_sciimg.fits"
    )
    ref = ref_product(658, "g", 7, 3, "refimg.fits")
    assert str(ref) == "products/ref/000/field000658/zg/ccd07/q3/ztf_000658_zg_c07_q3_refimg.fits"
    cal = cal_product("2019-01-10", "bias", "bi", 7, 3, "bias.fits")
    assert str(cal) == "products/cal/2019/0110/bias/bi/ccd07/q3/ztf_20190110_bi_c07_q3_bias.fits"


def test_parse_night_errors_are_clear():
    assert parse_night("2026-11-20") == dt.date(2026, 11, 20)
    with pytest.raises(ValueError, match="invalid night"):
        parse_night("2026-13-40")
