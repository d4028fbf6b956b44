"""Recognition of IPAC ZTF products as IRSA serves them (and ztfquery downloads them).

A file is an IPAC product only when its **name and content agree**: the name says which product
it is (``ztf_<filefracday>_<FFFFFF>_<fc>_c<CC>_o_q<Q>_<suffix>`` for science products,
``ztf_<FFFFFF>_<fc>_c<CC>_q<Q>_<suffix>`` for references), the HDU layout says what the file
holds (a float image with photometric keywords, an integer bit mask, a PSF-fit or SExtractor
table, a tile-compressed image, ...), and the two must name the same product; then the keywords
the product needs are checked and compared with the name (field, filter, CCD, quadrant, time).
:func:`recognise` does all of it and returns an :class:`IpacProduct`, or raises
:class:`ProductError` with a machine-readable reason and a one-line message.

Real keywords, read as IPAC writes them (the real ``sciimg`` fetched by
:func:`zsds.core.realdata.fetch_real_data` is the model): time is ``OBSJD``/``OBSMJD`` (there is
no ``DATE-OBS``); ``SEEING`` is in **pixels** (its comment says so; zsds's own products write
arcsec, :func:`seeing_arcsec` tells them apart); the WCS is TPV (``RA---TPV`` with ``PVi_j``
cards), read through astropy.wcs; ``MAGZP``/``CLRCOEFF``/``APCORn`` are IPAC's photometric
calibration; ``TELRA``/``TELDEC`` are sexagesimal; the CCD is ``CCDID`` (science image) or
``CCD_ID`` (mask, raw); the mask bits are IPAC's (:class:`zsds.core.masks.MaskBit`).

Nothing here touches a zsds home or the database: :mod:`zsds.ingest.importing` files what this
module recognised.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, FITSFixedWarning

from zsds.core.instrument import PIXEL_SCALE, Filter, check_ccd_quad, rcid_of
from zsds.core.naming import night_of_mjd, parse_night, ref_product, sci_product
from zsds.core.rawformat import obs_mjd

__all__ = [
    "NOT_IMPORTED",
    "PRODUCT_KINDS",
    "IpacProduct",
    "ProductError",
    "ProductName",
    "header_ccd",
    "header_float",
    "parse_product_name",
    "recognise",
    "seeing_arcsec",
]

FITS_BLOCK = 2880

#: Science-product suffixes zsds imports, and the ``quadrant_products.kind`` they get.
SCI_SUFFIXES = {
    "sciimg.fits": "sciimg",
    "mskimg.fits": "mskimg",
    "psfcat.fits": "psfcat",
    "sexcat.fits": "sexcat",
    "scimrefdiffimg.fits.fz": "scimrefdiffimg",
    "diffimgpsf.fits": "diffimgpsf",
}
#: Reference-product suffixes zsds imports.
REF_SUFFIXES = {
    "refimg.fits": "refimg",
    "refunc.fits": "refunc",
    "refcov.fits": "refcov",
    "refpsfcat.fits": "refpsfcat",
    "refsexcat.fits": "refsexcat",
}
#: What each imported product is (used in messages).
PRODUCT_KINDS = {
    "sciimg": "science image",
    "mskimg": "bit mask",
    "psfcat": "PSF-fit catalogue",
    "sexcat": "SExtractor catalogue",
    "scimrefdiffimg": "difference image (tile-compressed)",
    "diffimgpsf": "difference-image PSF (for forced photometry)",
    "refimg": "reference image",
    "refunc": "reference uncertainty image",
    "refcov": "reference depth-of-coverage image",
    "refpsfcat": "reference PSF-fit catalogue",
    "refsexcat": "reference SExtractor catalogue",
}
#: IPAC products recognised by name that zsds does not import, and why.
NOT_IMPORTED = {
    "sciimgdao.psf": "DAOPhot lookup-table PSF (zsds fits its own PSF model)",
    "sciimgdaopsfcent.fits": "DAOPhot PSF at the image centre (zsds fits its own PSF model)",
    "sciimlog.txt": "a processing log",
    "diffimlog.txt": "a processing log",
    "log.txt": "a processing log",
    "refimlog.txt": "a processing log",
}

_SCI_RE = re.compile(
    r"^ztf_(?P<ffd>\d{14})_(?P<field>\d{6})_(?P<fc>z[gri])_c(?P<ccd>\d{2})_o_q(?P<q>[1-4])_"
    r"(?P<suffix>[a-z]+\.(?:fits\.fz|fits|psf|txt))$")
_REF_RE = re.compile(
    r"^ztf_(?P<field>\d{6})_(?P<fc>z[gri])_c(?P<ccd>\d{2})_q(?P<q>[1-4])_"
    r"(?P<suffix>[a-z]+\.(?:fits|txt))$")

#: Columns of IPAC's PSF-fit catalogues (psfcat, refpsfcat; zsds writes the same).
PSFCAT_COLUMNS = ("sourceid", "xpos", "ypos", "ra", "dec", "flux", "sigflux", "mag", "sigmag",
                  "snr", "chi", "sharp", "flags")
#: Columns every SExtractor catalogue has (sexcat, refsexcat), and its sky position pairs.
SEXCAT_COLUMNS = ("NUMBER", "X_IMAGE", "Y_IMAGE")
SEXCAT_RADEC = (("ALPHAWIN_J2000", "DELTAWIN_J2000"), ("ALPHA_J2000", "DELTA_J2000"))

#: Keywords each image product must carry (``CCD`` is ``CCDID`` or ``CCD_ID``).
REQUIRED_KEYS = {
    "sciimg": ("FIELDID", "FILTERID", "CCD", "QID", "OBSJD", "EXPTIME", "GAIN", "READNOI",
               "SATURATE", "SEEING", "MAGZP"),
    "refimg": ("FIELDID", "FILTERID", "CCD", "QID", "MAGZP"),
}
#: Products that must carry a celestial WCS.
NEEDS_WCS = ("sciimg", "refimg", "scimrefdiffimg")
#: Largest time between the file name's filefracday and OBSJD (days): one exposure's worth.
#: (Real files: the name is the exposure request, ~1 s before OBSJD; two exposures are >= 38 s
#: apart.)
MAX_TIME_OFFSET = 3e-4


class ProductError(Exception):
    """A file is not an importable IPAC product.

    Parameters
    ----------
    reason : str
        Machine code: ``bad_name``, ``unsupported``, ``truncated``, ``bad_checksum``,
        ``bad_structure``, ``mismatch`` (the name and the content name different products),
        ``missing_keyword``, ``bad_value``, ``no_exposure``, ``no_reference``, ``conflict``.
    message : str
        One line describing the problem (without the file name).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ProductName:
    """The parts of an IPAC product name.

    Attributes
    ----------
    kind : str
        ``sciimg``, ``mskimg``, ..., ``refimg``, ... (:data:`PRODUCT_KINDS`).
    suffix : str
        The name's suffix (``sciimg.fits``, ``scimrefdiffimg.fits.fz``, ...).
    field : int
    filt : Filter
    ccdid, qid : int
    filefracday : str or None
        ``YYYYMMDDffffff`` of a science product; None for reference products.
    """

    kind: str
    suffix: str
    field: int
    filt: Filter
    ccdid: int
    qid: int
    filefracday: str | None = None

    @property
    def is_reference(self) -> bool:
        return self.filefracday is None

    @property
    def filename(self) -> str:
        return self.relpath().name

    def relpath(self) -> PurePosixPath:
        """IRSA path under the home (reference products without a version folder)."""
        if self.filefracday is None:
            return ref_product(self.field, self.filt, self.ccdid, self.qid, self.suffix)
        return sci_product(self.filefracday, self.field, self.filt, self.ccdid, self.qid,
                           self.suffix)


def parse_product_name(filename: str) -> ProductName:
    """Parse an IPAC science or reference product name.

    Raises
    ------
    ProductError
        ``bad_name`` when the name is not an IPAC product name, ``unsupported`` for an IPAC
        product zsds does not import (:data:`NOT_IMPORTED`).
    """
    name = PurePosixPath(filename).name
    for regex, table in ((_SCI_RE, SCI_SUFFIXES), (_REF_RE, REF_SUFFIXES)):
        m = regex.match(name)
        if m is None:
            continue
        suffix = m["suffix"]
        if suffix in NOT_IMPORTED:
            raise ProductError("unsupported", f"IPAC {suffix} is {NOT_IMPORTED[suffix]}; "
                                              "zsds does not import it")
        if suffix not in table:
            raise ProductError("bad_name", f"unknown IPAC product suffix {suffix!r}; zsds "
                                           f"imports {', '.join(table)}")
        ccd, qid = int(m["ccd"]), int(m["q"])
        try:
            check_ccd_quad(ccd, qid)
        except ValueError as exc:
            raise ProductError("bad_name", str(exc)) from None
        ffd = m.groupdict().get("ffd")
        if ffd is not None:
            try:
                parse_night(ffd[:8])
            except ValueError:
                raise ProductError("bad_name", f"{ffd[:8]} is not a date") from None
        return ProductName(table[suffix], suffix, int(m["field"]), Filter.parse(m["fc"]), ccd,
                           qid, ffd)
    raise ProductError("bad_name", "not an IPAC product name (ztf_<filefracday>_<field>_<fc>_"
                                   "c<CC>_o_q<Q>_<suffix> or ztf_<field>_<fc>_c<CC>_q<Q>_"
                                   "<suffix>) nor a raw file name")


# ------------------------------------------------------------------------------ keywords


def header_float(h: fits.Header, key: str) -> float | None:
    """A keyword as a finite float, or None (absent, not a number, NaN or IPAC's -999)."""
    v = h.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float | np.number):
        return None
    f = float(v)
    return f if np.isfinite(f) and f != -999.0 else None


def header_ccd(h: fits.Header) -> int | None:
    """CCD id: ``CCDID`` (IPAC science images) or ``CCD_ID`` (masks, raw files, zsds)."""
    for key in ("CCDID", "CCD_ID"):
        if key in h:
            return int(h[key])
    return None


def seeing_arcsec(h: fits.Header) -> float | None:
    """``SEEING`` in arcsec, whatever unit the header uses.

    IPAC writes the FWHM in pixels (comment ``seeing FWHM [pixels]``); zsds's own products in
    arcsec. A comment naming pixels converts with ``PIXSCALE`` (1.012"/px when absent).
    """
    v = header_float(h, "SEEING")
    if v is None or v <= 0:
        return None
    if "pix" in h.comments["SEEING"].lower():
        return v * (header_float(h, "PIXSCALE") or PIXEL_SCALE)
    return v


# ------------------------------------------------------------------------------ content


@dataclass(frozen=True)
class IpacProduct:
    """A recognised IPAC product.

    Attributes
    ----------
    name : ProductName
    header : astropy.io.fits.Header
        The header holding the product's keywords (the primary's; the image extension's for
        a compressed difference image; the primary's for catalogues).
    shape : (ny, nx) or None
        Image shape; None for catalogues.
    nrows : int or None
        Catalogue rows; None for images.
    """

    name: ProductName
    header: fits.Header
    shape: tuple[int, int] | None = None
    nrows: int | None = None

    @property
    def kind(self) -> str:
        return self.name.kind


#: What :func:`_content_kind` may call a file, in words.
_CONTENT = {
    "raw": "a raw CCD file (primary header and eight image extensions)",
    "sciimg": "a float image with a photometric calibration and an exposure id (a science "
              "image)",
    "refimg": "a float image with a photometric calibration and no exposure id (a reference "
              "image)",
    "image": "a float image without a photometric calibration",
    "mskimg": "an integer image with mask-bit definitions or an exposure time (a bit mask)",
    "coverage": "an integer image without mask-bit definitions or exposure time",
    "scimrefdiffimg": "a tile-compressed float image",
    "psfcat": "a PSF-fit catalogue",
    "sexcat": "a SExtractor catalogue",
    "table": "a table that is neither a PSF-fit nor a SExtractor catalogue",
    None: "no image or table zsds knows",
}
#: The contents each named product may have.
_ACCEPTS = {
    "sciimg": ("sciimg",),
    "mskimg": ("mskimg",),
    "refimg": ("refimg",),
    "refunc": ("image", "refimg"),  # an uncertainty image may copy the image's keywords
    "refcov": ("coverage", "image"),
    "psfcat": ("psfcat",),
    "refpsfcat": ("psfcat",),
    "sexcat": ("sexcat",),
    "refsexcat": ("sexcat",),
    "scimrefdiffimg": ("scimrefdiffimg",),
    "diffimgpsf": ("image",),
}


def _has_mask_bits(h: fits.Header) -> bool:
    """Mask-bit definitions: IPAC's ``BIT00``/``BIT07`` comments of mask bits (not INFOBITS'),
    or zsds's ``MBIT_nn``."""
    if "MBIT_00" in h:
        return True
    c0 = h.comments["BIT00"].upper() if "BIT00" in h else ""
    c7 = h.comments["BIT07"].upper() if "BIT07" in h else ""
    return "TRACK" in c0 or "SPIKE" in c7


def _table_hdu(hdul: fits.HDUList) -> fits.BinTableHDU | None:
    """The catalogue's table: HDU 1, or HDU 2 behind a FITS-LDAC ``LDAC_IMHEAD``."""
    for k in (1, 2):
        if len(hdul) > k and isinstance(hdul[k], fits.BinTableHDU):
            if hdul[k].name == "LDAC_IMHEAD":
                continue
            return hdul[k]
    return None


def _columns(t: fits.BinTableHDU) -> dict[str, str]:
    """Upper-case column name -> its name in the file."""
    return {c.upper(): c for c in t.columns.names}


def _content_kind(hdul: fits.HDUList) -> str | None:
    """What a file holds, from its HDU layout and keywords alone (one of :data:`_CONTENT`)."""
    h0 = hdul[0].header
    if len(hdul) == 9 and h0.get("NAXIS", 0) == 0 and all(
            isinstance(h, fits.ImageHDU | fits.CompImageHDU) for h in hdul[1:]):
        return "raw"
    if h0.get("NAXIS", 0) == 2:
        if h0.get("BITPIX", 0) > 0:  # a mask documents its bits or belongs to an exposure
            return "mskimg" if _has_mask_bits(h0) or "OBSJD" in h0 else "coverage"
        if "MAGZP" in h0:
            single = any(k in h0 for k in ("EXPID", "DBPID", "DBEXPID"))
            return "sciimg" if single else "refimg"
        return "image"
    if (len(hdul) == 2 and h0.get("NAXIS", 0) == 0 and isinstance(hdul[1], fits.CompImageHDU)
            and hdul[1].header.get("NAXIS", 0) == 2 and hdul[1].header.get("BITPIX", 0) < 0):
        return "scimrefdiffimg"
    t = _table_hdu(hdul)
    if t is not None:
        cols = _columns(t)
        if all(c.upper() in cols for c in PSFCAT_COLUMNS):
            return "psfcat"
        if all(c in cols for c in SEXCAT_COLUMNS):
            return "sexcat"
        return "table"
    return None


def _require(h: fits.Header, keys: tuple[str, ...], where: str) -> None:
    missing = [k if k != "CCD" else "CCDID (or CCD_ID)" for k in keys
               if (header_ccd(h) is None if k == "CCD" else k not in h)]
    if missing:
        raise ProductError("missing_keyword", f"{where} lacks keyword(s) {', '.join(missing)}")


def _number(h: fits.Header, key: str, where: str, positive: bool = False,
            allow_none: bool = False) -> float | None:
    v = h[key]
    if isinstance(v, bool) or not isinstance(v, int | float | np.number) or not np.isfinite(v):
        raise ProductError("bad_value", f"{where} {key}={v!r} is not a finite number")
    if allow_none and float(v) == -999.0:
        return None
    if positive and v <= 0:
        raise ProductError("bad_value", f"{where} {key}={v} is not positive")
    return float(v)


def _agree(h: fits.Header, name: ProductName, where: str) -> None:
    """Keywords that name the product (field, filter, CCD, quadrant, time) match the name."""
    ccd = header_ccd(h)
    if ccd is not None and ccd != name.ccdid:
        raise ProductError("mismatch", f"{where} CCD {ccd} but the name says c{name.ccdid:02d}")
    checks = [("FIELDID", name.field), ("FILTERID", name.filt.fid), ("QID", name.qid),
              ("RCID", rcid_of(name.ccdid, name.qid))]
    for key, want in checks:
        if key in h and _int(h[key]) != want:
            raise ProductError("mismatch", f"{where} {key}={h[key]!r} but the name says {want}")
    if name.filefracday is None or not ("OBSJD" in h or "OBSMJD" in h):
        return
    try:
        mjd = obs_mjd(h)
    except (TypeError, ValueError):
        raise ProductError("bad_value", f"{where} OBSJD/OBSMJD is not a number") from None
    night = parse_night(name.filefracday[:8])
    frac = int(name.filefracday[8:]) / 1e6
    if night_of_mjd(mjd) != night or abs((mjd - np.floor(mjd)) - frac) > MAX_TIME_OFFSET:
        raise ProductError("mismatch", f"{where} OBSMJD {mjd:.6f} is not the exposure "
                                       f"{name.filefracday} of the name")


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _celestial_wcs(h: fits.Header, shape: tuple[int, int], where: str) -> WCS:
    """The header's WCS (TPV, SIP or plain), checked to map the image corners to the sky."""
    if "CTYPE1" not in h or "CTYPE2" not in h:
        raise ProductError("missing_keyword", f"{where} has no WCS (CTYPE1/CTYPE2)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            w = WCS(h)
        ny, nx = shape
        ra, dec = w.all_pix2world([0, nx - 1, nx - 1, 0, nx / 2], [0, 0, ny - 1, ny - 1, ny / 2],
                                  0)
    except Exception as exc:  # astropy/wcslib raise many types for a broken WCS
        raise ProductError("bad_value", f"{where} WCS cannot be read: {exc}") from None
    if not w.has_celestial or not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        raise ProductError("bad_value", f"{where} WCS ({h['CTYPE1']}, {h['CTYPE2']}) does not map "
                                        "the image to the sky")
    return w


def _image(hdu: fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU, where: str) -> np.ndarray:
    data = hdu.data
    if data is None or data.ndim != 2:
        raise ProductError("bad_structure", f"{where} holds no 2-d image")
    return np.asarray(data)


def _check_image(kind: str, hdul: fits.HDUList, name: ProductName) -> IpacProduct:
    if kind == "scimrefdiffimg":
        hdu, where = hdul[1], "extension 1 (compressed image)"
        h = hdul[0].header.copy()
        h.update(hdu.header)  # the image keywords, with the primary's as defaults
    else:
        if len(hdul) != 1:
            raise ProductError("bad_structure", f"expected one HDU (the image), found {len(hdul)}")
        hdu, where = hdul[0], "primary header"
        h = hdu.header
    data = _image(hdu, where)
    shape = (int(data.shape[0]), int(data.shape[1]))
    if kind in REQUIRED_KEYS:
        _require(h, REQUIRED_KEYS[kind], where)
    _agree(h, name, where)
    if kind in NEEDS_WCS:
        _celestial_wcs(h, shape, where)
    if kind == "sciimg":
        for key in ("GAIN", "READNOI", "SATURATE"):
            _number(h, key, where, positive=True)
        if _number(h, "EXPTIME", where) < 0:
            raise ProductError("bad_value", f"{where} EXPTIME={h['EXPTIME']} is negative")
        _number(h, "MAGZP", where, allow_none=True)
        _number(h, "SEEING", where, allow_none=True)
    if kind == "refimg":
        _number(h, "MAGZP", where, allow_none=True)
    if kind in ("sciimg", "refimg", "scimrefdiffimg", "refunc"):
        if data.dtype.kind != "f":
            raise ProductError("bad_value", f"{where} pixels are {data.dtype}, expected floats")
        if not np.isfinite(data).any():
            raise ProductError("bad_value", f"{where} has no finite pixel")
    if kind == "diffimgpsf":
        ny, nx = shape
        if ny != nx or ny % 2 == 0 or ny > 255:
            raise ProductError("bad_value", f"{where} PSF is {nx} x {ny}; expected a square "
                                            "odd-sized stamp")
        if data.dtype.kind != "f" or not np.all(np.isfinite(data)) or not data.sum() > 0:
            raise ProductError("bad_value", f"{where} PSF pixels are not finite floats with a "
                                            "positive sum")
    if kind == "mskimg" and data.dtype.kind not in "iu":
        raise ProductError("bad_value", f"{where} pixels are {data.dtype}, expected integers")
    if kind in ("mskimg", "refunc", "refcov"):
        neg = int(np.count_nonzero(data < 0))
        if neg:
            raise ProductError("bad_value", f"{where} has {neg} negative pixel(s); a "
                                            f"{PRODUCT_KINDS[kind]} has none")
    return IpacProduct(name, h.copy(), shape=shape)


def _check_table(kind: str, hdul: fits.HDUList, name: ProductName) -> IpacProduct:
    h = hdul[0].header
    if h.get("NAXIS", 0) != 0:
        raise ProductError("bad_structure", "the primary HDU holds data; expected a header "
                                            "and a table")
    t = _table_hdu(hdul)
    if t is None:
        raise ProductError("bad_structure", "no binary table in HDU 1 (or 2 after LDAC_IMHEAD)")
    cols = _columns(t)
    if kind in ("sexcat", "refsexcat") and not any(
            a in cols and d in cols for a, d in SEXCAT_RADEC):
        raise ProductError("missing_keyword", "the SExtractor table has no sky position "
                                              "(ALPHAWIN_J2000/DELTAWIN_J2000 or "
                                              "ALPHA_J2000/DELTA_J2000)")
    _agree(h, name, "primary header")
    return IpacProduct(name, h.copy(), nrows=int(t.header.get("NAXIS2", 0)))


def _open(path: Path) -> fits.HDUList:
    """Open a FITS file fully (checksums verified when present); map failures to reasons."""
    size = path.stat().st_size
    if size == 0 or size % FITS_BLOCK:
        raise ProductError("truncated", f"size {size} bytes is not a whole number of 2880-byte "
                                        "FITS blocks")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AstropyUserWarning)
        # Real IPAC headers hold cards astropy only warns about (e.g. 'COMMENT  =  ...').
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        try:
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False, checksum=True)
            for hdu in hdul:  # read (and decompress) every HDU now
                _ = hdu.data
            return hdul
        except AstropyUserWarning as exc:
            reason = "bad_checksum" if "checksum" in str(exc).lower() else "truncated"
            raise ProductError(reason, f"unreadable FITS: {exc}") from None
        except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise ProductError("truncated", f"unreadable FITS: {exc}") from None


def recognise(path: str | Path) -> IpacProduct:
    """Recognise one IPAC product by its name and its content.

    Parameters
    ----------
    path : str or Path
        The file, named as IRSA serves it.

    Returns
    -------
    IpacProduct

    Raises
    ------
    ProductError
        The name is not an IPAC product name (``bad_name``, ``unsupported``), the file cannot
        be read (``truncated``, ``bad_checksum``), its content is another product's
        (``mismatch``, e.g. a science image named as a mask), or it lacks what the product
        needs (``bad_structure``, ``missing_keyword``, ``bad_value``; ``mismatch`` when a
        keyword contradicts the name).
    """
    path = Path(path)
    name = parse_product_name(path.name)
    with _open(path) as hdul:
        content = _content_kind(hdul)
        if content not in _ACCEPTS[name.kind]:
            raise ProductError("mismatch", f"named as an IPAC {name.kind} "
                                           f"({PRODUCT_KINDS[name.kind]}) but holds "
                                           f"{_CONTENT[content]}")
        if name.kind in ("psfcat", "sexcat", "refpsfcat", "refsexcat"):
            return _check_table(name.kind, hdul, name)
        return _check_image(name.kind, hdul, name)
