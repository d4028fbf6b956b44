"""The raw ZTF CCD file as the camera writes it, and the one reader of it (ingest and split).

One fpacked multi-extension FITS file per CCD per exposure: a header-only primary HDU, the four
quadrant images in readout order as extensions 1-4 and their 30-column overscans as extensions
5-8 (``ext = qid + 4``, as ztfimg reads them), 16-bit integers, RICE tile-compressed.

Quadrants are found **by index**, never by EXTNAME: real files name their extensions after the
index (the one real header at hand has ``EXTNAME = '3'`` for quadrant 3) and zsds must read them
whatever the names. astropy presents each compressed extension of an fpacked file as a
``CompImageHDU`` at the same index as in the uncompressed file, so index ``k`` is quadrant ``k``
(and ``k + 4`` its overscan) for ``.fits.fz`` and plain ``.fits`` alike.

The keyword sets below are those of real raw files: the part of a real IPAC science header that
precedes ``HISTORY executed CorrectFloatingBias`` is the raw primary header followed by the raw
extension header (see docs/products/raw.md). Real raw files carry no ``DATE-OBS`` (time is
``OBSJD``), no ``EXPID`` (IPAC assigns it), no ``QID``/``RCID`` (the index is the quadrant) and
no ``SATURATE``/``INFOBITS``/``SEEING`` (IPAC's processing writes those); ``TELRA``/``TELDEC`` are
sexagesimal strings, the degrees are ``TELRAD``/``TELDECD``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.coordinates import Angle
from astropy.io import fits

from zsds.core.naming import nid_of, parse_night, parse_raw_name

#: Quadrants per CCD file and HDUs per file (primary + 4 images + 4 overscans).
N_QUAD = 4
N_HDU = 1 + 2 * N_QUAD
#: HDU index of the image and of the overscan of quadrant qid.
IMAGE_INDEX = {q: q for q in range(1, N_QUAD + 1)}
OVERSCAN_INDEX = {q: q + N_QUAD for q in range(1, N_QUAD + 1)}

#: Amplifier names by AMP_ID (the tables' ``h 0, g 1, f 2, e 3``; real headers upper case).
AMP_NAMES = {0: "H", 1: "G", 2: "F", 3: "E"}

#: Primary keywords ingest requires (real raw files carry all of them).
RAW_PRIMARY_KEYS: dict[str, str] = {
    "IMGTYPE": "image type: object, bias, dark, dome",
    "EXPTIME": "requested exposure time (s)",
    "OBSJD": "Julian date at start of exposure (UTC)",
    "FIELDID": "ZTF field id (0 for calibrations)",
    "PROGRMID": "program id (0 eng, 1 public, 2 partnership, 3 Caltech)",
    "FILTERID": "filter id (1 g, 2 r, 3 i; 0 none)",
    "FILTER": "filter name (ZTF_g, ZTF_r, ZTF_i)",
}

#: Further primary keywords of real raw files that zsds reads when present and the simulator
#: writes (a real file has ~120 primary keywords; the rest are copied through untouched).
RAW_PRIMARY_OPTIONAL: dict[str, str] = {
    "ORIGIN": "data origin (Zwicky Transient Facility)",
    "OBSERVER": "observer (robotic software)",
    "INSTRUME": "instrument (ZTF/MOSAIC)",
    "DETSOFT": "detector software version",
    "EXPOSURE": "total exposure time (s)",
    "CCDSUM": "CCD binning ('1 1')",
    "PIXSCALE": "pixel scale (arcsec/pixel)",
    "PIXSCALX": "pixel scale in x (arcsec/pixel)",
    "PIXSCALY": "pixel scale in y (arcsec/pixel)",
    "FILENAME": "file name as written by the camera (before fpack)",
    "ORIGNAME": "original file name",
    "OBSMJD": "MJD at start of exposure (UTC); OBSJD - 2400000.5 when absent",
    "EQUINOX": "equinox of the coordinates (2000)",
    "RA": "requested RA, sexagesimal hours",
    "DEC": "requested Dec, sexagesimal degrees",
    "RAD": "requested RA (deg)",
    "DECD": "requested Dec (deg)",
    "TELRA": "telescope RA, sexagesimal hours",
    "TELDEC": "telescope Dec, sexagesimal degrees",
    "TELRAD": "telescope RA (deg)",
    "TELDECD": "telescope Dec (deg)",
    "AZIMUTH": "telescope azimuth (deg)",
    "ELVATION": "telescope elevation (deg)",
    "AIRMASS": "airmass",
    "MOONILLF": "moon illuminated fraction",
    "OBSERVAT": "observatory (Palomar Observatory)",
    "TELESCOP": "telescope (Palomar 48-inch)",
    "OBSLON": "observatory longitude (deg, east positive)",
    "OBSLAT": "observatory latitude (deg)",
    "OBSALT": "observatory altitude (m)",
    "SHUTOPEN": "shutter open time (UTC ISO)",
    "SHUTCLSD": "shutter close time (UTC ISO)",
    "NFRAMES": "number of frames in the file (8)",
    "EXPID": "exposure id; not in real raw files (IPAC assigns it), derived from the name",
}

#: Extra primary keywords of dome-flat files (required for them).
RAW_FLAT_KEYS: dict[str, str] = {
    "ILUM_LED": "dome-lamp LED set",
    "ILUMWAVE": "LED wavelength (nm)",
    "ILUMPOWR": "LED power (mW)",
}

#: Keywords ingest requires on every quadrant-image extension (1-4).
RAW_IMAGE_KEYS: dict[str, str] = {
    "CCD_ID": "CCD id 1-16",
    "AMP_ID": "amplifier id 0-3 (readout quadrant - 1)",
    "GAIN": "gain (e-/DN)",
    "READNOI": "read noise (e-)",
}

#: Further image-extension keywords of real files (read when present, written by the simulator).
RAW_IMAGE_OPTIONAL: dict[str, str] = {
    "EXTNAME": "extension name; the index as a string in real files, never relied on",
    "CCDNAME": "detector name",
    "AMP_NAME": "amplifier name (H, G, F, E for AMP_ID 0-3)",
    "DARKCUR": "dark current (e-/s)",
    "SATURATE": "not in real raw files; honoured if present, else the instrument model's",
}

#: Keywords the simulator writes on overscan extensions (5-8); none is required.
RAW_OVERSCAN_KEYS: dict[str, str] = {
    "CCD_ID": "CCD id 1-16",
    "AMP_ID": "amplifier id 0-3",
}

#: The keywords ZTF_REFERENCE.md 1.7 lists that raw files carry (the other ones it lists,
#: SATURATE, INFOBITS and SEEING, are written by IPAC's processing, after its HISTORY cards).
REFERENCE_RAW_KEYS = ("GAIN", "READNOI", "DARKCUR", "EXPTIME", "OBSJD", "FILTER", "PIXSCALE")


class RawFormatError(ValueError):
    """A raw file does not have the raw-file layout or keywords.

    Parameters
    ----------
    reason : str
        Machine code: ``bad_structure``, ``missing_keyword``, ``bad_value``.
    message : str
        One line describing the problem, without the file name.
    file : str or None
        File name, prefixed to ``str(error)``.
    """

    def __init__(self, reason: str, message: str, file: str | None = None) -> None:
        super().__init__(f"{file}: {message}" if file else message)
        self.reason = reason
        self.message = message
        self.file = file


@dataclass
class RawData:
    """The content of a raw CCD file, arrays in **readout** orientation, by quadrant id.

    Attributes
    ----------
    primary : astropy.io.fits.Header
    images, overscans : dict[int, ndarray]
        Pixel arrays (as stored; uint16 for a valid file).
    image_headers, overscan_headers : dict[int, astropy.io.fits.Header]
    path : Path or None
    """

    primary: fits.Header
    images: dict[int, np.ndarray] = field(default_factory=dict)
    overscans: dict[int, np.ndarray] = field(default_factory=dict)
    image_headers: dict[int, fits.Header] = field(default_factory=dict)
    overscan_headers: dict[int, fits.Header] = field(default_factory=dict)
    path: Path | None = None


def _role(k: int) -> str:
    return f"quadrant {k} image" if k <= N_QUAD else f"quadrant {k - N_QUAD} overscan"


def raw_from_hdul(hdul: fits.HDUList, file: str | None = None) -> RawData:
    """Pick the quadrant images and overscans of an open raw file by HDU index.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        The open file (compressed or not).
    file : str or None
        File name for error messages.

    Returns
    -------
    RawData
        With the pixel arrays loaded (decompressed).

    Raises
    ------
    RawFormatError
        ``bad_structure`` when the file does not hold a header-only primary HDU and eight 2-d
        image extensions.
    """
    if len(hdul) != N_HDU:
        raise RawFormatError(
            "bad_structure",
            f"expected {N_HDU} HDUs (primary, quadrant images 1-4, overscans 5-8), "
            f"found {len(hdul)}",
            file,
        )
    if hdul[0].header.get("NAXIS", 0) != 0:
        raise RawFormatError("bad_structure", "the primary HDU holds data; expected a header", file)
    raw = RawData(hdul[0].header.copy(), path=None)
    for k in range(1, N_HDU):
        hdu = hdul[k]
        if not isinstance(hdu, fits.ImageHDU | fits.CompImageHDU):
            raise RawFormatError(
                "bad_structure", f"extension {k} ({_role(k)}) is a {type(hdu).__name__}", file
            )
        data = hdu.data
        if data is None or data.ndim != 2:
            raise RawFormatError(
                "bad_structure", f"extension {k} ({_role(k)}) holds no 2-d image", file
            )
        if k <= N_QUAD:
            raw.images[k], raw.image_headers[k] = np.asarray(data), hdu.header.copy()
        else:
            raw.overscans[k - N_QUAD] = np.asarray(data)
            raw.overscan_headers[k - N_QUAD] = hdu.header.copy()
    return raw


def read_raw(path: str | Path, **open_kwargs: Any) -> RawData:
    """Open (and decompress) a raw CCD file and return its quadrants by index.

    Parameters
    ----------
    path : str or Path
        ``.fits.fz`` or ``.fits``.
    **open_kwargs
        Passed to :func:`astropy.io.fits.open` (e.g. ``checksum=True``).

    Returns
    -------
    RawData

    Raises
    ------
    RawFormatError
        Wrong layout (the message names the file).
    OSError
        Unreadable file.
    """
    path = Path(path)
    with warnings.catch_warnings():
        # Real headers hold cards astropy only warns about (e.g. blank-value CDS comments).
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        with fits.open(path, **{"memmap": False, **open_kwargs}) as hdul:
            raw = raw_from_hdul(hdul, path.name)
    raw.path = path
    return raw


def obs_jd(header: Mapping[str, Any]) -> float:
    """Julian date (UTC) of the exposure start: ``OBSJD``, else ``OBSMJD + 2400000.5``."""
    if "OBSJD" in header:
        return float(header["OBSJD"])
    return float(header["OBSMJD"]) + 2400000.5


def obs_mjd(header: Mapping[str, Any]) -> float:
    """MJD (UTC) of the exposure start: ``OBSMJD``, else ``OBSJD - 2400000.5``."""
    if "OBSMJD" in header:
        return float(header["OBSMJD"])
    return float(header["OBSJD"]) - 2400000.5


def exposure_id(header: Mapping[str, Any], filename: str) -> int:
    """Exposure id: ``EXPID`` if the header has it, else ``nid * 10^5 + dayfrac * 10^5``.

    Real raw headers carry no EXPID (IPAC's database assigns it, about ``nid·10⁵ +
    dayfrac·10⁵``); the derivation from the file name gives the same id to the 16 CCD files of
    an exposure and equals :func:`zsds.core.naming.expid_of` of the exposure start.

    Parameters
    ----------
    header : Mapping
        Primary header (or a dict of its keywords).
    filename : str
        The raw file name (``ztf_<filefracday>_...``).

    Returns
    -------
    int
    """
    if "EXPID" in header:
        return int(header["EXPID"])
    ffd = parse_raw_name(filename).filefracday
    return nid_of(parse_night(ffd[:8])) * 100_000 + int(ffd[8:13])


def _angle_deg(value: Any, hours: bool) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | np.number):
        return float(value)
    try:
        return float(Angle(str(value).strip(), unit="hourangle" if hours else "deg").deg)
    except ValueError:
        return None


def pointing_deg(header: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Telescope pointing (deg): ``TELRAD``/``TELDECD``, else parsed ``TELRA``/``TELDEC``.

    ``TELRA``/``TELDEC`` are sexagesimal strings in real files (hours and degrees); a number
    there is taken as degrees (files written by zsds before it followed the real format).
    """
    ra = _angle_deg(header.get("TELRAD"), False)
    dec = _angle_deg(header.get("TELDECD"), False)
    if ra is None:
        ra = _angle_deg(header.get("TELRA"), True)
    if dec is None:
        dec = _angle_deg(header.get("TELDEC"), False)
    return ra, dec


def amp_id(header: Mapping[str, Any], qid: int) -> int:
    """``AMP_ID`` of an image extension, or ``qid - 1`` (ztfimg's convention) when absent."""
    return int(header["AMP_ID"]) if "AMP_ID" in header else qid - 1
