"""Empirical, spatially varying PSF of a quadrant (the pipeline's DAOPhot PSF step).

The model is a pixel grid oversampled ``oversample`` times (PSFEx-like) whose every node is a
polynomial of degree 0, 1 or 2 in the image position (DAOPhot's/PSFEx's variable PSF).

Why an oversampled grid: ZTF's PSF has FWHM ~1.5-3 px, so a PSF sampled once per pixel is
undersampled and no interpolation (Fourier or bicubic) can move it by a fraction of a pixel
accurately -- a Fourier shift of a 1.7 px FWHM star rings at the percent level. Stars fall on the
pixel grid with random sub-pixel phases, so many of them together sample the PSF on a finer grid;
the grid is rendered at any sub-pixel position with a separable Lanczos-3 kernel (6 taps), which
is accurate to well below 1% of the peak at 3x oversampling.

The grid is fitted by a Landweber (van Cittert) iteration: the normalised residuals of the star
pixels are deposited on the grid with bilinear (cloud-in-cell) weights, a weighted polynomial in
(x, y) is fitted to them in every node at once (batched normal equations) and added to the
model. Stars whose residual chi2 is an outlier are rejected and star positions and fluxes are
refitted with the model (:func:`zsds.instcal.psfphot.fit_stamps`) between rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.stats import mad_std
from scipy.spatial import cKDTree

from zsds.core.image import extract_stamps
from zsds.core.psf import PolyPixelPSF
from zsds.core.stats import MAD_TO_SIGMA
from zsds.instcal.psfphot import fit_stamps


@dataclass(frozen=True)
class PSFConfig:
    """Options of :func:`select_psf_stars` and :func:`build_psf`.

    ``saturate_fraction``: the response is non-linear before the hard saturation. Without a
    ``model_error`` floor the few brightest stars dominate, their sub-pixel phases do not
    cover the grid and the grid rings. ``ridge`` keeps nodes that few stars sample well
    defined.
    """

    radius: int = 6  #: half-size of the model (px); (2 radius + 1) px wide
    oversample: int = 3  #: model grid oversampling (3: accurate for FWHM >~ 1.5 px)
    max_degree: int = 2  #: highest polynomial degree of the spatial variation (0-2)
    min_stars_degree: tuple[int, int] = (100, 300)  #: PSF stars needed for degree 1, for degree 2
    max_stars: int = 600  #: most (brightest) PSF stars used
    saturate_fraction: float = 0.8  #: stars peaking above this share of saturation are rejected
    min_peak_sigma: float = 20.0  #: least peak, in robust noise of the image
    isolation_radius: float = 8.0  #: px around a star free of bright neighbours
    isolation_flux_ratio: float = 0.02  #: neighbour flux share within isolation_radius that rejects
    bad_radius: float = 4.0  #: no bad pixel within this many px of the star
    n_iter: int = 3  #: Landweber iterations per round
    n_rounds: int = 3  #: rounds of fit grid, reject outliers, refit stars
    clip_sigma: float = 4.0  #: outliers: chi2 above median + clip_sigma * robust scatter
    model_error: float = 0.0  #: error floor of normalised star pixels, share of the peak
    ridge: float = 1e-3  #: relative Tikhonov damping of the per-node polynomial fit


def _robust_sigma(image: np.ndarray, mask: np.ndarray) -> float:
    vals = image[~mask][::7]  # a subsample is plenty for a MAD
    vals = vals[np.isfinite(vals)]
    return float(mad_std(vals))


def select_psf_stars(
    image: np.ndarray,
    mask: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    peak: np.ndarray,
    saturate: float,
    config: PSFConfig = PSFConfig(),
) -> np.ndarray:
    """Indices of good PSF stars: bright, unsaturated, isolated, off the edges and bad pixels.

    Parameters
    ----------
    image, mask : ndarray (ny, nx)
        Background-subtracted image and bad-pixel mask (True = bad).
    x, y, flux, peak : ndarray (N,)
        Detections (0-based positions, flux and peak in DN above background).
    saturate : float
        Saturation level (DN above background).

    Returns
    -------
    ndarray of int
        Selected indices, brightest first, at most ``config.max_stars``.
    """
    ny, nx = image.shape
    x, y, flux, peak = (np.asarray(a, float) for a in (x, y, flux, peak))
    r = config.radius
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(flux) & (flux > 0)
    ok &= (x >= r + 1) & (x < nx - r - 2) & (y >= r + 1) & (y < ny - r - 2)
    ok &= peak < config.saturate_fraction * saturate
    ok &= peak > config.min_peak_sigma * _robust_sigma(image, mask)
    # Bad pixels near the core bias the centroid and the core shape.
    hb = int(np.ceil(config.bad_radius))
    ix = np.clip(np.round(x).astype(int), 0, nx - 1)
    iy = np.clip(np.round(y).astype(int), 0, ny - 1)
    g = np.arange(-hb, hb + 1)
    disk = (g[:, None] ** 2 + g[None, :] ** 2) <= config.bad_radius**2
    ok &= ~(extract_stamps(mask, ix, iy, hb, fill=True) & disk).any(axis=(1, 2))
    # Isolation: any detection within the radius carrying a non-negligible flux disqualifies.
    fin = np.isfinite(x) & np.isfinite(y)
    idx = np.flatnonzero(fin)
    pairs = cKDTree(np.c_[x[fin], y[fin]]).query_pairs(
        config.isolation_radius, output_type="ndarray"
    )
    if len(pairs):
        i, j = idx[pairs[:, 0]], idx[pairs[:, 1]]
        fl = np.nan_to_num(flux, nan=np.inf)
        ratio = config.isolation_flux_ratio
        ok[i[fl[j] > ratio * fl[i]]] = False
        ok[j[fl[i] > ratio * fl[j]]] = False
    sel = np.flatnonzero(ok)
    return sel[np.argsort(-flux[sel])][: config.max_stars]


def _degree_for(n: int, config: PSFConfig) -> int:
    d1, d2 = config.min_stars_degree
    return min(config.max_degree, 2 if n >= d2 else 1 if n >= d1 else 0)


def _fit_grid(psf: PolyPixelPSF, data, weight, x, y, ix, iy, config: PSFConfig):
    """Landweber iterations of the coefficient cube on normalised star stamps (in place)."""
    os_, g = psf.oversample, psf.coeffs.shape[-1]
    c, r = g // 2, config.radius
    grid = np.arange(-r, r + 1)
    ux = grid[None, :] + (ix - x)[:, None]
    uy = grid[None, :] + (iy - y)[:, None]
    n, s = len(x), 2 * r + 1
    # Bilinear deposit of every star pixel on the grid: 4 nodes per pixel.
    tx, ty = c + os_ * ux, c + os_ * uy
    jx, jy = np.floor(tx).astype(int), np.floor(ty).astype(int)
    fx, fy = tx - jx, ty - jy
    nodes, wts = [], []
    for ay, wy in ((0, 1 - fy), (1, fy)):
        for ax, wx in ((0, 1 - fx), (1, fx)):
            by = np.broadcast_to((jy + ay)[:, :, None], (n, s, s))
            bx = np.broadcast_to((jx + ax)[:, None, :], (n, s, s))
            inside = (by >= 0) & (by < g) & (bx >= 0) & (bx < g)
            nodes.append(np.where(inside, by * g + bx, 0).ravel())
            wts.append((weight * (wy[:, :, None] * wx[:, None, :]) * inside).ravel())
    nodes, wts = np.concatenate(nodes), np.concatenate(wts)
    terms = psf._terms(x, y)  # (N, T)
    nt = terms.shape[1]
    tpix = np.broadcast_to(terms[:, None, None, :], (n, s, s, nt)).reshape(-1, nt)
    tpix = np.tile(tpix, (4, 1))
    # Batched normal matrices of the per-node polynomial fits (fixed over the iterations).
    a = np.empty((g * g, nt, nt))
    for i in range(nt):
        for j in range(i, nt):
            a[:, i, j] = a[:, j, i] = np.bincount(
                nodes, wts * tpix[:, i] * tpix[:, j], minlength=g * g
            )
    tr = np.trace(a, axis1=1, axis2=2)
    damp = config.ridge * tr / nt + 1e-12 * tr.max()
    a += damp[:, None, None] * np.eye(nt)
    coef = psf.coeffs.reshape(nt, -1)
    for _ in range(config.n_iter):
        model = psf.render(x, y, ux, uy, normalise=False)
        res = np.tile((data - model).ravel(), 4) * wts
        rhs = np.stack(
            [np.bincount(nodes, res * tpix[:, i], minlength=g * g) for i in range(nt)], axis=1
        )
        coef += np.linalg.solve(a, rhs[..., None])[..., 0].T.astype(coef.dtype)


def _weights_norm(dat, var, good, flux, config: PSFConfig) -> np.ndarray:
    """Inverse variances of flux-normalised star pixels, with the model-error floor."""
    f = flux[:, None, None]
    peak = (dat / f).max(axis=(1, 2), keepdims=True)
    vn = np.where(good, var, 1.0) / f**2 + (config.model_error * peak) ** 2
    return np.where(good, 1.0 / vn, 0.0)


def _norm(psf: PolyPixelPSF, x, y) -> np.ndarray:
    """Integral of the raw (un-normalised) grid at positions: render() divides by it."""
    coef = psf.coeffs.reshape(len(psf.coeffs), -1)
    return psf._terms(x, y) @ (coef.sum(1) / psf.oversample**2)


def build_psf(
    image: np.ndarray,
    variance: np.ndarray,
    mask: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    config: PSFConfig = PSFConfig(),
) -> PolyPixelPSF:
    """Fit a spatially varying oversampled PSF to stars (see the module docstring).

    Parameters
    ----------
    image, variance : ndarray (ny, nx)
        Background-subtracted image and its variance (DN, DN^2).
    mask : ndarray bool (ny, nx)
        Bad pixels (True), ignored.
    x, y : ndarray (N,)
        Approximate centres of the PSF stars (from :func:`select_psf_stars`), 0-based.

    Returns
    -------
    PolyPixelPSF
    """
    x = np.asarray(x, float).copy()
    y = np.asarray(y, float).copy()
    if len(x) < 3:
        raise ValueError(f"need at least 3 PSF stars, got {len(x)}")
    ny, nx = image.shape
    r, os_ = config.radius, config.oversample
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)
    dat = extract_stamps(image.astype(np.float64), ix, iy, r)
    var = extract_stamps(variance.astype(np.float64), ix, iy, r, fill=np.inf)
    good = ~extract_stamps(mask, ix, iy, r, fill=True) & np.isfinite(dat) & (var > 0)
    dat = np.where(good, dat, 0.0)
    flux = dat.sum(axis=(1, 2))  # first guess; replaced by PSF fits after round one
    use = flux > 0
    g = 2 * r * os_ + 1
    psf = None
    for _ in range(config.n_rounds):
        deg = _degree_for(int(use.sum()), config)
        nt = (deg + 1) * (deg + 2) // 2
        # Restart from zero each round so that rejected stars leave no trace.
        psf = PolyPixelPSF(np.zeros((nt, g, g)), os_, deg, nx, ny, int(use.sum()))
        w = _weights_norm(dat[use], var[use], good[use], flux[use], config)
        f = flux[use]
        _fit_grid(psf, dat[use] / f[:, None, None], w, x[use], y[use], ix[use], iy[use], config)
        # Refit positions and fluxes of all candidates with the new model, then reject stars
        # whose core does not look like the model (binaries, galaxies, cosmic rays).
        fwhm = psf.fwhm_at(nx / 2.0, ny / 2.0)
        fit = fit_stamps(dat, var, good, psf, x, y, ix, iy, fit_radius=max(2.5, 1.5 * fwhm))
        ok = np.isfinite(fit["flux"]) & (fit["flux"] > 0)
        ok &= np.hypot(fit["x"] - x, fit["y"] - y) < 1.0
        x = np.where(ok, fit["x"], x)
        y = np.where(ok, fit["y"], y)
        flux = np.where(ok, fit["flux"], flux)
        chi = np.where(ok, fit["chi"], np.inf)
        med = np.median(chi[ok])
        mad = MAD_TO_SIGMA * np.median(np.abs(chi[ok] - med))
        use = ok & (chi < med + config.clip_sigma * max(mad, 0.05 * med))
    deg = _degree_for(int(use.sum()), config)
    nt = (deg + 1) * (deg + 2) // 2
    psf = PolyPixelPSF(np.zeros((nt, g, g)), os_, deg, nx, ny, int(use.sum()))
    f = flux[use]
    w = _weights_norm(dat[use], var[use], good[use], f, config)
    _fit_grid(psf, dat[use] / f[:, None, None], w, x[use], y[use], ix[use], iy[use], config)
    # Store the grid normalised at the image centre (render() normalises everywhere anyway).
    n0 = _norm(psf, np.array([nx / 2.0]), np.array([ny / 2.0]))[0]
    return PolyPixelPSF((psf.coeffs / n0).astype(np.float32), os_, deg, nx, ny, int(use.sum()))
