"""Server-side rendering of the web UI: image sections as PNG, finder charts.

Images are opened with ``memmap`` and read through ``HDU.section``, so a zoomed view of a
large quadrant (or one tile-compressed extension of a raw file) reads only the pixels shown.
The display interval is computed once per image and stretch on a strided sample of the whole
image (cached), so panning and zooming keep the same contrast.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.visualization import (
    AsinhStretch,
    BaseStretch,
    LinearStretch,
    LogStretch,
    PercentileInterval,
    SqrtStretch,
    ZScaleInterval,
)
from astropy.wcs import WCS

from zsds.archive.limits import MAX_SECTION_PIXELS

#: Stretches offered by the viewer; ``zscale`` is IRAF's zscale interval with a linear stretch,
#: the others use the 99.5 % percentile interval unless ``lo``/``hi`` are given.
STRETCHES: dict[str, BaseStretch] = {
    "linear": LinearStretch(),
    "sqrt": SqrtStretch(),
    "asinh": AsinhStretch(0.1),
    "log": LogStretch(1000.0),
    "zscale": LinearStretch(),
}
#: Colour maps offered (matplotlib names).
CMAPS = ("gray", "gray_r", "viridis", "magma", "cubehelix")
#: Largest PNG side served (pixels).
MAX_SIDE = 4096
#: Pixels per side of the sample the default interval is computed on.
_SAMPLE = 512


class RenderError(ValueError):
    """A rendering request that cannot be served (the message names the problem)."""


@dataclass(frozen=True)
class ImageInfo:
    """What the viewer needs to know about one image HDU."""

    hdu: int
    nx: int
    ny: int
    has_wcs: bool
    hdus: tuple[tuple[int, str, int, int], ...]  # every 2-D HDU: (index, name, nx, ny)


def _image_hdus(hdul: fits.HDUList) -> list[int]:
    return [i for i, h in enumerate(hdul)
            if isinstance(h, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU)
            and h.header.get("NAXIS", 0) == 2]


@contextmanager
def open_hdu(path: Path, hdu: int | None = None) -> Iterator[tuple[Any, fits.Header, int]]:
    """The 2-D image HDU of a FITS file (the first one, or ``hdu``), memory-mapped.

    Yields
    ------
    (hdu object, header, index)

    Raises
    ------
    RenderError
        If the file is not FITS, has no 2-D image, or ``hdu`` is not one.
    """
    try:
        # Tile-compressed sections decompress only the tiles needed anyway; astropy refuses
        # to memory-map their scaled (BZERO) data.
        hdul = fits.open(path, memmap=not path.name.endswith(".fz"))
    except (OSError, ValueError) as exc:
        raise RenderError(f"not a readable FITS file: {exc}") from None
    try:
        images = _image_hdus(hdul)
        if not images:
            raise RenderError("the file holds no 2-D image")
        k = images[0] if hdu is None else int(hdu)
        if k not in images:
            raise RenderError(f"HDU {hdu} is not a 2-D image; image HDUs: {images}")
        yield hdul[k], hdul[k].header, k
    finally:
        hdul.close()


def image_info(path: Path, hdu: int | None = None) -> ImageInfo:
    """Size, WCS presence and the list of 2-D HDUs of an image file."""
    with open_hdu(path, hdu) as (_, header, k):
        with fits.open(path, memmap=not path.name.endswith(".fz")) as hdul:
            hdus = tuple((i, hdul[i].name, int(hdul[i].header["NAXIS1"]),
                          int(hdul[i].header["NAXIS2"])) for i in _image_hdus(hdul))
        return ImageInfo(k, int(header["NAXIS1"]), int(header["NAXIS2"]),
                         wcs_of(header) is not None, hdus)


def wcs_of(header: fits.Header) -> WCS | None:
    """The celestial WCS of a header, or None when it has none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            w = WCS(header)
        except Exception:  # any malformed WCS means "no WCS" for display
            return None
    return w if w.has_celestial and w.naxis == 2 else None


def _sample(h: Any, nx: int, ny: int) -> np.ndarray:
    step = max(1, int(np.ceil(max(nx, ny) / _SAMPLE)))
    data = np.asarray(h.section[::step, ::step], dtype=np.float32)
    return data[np.isfinite(data)]


@lru_cache(maxsize=256)
def _auto_interval(path: str, mtime: float, hdu: int, stretch: str) -> tuple[float, float]:
    with open_hdu(Path(path), hdu) as (h, header, _):
        sample = _sample(h, int(header["NAXIS1"]), int(header["NAXIS2"]))
    if sample.size == 0:
        return 0.0, 1.0
    interval = ZScaleInterval() if stretch == "zscale" else PercentileInterval(99.5)
    lo, hi = interval.get_limits(sample)
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def auto_interval(path: Path, hdu: int, stretch: str) -> tuple[float, float]:
    """Default display limits of an image for a stretch (cached by file and mtime)."""
    return _auto_interval(str(path), path.stat().st_mtime, hdu, stretch)


def _colorize(data: np.ndarray, lo: float, hi: float, stretch: str, cmap: str) -> np.ndarray:
    """uint8 RGB (or L) pixels of data normalised to [lo, hi] and stretched."""
    import matplotlib

    norm = np.clip((data - lo) / (hi - lo), 0.0, 1.0)
    norm = STRETCHES[stretch](np.nan_to_num(norm, nan=0.0), clip=True)
    if cmap == "gray":
        return (norm * 255.0 + 0.5).astype(np.uint8)
    return matplotlib.colormaps[cmap](norm, bytes=True)[..., :3]


def render_png(path: Path, *, hdu: int | None = None, x0: int = 0, y0: int = 0,
               w: int | None = None, h: int | None = None, scale: float = 1.0,
               stretch: str = "zscale", lo: float | None = None, hi: float | None = None,
               cmap: str = "gray") -> tuple[bytes, dict[str, float]]:
    """PNG of an image section, north-up as stored (row 0 of the PNG is the top, FITS y max).

    Parameters
    ----------
    path : Path
    hdu : int, optional
        Image HDU (default: the first 2-D one).
    x0, y0 : int
        0-based pixel of the section's lower-left corner.
    w, h : int, optional
        Section size in image pixels (default: to the image edge).
    scale : float
        Output pixels per image pixel; the PNG is ``round(w*scale) x round(h*scale)``.
        Enlarged with nearest-neighbour (pixels stay visible), reduced by box averaging.
    stretch : str
        One of :data:`STRETCHES`.
    lo, hi : float, optional
        Display limits (data values); by default the stretch's interval on the whole image.
    cmap : str
        One of :data:`CMAPS`.

    Returns
    -------
    (bytes, dict)
        The PNG and the limits used (``lo``, ``hi``).
    """
    from PIL import Image

    if stretch not in STRETCHES:
        raise RenderError(f"unknown stretch {stretch!r}: use one of {', '.join(STRETCHES)}")
    if cmap not in CMAPS:
        raise RenderError(f"unknown cmap {cmap!r}: use one of {', '.join(CMAPS)}")
    if not (np.isfinite(scale) and 0 < scale <= 64):
        raise RenderError("scale must be in (0, 64]")
    if any(v is not None and not np.isfinite(v) for v in (lo, hi)):
        raise RenderError(f"lo and hi must be finite numbers, got {lo}, {hi}")
    with open_hdu(path, hdu) as (hd, header, k):
        nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
        w = nx - x0 if w is None else w
        h = ny - y0 if h is None else h
        if not (0 <= x0 < nx and 0 <= y0 < ny) or w < 1 or h < 1:
            raise RenderError(f"section x0={x0} y0={y0} w={w} h={h} is outside the "
                              f"{nx}x{ny} image")
        out_w, out_h = max(1, round(w * scale)), max(1, round(h * scale))
        if max(out_w, out_h) > MAX_SIDE:
            raise RenderError(f"output {out_w}x{out_h} exceeds {MAX_SIDE} pixels a side")
        # The section is allocated before it is resampled to the output: bound it too (a
        # small output of a huge section would otherwise allocate gigabytes). It may pad the
        # image by at most the image's own size, which is all a viewer ever asks for.
        if w > 2 * nx or h > 2 * ny or w * h > MAX_SECTION_PIXELS:
            raise RenderError(f"section {w}x{h} is too large for the {nx}x{ny} image (at most "
                              f"{2 * nx}x{2 * ny} and {MAX_SECTION_PIXELS} pixels)")
        # Parts of the section beyond the image edge are padded (blank), so the PNG always has
        # the requested size and the client can place it without knowing the edges.
        x1, y1 = min(nx, x0 + w), min(ny, y0 + h)
        data = np.full((h, w), np.nan, np.float32)
        data[:y1 - y0, :x1 - x0] = hd.section[y0:y1, x0:x1]
    if lo is None or hi is None:
        alo, ahi = auto_interval(path, k, stretch)
        lo = alo if lo is None else lo
        hi = ahi if hi is None else hi
    if not hi > lo:
        raise RenderError(f"hi ({hi}) must exceed lo ({lo})")
    pix = _colorize(data[::-1], float(lo), float(hi), stretch, cmap)
    img = Image.fromarray(pix)
    if (out_w, out_h) != (w, h):
        method = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX
        img = img.resize((out_w, out_h), method)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)  # speed over size: this is interactive
    return buf.getvalue(), {"lo": float(lo), "hi": float(hi)}


def pixel_info(path: Path, x: float, y: float, hdu: int | None = None) -> dict[str, Any]:
    """RA/Dec (from the WCS) and value of the 0-based pixel (x, y)."""
    with open_hdu(path, hdu) as (hd, header, _):
        nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        value = None
        if 0 <= ix < nx and 0 <= iy < ny:
            v = float(np.asarray(hd.section[iy:iy + 1, ix:ix + 1])[0, 0])
            value = v if np.isfinite(v) else None
        w = wcs_of(header)
    ra = dec = None
    if w is not None:
        r, d = w.all_pix2world(x, y, 0)
        ra, dec = float(np.mod(r, 360.0)), float(d)
    return {"x": float(x), "y": float(y), "ra": ra, "dec": dec, "value": value}


def finder_chart(path: Path, ra: float, dec: float, size_arcmin: float, fmt: str = "png",
                 label: str = "") -> bytes:
    """A finder chart: a cutout of an image around (ra, dec) with a reticle, compass, scale bar.

    Parameters
    ----------
    path : Path
        Image with a celestial WCS.
    ra, dec : float
        Target (deg, ICRS).
    size_arcmin : float
        Side of the chart.
    fmt : str
        ``png`` or ``pdf``.
    label : str
        Second title line (the image's name, filter, date).
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.nddata import Cutout2D
    from astropy.visualization import ImageNormalize
    from astropy.wcs.utils import proj_plane_pixel_scales
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if fmt not in ("png", "pdf"):
        raise RenderError(f"unknown format {fmt!r}: use png or pdf")
    target = SkyCoord(ra * u.deg, dec * u.deg)
    with open_hdu(path) as (hd, header, _):
        wcs = wcs_of(header)
        if wcs is None:
            raise RenderError("the image has no celestial WCS")
        cut = Cutout2D(hd.section, target, size_arcmin * u.arcmin, wcs=wcs, mode="partial",
                       fill_value=np.nan, copy=True)
    data = np.asarray(cut.data, dtype=np.float32)
    good = data[np.isfinite(data)]
    lo, hi = ZScaleInterval().get_limits(good) if good.size else (0.0, 1.0)
    fig = Figure(figsize=(6.4, 7.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(projection=cut.wcs)
    ax.imshow(data, origin="lower", cmap="gray_r", interpolation="nearest",
              norm=ImageNormalize(vmin=lo, vmax=hi, stretch=AsinhStretch(0.3)))
    ax.coords[0].set_axislabel("RA (ICRS)")
    ax.coords[1].set_axislabel("Dec (ICRS)")
    ax.coords[0].set_major_formatter("hh:mm:ss")
    ax.coords[1].set_major_formatter("dd:mm:ss")
    ny, nx = data.shape
    tx, ty = cut.wcs.world_to_pixel(target)
    pixscale = float(np.mean(proj_plane_pixel_scales(cut.wcs))) * 3600.0  # arcsec / pixel
    # Reticle: four ticks with a gap, so the target itself stays visible.
    gap, arm = 6.0 / pixscale, max(nx, ny) * 0.08
    kw = {"color": "red", "lw": 1.6}
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        ax.plot([tx + dx * gap, tx + dx * (gap + arm)], [ty + dy * gap, ty + dy * (gap + arm)],
                **kw)
    # Compass: north and east directions at the target from the WCS (handles any rotation).
    step = size_arcmin * 0.15 * u.arcmin
    ox, oy = nx * 0.86, ny * 0.14
    for name, pa in (("N", 0.0), ("E", 90.0)):
        px, py = cut.wcs.world_to_pixel(target.directional_offset_by(pa * u.deg, step))
        vx, vy = float(px - tx), float(py - ty)
        ax.annotate("", xy=(ox + vx, oy + vy), xytext=(ox, oy),
                    arrowprops={"arrowstyle": "->", "color": "tab:blue", "lw": 1.5})
        ax.text(ox + 1.2 * vx, oy + 1.2 * vy, name, color="tab:blue", ha="center",
                va="center", fontsize=11, fontweight="bold")
    # Scale bar: a round length near a quarter of the chart.
    bar = next(v for v in (30.0, 10.0, 5.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.05)
               if v <= max(size_arcmin / 4.0, 0.05))
    blen = bar * 60.0 / pixscale
    bx, by = nx * 0.06, ny * 0.06
    ax.plot([bx, bx + blen], [by, by], color="tab:blue", lw=2.5)
    text = f"{bar:g}′" if bar >= 1 else f"{bar * 60:g}″"
    ax.text(bx + blen / 2, by + ny * 0.025, text, color="tab:blue", ha="center", fontsize=10)
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)
    hms = target.to_string("hmsdms", sep=":", precision=2)
    ax.set_title(f"{hms}   ({ra:.5f}, {dec:+.5f})\n{label}", fontsize=9, pad=16)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110, bbox_inches="tight",
                metadata={"Title": f"zsds finder chart {hms}"} if fmt == "pdf" else None)
    return buf.getvalue()
