"""IBE-style FITS cutouts (``ARCHIVE_API.md`` section 1.3).

``center=x,y[units]`` is a sky position (RA, Dec J2000; degrees unless an angular unit is
given) or, with ``px``/``pix``/``pixels``, a pixel position in the FITS convention (the first
pixel's centre is 1,1, as ds9 and the FITS WCS use). ``size=w[,h][units]`` is the full width
along NAXIS1 and height along NAXIS2 (degrees unless ``px|pix|pixels|arcsec|arcmin|deg|rad``).
A cutout partly off the image is clipped; one entirely off it is an error. A size above
:data:`MAX_SIDE` pixels (``size=1e300px``) is refused before anything is allocated, and a
pixel centre must lie within :data:`MAX_PIXEL_OFFSET` of the image.

Only the needed part of the image is read: files are opened with ``memmap=True`` (not for
scaled integer images, which astropy does not memory-map) and the pixels are taken through
``hdu.section`` (which also reads only the needed tiles of
tile-compressed ``.fits.fz`` files and applies BSCALE/BZERO per section).

What a cutout needs of its file besides the pixels (the image HDU's place, its header
without the structure keywords, its WCS) is read once per version of the file and kept by
the process (:func:`_source`): parsing the header and building the WCS was most of a
cutout's time. The cutout's WCS is the source's with the reference pixel moved by the
cutout's origin (``CRPIXja``, as :class:`~astropy.nddata.Cutout2D` moves it), so every
other WCS keyword, SIP and TPV distortions included, is the source's own.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import re
import string
import threading
from dataclasses import dataclass
from os import PathLike

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D, NoOverlapError
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

PIXEL_UNITS = frozenset({"px", "pix", "pixel", "pixels"})
ANGLE_UNITS = {"deg": u.deg, "degree": u.deg, "degrees": u.deg, "d": u.deg,
               "rad": u.rad, "radian": u.rad, "radians": u.rad,
               "arcmin": u.arcmin, "amin": u.arcmin, "arcsec": u.arcsec, "asec": u.arcsec,
               "mas": u.mas}
#: HDU keywords that describe the file structure, not the image (not copied to a cutout).
_STRUCTURE = ("XTENSION", "PCOUNT", "GCOUNT", "EXTEND", "SIMPLE", "BITPIX", "NAXIS", "NAXIS1",
              "NAXIS2", "BSCALE", "BZERO", "CHECKSUM", "DATASUM", "ZQUANTIZ", "ZDITHER0")

#: Farthest a pixel centre may lie from the image (pixels): beyond, the cutout cannot overlap.
MAX_PIXEL_OFFSET = 1e9
#: Largest cutout side asked for (pixels, after converting angular sizes): far above any
#: ZTF image (a CCD is 6k pixels), so only absurd requests are refused.
MAX_SIDE = 100_000

_VALUE_RE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*$")


class CutoutError(ValueError):
    """A bad cutout request, or a cutout that misses the image."""


@dataclass(frozen=True)
class Quantity2:
    """Two values with one kind of unit: ``pixel`` is True for pixels, otherwise ``unit`` is
    an astropy angular unit."""

    x: float
    y: float
    pixel: bool
    unit: u.UnitBase | None = None


def _parse_pair(text: str, what: str, *, allow_single: bool) -> Quantity2:
    """Parse ``a[unit][,b[unit]]`` where a trailing unit applies to both values."""
    parts = [p for p in str(text).split(",")]
    if not 1 <= len(parts) <= 2 or (len(parts) == 1 and not allow_single):
        raise CutoutError(f"{what}={text!r}: expected "
                          f"{'one or two values' if allow_single else 'two values'} "
                          "separated by a comma, with optional units")
    values, units = [], []
    for part in parts:
        m = _VALUE_RE.match(part)
        if m is None:
            raise CutoutError(f"{what}={text!r}: {part.strip()!r} is not a number with "
                              "optional units")
        values.append(float(m.group(1)))
        units.append(m.group(2).lower())
    given = {un for un in units if un}
    if len(given) > 1:
        raise CutoutError(f"{what}={text!r}: mixed units {sorted(given)}")
    unit = given.pop() if given else "deg"
    if len(values) == 1:
        values.append(values[0])
    if not all(np.isfinite(values)):
        raise CutoutError(f"{what}={text!r}: values must be finite")
    if unit in PIXEL_UNITS:
        return Quantity2(values[0], values[1], True)
    if unit not in ANGLE_UNITS:
        raise CutoutError(f"{what}={text!r}: unknown unit {unit!r} (use px, pix, pixels, "
                          "arcsec, arcmin, deg or rad)")
    return Quantity2(values[0], values[1], False, ANGLE_UNITS[unit])


def parse_center(text: str) -> Quantity2:
    """Parse IBE's ``center=x,y[units]`` (degrees by default).

    Raises
    ------
    CutoutError
        For a malformed value, an unknown unit or a declination outside [-90, 90] deg.
    """
    c = _parse_pair(text, "center", allow_single=False)
    if not c.pixel and abs((c.y * c.unit).to_value(u.deg)) > 90:
        raise CutoutError(f"center={text!r}: declination outside [-90, 90] deg")
    return c


def parse_size(text: str) -> Quantity2:
    """Parse IBE's ``size=w[,h][units]`` (degrees by default; one value is a square).

    Raises
    ------
    CutoutError
        For a malformed value, an unknown unit or a size that is not positive.
    """
    s = _parse_pair(text, "size", allow_single=True)
    if s.x <= 0 or s.y <= 0:
        raise CutoutError(f"size={text!r}: sizes must be positive")
    return s


def _image_hdu(hdul: fits.HDUList) -> tuple[int, fits.hdu.base.ExtensionHDU | fits.PrimaryHDU]:
    """The first HDU holding a 2-D image (the primary one of plain files, the first
    extension of ``.fits.fz`` files), and its index."""
    for index, hdu in enumerate(hdul):
        if isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU) and \
                hdu.header.get("NAXIS", 0) == 2:
            return index, hdu
    raise CutoutError("the file has no 2-D image to cut out")


def cutout_fits(path: str | PathLike, center: str | Quantity2, size: str | Quantity2, *,
                compress: bool = True) -> bytes:
    """Cut a rectangle out of the image of a FITS file.

    Parameters
    ----------
    path : path-like
        A FITS file (plain or tile-compressed) whose first 2-D image HDU is cut.
    center : str or Quantity2
        IBE ``center`` value (see :func:`parse_center`).
    size : str or Quantity2
        IBE ``size`` value (see :func:`parse_size`).
    compress : bool
        Gzip the result (IBE's default).

    Returns
    -------
    bytes
        A FITS file with one primary image HDU: the header of the source image (keywords
        kept, WCS updated to the cutout) and the cutout pixels, gzipped if ``compress``.

    Raises
    ------
    CutoutError
        On a bad ``center``/``size``, an image without a usable WCS for sky positions or
        sizes, or a cutout entirely off the image.
    """
    c = parse_center(center) if isinstance(center, str) else center
    s = parse_size(size) if isinstance(size, str) else size
    src = _source(path)
    ny, nx = src.shape
    wcs = src.wcs
    if wcs is None and not (c.pixel and s.pixel):
        raise CutoutError("the image has no celestial WCS: use pixel units (px) for "
                          "center and size")
    if c.pixel:
        position: tuple[float, float] = (c.x - 1.0, c.y - 1.0)  # FITS 1-based to 0-based
    else:
        sky = SkyCoord(c.x * c.unit, c.y * c.unit, frame="icrs")
        with src.lock:
            px, py = wcs.world_to_pixel(sky)  # type: ignore[union-attr]
        position = (float(px), float(py))
        if not np.all(np.isfinite(position)):
            raise CutoutError(f"the cutout does not overlap the image (center {c.x},{c.y} "
                              "is not on the image's side of the sky)")
    if not all(abs(v) <= MAX_PIXEL_OFFSET for v in position):
        raise CutoutError(f"the cutout does not overlap the image ({nx} x {ny} pixels)")
    if s.pixel:
        shape = (s.y, s.x)
    else:
        scales = src.scales * u.deg
        shape = ((s.y * s.unit / scales[1]).decompose().value,
                 (s.x * s.unit / scales[0]).decompose().value)
    if not all(np.isfinite(v) and v <= MAX_SIDE for v in shape):
        raise CutoutError(f"size={shape[1]:.6g} x {shape[0]:.6g} pixels exceeds the largest "
                          f"cutout ({MAX_SIDE} pixels a side)")
    # Trimming reads and allocates only the overlap with the image, however large the
    # (bounded) request.
    shape_px = tuple(max(1, round(v)) for v in shape)
    with fits.open(path, memmap=src.memmap, lazy_load_hdus=True) as hdul:
        try:
            cut = Cutout2D(hdul[src.hdu].section, position, shape_px, mode="trim")
        except (NoOverlapError, ValueError) as exc:
            if isinstance(exc, NoOverlapError) or "overlap" in str(exc).lower():
                raise CutoutError(f"the cutout does not overlap the image "
                                  f"({nx} x {ny} pixels)") from None
            raise CutoutError(f"cannot cut out {shape_px[1]} x {shape_px[0]} pixels at "
                              f"{position[0] + 1:.6g},{position[1] + 1:.6g}: {exc}") from None
        data = np.asarray(cut.data)
    raw = _cutout_file(src, cut, data)
    return gzip.compress(raw, compresslevel=5) if compress else raw


#: BITPIX of the pixel types a FITS image stores as such (others, e.g. unsigned 16-bit
#: integers kept with BZERO, are written by astropy).
_BITPIX = {np.dtype(np.uint8): 8, np.dtype(np.int16): 16, np.dtype(np.int32): 32,
           np.dtype(np.int64): 64, np.dtype(np.float32): -32, np.dtype(np.float64): -64}


def _cutout_file(src: _Source, cut: Cutout2D, data: np.ndarray) -> bytes:
    """The cutout as a FITS file: one primary HDU, the source's cards with the WCS moved.

    The cards are the source header's own card images (verified by astropy when the source
    was read, :func:`_source`) and cards astropy formats here; only their assembly into 2880
    byte blocks is done here, because building and verifying a whole astropy HDU per request
    cost a third of a cutout's time. Pixel types FITS does not store natively go through
    astropy.
    """
    moved, placed = _placement(src, cut)
    bitpix = _BITPIX.get(data.dtype)
    if bitpix is None:
        header = src.header.copy()
        for key, value in moved.items():
            header[key] = value
        header.extend(placed)
        out = io.BytesIO()
        fits.PrimaryHDU(data=data, header=header).writeto(out, output_verify="silentfix")
        return out.getvalue()
    ny, nx = data.shape
    cards = [fits.Card("SIMPLE", True, "conforms to FITS standard"),
             fits.Card("BITPIX", bitpix, "array data type"),
             fits.Card("NAXIS", 2, "number of array dimensions"),
             fits.Card("NAXIS1", nx), fits.Card("NAXIS2", ny)]
    text = [c.image for c in cards]
    for key, image in src.cards:
        text.append(fits.Card(key, moved[key], src.header.comments[key]).image
                    if key in moved else image)
    text += [c.image for c in placed] + ["END".ljust(80)]
    head = "".join(text).encode("ascii")
    body = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder(">")).tobytes()
    return (head + b" " * (-len(head) % 2880)) + body + b"\0" * (-len(body) % 2880)


@dataclass(frozen=True)
class _Source:
    """What a cutout needs of a file besides its pixels (see the module docstring)."""

    hdu: int  # index of the image HDU
    shape: tuple[int, int]  # (NAXIS2, NAXIS1)
    header: fits.Header  # without the structure keywords; never modified
    wcs: WCS | None  # celestial WCS, or None
    scales: np.ndarray  # deg per pixel along each axis (when there is a WCS)
    lock: threading.Lock  # a WCS is not safe for concurrent use
    cards: tuple[tuple[str, str], ...]  # (keyword, 80-character card image) of ``header``
    crpix: tuple[str, ...]  # the CRPIXja keywords ``header`` has
    memmap: bool  # astropy memory-maps no scaled integer image (BZERO, BSCALE, BLANK)


def _source(path: str | PathLike) -> _Source:
    """:class:`_Source` of the file's current version (the last 256 files read are kept: about
    0.1 MB each, 25 MB a process)."""
    st = os.stat(path)
    return _source_of_version(os.fspath(path), st.st_ino, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _source_of_version(path: str, ino: int, size: int, mtime_ns: int) -> _Source:
    with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
        index, hdu = _image_hdu(hdul)
        header = hdu.header.copy()
        memmap = isinstance(hdu, fits.CompImageHDU) or not any(
            k in header for k in ("BZERO", "BSCALE", "BLANK"))
    wcs = _celestial_wcs(header)
    scales = (proj_plane_pixel_scales(wcs.celestial) if wcs is not None else np.ones(2))
    for key in _STRUCTURE:
        header.remove(key, ignore_missing=True, remove_all=True)
    for card in header.cards:
        card.verify("silentfix")
    cards = tuple((card.keyword, card.image) for card in header.cards)
    crpix = tuple(k for k in _CRPIX if k in header)
    return _Source(index, (int(hdu.header["NAXIS2"]), int(hdu.header["NAXIS1"])), header,
                   wcs, scales, threading.Lock(), cards, crpix, memmap)


def _celestial_wcs(header: fits.Header) -> WCS | None:
    """The image's celestial WCS, or None when it has none (or an unreadable one)."""
    try:
        wcs = WCS(header, relax=True)
    except Exception:  # any unreadable WCS means "no WCS" here
        return None
    return wcs if wcs.has_celestial and wcs.naxis == 2 else None


#: Reference-pixel keywords of the primary WCS and its alternates (``CRPIX1`` ... ``CRPIX2Z``).
_CRPIX = tuple(f"CRPIX{axis}{alt}" for axis in (1, 2) for alt in ("", *string.ascii_uppercase))


def _placement(src: _Source, cut: Cutout2D) -> tuple[dict[str, float], list[fits.Card]]:
    """The cutout's reference pixels (``CRPIXja`` moved by its origin, as
    :class:`~astropy.nddata.Cutout2D` moves them) and its ``CUTOUTX0``/``CUTOUTY0`` cards."""
    x0, y0 = (int(v) for v in cut.origin_original)
    moved = {key: float(src.header[key]) - (x0 if key[5] == "1" else y0) for key in src.crpix}
    return moved, [fits.Card("CUTOUTX0", x0 + 1, "source column (1-based) of cutout column 1"),
                   fits.Card("CUTOUTY0", y0 + 1, "source row (1-based) of cutout row 1")]
