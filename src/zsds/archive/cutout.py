"""IBE-style FITS cutouts (``ARCHIVE_API.md`` section 1.3).

``center=x,y[units]`` is a sky position (RA, Dec J2000; degrees unless an angular unit is
given) or, with ``px``/``pix``/``pixels``, a pixel position in the FITS convention (the first
pixel's centre is 1,1, as ds9 and the FITS WCS use). ``size=w[,h][units]`` is the full width
along NAXIS1 and height along NAXIS2 (degrees unless ``px|pix|pixels|arcsec|arcmin|deg|rad``).
A cutout partly off the image is clipped; one entirely off it is an error. A size above
:data:`MAX_SIDE` pixels (``size=1e300px``) is refused before anything is allocated, and a
pixel centre must lie within :data:`MAX_PIXEL_OFFSET` of the image.

Only the needed part of the image is read: files are opened with ``memmap=True`` and the
pixels are taken through ``hdu.section`` (which also reads only the needed tiles of
tile-compressed ``.fits.fz`` files and applies BSCALE/BZERO per section).
"""

from __future__ import annotations

import gzip
import io
import re
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


def _image_hdu(hdul: fits.HDUList) -> fits.hdu.base.ExtensionHDU | fits.PrimaryHDU:
    """The first HDU holding a 2-D image (the primary one of plain files, the first
    extension of ``.fits.fz`` files)."""
    for hdu in hdul:
        if isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU) and \
                hdu.header.get("NAXIS", 0) == 2:
            return hdu
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
    with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
        hdu = _image_hdu(hdul)
        header = hdu.header.copy()
        ny, nx = int(header["NAXIS2"]), int(header["NAXIS1"])
        wcs = _celestial_wcs(header)
        if wcs is None and not (c.pixel and s.pixel):
            raise CutoutError("the image has no celestial WCS: use pixel units (px) for "
                              "center and size")
        if c.pixel:
            position: tuple[float, float] = (c.x - 1.0, c.y - 1.0)  # FITS 1-based to 0-based
        else:
            sky = SkyCoord(c.x * c.unit, c.y * c.unit, frame="icrs")
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
            scales = proj_plane_pixel_scales(wcs.celestial) * u.deg  # type: ignore[union-attr]
            shape = ((s.y * s.unit / scales[1]).decompose().value,
                     (s.x * s.unit / scales[0]).decompose().value)
        if not all(np.isfinite(v) and v <= MAX_SIDE for v in shape):
            raise CutoutError(f"size={shape[1]:.6g} x {shape[0]:.6g} pixels exceeds the largest "
                              f"cutout ({MAX_SIDE} pixels a side)")
        # Trimming reads and allocates only the overlap with the image, however large the
        # (bounded) request.
        shape_px = tuple(max(1, round(v)) for v in shape)
        try:
            cut = Cutout2D(hdu.section, position, shape_px, wcs=wcs, mode="trim")
        except (NoOverlapError, ValueError) as exc:
            if isinstance(exc, NoOverlapError) or "overlap" in str(exc).lower():
                raise CutoutError(f"the cutout does not overlap the image "
                                  f"({nx} x {ny} pixels)") from None
            raise CutoutError(f"cannot cut out {shape_px[1]} x {shape_px[0]} pixels at "
                              f"{position[0] + 1:.6g},{position[1] + 1:.6g}: {exc}") from None
        data = np.asarray(cut.data)
    header = _cutout_header(header, cut, wcs)
    out = io.BytesIO()
    fits.PrimaryHDU(data=data, header=header).writeto(out, output_verify="silentfix")
    raw = out.getvalue()
    return gzip.compress(raw, compresslevel=5) if compress else raw


def _celestial_wcs(header: fits.Header) -> WCS | None:
    """The image's celestial WCS, or None when it has none (or an unreadable one)."""
    try:
        wcs = WCS(header, relax=True)
    except Exception:  # any unreadable WCS means "no WCS" here
        return None
    return wcs if wcs.has_celestial and wcs.naxis == 2 else None


def _cutout_header(header: fits.Header, cut: Cutout2D, wcs: WCS | None) -> fits.Header:
    """The source header with structure keywords removed and the WCS moved to the cutout."""
    hdr = header.copy()
    for key in _STRUCTURE:
        hdr.remove(key, ignore_missing=True, remove_all=True)
    x0, y0 = (int(v) for v in cut.origin_original)
    if wcs is not None:
        for key in [*wcs.to_header(relax=True).keys(), "CD1_1", "CD1_2", "CD2_1", "CD2_2"]:
            hdr.remove(key, ignore_missing=True, remove_all=True)
        hdr.update(cut.wcs.to_header(relax=True))
    hdr["CUTOUTX0"] = (x0 + 1, "source column (1-based) of cutout column 1")
    hdr["CUTOUTY0"] = (y0 + 1, "source row (1-based) of cutout row 1")
    return hdr
