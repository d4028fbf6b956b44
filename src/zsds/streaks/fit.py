"""Trailed-PSF model (Vereš et al. 2012) and its least-squares fit to a streak.

A source moving uniformly from ``(x0, y0)`` to ``(x1, y1)`` during the exposure, seen through a
circular Gaussian PSF of standard deviation ``s``, has the surface brightness (Vereš et al.
2012, PASP 124:1197, eq. 3)::

    I(u, v) = F / (2 L sqrt(2 pi) s) * exp(-v^2 / (2 s^2))
              * [erf((u + L/2) / (sqrt(2) s)) - erf((u - L/2) / (sqrt(2) s))]

with ``u`` the coordinate along the trail from its midpoint, ``v`` across it, ``L`` the trail
length and ``F`` the total flux. This equals a line of PSF points sharing the flux from the
first to the last end point, which is how the camera simulator renders trails
(:func:`zsds.sim.render.trail_points`: points every 0.5 px from ``(x0, y0)`` to ``(x1, y1)``
inclusive). Pixel integration is approximated by adding ``1/12 px^2`` to ``s^2``.

A real PSF has wings a Gaussian lacks: for the camera simulator's Moffat PSFs (beta 2.6-3.4)
the Gaussian fit recovers only ~80-88 % of a trail's flux (end points and angle are unbiased).
:func:`trail_flux_correction` measures that factor for a given PSF image.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import least_squares
from scipy.special import erf

from zsds.core.geometry import clip_segment
from zsds.streaks.base import FWHM_TO_SIGMA, SEGMENT_COLUMNS, canonical_segments

__all__ = ["FIT_KEYS", "clip_to_image", "fit_streak", "trail_flux_correction", "trail_norm",
           "trailed_psf"]

_SQRT2 = math.sqrt(2.0)
_PIX_VAR = 1.0 / 12.0

FIT_KEYS: tuple[str, ...] = (
    *SEGMENT_COLUMNS,
    "flux",
    "fluxerr",
    "snr",
    "bg",
    "chi2",
    "dof",
    "chi2dof",
    "width",
    "chi2dof_width",
    "xmid_err",
    "ymid_err",
    "length_err",
    "angle_err",
    "npix",
    "nmask",
    "status",
    "success",
    "nfev",
    "edge",
)
"""Keys of the dictionary returned by :func:`fit_streak`."""


def clip_to_image(x0: float, y0: float, x1: float, y1: float, shape: tuple[int, ...]
                  ) -> tuple[float, float, float, float, float, int]:
    """The part of a segment on the image (pixel centres 0..n-1, edges at -0.5 and n-0.5).

    Returns the clipped end points (in the same direction), the fraction of the length kept
    (0 when the segment misses the image) and the number of ends moved (0, 1 or 2).
    """
    ny, nx = shape[:2]
    t = clip_segment(x0, y0, x1, y1, (-0.5, nx - 0.5), (-0.5, ny - 0.5))
    if t is None:
        return x0, y0, x1, y1, 0.0, 2
    dx, dy = x1 - x0, y1 - y0
    return (x0 + t[0] * dx, y0 + t[0] * dy, x0 + t[1] * dx, y0 + t[1] * dy, t[1] - t[0],
            int(t[0] > 0.0) + int(t[1] < 1.0))


def trailed_psf(
    x: np.ndarray,
    y: np.ndarray,
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    flux: float,
    sigma: float,
) -> np.ndarray:
    """Closed-form trailed Gaussian PSF evaluated at ``(x, y)`` (Vereš et al. 2012).

    Parameters
    ----------
    x, y : ndarray
        Pixel coordinates.
    x0, y0, x1, y1 : float
        Trail end points.
    flux : float
        Total flux (the integral over the plane).
    sigma : float
        Gaussian PSF standard deviation (pixels).

    Returns
    -------
    ndarray
        Flux per unit area at ``(x, y)``; a zero-length trail is the Gaussian PSF.
    """
    L = math.hypot(x1 - x0, y1 - y0)
    xc, yc = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    if L > 0:
        ux, uy = (x1 - x0) / L, (y1 - y0) / L
    else:
        ux, uy = 1.0, 0.0
    dx = np.asarray(x, float) - xc
    dy = np.asarray(y, float) - yc
    u = dx * ux + dy * uy
    v = -dx * uy + dy * ux
    Le = max(L, 1e-6 * sigma)
    a = 1.0 / (_SQRT2 * sigma)
    along = erf((u + 0.5 * Le) * a) - erf((u - 0.5 * Le) * a)
    norm = flux / (2.0 * Le * math.sqrt(2.0 * math.pi) * sigma)
    return norm * np.exp(-0.5 * (v / sigma) ** 2) * along


def trail_norm(length: np.ndarray | float, sigma: np.ndarray | float) -> np.ndarray:
    """L2 norm of a unit-flux trailed Gaussian PSF (continuous; 1/pixel).

    The ideal (matched-filter) S/N of a trail of flux ``F`` in white noise ``sigma_pix`` is
    ``F * trail_norm(L, s) / sigma_pix``; for ``L = 0`` this is the PSF-fit S/N of a point source.
    Pass the pixel-convolved sigma (``sqrt(s**2 + 1/12)``) for pixelated data.
    """
    L = np.asarray(length, float)
    s = np.asarray(sigma, float)
    a = 1.0 / (2.0 * s)
    Ls = np.maximum(L, 1e-6 * s)
    aL = a * Ls
    # Double integral of exp(-a^2 (t - t')^2) over [0, L]^2.
    inner = 2.0 * (Ls * math.sqrt(math.pi) / (2.0 * a) * erf(aL) + np.expm1(-aL * aL) / (2 * a * a))
    return np.sqrt(inner / (4.0 * math.pi * s * s * Ls * Ls))


def _model_and_jac(
    X: np.ndarray, Y: np.ndarray, q: np.ndarray, with_sigma: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Trailed PSF + background and its Jacobian.

    ``q = (xc, yc, L, theta, F, bg[, s])``; returns ``(model, J)`` with ``J`` of shape
    ``(len(X), len(q))``.
    """
    xc, yc, L, th, F, bg = q[:6]
    s = q[6]
    c, sn = math.cos(th), math.sin(th)
    dx, dy = X - xc, Y - yc
    u = dx * c + dy * sn
    v = -dx * sn + dy * c
    a = 1.0 / (_SQRT2 * s)
    wp, wm = (u + 0.5 * L) * a, (u - 0.5 * L) * a
    G = erf(wp) - erf(wm)
    ep, em = np.exp(-wp * wp), np.exp(-wm * wm)
    K = 1.0 / (2.0 * L * math.sqrt(2.0 * math.pi) * s)
    E = np.exp(-0.5 * (v / s) ** 2)
    KE = K * E
    T = KE * G
    two_a_rpi = 2.0 * a / math.sqrt(math.pi)
    Tu = KE * two_a_rpi * (ep - em)
    Tv = -(v / (s * s)) * T
    TL = KE * (0.5 * two_a_rpi * (ep + em) - G / L)
    cols = [
        F * (-Tu * c + Tv * sn),
        F * (-Tu * sn - Tv * c),
        F * TL,
        F * (Tu * v - Tv * u),
        T,
        np.ones_like(T),
    ]
    if with_sigma:
        dG = (2.0 / math.sqrt(math.pi)) * (-ep * wp + em * wm) / s
        cols.append(F * (T * (-1.0 / s + v * v / s**3) + KE * dG))
    return F * T + bg, np.stack(cols, axis=1)


def _residual_functions(
    X: np.ndarray, Y: np.ndarray, D: np.ndarray, W: np.ndarray, s_fixed: float | None
) -> tuple[Any, Any]:
    """Weighted residual and Jacobian callables sharing one model evaluation per point."""
    cache: dict[str, Any] = {}

    def _eval(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = p.tobytes()
        if cache.get("key") != key:
            q = np.append(p, s_fixed) if s_fixed is not None else p
            q = q.copy()
            q[2] = q[2] if abs(q[2]) > 1e-3 else 1e-3  # L -> 0 limit is the PSF
            m, J = _model_and_jac(X, Y, q, s_fixed is None)
            cache.update(key=key, r=(m - D) * W, J=J * W[:, None])
        return cache["r"], cache["J"]

    return (lambda p: _eval(p)[0]), (lambda p: _eval(p)[1])


def _band_pixels(
    shape: tuple[int, int],
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    half_width: float,
    pad: float,
) -> tuple[slice, slice, np.ndarray]:
    """Bounding box slices and in-band selector of pixels around a segment."""
    ny, nx = shape
    L = math.hypot(x1 - x0, y1 - y0)
    xc, yc = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    ux, uy = ((x1 - x0) / L, (y1 - y0) / L) if L > 0 else (1.0, 0.0)
    h = 0.5 * L + pad
    r = math.hypot(h, half_width)
    xa, xb = max(0, math.floor(xc - r)), min(nx, math.ceil(xc + r) + 1)
    ya, yb = max(0, math.floor(yc - r)), min(ny, math.ceil(yc + r) + 1)
    yy, xx = np.mgrid[ya:yb, xa:xb]
    dx, dy = xx - xc, yy - yc
    t = dx * ux + dy * uy
    v = -dx * uy + dy * ux
    sel = (np.abs(t) <= h) & (np.abs(v) <= half_width)
    return slice(ya, yb), slice(xa, xb), sel


def fit_streak(
    diff: np.ndarray,
    sigma: np.ndarray | float,
    fwhm_px: float,
    initial: Any,
    mask: np.ndarray | None = None,
    *,
    max_iter: int = 2,
    max_nfev: int = 60,
) -> dict[str, float]:
    """Fit the trailed-PSF model to one streak with :func:`scipy.optimize.least_squares`.

    Free parameters: the midpoint, length and angle (equivalently both end points), the flux
    and a constant background; the PSF is a Gaussian of ``fwhm_px``. The Jacobian is analytic.
    The pixels fitted lie in a band of half-width ``max(2.5 FWHM, 5)`` px around the initial
    segment, extended along it by ``max(3 FWHM, 0.25 L + 4)`` px; when the fitted trail grows
    towards the ends of the band the band is recut and the fit repeated (at most ``max_iter``
    times). A second fit with the geometry fixed and the PSF width free measures the
    perpendicular width.

    Parameters
    ----------
    diff : ndarray (ny, nx)
        Difference image.
    sigma : ndarray (ny, nx) or float
        1-sigma noise per pixel.
    fwhm_px : float
        PSF FWHM (pixels).
    initial : mapping or pandas row
        Must provide ``x0, y0, x1, y1`` (e.g. a row of :func:`detect_streaks`).
    mask : ndarray (ny, nx), optional
        Nonzero pixels are excluded from the fit (counted in ``nmask``).
    max_iter : int
        Band recuts.
    max_nfev : int
        Function evaluations per least-squares call.

    Returns
    -------
    dict
        :data:`FIT_KEYS`: end points ``x0, y0, x1, y1`` (px; ordered as in
        :func:`~zsds.streaks.detect.canonical_segments`), ``xmid, ymid``, ``length`` (px),
        ``angle`` (deg, [0, 180)), ``flux`` and ``fluxerr`` (unit of ``diff`` x px^2, i.e. the
        summed counts), ``snr = flux / fluxerr``, ``bg`` (per pixel), ``chi2``, ``dof``,
        ``chi2dof``, ``width`` (perpendicular FWHM, px, from the free-width fit, pixel response
        removed), ``chi2dof_width``, 1-sigma errors ``xmid_err, ymid_err, length_err,
        angle_err`` (deg), ``npix`` (pixels fitted), ``nmask`` (masked or invalid pixels in the
        band), ``status`` (least_squares status; <= 0 is a failure), ``success`` (1.0 / 0.0),
        ``nfev`` and ``edge``: the number of ends (0-2) cut at the image edge, where the
        trail leaves the image; the end points, midpoint, length and flux are then those of
        the part on the image (the length is a lower limit of the trail's).
    """
    d = np.asarray(diff)
    sig_img = np.broadcast_to(np.asarray(sigma, float), d.shape)
    s_psf = fwhm_px * FWHM_TO_SIGMA
    s_mod = math.sqrt(s_psf**2 + _PIX_VAR)
    x0, y0, x1, y1 = (float(initial[k]) for k in ("x0", "y0", "x1", "y1"))
    half_width = max(2.5 * fwhm_px, 5.0)
    res = None
    data = None
    nfev = 0
    for _ in range(max(1, max_iter)):
        L0 = math.hypot(x1 - x0, y1 - y0)
        pad = max(3.0 * fwhm_px, 0.25 * L0 + 4.0)
        sy, sx, sel = _band_pixels(d.shape, x0, y0, x1, y1, half_width, pad)
        yy, xx = np.mgrid[sy, sx]
        dd = d[sy, sx][sel].astype(float)
        ss = sig_img[sy, sx][sel]
        good = np.isfinite(dd) & np.isfinite(ss) & (ss > 0)
        if mask is not None:
            good &= np.asarray(mask)[sy, sx][sel] == 0
        nmask = int((~good).sum())
        X = xx[sel][good].astype(float)
        Y = yy[sel][good].astype(float)
        D, W = dd[good], 1.0 / ss[good]
        if len(D) < 8:
            return _failed(x0, y0, x1, y1, nmask)
        data = (X, Y, D, W)

        resid, jac = _residual_functions(X, Y, D, W, s_mod)

        th0 = math.atan2(y1 - y0, x1 - x0)
        shape = trailed_psf(X, Y, x0, y0, x1, y1, 1.0, s_mod)
        f0 = float(np.sum(W * W * shape * D) / max(np.sum(W * W * shape * shape), 1e-30))
        p0 = np.array([0.5 * (x0 + x1), 0.5 * (y0 + y1), max(L0, 0.5), th0, f0, 0.0])
        res = least_squares(resid, p0, jac=jac, x_scale="jac", method="lm", max_nfev=max_nfev)
        nfev += res.nfev
        xc, yc, L, th = res.x[:4]
        if L < 0:  # the model is even in L
            res.x[2], res.x[3] = -L, th + math.pi
            xc, yc, L, th = res.x[:4]
        hx, hy = 0.5 * L * math.cos(th), 0.5 * L * math.sin(th)
        nx0, ny0, nx1, ny1 = xc - hx, yc - hy, xc + hx, yc + hy
        # Recut when the trail grew or moved towards the ends of the band.
        grown = L > L0 + pad
        moved = max(abs(nx0 - x0), abs(ny0 - y0), abs(nx1 - x1), abs(ny1 - y1)) > 0.5 * pad
        x0, y0, x1, y1 = nx0, ny0, nx1, ny1
        if not (grown or moved):
            break
    assert res is not None and data is not None
    p = res.x
    # No pixels constrain a trail beyond the image edge, where only the flux per unit length
    # is measured: report the part on the image, with its share of the flux.
    mid = (float(p[0]), float(p[1]), float(p[2]))
    x0, y0, x1, y1, keep, edge = clip_to_image(x0, y0, x1, y1, d.shape)
    share = keep if edge and keep > 0 else 1.0  # of the fitted trail's length and flux
    if share < 1.0:
        mid = (0.5 * (x0 + x1), 0.5 * (y0 + y1), float(p[2]) * share)
    n = len(res.fun)
    chi2 = float(np.sum(res.fun**2))
    dof = max(n - 6, 1)
    J = res.jac
    cov = np.linalg.pinv(J.T @ J)
    fx0, fy0, fx1, fy1, ang = canonical_segments(
        np.array([x0]), np.array([y0]), np.array([x1]), np.array([y1])
    )
    fx0, fy0, fx1, fy1, ang = (float(fx0[0]), float(fy0[0]), float(fx1[0]), float(fy1[0]),
                               float(ang[0]))
    flux, fluxerr = share * float(p[4]), share * float(math.sqrt(max(cov[4, 4], 0.0)))
    width, chi2w = _width_fit(data, p, s_mod)
    return {
        "x0": fx0,
        "y0": fy0,
        "x1": fx1,
        "y1": fy1,
        "xmid": mid[0],
        "ymid": mid[1],
        "length": mid[2],
        "angle": ang,
        "flux": flux,
        "fluxerr": fluxerr,
        "snr": flux / fluxerr if fluxerr > 0 else float("nan"),
        "bg": float(p[5]),
        "chi2": chi2,
        "dof": float(dof),
        "chi2dof": chi2 / dof,
        "width": width,
        "chi2dof_width": chi2w,
        "xmid_err": float(math.sqrt(max(cov[0, 0], 0.0))),
        "ymid_err": float(math.sqrt(max(cov[1, 1], 0.0))),
        "length_err": float(math.sqrt(max(cov[2, 2], 0.0))),
        "angle_err": float(math.degrees(math.sqrt(max(cov[3, 3], 0.0)))),
        "npix": float(n),
        "nmask": float(nmask),
        "status": float(res.status),
        "success": float(res.status > 0),
        "nfev": float(nfev),
        "edge": float(edge),
    }


def _width_fit(
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], p: np.ndarray, s_mod: float
) -> tuple[float, float]:
    """Refit with the Gaussian width free; returns (perpendicular FWHM in px, chi2/dof)."""
    X, Y, D, W = data
    geom = p[:4].copy()
    geom[2] = geom[2] if abs(geom[2]) > 1e-3 else 1e-3
    cache: dict[str, Any] = {}

    def _eval(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = q.tobytes()
        if cache.get("key") != key:
            m, J = _model_and_jac(X, Y, np.concatenate([geom, q]), True)
            cache.update(key=key, r=(m - D) * W, J=J[:, 4:] * W[:, None])
        return cache["r"], cache["J"]

    # Geometry fixed at the fitted trail; flux, background and width free.
    r = least_squares(lambda q: _eval(q)[0], np.array([p[4], p[5], s_mod]),
                      jac=lambda q: _eval(q)[1], x_scale="jac", method="lm", max_nfev=30)
    r.x = np.concatenate([p[:4], r.x])
    s = math.sqrt(max(r.x[6] ** 2 - _PIX_VAR, 0.0))
    dof = max(len(r.fun) - 7, 1)
    return abs(s) / FWHM_TO_SIGMA, float(np.sum(r.fun**2) / dof)


def _failed(x0: float, y0: float, x1: float, y1: float, nmask: int) -> dict[str, float]:
    out = dict.fromkeys(FIT_KEYS, float("nan"))
    a, b, c, e, ang = canonical_segments(
        np.array([x0]), np.array([y0]), np.array([x1]), np.array([y1])
    )
    out.update(
        x0=float(a[0]), y0=float(b[0]), x1=float(c[0]), y1=float(e[0]), angle=float(ang[0]),
        xmid=0.5 * float(a[0] + c[0]), ymid=0.5 * float(b[0] + e[0]),
        length=math.hypot(float(c[0] - a[0]), float(e[0] - b[0])), nmask=float(nmask),
        status=-9.0, success=0.0, nfev=0.0,
    )
    return out


def trail_flux_correction(
    psf: np.ndarray, fwhm_px: float, length: float, angle_deg: float = 0.0
) -> float:
    """True/fitted flux ratio of a trail made of ``psf`` and fitted with the Gaussian model.

    A noise-free trail of the given length and angle is rendered by convolving a continuous
    segment with ``psf`` (any normalisation; centred in an odd-sized stamp; exact, in Fourier
    space) and fitted with :func:`fit_streak`; multiply fitted fluxes (and errors) by the
    result.

    Parameters
    ----------
    psf : ndarray (n, n)
        PSF image (e.g. the difference-image PSF at the streak's position).
    fwhm_px : float
        FWHM used for the fit.
    length, angle_deg : float
        Trail geometry (px, degrees).

    Returns
    -------
    float
        NaN when ``psf`` is not a 2-D image with a positive sum.
    """
    from scipy import fft as sfft

    p = np.nan_to_num(np.asarray(psf, float))
    total = p.sum()
    if p.ndim != 2 or not np.isfinite(total) or total <= 0:
        return float("nan")
    p = p / total
    hy, hx = p.shape[0] // 2, p.shape[1] // 2
    L = max(float(length), 0.0)
    half = math.ceil(0.5 * L) + max(p.shape) + int(3 * fwhm_px) + 4
    n = 2 * half + 1
    t = math.radians(angle_deg)
    ux, uy = math.cos(t), math.sin(t)
    pad = np.zeros((n, n))
    pad[half - hy : half - hy + p.shape[0], half - hx : half - hx + p.shape[1]] = p
    # Exact convolution with a continuous segment: its transform is a sinc along u.
    kx = sfft.rfftfreq(n)[None, :]
    ky = sfft.fftfreq(n)[:, None]
    img = sfft.irfft2(sfft.rfft2(pad) * np.sinc(L * (kx * ux + ky * uy)), s=(n, n))
    x0, y0 = half - 0.5 * L * ux, half - 0.5 * L * uy
    x1, y1 = half + 0.5 * L * ux, half + 0.5 * L * uy
    res = fit_streak(img, 1.0, fwhm_px, {"x0": x0, "y0": y0, "x1": x1, "y1": y1})
    return 1.0 / res["flux"] if res["flux"] > 0 else float("nan")
