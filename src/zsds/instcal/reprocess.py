"""zsds's image steps on imported IPAC products (``zsds import``), as pure functions.

An IPAC ``sciimg`` is already bias-subtracted, flat-fielded, astrometrically calibrated (SCAMP
against Gaia, a TPV WCS) and photometrically calibrated (``MAGZP``, ``CLRCOEFF`` against PS1).
:func:`recalibrate_quadrant` runs on it the steps of :func:`zsds.instcal.stage.calibrate_quadrant`
that need no calibration frame -- masks found in the image (saturation, column defects, cosmic
rays), background, extraction, PSF model, PSF-fit photometry -- through the same
:func:`zsds.instcal.stage.measure_sources`; keeps IPAC's WCS; and calibrates the photometry
against PS1 when rows of a PS1 catalogue are given, else **keeps IPAC's calibration**
(:func:`zsds.instcal.stage.input_zero_point`, ``InfoBits.ZP_KEPT``, said in the log) -- a valid
``MAGZP`` is never replaced by -999.

:func:`image_psf` fits the PSF model (and PSF-fit catalogue) of an image zsds did not calibrate
itself -- an imported ``sciimg`` not re-processed, an imported ``refimg`` -- and
:func:`complete_imported` adds what subtraction needs (PSF, catalogue, variance) to such an image,
so that subtraction can use imported products directly; :func:`coverage_mask` is the mask of an
imported reference (IPAC ships none).

No function here reads or writes a file: :mod:`zsds.instcal.run` and :mod:`zsds.diffim.run`
feed them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zsds.core.image import QuadrantImage
from zsds.core.instrument import PIXEL_SCALE, Filter
from zsds.core.masks import BAD_PIXEL_BITS, MASK_DTYPE, MaskBit, mask_header_cards
from zsds.core.photometry import flux_to_mag
from zsds.core.psf import PSFModel
from zsds.core.stats import robust_std
from zsds.ingest.ipac import seeing_arcsec
from zsds.instcal.astrometry import AstrometryResult
from zsds.instcal.detect import estimate_background, extract_sources
from zsds.instcal.masking import saturation_mask
from zsds.instcal.photcal import PhotCalResult, photometric_calibration
from zsds.instcal.stage import (
    InfoBits,
    InstCalConfig,
    InstCalResult,
    StepClock,
    calibrated_catalogs,
    fit_psf_and_photometry,
    measure_sources,
    quadrant_qa,
    zero_point_infobits,
)
from zsds.io.catalogs import PSFCAT_COLUMNS

__all__ = ["STATIC_BITS", "complete_imported", "coverage_mask", "image_psf", "product_psfcat",
           "recalibrate_quadrant", "sky_variance"]

#: IPAC mask bits zsds cannot find again without IPAC's calibration frames and bright-star
#: catalogues: kept from the imported mask. SPIKE, SATURATED and NAN are found again; SOURCE and
#: PSF_SOURCE mark IPAC's own catalogues' sources, which zsds's catalogues replace: dropped.
STATIC_BITS = int(MaskBit.AIRCRAFT_TRACK | MaskBit.LOW_RESPONSIVITY | MaskBit.HIGH_RESPONSIVITY
                  | MaskBit.NOISY | MaskBit.GHOST | MaskBit.SPILLAGE_GHOST | MaskBit.DEAD
                  | MaskBit.HALO)


def _finite_or_zero(image: QuadrantImage) -> tuple[np.ndarray, np.ndarray]:
    """Pixels with NaN set to 0, and where they were NaN."""
    nan = ~np.isfinite(image.data)
    return np.where(nan, np.float32(0.0), image.data).astype(np.float32), nan


def _rms_arcsec(h, key: str) -> float:
    """An astrometric rms keyword in arcsec: SCAMP's (IPAC) are in degrees, zsds's in arcsec."""
    v = h.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v) or v < 0:
        return float("nan")
    return float(v) if "arcsec" in h.comments[key].lower() else float(v) * 3600.0


def product_psfcat(cat: pd.DataFrame, image: QuadrantImage) -> pd.DataFrame:
    """A PSF-fit catalogue (``x, y`` 0-based, ``flux, fluxerr``...) with the psfcat product
    columns (:data:`zsds.io.catalogs.PSFCAT_COLUMNS`: ``xpos, ypos`` 1-based, ``ra, dec`` from
    the WCS, ``sigflux``, ``mag, sigmag`` at the header's ``MAGZP``, ``snr``...; NaN where the
    fit gives nothing)."""
    out = cat.reset_index(drop=True).copy()
    if len(out):
        out["sourceid"] = np.arange(1, len(out) + 1)
        out["xpos"], out["ypos"] = out["x"] + 1.0, out["y"] + 1.0
        out["sigflux"] = out["fluxerr"]
        out["snr"] = out["flux"] / out["fluxerr"]
        zp = image.header.get("MAGZP", np.nan)
        out["mag"], out["sigmag"] = flux_to_mag(out["flux"].to_numpy(), out["fluxerr"].to_numpy(),
                                                float(zp) if zp != -999 else np.nan)
        if image.wcs is not None:
            out["ra"], out["dec"] = image.wcs.all_pix2world(out["x"].to_numpy(),
                                                            out["y"].to_numpy(), 0)
    for col in PSFCAT_COLUMNS:
        if col not in out:
            out[col] = np.full(len(out), np.nan)
    return out


def image_psf(image: QuadrantImage, config: InstCalConfig | None = None
              ) -> tuple[PSFModel | None, pd.DataFrame]:
    """PSF model and PSF-fit catalogue of an image that has no zsds PSF (an imported product).

    Background, extraction, PSF model and PSF-fit photometry as zsds's calibration does them
    (:func:`zsds.instcal.stage.fit_psf_and_photometry`), on the image as it is: its mask (bad
    bits), non-finite pixels and, with ``SATURATE`` in the header, saturated ones left out.

    Parameters
    ----------
    image : QuadrantImage
        Pixels with or without sky, mask, WCS (for ``ra``/``dec``), header (``SATURATE``; and
        ``GAIN``/``READNOI`` when ``variance`` is None).
    config : InstCalConfig, optional
        The detection, PSF-star and PSF-fit settings (default ``InstCalConfig()``).

    Returns
    -------
    psf : PSFModel or None
        None when fewer than 3 usable stars.
    psfcat : DataFrame
        :func:`product_psfcat` columns.
    """
    config = config or InstCalConfig()
    data, nan = _finite_or_zero(image)
    mask = image.mask.astype(MASK_DTYPE, copy=True)
    mask[nan] |= MASK_DTYPE(int(MaskBit.NAN))
    h = image.header
    saturate = float(h["SATURATE"]) if "SATURATE" in h else np.inf
    if np.isfinite(saturate):
        mask[saturation_mask(data, saturate, config.mask)] |= MASK_DTYPE(int(MaskBit.SATURATED))
    bad = (mask & BAD_PIXEL_BITS) != 0
    bkg = estimate_background(data, bad, config.detect)
    sub = np.where(bad, np.float32(0.0), data - bkg.level).astype(np.float32)
    if image.variance is not None:
        variance = np.where(bad, np.float32(1e30), image.variance).astype(np.float32)
    elif "GAIN" in h and "READNOI" in h:
        gain, rn = float(h["GAIN"]), float(h["READNOI"])
        variance = (np.maximum(data, 0.0) / gain + (rn / gain) ** 2).astype(np.float32)
    else:  # no noise model at all: the sky's
        variance = np.full(data.shape, np.float32(bkg.global_rms) ** 2, np.float32)
    sexcat = extract_sources(sub, bkg, mask, config.detect)
    psf, cat = fit_psf_and_photometry(sub, variance, bad, mask, sexcat,
                                      saturate - bkg.global_level, config)
    return psf, product_psfcat(cat, image)


def complete_imported(image: QuadrantImage, psfcat: pd.DataFrame | None,
                      config: InstCalConfig | None = None
                      ) -> tuple[QuadrantImage, pd.DataFrame]:
    """What subtraction needs of an imported image that zsds did not calibrate.

    A PSF model fitted now (:func:`image_psf`) when ``image.psf`` is None; the PSF fit's
    catalogue when ``psfcat`` is None (no IPAC psfcat imported); a variance from the sky noise
    when the image has none and its header no ``GAIN``/``READNOI`` (a reference without its
    ``refunc``). ``image`` is completed in place and returned.

    Raises
    ------
    ValueError
        When no PSF can be fitted (fewer than 3 usable stars).
    """
    h = image.header
    if image.variance is None and not ("GAIN" in h and "READNOI" in h):
        image.variance = sky_variance(image.data, image.mask)
    if image.psf is None:
        psf, fitted = image_psf(image, config)
        if psf is None:
            raise ValueError("no PSF could be fitted to the imported image (too few stars)")
        image.psf = psf
        psfcat = fitted if psfcat is None else psfcat
    if psfcat is None:
        psfcat = product_psfcat(pd.DataFrame(), image)
    return image, psfcat


def sky_variance(data: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """A constant variance map: the squared robust (MAD) rms of the good finite pixels."""
    good = np.isfinite(data)
    if mask is not None:
        good &= (np.asarray(mask) & BAD_PIXEL_BITS) == 0
    rms = robust_std(data[::2, ::2][good[::2, ::2]].astype(np.float64))
    if not np.isfinite(rms):
        raise ValueError("no good pixel to measure the sky noise on")
    return np.full(data.shape, np.float32(rms**2), np.float32)


def coverage_mask(data: np.ndarray, coverage: np.ndarray | None = None) -> np.ndarray:
    """Mask of an imported reference image: ``NAN`` where a pixel is not finite or no input
    covers it (as zsds's own co-adds mark them)."""
    empty = ~np.isfinite(data)
    if coverage is not None:
        empty |= ~(np.asarray(coverage) > 0)
    return np.where(empty, MASK_DTYPE(int(MaskBit.NAN)), MASK_DTYPE(0)).astype(MASK_DTYPE)


def recalibrate_quadrant(
    image: QuadrantImage,
    ps1: pd.DataFrame | None,
    config: InstCalConfig | None = None,
    ps1_note: str = "no PS1 catalogue",
) -> InstCalResult:
    """zsds's masks, PSF and catalogs of an imported IPAC science quadrant.

    Parameters
    ----------
    image : QuadrantImage
        The IPAC ``sciimg`` (flat-fielded DN with the sky), its IPAC ``mskimg`` as ``mask``
        (zeros when none was imported), its WCS (TPV) and header (``GAIN``, ``READNOI``,
        ``SATURATE``, ``FILTERID``, ``SEEING``, ``MAGZP``...).
    ps1 : DataFrame or None
        PS1 DR2 rows covering the quadrant; None (or empty) when no catalogue could answer.
    config : InstCalConfig, optional
        Default ``InstCalConfig()``.
    ps1_note : str
        Why ``ps1`` is None (the catalogue's error), for the log.

    Returns
    -------
    InstCalResult
        The image with zsds's mask (:data:`STATIC_BITS` of IPAC's, then saturation, NaN,
        column defects and cosmic rays found again), PSF, header (IPAC's, with zsds's
        ``INFOBITS``, ``SEEING`` in arcsec, ``MAGLIM``, ``SKYLEVEL``, ``SKYSIG``, ``MBIT_nn``,
        ``ZPSOURCE``; IPAC's own values kept as ``INFOIPAC`` and ``SEEIPAC``; IPAC's INFOBITS
        definitions ``BITnn`` removed), catalogues, the kept astrometry and the photometric
        calibration (a new PS1 fit, or IPAC's kept: ``InfoBits.ZP_KEPT``).
    """
    config = config or InstCalConfig()
    tick = StepClock()
    hdr = image.header.copy()
    gain, rn, saturate = float(hdr["GAIN"]), float(hdr["READNOI"]), float(hdr["SATURATE"])
    filt = Filter.parse(int(hdr["FILTERID"]))
    pixscale = float(hdr.get("PIXSCALE", PIXEL_SCALE))
    seeing_in = seeing_arcsec(hdr)
    data, nan = _finite_or_zero(image)
    mask = (image.mask.astype(np.int64) & STATIC_BITS).astype(MASK_DTYPE)
    sat = saturation_mask(data, saturate, config.mask)
    mask[sat] |= MASK_DTYPE(int(MaskBit.SATURATED))
    mask[nan] |= MASK_DTYPE(int(MaskBit.NAN))
    variance = (np.maximum(data, 0.0) / gain + (rn / gain) ** 2).astype(np.float32)
    tick("masks")
    m = measure_sources(data, variance, mask, gain, rn, saturate,
                        (seeing_in or 2.0) / pixscale, config, tick)
    mask, bkg, sexcat, psf, psfcat = m.mask, m.background, m.sexcat, m.psf, m.psfcat
    infobits = 0
    if len(sexcat) == 0:
        infobits |= InfoBits.NO_SOURCES
    if len(sexcat) and (psf is None or getattr(psf, "degree", 1) == 0):
        infobits |= InfoBits.FEW_PSF_STARS
    wcs = image.wcs
    if wcs is None:
        raise ValueError("the imported image has no WCS")
    astro = AstrometryResult(wcs, True, f"kept the input's astrometric solution "
                                        f"({hdr.get('CTYPE1', '?')})",
                             n_matches=int(hdr.get("ASTROMN", 0) or 0),
                             rms_ra_arcsec=_rms_arcsec(hdr, "ASTRRMS1"),
                             rms_dec_arcsec=_rms_arcsec(hdr, "ASTRRMS2"))
    tick("astrometry")
    if len(psfcat):
        ra, dec = wcs.all_pix2world(psfcat["x"].to_numpy(), psfcat["y"].to_numpy(), 0)
        psfcat["ra"], psfcat["dec"] = ra, dec
        if ps1 is not None and len(ps1):
            minst, einst = flux_to_mag(psfcat["flux"].to_numpy(), psfcat["fluxerr"].to_numpy(),
                                       0.0)
            phot = photometric_calibration(minst, einst, ra, dec, ps1, filt, config.photcal)
        else:
            phot = PhotCalResult(False, ps1_note)
    else:
        phot = PhotCalResult(False, "no sources")
    phot, zp_bits = zero_point_infobits(phot, hdr, filt, data.size)
    infobits |= zp_bits
    tick("photcal")
    calibrated_catalogs(psfcat, sexcat, wcs, phot.magzp if phot.ok else np.nan)
    qa = quadrant_qa(data.shape, psf, bkg, phot, astro, sexcat, psfcat, sat, pixscale)
    if qa["satfrac"] > 0.02:
        infobits |= InfoBits.HIGH_SATURATION
    qa["input_seeing"] = seeing_in if seeing_in is not None else np.nan
    # Header: IPAC's, with zsds's quality keywords; IPAC's own values kept under other names.
    if "INFOIPAC" not in hdr:
        hdr["INFOIPAC"] = (int(hdr.get("INFOBITS", 0) or 0), "INFOBITS as IPAC wrote it")
        for key in [k for k in hdr if len(k) == 5 and k.startswith("BIT") and k[3:].isdigit()]:
            hdr.remove(key, ignore_missing=True, remove_all=True)  # IPAC's INFOBITS table
    if "SEEIPAC" not in hdr and "SEEING" in hdr:
        unit = "pixels" if "pix" in hdr.comments["SEEING"].lower() else "as its comment said"
        hdr["SEEIPAC"] = (hdr["SEEING"], f"SEEING as IPAC wrote it ({unit})")
    if infobits & InfoBits.ZP_KEPT:
        hdr["ZPSOURCE"] = ("input", "zero point kept from the imported image")
    elif phot.ok:
        for card in phot.header_cards():
            hdr[card[0]] = card[1:]
        hdr["ZPSOURCE"] = ("zsds", "zero point fitted by zsds against PS1")
    hdr["SEEING"] = (round(qa["seeing"], 3) if np.isfinite(qa["seeing"]) else -999.0,
                     "PSF FWHM at the image centre (arcsec)")
    hdr["MAGLIM"] = (round(qa["maglim"], 3) if np.isfinite(qa["maglim"]) else -999.0,
                     "5-sigma point-source limiting magnitude")
    hdr["INFOBITS"] = (int(infobits), "zsds quality bits (0 = good; >= 2**25 bad data)")
    hdr["SKYLEVEL"] = (round(bkg.global_level, 3), "median sky (DN)")
    hdr["SKYSIG"] = (round(bkg.global_rms, 3), "sky rms (DN)")
    for name, value, comment in mask_header_cards():
        hdr[name] = (value, comment)
    tick("qa")
    out = QuadrantImage(data, variance, mask, wcs, psf, hdr, image.id)
    return InstCalResult(out, psfcat, sexcat, astro, phot, qa, infobits, tick.durations())


