"""The camera: from a scheduled exposure and the sky to raw CCD pixels plus ground truth.

:func:`simulate_ccd` is the one entry point: it renders the four quadrants of one CCD for one
exposure (science, bias or dome flat) and returns the raw HDU list exactly as the camera would
write it (the real layout and keywords of :mod:`zsds.core.rawformat`: quadrant images at HDU 1-4,
overscans at 5-8), with a :class:`CCDTruth` holding everything that went into the pixels. The
amplifiers are non-linear with the real per-amplifier coefficients of the exposure's date
(:mod:`zsds.core.nonlinearity`), so that the pipeline's correction undoes them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.time import Time

from zsds.core import nonlinearity
from zsds.core.instrument import (
    N_CCD,
    OVERSCAN_NX,
    PIXEL_SCALE,
    QUAD_NX,
    QUAD_NY,
    READOUT_TIME,
    SITE_HEIGHT_M,
    SITE_LAT_DEG,
    SITE_LON_DEG,
    Amplifier,
    Filter,
    amplifier,
    raw_flip,
    rcid_of,
    to_raw_orientation,
)
from zsds.core.naming import BIAS_CODE, raw_name
from zsds.core.rawformat import AMP_NAMES, N_QUAD
from zsds.core.wcs import quadrant_wcs
from zsds.sim.detector import detector_defects, illumination
from zsds.sim.observing import Exposure, altitude_deg, moon_illumination
from zsds.sim.optics import FocalPlanePSF, QuadrantTruePSF
from zsds.sim.render import add_cosmic_rays, bleed, render_galaxies, render_points, trail_points

#: Source kinds in the truth tables.
KIND_STAR, KIND_GALAXY, KIND_TRANSIENT, KIND_ASTEROID, KIND_SATELLITE, KIND_AIRPLANE = (
    1,
    2,
    3,
    4,
    5,
    6,
)
DETSOFT = "zsds-sim 0.1"


@dataclass(frozen=True)
class SimConfig:
    """Options of the camera/sky simulator.

    The simulated Minor Planet Center delivers the orbits of ``known_asteroid_fraction`` of
    the asteroids in ``refcat/MPCORB.DAT``; the rest are undiscovered, for the linker.
    ``seeing`` replaces the night's conditions, e.g. 0.7 for ZTF's sharpest (1.2 px FWHM)
    images.
    """

    quad_size: int | None = None  #: side of a small square quadrant (``SMALL_SIZES``); None: full
    seed: int = 1  #: sky and noise seed (the instrument's own seed is fixed)
    stars: bool = True  #: simulate stars
    galaxies: bool = True  #: simulate galaxies
    transients: bool = True  #: simulate transients (explosions)
    flares: bool = True  #: simulate stellar flares
    asteroids: bool = True  #: simulate asteroids
    satellites: bool = True  #: simulate satellite (and airplane) tracks
    cosmic_rays: bool = True  #: simulate cosmic-ray hits
    transient_rate: float = 6.0  #: explosions per deg^2 per 30 days
    asteroid_density: float = 1.0  #: scale of the asteroid surface density
    satellite_prob: float = 0.1  #: probability that a satellite crosses an exposure
    airplane_prob: float = 0.03  #: probability that an airplane (blinking lights) crosses
    known_asteroid_fraction: float = 0.9  #: share of asteroids in the simulated MPCORB.DAT
    seeing: float | None = None  #: seeing forced on every science exposure (arcsec); None: drawn

    @property
    def nx(self) -> int:
        return self.quad_size or QUAD_NX

    @property
    def ny(self) -> int:
        return self.quad_size or QUAD_NY


@dataclass
class CCDTruth:
    """Ground truth of one CCD of one exposure (never read by pipeline code)."""

    sources: pd.DataFrame
    quadrants: pd.DataFrame
    cosmic_rays: pd.DataFrame
    streaks: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class SceneSources:
    """Sources of a CCD at one epoch, in the exposure's band (positions on the sky)."""

    points: pd.DataFrame  # id, kind, ra, dec, mag, ra1, dec1 (trail end; NaN if static)
    galaxies: pd.DataFrame  # id, ra, dec, mag, sersic_n, r_eff, axis_ratio, pa


def true_zero_point(exp: Exposure, amp: Amplifier) -> float:
    """True MAGZP (DN, whole exposure) of incident flux: m = MAGZP - 2.5 log10(DN)."""
    p = exp.filter.props
    return float(
        p.zp_e_per_s
        + 2.5 * np.log10(exp.exptime * exp.transparency)
        - p.extinction * exp.airmass
        - 2.5 * np.log10(amp.gain)
    )


def _flux_e(mag: np.ndarray, exp: Exposure) -> np.ndarray:
    p = exp.filter.props
    zp = p.zp_e_per_s + 2.5 * np.log10(exp.exptime * exp.transparency) - p.extinction * exp.airmass
    with np.errstate(over="ignore"):
        return 10.0 ** (-0.4 * (np.asarray(mag, float) - zp))


def _sexagesimal(deg: float, hours: bool) -> str:
    """``+hh:mm:ss.ss`` / ``+dd:mm:ss.s`` as the real TELRA/TELDEC/RA/DEC keywords."""
    from astropy.coordinates import Angle

    if hours:
        return Angle(deg, "deg").to_string("hourangle", sep=":", precision=2, pad=True,
                                           alwayssign=True)  # fmt: skip
    return Angle(deg, "deg").to_string(sep=":", precision=1, pad=True, alwayssign=True)


def _header_common(exp: Exposure, ccdid: int) -> fits.Header:
    """Primary header with the keywords of a real raw file (none that the camera lacks)."""
    t = Time(exp.mjd, format="mjd", scale="utc")
    t1 = Time(exp.mjd + exp.exptime / 86400.0, format="mjd", scale="utc")
    filt = f"ZTF_{exp.filt}" if exp.filt else "NONE"
    imgtype = {"science": "object", "bias": "bias", "flat": "dome"}[exp.imgtype]
    fc = Filter.parse(exp.filt).code if exp.filt else BIAS_CODE
    filename = raw_name(exp.mjd, exp.field, fc, ccdid, exp.imgtype).filename.removesuffix(".fz")

    h = fits.Header()
    h["ORIGIN"] = ("Zwicky Transient Facility", "Data origin")
    h["OBSERVER"] = ("zsds camera simulator", "Observer")
    h["INSTRUME"] = ("ZTF/MOSAIC", "Instrument name")
    h["DETSOFT"] = (DETSOFT, "Detector software version")
    h["IMGTYPE"] = (imgtype, "Image type")
    h["EXPOSURE"] = (exp.exptime, "Total Exposure Time (s)")
    h["EXPTIME"] = (exp.exptime, "Requested Exposure Time (s)")
    h["CCDSUM"] = ("1 1", "CCD binning")
    h["PIXSCALE"] = (PIXEL_SCALE, "Pixel scale, in arcsec per pixel")
    h["FILENAME"] = (filename, "File name")
    h["ORIGNAME"] = (filename, "Original file name")
    for n in range(1, N_CCD + 1):
        h[f"CCDTMP{n:02d}"] = (173.15, f"CCD temperature {n:02d} (K)")
    h["FIELDID"] = (exp.field, "ZTF field ID number")
    h["EQUINOX"] = (2000.0, "Equinox")
    h["MOONILLF"] = (round(moon_illumination(exp.mjd), 3), "Moon illuminated fraction (frac)")
    h["PROGRMID"] = (exp.programid, "Queue program ID")
    h["FILTERID"] = (Filter.parse(exp.filt).fid if exp.filt else 0, "Filter ID code")
    h["FILTER"] = (filt, "Filter name")
    h["OBSJD"] = (t.jd, "Julian day corresponds to UTC-OBS (day)")
    h["OBSMJD"] = (exp.mjd, "MJD corresponds to UTC-OBS (day)")
    ra, dec = exp.ra_nominal, exp.dec_nominal
    h["RA"] = (_sexagesimal(ra, True), "Requested right ascension")
    h["DEC"] = (_sexagesimal(dec, False), "Requested declination")
    h["RAD"] = (ra, "Requested right ascension (deg)")
    h["DECD"] = (dec, "Requested declination (deg)")
    h["TELRA"] = (_sexagesimal(ra, True), "Telescope right ascension")
    h["TELDEC"] = (_sexagesimal(dec, False), "Telescope declination")
    h["TELRAD"] = (ra, "Telescope right ascension (deg)")
    h["TELDECD"] = (dec, "Telescope declination (deg)")
    alt = float(altitude_deg(ra, dec, exp.mjd)) if exp.field else 90.0
    h["AZIMUTH"] = (0.0 if not exp.field else 180.0, "Telescope azimuth (deg, approximate)")
    h["ELVATION"] = (round(alt, 4), "Telescope elevation (deg)")
    h["AIRMASS"] = (round(exp.airmass, 4), "Airmass")
    h["OBSERVAT"] = ("Palomar Observatory", "Observatory")
    h["TELESCOP"] = ("Palomar 48-inch", "Observatory telescope")
    h["OBSLON"] = (SITE_LON_DEG, "Observatory longitude (deg)")
    h["OBSLAT"] = (SITE_LAT_DEG, "Observatory latitude (deg)")
    h["OBSALT"] = (SITE_HEIGHT_M, "Observatory altitude (m)")
    h["SHUTOPEN"] = (t.isot, "Shutter open time")
    h["SHUTCLSD"] = (t1.isot, "Shutter close time")
    if exp.imgtype == "flat":
        wave = {"g": 470, "r": 630, "i": 780}[exp.filt]
        h["ILUM_LED"] = (Filter.parse(exp.filt).fid * 5, "dome-lamp LED set")
        h["ILUMWAVE"] = (wave, "LED wavelength (nm)")
        h["ILUMPOWR"] = (150.0, "LED power (mW)")
    h["PIXSCALX"] = (PIXEL_SCALE, "Pixel scale in X")
    h["PIXSCALY"] = (PIXEL_SCALE, "Pixel scale in Y")
    h["NFRAMES"] = (2 * N_QUAD, "number of frames in FITS file")
    return h


def _raw_wcs_header(exp: Exposure, ccdid: int, qid: int, nx: int, ny: int) -> fits.Header:
    """The camera's approximate WCS (commanded pointing, no distortion) in readout orientation."""
    w = quadrant_wcs(exp.ra_nominal, exp.dec_nominal, ccdid, qid, 0.0, nx, ny, distortion_k=0.0)
    fy, fx = raw_flip(qid)
    if fx:
        w.wcs.crpix[0] = nx + 1 - w.wcs.crpix[0]
        w.wcs.cd[:, 0] *= -1
    if fy:
        w.wcs.crpix[1] = ny + 1 - w.wcs.crpix[1]
        w.wcs.cd[:, 1] *= -1
    return w.to_header(relax=False)


def _quadrant_header(exp: Exposure, amp: Amplifier, nx: int, ny: int) -> fits.Header:
    """Image-extension header as in real files: the amplifier is named by AMP_ID = qid - 1."""
    h = fits.Header()
    h["HDUVERS"] = 1
    h["CCD_ID"] = (amp.ccdid, "ID value of CCD detector")
    h["CCDNAME"] = (f"S{amp.ccdid:02d}", "Detector name or serial number")
    h["AMP_ID"] = (amp.qid - 1, "ID value of CCD amplifier")
    h["AMP_NAME"] = (AMP_NAMES[amp.qid - 1], "Name of CCD amplifier")
    h["GAIN"] = (amp.gain, "Gain e-/adu")
    h["READNOI"] = (amp.read_noise, "Read noise e-")
    h["DARKCUR"] = (amp.dark_current, "Dark current e-/s")
    if exp.imgtype == "science":
        h.update(_raw_wcs_header(exp, amp.ccdid, amp.qid, nx, ny))
    return h


def _overscan_and_floating(
    amp: Amplifier, e_image: np.ndarray, rng: np.random.Generator, ny: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise floating bias (ADU) and the overscan block (readout orientation, float)."""
    level = amp.bias_level + rng.normal(0.0, 12.0)
    # Slow drift along the readout (a smoothed random walk), identical in image and overscan.
    walk = np.cumsum(rng.normal(0.0, 0.08, ny))
    walk = np.convolve(walk, np.ones(64) / 64, mode="same")
    rows = (level + walk - walk.mean()).astype(np.float32)
    over = rows[:, None] + rng.normal(0.0, amp.read_noise / amp.gain, (ny, OVERSCAN_NX)).astype(
        np.float32
    )
    # Readout transient: a small trail of the last image column in the first overscan columns.
    last = e_image[:, -1] / amp.gain
    over[:, :10] += (2e-4 * last[:, None] * np.exp(-np.arange(10) / 2.0)[None, :]).astype(
        np.float32
    )
    return rows, over


def _digitise(adu: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(adu), 0, 65535).astype(np.uint16)


def _noisy(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photon noise: exact Poisson for faint pixels, Gaussian with the same mean and variance
    above 1000 e- (indistinguishable there and several times faster)."""
    out = expected + rng.standard_normal(expected.shape, dtype=np.float32) * np.sqrt(
        np.maximum(expected, 0)
    )
    low = expected < 1000.0
    if low.any():
        out[low] = rng.poisson(np.maximum(expected[low], 0)).astype(np.float32)
    return out


def _quadrant_to_hdus(
    exp: Exposure,
    amp: Amplifier,
    e_image: np.ndarray,
    defects,
    rng: np.random.Generator,
    nx: int,
    ny: int,
) -> tuple[fits.CompImageHDU, fits.CompImageHDU]:
    """Electrons (sky orientation) -> bias, read noise, ADC -> raw-orientation compressed HDUs."""
    raw_e = to_raw_orientation(e_image, amp.qid)
    rows, over = _overscan_and_floating(amp, raw_e, rng, ny)
    adu = raw_e / np.float32(amp.gain)
    adu += to_raw_orientation(defects.bias2d, amp.qid)
    adu += rng.standard_normal((ny, nx), dtype=np.float32) * np.float32(amp.read_noise / amp.gain)
    # The amplifier's non-linearity acts on the signal above the floating bias (what the split
    # linearizes after subtracting the overscan), so it is applied before adding the bias rows.
    a, b = nonlinearity.table_for_jd(exp.mjd + 2400000.5).coefficients(amp.ccdid, amp.qid - 1)
    adu = nonlinearity.delinearize(adu, a, b)
    adu += rows[:, None]
    # EXTNAME is the HDU index as a string, as in real files (zsds never relies on it).
    img = fits.CompImageHDU(
        _digitise(adu),
        header=_quadrant_header(exp, amp, nx, ny),
        compression_type="RICE_1",
        name=str(amp.qid),
    )
    oh = fits.Header()
    oh["CCD_ID"] = (amp.ccdid, "ID value of CCD detector")
    oh["AMP_ID"] = (amp.qid - 1, "ID value of CCD amplifier")
    ovs = fits.CompImageHDU(
        _digitise(over), header=oh, compression_type="RICE_1", name=str(amp.qid + N_QUAD)
    )
    return img, ovs


def simulate_ccd(
    exp: Exposure,
    ccdid: int,
    config: SimConfig,
    scene: SceneSources | None = None,
) -> tuple[fits.HDUList, CCDTruth]:
    """Simulate one CCD of one exposure.

    Parameters
    ----------
    exp : Exposure
        The scheduled exposure (science, bias or flat).
    ccdid : int
    config : SimConfig
    scene : SceneSources or None
        Sky sources around the CCD (required for science exposures; see
        :func:`zsds.sim.scene.gather_scene`).

    Returns
    -------
    (HDUList, CCDTruth)
        The raw file content (primary + 4 images + 4 overscans) and its ground truth.
    """
    nx, ny = config.nx, config.ny
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 101, exp.expid, ccdid]))
    primary = fits.PrimaryHDU(header=_header_common(exp, ccdid))
    primary.header["SIMULATE"] = (True, "zsds simulated data")
    images, overscans, quad_rows, src_rows, cr_rows, streak_rows = [], [], [], [], [], []
    fp_psf = FocalPlanePSF.from_exposure(exp)
    for qid in (1, 2, 3, 4):
        amp = amplifier(ccdid, qid)
        defects = detector_defects(ccdid, qid, nx, ny)
        exposure_s = exp.exptime + READOUT_TIME / 2.0
        if exp.imgtype == "bias":
            e_image = defects.dark * np.float32(READOUT_TIME / 2.0)
            e_image = _noisy(e_image, rng)
            sat = np.zeros((ny, nx), bool)
        elif exp.imgtype == "flat":
            level = rng.uniform(18000.0, 25000.0) * amp.gain  # ~20k DN per flat
            expected = level * illumination(
                ccdid, qid, nx, ny, exp.filter, "dome"
            ) * defects.response + defects.dark * np.float32(exposure_s)
            e_image = _noisy(expected.astype(np.float32), rng)
            sat = bleed(e_image, amp.full_well)
        else:
            e_image, truth_src, streaks, sat = _science_electrons(
                exp, ccdid, qid, config, scene, fp_psf, defects, rng
            )
            src_rows.append(truth_src)
            if len(streaks):
                streak_rows.append(streaks)
        if config.cosmic_rays and exp.imgtype != "flat":
            crs = add_cosmic_rays(e_image, rng, exposure_s if exp.imgtype != "bias" else 8.0)
            crs.insert(0, "qid", qid)
            cr_rows.append(crs)
        sat |= bleed(e_image, amp.full_well)
        img, ovs = _quadrant_to_hdus(exp, amp, e_image, defects, rng, nx, ny)
        images.append(img)
        overscans.append(ovs)
        quad_rows.append(_quadrant_truth_row(exp, amp, config, fp_psf, int(sat.sum())))
    hdul = fits.HDUList([primary, *images, *overscans])
    truth = CCDTruth(
        sources=pd.concat(src_rows, ignore_index=True) if src_rows else pd.DataFrame(),
        quadrants=pd.DataFrame(quad_rows),
        cosmic_rays=pd.concat(cr_rows, ignore_index=True) if cr_rows else pd.DataFrame(),
        streaks=pd.concat(streak_rows, ignore_index=True) if streak_rows else pd.DataFrame(),
    )
    return hdul, truth


def _quadrant_truth_row(
    exp: Exposure, amp: Amplifier, config: SimConfig, fp_psf: FocalPlanePSF, n_sat: int
) -> dict:
    row = {
        "expid": exp.expid,
        "ccdid": amp.ccdid,
        "qid": amp.qid,
        "rcid": amp.rcid,
        "gain": amp.gain,
        "read_noise": amp.read_noise,
        "bias_level": amp.bias_level,
        "full_well": amp.full_well,
        "n_saturated": n_sat,
        "nx": config.nx,
        "ny": config.ny,
    }
    if exp.imgtype == "science":
        w = quadrant_wcs(exp.ra, exp.dec, amp.ccdid, amp.qid, exp.rotation, config.nx, config.ny)
        psf = QuadrantTruePSF(fp_psf, amp.ccdid, amp.qid, config.nx, config.ny)
        props = exp.filter.props
        sky_e = _flux_e(exp.sky_mag, exp) * PIXEL_SCALE**2
        illum = illumination(amp.ccdid, amp.qid, config.nx, config.ny, exp.filter, "sky")
        row.update(
            {
                "magzp": true_zero_point(exp, amp),
                "clrcoeff": -props.colour_term,
                "colour": "-".join(props.colour_bands),
                "sky_e": float(sky_e),
                "sky_dn": float(sky_e / amp.gain),
                "illum_mean": float(illum.mean()),
                "fwhm_center_px": psf.fwhm_at(config.nx / 2, config.ny / 2),
                "fwhm_sky_center_px": psf.sky_fwhm_at(config.nx / 2, config.ny / 2),
                "psf_optics": fp_psf.optics,
                "seeing": exp.seeing,
                "wcs_header": w.to_header(relax=True).tostring(),
                "ra_center": float(
                    w.pixel_to_world_values(config.nx / 2 - 0.5, config.ny / 2 - 0.5)[0]
                ),
                "dec_center": float(
                    w.pixel_to_world_values(config.nx / 2 - 0.5, config.ny / 2 - 0.5)[1]
                ),
            }
        )
    return row


def _science_electrons(exp, ccdid, qid, config, scene, fp_psf, defects, rng):
    """Expected then noisy electrons of a science quadrant, with its source truth."""
    nx, ny = config.nx, config.ny
    amp = amplifier(ccdid, qid)
    w = quadrant_wcs(exp.ra, exp.dec, ccdid, qid, exp.rotation, nx, ny)
    psf = QuadrantTruePSF(fp_psf, ccdid, qid, nx, ny)
    sky_e = np.float32(_flux_e(exp.sky_mag, exp) * PIXEL_SCALE**2)
    signal = np.full((ny, nx), sky_e, np.float32)
    truth_parts = []
    streaks = pd.DataFrame()
    margin = 40
    if scene is not None and len(scene.points):
        pts = scene.points
        x, y = w.all_world2pix(pts["ra"].to_numpy(), pts["dec"].to_numpy(), 0, quiet=True)
        x1, y1 = x.copy(), y.copy()
        moving = np.isfinite(pts["ra1"].to_numpy())
        if moving.any():
            x1[moving], y1[moving] = w.all_world2pix(
                pts["ra1"].to_numpy()[moving], pts["dec1"].to_numpy()[moving], 0, quiet=True
            )
        inside = (
            (np.minimum(x, x1) > -margin)
            & (np.maximum(x, x1) < nx + margin)
            & (np.minimum(y, y1) > -margin)
            & (np.maximum(y, y1) < ny + margin)
        )
        sel = pts[inside]
        flux = _flux_e(sel["mag"].to_numpy(), exp)
        xs, ys, xe, ye = x[inside], y[inside], x1[inside], y1[inside]
        trail = np.hypot(xe - xs, ye - ys) > 0.5
        render_points(signal, xs[~trail], ys[~trail], flux[~trail], psf)
        if trail.any():
            px, py, pf = trail_points(xs[trail], ys[trail], xe[trail], ye[trail], flux[trail])
            render_points(signal, px, py, pf, psf)
            streaks = pd.DataFrame(
                {
                    "qid": qid,
                    "id": sel["id"].to_numpy()[trail],
                    "kind": sel["kind"].to_numpy()[trail],
                    "x0": xs[trail],
                    "y0": ys[trail],
                    "x1": xe[trail],
                    "y1": ye[trail],
                    "flux_e": flux[trail],
                    "mag": sel["mag"].to_numpy()[trail],
                }
            )
        xm, ym = 0.5 * (xs + xe), 0.5 * (ys + ye)
        truth_parts.append(
            pd.DataFrame(
                {
                    "id": sel["id"].to_numpy(),
                    "kind": sel["kind"].to_numpy().astype(np.int8),
                    "ra": sel["ra"].to_numpy(),
                    "dec": sel["dec"].to_numpy(),
                    "x": xm,
                    "y": ym,
                    "mag": sel["mag"].to_numpy(),
                    "flux_e": flux,
                }
            )
        )
    if scene is not None and len(scene.galaxies):
        gal = scene.galaxies
        x, y = w.all_world2pix(gal["ra"].to_numpy(), gal["dec"].to_numpy(), 0, quiet=True)
        inside = (x > -margin) & (x < nx + margin) & (y > -margin) & (y < ny + margin)
        g = gal[inside]
        flux = _flux_e(g["mag"].to_numpy(), exp)
        # Position angle on the sky (east of north) -> image angle from +x: x points West.
        pa_img = np.deg2rad(90.0 + g["pa"].to_numpy())
        render_galaxies(
            signal,
            x[inside],
            y[inside],
            flux,
            g["sersic_n"].to_numpy(),
            g["r_eff"].to_numpy() / PIXEL_SCALE,
            g["axis_ratio"].to_numpy(),
            pa_img,
            psf,
        )
        truth_parts.append(
            pd.DataFrame(
                {
                    "id": g["id"].to_numpy(),
                    "kind": np.full(len(g), KIND_GALAXY, np.int8),
                    "ra": g["ra"].to_numpy(),
                    "dec": g["dec"].to_numpy(),
                    "x": x[inside],
                    "y": y[inside],
                    "mag": g["mag"].to_numpy(),
                    "flux_e": flux,
                }
            )
        )
    illum = illumination(ccdid, qid, nx, ny, exp.filter, "sky")
    expected = signal * illum * defects.response
    expected += defects.dark * np.float32(exp.exptime + READOUT_TIME / 2.0)
    e_image = _noisy(expected, rng)
    sat = bleed(e_image, amp.full_well)
    truth = (
        pd.concat(truth_parts, ignore_index=True)
        if truth_parts
        else pd.DataFrame(columns=["id", "kind", "ra", "dec", "x", "y", "mag", "flux_e"])
    )
    truth.insert(0, "qid", qid)
    truth.insert(0, "ccdid", ccdid)
    truth["flux_dn"] = truth["flux_e"] / amp.gain
    truth["rcid"] = rcid_of(ccdid, qid)
    return e_image, truth, streaks, sat
