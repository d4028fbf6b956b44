"""ZOGY image subtraction as pure array kernels.

Implements the proper image subtraction of Zackay, Ofek & Gal-Yam (2016, ApJ 830:27,
arXiv:1601.02655; "ZOGY" below), in the form IPAC uses for ZTF (see
``shared/reference/ZTF_REFERENCE.md`` section 2.4 item 4). Following PyZOGY, each paper equation
is one function whose docstring cites it; unlike PyZOGY no function mutates its inputs.

Conventions
-----------
* ``N`` is the new (science) image and ``R`` the reference, already registered onto the same
  pixel grid, background-subtracted and flux-matched; ``flux_new``/``flux_ref`` are the paper's
  ``F_n``/``F_r`` (1 when both are scaled to a common zero point, as IPAC does).
* Hatted quantities (``*_hat``) are real-input DFTs (``scipy.fft.rfft2``, default "backward"
  normalisation), so a PSF normalised to unit sum has ``P_hat[0, 0] == 1``.
* PSF stamps are small odd-sized arrays centred on their middle pixel; they are embedded in a
  full-size array with the centre moved to pixel (0, 0) before the FFT (:func:`psf_hat`).
* All convolutions are circular over the (optionally padded) FFT grid. Images are float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

__all__ = [
    "ZogyConfig",
    "ZogyResult",
    "astrometric_variance",
    "corrected_score",
    "difference_denominator",
    "difference_image_hat",
    "difference_psf_hat",
    "difference_variance_kernels_hat",
    "difference_zero_point",
    "extract_centred_stamp",
    "psf_flux",
    "psf_flux_error",
    "psf_hat",
    "score_flux_scale",
    "score_hat",
    "source_noise_kernels_hat",
    "variance_convolution",
    "zogy",
]

_F32 = np.float32


@dataclass(frozen=True)
class ZogyConfig:
    """Settings of :func:`zogy`.

    Attributes
    ----------
    sigma_x, sigma_y : float
        RMS astrometric registration error between new and reference along x (columns) and
        y (rows), in pixels; enters the astrometric variance terms (ZOGY eqs. 30-33). IPAC's
        py_zogy default is 0.25 px; 0.1 px suits a good ZTF registration.
    workers : int or None
        Threads for ``scipy.fft`` (``None``: scipy default of 1; ``-1``: all cores).
    pad_to_fast : bool
        Zero-pad the FFT grid to ``scipy.fft.next_fast_len(n, real=True)`` on each axis (the
        outputs are cropped back to the input shape).
    pad : int
        Extra zero padding (pixels) added at the high end of each axis before rounding up to a
        fast length; a margin of about one PSF size stops sources at one edge from wrapping onto
        the opposite edge.
    psf_stamp_size : int or None
        Odd size of the returned difference-image PSF stamp; ``None`` uses the larger of the two
        input stamp sizes.
    """

    sigma_x: float = 0.1
    sigma_y: float = 0.1
    workers: int | None = None
    pad_to_fast: bool = True
    pad: int = 0
    psf_stamp_size: int | None = None


@dataclass
class ZogyResult:
    """Products of :func:`zogy` (all images have the input shape; masked pixels are NaN).

    Attributes
    ----------
    diff : ndarray
        Difference image D (ZOGY eq. 13), normalised so its background noise has unit variance;
        a point source of true flux ``alpha`` appears as ``alpha * flux_zp * P_D``.
        This is IPAC's ``scimrefdiffimg``.
    diff_psf : ndarray
        Centred, unit-sum stamp of the PSF of D, P_D (eq. 14); IPAC's ``diffimgpsf``.
    score : ndarray
        Matched-filter score image S (eqs. 12 and 17).
    score_corr : ndarray
        Corrected score Scorr (eq. 25), in units of standard deviations; detect on |Scorr| >= 5.
    flux_zp : float
        Flux zero point of D, F_D (eq. 15).
    flux_scale : float
        F_S (eq. 42): the expectation of S at the position of a source of unit flux, so the
        PSF flux is ``score / flux_scale`` (eq. 41, :func:`psf_flux`).
    diff_var : ndarray
        Per-pixel variance of D including source noise (propagated from ``var_new`` and
        ``var_ref`` as in eqs. 26-27 but with the kernels of D); 1 for background-only noise.
    score_var : ndarray
        V(S_N) + V(S_R), the per-pixel variance of S from background and source noise
        (eqs. 26-29); gives the flux error (:func:`psf_flux_error`).
    score_var_ast : ndarray
        V_ast(S_N) + V_ast(S_R), the astrometric-registration variance of S (eqs. 30-33).
    """

    diff: np.ndarray
    diff_psf: np.ndarray
    score: np.ndarray
    score_corr: np.ndarray
    flux_zp: float
    flux_scale: float
    diff_var: np.ndarray
    score_var: np.ndarray
    score_var_ast: np.ndarray


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def psf_hat(psf: np.ndarray, shape: tuple[int, int], workers: int | None = None) -> np.ndarray:
    """DFT of a centred PSF stamp embedded in a full-size grid with its centre at (0, 0).

    Parameters
    ----------
    psf : ndarray (m, m)
        Odd-sized stamp centred on pixel ``m // 2``; normalised here to unit sum.
    shape : tuple of int
        Full FFT grid shape (ny, nx); each must be >= the stamp size.
    workers : int or None
        ``scipy.fft`` threads.

    Returns
    -------
    ndarray, complex64, shape (ny, nx // 2 + 1)
        ``rfft2`` of the embedded PSF (``P_hat[0, 0] == 1``).
    """
    psf = np.asarray(psf, dtype=_F32)
    my, mx = psf.shape
    if my % 2 != 1 or mx % 2 != 1:
        raise ValueError("PSF stamp sizes must be odd")
    if my > shape[0] or mx > shape[1]:
        raise ValueError("PSF stamp larger than the image")
    total = psf.sum(dtype=np.float64)
    if not np.isfinite(total) or total == 0:
        raise ValueError("PSF stamp must have a finite, non-zero sum")
    full = np.zeros(shape, dtype=_F32)
    rows = np.arange(-(my // 2), my // 2 + 1) % shape[0]
    cols = np.arange(-(mx // 2), mx // 2 + 1) % shape[1]
    full[np.ix_(rows, cols)] = psf / _F32(float(total))
    return sfft.rfft2(full, workers=workers)


def extract_centred_stamp(full: np.ndarray, size: int) -> np.ndarray:
    """Cut a centred odd-sized stamp from a full-size kernel whose centre is at pixel (0, 0).

    Inverse of the embedding in :func:`psf_hat`.
    """
    if size % 2 != 1:
        raise ValueError("stamp size must be odd")
    h = size // 2
    rows = np.arange(-h, h + 1) % full.shape[0]
    cols = np.arange(-h, h + 1) % full.shape[1]
    return full[np.ix_(rows, cols)].copy()


def _safe_inverse(x: np.ndarray) -> np.ndarray:
    """1/x where x > 0, else 0 (frequencies where both PSFs vanish carry no signal)."""
    # np.where rather than divide(where=...): the same code then runs on CuPy arrays.
    pos = x > 0
    return np.where(pos, 1 / np.where(pos, x, 1), 0).astype(x.dtype, copy=False)


# --------------------------------------------------------------------------------------------
# One function per paper equation
# --------------------------------------------------------------------------------------------


def difference_denominator(
    pn_hat: np.ndarray,
    pr_hat: np.ndarray,
    sigma_new: float,
    sigma_ref: float,
    flux_new: float = 1.0,
    flux_ref: float = 1.0,
) -> np.ndarray:
    """Denominator of ZOGY eq. 13.

    ``den = sqrt(sigma_n^2 F_r^2 |P_r_hat|^2 + sigma_r^2 F_n^2 |P_n_hat|^2)``.

    Returns
    -------
    ndarray, float32
        Real array on the rfft grid.
    """
    a = _F32(sigma_new**2 * flux_ref**2)
    b = _F32(sigma_ref**2 * flux_new**2)
    return np.sqrt(a * np.abs(pr_hat) ** 2 + b * np.abs(pn_hat) ** 2).astype(_F32, copy=False)


def difference_image_hat(
    n_hat: np.ndarray,
    r_hat: np.ndarray,
    pn_hat: np.ndarray,
    pr_hat: np.ndarray,
    inv_den: np.ndarray,
    flux_new: float = 1.0,
    flux_ref: float = 1.0,
) -> np.ndarray:
    """Proper difference image in Fourier space, ZOGY eq. 13.

    ``D_hat = (F_r P_r_hat N_hat - F_n P_n_hat R_hat) / den``, with ``inv_den = 1 / den`` from
    :func:`difference_denominator`. D has white noise of unit variance when the noise is
    background-dominated.
    """
    return (_F32(flux_ref) * pr_hat * n_hat - _F32(flux_new) * pn_hat * r_hat) * inv_den


def difference_zero_point(
    sigma_new: float, sigma_ref: float, flux_new: float = 1.0, flux_ref: float = 1.0
) -> float:
    """Flux zero point of D, ZOGY eq. 15.

    ``F_D = F_n F_r / sqrt(sigma_n^2 F_r^2 + sigma_r^2 F_n^2)``.
    """
    return float(
        flux_new * flux_ref / np.sqrt(sigma_new**2 * flux_ref**2 + sigma_ref**2 * flux_new**2)
    )


def difference_psf_hat(
    pn_hat: np.ndarray,
    pr_hat: np.ndarray,
    inv_den: np.ndarray,
    f_d: float,
    flux_new: float = 1.0,
    flux_ref: float = 1.0,
) -> np.ndarray:
    """PSF of D in Fourier space, ZOGY eq. 14: ``P_D_hat = F_r F_n P_r_hat P_n_hat / (F_D den)``.

    P_D has unit sum (``P_D_hat[0, 0] == 1``).
    """
    return _F32(flux_new * flux_ref / f_d) * pr_hat * pn_hat * inv_den


def score_hat(d_hat: np.ndarray, pd_hat: np.ndarray, f_d: float) -> np.ndarray:
    """Matched-filter score in Fourier space, ZOGY eq. 17 (equivalently eq. 12).

    ``S_hat = F_D D_hat conj(P_D_hat)``, i.e. S is D cross-correlated with its PSF.
    """
    return _F32(f_d) * d_hat * np.conj(pd_hat)


def source_noise_kernels_hat(
    pn_hat: np.ndarray,
    pr_hat: np.ndarray,
    inv_den: np.ndarray,
    flux_new: float = 1.0,
    flux_ref: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Kernels that map N and R onto S, ZOGY eqs. 28 and 29.

    ``k_n_hat = F_n F_r^2 conj(P_n_hat) |P_r_hat|^2 / den^2`` (eq. 28) and
    ``k_r_hat = F_r F_n^2 conj(P_r_hat) |P_n_hat|^2 / den^2`` (eq. 29), so that
    ``S = k_n (x) N - k_r (x) R``.

    Returns
    -------
    (k_n_hat, k_r_hat) : tuple of ndarray
    """
    inv_den2 = inv_den * inv_den
    apn2 = (np.abs(pn_hat) ** 2).astype(_F32, copy=False)
    apr2 = (np.abs(pr_hat) ** 2).astype(_F32, copy=False)
    k_n_hat = _F32(flux_new * flux_ref**2) * np.conj(pn_hat) * (apr2 * inv_den2)
    k_r_hat = _F32(flux_ref * flux_new**2) * np.conj(pr_hat) * (apn2 * inv_den2)
    return k_n_hat, k_r_hat


def difference_variance_kernels_hat(
    pn_hat: np.ndarray,
    pr_hat: np.ndarray,
    inv_den: np.ndarray,
    flux_new: float = 1.0,
    flux_ref: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Kernels that map N and R onto D, read off ZOGY eq. 13.

    ``kd_n_hat = F_r P_r_hat / den`` and ``kd_r_hat = F_n P_n_hat / den`` (``D = kd_n (x) N -
    kd_r (x) R``); used with :func:`variance_convolution` for the per-pixel variance of D in the
    same way eqs. 26-27 give that of S.
    """
    return _F32(flux_ref) * pr_hat * inv_den, _F32(flux_new) * pn_hat * inv_den


def variance_convolution(
    var_hat: np.ndarray, kernel_hat: np.ndarray, shape: tuple[int, int], workers: int | None = None
) -> np.ndarray:
    """Fourier transform of the variance that a kernel propagates, ZOGY eqs. 26-27.

    ``V(k (x) X) = V_X (x) k^2``; returns ``FFT(V_X) * FFT(k^2)`` so that several terms can be
    summed before a single inverse transform.

    Parameters
    ----------
    var_hat : ndarray
        ``rfft2`` of the variance image V_X.
    kernel_hat : ndarray
        ``rfft2`` of the kernel k.
    shape : tuple of int
        Real-space grid shape.
    """
    k = sfft.irfft2(kernel_hat, s=shape, workers=workers)
    return var_hat * sfft.rfft2(k * k, workers=workers)


def astrometric_variance(s_component: np.ndarray, sigma_x: float, sigma_y: float) -> np.ndarray:
    """Astrometric-registration variance of a score component, ZOGY eqs. 30-33.

    ``V_ast(S_N) = sigma_x^2 (dS_N/dx)^2 + sigma_y^2 (dS_N/dy)^2`` (eq. 30) with
    ``S_N = k_n (x) N`` (eq. 31); likewise for ``S_R = k_r (x) R`` (eqs. 32-33). Derivatives are
    central one-pixel finite differences; x is the column axis.
    """
    dsdy, dsdx = np.gradient(s_component)
    return (_F32(sigma_x**2) * dsdx * dsdx + _F32(sigma_y**2) * dsdy * dsdy).astype(
        _F32, copy=False
    )


def corrected_score(
    score: np.ndarray, score_var: np.ndarray, score_var_ast: np.ndarray | float = 0.0
) -> np.ndarray:
    """Corrected score, ZOGY eq. 25.

    ``Scorr = S / sqrt(V(S_N) + V(S_R) + V_ast(S_N) + V_ast(S_R))``.

    ``score_var`` is ``V(S_N) + V(S_R)`` and ``score_var_ast`` the astrometric terms.
    """
    total = score_var + score_var_ast
    pos = total > 0
    return np.where(pos, score / np.sqrt(np.where(pos, total, 1)), np.nan).astype(
        score.dtype, copy=False)


def score_flux_scale(diff_psf_full: np.ndarray, f_d: float) -> float:
    """Flux normalisation of S, ZOGY eq. 42: ``F_S = sum_k F_D^2 |P_D_hat(k)|^2 / N_pix``.

    Evaluated in real space by Parseval's theorem as ``F_D^2 sum(P_D^2)``. For white unit-variance
    D it is also the background variance of S.
    """
    return float(f_d**2 * np.sum(np.square(diff_psf_full, dtype=np.float64)))


def psf_flux(score: np.ndarray | float, flux_scale: float) -> np.ndarray | float:
    """PSF-photometry flux estimate from the score, ZOGY eq. 41: ``alpha = S / F_S``.

    Evaluated at a source position this is the optimal (PSF-weighted) estimate of the source's
    flux in the flux units of N (for ``F_n = 1``); negative for a source in R.
    """
    return np.asarray(score) / flux_scale


def psf_flux_error(score_var: np.ndarray | float, flux_scale: float) -> np.ndarray | float:
    """1-sigma error of :func:`psf_flux`: ``sqrt(V(S_N) + V(S_R)) / F_S`` (ZOGY eqs. 41-43)."""
    return np.sqrt(np.asarray(score_var)) / flux_scale


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def _fill(img: np.ndarray, shape: tuple[int, int], bad: np.ndarray) -> np.ndarray:
    """Copy into a zero-padded float32 array of ``shape`` with ``bad`` and non-finite pixels 0."""
    img = np.asarray(img, dtype=_F32)
    out = np.zeros(shape, dtype=_F32)
    ny, nx = img.shape
    out[:ny, :nx] = np.where(bad | ~np.isfinite(img), _F32(0), img)
    return out


def zogy(
    new: np.ndarray,
    ref: np.ndarray,
    psf_new: np.ndarray,
    psf_ref: np.ndarray,
    sigma_new: float,
    sigma_ref: float,
    var_new: np.ndarray | None = None,
    var_ref: np.ndarray | None = None,
    flux_new: float = 1.0,
    flux_ref: float = 1.0,
    config: ZogyConfig = ZogyConfig(),
) -> ZogyResult:
    """ZOGY proper image subtraction (Zackay, Ofek & Gal-Yam 2016).

    Parameters
    ----------
    new, ref : ndarray (ny, nx)
        Registered, background-subtracted, flux-matched new and reference images. Non-finite
        pixels are treated as 0 and returned as NaN in every output image.
    psf_new, psf_ref : ndarray
        Odd-sized PSF stamps centred on their middle pixel (normalised to unit sum here).
    sigma_new, sigma_ref : float
        Background noise standard deviations of N and R.
    var_new, var_ref : ndarray or None
        Full variance images (background plus source noise) for the source-noise terms
        (eqs. 26-29). ``None`` uses the constant ``sigma**2``.
    flux_new, flux_ref : float
        Flux-scaling factors F_n, F_r (1 after zero-point matching).
    config : ZogyConfig
        Astrometric RMS, FFT threads and padding.

    Returns
    -------
    ZogyResult
    """
    new = np.asarray(new)
    ref = np.asarray(ref)
    if new.ndim != 2 or new.shape != ref.shape:
        raise ValueError("new and ref must be 2-d arrays of the same shape")
    if sigma_new <= 0 or sigma_ref <= 0:
        raise ValueError("sigma_new and sigma_ref must be positive")
    ny, nx = new.shape
    w = config.workers
    if config.pad_to_fast:
        shape = (
            sfft.next_fast_len(ny + config.pad, real=True),
            sfft.next_fast_len(nx + config.pad, real=True),
        )
    else:
        shape = (ny + config.pad, nx + config.pad)

    bad = ~(np.isfinite(new) & np.isfinite(ref))
    n_img = _fill(new, shape, bad)
    r_img = _fill(ref, shape, bad)

    n_hat = sfft.rfft2(n_img, workers=w)
    r_hat = sfft.rfft2(r_img, workers=w)
    pn_hat = psf_hat(psf_new, shape, w)
    pr_hat = psf_hat(psf_ref, shape, w)

    den = difference_denominator(pn_hat, pr_hat, sigma_new, sigma_ref, flux_new, flux_ref)
    inv_den = _safe_inverse(den)
    del den

    d_hat = difference_image_hat(n_hat, r_hat, pn_hat, pr_hat, inv_den, flux_new, flux_ref)
    f_d = difference_zero_point(sigma_new, sigma_ref, flux_new, flux_ref)
    pd_hat = difference_psf_hat(pn_hat, pr_hat, inv_den, f_d, flux_new, flux_ref)
    s_hat = score_hat(d_hat, pd_hat, f_d)

    diff = sfft.irfft2(d_hat, s=shape, workers=w)
    del d_hat
    score = sfft.irfft2(s_hat, s=shape, workers=w)
    del s_hat
    pd_full = sfft.irfft2(pd_hat, s=shape, workers=w)
    del pd_hat
    flux_scale = score_flux_scale(pd_full, f_d)
    stamp_size = config.psf_stamp_size or max(np.shape(psf_new)[0], np.shape(psf_ref)[0])
    diff_psf = extract_centred_stamp(pd_full, stamp_size)
    del pd_full

    # Source-noise terms (eqs. 26-29) and the variance of D.
    k_n_hat, k_r_hat = source_noise_kernels_hat(pn_hat, pr_hat, inv_den, flux_new, flux_ref)
    kd_n_hat, kd_r_hat = difference_variance_kernels_hat(
        pn_hat, pr_hat, inv_den, flux_new, flux_ref
    )
    del pn_hat, pr_hat, inv_den
    vn = np.full((ny, nx), sigma_new**2, _F32) if var_new is None else var_new
    vr = np.full((ny, nx), sigma_ref**2, _F32) if var_ref is None else var_ref
    vn_hat = sfft.rfft2(_fill(vn, shape, bad), workers=w)
    vr_hat = sfft.rfft2(_fill(vr, shape, bad), workers=w)
    score_var = sfft.irfft2(
        variance_convolution(vn_hat, k_n_hat, shape, w)
        + variance_convolution(vr_hat, k_r_hat, shape, w),
        s=shape,
        workers=w,
    )
    diff_var = sfft.irfft2(
        variance_convolution(vn_hat, kd_n_hat, shape, w)
        + variance_convolution(vr_hat, kd_r_hat, shape, w),
        s=shape,
        workers=w,
    )
    del vn_hat, vr_hat, kd_n_hat, kd_r_hat

    # Astrometric terms (eqs. 30-33).
    if config.sigma_x > 0 or config.sigma_y > 0:
        s_n = sfft.irfft2(k_n_hat * n_hat, s=shape, workers=w)
        var_ast = astrometric_variance(s_n, config.sigma_x, config.sigma_y)
        del s_n
        s_r = sfft.irfft2(k_r_hat * r_hat, s=shape, workers=w)
        var_ast += astrometric_variance(s_r, config.sigma_x, config.sigma_y)
        del s_r
    else:
        var_ast = np.zeros(shape, _F32)
    del k_n_hat, k_r_hat, n_hat, r_hat

    # Crop to the input shape; FFT round-off can make tiny variances slightly negative.
    crop = (slice(0, ny), slice(0, nx))
    diff = diff[crop]
    score = score[crop]
    score_var = np.maximum(score_var[crop], 0)
    diff_var = np.maximum(diff_var[crop], 0)
    var_ast = var_ast[crop]
    score_corr = corrected_score(score, score_var, var_ast)  # eq. 25

    outputs = [diff, score, score_corr, diff_var, score_var, var_ast]
    if bad.any():
        for arr in outputs:
            arr[bad] = np.nan
    diff, score, score_corr, diff_var, score_var, var_ast = (
        np.ascontiguousarray(a, dtype=_F32) for a in outputs
    )
    return ZogyResult(
        diff=diff,
        diff_psf=diff_psf.astype(_F32, copy=False),
        score=score,
        score_corr=score_corr,
        flux_zp=f_d,
        flux_scale=flux_scale,
        diff_var=diff_var,
        score_var=score_var,
        score_var_ast=var_ast,
    )
