"""Instrumental calibration of one science quadrant (pipeline 5), as a pure stage.

``calibrate_quadrant`` takes the overscan-corrected quadrant, its calibration frames and the
reference catalogs, and returns the calibrated image (pixels, variance, mask, WCS, PSF, header)
with its PSF-fit and aperture catalogs and QA. It does no I/O; :mod:`zsds.instcal.run` feeds it
from the archive and writes the products.

Steps, in the order of IPAC's ``instrphotcal``: bias subtraction, flat-fielding (high-nu x
static low-nu), mask building (calibration defects, saturation and bleeds, cosmic rays),
background, source extraction (aperture catalogue), PSF estimation, PSF-fit photometry,
astrometric calibration against the Gaia-like catalog (TAN-SIP), photometric calibration against
the PS1-like catalog (ZP + colour term), QA (seeing, limiting magnitude, INFOBITS).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS

from zsds.core.image import QuadrantImage
from zsds.core.instrument import PIXEL_SCALE, Filter
from zsds.core.masks import BAD_PIXEL_BITS, MASK_DTYPE, MaskBit, mask_header_cards
from zsds.core.photometry import flux_to_mag
from zsds.core.psf import MoffatFieldPSF
from zsds.instcal.astrometry import AstrometryConfig, AstrometryResult, solve_astrometry
from zsds.instcal.detect import (
    Background,
    DetectConfig,
    estimate_background,
    extract_sources,
    mask_flags,
)
from zsds.instcal.masking import (
    MaskConfig,
    column_defect_mask,
    cosmic_ray_mask,
    saturation_mask,
)
from zsds.instcal.moffat import MoffatPSFConfig, build_moffat_psf
from zsds.instcal.photcal import PhotCalConfig, PhotCalResult, photometric_calibration
from zsds.instcal.psf import PSFConfig, select_psf_stars
from zsds.instcal.psfphot import PSFPhotConfig, psf_photometry


class InfoBits:
    """INFOBITS of a science image: 0 = clean; any bit >= 2**25 marks the image as bad data.

    The real bit table is not public (ZTF_REFERENCE 1.7); these are zsds's, documented in
    ``docs/products/sci.md``.
    """

    FEW_PSF_STARS = 1 << 0  # PSF model fell back to a constant (too few stars)
    HIGH_ZP_RMS = 1 << 1  # calibrator residual rms above the cloudy threshold
    FEW_CALIBRATORS = 1 << 2  # NMATCHES below the cloudy threshold
    HIGH_ASTROM_RMS = 1 << 3  # astrometric rms above 0.1 arcsec per axis
    HIGH_SATURATION = 1 << 4  # more than 2% of pixels saturated
    NO_LOWNU_FLAT = 1 << 5  # no static low-frequency flat: high-nu flat only
    LOW_TRANSPARENCY = 1 << 6  # MAGZP more than CLOUD_MAG below the clear-sky zero point
    ZP_KEPT = 1 << 7  # no zero-point fit possible: the input's valid calibration was kept
    ASTROMETRY_FAILED = 1 << 25
    PHOTCAL_FAILED = 1 << 26
    NO_SOURCES = 1 << 27


#: IPAC "cloudy" thresholds (fpbot calc_cloudy): MAGZPRMS and NMATCHES per filter.
CLOUDY = {Filter.g: (0.06, 80), Filter.r: (0.05, 120), Filter.i: (0.06, 100)}
#: Cloud extinction (mag) beyond which an image gets LOW_TRANSPARENCY.
CLOUD_MAG = 0.5


def input_zero_point(header: fits.Header, reason: str) -> PhotCalResult | None:
    """The photometric calibration an input image already carries, or None.

    An imported IPAC ``sciimg`` holds IPAC's PS1 calibration (``MAGZP``, ``MAGZPUNC``,
    ``MAGZPRMS``, ``CLRCOEFF``, ``CLRCOUNC``, ``ZPCLRCOV``, ``ZPMED``, ``NMATCHES``, ``CLRMED``,
    ``CLRRMS``, ``PCOLOR``). When zsds cannot fit its own (no reference catalogue, too few
    calibrators), that calibration is kept rather than replaced by -999.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The input image's header.
    reason : str
        Why zsds's own fit is not available (the failed fit's message), for the log.

    Returns
    -------
    PhotCalResult or None
        ``ok=True`` with the header's values and a message saying they were kept; None when
        the header has no valid ``MAGZP`` (absent, not finite, -999 or outside 0-50).
    """

    def value(key: str) -> float:
        v = header.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float | np.number):
            return np.nan
        return float(v) if np.isfinite(v) and v != -999.0 else np.nan

    zp = value("MAGZP")
    if not 0.0 < zp < 50.0:
        return None
    nmatch = value("NMATCHES")
    return PhotCalResult(
        True, f"{reason}: kept the input's calibration, MAGZP {zp:.4f} +- "
              f"{value('MAGZPUNC'):.4f}, CLRCOEFF {value('CLRCOEFF'):.4f}",
        magzp=zp, magzpunc=value("MAGZPUNC"), magzprms=value("MAGZPRMS"),
        clrcoeff=value("CLRCOEFF"), clrcounc=value("CLRCOUNC"), zpclrcov=value("ZPCLRCOV"),
        zpmed=value("ZPMED"), nmatches=int(nmatch) if np.isfinite(nmatch) else 0,
        clrmed=value("CLRMED"), clrrms=value("CLRRMS"),
        pcolor=str(header.get("PCOLOR", "")).strip())


@dataclass(frozen=True)
class InstCalConfig:
    """Options of the instrumental-calibration stage (one sub-config per step)."""

    mask: MaskConfig = field(default_factory=MaskConfig)  #: saturation, bleeds, column defects, CRs
    detect: DetectConfig = field(default_factory=DetectConfig)  #: background, aperture catalogue
    psf_select: PSFConfig = field(default_factory=PSFConfig)  #: PSF stars among the detections
    psf: MoffatPSFConfig = field(default_factory=MoffatPSFConfig)  #: spatially varying Moffat PSF
    psfphot: PSFPhotConfig = field(default_factory=PSFPhotConfig)  #: PSF-fit photometry
    astrometry: AstrometryConfig = field(default_factory=AstrometryConfig)  #: TAN-SIP vs Gaia-like
    photcal: PhotCalConfig = field(default_factory=PhotCalConfig)  #: ZP, colour term vs PS1
    psffit_min_snr: float = 3.0  #: keep PSF fits at or above this S/N (every detection is fitted)


@dataclass
class CalibrationFrames:
    """Calibration inputs of one quadrant (science orientation, same shape as the image)."""

    bias: np.ndarray  #: master bias (DN), subtracted from the raw data
    bias_mask: np.ndarray | None  #: bool: noisy/hot pixels of the bias (flagged NOISY)
    flat: np.ndarray  #: high-frequency flat the data are divided by (<= 0.05: DEAD)
    flat_mask: np.ndarray | None  #: ZTF mask bits (dead, low/high responsivity, noisy)
    lownu: np.ndarray | None = None  #: low-frequency flat multiplied in (None: NO_LOWNU_FLAT)


@dataclass
class InstCalResult:
    """Products of :func:`calibrate_quadrant`."""

    image: QuadrantImage  #: calibrated image (DN, variance, mask, WCS, PSF, header)
    psfcat: pd.DataFrame  #: PSF-fit catalogue, calibrated magnitudes
    sexcat: pd.DataFrame  #: aperture (SExtractor-like) catalogue
    astrometry: AstrometryResult  #: astrometric solution (TAN-SIP)
    photcal: PhotCalResult  #: zero point and colour term (or the input's kept)
    qa: dict[str, float]  #: quadrant QA values (:func:`quadrant_qa`)
    infobits: int  #: quality bits (INFOBITS; 0 = good)
    timings: dict[str, float]  #: seconds per step (:class:`StepClock`)


@dataclass
class SourceMeasurement:
    """What :func:`measure_sources` finds on a flat-fielded quadrant."""

    mask: np.ndarray  #: input mask with column defects (NOISY/LOW_RESPONSIVITY) and SPIKE
    background: Background  #: sky background estimate
    sexcat: pd.DataFrame  #: aperture (SExtractor-like) catalogue
    psf: MoffatFieldPSF | None  #: fitted Moffat PSF (None: fewer than 3 usable stars)
    psfcat: pd.DataFrame  #: PSF-fit catalogue


class StepClock:
    """Wall-clock times of a stage's steps: call it with each step's name as the step ends;
    :meth:`durations` gives the seconds each took (from the previous step's end, the first from
    the clock's creation)."""

    def __init__(self) -> None:
        self._ends = {"start": time.perf_counter()}

    def __call__(self, name: str) -> None:
        self._ends[name] = time.perf_counter()

    def durations(self) -> dict[str, float]:
        """Seconds of each step, by name, in the order the steps first ended."""
        names = list(self._ends)
        return {names[k]: self._ends[names[k]] - self._ends[names[k - 1]]
                for k in range(1, len(names))}


class PSFStepsConfig(Protocol):
    """The options :func:`fit_psf_and_photometry` reads (``InstCalConfig``, ``RefBuildConfig``)."""

    psf_select: PSFConfig
    psf: MoffatPSFConfig
    psfphot: PSFPhotConfig
    psffit_min_snr: float


def calibrated_catalogs(psfcat: pd.DataFrame, sexcat: pd.DataFrame, wcs: WCS,
                        zp: float) -> None:
    """Magnitudes at zero point ``zp`` in both catalogues (in place): ``mag``, ``sigmag``,
    ``snr`` of the PSF-fit catalogue; ``ra``, ``dec``, ``mag_auto``, ``magerr_auto`` of the
    extraction catalogue (NaN magnitudes when ``zp`` is NaN)."""
    if len(psfcat):
        psfcat["mag"], psfcat["sigmag"] = flux_to_mag(psfcat["flux"].to_numpy(),
                                                      psfcat["fluxerr"].to_numpy(), zp)
        psfcat["snr"] = psfcat["flux"] / psfcat["fluxerr"]
    if len(sexcat):
        sra, sdec = wcs.all_pix2world(sexcat["x"].to_numpy(), sexcat["y"].to_numpy(), 0)
        sexcat["ra"], sexcat["dec"] = sra, sdec
        sexcat["mag_auto"], sexcat["magerr_auto"] = flux_to_mag(
            sexcat["flux_auto"].to_numpy(), sexcat["fluxerr_auto"].to_numpy(), zp)


def zero_point_infobits(phot: PhotCalResult, header: fits.Header, filt: Filter,
                        npix: int) -> tuple[PhotCalResult, int]:
    """The photometric calibration an image keeps, and the INFOBITS it sets.

    A failed fit gives way to the calibration the input carries (:func:`input_zero_point`,
    ``ZP_KEPT``); with none, ``PHOTCAL_FAILED``. A zero point fitted here is checked against
    IPAC's cloudy thresholds (:data:`CLOUDY`; the NMATCHES one, set for a full 3072 x 3080
    quadrant, scaled with the area ``npix`` in pixels): ``HIGH_ZP_RMS``, ``FEW_CALIBRATORS``.
    """
    infobits = 0
    if not phot.ok and (kept := input_zero_point(header, phot.message)) is not None:
        phot = kept  # never -999 over a valid zero point the input carries
        infobits |= InfoBits.ZP_KEPT
    if not phot.ok:
        infobits |= InfoBits.PHOTCAL_FAILED
    elif not infobits & InfoBits.ZP_KEPT:
        rms_cut, n_cut = CLOUDY[filt]
        n_cut = max(10, int(n_cut * npix / (3072 * 3080)))
        if phot.magzprms > rms_cut:
            infobits |= InfoBits.HIGH_ZP_RMS
        if phot.nmatches < n_cut:
            infobits |= InfoBits.FEW_CALIBRATORS
    return phot, infobits


def quadrant_qa(shape: tuple[int, int], psf: MoffatFieldPSF | None, bkg: Background,
                phot: PhotCalResult, astro: AstrometryResult, sexcat: pd.DataFrame,
                psfcat: pd.DataFrame, saturated: np.ndarray,
                pixscale: float = PIXEL_SCALE) -> dict[str, float]:
    """QA of a calibrated quadrant of ``shape`` (ny, nx): seeing (arcsec at ``pixscale``
    arcsec/pixel) and FWHMs at the centre, 5-sigma limiting magnitude (NaN without a zero
    point), sky, catalogue sizes, saturated fraction, astrometric rms and the PSF's
    noise-equivalent area ``n_eff`` (pixels)."""
    ny, nx = shape
    fwhm_px, fwhm_eff, n_eff = np.nan, np.nan, np.nan
    if psf is not None:
        fwhm_px = float(psf.fwhm_at(nx / 2, ny / 2))
        # As recorded by the detector (convolved with the pixel): what IPAC's SEEING measures.
        fwhm_eff = float(psf.measured_fwhm(nx / 2, ny / 2))
        n_eff = 1.0 / float(np.sum(psf.stamp(nx / 2, ny / 2, 31) ** 2))
    maglim = (phot.magzp - 2.5 * np.log10(5.0 * bkg.global_rms * np.sqrt(n_eff)) if phot.ok
              else np.nan)
    return {
        "seeing": fwhm_px * pixscale, "fwhm_px": fwhm_px, "fwhm_eff_px": fwhm_eff,
        "maglim": float(maglim),
        "sky": bkg.global_level, "skyrms": bkg.global_rms, "nsexcat": len(sexcat),
        "npsfcat": len(psfcat), "satfrac": float(saturated.mean()),
        "astrom_rms_ra": astro.rms_ra_arcsec, "astrom_rms_dec": astro.rms_dec_arcsec,
        "astrom_nmatch": astro.n_matches, "n_eff": n_eff,
    }


def fit_psf_and_photometry(
    sub: np.ndarray,
    variance: np.ndarray,
    bad: np.ndarray,
    mask: np.ndarray,
    sexcat: pd.DataFrame,
    star_saturate: float,
    config: PSFStepsConfig,
    tick: Callable[[str], None] = lambda _name: None,
) -> tuple[MoffatFieldPSF | None, pd.DataFrame]:
    """PSF model from the catalogue's good stars, then PSF-fit photometry of every detection.

    The one implementation for science quadrants and references.

    Parameters
    ----------
    sub, variance : ndarray (ny, nx)
        Background-subtracted image and its variance.
    bad, mask : ndarray (ny, nx)
        Bad pixels (bool) and the ZTF mask bits (for the catalogue ``flags``).
    sexcat : DataFrame
        The aperture catalogue (``x, y, flux_auto, peak``).
    star_saturate : float
        PSF stars peak below this (DN above the background).
    config : PSFStepsConfig
    tick : callable
        Called with ``"psf"`` and ``"psfphot"`` as each step ends.

    Returns
    -------
    psf : MoffatFieldPSF or None
        None when no PSF could be built (fewer than 3 usable stars).
    psfcat : DataFrame
        Fits above ``config.psffit_min_snr``; the fit's own flags as ``fitflags``, ``flags`` the
        mask OR around each position (empty without a PSF).
    """
    psf = None
    if len(sexcat):
        stars = select_psf_stars(sub, bad, sexcat["x"].to_numpy(), sexcat["y"].to_numpy(),
                                 sexcat["flux_auto"].to_numpy(), sexcat["peak"].to_numpy(),
                                 star_saturate, config.psf_select)
        try:
            psf = build_moffat_psf(sub, variance, bad, sexcat["x"].to_numpy()[stars],
                                   sexcat["y"].to_numpy()[stars], config.psf)
        except ValueError:
            psf = None
    tick("psf")
    psfcat = pd.DataFrame()
    if psf is not None:
        # Every detection is PSF-fitted (an aperture S/N cut would drop faint point sources
        # whose Kron aperture is noisy); the catalogue keeps fits above the S/N threshold.
        psfcat = psf_photometry(sub, variance, bad, psf, sexcat["x"].to_numpy(),
                                sexcat["y"].to_numpy(), config.psfphot)
        snr = psfcat["flux"] / psfcat["fluxerr"]
        psfcat = psfcat[np.isfinite(snr) & (snr >= config.psffit_min_snr)].reset_index(drop=True)
        psfcat = psfcat.rename(columns={"flags": "fitflags"})
        psfcat["flags"] = mask_flags(mask, psfcat["x"].to_numpy(), psfcat["y"].to_numpy())
    return psf, psfcat


def measure_sources(
    data: np.ndarray,
    variance: np.ndarray,
    mask: np.ndarray,
    gain: float,
    read_noise: float,
    saturate: float,
    seeing_px: float,
    config: InstCalConfig = InstCalConfig(),
    tick: Callable[[str], None] = lambda _name: None,
) -> SourceMeasurement:
    """Masks found in the image, background, extraction, PSF and PSF-fit photometry.

    The steps of :func:`calibrate_quadrant` after flat-fielding, on any flat-fielded quadrant
    with the sky in it: zsds's own or an IPAC ``sciimg`` with its ``mskimg`` (the real-data
    checks, ``zsds eval real``).

    Parameters
    ----------
    data, variance : ndarray (ny, nx)
        Flat-fielded image with its background (DN) and its variance (DN^2).
    mask : ndarray (ny, nx)
        ZTF mask bits known so far (calibration defects, saturation); not modified.
    gain, read_noise : float
        e-/DN and e-.
    saturate : float
        Saturation level of ``data`` (DN).
    seeing_px : float
        A first guess of the FWHM (pixels), before the PSF is known.
    config : InstCalConfig
    tick : callable
        Called with each step's name as it ends (timings).
    """
    mask = mask.astype(MASK_DTYPE, copy=True)
    if config.mask.columns:  # hot/low column segments the calibration frames miss
        bad = (mask & BAD_PIXEL_BITS) != 0
        noise = float(np.sqrt(np.median(variance[::4, ::4][~bad[::4, ::4]])))
        hot_cols, low_cols = column_defect_mask(data, bad, noise, config.mask)
        mask[hot_cols] |= MASK_DTYPE(int(MaskBit.NOISY))
        mask[low_cols] |= MASK_DTYPE(int(MaskBit.LOW_RESPONSIVITY))
    # Cosmic rays on the flat-fielded frame (the PSF is not known yet: a seeing guess)
    bad = (mask & BAD_PIXEL_BITS) != 0
    if config.mask.cosmic_rays:
        cr = cosmic_ray_mask(data, bad, gain, read_noise, saturate, config.mask, seeing_px)
        mask[cr & ~bad] |= MASK_DTYPE(int(MaskBit.SPIKE))
    tick("cosmics")
    # Background and extraction
    bad = (mask & BAD_PIXEL_BITS) != 0
    bkg = estimate_background(data, bad, config.detect)
    sub = (data - bkg.level).astype(np.float32)
    sexcat = extract_sources(sub, bkg, mask, config.detect)
    tick("extract")
    # PSF model and PSF-fit photometry
    psf, psfcat = fit_psf_and_photometry(sub, variance, bad, mask, sexcat,
                                         saturate - bkg.global_level, config, tick)
    tick("psfphot")
    return SourceMeasurement(mask, bkg, sexcat, psf, psfcat)


def calibrate_quadrant(
    quad: QuadrantImage,
    frames: CalibrationFrames,
    gaia: pd.DataFrame,
    ps1: pd.DataFrame,
    config: InstCalConfig = InstCalConfig(),
) -> InstCalResult:
    """Calibrate one overscan-corrected quadrant.

    Parameters
    ----------
    quad : QuadrantImage
        Output of :func:`zsds.split.split_quadrant` (DN, science orientation, header with the
        camera's approximate WCS and GAIN/READNOI/SATURATE/OVSLEVEL).
    frames : CalibrationFrames
    gaia, ps1 : DataFrame
        Reference-catalog rows covering the quadrant.
    config : InstCalConfig

    Returns
    -------
    InstCalResult
    """
    tick = StepClock()

    hdr = quad.header.copy()
    gain, rn = float(hdr["GAIN"]), float(hdr["READNOI"])
    filt = Filter.parse(int(hdr["FILTERID"]))
    mjd = float(hdr["OBSMJD"]) + 0.5 * float(hdr["EXPTIME"]) / 86400.0
    # 1-3. bias, flat (hi-nu x static low-nu)
    flat = frames.flat * (frames.lownu if frames.lownu is not None else 1.0)
    okflat = flat > 0.05
    raw_sub = quad.data - frames.bias
    data = np.where(okflat, raw_sub / np.where(okflat, flat, 1.0), 0.0).astype(np.float32)
    variance = ((np.maximum(raw_sub, 0.0) / gain + (rn / gain) ** 2)
                / np.where(okflat, flat, 1.0) ** 2).astype(np.float32)
    saturate = float(hdr["SATURATE"]) - float(hdr.get("OVSLEVEL", 0.0))
    mask = np.zeros(quad.shape, MASK_DTYPE)
    if frames.flat_mask is not None:
        mask |= frames.flat_mask.astype(MASK_DTYPE)
    if frames.bias_mask is not None:
        mask[frames.bias_mask] |= MASK_DTYPE(int(MaskBit.NOISY))
    mask[~okflat] |= MASK_DTYPE(int(MaskBit.DEAD))
    sat = saturation_mask(raw_sub, saturate - float(np.median(frames.bias)), config.mask)
    sat |= (quad.mask & int(MaskBit.SATURATED)) != 0
    mask[sat] |= MASK_DTYPE(int(MaskBit.SATURATED))
    nan = ~np.isfinite(data)
    mask[nan] |= MASK_DTYPE(int(MaskBit.NAN))
    data[nan] = 0.0
    tick("flatfield")
    sat_level = saturate - float(np.median(frames.bias))
    m = measure_sources(data, variance, mask, gain, rn, sat_level,
                        float(hdr.get("SEEING", 2.0)) / PIXEL_SCALE, config, tick)
    mask, bkg, sexcat, psf, psfcat = m.mask, m.background, m.sexcat, m.psf, m.psfcat
    infobits = 0 if frames.lownu is not None else InfoBits.NO_LOWNU_FLAT
    if len(sexcat) == 0:
        infobits |= InfoBits.NO_SOURCES
    if len(sexcat) and (psf is None or psf.degree == 0):
        infobits |= InfoBits.FEW_PSF_STARS
    # 9. astrometry (Gaia-like) from the camera's approximate WCS
    wcs0 = WCS(hdr)
    if len(psfcat):
        good = np.isfinite(psfcat["flux"]) & (psfcat["flux"] > 0)
        cat = psfcat[good]
        astro = solve_astrometry(cat["x"].to_numpy(), cat["y"].to_numpy(),
                                 cat["flux"].to_numpy(), quad.shape, wcs0, gaia, mjd,
                                 config.astrometry)
    else:
        astro = AstrometryResult(None, False, "no sources")
    if not astro.ok:
        infobits |= InfoBits.ASTROMETRY_FAILED
    elif max(astro.rms_ra_arcsec, astro.rms_dec_arcsec) > 0.1:
        infobits |= InfoBits.HIGH_ASTROM_RMS
    wcs = astro.wcs if astro.ok else wcs0
    tick("astrometry")
    # 10. photometric calibration (PS1-like)
    if len(psfcat):
        ra, dec = wcs.all_pix2world(psfcat["x"].to_numpy(), psfcat["y"].to_numpy(), 0)
        psfcat["ra"], psfcat["dec"] = ra, dec
        minst, einst = flux_to_mag(psfcat["flux"].to_numpy(), psfcat["fluxerr"].to_numpy(), 0.0)
        phot = (photometric_calibration(minst, einst, ra, dec, ps1, filt, config.photcal)
                if astro.ok else PhotCalResult(False, "no astrometric solution"))
    else:
        phot = PhotCalResult(False, "no sources")
    phot, zp_bits = zero_point_infobits(phot, hdr, filt, quad.data.size)
    infobits |= zp_bits
    if phot.ok and not infobits & InfoBits.ZP_KEPT:
        # Clear-sky zero point of this filter, amplifier, exposure time and airmass.
        p = filt.props
        zp_clear = (p.zp_e_per_s + 2.5 * np.log10(float(hdr["EXPTIME"]))
                    - p.extinction * float(hdr.get("AIRMASS", 1.0)) - 2.5 * np.log10(gain))
        if phot.magzp < zp_clear - CLOUD_MAG:
            infobits |= InfoBits.LOW_TRANSPARENCY
    tick("photcal")
    # 11. catalogs with calibrated magnitudes, QA
    calibrated_catalogs(psfcat, sexcat, wcs, phot.magzp if phot.ok else np.nan)
    qa = quadrant_qa(quad.shape, psf, bkg, phot, astro, sexcat, psfcat, sat)
    if qa["satfrac"] > 0.02:
        infobits |= InfoBits.HIGH_SATURATION
    # Header of the science image
    for key in list(hdr.keys()):
        if key.startswith(("CTYPE", "CRPIX", "CRVAL", "CD1_", "CD2_", "PC1_", "PC2_", "CDELT",
                           "CUNIT", "A_", "B_", "AP_", "BP_", "LONPOLE", "LATPOLE", "WCSAXES",
                           "RADESYS", "EQUINOX", "MJDREF")):
            hdr.remove(key, ignore_missing=True, remove_all=True)
    hdr.update(wcs.to_header(relax=True))
    if not infobits & InfoBits.ZP_KEPT:  # a kept calibration keeps its own cards
        for card in phot.header_cards():
            hdr[card[0]] = card[1:]
    hdr["SEEING"] = (round(qa["seeing"], 3) if np.isfinite(qa["seeing"]) else -999.0,
                     "PSF FWHM at the image centre (arcsec)")
    hdr["MAGLIM"] = (round(qa["maglim"], 3) if np.isfinite(qa["maglim"]) else -999.0,
                     "5-sigma point-source limiting magnitude")
    hdr["INFOBITS"] = (int(infobits), "quality bits (0 = good; >= 2**25 = bad data)")
    hdr["SATURATE"] = (round(saturate - float(np.median(frames.bias)), 1),
                       "saturation level of this image (DN)")
    hdr["SKYLEVEL"] = (round(bkg.global_level, 3), "median sky (DN)")
    hdr["SKYSIG"] = (round(bkg.global_rms, 3), "sky rms (DN)")
    hdr["ASTRRMS1"] = (round(astro.rms_ra_arcsec, 4) if astro.ok else -999.0,
                       "astrometric rms along RA (arcsec)")
    hdr["ASTRRMS2"] = (round(astro.rms_dec_arcsec, 4) if astro.ok else -999.0,
                       "astrometric rms along Dec (arcsec)")
    hdr["ASTRNMAT"] = (int(astro.n_matches), "Gaia-like stars in the astrometric fit")
    hdr["BUNIT"] = ("DN", "bias-subtracted, flat-fielded data numbers")
    for name, value, comment in mask_header_cards():
        hdr[name] = (value, comment)
    tick("qa")
    image = QuadrantImage(data, variance, mask, wcs, psf, hdr, quad.id)
    return InstCalResult(image, psfcat, sexcat, astro, phot, qa, infobits, tick.durations())
