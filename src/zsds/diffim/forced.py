"""Forced PSF photometry on difference images, and ZFPS's ``lc.txt`` format.

Science (:func:`forced_photometry`): for a sky position, every archived difference image
(``diff_images``) whose footprint holds it is measured at the position's pixel, whatever
was detected there: the difference image, its uncertainty image and its PSF (the products
written next to it by pipeline 6: ``scimrefdiffimg.fits``, ``scimrefdiffimgunc.fits``,
``diffimgpsf.fits``) are read as small stamps only (FITS sections of memory-mapped files;
an imported IPAC ``scimrefdiffimg.fits.fz`` with its ``diffimgpsf.fits`` has no uncertainty
image, and its variance is estimated from its own pixels, :func:`_estimated_variance`),
the PSF of the ZOGY tile holding the position is moved to its sub-pixel position by
cubic-spline interpolation, and the flux is the weighted linear least-squares amplitude of that PSF
(:func:`measure_stamps`, vectorised over all images at once)::

    flux = sum(P D / V) / sum(P^2 / V),   sigma = 1 / sqrt(sum(P^2 / V))

with D the difference pixels (science DN at ``MAGZP``), V their variance and P the unit-sum
PSF; plus the reduced chi-square of the fit on the PSF core, the S/N and an aperture flux
(9-pixel diameter, corrected to total with the PSF's own curve of growth). The result is
written in the ZFPS ``lc.txt`` format (:func:`lc_text`).

The archive's service (:mod:`zsds.archive.forcedphot`) and the alert ``fp_hists``
(:mod:`zsds.alerts.fphist`) both measure through :func:`forced_photometry`.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.stats import mad_std
from astropy.wcs import WCS
from scipy import ndimage
from sqlalchemy import Engine, and_, select

from zsds.core.home import Home
from zsds.core.instrument import PIXEL_SCALE
from zsds.core.sphere import angular_distance_deg
from zsds.core.wcs import header_wcs
from zsds.db.engine import session
from zsds.db.schema import DiffImageRecord, Reference

__all__ = [
    "DEFAULT_FORCED",
    "EXTRA_COLUMNS",
    "LC_COLUMNS",
    "LC_DEFINITIONS",
    "PROCSTATUS",
    "ForcedPhotConfig",
    "aperture_weights",
    "diff_images_covering",
    "empty_lc",
    "forced_photometry",
    "lc_text",
    "measure_stamps",
    "product_path",
    "read_lc_text",
    "shift_psfs",
]

log = logging.getLogger(__name__)

#: Columns of ZFPS ``lc.txt`` files, in order.
LC_COLUMNS: tuple[str, ...] = (
    "index", "field", "ccdid", "qid", "filter", "pid", "infobitssci", "sciinpseeing",
    "scibckgnd", "scisigpix", "zpmaginpsci", "zpmaginpsciunc", "zpmaginpscirms", "clrcoeff",
    "clrcoeffunc", "ncalmatches", "exptime", "adpctdif1", "adpctdif2", "diffmaglim", "zpdiff",
    "programid", "jd", "rfid", "forcediffimflux", "forcediffimfluxunc", "forcediffimsnr",
    "forcediffimchisq", "forcediffimfluxap", "forcediffimfluxuncap", "forcediffimsnrap",
    "aperturecorr", "dnearestrefsrc", "nearestrefmag", "nearestrefmagunc", "nearestrefchi",
    "nearestrefsharp", "refjdstart", "refjdend", "procstatus")

#: Extra columns of :func:`forced_photometry` with ``extra=True`` (not in ``lc.txt``): the
#: position of the nearest reference-catalogue source, which alert ``fp_hists`` carry.
EXTRA_COLUMNS: tuple[str, ...] = ("nearestrefra", "nearestrefdec")

#: ``# name = definition`` lines of the lc.txt header (ZFPS wording).
LC_DEFINITIONS: dict[str, str] = {
    "index": "sequential counter",
    "field": "ZTF Field identifier",
    "ccdid": "CCD identifier (1,..,16)",
    "qid": "Quadrant (CCD-amplifier) identifier (1,..,4)",
    "filter": "Filter string: ZTF_g, ZTF_r, ZTF_i",
    "pid": "processed image Operations DB identifier",
    "infobitssci": "processing summary/QA bits for sci image",
    "sciinpseeing": "Effective FWHM of sci image [pixels]",
    "scibckgnd": "Background level in sci image [DN]",
    "scisigpix": "Robust sigma per pixel in sci image [DN]",
    "zpmaginpsci": "Photometric zeropoint for sci image [mag]",
    "zpmaginpsciunc": "1-sigma uncertainty in zpmaginpsci [mag]",
    "zpmaginpscirms": "RMS (deviation from average) in all zeropoint measures [mag]",
    "clrcoeff": "Linear color coefficient from calibration; for ZTF_g,r,i, color is g-r, "
                "g-r, r-i respectively",
    "clrcoeffunc": "1-sigma uncertainty in clrcoeff",
    "ncalmatches": "Number of PS1 calibrators used in initial calibration of sci image",
    "exptime": "Integration time for sci image [sec]",
    "adpctdif1": "Full sci image astrometric RMS along R.A. with respect to Gaia1 [arcsec]",
    "adpctdif2": "Full sci image astrometric RMS along Dec. with respect to Gaia1 [arcsec]",
    "diffmaglim": "Magnitude limit in difference image [mag]",
    "zpdiff": "Photometric zeropoint for difference image [mag]",
    "programid": "Program identifier [0=engineering; 1=public; 2=private; 3=Caltech time]",
    "jd": "Julian Date at start of exposure [days]",
    "rfid": "Reference image Operations DB identifier",
    "forcediffimflux": "Forced difference image PSF-fit flux [DN]",
    "forcediffimfluxunc": "1-sigma uncertainty in forcediffimflux [DN]",
    "forcediffimsnr": "Signal-to-noise ratio for forcediffimflux measurement",
    "forcediffimchisq": "Reduced chi-square in PSF-fit",
    "forcediffimfluxap": "Forced difference image aperture flux using a fixed 9-pixel "
                         "diameter aperture [DN]",
    "forcediffimfluxuncap": "1-sigma uncertainty in forcediffimfluxap [DN]",
    "forcediffimsnrap": "Signal-to-noise ratio for forcediffimfluxap measurement",
    "aperturecorr": "Aperture (curve-of-growth) correction factor that was applied to "
                    "forcediffimfluxap measurement",
    "dnearestrefsrc": "Distance to nearest ref image source if found within 5 arcsec [arcsec]",
    "nearestrefmag": "Magnitude of nearest ref image source [mag]",
    "nearestrefmagunc": "1-sigma uncertainty in nearestrefmag [mag]",
    "nearestrefchi": "Chi parameter for nearestrefmag measurement (ratio: RMS in PSF-fit "
                     "residuals / expected RMS from priors)",
    "nearestrefsharp": "Sharp parameter for nearestrefmag measurement (~0 => PSF like; >>0 "
                       "=> extended; <<0 => pixel-like)",
    "refjdstart": "JD of earliest sci image used for ref image [days]",
    "refjdend": "JD of latest sci image used for ref image [days]",
    "procstatus": "Forced-photometry processing status codes (0 => no warnings); see below",
}

#: ``procstatus`` values written here (0 is ZFPS's "no warnings"; the others are ours).
PROCSTATUS = {0: "successful", 56: "too few good pixels under the PSF at the position "
                                    "(image edge or masked pixels): no flux",
              255: "the difference image or one of its products could not be read"}

_INT_COLUMNS = frozenset({"index", "field", "ccdid", "qid", "pid", "infobitssci",
                          "ncalmatches", "programid", "rfid", "procstatus"})
_FILTERS = {1: "ZTF_g", 2: "ZTF_r", 3: "ZTF_i"}
_DIFF_RE = re.compile(r"scimrefdiffimg\.fits(\.fz)?$")


# --------------------------------------------------------------------------- measurement


@dataclass(frozen=True)
class ForcedPhotConfig:
    """Settings of :func:`forced_photometry`."""

    half: int = 12  #: half-size of the fit stamp (px): ``2 half + 1`` square
    aperture_diameter: float = 9.0  #: diameter of the aperture flux (px; ZFPS: 9)
    core_level: float = 0.01  #: PSF share of its peak bounding the chi-square core
    min_psf_coverage: float = 0.5  #: least PSF share on good pixels for a flux (else 56)
    ref_match_arcsec: float = 5.0  #: search radius of the nearest reference source (arcsec)
    supersample: int = 5  #: sub-pixel grid per axis of the aperture's pixel coverage
    noise_half: int = 40  #: half-size of the sky-scatter section (no uncertainty image)


#: The default settings.
DEFAULT_FORCED = ForcedPhotConfig()


def shift_psfs(psfs: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Move PSF stamps by sub-pixel offsets (cubic-spline interpolation).

    The interpolation of pipeline 6's own PSF fits (:mod:`zsds.diffim.candidates`), so forced
    and detection fluxes agree. On the archive's nearly critically sampled difference PSFs a
    Fourier shift rings and measured ~1 % lower fluxes of simulated transients than the
    spline (whose fluxes are within ~1 % of the truth).

    Parameters
    ----------
    psfs : ndarray (N, M, M)
        Stamps centred on pixel ``M // 2``.
    dx, dy : ndarray (N,)
        Offsets (pixels) along x (axis 2) and y (axis 1).

    Returns
    -------
    ndarray (N, M, M)
        ``out[k]`` is ``psfs[k]`` centred on ``(M // 2 + dx[k], M // 2 + dy[k])``.
    """
    return np.stack([ndimage.shift(np.asarray(p, np.float64), (b, a), order=3, mode="constant")
                     for p, a, b in zip(psfs, np.asarray(dx, float), np.asarray(dy, float),
                                        strict=True)]) if len(psfs) else np.zeros_like(psfs)


def _crop(a: np.ndarray, n: int) -> np.ndarray:
    """Central ``n x n`` of a square stamp (zero-padded when smaller)."""
    m = a.shape[-1]
    if m < n:
        p = (n - m) // 2
        return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(p, n - m - p)] * 2)
    c = (m - n) // 2
    return a[..., c:c + n, c:c + n]


def aperture_weights(dx: np.ndarray, dy: np.ndarray, radius: float, size: int,
                     supersample: int = 5) -> np.ndarray:
    """Fraction of each pixel of ``size``-square stamps inside a circle.

    The circle of ``radius`` pixels is centred at ``(size // 2 + dx, size // 2 + dy)``;
    coverage is counted on a ``supersample``-per-axis sub-pixel grid.
    """
    h = size // 2
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    grid = (np.arange(-h, h + 1)[:, None] + sub[None, :]).ravel()  # size*s positions
    xx = grid[None, None, :] - np.asarray(dx, float)[:, None, None]
    yy = grid[None, :, None] - np.asarray(dy, float)[:, None, None]
    inside = (xx * xx + yy * yy) <= radius * radius
    n = len(dx)
    return inside.reshape(n, size, supersample, size, supersample).mean(axis=(2, 4))


def measure_stamps(data: np.ndarray, var: np.ndarray, psf: np.ndarray, apw: np.ndarray,
                   config: ForcedPhotConfig = DEFAULT_FORCED) -> dict[str, np.ndarray]:
    """Forced PSF-fit and aperture photometry on stacks of stamps (vectorised).

    Parameters
    ----------
    data : ndarray (N, n, n)
        Difference-image stamps (NaN where unusable).
    var : ndarray (N, n, n)
        Their variances (non-finite or <= 0 where unusable).
    psf : ndarray (N, n, n)
        Unit-sum PSFs placed at the position (same grid as ``data``).
    apw : ndarray (N, n, n)
        Aperture coverage of each pixel (:func:`aperture_weights`).
    config : ForcedPhotConfig

    Returns
    -------
    dict of ndarray (N,)
        ``flux``, ``fluxunc``, ``snr``, ``chisq`` (reduced, on the PSF core), ``fluxap``,
        ``fluxuncap``, ``snrap`` (aperture, corrected to total by ``aperturecorr``),
        ``aperturecorr`` and ``procstatus`` (0, or 56 where fewer than
        ``min_psf_coverage`` of the PSF falls on good pixels; their fluxes are NaN).
    """
    good = np.isfinite(data) & np.isfinite(var) & (var > 0)
    w = np.where(good, 1.0 / np.where(good, var, 1.0), 0.0)
    d = np.where(good, data, 0.0)
    spp = (psf * psf * w).sum(axis=(1, 2))
    spd = (psf * d * w).sum(axis=(1, 2))
    coverage = np.where(good, psf, 0.0).sum(axis=(1, 2)) / psf.sum(axis=(1, 2))
    ok = (coverage >= config.min_psf_coverage) & (spp > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        flux = np.where(ok, spd / spp, np.nan)
        fluxunc = np.where(ok, 1.0 / np.sqrt(spp), np.nan)
        model = flux[:, None, None] * psf
        core = good & (psf >= config.core_level * psf.max(axis=(1, 2), keepdims=True))
        ncore = core.sum(axis=(1, 2))
        chisq = np.where(core, (d - model) ** 2 * w, 0.0).sum(axis=(1, 2)) / np.maximum(
            ncore - 1, 1)
        # Bad pixels of the aperture take the fitted PSF model (their variance is unknown).
        filled = np.where(good, d, model)
        encl = (apw * psf).sum(axis=(1, 2))
        apcorr = 1.0 / encl
        fluxap = apcorr * (apw * filled).sum(axis=(1, 2))
        fluxuncap = apcorr * np.sqrt((apw * apw * np.where(good, var, 0.0)).sum(axis=(1, 2)))
        out = {"flux": flux, "fluxunc": fluxunc, "snr": flux / fluxunc,
               "chisq": np.where(ok, chisq, np.nan), "fluxap": np.where(ok, fluxap, np.nan),
               "fluxuncap": np.where(ok, fluxuncap, np.nan),
               "snrap": np.where(ok, fluxap / fluxuncap, np.nan), "aperturecorr": apcorr,
               "procstatus": np.where(ok, 0, 56).astype(np.int64)}
    return out


def _image_hdu(hdul: fits.HDUList) -> Any:
    """The first HDU holding a 2-d image (``.fits.fz`` files keep it in HDU 1)."""
    for hdu in hdul:
        if isinstance(hdu, fits.CompImageHDU) or (hdu.is_image
                                                  and hdu.header.get("NAXIS", 0) == 2):
            return hdu
    raise ValueError("no image HDU")


def _section(hdu: Any, x: int, y: int, half: int) -> np.ndarray:
    """``(2 half + 1)^2`` stamp centred on pixel (x, y) read as a FITS section (NaN off the
    image), so that only these rows of the file are read."""
    ny, nx = int(hdu.header["NAXIS2"]), int(hdu.header["NAXIS1"])
    n = 2 * half + 1
    out = np.full((n, n), np.nan)
    ys, ye, xs, xe = max(y - half, 0), min(y + half + 1, ny), max(x - half, 0), min(
        x + half + 1, nx)
    if ys < ye and xs < xe:
        out[ys - y + half:ye - y + half, xs - x + half:xe - x + half] = hdu.section[ys:ye,
                                                                                    xs:xe]
    return out


def _read_psfs(path: Path) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """The central PSF (unit sum: IPAC's are not normalised), the ZOGY tiles' PSFs and the
    tiles' bounds of a ``diffimgpsf``."""
    with fits.open(path, memmap=False) as h:
        central = np.asarray(h[0].data, np.float64)
        central = central / central.sum()
        if "TILES" in h and "TILEPSF" in h:
            t = h["TILES"].data
            bounds = {k: np.asarray(t[k], float) for k in ("x0", "x1", "y0", "y1")}
            return central, np.asarray(h["TILEPSF"].data, np.float64), bounds
    return central, None, {}


def _tile_psf(psfs: tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]],
              x: float, y: float) -> np.ndarray:
    """The unit-sum PSF of the ZOGY tile holding (x, y) (the central one by default)."""
    central, tiles, t = psfs
    if tiles is not None:
        inside = np.flatnonzero((x >= t["x0"] - 0.5) & (x < t["x1"] - 0.5)
                                & (y >= t["y0"] - 0.5) & (y < t["y1"] - 0.5))
        if inside.size:
            return tiles[int(inside[0])]
    return central


def _estimated_variance(hdu: Any, d: np.ndarray, sci_path: Path, x: int, y: int,
                        config: ForcedPhotConfig) -> np.ndarray:
    """Pixel variances of a difference stamp whose image has no uncertainty image.

    IRSA serves IPAC's difference images without one, so the variance is estimated as ZFPS
    describes its own: the difference image's robust pixel variance around the position (a
    ``noise_half`` section: it holds the sky, read and reference noise as they are in the
    difference, correlations aside), plus the source's Poisson variance, ``(S - sky) / GAIN``
    from the science image's stamp when its ``sciimg`` is in the home (else from the positive
    difference pixels, which lack a host galaxy's share).
    """
    h = hdu.header
    wide = _section(hdu, x, y, config.noise_half)
    sky = wide[np.isfinite(wide)]
    if sky.size < 50:
        return np.full_like(d, np.nan)
    sky_var = float(mad_std(sky)) ** 2
    gain = _hval(h, "GAIN")
    if not gain > 0:
        return np.where(np.isfinite(d), sky_var, np.nan)
    src = np.clip(d, 0.0, None)
    if sci_path.is_file():
        with fits.open(sci_path, memmap=True) as hs:
            sci = _image_hdu(hs)
            s = _section(sci, x, y, config.half)
            around = _section(sci, x, y, config.noise_half)
        if np.isfinite(s).all() and np.isfinite(around).sum() >= 50:
            src = np.clip(s - np.nanmedian(around), 0.0, None)
    return np.where(np.isfinite(d), sky_var + np.nan_to_num(src) / gain, np.nan)


def product_path(diff_path: Path, suffix: str) -> Path:
    """A product next to a difference image (``suffix``: ``scimrefdiffimgunc.fits``,
    ``diffimgpsf.fits``...)."""
    return diff_path.with_name(_DIFF_RE.sub(suffix, diff_path.name))


def diff_images_covering(engine: Engine, ra: float, dec: float, jdstart: float | None = None,
                         jdend: float | None = None) -> pd.DataFrame:
    """``diff_images`` rows whose footprint cone holds (ra, dec), by jd.

    The declination band is cut in SQL, the exact angular distance in numpy; whether the
    pixel is on the image is decided later from the WCS.
    """
    t = DiffImageRecord.__table__
    conds = [t.c.dec - t.c.radius <= dec, t.c.dec + t.c.radius >= dec]
    if jdstart is not None:
        conds.append(t.c.jd >= jdstart)
    if jdend is not None:
        conds.append(t.c.jd <= jdend)
    rows = pd.read_sql(select(t).where(and_(*conds)).order_by(t.c.jd, t.c.pid), engine)
    if len(rows) == 0:
        return rows
    dist = angular_distance_deg(ra, dec, rows["ra"].to_numpy(), rows["dec"].to_numpy())
    return rows[dist <= rows["radius"].to_numpy()].reset_index(drop=True)


def _hval(h: fits.Header, key: str, scale: float = 1.0) -> float:
    v = h.get(key)
    try:
        v = float(v) * scale
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) and v != -999.0 else math.nan


def _nearest_ref(home: Home, engine: Engine, rfid: int, ra: float, dec: float,
                 radius_arcsec: float, cache: dict[int, pd.DataFrame | None]
                 ) -> dict[str, float]:
    """Distance, mag, sigmag, chi and sharp of the nearest source of a reference's PSF
    catalogue within ``radius_arcsec`` (NaN if none or no catalogue)."""
    if rfid not in cache:
        cat = None
        with session(engine) as s:
            rel = s.scalar(select(Reference.relpath).where(Reference.rfid == rfid))
        if rel:
            path = home.path(rel)
            path = path.with_name(path.name.replace("refimg.fits", "refpsfcat.fits"))
            if path.is_file():
                with fits.open(path, memmap=False) as h:
                    d = h[1].data
                    cat = pd.DataFrame({k: np.asarray(d[k], float) for k in (
                        "ra", "dec", "mag", "sigmag", "chi", "sharp") if k in d.names})
        cache[rfid] = cat
    cat = cache[rfid]
    none = {"dnearestrefsrc": math.nan, "nearestrefmag": math.nan,
            "nearestrefmagunc": math.nan, "nearestrefchi": math.nan,
            "nearestrefsharp": math.nan, "nearestrefra": math.nan, "nearestrefdec": math.nan}
    if cat is None or len(cat) == 0:
        return none
    dist = angular_distance_deg(ra, dec, cat["ra"].to_numpy(), cat["dec"].to_numpy()) * 3600
    k = int(np.argmin(dist))
    if dist[k] > radius_arcsec:
        return none
    row = cat.iloc[k]
    return {"dnearestrefsrc": float(dist[k]), "nearestrefmag": row.get("mag", math.nan),
            "nearestrefmagunc": row.get("sigmag", math.nan),
            "nearestrefchi": row.get("chi", math.nan),
            "nearestrefsharp": row.get("sharp", math.nan),
            "nearestrefra": float(row["ra"]), "nearestrefdec": float(row["dec"])}


def empty_lc(columns: tuple[str, ...] = LC_COLUMNS) -> pd.DataFrame:
    """A light curve with no epoch (typed ``columns``, default :data:`LC_COLUMNS`)."""
    return pd.DataFrame({c: pd.Series(dtype=np.int64 if c in _INT_COLUMNS else
                                      object if c == "filter" else np.float64)
                         for c in columns})


def forced_photometry(home: Home, engine: Engine, ra: float, dec: float,
                      jdstart: float | None = None, jdend: float | None = None,
                      config: ForcedPhotConfig = DEFAULT_FORCED, *,
                      extra: bool = False, cache: dict[str, Any] | None = None
                      ) -> pd.DataFrame:
    """Forced photometry at (ra, dec) on every archived difference image covering it.

    Parameters
    ----------
    home : Home
    engine : Engine
    ra, dec : float
        Position (deg, ICRS).
    jdstart, jdend : float, optional
        Range of the images' ``jd`` (``diff_images.jd``); open when None.
    config : ForcedPhotConfig
    extra : bool
        Add the :data:`EXTRA_COLUMNS` after those of ``lc.txt``.
    cache : dict, optional
        Kept between calls that measure positions on the same images (the alert packets of
        one difference image): image WCSs, difference PSFs and reference catalogues are then
        read once. It must not outlive a change of those products.

    Returns
    -------
    pandas.DataFrame
        One row per image, in jd order, with the columns of :data:`LC_COLUMNS` (NaN for
        null), and :data:`EXTRA_COLUMNS` with ``extra``. Images whose stamp cannot be read
        get ``procstatus`` 255.
    """
    columns = LC_COLUMNS + (EXTRA_COLUMNS if extra else ())
    if not (math.isfinite(ra) and math.isfinite(dec) and -90 <= dec <= 90):
        raise ValueError(f"invalid position ({ra}, {dec})")
    ra = ra % 360.0
    imgs = diff_images_covering(engine, ra, dec, jdstart, jdend)
    n = 2 * config.half + 1
    meta, stamps, variances, psfs, offsets = [], [], [], [], []
    cache = {} if cache is None else cache
    refcache: dict[int, pd.DataFrame | None] = cache.setdefault("refcat", {})
    wcscache: dict[str, WCS] = cache.setdefault("wcs", {})
    psfcache: dict[str, Any] = cache.setdefault("psf", {})
    for rec in imgs.itertuples(index=False):
        path = home.path(rec.relpath)
        row: dict[str, Any] = {"field": rec.field, "ccdid": rec.ccdid, "qid": rec.qid,
                               "filter": _FILTERS.get(int(rec.fid), f"ZTF_{rec.fid}"),
                               "pid": rec.pid, "programid": rec.programid, "rfid": rec.rfid}
        try:
            with fits.open(path, memmap=True) as hd:
                hdu = _image_hdu(hd)
                h = hdu.header
                if str(path) not in wcscache:
                    wcscache[str(path)] = header_wcs(h)
                px, py = wcscache[str(path)].all_world2pix([ra], [dec], 0)
                x, y = float(px[0]), float(py[0])
                nx, ny = int(h["NAXIS1"]), int(h["NAXIS2"])
                if not (-0.5 <= x < nx - 0.5 and -0.5 <= y < ny - 0.5):
                    continue  # in the footprint cone, off the pixels
                xi, yi = round(x), round(y)
                d = _section(hdu, xi, yi, config.half)
                upath = product_path(path, "scimrefdiffimgunc.fits")
                if upath.is_file():
                    with fits.open(upath, memmap=True) as hu:
                        v = _section(_image_hdu(hu), xi, yi, config.half) ** 2
                else:  # an imported IPAC difference image: IRSA serves no uncertainty image
                    v = _estimated_variance(hdu, d, product_path(path, "sciimg.fits"), xi, yi,
                                            config)
            ppath = product_path(path, "diffimgpsf.fits")
            if str(ppath) not in psfcache:
                psfcache[str(ppath)] = _read_psfs(ppath)
            p = _tile_psf(psfcache[str(ppath)], x, y)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("forced photometry: %s unreadable: %s", path, exc)
            meta.append({**row, "procstatus": 255, "jd": rec.jd})
            continue
        pixscale = _hval(h, "PIXSCALE")
        pixscale = pixscale if pixscale > 0 else PIXEL_SCALE
        row.update({
            "infobitssci": int(h.get("INFOBITS", 0)),
            "sciinpseeing": _hval(h, "SEEING") / pixscale,
            "scibckgnd": _hval(h, "SKYLEVEL"), "scisigpix": _hval(h, "SKYSIG"),
            "zpmaginpsci": _hval(h, "MAGZP"), "zpmaginpsciunc": _hval(h, "MAGZPUNC"),
            "zpmaginpscirms": _hval(h, "MAGZPRMS"), "clrcoeff": _hval(h, "CLRCOEFF"),
            "clrcoeffunc": _hval(h, "CLRCOUNC"), "ncalmatches": int(h.get("NMATCHES", 0)),
            "exptime": _hval(h, "EXPTIME"), "adpctdif1": _hval(h, "ASTRRMS1"),
            "adpctdif2": _hval(h, "ASTRRMS2"), "diffmaglim": _hval(h, "DIFFMLIM"),
            "zpdiff": _hval(h, "MAGZP"),
            "jd": _hval(h, "OBSJD") if "OBSJD" in h else float(rec.jd),
            "refjdstart": _hval(h, "JDSTART"), "refjdend": _hval(h, "JDEND"),
            **_nearest_ref(home, engine, int(rec.rfid), ra, dec, config.ref_match_arcsec,
                           refcache),
        })
        meta.append(row)
        stamps.append(d)
        variances.append(v)
        m = max(p.shape[0], n) | 1
        psfs.append(_crop(p[None], m)[0])
        offsets.append((x - xi, y - yi))
    if not meta:
        return empty_lc(columns)
    out = pd.DataFrame(meta)
    measured = out["procstatus"].isna() if "procstatus" in out else pd.Series(True, out.index)
    if stamps:
        m = max(p.shape[0] for p in psfs)
        dx, dy = np.array(offsets).T
        psf = _crop(shift_psfs(np.stack([_crop(p[None], m)[0] for p in psfs]), dx, dy), n)
        apw = aperture_weights(dx, dy, config.aperture_diameter / 2.0, n, config.supersample)
        res = measure_stamps(np.stack(stamps), np.stack(variances), psf, apw, config)
        idx = out.index[measured.to_numpy()]
        for k, v in {"forcediffimflux": "flux", "forcediffimfluxunc": "fluxunc",
                     "forcediffimsnr": "snr", "forcediffimchisq": "chisq",
                     "forcediffimfluxap": "fluxap", "forcediffimfluxuncap": "fluxuncap",
                     "forcediffimsnrap": "snrap", "aperturecorr": "aperturecorr",
                     "procstatus": "procstatus"}.items():
            out.loc[idx, k] = res[v]
    out = out.sort_values(["jd", "pid"], kind="stable").reset_index(drop=True)
    out["index"] = np.arange(len(out))
    for c in columns:
        if c not in out:
            out[c] = np.nan
    out = out[list(columns)]
    for c in _INT_COLUMNS:
        out[c] = out[c].astype("Int64")
    for c in set(columns) - _INT_COLUMNS - {"filter"}:
        out[c] = out[c].astype(np.float64)
    return out


# --------------------------------------------------------------------------- lc.txt


def _fmt(v: Any) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and not math.isfinite(v)):
        return "null"
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return repr(v)
    return str(v)


def lc_text(table: pd.DataFrame, ra: float, dec: float, jdstart: float | None,
            jdend: float | None, *, reqid: int | None = None,
            programids: tuple[int, ...] = (1,)) -> str:
    """A light curve in the ZFPS ``lc.txt`` format.

    '#' comment lines (request, column definitions, notes), then the uncommented header line
    `` index, field, ..., procstatus`` (names followed by ``,``) and one space-separated row
    per epoch with ``null`` for missing values. Read it with
    ``pd.read_csv(f, sep=r"\\s+", comment="#")`` and strip the ``,`` from the names.
    """
    def jd(v: float | None) -> str:
        return "null" if v is None else f"{v:.6f}"

    lines = [
        "# ZTF forced-photometry service (zsds archive, ZFPS-compatible)",
        "#",
        f"# Request ID = {reqid if reqid is not None else 'null'}",
        f"# Requested input R.A. = {ra:.7f} degrees",
        f"# Requested input Dec. = {dec:.7f} degrees",
        f"# Requested JD start = {jd(jdstart)} days",
        f"# Requested JD end = {jd(jdend)} days",
        f"# Authenticated program IDs = {','.join(str(p) for p in programids)}",
        f"# Number of epochs = {len(table)}",
        "#",
        "# Column definitions:",
        *(f"# {c} = {LC_DEFINITIONS[c]}" for c in LC_COLUMNS),
        "#",
        "# Notes:",
        "# forcediffimflux = sum(P D / V) / sum(P^2 / V) with P the difference-image PSF at the",
        "#   position, D the difference image and V its variance; forcediffimfluxunc =",
        "#   1 / sqrt(sum(P^2 / V)). Fluxes are in DN of the difference image at zpdiff.",
        "# To convert: if forcediffimflux / forcediffimfluxunc > 3 (SNT), then",
        "#   mag = zpdiff - 2.5 log10(forcediffimflux),",
        "#   magerr = 1.0857 forcediffimfluxunc / forcediffimflux;",
        "#   else the 5-sigma (SNU) upper limit is zpdiff - 2.5 log10(5 forcediffimfluxunc).",
        *(f"# procstatus {k} = {v}" for k, v in PROCSTATUS.items()),
        "#",
        " " + ", ".join(LC_COLUMNS),
    ]
    cols = [table[c].to_numpy(dtype=object) for c in LC_COLUMNS]
    rows = [" " + " ".join(_fmt(v) for v in vals) for vals in zip(*cols, strict=True)]
    return "\n".join(lines + rows) + "\n"


def read_lc_text(text: str) -> pd.DataFrame:
    """Parse an ``lc.txt`` as ZFPS clients do (names stripped of their trailing ``,``)."""
    import io

    df = pd.read_csv(io.StringIO(text), sep=r"\s+", comment="#")
    df.columns = [c.rstrip(",") for c in df.columns]
    return df
