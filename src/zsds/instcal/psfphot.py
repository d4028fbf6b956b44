"""PSF-fit photometry of all detections of a quadrant (the pipeline's ALLSTAR step, psfcat).

Written by hand because photutils' ``PSFPhotometry`` fits sources one at a time through
astropy's generic fitters and needs minutes for the ~20k sources of a ZTF quadrant; here every
source is a stamp of an (N, s, s) array and all fits advance together:

* a few Gauss-Newton iterations of (flux, x, y) with the PSF derivatives, solving the N 3x3
  weighted normal equations at once, then a final linear flux fit at the adopted position;
* neighbours are handled like ALLSTAR: the models of all sources are added into one model
  image (``np.bincount`` on flat pixel indices), and each source is refitted on the image minus
  the models of all the others, for ``n_passes`` passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from zsds.core.image import extract_stamps

FLAG_BADPIX = 1  # masked pixels inside the fit radius (fit done without them)
FLAG_EDGE = 2  # the fit radius crosses the image edge
FLAG_NOCONV = 4  # the position wandered away; flux fitted at the input position instead
FLAG_FAILED = 8  # no usable fit (too few good pixels or singular); flux is NaN


@dataclass(frozen=True)
class PSFPhotConfig:
    """Options of :func:`psf_photometry`."""

    fit_radius_fwhm: float = 2.0  #: radius of the fitted pixels (FWHM at the image centre)
    min_fit_radius: float = 2.5  #: lower bound of the fit radius (px)
    model_radius_fwhm: float = 4.0  #: radius of the neighbours' subtracted models (FWHM)
    n_iter: int = 3  #: Gauss-Newton iterations of (flux, x, y) per pass
    n_passes: int = 2  #: extra passes with neighbours subtracted (0: isolated only)
    max_shift: float = 1.5  #: larger moves from the input (px) are not trusted (FLAG_NOCONV)
    min_good: int = 6  #: fewer good pixels inside the fit radius fail the fit


def _sum2(a: np.ndarray) -> np.ndarray:
    """Sum over the two stamp axes, accumulated in float64."""
    return a.reshape(a.shape[0], -1).sum(axis=1, dtype=np.float64)


def fit_stamps(
    data: np.ndarray,
    var: np.ndarray,
    good: np.ndarray,
    psf,
    x: np.ndarray,
    y: np.ndarray,
    ix: np.ndarray,
    iy: np.ndarray,
    fit_radius: float,
    n_iter: int = 3,
    max_shift: float = 1.5,
    min_good: int = 6,
) -> dict[str, np.ndarray]:
    """Fit flux and position of N sources on their stamps at once.

    Parameters
    ----------
    data, var, good : ndarray (N, s, s)
        Stamps centred on the integer pixels (ix, iy): data (DN), variance, usable pixels.
    psf : PSFModel
    x, y : ndarray (N,)
        Starting positions (0-based image coordinates).
    ix, iy : ndarray of int (N,)
        Image pixel of each stamp centre.
    fit_radius : float
        Only pixels within this radius of the stamp centre are fitted.

    Returns
    -------
    dict of ndarray (N,)
        x, y, flux, fluxerr, chi, sharp, npix_bad, niter, flags.
    """
    n, s = data.shape[0], data.shape[-1]
    h = s // 2
    grid = np.arange(-h, h + 1)
    disk = (grid[:, None] ** 2 + grid[None, :] ** 2) <= fit_radius**2
    ok_pix = good & disk & np.isfinite(data) & (var > 0) & np.isfinite(var)
    w = np.where(ok_pix, 1.0 / np.where(ok_pix, var, 1.0), 0.0)
    d = np.where(ok_pix, data, 0.0)
    ngood = ok_pix.sum(axis=(1, 2))
    npix_bad = (disk & ~ok_pix).sum(axis=(1, 2))
    x0, y0 = np.asarray(x, float), np.asarray(y, float)
    xc, yc = x0.copy(), y0.copy()

    def offsets(xx, yy):
        return grid[None, :] + (ix - xx)[:, None], grid[None, :] + (iy - yy)[:, None]

    def linear_flux(m):
        a = (w * m * m).sum(axis=(1, 2))
        with np.errstate(divide="ignore", invalid="ignore"):
            return (w * m * d).sum(axis=(1, 2)) / a, a

    m = psf.render(xc, yc, *offsets(xc, yc), False)
    flux, _ = linear_flux(m)
    niter = np.zeros(n, np.int16)
    active = np.isfinite(flux) & (ngood >= min_good)
    for _ in range(n_iter):
        m, mx, my = psf.render(xc, yc, *offsets(xc, yc), True)
        # Normal equations of the Jacobian (m, f mx, f my): the six weighted sums of the
        # rendered (m, mx, my), then scaled by the flux (no (N, 3, s, s) temporaries).
        r = d - flux[:, None, None] * m
        wm, wx, wy = w * m, w * mx, w * my
        smm, smx, smy = _sum2(wm * m), _sum2(wm * mx), _sum2(wm * my)
        sxx, sxy, syy = _sum2(wx * mx), _sum2(wx * my), _sum2(wy * my)
        f = flux
        a = np.empty((n, 3, 3))
        a[:, 0, 0] = smm
        a[:, 0, 1] = a[:, 1, 0] = f * smx
        a[:, 0, 2] = a[:, 2, 0] = f * smy
        a[:, 1, 1] = f * f * sxx
        a[:, 1, 2] = a[:, 2, 1] = f * f * sxy
        a[:, 2, 2] = f * f * syy
        b = np.stack([_sum2(wm * r), f * _sum2(wx * r), f * _sum2(wy * r)], axis=1)
        a += 1e-9 * np.trace(a, axis1=1, axis2=2)[:, None, None] * np.eye(3)  # singular-safe
        step = np.linalg.solve(np.where(active[:, None, None], a, np.eye(3)), b[..., None])[..., 0]
        step = np.where(np.isfinite(step), step, 0.0)
        # Trust region: faint sources can propose wild position steps.
        step[:, 1:] = np.clip(step[:, 1:], -0.5, 0.5)
        flux = np.where(active, flux + step[:, 0], flux)
        xc = np.where(active, xc + step[:, 1], xc)
        yc = np.where(active, yc + step[:, 2], yc)
        niter += active
    flags = np.zeros(n, np.int32)
    lost = np.hypot(xc - x0, yc - y0) > max_shift
    flags[lost] |= FLAG_NOCONV
    xc, yc = np.where(lost, x0, xc), np.where(lost, y0, yc)
    # Final linear fit at the adopted position: unbiased flux and its formal error.
    m, mx, my = psf.render(xc, yc, *offsets(xc, yc), True)
    flux, a = linear_flux(m)
    res = d - flux[:, None, None] * m
    with np.errstate(divide="ignore", invalid="ignore"):
        fluxerr = 1.0 / np.sqrt(a)
        chi = (w * res * res).sum(axis=(1, 2)) / np.maximum(ngood - 3, 1)
        # Sharpness: fractional width excess fitted to the residual. d PSF / d scale at scale 1
        # is -(2 P + u dP/du + v dP/dv): > 0 for extended sources, < 0 for cosmic rays.
        ux, uy = offsets(xc, yc)
        dscale = -(2 * m - ux[:, None, :] * mx - uy[:, :, None] * my)
        fs = flux[:, None, None] * dscale
        sharp = (w * res * fs).sum(axis=(1, 2)) / (w * fs * fs).sum(axis=(1, 2))
    failed = ~active | ~np.isfinite(flux) | ~np.isfinite(fluxerr)
    flags[failed] |= FLAG_FAILED
    flags[npix_bad > 0] |= FLAG_BADPIX
    for arr in (flux, fluxerr, chi, sharp):
        arr[failed] = np.nan
    return {
        "x": xc,
        "y": yc,
        "flux": flux,
        "fluxerr": fluxerr,
        "chi": chi,
        "sharp": sharp,
        "npix_bad": npix_bad,
        "niter": niter,
        "flags": flags,
    }


def _model_image(psf, shape, x, y, flux, half: int) -> np.ndarray:
    """Image (padded by ``half``) holding the sum of all fitted models."""
    ny, nx = shape
    ok = np.isfinite(flux) & (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
    x, y, flux = x[ok], y[ok], flux[ok]
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)
    g = np.arange(-half, half + 1)
    st = psf.render(x, y, g[None, :] + (ix - x)[:, None], g[None, :] + (iy - y)[:, None], False)
    st = st * flux[:, None, None]
    w = nx + 2 * half
    flat = (iy + half)[:, None, None] + g[None, :, None]
    flat = flat * w + (ix + half)[:, None, None] + g[None, None, :]
    size = (ny + 2 * half) * w
    return np.bincount(flat.ravel(), st.ravel(), minlength=size).reshape(ny + 2 * half, w)


def psf_photometry(
    image: np.ndarray,
    variance: np.ndarray,
    mask: np.ndarray,
    psf,
    x: np.ndarray,
    y: np.ndarray,
    config: PSFPhotConfig = PSFPhotConfig(),
) -> pd.DataFrame:
    """PSF-fit photometry of many sources with neighbour subtraction (vectorised ALLSTAR).

    Parameters
    ----------
    image, variance : ndarray (ny, nx)
        Background-subtracted image and its variance (DN, DN^2).
    mask : ndarray bool (ny, nx)
        Bad pixels (True).
    psf : PSFModel
        Any :class:`zsds.core.psf.PSFModel` (the pipeline's render vectorised).
    x, y : ndarray (N,)
        Detection positions, 0-based.

    Returns
    -------
    pandas.DataFrame
        One row per input source, in input order: x, y (refined), flux, fluxerr (DN), chi
        (reduced chi2), sharp, npix_bad, niter, flags (FLAG_* bits).
    """
    ny, nx = image.shape
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    fwhm = psf.fwhm_at(nx / 2.0, ny / 2.0)
    rfit = max(config.min_fit_radius, config.fit_radius_fwhm * fwhm)
    h = int(np.ceil(rfit))
    hm = max(h, int(np.ceil(config.model_radius_fwhm * fwhm)))
    # Off-image (or NaN) positions are clamped to the border; their fits then fail or flag.
    ix = np.clip(np.round(np.nan_to_num(x, nan=0.0)), 0, nx - 1).astype(int)
    iy = np.clip(np.round(np.nan_to_num(y, nan=0.0)), 0, ny - 1).astype(int)
    img = np.asarray(image, np.float32)
    dat = extract_stamps(img, ix, iy, h)
    var = extract_stamps(np.asarray(variance, np.float32), ix, iy, h, fill=np.inf)
    good = ~extract_stamps(mask, ix, iy, h, fill=True)
    inside = extract_stamps(np.ones(img.shape, bool), ix, iy, h, fill=False)
    grid = np.arange(-h, h + 1)
    disk = (grid[:, None] ** 2 + grid[None, :] ** 2) <= rfit**2
    edge = (disk & ~inside).any(axis=(1, 2))
    kw = dict(
        fit_radius=rfit, n_iter=config.n_iter, max_shift=config.max_shift, min_good=config.min_good
    )
    fit = fit_stamps(dat, var, good, psf, x, y, ix, iy, **kw)
    for _ in range(config.n_passes):
        model = _model_image(psf, img.shape, fit["x"], fit["y"], fit["flux"], hm)
        others = extract_stamps(model, ix + hm, iy + hm, h)
        # Add back the source's own model: it is in the model image but must stay in the data.
        ok = np.isfinite(fit["flux"])
        own = np.zeros_like(others)
        if ok.any():
            xo, yo = fit["x"][ok], fit["y"][ok]
            own[ok] = psf.render(xo, yo, grid[None, :] + (ix[ok] - xo)[:, None],
                                 grid[None, :] + (iy[ok] - yo)[:, None], False)
            own[ok] *= fit["flux"][ok, None, None]
        start_x = np.where(ok, fit["x"], x)
        start_y = np.where(ok, fit["y"], y)
        new = fit_stamps(dat - others + own, var, good, psf, start_x, start_y, ix, iy, **kw)
        # A position that wandered is judged against the detection, not the last pass.
        lost = np.hypot(new["x"] - x, new["y"] - y) > config.max_shift
        new["flags"][lost] |= FLAG_NOCONV
        fit = new
    fit["flags"][edge] |= FLAG_EDGE
    return pd.DataFrame(fit)
