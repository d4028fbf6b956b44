"""Subtraction stage: register the reference, match it to the science image, run ZOGY.

The science step of pipeline 6 as a pure function on typed data: a calibrated science
:class:`~zsds.core.image.QuadrantImage` (pixels with sky, mask, WCS, Moffat field PSF, header with
MAGZP/GAIN/READNOI) and the reference of its field, CCD, quadrant and filter (co-add pixels,
``refunc``-derived variance, mask, WCS, PSF, header with MAGZP) in, a :class:`DiffImage` out.

Following IPAC (``shared/reference/ZTF_REFERENCE.md`` section 2.4): the reference is resampled onto
the science grid (a cubic B-spline here, where IPAC used SWarp's Lanczos; both keep white noise
nearly white), scaled to the science zero point (refined by the flux ratio of matched stars) and
background-matched, so that ZOGY runs with F_n = F_r = 1. The PSF of ZTF varies over a quadrant, so
ZOGY runs on overlapping tiles, each with both PSFs evaluated at its centre, and the tile cores are
stitched together. The astrometric-registration noise of Scorr uses the measured rms offsets of
matched stars between the two catalogues.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from zsds.core.image import QuadrantImage, input_variance
from zsds.core.masks import BAD_PIXEL_BITS, MASK_DTYPE, clean_flags
from zsds.core.resample import resample_fast
from zsds.core.stats import MAD_TO_SIGMA
from zsds.diffim.zogy import ZogyConfig, zogy
from zsds.instcal.detect import DetectConfig, estimate_background

__all__ = ["DiffImage", "DiffTile", "SubtractConfig", "align_reference", "subtract"]



@dataclass(frozen=True)
class SubtractConfig:
    """Settings of :func:`subtract`.

    Attributes
    ----------
    zogy : ZogyConfig
        Kernel settings; ``sigma_x``/``sigma_y`` are replaced by the measured registration rms.
    tile : int
        Core size (pixels) of the ZOGY tiles; each tile has its own pair of PSFs.
    overlap : int
        Margin (pixels) added around each tile core and discarded after the subtraction, so that
        no tile edge (circular convolution) reaches a kept pixel.
    psf_size : int
        Odd size of the PSF stamps handed to ZOGY.
    resample_order : int
        Spline order of the reference registration (3: cubic B-spline).
    bad_bits : int
        Mask bits that make a pixel unusable in either image.
    background : DetectConfig
        Mesh background of both images.
    match_radius : float
        Catalogue match radius (pixels) for the flux ratio and the registration rms.
    min_matches : int
        Fewest matched stars to trust a measured flux ratio or registration rms.
    sigma_ast_range : tuple of float
        Clip of the measured registration rms per axis (pixels).
    """

    zogy: ZogyConfig = field(default_factory=ZogyConfig)
    tile: int = 1024
    overlap: int = 64
    psf_size: int = 31
    resample_order: int = 3
    bad_bits: int = BAD_PIXEL_BITS
    background: DetectConfig = field(
        default_factory=lambda: DetectConfig(bkg_box=128, bkg_filter=3))
    match_radius: float = 1.5
    min_matches: int = 15
    sigma_ast_range: tuple[float, float] = (0.02, 0.5)


@dataclass
class DiffTile:
    """One ZOGY tile: its kept region and its difference-image PSF and flux scales."""

    y0: int
    y1: int
    x0: int
    x1: int
    psf: np.ndarray
    """Unit-sum P_D stamp (``psf_size`` square), IPAC's ``diffimgpsf``."""
    flux_scale: float
    """F_S / F_D: the score S of a source of 1 DN (science units) at its position."""
    fwhm: float
    """FWHM of P_D (pixels), from its second moments."""

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x >= self.x0 - 0.5) & (x < self.x1 - 0.5) & (y >= self.y0 - 0.5) & (
            y < self.y1 - 0.5)


@dataclass
class DiffImage:
    """Products of :func:`subtract` (science pixel grid; NaN where either image is bad).

    Attributes
    ----------
    diff : ndarray
        Difference image in science DN (ZOGY's D divided by F_D): a point source of flux ``f``
        DN in the science image appears as ``f * P_D``; IPAC's ``scimrefdiffimg``.
    diff_sigma : ndarray
        1-sigma uncertainty of ``diff`` per pixel (DN), including both images' source noise.
    score : ndarray
        Matched-filter score S divided by F_D (so that ``score / tile.flux_scale`` is the PSF
        flux in DN).
    score_sigma : ndarray
        1-sigma of ``score`` from background and source noise (no astrometric term).
    scorr : ndarray
        Corrected score (ZOGY eq. 25), in standard deviations.
    mask : ndarray
        OR of the science mask and the registered reference mask.
    science : ndarray
        Background-subtracted science pixels (for cutouts).
    template : ndarray
        Registered, flux-matched, background-subtracted reference (for cutouts).
    tiles : list of DiffTile
    header : astropy.io.fits.Header
        Science header plus the subtraction keywords (see :func:`subtract`).
    """

    diff: np.ndarray
    diff_sigma: np.ndarray
    score: np.ndarray
    score_sigma: np.ndarray
    scorr: np.ndarray
    mask: np.ndarray
    science: np.ndarray
    template: np.ndarray
    tiles: list[DiffTile]
    header: fits.Header
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.diff.shape  # type: ignore[return-value]

    def tile_of(self, x: float, y: float) -> DiffTile:
        """The tile whose kept region holds pixel (x, y)."""
        for t in self.tiles:
            if t.contains(np.float64(x), np.float64(y)):
                return t
        return min(self.tiles, key=lambda t: (0.5 * (t.x0 + t.x1) - x) ** 2
                   + (0.5 * (t.y0 + t.y1) - y) ** 2)

    def central_tile(self) -> DiffTile:
        ny, nx = self.shape
        return self.tile_of(nx / 2.0, ny / 2.0)


def _robust_sigma(a: np.ndarray, good: np.ndarray, step: int = 2) -> float:
    v = a[::step, ::step][good[::step, ::step]]
    _, _, std = sigma_clipped_stats(v, sigma=3.0, maxiters=5)
    return float(std)


def align_reference(ref: QuadrantImage, wcs: WCS, shape: tuple[int, int], order: int = 3,
                    bad_bits: int = BAD_PIXEL_BITS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample a reference's pixels, variance and mask onto a science grid.

    Returns ``(data, variance, mask)`` on ``shape``; data and variance are NaN outside the
    reference and where its mask has ``bad_bits`` (pixels with no co-add coverage too).
    """
    var = input_variance(ref)
    bad = ((ref.mask & bad_bits) != 0) | ~np.isfinite(ref.data) | ~np.isfinite(var)
    data = np.where(bad, 0.0, ref.data).astype(np.float32)
    var = np.where(bad, 0.0, var).astype(np.float32)
    planes = np.stack([data, var, bad.astype(np.float32), ref.mask.astype(np.float32)])
    out = resample_fast(planes, ref.wcs, wcs, shape, order=(order, 1, 1, 0))
    rdata, rvar, rbad, rmask = out
    outside = ~np.isfinite(rdata)
    badout = outside | (rbad > 0.01)
    rdata[badout] = np.nan
    rvar[badout] = np.nan
    mask = np.where(outside, 0, np.nan_to_num(rmask)).astype(np.int64).astype(MASK_DTYPE)
    return rdata, np.maximum(rvar, 0), mask


def _match(sci_xy: np.ndarray, ref_xy: np.ndarray, radius: float) -> tuple[np.ndarray, ...]:
    if len(sci_xy) == 0 or len(ref_xy) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    dist, idx = cKDTree(ref_xy).query(sci_xy, distance_upper_bound=radius)
    ok = np.isfinite(dist)
    return np.flatnonzero(ok), idx[ok]


def catalog_match_stats(sci_cat, ref_cat, wcs: WCS, scale: float, config: SubtractConfig
                        ) -> dict[str, float]:
    """Flux ratio and registration rms from matched bright stars of the two PSF catalogues.

    ``sci_cat`` and ``ref_cat`` are tables with ``xpos, ypos`` (science, 1-based) / ``ra, dec``
    (reference), ``flux``, ``snr`` and ``flags``. ``scale`` is the zero-point flux scale of the
    reference. Returns ``ratio`` (science flux / scaled reference flux), ``sigma_x``,
    ``sigma_y`` (pixels) and ``n`` (stars used); NaN where too few stars matched.
    """
    out = {"ratio": np.nan, "sigma_x": np.nan, "sigma_y": np.nan, "n": 0}
    if sci_cat is None or ref_cat is None or len(sci_cat) == 0 or len(ref_cat) == 0:
        return out
    s_ok = (np.asarray(sci_cat["snr"]) > 20) & clean_flags(sci_cat["flags"])
    r_ok = (np.asarray(ref_cat["snr"]) > 20) & clean_flags(ref_cat["flags"])
    sx = np.asarray(sci_cat["xpos"], float)[s_ok] - 1.0
    sy = np.asarray(sci_cat["ypos"], float)[s_ok] - 1.0
    rx, ry = wcs.all_world2pix(np.asarray(ref_cat["ra"], float)[r_ok],
                               np.asarray(ref_cat["dec"], float)[r_ok], 0, quiet=True)
    i, j = _match(np.column_stack([sx, sy]), np.column_stack([rx, ry]), config.match_radius)
    out["n"] = len(i)
    if len(i) < config.min_matches:
        return out
    fs = np.asarray(sci_cat["flux"], float)[s_ok][i]
    fr = np.asarray(ref_cat["flux"], float)[r_ok][j] * scale
    good = (fs > 0) & (fr > 0)
    out["ratio"] = float(np.median(fs[good] / fr[good]))
    dx, dy = sx[i] - rx[j], sy[i] - ry[j]
    # A constant offset is absorbed by neither image's WCS; what ZOGY needs is the scatter.
    out["sigma_x"] = float(MAD_TO_SIGMA * np.median(np.abs(dx - np.median(dx))))
    out["sigma_y"] = float(MAD_TO_SIGMA * np.median(np.abs(dy - np.median(dy))))
    return out


def _psf_fwhm(stamp: np.ndarray) -> float:
    """FWHM (pixels) of a centred stamp from its second moments (Gaussian equivalent)."""
    n = stamp.shape[0]
    g = np.arange(n) - n // 2
    p = np.clip(stamp, 0, None)
    p = p / p.sum()
    var = float((p.sum(0) * g**2).sum() + (p.sum(1) * g**2).sum()) / 2.0
    return 2.3548 * np.sqrt(max(var, 1e-6))


def _tiles(n: int, tile: int) -> list[tuple[int, int]]:
    k = max(1, round(n / tile))
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return list(itertools.pairwise(edges))


def subtract(
    science: QuadrantImage,
    reference: QuadrantImage,
    config: SubtractConfig = SubtractConfig(),
    sci_cat=None,
    ref_cat=None,
) -> DiffImage:
    """Subtract a reference from a calibrated science quadrant with ZOGY.

    Parameters
    ----------
    science : QuadrantImage
        Calibrated science quadrant with sky (header MAGZP, GAIN, READNOI), mask, WCS and PSF.
    reference : QuadrantImage
        Reference co-add (header MAGZP), its variance (``refunc**2``), mask, WCS and PSF.
    config : SubtractConfig
    sci_cat, ref_cat : table-like or None
        PSF catalogues (psfcat, refpsfcat) for the flux ratio and registration rms.

    Returns
    -------
    DiffImage
        Header keywords added: FLXSCALE (reference scale applied), FLXRATIO (star-based
        refinement), SIGMANEW/SIGMAREF (background noise, DN), ASTSIGX/ASTSIGY (registration rms,
        px), NASTMTCH, DIFFMLIM (5-sigma PSF limit of the difference), DIFFFWHM, RFID, NTILES.
    """
    import time

    t0 = time.perf_counter()
    if science.wcs is None or reference.wcs is None:
        raise ValueError("science and reference need a WCS")
    if science.psf is None or reference.psf is None:
        raise ValueError("science and reference need a PSF model")
    for name, img in (("science", science), ("reference", reference)):
        if "MAGZP" not in img.header:
            raise ValueError(f"{name} header lacks MAGZP")
    shape = science.shape
    ny, nx = shape
    zp = float(science.header["MAGZP"])
    scale = 10.0 ** (0.4 * (zp - float(reference.header["MAGZP"])))

    rdata, rvar, rmask = align_reference(reference, science.wcs, shape, config.resample_order,
                                         config.bad_bits)
    t1 = time.perf_counter()
    stats = catalog_match_stats(sci_cat, ref_cat, science.wcs, scale, config)
    ratio = stats["ratio"] if np.isfinite(stats["ratio"]) else 1.0
    lo, hi = config.sigma_ast_range
    sig_x = float(np.clip(stats["sigma_x"], lo, hi)) if np.isfinite(stats["sigma_x"]) else hi / 2
    sig_y = float(np.clip(stats["sigma_y"], lo, hi)) if np.isfinite(stats["sigma_y"]) else hi / 2
    total = scale * ratio

    sci_bad = ((science.mask & config.bad_bits) != 0) | ~np.isfinite(science.data)
    bad = sci_bad | ~np.isfinite(rdata)
    svar = input_variance(science)
    sbkg = estimate_background(science.data, bad, config.background)
    new = (science.data - sbkg.level).astype(np.float32)
    ref = (rdata * np.float32(total)).astype(np.float32)
    rfill = np.where(bad, 0.0, ref).astype(np.float32)
    rbkg = estimate_background(rfill, bad, config.background)
    ref -= rbkg.level
    rv = (rvar * np.float32(total**2)).astype(np.float32)
    good = ~bad
    sigma_new = _robust_sigma(new, good)
    sigma_ref = _robust_sigma(ref, good)
    new[bad] = np.nan
    ref[bad] = np.nan
    t2 = time.perf_counter()

    diff = np.full(shape, np.nan, np.float32)
    diff_sigma = np.full(shape, np.nan, np.float32)
    score = np.full(shape, np.nan, np.float32)
    score_sigma = np.full(shape, np.nan, np.float32)
    scorr = np.full(shape, np.nan, np.float32)
    zcfg = ZogyConfig(sigma_x=sig_x, sigma_y=sig_y, workers=config.zogy.workers,
                      pad_to_fast=config.zogy.pad_to_fast,
                      pad=max(config.zogy.pad, config.psf_size),
                      psf_stamp_size=config.psf_size)
    tiles: list[DiffTile] = []
    ov = config.overlap
    for y0, y1 in _tiles(ny, config.tile):
        for x0, x1 in _tiles(nx, config.tile):
            ey0, ey1, ex0, ex1 = max(y0 - ov, 0), min(y1 + ov, ny), max(x0 - ov, 0), min(x1 + ov,
                                                                                          nx)
            # Integer positions: a stamp is centred on its middle pixel only there.
            xc, yc = (x0 + x1 - 1) // 2, (y0 + y1 - 1) // 2
            pn = science.psf.stamp(xc, yc, config.psf_size)
            rx, ry = reference.wcs.all_world2pix(*science.wcs.all_pix2world(xc, yc, 0), 0)
            pr = reference.psf.stamp(round(float(rx)), round(float(ry)), config.psf_size)
            sl = (slice(ey0, ey1), slice(ex0, ex1))
            res = zogy(new[sl], ref[sl], pn, pr, sigma_new, sigma_ref, svar[sl], rv[sl],
                       config=zcfg)
            keep = (slice(y0 - ey0, y1 - ey0), slice(x0 - ex0, x1 - ex0))
            core = (slice(y0, y1), slice(x0, x1))
            fd = res.flux_zp
            diff[core] = res.diff[keep] / fd
            diff_sigma[core] = np.sqrt(res.diff_var[keep]) / fd
            score[core] = res.score[keep] / fd
            score_sigma[core] = np.sqrt(res.score_var[keep]) / fd
            scorr[core] = res.score_corr[keep]
            tiles.append(DiffTile(y0, y1, x0, x1, res.diff_psf.astype(np.float32),
                                  res.flux_scale / fd, _psf_fwhm(res.diff_psf)))
    t3 = time.perf_counter()

    mask = (science.mask | rmask).astype(MASK_DTYPE)
    ctile = min(tiles, key=lambda t: (0.5 * (t.x0 + t.x1) - nx / 2) ** 2
                + (0.5 * (t.y0 + t.y1) - ny / 2) ** 2)
    # 5-sigma PSF-flux limit from the background noise of the score (median over the image).
    flux_sig = np.nanmedian(score_sigma[::4, ::4]) / ctile.flux_scale
    diffmaglim = zp - 2.5 * np.log10(5.0 * flux_sig) if flux_sig > 0 else np.nan
    hdr = science.header.copy()
    for key in ("RFID", "NFRAMES", "JDSTART", "JDEND"):
        if key in reference.header:
            hdr[key if key != "NFRAMES" else "NFRAMREF"] = (reference.header[key],
                                                           reference.header.comments[key])
    hdr["MAGZPREF"] = (float(reference.header["MAGZP"]), "zero point of the reference")
    hdr["FLXSCALE"] = (round(scale, 6), "reference scale to the science zero point")
    hdr["FLXRATIO"] = (round(ratio, 5), "star-based refinement of FLXSCALE")
    hdr["SIGMANEW"] = (round(sigma_new, 4), "background noise of the science (DN)")
    hdr["SIGMAREF"] = (round(sigma_ref, 4), "background noise of the matched reference (DN)")
    hdr["ASTSIGX"] = (round(sig_x, 4), "registration rms along x used by ZOGY (px)")
    hdr["ASTSIGY"] = (round(sig_y, 4), "registration rms along y used by ZOGY (px)")
    hdr["NASTMTCH"] = (int(stats["n"]), "stars matched science-reference")
    hdr["DIFFMLIM"] = (round(float(diffmaglim), 3) if np.isfinite(diffmaglim) else -999.0,
                       "5-sigma PSF limit of the difference (mag)")
    hdr["DIFFFWHM"] = (round(ctile.fwhm, 3), "FWHM of the difference PSF at the centre (px)")
    hdr["NTILES"] = (len(tiles), "ZOGY tiles")
    hdr["BUNIT"] = ("DN", "science data numbers at MAGZP")
    t4 = time.perf_counter()
    return DiffImage(diff, diff_sigma, score, score_sigma, scorr, mask, np.where(bad, np.nan, new),
                     ref, tiles, hdr, {"register": t1 - t0, "match": t2 - t1, "zogy": t3 - t2,
                                       "finish": t4 - t3})
