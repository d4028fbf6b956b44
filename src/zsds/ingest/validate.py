"""Validation of one raw ZTF CCD file: name, FITS structure, keywords and values.

The layout and keyword sets are those of real raw files (:mod:`zsds.core.rawformat`); the HDUs
are picked by index with the reader the split uses (:func:`zsds.core.rawformat.raw_from_hdul`).
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.utils.exceptions import AstropyUserWarning

from zsds.core.naming import RawName, nid_of, night_of_mjd, parse_night, parse_raw_name
from zsds.core.rawformat import (
    N_QUAD,
    RAW_FLAT_KEYS,
    RAW_IMAGE_KEYS,
    RAW_PRIMARY_KEYS,
    RAW_PRIMARY_OPTIONAL,
    RawData,
    RawFormatError,
    exposure_id,
    obs_mjd,
    pointing_deg,
    raw_from_hdul,
)

FITS_BLOCK = 2880
FITS_MAGIC = b"SIMPLE  ="


class RawFileError(Exception):
    """A raw file failed validation.

    Parameters
    ----------
    reason : str
        Machine code: ``bad_name``, ``not_fits``, ``truncated``, ``bad_checksum``,
        ``bad_structure``, ``missing_keyword``, ``bad_value``.
    message : str
        One line describing the problem (without the file name).
    """

    def __init__(self, reason: str, message: str) -> None:
        # One line whatever the library said (astropy's warnings end in a newline; the fuzz
        # test found it): the message goes into logs, sidecars and the night summary.
        message = " ".join(str(message).split())
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class RawInfo:
    """What ingest records about a valid raw file."""

    name: RawName
    header: dict[str, Any]

    @property
    def night(self) -> dt.date:
        return parse_night(self.name.filefracday[:8])

    def exposure_row(self) -> dict[str, Any]:
        """Column values of the ``exposures`` row."""
        h = self.header
        ra, dec = pointing_deg(h)
        return {
            "expid": exposure_id(h, self.name.filename),
            "mjd": obs_mjd(h),
            "field": int(h["FIELDID"]),
            "fid": int(h["FILTERID"]),
            "imgtype": str(h["IMGTYPE"]).strip(),
            "programid": int(h["PROGRMID"]),
            "exptime": float(h["EXPTIME"]),
            "airmass": _float_or_none(h.get("AIRMASS")),
            "ra": ra,
            "dec": dec,
            "filefracday": self.name.filefracday,
            "night": self.night,
            "nid": nid_of(self.night),
        }


def _float_or_none(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _require(header: fits.Header, keys: dict[str, str], where: str) -> None:
    missing = [k for k in keys if k not in header]
    if missing:
        raise RawFileError("missing_keyword", f"{where} lacks keyword(s) {', '.join(missing)}")


def _number(header: fits.Header, key: str, where: str) -> float:
    v = header[key]
    if isinstance(v, bool) or not isinstance(v, int | float | np.number):
        raise RawFileError("bad_value", f"{where} {key}={v!r} is not a number")
    if not np.isfinite(v):
        raise RawFileError("bad_value", f"{where} {key}={v!r} is not finite")
    return float(v)


#: IMGTYPE values (lower case) each raw-name type code stands for.
_IMGTYPES_OF_CODE = {"o": ("object", "science"), "b": ("bias",), "d": ("dark",),
                     "f": ("dome", "flat"), "c": ("focus",), "g": ("guider",)}


def validate_raw(path: Path) -> RawInfo:
    """Check a raw file completely; return its parsed name and primary header.

    Parameters
    ----------
    path : Path
        The file (its name must follow the ZTF raw naming rules).

    Returns
    -------
    RawInfo

    Raises
    ------
    RawFileError
        With a machine-readable ``reason`` and a one-line ``message``.
    """
    try:
        name = parse_raw_name(path.name)
    except ValueError as exc:
        raise RawFileError("bad_name", str(exc).removeprefix(f"{path.name}: ")) from None
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(len(FITS_MAGIC))
    # A file still being copied starts with the FITS card already; anything else never will
    # be FITS, so it is refused at once instead of waiting out the settle time.
    if head != FITS_MAGIC[:len(head)]:
        raise RawFileError("not_fits", f"does not start with a FITS header (starts {head!r})")
    if size == 0 or size % FITS_BLOCK:
        raise RawFileError(
            "truncated", f"size {size} bytes is not a whole number of 2880-byte FITS blocks"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", AstropyUserWarning)
        warnings.simplefilter("error", VerifyWarning)
        try:
            with fits.open(path, memmap=False, lazy_load_hdus=False, checksum=True) as hdul:
                return _check_hdus(hdul, name)
        except RawFileError:
            raise
        except AstropyUserWarning as exc:
            reason = "bad_checksum" if "checksum" in str(exc).lower() else "truncated"
            raise RawFileError(reason, f"unreadable FITS: {exc}") from None
        except (OSError, ValueError, TypeError, KeyError, IndexError, VerifyWarning) as exc:
            raise RawFileError("truncated", f"unreadable FITS: {exc}") from None


def _check_hdus(hdul: fits.HDUList, name: RawName) -> RawInfo:
    try:
        raw = raw_from_hdul(hdul)
    except RawFormatError as exc:
        raise RawFileError(exc.reason, exc.message) from None
    ph = raw.primary
    _require(ph, RAW_PRIMARY_KEYS, "primary header")
    imgtype = str(ph["IMGTYPE"]).strip().lower()
    expected = _IMGTYPES_OF_CODE.get(name.imgtypecode, ())
    if imgtype not in expected:
        # A science file that says it is a bias would be stacked into the master bias.
        raise RawFileError(
            "bad_value", f"IMGTYPE={ph['IMGTYPE']!r} but the name's type code "
            f"_{name.imgtypecode} means {' or '.join(repr(t) for t in expected)}")
    if imgtype == "dome" or name.imgtypecode == "f":
        _require(ph, RAW_FLAT_KEYS, "dome-flat primary header")
    numeric = ("EXPTIME", "OBSJD", "FIELDID", "FILTERID", "PROGRMID", "OBSMJD", "EXPID", "CCD_ID")
    for key in numeric:
        if key in ph:
            _number(ph, key, "primary header")
    if ph["EXPTIME"] < 0:
        raise RawFileError("bad_value", f"EXPTIME={ph['EXPTIME']} is negative")
    night = parse_night(name.filefracday[:8])
    mjd = obs_mjd(ph)
    obs_night = night_of_mjd(mjd)
    if obs_night != night:
        key = "OBSMJD" if "OBSMJD" in ph else "OBSJD"
        raise RawFileError(
            "bad_value", f"{key}={ph[key]} falls on {obs_night}, not the night {night}"
        )
    if "OBSMJD" in ph and abs(float(ph["OBSJD"]) - 2400000.5 - mjd) > 1e-5:
        raise RawFileError("bad_value", f"OBSJD={ph['OBSJD']} and OBSMJD={ph['OBSMJD']} differ")
    # CCD_ID lives in the extensions of real files; older zsds files also had it in the primary.
    if "CCD_ID" in ph and int(ph["CCD_ID"]) != name.ccdid:
        raise RawFileError(
            "bad_value", f"CCD_ID={ph['CCD_ID']} but the name says c{name.ccdid:02d}"
        )
    if int(ph["FIELDID"]) != name.field:
        raise RawFileError("bad_value", f"FIELDID={ph['FIELDID']} but the name says {name.field}")
    _check_quadrants(raw, name)
    keep = {k: ph[k] for k in (*RAW_PRIMARY_KEYS, *RAW_PRIMARY_OPTIONAL) if k in ph}
    return RawInfo(name, keep)


def _check_quadrants(raw: RawData, name: RawName) -> None:
    """Keywords of the image extensions; dtype and shapes of images and overscans."""
    amps: dict[int, int] = {}
    for qid in range(1, N_QUAD + 1):
        h = raw.image_headers[qid]
        where = f"extension {qid} (quadrant {qid} image)"
        _require(h, RAW_IMAGE_KEYS, where)
        for key in RAW_IMAGE_KEYS:
            _number(h, key, where)
        if int(h["CCD_ID"]) != name.ccdid:
            raise RawFileError(
                "bad_value", f"{where} has CCD_ID={h['CCD_ID']}, the name says c{name.ccdid:02d}"
            )
        # QID is not a real raw keyword (the index is the quadrant); older zsds files carry it.
        if "QID" in h and int(h["QID"]) != qid:
            raise RawFileError("bad_value", f"{where} has QID={h['QID']}")
        amp = int(h["AMP_ID"])
        if not 0 <= amp < N_QUAD or amp in amps.values():
            raise RawFileError(
                "bad_value", f"{where} has AMP_ID={amp}; expected distinct amplifiers 0-3"
            )
        amps[qid] = amp
        for key in ("GAIN", "READNOI"):
            if h[key] <= 0:
                raise RawFileError("bad_value", f"{where} {key}={h[key]} is not positive")
    for kind, arrays, offset in (("image", raw.images, 0), ("overscan", raw.overscans, N_QUAD)):
        shapes = {q: a.shape for q, a in arrays.items()}
        for q, a in arrays.items():
            if a.dtype != np.uint16:
                raise RawFileError(
                    "bad_value", f"extension {q + offset} ({kind}) dtype {a.dtype}, expected uint16"
                )
            if shapes[q] != shapes[1]:
                raise RawFileError(
                    "bad_value",
                    f"extension {q + offset} ({kind}) shape {shapes[q]} differs from {shapes[1]}",
                )
    img_rows, ovs_rows = raw.images[1].shape[0], raw.overscans[1].shape[0]
    if ovs_rows != img_rows:
        raise RawFileError(
            "bad_value", f"overscan rows {ovs_rows} differ from image rows {img_rows}"
        )
