"""Validation of one raw ZTF CCD file: name, FITS structure, keywords and values."""

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
    IMAGE_EXT,
    OVERSCAN_EXT,
    RAW_FLAT_KEYS,
    RAW_IMAGE_KEYS,
    RAW_OVERSCAN_KEYS,
    RAW_PRIMARY_KEYS,
)

FITS_BLOCK = 2880
N_HDU = 1 + len(IMAGE_EXT) + len(OVERSCAN_EXT)
EXPECTED_EXTNAMES = ["PRIMARY", *IMAGE_EXT.values(), *OVERSCAN_EXT.values()]


class RawFileError(Exception):
    """A raw file failed validation.

    Parameters
    ----------
    reason : str
        Machine code: ``bad_name``, ``truncated``, ``bad_checksum``, ``bad_structure``,
        ``missing_keyword``, ``bad_value``.
    message : str
        One line describing the problem (without the file name).
    """

    def __init__(self, reason: str, message: str) -> None:
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
        return {
            "expid": int(h["EXPID"]),
            "mjd": float(h["OBSMJD"]),
            "field": int(h["FIELDID"]),
            "fid": int(h["FILTERID"]),
            "imgtype": str(h["IMGTYPE"]).strip(),
            "programid": int(h["PROGRMID"]),
            "exptime": float(h["EXPTIME"]),
            "airmass": _float_or_none(h.get("AIRMASS")),
            "ra": _float_or_none(h.get("TELRA")),
            "dec": _float_or_none(h.get("TELDEC")),
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
    names = [h.name for h in hdul]
    if len(hdul) != N_HDU or names != EXPECTED_EXTNAMES:
        raise RawFileError(
            "bad_structure", f"expected {N_HDU} HDUs {EXPECTED_EXTNAMES}, found {names}"
        )
    ph = hdul[0].header
    _require(ph, RAW_PRIMARY_KEYS, "primary header")
    imgtype = str(ph["IMGTYPE"]).strip().lower()
    if imgtype == "dome" or name.imgtypecode == "f":
        _require(ph, RAW_FLAT_KEYS, "dome-flat primary header")
    for key in ("EXPTIME", "OBSMJD", "EXPID", "FIELDID", "CCD_ID", "FILTERID", "PROGRMID"):
        _number(ph, key, "primary header")
    if ph["EXPTIME"] < 0:
        raise RawFileError("bad_value", f"EXPTIME={ph['EXPTIME']} is negative")
    night = parse_night(name.filefracday[:8])
    obs_night = night_of_mjd(float(ph["OBSMJD"]))
    if obs_night != night:
        raise RawFileError(
            "bad_value", f"OBSMJD={ph['OBSMJD']} falls on {obs_night}, not the night {night}"
        )
    if int(ph["CCD_ID"]) != name.ccdid:
        raise RawFileError(
            "bad_value", f"CCD_ID={ph['CCD_ID']} but the name says c{name.ccdid:02d}"
        )
    if int(ph["FIELDID"]) != name.field:
        raise RawFileError("bad_value", f"FIELDID={ph['FIELDID']} but the name says {name.field}")
    img_shape: tuple[int, ...] | None = None
    ovs_shape: tuple[int, ...] | None = None
    for qid in IMAGE_EXT:
        for ext, keys, kind in (
            (qid, RAW_IMAGE_KEYS, "image"),
            (qid + 4, RAW_OVERSCAN_KEYS, "ovs"),
        ):
            hdu = hdul[ext]
            where = f"extension {hdu.name}"
            _require(hdu.header, keys, where)
            if int(hdu.header["CCD_ID"]) != name.ccdid or int(hdu.header["QID"]) != qid:
                raise RawFileError(
                    "bad_value",
                    f"{where} has CCD_ID={hdu.header['CCD_ID']} QID={hdu.header['QID']}, "
                    f"expected {name.ccdid} and {qid}",
                )
            data = hdu.data
            if data is None or data.ndim != 2:
                raise RawFileError("bad_structure", f"{where} holds no 2-d image")
            if data.dtype != np.uint16:
                raise RawFileError("bad_value", f"{where} dtype {data.dtype}, expected uint16")
            ref = img_shape if kind == "image" else ovs_shape
            if ref is not None and data.shape != ref:
                raise RawFileError(
                    "bad_value", f"{where} shape {data.shape} differs from {ref} of the others"
                )
            if kind == "image":
                img_shape = data.shape
            else:
                ovs_shape = data.shape
    assert img_shape is not None and ovs_shape is not None
    if ovs_shape[0] != img_shape[0]:
        raise RawFileError(
            "bad_value", f"overscan rows {ovs_shape[0]} differ from image rows {img_shape[0]}"
        )
    keep = {k: ph[k] for k in RAW_PRIMARY_KEYS}
    return RawInfo(name, keep)
