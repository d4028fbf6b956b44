"""Peer packages on the same images as zsds, in the same process, one thread each.

After the chain jobs of :mod:`zsds.bench.realtime`, one of their quadrants (the *peer
quadrant*) is read back from its products and each step that a peer package also does is timed
twice, back to back: zsds's own function and the peer's, on the same pixels.

========================  =====================================  ==============================
zsds step                 peer                                   what both are given
========================  =====================================  ==============================
``extract``               ``sep`` (Background, extract, Kron     the calibrated science image
(background + aperture    and circular apertures) and            and its bad pixels; same mesh
catalogue)                ``photutils`` (Background2D,           (128 px), threshold (1.5
                          detect_sources, deblend_sources,       sigma), minimum area (5 px),
                          SourceCatalog with Kron fluxes)        deblending contrast (0.005)
``psfphot``               ``photutils`` ``PSFPhotometry``        the aperture catalogue's
                          (an ``ImagePSF`` of zsds's PSF at      positions; photutils fits at
                          the centre, isolated fits)             most ``peer_max_sources``,
                                                                 scaled to all
``register``              ``reproject.reproject_interp``         the reference's four planes
                                                                 (data bicubic, variance and
                                                                 bad pixels bilinear, mask
                                                                 nearest) onto the science WCS
``zogy``                  the FFT floor: the 6 forward and 6     zsds's ZOGY tile layout
                          inverse ``scipy.fft`` float32
                          transforms of ZOGY's equations per
                          tile (N, R, P_n, P_r, V_n, V_r; D, S,
                          V(S), V(D), S_n, S_r); ``sfft``
                          (Numpy backend, compile excluded, at
                          most ``sfft_max_side`` square, time
                          scaled by the pixels)
========================  =====================================  ==============================

properimage's ZOGY is not run: ``pip install properimage`` fails (its dependency ``tinynpydb``
is a 2016 source package whose ``setup.py`` downloads setuptools 18.0.1 through ``ez_setup``).
Ratios are zsds / peer (below 1: zsds is faster); all times are processor seconds.
"""

from __future__ import annotations

import inspect
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from zsds.bench.harness import real_quadrant_inputs, timed_calls
from zsds.core.home import Home

__all__ = ["PEER_STEP", "PeerInputs", "fft_floor", "load_peer_inputs", "run_peers",
           "run_real_peers", "zogy_tile_shapes"]

#: Peer -> the zsds step it is compared with.
PEER_STEP = {"sep_extract": "extract", "photutils_extract": "extract",
             "photutils_psfphot": "psfphot", "reproject_interp": "register",
             "fft_floor": "zogy", "sfft": "zogy", "properimage_zogy": "zogy"}
PROPERIMAGE_SKIP = ("not installable: `pip install properimage` fails building its dependency "
                    "tinynpydb (a 2016 sdist whose setup.py downloads setuptools 18.0.1 "
                    "through ez_setup)")


@dataclass
class PeerInputs:
    """The peer quadrant as the steps need it (read back from the chain's products).

    Attributes
    ----------
    science : QuadrantImage
        Calibrated science quadrant (sky included) with its PSF, mask and WCS.
    sci_cat : DataFrame
        Its PSF-fit catalogue (``psfcat``).
    sexcat : DataFrame
        Its aperture catalogue, 0-based ``x``, ``y``.
    reference : QuadrantImage
        The reference it was subtracted from.
    ref_cat : DataFrame
        The reference's PSF-fit catalogue.
    """

    science: object
    sci_cat: pd.DataFrame
    sexcat: pd.DataFrame
    reference: object
    ref_cat: pd.DataFrame


def load_peer_inputs(home: Home, pid: int) -> PeerInputs:
    """Read a processed quadrant's science products and its reference.

    Raises
    ------
    LookupError
        If the quadrant has no ``sciimg`` or no reference.
    """
    from astropy.table import Table
    from sqlalchemy import select

    from zsds.db import connect
    from zsds.db.engine import session
    from zsds.db.schema import QuadrantProduct
    from zsds.diffim.run import latest_reference, read_reference, read_science

    engine = connect(home.db_url)
    with session(engine) as s:
        row = s.execute(select(QuadrantProduct).where(
            QuadrantProduct.pid == pid, QuadrantProduct.kind == "sciimg")).scalar_one_or_none()
        if row is None:
            raise LookupError(f"no sciimg for pid {pid}")
        s.expunge(row)
    sci, sci_cat = read_science(home, row.relpath)
    sex = Table.read(home.path(row.relpath.replace("sciimg.fits", "sexcat.fits")))
    sexcat = sex.to_pandas() if len(sex) else pd.DataFrame({"x": [], "y": [], "flux_auto": []})
    sexcat["x"] -= 1.0
    sexcat["y"] -= 1.0
    ref_row = latest_reference(engine, row.field, row.ccdid, row.qid, row.fid)
    if ref_row is None:
        raise LookupError(f"no reference for pid {pid}")
    ref, ref_cat = read_reference(home, ref_row)
    return PeerInputs(sci, sci_cat, sexcat, ref, ref_cat)


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Processor seconds of ``fn()`` (this process is single-threaded here) and its result."""
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


# ----------------------------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------------------------


def zsds_extract(data: np.ndarray, mask: np.ndarray) -> pd.DataFrame:
    """zsds's background and aperture catalogue (the calibration's ``extract`` step)."""
    from zsds.core.masks import BAD_PIXEL_BITS
    from zsds.instcal.detect import DetectConfig, estimate_background, extract_sources

    cfg = DetectConfig()
    bad = (mask & BAD_PIXEL_BITS) != 0
    bkg = estimate_background(data, bad, cfg)
    return extract_sources((data - bkg.level).astype(np.float32), bkg, mask, cfg)


def sep_extract(data: np.ndarray, bad: np.ndarray) -> int:
    """sep with zsds's settings: background mesh, extraction, Kron and circular apertures;
    returns the number of sources."""
    import sep

    from zsds.instcal.detect import DetectConfig

    cfg = DetectConfig()
    sep.set_extract_pixstack(max(300_000, data.size))
    sep.set_sub_object_limit(4096)
    data = np.ascontiguousarray(data, np.float32)
    bkg = sep.Background(data, mask=bad, bw=cfg.bkg_box, bh=cfg.bkg_box, fw=cfg.bkg_filter,
                         fh=cfg.bkg_filter)
    sub = data - bkg.back()
    obj = sep.extract(sub, cfg.thresh, err=bkg.globalrms, mask=bad, minarea=cfg.minarea,
                      deblend_cont=cfg.deblend_cont)
    if len(obj):
        x, y = obj["x"], obj["y"]
        a, b, theta = obj["a"], np.maximum(obj["b"], 1e-3), obj["theta"]
        kr, _ = sep.kron_radius(sub, x, y, a, b, theta, 6.0, mask=bad)
        sep.sum_ellipse(sub, x, y, a, b, theta, 2.5 * np.maximum(kr, 1.0), err=bkg.globalrms,
                        mask=bad, subpix=1)
        for d in cfg.ap_diameters:
            sep.sum_circle(sub, x, y, d / 2.0, err=bkg.globalrms, mask=bad, subpix=1)
    return len(obj)


def photutils_extract(data: np.ndarray, bad: np.ndarray, fwhm: float) -> int:
    """photutils' SExtractor-like path with zsds's settings: Background2D, a Gaussian
    detection filter, detect_sources, deblend_sources, SourceCatalog with Kron fluxes; returns
    the number of sources."""
    from astropy.convolution import convolve
    from photutils.background import Background2D, SExtractorBackground
    from photutils.segmentation import (
        SourceCatalog,
        deblend_sources,
        detect_sources,
        make_2dgaussian_kernel,
    )

    from zsds.instcal.detect import DetectConfig

    cfg = DetectConfig()
    bkg = Background2D(data, (cfg.bkg_box, cfg.bkg_box), filter_size=(cfg.bkg_filter,) * 2,
                       mask=bad, bkg_estimator=SExtractorBackground())
    sub = data - bkg.background
    kernel = make_2dgaussian_kernel(max(fwhm, 1.0), size=5)
    conv = convolve(np.where(bad, 0.0, sub), kernel)
    segm = detect_sources(conv, cfg.thresh * bkg.background_rms, n_pixels=cfg.minarea,
                          mask=bad)
    if segm is None:
        return 0
    levels = ("n_levels" if "n_levels" in inspect.signature(deblend_sources).parameters
              else "nlevels")  # renamed in photutils 3.0
    segm = deblend_sources(conv, segm, n_pixels=cfg.minarea, contrast=cfg.deblend_cont,
                           progress_bar=False, **{levels: 32})
    cat = SourceCatalog(sub, segm, convolved_data=conv, mask=bad)
    _ = cat.kron_flux
    return len(cat)


# ----------------------------------------------------------------------------------------------
# PSF photometry
# ----------------------------------------------------------------------------------------------


def photutils_psfphot(sub: np.ndarray, variance: np.ndarray, bad: np.ndarray, stamp: np.ndarray,
                      x: np.ndarray, y: np.ndarray, flux: np.ndarray, fwhm: float) -> int:
    """photutils' PSFPhotometry of the given sources with one ``ImagePSF`` (isolated fits,
    no grouping: photutils' cheapest mode); returns the number of fits."""
    from astropy.table import QTable
    from photutils.psf import ImagePSF, PSFPhotometry

    half = math.ceil(max(2.5, 2.0 * fwhm))
    psf = ImagePSF(stamp / stamp.sum(), x_0=0.0, y_0=0.0, flux=1.0)
    phot = PSFPhotometry(psf, (2 * half + 1,) * 2, aperture_radius=max(1.5, fwhm))
    init = QTable({"x_0": x, "y_0": y, "flux": np.where(np.isfinite(flux) & (flux > 0), flux,
                                                        1.0)})
    with warnings.catch_warnings():  # "fit(s) may not have converged": the peer's own flags
        warnings.simplefilter("ignore")
        res = phot(sub, error=np.sqrt(np.maximum(variance, 1e-6)), mask=bad, init_params=init)
    return len(res)


# ----------------------------------------------------------------------------------------------
# Registration and the FFT floor
# ----------------------------------------------------------------------------------------------


def reproject_register(ref, wcs, shape: tuple[int, int], bad_bits: int) -> None:
    """reproject_interp of the four planes zsds's registration resamples."""
    from reproject import reproject_interp

    from zsds.core.image import input_variance

    var = input_variance(ref)
    bad = ((ref.mask & bad_bits) != 0) | ~np.isfinite(ref.data)
    data = np.where(bad, 0.0, ref.data).astype(np.float32)
    for plane, order in ((data, "bicubic"), (np.where(bad, 0.0, var).astype(np.float32),
                                             "bilinear"),
                         (bad.astype(np.float32), "bilinear"),
                         (ref.mask.astype(np.float32), "nearest-neighbor")):
        reproject_interp((plane, ref.wcs), wcs, shape_out=shape, order=order,
                         return_footprint=False)


def zogy_tile_shapes(shape: tuple[int, int], config=None) -> list[tuple[int, int]]:
    """The padded FFT grid of each ZOGY tile :func:`zsds.diffim.stage.subtract` makes of an
    image of ``shape`` (tile cores of ~``config.tile`` px, ``config.overlap`` margins clipped
    at the edges, padded by ``max(zogy.pad, psf_size)`` to a fast length)."""
    import itertools

    from scipy import fft as sfft

    from zsds.diffim.stage import SubtractConfig

    config = config or SubtractConfig()
    ny, nx = shape
    pad = max(config.zogy.pad, config.psf_size)
    ov = config.overlap

    def cuts(n: int) -> list[tuple[int, int]]:
        k = max(1, round(n / config.tile))
        return list(itertools.pairwise(np.linspace(0, n, k + 1).round().astype(int)))

    out = []
    for y0, y1 in cuts(ny):
        for x0, x1 in cuts(nx):
            h = min(y1 + ov, ny) - max(y0 - ov, 0)
            w = min(x1 + ov, nx) - max(x0 - ov, 0)
            if config.zogy.pad_to_fast:
                out.append((sfft.next_fast_len(h + pad, real=True),
                            sfft.next_fast_len(w + pad, real=True)))
            else:
                out.append((h + pad, w + pad))
    return out


def fft_floor(tile_shapes: list[tuple[int, int]], seed: int = 0) -> float:
    """Seconds of the FFTs ZOGY needs on these tiles: per tile 6 forward ``rfft2`` (N, R, P_n,
    P_r, V_n, V_r) and 6 inverse ``irfft2`` (D, S, V(S), V(D), S_n, S_r), float32, one
    thread."""
    from scipy import fft as sfft

    rng = np.random.default_rng(seed)
    total = 0.0
    for shape in tile_shapes:
        a = rng.standard_normal(shape, dtype=np.float32)
        sfft.irfft2(sfft.rfft2(a[:64, :64], workers=1), s=(64, 64), workers=1)  # warm
        t0 = time.process_time()
        spectra = [sfft.rfft2(a, workers=1) for _ in range(6)]
        for k in range(6):
            sfft.irfft2(spectra[k], s=shape, workers=1)
        total += time.process_time() - t0
    return total


def sfft_subtract(sci: np.ndarray, ref: np.ndarray, fwhm: float) -> tuple[float, float]:
    """sfft's Customized subtraction (Numpy backend, one thread) of the aligned pair; returns
    (compile seconds, subtraction seconds)."""
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    from sfft.sfftcore.SFFTConfigure import SingleSFFTConfigure
    from sfft.sfftcore.SFFTSubtract import GeneralSFFTSubtract

    kerhw = int(np.clip(math.ceil(2.0 * fwhm), 3, 15))
    # sfft's arrays are (x, y), as read from FITS and transposed.
    pix_i = np.ascontiguousarray(np.nan_to_num(ref).T, np.float64)
    pix_j = np.ascontiguousarray(np.nan_to_num(sci).T, np.float64)
    t0 = time.process_time()
    cfg = SingleSFFTConfigure.SSC(NX=pix_i.shape[0], NY=pix_i.shape[1], KerHW=kerhw,
                                  KerPolyOrder=2, BGPolyOrder=2, ConstPhotRatio=True,
                                  BACKEND_4SUBTRACT="Numpy", NUM_CPU_THREADS_4SUBTRACT=1,
                                  NUMBA_CACHE=False, VERBOSE_LEVEL=0)
    t1 = time.process_time()
    GeneralSFFTSubtract.GSS(PixA_I=pix_i, PixA_J=pix_j, PixA_mI=pix_i, PixA_mJ=pix_j,
                            SFFTConfig=cfg, ContamMask_I=None, BACKEND_4SUBTRACT="Numpy",
                            NUM_CPU_THREADS_4SUBTRACT=1, VERBOSE_LEVEL=0)
    return t1 - t0, time.process_time() - t1


# ----------------------------------------------------------------------------------------------
# The runs
# ----------------------------------------------------------------------------------------------


def _ratios(zsds: dict[str, float], seconds: dict[str, float]) -> dict[str, float]:
    return {p: zsds[PEER_STEP[p]] / s for p, s in seconds.items()
            if PEER_STEP.get(p) in zsds and s > 0}


def _time_extractions(data: np.ndarray, mask: np.ndarray, bad: np.ndarray,
                      photutils_fwhm: float | None, zsds: dict[str, float],
                      seconds: dict[str, float], counts: dict[str, int]) -> None:
    """Time zsds's extraction of ``data`` and sep's, and photutils' unless ``photutils_fwhm``
    (the FWHM of its detection filter) is ``None``: processor seconds into ``zsds`` and
    ``seconds``, the number of sources each finds into ``counts``."""
    zsds["extract"], cat = _timed(lambda: zsds_extract(data, mask))
    counts["zsds_extract"] = len(cat)
    seconds["sep_extract"], counts["sep_extract"] = _timed(lambda: sep_extract(data, bad))
    if photutils_fwhm is not None:
        seconds["photutils_extract"], counts["photutils_extract"] = _timed(
            lambda: photutils_extract(data, bad, photutils_fwhm))


def run_peers(home: Home, pid: int, config) -> dict:
    """zsds's steps and the peers on one processed quadrant (see the module docstring).

    Parameters
    ----------
    home : Home
    pid : int
        The quadrant (processed by the chain: products and reference on disk).
    config : RealtimeConfig
        ``peer_max_sources``, ``photutils``, ``sfft``, ``sfft_max_side``.

    Returns
    -------
    dict
        ``zsds`` (step -> seconds), ``seconds`` (peer -> seconds), ``ratios`` (peer -> zsds /
        peer), ``counts``, ``notes``, ``skipped`` (peer -> why).
    """
    from threadpoolctl import threadpool_limits

    from zsds.core.image import input_variance
    from zsds.core.masks import BAD_PIXEL_BITS
    from zsds.diffim.stage import SubtractConfig, align_reference
    from zsds.instcal.psfphot import PSFPhotConfig, psf_photometry

    inp = load_peer_inputs(home, pid)
    sci, ref = inp.science, inp.reference
    shape = sci.shape
    bad = (sci.mask & BAD_PIXEL_BITS) != 0
    data = np.where(bad, 0.0, sci.data).astype(np.float32)
    fwhm = float(sci.psf.fwhm_at(shape[1] / 2, shape[0] / 2))
    zsds: dict[str, float] = {}
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    notes: dict[str, str] = {}
    skipped: dict[str, str] = {"properimage_zogy": PROPERIMAGE_SKIP}
    with threadpool_limits(limits=1):
        _time_extractions(data, sci.mask, bad, fwhm if config.photutils else None,
                          zsds, seconds, counts)
        # PSF photometry of the aperture catalogue's detections (as the calibration does).
        from zsds.instcal.detect import DetectConfig, estimate_background

        bkg = estimate_background(data, bad, DetectConfig())
        sub = (data - bkg.level).astype(np.float32)
        var = input_variance(sci)
        xs, ys = inp.sexcat["x"].to_numpy(float), inp.sexcat["y"].to_numpy(float)
        fl = inp.sexcat["flux_auto"].to_numpy(float)
        zsds["psfphot"], _ = _timed(lambda: psf_photometry(sub, var, bad, sci.psf, xs, ys,
                                                           PSFPhotConfig()))
        counts["zsds_psfphot"] = len(xs)
        if config.photutils and len(xs):
            n = min(len(xs), config.peer_max_sources)
            pick = np.sort(np.random.default_rng(1).choice(len(xs), n, replace=False))
            stamp = sci.psf.stamp(shape[1] / 2, shape[0] / 2, 25).astype(np.float64)
            t, counts["photutils_psfphot"] = _timed(lambda: photutils_psfphot(
                sub, var, bad, stamp, xs[pick], ys[pick], fl[pick], fwhm))
            seconds["photutils_psfphot"] = t * len(xs) / n
            if n < len(xs):
                notes["photutils_psfphot"] = (f"{n} of {len(xs)} sources fitted in {t:.2f} s, "
                                              "scaled to all")
        # Registration: zsds's four planes against reproject's.
        scfg = SubtractConfig()
        zsds["register"], _ = _timed(lambda: align_reference(ref, sci.wcs, shape,
                                                             scfg.resample_order, scfg.bad_bits))
        seconds["reproject_interp"], _ = _timed(lambda: reproject_register(
            ref, sci.wcs, shape, scfg.bad_bits))
        # Subtraction: zsds's whole stage (its ZOGY tiles timed inside), the FFT floor, sfft.
        import zsds.diffim.stage as dstage

        calls: dict = {}
        with timed_calls(dstage, ("zogy",), calls):
            zsds["subtract"], diff = _timed(lambda: dstage.subtract(sci, ref, scfg, inp.sci_cat,
                                                                    inp.ref_cat))
        zsds["zogy"] = float(sum(c.cpu for c in calls["zogy"]))  # the ZOGY kernel, all tiles
        tiles = zogy_tile_shapes(shape, scfg)
        seconds["fft_floor"] = fft_floor(tiles)
        notes["fft_floor"] = (f"{len(tiles)} tile(s) of {tiles[0][0]}x{tiles[0][1]}; zsds's "
                              "kernel makes 21 transforms per tile where ZOGY needs 12 (the "
                              "variance kernels are squared in real space)")
        if config.sfft:
            # sfft's Numpy backend holds the kernel basis for every pixel (about 2.4 GB per
            # Mpx): it runs on the central sfft_max_side square, its time scaled by the pixels.
            side = config.sfft_max_side
            ny, nx = shape
            cy, cx = max(0, (ny - side) // 2), max(0, (nx - side) // 2)
            cut = (slice(cy, cy + side), slice(cx, cx + side))
            sci_c, ref_c = diff.science[cut], diff.template[cut]
            try:
                t_compile, t = sfft_subtract(sci_c, ref_c, fwhm)
                scale = ny * nx / sci_c.size
                seconds["sfft"] = t * scale
                notes["sfft"] = (f"Numpy backend, one thread, on zsds's registered and "
                                 f"background-matched pair; numba compilation {t_compile:.1f} s "
                                 "not counted"
                                 + (f"; run on the central {sci_c.shape[1]}x{sci_c.shape[0]} "
                                    f"({t:.1f} s), scaled by the pixels x{scale:.2f}"
                                    if scale > 1 else ""))
            except ImportError as exc:
                skipped["sfft"] = f"not installed ({exc})"
            except MemoryError:
                skipped["sfft"] = (f"out of memory on {sci_c.shape[1]}x{sci_c.shape[0]} "
                                   "(the peers' process is limited: peer_memory_gb)")
        del diff
    return {"quadrant": {"pid": pid, "shape": list(shape), "fwhm_px": fwhm},
            "zsds": zsds, "seconds": seconds, "ratios": _ratios(zsds, seconds),
            "counts": counts, "notes": notes, "skipped": skipped}


def run_real_peers(folder: Path, config) -> dict:
    """zsds's extraction against sep's and photutils' on the real ZTF quadrant."""
    from threadpoolctl import threadpool_limits

    from zsds.core.masks import BAD_PIXEL_BITS

    q = real_quadrant_inputs(folder, config.real_cutout)
    bad = (q.mask & BAD_PIXEL_BITS) != 0
    data = np.where(bad, 0.0, q.data).astype(np.float32)
    zsds: dict[str, float] = {}
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    with threadpool_limits(limits=1):
        _time_extractions(data, q.mask, bad,
                          float(q.header["SEEING"]) if config.photutils else None,
                          zsds, seconds, counts)
    return {"quadrant": {"shape": list(data.shape)}, "zsds": zsds, "seconds": seconds,
            "ratios": _ratios(zsds, seconds), "counts": counts}
