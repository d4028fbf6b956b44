"""Fitting the analytic, spatially varying PSF (:class:`zsds.core.psf.MoffatFieldPSF`).

DAOPhot models a PSF as an analytic function plus a look-up table of residuals; for ZTF's
undersampled images (FWHM ~ 2 px) the analytic part carries almost all of the information, and
with the few tens of PSF stars a small quadrant offers, a pixel-grid model is too noisy to fit
bright stars to their photon noise. Here each PSF star is fitted with an elliptical Moffat
(``scipy.optimize.least_squares``, a loop over at most a few hundred stars), then FWHM and
ellipticity (e1, e2) are modelled as low-order polynomials in position and the power index
beta as a robust constant. The model renders vectorised over sources with analytic
derivatives, so :func:`zsds.instcal.psfphot.psf_photometry` uses it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.stats import mad_std
from scipy.optimize import least_squares

from zsds.core.image import extract_stamps
from zsds.core.psf import MoffatFieldPSF, moffat_pixel, moffat_pixel_jacobian, poly_terms


@dataclass(frozen=True)
class MoffatPSFConfig:
    """Options of the analytic PSF fit."""

    radius: int = 6  #: half size of the star cut-outs (px)
    max_stars: int = 250  #: brightest selected stars fitted
    min_stars_degree: tuple[int, int] = (25, 80)  #: stars for linear, then quadratic variation
    clip_sigma: float = 3.0  #: rejects stars off the polynomial shape (binaries, galaxies)
    max_chi2: float = 50.0  #: a star's fit is kept below this reduced chi2 ...
    chi2_outlier: float = 3.0  #: ... or below this times the stars' median (blends, CRs)


def _fit_star(dat: np.ndarray, wt: np.ndarray, grid: np.ndarray, x0: float, y0: float,
              beta: float | None = None, fwhm0: float = 2.0):
    """Least-squares Moffat fit of one cut-out: (flux, dx, dy, fwhm, beta, e1, e2, chi2);
    ``beta`` fixed when given (FWHM and beta are nearly degenerate star by star; fixed, it is
    left out of the fit rather than bounded, which saves a model evaluation per step)."""
    flux0 = max(float(dat.sum()), 1.0)
    free_beta = beta is None

    def resid(p):
        if free_beta:
            f, dx, dy, fw, be, e1, e2 = p
        else:
            (f, dx, dy, fw, e1, e2), be = p, beta
        model = f * moffat_pixel(grid[1] - dx, grid[0] - dy, fw, be, e1, e2)
        return ((dat - model) * wt).ravel()

    def jac(p):  # analytic: one evaluation per step instead of one per parameter
        if free_beta:
            f, dx, dy, fw, be, e1, e2 = p
        else:
            (f, dx, dy, fw, e1, e2), be = p, beta
        m, mu, mv, *shape = moffat_pixel_jacobian(grid[1] - dx, grid[0] - dy, fw, be, e1, e2,
                                                  with_beta=free_beta)
        if free_beta:  # parameter order: fwhm, beta, e1, e2
            shape = [shape[0], shape[3], shape[1], shape[2]]
        cols = (-m, f * mu, f * mv, *(-f * c for c in shape))
        return np.stack([(c * wt).ravel() for c in cols], axis=1)

    fw0 = float(np.clip(fwhm0, 0.7, 11.0))
    if free_beta:
        p0 = [flux0, x0, y0, fw0, 3.0, 0.0, 0.0]
        lo = [0.0, x0 - 1.5, y0 - 1.5, 0.6, 1.2, -0.6, -0.6]
        hi = [np.inf, x0 + 1.5, y0 + 1.5, 12.0, 12.0, 0.6, 0.6]
    else:
        p0 = [flux0, x0, y0, fw0, 0.0, 0.0]
        lo = [0.0, x0 - 1.5, y0 - 1.5, 0.6, -0.6, -0.6]
        hi = [np.inf, x0 + 1.5, y0 + 1.5, 12.0, 0.6, 0.6]
    try:
        sol = least_squares(resid, p0, jac=jac, bounds=(lo, hi), x_scale="jac", max_nfev=200)
    except ValueError:
        return None
    chi2 = float(np.sum(sol.fun**2) / max(sol.fun.size - 7, 1))
    x = sol.x if free_beta else np.insert(sol.x, 4, beta)
    return np.append(x, chi2)


def build_moffat_psf(
    image: np.ndarray,
    variance: np.ndarray,
    bad: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    config: MoffatPSFConfig = MoffatPSFConfig(),
) -> MoffatFieldPSF:
    """Fit the analytic PSF to selected stars (brightest first, see ``select_psf_stars``).

    Raises
    ------
    ValueError
        Fewer than 3 usable stars.
    """
    x = np.asarray(x, float)[: config.max_stars]
    y = np.asarray(y, float)[: config.max_stars]
    r = config.radius
    ny, nx = image.shape
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)
    dat = extract_stamps(image.astype(np.float64), ix, iy, r)
    var = extract_stamps(variance.astype(np.float64), ix, iy, r, fill=np.inf)
    good = ~extract_stamps(bad, ix, iy, r, fill=True) & np.isfinite(dat) & (var > 0)
    wt = np.where(good, 1.0 / np.sqrt(np.where(good, var, 1.0)), 0.0)
    g = np.arange(-r, r + 1, dtype=float)
    grid = np.meshgrid(g, g, indexing="ij")

    def fit_all(beta: float | None, which: np.ndarray, fwhm0: float = 2.0) -> np.ndarray:
        out = np.full((len(x), 8), np.nan)
        for k in np.flatnonzero(which):  # a few hundred stars: a loop over stars, not pixels
            res = _fit_star(np.where(good[k], dat[k], 0.0), wt[k], grid, x[k] - ix[k],
                            y[k] - iy[k], beta, fwhm0)
            if res is not None:
                out[k] = res
        return out

    def fitted(p: np.ndarray) -> np.ndarray:
        """Stars fitted about as well as most: bright stars are limited by the model, not by
        their photon noise (a real quadrant's brightest have reduced chi2 ~ 50-150), so the
        cut is relative to the typical star rather than absolute."""
        ok = np.all(np.isfinite(p), axis=1)
        if ok.sum() < 3:
            raise ValueError(f"only {int(ok.sum())} PSF stars could be fitted")
        ok &= p[:, 7] < max(config.max_chi2, config.chi2_outlier * np.median(p[ok, 7]))
        if ok.sum() < 3:
            raise ValueError(f"only {int(ok.sum())} PSF stars could be fitted")
        return ok

    # Beta from the brightest stars, then every star's shape at that beta.
    p = fit_all(None, np.arange(len(x)) < 60)
    first = fitted(p)
    beta = float(np.median(p[first, 4]))
    # The second pass starts from the typical FWHM of the first (fewer steps per star).
    p = fit_all(beta, np.ones(len(x), bool), float(np.median(p[first, 3])))
    ok = fitted(p)
    keep = ok.copy()
    coeffs = np.zeros((3, 1))
    deg = 0
    for _ in range(4):
        n = int(keep.sum())
        deg = 2 if n >= config.min_stars_degree[1] else 1 if n >= config.min_stars_degree[0] else 0
        hx, hy = nx / 2.0, ny / 2.0
        t = poly_terms((x - hx) / hx, (y - hy) / hy, deg)
        coeffs = np.array([np.linalg.lstsq(t[keep], p[keep, 3 + j + (j > 0)], rcond=None)[0]
                           for j in range(3)])
        # Residual of each star's FWHM (the best-measured shape parameter) from the polynomial.
        resid = p[:, 3] - t @ coeffs[0]
        sig = mad_std(resid[keep])
        new = ok & (np.abs(resid) < config.clip_sigma * max(sig, 1e-3))
        if np.array_equal(new, keep):
            break
        keep = new
    return MoffatFieldPSF(coeffs, beta, deg, nx, ny, int(keep.sum()))
