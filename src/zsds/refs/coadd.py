"""Co-addition of calibrated quadrant images onto a fixed reference grid.

Algorithm (per reference field/CCD/quadrant/filter):

1. **Prepare** each input: pixels with any of ``bad_bits`` set become NaN; the variance is the
   image's own map or is rebuilt from GAIN/READNOI (or SKYSIG); a global sky level (sigma-clipped
   median of the good pixels away from sources) is subtracted; data and variance are scaled to
   the common zero point ``zp`` by ``f = 10**(0.4 (zp - MAGZP))`` and ``f**2``.
2. **Resample** data and variance together onto the reference grid with zsds's one resampler,
   :func:`zsds.core.resample.resample_fast` (bilinear; it agrees with
   :func:`reproject.reproject_interp` and is ~8x faster). The reference grid is a TAN projection
   with the camera's pixel scale, so input and output pixels have the same area to <0.2 % (the
   SIP distortion); bilinear weights sum to one, so the flux per pixel (and a source's summed
   flux) is preserved. NaN (bad or off-chip) inputs make
   every output pixel they touch NaN, i.e. excluded.
3. **Reject outliers** per pixel across inputs, in row blocks: with ``m`` the per-pixel median
   over inputs and ``z_i = (x_i - m) / sigma_i`` the normalised residuals, ``s`` = MAD-std of the
   ``z_i`` (floored at 1), input ``i`` is rejected where
   ``|x_i - m| > clip_sigma * sigma_i * s + clip_ampfrac * |m|``. ``s`` widens the tolerance where
   inputs legitimately disagree (star cores seen with different seeing); a transient, asteroid or
   cosmic ray present in a minority of inputs leaves ``m`` and ``s`` unchanged and is rejected.
   Rejections are grown by ``clip_grow`` pixels to remove the faint wings as well.
4. **Combine** with inverse-variance weights ``w_i = 1 / sky variance_i`` (one weight per input:
   per-pixel weights that include source Poisson noise would bias bright sources low):
   ``image = sum w x / sum w``, ``variance = sum w^2 var / (sum w)^2``; coverage = number of inputs
   used per pixel; mask = ``MaskBit.NAN`` where coverage is zero.

Memory: resampled inputs are kept in one float32 stack (in RAM, or in a temporary memory-mapped
file above ``max_stack_bytes``); rejection and combination run on ``block_rows`` rows at a time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from astropy.wcs import WCS
from scipy.ndimage import maximum_filter

from zsds.core.fields import get_field
from zsds.core.image import QuadrantImage, input_variance
from zsds.core.instrument import QUAD_NX, QUAD_NY
from zsds.core.masks import BAD_PIXEL_BITS, MASK_DTYPE, MaskBit
from zsds.core.resample import resample_fast
from zsds.core.stats import MAD_TO_SIGMA
from zsds.core.wcs import quadrant_wcs


@dataclass(frozen=True)
class CoaddConfig:
    """Parameters of :func:`coadd`.

    ``bad_bits`` defaults to every mask bit except SOURCE and PSF_SOURCE. ``clip_ampfrac``
    absorbs PSF and registration mismatch on bright sources; ``map_step`` is the step of
    :func:`zsds.core.resample.resample_fast`'s exact pixel mapping.
    """

    zp: float = 27.0  #: common zero point of the co-add (mag for 1 DN); inputs scaled to it
    bad_bits: int = BAD_PIXEL_BITS  #: mask bits excluding an input pixel (all but the source bits)
    clip_sigma: float = 4.0  #: rejection threshold, input's own noise (times MAD-std scale)
    clip_ampfrac: float = 0.3  #: extra tolerance, share of the per-pixel median (bright PSFs)
    clip_grow: int = 1  #: rejected pixels grow by this many px per input (outlier wings)
    clip_min_inputs: int = 3  #: no rejection where fewer inputs cover a pixel
    block_rows: int = 256  #: grid rows per rejection/combination block
    map_step: int = 16  #: grid step (px) of ``resample_fast``'s exact pixel mapping
    max_stack_bytes: int = 2**30  #: larger resampled stacks are memory-mapped to a temp file
    bkg_subsample: int = 2  #: every n-th pixel per axis estimates an input's background


@dataclass
class CoaddResult:
    """A co-added reference image on the reference grid."""

    image: np.ndarray  #: (ny, nx) float32 co-add, DN at ``zp`` (0 where coverage is zero)
    variance: np.ndarray  #: (ny, nx) float32 variance of ``image`` (inf where not covered)
    coverage: np.ndarray  #: (ny, nx) int16 inputs combined per pixel (after rejection)
    mask: np.ndarray  #: (ny, nx) int16 ZTF mask bits: ``MaskBit.NAN`` where not covered
    zp: float  #: zero point of ``image`` (mag for 1 DN)
    wcs: WCS  #: the reference grid
    n_inputs: int  #: input images co-added
    rejected_fraction: float  #: share of covered input pixels rejected as outliers

    @property
    def uncertainty(self) -> np.ndarray:
        """1-sigma uncertainty map, ``sqrt(variance)``."""
        return np.sqrt(self.variance)

    def header(self) -> fits.Header:
        """Header with the reference WCS, MAGZP and NFRAMES."""
        hdr = self.wcs.to_header(relax=True)
        hdr["MAGZP"] = (self.zp, "zero point of the co-add (mag for 1 DN)")
        hdr["NFRAMES"] = (self.n_inputs, "number of input images")
        hdr["BUNIT"] = ("DN", "data numbers scaled to MAGZP")
        return hdr


def reference_grid(field: int, ccdid: int, qid: int, nx: int = QUAD_NX, ny: int = QUAD_NY) -> WCS:
    """The fixed TAN reference pixel grid of a field/CCD/quadrant (no SIP, rotation 0).

    Parameters
    ----------
    field : int
        ZTF field id (its centre is the projection's optical axis).
    ccdid, qid : int
    nx, ny : int
        Grid size (small grids sit at the centre of the full-size quadrant).
    """
    f = get_field(field)
    return quadrant_wcs(f.ra, f.dec, ccdid, qid, 0.0, nx, ny, distortion_k=0.0)


def zp_scale(magzp: float, zp: float) -> float:
    """Factor that brings data at zero point ``magzp`` to zero point ``zp``."""
    return float(10.0 ** (0.4 * (zp - magzp)))


def background_level(data: np.ndarray, good: np.ndarray, subsample: int = 2) -> float:
    """Global sky level: sigma-clipped median of the good pixels away from sources.

    Every ``subsample``-th pixel per axis is used. A first 3-sigma-clipped pass finds the pixels
    above ``median + 2 sigma``; these, grown by ~6 pixels, are excluded in the second pass so that
    the wings of stars do not bias the sky (and hence the co-add's fluxes) high.
    """
    sl = (slice(None, None, subsample), slice(None, None, subsample))
    d, g = data[sl], good[sl]
    if not g.any():
        raise ValueError("input has no good pixels")
    _, med, std = sigma_clipped_stats(d[g], sigma=3.0, maxiters=5)
    grow = 2 * max(6 // subsample, 1) + 1
    src = maximum_filter((d > med + 2.0 * std).view(np.uint8), size=grow).astype(bool)
    keep = g & ~src
    if keep.sum() < 0.05 * g.sum():
        return float(med)
    _, med, _ = sigma_clipped_stats(d[keep], sigma=3.0, maxiters=5)
    return float(med)


def _nanmedian0(a: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaN (NaN where all are NaN); faster than ``np.nanmedian``."""
    s = np.sort(a, axis=0)  # NaN sort last
    n = np.sum(np.isfinite(a), axis=0)
    lo = np.take_along_axis(s, np.maximum((n - 1) // 2, 0)[None], axis=0)[0]
    hi = np.take_along_axis(s, np.maximum(n // 2, 0)[None], axis=0)[0]
    med = 0.5 * (lo + hi)
    med[n == 0] = np.nan
    return med


def _prepare(img: QuadrantImage, cfg: CoaddConfig) -> tuple[np.ndarray, float]:
    """Stack (2, ny, nx) of scaled, sky-subtracted data and variance (NaN = bad) and its weight."""
    if "MAGZP" not in img.header:
        raise ValueError("input header lacks MAGZP")
    if img.wcs is None:
        raise ValueError("input has no WCS")
    var = input_variance(img)
    good = ((img.mask & cfg.bad_bits) == 0) & np.isfinite(img.data) & np.isfinite(var) & (var > 0)
    f = zp_scale(float(img.header["MAGZP"]), cfg.zp)
    sky = background_level(img.data, good, cfg.bkg_subsample)
    stack = np.empty((2, *img.shape), np.float32)
    np.multiply(img.data - np.float32(sky), np.float32(f), out=stack[0])
    np.multiply(var, np.float32(f * f), out=stack[1])
    stack[:, ~good] = np.nan
    sky_var = float(np.median(stack[1, ::4, ::4][good[::4, ::4]]))
    return stack, 1.0 / sky_var


def _combine_block(
    data: np.ndarray, var: np.ndarray, weights: np.ndarray, cfg: CoaddConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Reject outliers and combine one block (n, rows, nx); returns image, var, coverage, counts."""
    valid = np.isfinite(data) & np.isfinite(var)
    n_valid = valid.sum(axis=0)
    sigma = np.sqrt(var)
    med = _nanmedian0(data)
    z = (data - med) / sigma
    s = MAD_TO_SIGMA * _nanmedian0(np.abs(z - _nanmedian0(z)))
    s = np.where(np.isfinite(s), np.maximum(s, 1.0), 1.0)
    tol = cfg.clip_sigma * sigma * s + cfg.clip_ampfrac * np.abs(med)
    reject = valid & (np.abs(data - med) > tol) & (n_valid >= cfg.clip_min_inputs)
    if cfg.clip_grow > 0 and reject.any():
        g = 2 * cfg.clip_grow + 1
        reject = maximum_filter(reject.view(np.uint8), size=(1, g, g)).astype(bool) & valid
    use = valid & ~reject
    w = np.where(use, weights[:, None, None], 0.0).astype(np.float32)
    wsum = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        image = np.where(use, data, 0.0).astype(np.float32)
        image = (w * image).sum(axis=0) / wsum
        variance = (w * w * np.where(use, var, 0.0)).sum(axis=0) / wsum**2
    coverage = use.sum(axis=0).astype(np.int16)
    none = coverage == 0
    image[none] = 0.0
    variance[none] = np.inf
    return image, variance.astype(np.float32), coverage, int(valid.sum()), int(reject.sum())


def coadd(
    images: Sequence[QuadrantImage],
    ref_wcs: WCS,
    shape: tuple[int, int],
    config: CoaddConfig | None = None,
) -> CoaddResult:
    """Co-add calibrated quadrant images onto a reference grid (see the module docstring).

    Parameters
    ----------
    images : sequence of QuadrantImage
        Inputs with data (DN, sky included), mask, WCS and MAGZP in the header; the variance is
        taken from the image or rebuilt (:func:`input_variance`).
    ref_wcs : astropy.wcs.WCS
        Reference grid (:func:`reference_grid`).
    shape : (ny, nx)
        Shape of the reference grid.
    config : CoaddConfig, optional

    Returns
    -------
    CoaddResult
    """
    cfg = config or CoaddConfig()
    if len(images) == 0:
        raise ValueError("no input images to co-add")
    ny, nx = shape
    n = len(images)
    nbytes = n * 2 * ny * nx * 4
    tmp = None
    if nbytes > cfg.max_stack_bytes:
        tmp = tempfile.TemporaryFile(prefix="zsds_coadd_")
        cube = np.memmap(tmp, np.float32, "w+", shape=(n, 2, ny, nx))
    else:
        cube = np.empty((n, 2, ny, nx), np.float32)
    try:
        weights = np.empty(n)
        for i, img in enumerate(images):
            stack, weights[i] = _prepare(img, cfg)
            # Bilinear (order 1): its weights sum to one, so flux per pixel is preserved.
            out = resample_fast(stack, img.wcs, ref_wcs, (ny, nx), cfg.map_step)
            cube[i] = out
            del stack, out
        image = np.empty((ny, nx), np.float32)
        variance = np.empty((ny, nx), np.float32)
        coverage = np.empty((ny, nx), np.int16)
        halo = max(cfg.clip_grow, 0)
        n_valid = n_rej = 0
        for y0 in range(0, ny, cfg.block_rows):
            y1 = min(y0 + cfg.block_rows, ny)
            a, b = max(y0 - halo, 0), min(y1 + halo, ny)
            blk = np.asarray(cube[:, :, a:b])
            im, va, cov, nv, nr = _combine_block(blk[:, 0], blk[:, 1], weights, cfg)
            inner = slice(y0 - a, y0 - a + (y1 - y0))
            image[y0:y1], variance[y0:y1], coverage[y0:y1] = im[inner], va[inner], cov[inner]
            # Counts over the inner rows only (approximate: the halo rows are counted twice).
            n_valid += nv * (y1 - y0) // (b - a)
            n_rej += nr * (y1 - y0) // (b - a)
    finally:
        del cube
        if tmp is not None:
            tmp.close()
    mask = np.where(coverage == 0, MASK_DTYPE(int(MaskBit.NAN)), MASK_DTYPE(0)).astype(MASK_DTYPE)
    return CoaddResult(
        image=image,
        variance=variance,
        coverage=coverage,
        mask=mask,
        zp=cfg.zp,
        wcs=ref_wcs,
        n_inputs=n,
        rejected_fraction=n_rej / max(n_valid, 1),
    )


__all__ = [
    "CoaddConfig",
    "CoaddResult",
    "background_level",
    "coadd",
    "reference_grid",
    "zp_scale",
]
