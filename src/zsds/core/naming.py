"""ZTF identifiers, product file names and the IRSA archive layout, in one place.

Identifiers follow the real ZTF conventions as read off real alert packets
(``ZTF_REFERENCE.md`` 1.4-1.5):

* ``nid`` -- night id, UT date minus 2017-01-01 in days;
* ``filefracday`` -- ``YYYYMMDDffffff``, the UT date plus the fraction of the UT day x 1e6;
* ``expid`` -- ``nid * 1e5 + int(day fraction * 1e5)``;
* ``pid`` -- ``expid * 1e4 + rcid * 100 + 15`` (processed-image id of one quadrant);
* ``candid`` -- ``pid * 1e6 + k``.

Paths are relative to a zsds home (:class:`zsds.core.home.Home`): ``raw/``, ``products/sci``,
``products/ref``, ``products/cal`` mirror the IRSA ``ibe`` data layout.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from astropy.time import Time

from zsds.core.instrument import Filter, check_ccd_quad, rcid_of

NID_EPOCH = dt.date(2017, 1, 1)

#: Image-type letters of raw files.
IMGTYPE = {"science": "o", "bias": "b", "dark": "d", "flat": "f", "focus": "c", "guider": "g"}
#: Filter code used in bias/dark file names.
BIAS_CODE = "bi"


def parse_night(night: str | dt.date) -> dt.date:
    """Parse a UT night ``YYYY-MM-DD`` (or ``YYYYMMDD``); raise ValueError with a clear message."""
    if isinstance(night, dt.date):
        return night
    text = str(night).strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"invalid night {night!r}: expected a UT date as YYYY-MM-DD")


def nid_of(night: str | dt.date) -> int:
    """Night id: days since 2017-01-01 (UT)."""
    return (parse_night(night) - NID_EPOCH).days


def night_of_mjd(mjd: float) -> dt.date:
    """UT date containing an MJD (Palomar nights fall within one UT date)."""
    return Time(mjd, format="mjd", scale="utc").to_datetime().date()


def day_fraction(mjd: float) -> float:
    """Fraction of the UT day."""
    return float(mjd - int(mjd // 1))


def filefracday(mjd: float) -> str:
    """``YYYYMMDDffffff`` for an exposure starting at ``mjd`` (UTC)."""
    date = night_of_mjd(mjd)
    return f"{date:%Y%m%d}{int(day_fraction(mjd) * 1e6):06d}"


def expid_of(mjd: float) -> int:
    """Exposure id from the exposure start time (UTC MJD)."""
    return nid_of(night_of_mjd(mjd)) * 100_000 + int(day_fraction(mjd) * 1e5)


def pid_of(expid: int, ccdid: int, qid: int) -> int:
    """Processed-image id of one quadrant of an exposure."""
    return int(expid) * 10_000 + rcid_of(ccdid, qid) * 100 + 15


def mjd_to_jd(mjd: float) -> float:
    return mjd + 2400000.5


@dataclass(frozen=True)
class RawName:
    """The parts of a raw file name ``ztf_<filefracday>_<field>_<fc>_c<CC>_<t>.fits.fz``."""

    filefracday: str
    field: int
    filtercode: str
    ccdid: int
    imgtypecode: str

    @property
    def filename(self) -> str:
        return (
            f"ztf_{self.filefracday}_{self.field:06d}_{self.filtercode}_c{self.ccdid:02d}_"
            f"{self.imgtypecode}.fits.fz"
        )

    @property
    def relpath(self) -> PurePosixPath:
        """Path under the home: ``raw/YYYY/MMDD/ffffff/<filename>``."""
        f = self.filefracday
        return PurePosixPath("raw", f[:4], f[4:8], f[8:], self.filename)


_RAW_RE = re.compile(
    r"^ztf_(?P<ffd>\d{14})_(?P<field>\d{6})_(?P<fc>z[gri]|bi|dk)_c(?P<ccd>\d{2})_(?P<t>[obdfcg])"
    r"\.fits(\.fz)?$"
)


def parse_raw_name(filename: str) -> RawName:
    """Parse a raw file name; raise ValueError naming the file if it does not follow ZTF rules."""
    m = _RAW_RE.match(PurePosixPath(filename).name)
    if not m:
        raise ValueError(f"{filename}: not a ZTF raw file name (ztf_<filefracday>_<field>_...)")
    ccd = int(m["ccd"])
    check_ccd_quad(ccd)
    return RawName(m["ffd"], int(m["field"]), m["fc"], ccd, m["t"])


def raw_name(mjd: float, field: int, filtercode: str, ccdid: int, imgtype: str) -> RawName:
    """Raw name of a CCD file of an exposure starting at ``mjd``."""
    return RawName(filefracday(mjd), int(field), filtercode, int(ccdid), IMGTYPE[imgtype])


def sci_product(
    ffd: str, field: int, filt: Filter | str, ccdid: int, qid: int, suffix: str
) -> PurePosixPath:
    """Science product path ``products/sci/YYYY/MMDD/ffffff/ztf_..._c<CC>_o_q<Q>_<suffix>``."""
    check_ccd_quad(ccdid, qid)
    fc = Filter.parse(filt).code
    name = f"ztf_{ffd}_{field:06d}_{fc}_c{ccdid:02d}_o_q{qid}_{suffix}"
    return PurePosixPath("products", "sci", ffd[:4], ffd[4:8], ffd[8:], name)


def ref_product(field: int, filt: Filter | str, ccdid: int, qid: int, suffix: str) -> PurePosixPath:
    """Reference product path ``products/ref/<fff>/field<FFFFFF>/<fc>/ccd<CC>/q<Q>/...``."""
    check_ccd_quad(ccdid, qid)
    fc = Filter.parse(filt).code
    name = f"ztf_{field:06d}_{fc}_c{ccdid:02d}_q{qid}_{suffix}"
    return PurePosixPath(
        "products",
        "ref",
        f"{field // 1000:03d}",
        f"field{field:06d}",
        fc,
        f"ccd{ccdid:02d}",
        f"q{qid}",
        name,
    )


def cal_product(
    night: str | dt.date, kind: str, filtercode: str, ccdid: int, qid: int, suffix: str
) -> PurePosixPath:
    """Calibration product ``products/cal/YYYY/MMDD/<kind>/<fc>/ccdCC/qQ/ztf_YYYYMMDD_...``.

    ``kind`` is ``bias`` or ``hifreqflat``; ``suffix`` e.g. ``bias.fits``, ``biasunc.fits``.
    """
    check_ccd_quad(ccdid, qid)
    if kind not in ("bias", "hifreqflat"):
        raise ValueError(f"unknown calibration kind {kind!r}")
    date = parse_night(night)
    name = f"ztf_{date:%Y%m%d}_{filtercode}_c{ccdid:02d}_q{qid}_{suffix}"
    return PurePosixPath(
        "products",
        "cal",
        f"{date:%Y}",
        f"{date:%m%d}",
        kind,
        filtercode,
        f"ccd{ccdid:02d}",
        f"q{qid}",
        name,
    )


def static_cal_product(
    kind: str, filtercode: str, ccdid: int, qid: int, suffix: str
) -> PurePosixPath:
    """Static calibration product (no night), e.g. the low-frequency flat:
    ``products/cal/static/<kind>/<fc>/ccdCC/qQ/ztf_<fc>_cCC_qQ_<suffix>``."""
    check_ccd_quad(ccdid, qid)
    name = f"ztf_{filtercode}_c{ccdid:02d}_q{qid}_{suffix}"
    return PurePosixPath(
        "products", "cal", "static", kind, filtercode, f"ccd{ccdid:02d}", f"q{qid}", name
    )
