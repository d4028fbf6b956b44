"""Raw CCD reading, floating-bias (overscan) correction, non-linearity correction and splitting.

The raw file holds each quadrant in readout order with its 30-column overscan, found by HDU index
(:func:`zsds.core.rawformat.read_raw`, shared with ingest). :func:`read_raw_ccd` (the only I/O
here) turns every quadrant into science orientation; the overscan rows are reordered exactly like
the image rows, while the overscan columns stay in readout order so that
:data:`zsds.core.instrument.OVERSCAN_GOOD` still selects the columns after the readout transient.
:func:`split_quadrant` subtracts the floating bias and then corrects the per-amplifier
non-linearity (:mod:`zsds.core.nonlinearity`), the order of IPAC's pipeline (the non-linearity is
a function of the signal above the bias).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.stats import sigma_clip, sigma_clipped_stats
from astropy.wcs import WCS
from scipy.ndimage import median_filter
from scipy.signal import savgol_filter

from zsds.core import nonlinearity
from zsds.core.image import QuadrantImage
from zsds.core.instrument import (
    ADC_MAX,
    OVERSCAN_GOOD,
    amplifier,
    check_ccd_quad,
    from_raw_orientation,
    raw_flip,
    rcid_of,
)
from zsds.core.masks import MaskBit
from zsds.core.rawformat import (
    RawFormatError,
    amp_id,
    exposure_id,
    obs_jd,
    obs_mjd,
    read_raw,
)

#: Header keywords of the extension that describe the HDU structure, not the data.
_STRUCTURAL = (
    "SIMPLE",
    "XTENSION",
    "BITPIX",
    "NAXIS",
    "NAXIS1",
    "NAXIS2",
    "PCOUNT",
    "GCOUNT",
    "EXTEND",
    "BSCALE",
    "BZERO",
    "EXTNAME",
    "CHECKSUM",
    "DATASUM",
)


@dataclass(frozen=True)
class OverscanConfig:
    """Options of the floating-bias estimate.

    ``good_cols`` are the first and one-past-last overscan columns (readout order) used: the
    first columns carry the readout transient (default
    :data:`~zsds.core.instrument.OVERSCAN_GOOD`).
    """

    good_cols: tuple[int, int] = (OVERSCAN_GOOD.start, OVERSCAN_GOOD.stop)  #: overscan columns used
    clip_sigma: float = 3.0  #: row-wise clip (median centre, MAD width) against cosmic rays
    clip_iters: int = 3  #: clipping iterations per row
    median_rows: int = 9  #: running-median window along rows (rows hit end to end); 1: off
    smooth_rows: int = 31  #: Savitzky-Golay window along rows (odd); 1: no smoothing
    smooth_order: int = 2  #: polynomial order of the Savitzky-Golay filter


@dataclass(frozen=True)
class SplitConfig:
    """Options of :func:`split_quadrant`."""

    overscan: OverscanConfig = field(default_factory=OverscanConfig)  #: floating bias per amplifier
    nonlinearity: bool = True  #: correct each amplifier's non-linearity (table by exposure date)


@dataclass
class RawCCD:
    """One raw CCD file in memory, every quadrant in science orientation."""

    header: fits.Header  #: primary header
    images: dict[int, np.ndarray]  #: raw DN (uint16) of each quadrant by qid, science orientation
    overscans: dict[int, np.ndarray]  #: overscan (ny, 30) by qid; science rows, readout columns
    ext_headers: dict[int, fits.Header]  #: extension headers by qid (WCS in readout orientation)
    path: Path | None = None  #: the file read (None: built in memory)


def read_raw_ccd(path: str | Path) -> RawCCD:
    """Read (and uncompress) a raw ZTF CCD file.

    Quadrant ``q`` is HDU ``q`` and its overscan HDU ``q + 4``, whatever the extension names
    (:func:`zsds.core.rawformat.read_raw`).

    Parameters
    ----------
    path : str or Path
        ``.fits.fz`` (RICE tile-compressed) or plain FITS multi-extension file.

    Returns
    -------
    RawCCD

    Raises
    ------
    zsds.core.rawformat.RawFormatError
        The file does not have the raw layout (the message names the file and the problem).
    """
    raw = read_raw(path)
    images, overscans = {}, {}
    for qid in (1, 2, 3, 4):
        flip_y, _ = raw_flip(qid)
        images[qid] = np.ascontiguousarray(from_raw_orientation(raw.images[qid], qid))
        ovs = raw.overscans[qid]
        overscans[qid] = np.ascontiguousarray(ovs[::-1] if flip_y else ovs)
    return RawCCD(raw.primary, images, overscans, raw.image_headers, Path(path))


def _odd_window(n: int, length: int) -> int:
    """Largest odd window <= n that fits ``length`` samples."""
    n = min(int(n), length if length % 2 else length - 1)
    return max(n if n % 2 else n - 1, 1)


def floating_bias(overscan: np.ndarray, config: OverscanConfig | None = None) -> np.ndarray:
    """Per-row floating bias (DN) from an overscan block.

    Each row's good columns are sigma-clipped (median centre, MAD width) and averaged, which
    rejects cosmic rays hitting a few overscan pixels; a running median along rows rejects rows
    hit along their whole length, and a Savitzky-Golay filter smooths the read noise.

    Parameters
    ----------
    overscan : ndarray (ny, ncol)
        Overscan block, rows in the order of the image rows to correct.
    config : OverscanConfig or None

    Returns
    -------
    ndarray (ny,) float64
    """
    cfg = config or OverscanConfig()
    good = np.asarray(overscan, dtype=np.float64)[:, slice(*cfg.good_cols)]
    clipped = sigma_clip(
        good,
        sigma=cfg.clip_sigma,
        maxiters=cfg.clip_iters,
        axis=1,
        cenfunc="median",
        stdfunc="mad_std",
    )
    rows = np.ma.mean(clipped, axis=1).filled(np.nan)
    bad = ~np.isfinite(rows)
    if bad.all():
        raise ValueError("overscan holds no usable pixels")
    if bad.any():
        idx = np.arange(rows.size)
        rows[bad] = np.interp(idx[bad], idx[~bad], rows[~bad])
    ny = rows.size
    if cfg.median_rows > 1:
        rows = median_filter(rows, size=_odd_window(cfg.median_rows, ny), mode="nearest")
    win = _odd_window(cfg.smooth_rows, ny)
    if win > cfg.smooth_order + 1:
        rows = savgol_filter(rows, win, cfg.smooth_order, mode="interp")
    return rows


def _merged_header(raw: RawCCD, qid: int, nx: int, ny: int) -> fits.Header:
    """Primary + extension keywords; the extension WCS is moved to science orientation."""
    ext = raw.ext_headers[qid]
    hdr = raw.header.copy()
    for key in _STRUCTURAL:
        hdr.remove(key, ignore_missing=True, remove_all=True)
    has_wcs = "CTYPE1" in ext
    wcs_keys: set[str] = set()
    if has_wcs:
        w = WCS(ext)
        wcs_keys = set(w.to_header().keys()) | {"WCSAXES"}
        flip_y, flip_x = raw_flip(qid)
        for axis, (flip, n) in enumerate(((flip_x, nx), (flip_y, ny))):
            if flip:
                w.wcs.crpix[axis] = n + 1 - w.wcs.crpix[axis]
                if w.wcs.has_cd():
                    w.wcs.cd[:, axis] *= -1
                else:
                    w.wcs.pc[:, axis] *= -1
    for card in ext.cards:
        if card.keyword in _STRUCTURAL or card.keyword in wcs_keys or not card.keyword:
            continue
        hdr[card.keyword] = (card.value, card.comment)
    if has_wcs:
        hdr.update(w.to_header())
    return hdr


def _file(raw: RawCCD) -> str:
    return raw.path.name if raw.path is not None else "raw file"


def _identity(raw: RawCCD, qid: int, hdr: fits.Header) -> int:
    """Add the keywords IPAC writes into every quadrant product and real raw files lack."""
    for key in ("CCD_ID", "GAIN", "READNOI"):
        if key not in hdr:
            raise RawFormatError("missing_keyword", f"quadrant {qid} lacks {key}", _file(raw))
    if "OBSJD" not in hdr and "OBSMJD" not in hdr:
        raise RawFormatError("missing_keyword", "primary header lacks OBSJD", _file(raw))
    ccdid = int(hdr["CCD_ID"])
    check_ccd_quad(ccdid, qid)
    hdr["QID"] = (qid, "readout quadrant (HDU index of the raw image)")
    hdr["RCID"] = (rcid_of(ccdid, qid), "readout channel id")
    if "EXPID" not in hdr:
        try:
            expid = exposure_id(raw.header, _file(raw))
        except ValueError:
            raise RawFormatError(
                "missing_keyword", "no EXPID and the name is not a ZTF raw name", _file(raw)
            ) from None
        hdr["EXPID"] = (expid, "exposure id (from the file name)")
    if "OBSMJD" not in hdr:
        hdr["OBSMJD"] = (obs_mjd(hdr), "MJD at start of exposure (UTC), from OBSJD")
    return ccdid


def split_quadrant(raw: RawCCD, qid: int, config: SplitConfig | None = None) -> QuadrantImage:
    """Overscan-correct, linearize and trim one quadrant.

    Parameters
    ----------
    raw : RawCCD
    qid : int
        Quadrant 1..4.
    config : SplitConfig or None

    Returns
    -------
    QuadrantImage
        float32 DN with the floating bias removed and the non-linearity corrected; mask flags
        pixels at or above SATURATE (raw DN); variance ``max(data, 0) / gain + (read_noise /
        gain)^2``; header = primary + extension keywords plus ``QID``, ``RCID``, ``EXPID`` and
        ``OBSMJD`` (when absent), ``SATURATE`` (when absent), ``OVSLEVEL`` (median floating bias,
        DN) and ``NLTABLE``/``NLCOEFA``/``NLCOEFB`` (the non-linearity correction applied).
    """
    check_ccd_quad(1, qid)
    cfg = config or SplitConfig()
    raw_img = raw.images[qid]
    ny, nx = raw_img.shape
    fbias = floating_bias(raw.overscans[qid], cfg.overscan)
    hdr = _merged_header(raw, qid, nx, ny)
    ccdid = _identity(raw, qid, hdr)
    table = nonlinearity.table_for_jd(obs_jd(hdr))
    a, b = table.coefficients(ccdid, amp_id(raw.ext_headers[qid], qid))
    data = raw_img.astype(np.float64) - fbias[:, None]
    if cfg.nonlinearity:
        data = nonlinearity.linearize(data, a, b)
        hdr["NLTABLE"] = (table.name, "non-linearity table: DN/(A DN^2 + B DN + 1)")
        hdr["NLCOEFA"] = (a, "non-linearity coefficient A (1/DN^2)")
        hdr["NLCOEFB"] = (b, "non-linearity coefficient B (1/DN)")
    data = data.astype(np.float32)
    if "SATURATE" not in hdr:
        # Real raw files carry no saturation level: take the amplifier's full well from the
        # instrument model, read through the non-linearity (the raw DN the camera records).
        amp = amplifier(ccdid, qid)
        level = amp.bias_level + float(nonlinearity.delinearize(amp.full_well / amp.gain, a, b))
        hdr["SATURATE"] = (round(min(level, ADC_MAX), 1), "saturation level (raw DN), model")
    gain = float(hdr["GAIN"])
    read_noise = float(hdr["READNOI"])
    variance = np.maximum(data, 0.0) / np.float32(gain) + np.float32((read_noise / gain) ** 2)
    image = QuadrantImage(data, variance, header=hdr)
    image.add_mask(raw_img >= float(hdr["SATURATE"]), MaskBit.SATURATED)
    hdr["OVSLEVEL"] = (round(float(np.median(fbias)), 3), "median floating bias (DN)")
    hdr["BUNIT"] = ("DN", "overscan- and non-linearity-corrected DN")
    return image


def quadrant_qa(
    image: QuadrantImage, overscan: np.ndarray, config: OverscanConfig | None = None
) -> dict[str, float]:
    """Quality figures of a split quadrant.

    Parameters
    ----------
    image : QuadrantImage
        Output of :func:`split_quadrant`.
    overscan : ndarray (ny, ncol)
        The quadrant's overscan (science row order).
    config : OverscanConfig or None

    Returns
    -------
    dict
        ``overscan_level`` (median floating bias, DN), ``overscan_noise`` (clipped rms of the good
        overscan after removing the row level, DN), ``saturated_fraction``, ``image_median`` and
        ``image_rms`` (sigma-clipped, DN).
    """
    cfg = config or OverscanConfig()
    fbias = floating_bias(overscan, cfg)
    resid = np.asarray(overscan, np.float64)[:, slice(*cfg.good_cols)] - fbias[:, None]
    _, _, ovs_rms = sigma_clipped_stats(resid, sigma=3.0)
    _, img_med, img_rms = sigma_clipped_stats(image.data, sigma=3.0)
    sat = (image.mask & int(MaskBit.SATURATED)) != 0
    return {
        "overscan_level": float(np.median(fbias)),
        "overscan_noise": float(ovs_rms),
        "saturated_fraction": float(sat.mean()),
        "image_median": float(img_med),
        "image_rms": float(img_rms),
    }
