"""An analytic, spatially varying PSF: an elliptical Moffat whose shape varies across the image.

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
from astropy.io import fits
from scipy.optimize import least_squares

from zsds.instcal.psf import extract_stamps, poly_terms


@dataclass(frozen=True)
class MoffatPSFConfig:
    """Options of the analytic PSF fit.

    Attributes
    ----------
    radius : int
        Half size of the star cut-outs (pixels).
    max_stars : int
        Brightest selected stars fitted.
    min_stars_degree : tuple[int, int]
        Star counts from which the shape varies linearly, then quadratically.
    clip_sigma : float
        Rejection of stars whose shape disagrees with the polynomial (binaries, galaxies).
    max_chi2, chi2_outlier : float
        A star's fit is kept when its reduced chi2 is below ``max_chi2`` or below
        ``chi2_outlier`` times the median of the stars' (blends, cosmic rays, galaxies).
    """

    radius: int = 6
    max_stars: int = 250
    min_stars_degree: tuple[int, int] = (25, 80)
    clip_sigma: float = 3.0
    max_chi2: float = 50.0
    chi2_outlier: float = 3.0


def _moffat(u: np.ndarray, v: np.ndarray, fwhm, beta, e1, e2, deriv: bool = False):
    """Unit-integral elliptical Moffat at offsets (u, v) from the centre (pixel units).

    The shape is parametrised by the geometric-mean FWHM and the ellipticity (e1, e2) with
    axis ratio q = (1 - e) / (1 + e); returns the profile and, if asked, its derivatives with
    respect to u and v.
    """
    e = np.sqrt(e1**2 + e2**2)
    q = (1.0 - e) / (1.0 + e)
    theta = 0.5 * np.arctan2(e2, e1)
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    a2 = alpha**2 / q
    b2 = alpha**2 * q
    c, s = np.cos(theta), np.sin(theta)
    p = u * c + v * s
    m = -u * s + v * c
    ia2, ib2 = 1.0 / a2, 1.0 / b2
    qf = 1.0 + p * p * ia2 + m * m * ib2
    norm = (beta - 1.0) / (np.pi * alpha**2)  # pi a b = pi alpha^2
    img = norm * qf ** (-beta)
    if not deriv:
        return img
    common = (-2.0 * beta) * img / qf  # -beta norm qf^(-beta-1), times the 2 of dq/du
    pa, mb = p * ia2, m * ib2
    return img, common * (pa * c - mb * s), common * (pa * s + mb * c)


def _gauss_legendre(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Nodes and weights on [-1/2, 1/2] as Python floats (float32 offsets stay float32)."""
    a, w = np.polynomial.legendre.leggauss(n)
    return tuple(float(t) / 2.0 for t in a), tuple(float(t) / 2.0 for t in w)


#: Gauss-Legendre rules for integrating over a pixel, by the narrowest FWHM they serve (px).
#: Errors against a 24-node reference, as a fraction of the peak: 4 x 4 nodes below FWHM 1.5 px
#: (1.5e-4 at 1.2 px, ZTF's best seeing, where sampling at pixel centres was off by tens of
#: percent in the core), 3 x 3 from 1.5 px (6.5e-4 there, 1.3e-4 at 2 px), 2 x 2 from 5 px
#: (1.3e-4). Each extra node per axis costs ~(n + 1)^2 / n^2 in the PSF fits.
_PIXEL_RULES = ((5.0, _gauss_legendre(2)), (1.5, _gauss_legendre(3)), (0.0, _gauss_legendre(4)))


def _moffat_pixel(u: np.ndarray, v: np.ndarray, fwhm, beta, e1, e2, deriv: bool = False):
    """:func:`_moffat` integrated over the pixel centred at (u, v) (what a detector records).

    The model's FWHM is that of the profile before pixelisation, so it compares with the
    seeing; the returned values are fractions of the total flux landing in each pixel. The
    quadrature rule is chosen by the narrowest FWHM of the call.
    """
    narrowest = float(np.min(fwhm))
    nodes, weights = next(rule for lo, rule in _PIXEL_RULES if narrowest >= lo)
    out = None
    for a, wa in zip(nodes, weights, strict=True):
        for b, wb in zip(nodes, weights, strict=True):
            term = _moffat(u + a, v + b, fwhm, beta, e1, e2, deriv)
            w = wa * wb
            if out is None:
                out = [t * w for t in term] if deriv else term * w
            elif deriv:
                for acc, t in zip(out, term, strict=True):
                    acc += t * w
            else:
                out += term * w
    return tuple(out) if deriv else out


@dataclass(frozen=True)
class MoffatFieldPSF:
    """Elliptical Moffat with FWHM, e1, e2 polynomial in position (implements PSFModel).

    Attributes
    ----------
    coeffs : ndarray (3, nterms)
        Polynomial coefficients of FWHM (pixels), e1 and e2 in normalised coordinates.
    beta : float
    degree : int
    nx, ny : int
        Image size (normalises positions).
    nstars : int
        PSF stars used.
    """

    coeffs: np.ndarray
    beta: float
    degree: int
    nx: int
    ny: int
    nstars: int = 0

    def shape_at(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
        hx, hy = self.nx / 2.0, self.ny / 2.0
        t = poly_terms((np.asarray(x, float) - hx) / hx, (np.asarray(y, float) - hy) / hy,
                       self.degree)
        fwhm, e1, e2 = (t @ self.coeffs[k] for k in range(3))
        return np.maximum(fwhm, 0.5), e1, e2

    def render(self, x, y, ux, uy, deriv: bool = False, chunk: int = 4096,
               normalise: bool = True):
        """PSF of N sources on separable offset grids (N, ny, nx); optional derivatives with
        respect to the source position (same interface as ``PolyPixelPSF.render``)."""
        x = np.atleast_1d(np.asarray(x, float))
        y = np.atleast_1d(np.asarray(y, float))
        fwhm, e1, e2 = self.shape_at(x, y)
        # Float32 throughout: the per-pixel work dominates psf_photometry.
        sh = (slice(None), None, None)
        f32 = np.float32
        u = np.asarray(ux, f32)[:, None, :]
        v = np.asarray(uy, f32)[:, :, None]
        out = _moffat_pixel(u, v, fwhm.astype(f32)[sh], f32(self.beta), e1.astype(f32)[sh],
                            e2.astype(f32)[sh], deriv)
        if not deriv:
            return out.astype(f32, copy=False)
        img, du, dv = out
        # Moving the source by +dx moves every sample offset by -dx.
        np.negative(du, out=du)
        np.negative(dv, out=dv)
        return img.astype(f32, copy=False), du.astype(f32, copy=False), dv.astype(f32, copy=False)

    def stamps(self, x, y, size: int, deriv: bool = False):
        x = np.atleast_1d(np.asarray(x, float))
        y = np.atleast_1d(np.asarray(y, float))
        g = np.arange(size) - size // 2
        ux = g[None, :] - (x - np.round(x))[:, None]
        uy = g[None, :] - (y - np.round(y))[:, None]
        return self.render(x, y, ux, uy, deriv)

    def stamp(self, x: float, y: float, size: int = 25) -> np.ndarray:
        st = self.stamps(np.array([x]), np.array([y]), size)[0].astype(np.float64)
        return st / st.sum()

    def fwhm_at(self, x: float, y: float) -> float:
        """FWHM of the profile before pixelisation (the seeing's, pixels)."""
        return float(self.shape_at(np.array([x]), np.array([y]))[0][0])

    def effective_fwhm_at(self, x: float, y: float) -> float:
        """FWHM of the PSF as the detector records it (convolved with the pixel), by the
        area above half maximum like ``PolyPixelPSF.fwhm_at``; what a seeing measured on
        the image (IPAC's SEEING keyword) compares with. At FWHM 0.86 px before
        pixelisation it is 1.2 px; at 3 px, 3.1 px."""
        step = 0.05
        u = np.arange(-4.0, 4.0 + step / 2, step)[None, :]
        img = self.render(np.array([x]), np.array([y]), u, u)[0]
        area = np.count_nonzero(img > 0.5 * img.max()) * step**2
        return float(2.0 * np.sqrt(area / np.pi))

    def center_stamp(self, size: int = 25) -> np.ndarray:
        return self.stamp(self.nx / 2.0, self.ny / 2.0, size)

    def to_hdu(self) -> fits.ImageHDU:
        """FITS HDU: the coefficient array with the model's keywords (product ``sciimgdao.psf``)."""
        h = fits.Header()
        h["PSFTYPE"] = ("MOFFAT", "elliptical Moffat, shape polynomial in position")
        h["PSFBETA"] = (self.beta, "Moffat power index")
        h["PSFDEG"] = (self.degree, "polynomial degree of FWHM, e1, e2")
        h["PSFNX"] = (self.nx, "image width (normalises x)")
        h["PSFNY"] = (self.ny, "image height (normalises y)")
        h["PSFNSTAR"] = (self.nstars, "PSF stars used")
        h["PSFFWHM"] = (self.fwhm_at(self.nx / 2, self.ny / 2), "FWHM at centre (pixels)")
        return fits.ImageHDU(self.coeffs.astype(np.float64), header=h, name="PSF")

    @classmethod
    def from_hdu(cls, hdu: fits.ImageHDU) -> MoffatFieldPSF:
        h = hdu.header
        return cls(np.asarray(hdu.data, float), float(h["PSFBETA"]), int(h["PSFDEG"]),
                   int(h["PSFNX"]), int(h["PSFNY"]), int(h["PSFNSTAR"]))


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
        model = f * _moffat_pixel(grid[1] - dx, grid[0] - dy, fw, be, e1, e2)
        return ((dat - model) * wt).ravel()

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
        sol = least_squares(resid, p0, bounds=(lo, hi), x_scale="jac", max_nfev=200)
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
        sig = 1.4826 * np.median(np.abs(resid[keep] - np.median(resid[keep])))
        new = ok & (np.abs(resid) < config.clip_sigma * max(sig, 1e-3))
        if np.array_equal(new, keep):
            break
        keep = new
    return MoffatFieldPSF(coeffs, beta, deg, nx, ny, int(keep.sum()))
