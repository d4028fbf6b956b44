"""Point-spread-function models: one interface for every stage.

Every PSF in zsds -- the simulator's truth, the pipeline's fitted models of science and
reference images, the constant test PSFs -- implements :class:`PSFModel`, and every consumer
(PSF-fit photometry, forced photometry, ZOGY subtraction, the co-add's catalogues, the
evaluations) uses only that interface:

* ``render(x, y, ux, uy, deriv)``: the PSF of N sources on separable offset grids, as fractions
  of the flux landing in each pixel (integrated over the pixel), optionally with its
  derivatives with respect to the source position -- vectorised over sources;
* ``stamps(x, y, size, deriv)`` / ``stamp(x, y, size)``: the same on a square stamp centred on
  the nearest pixel;
* ``fwhm_at(x, y)``: the FWHM in pixels.

Models that render on offset grids natively derive from :class:`GridPSF`; models known only
by their stamps (the simulator's truth, :class:`PixelPSF`) derive from :class:`StampPSF`, which
renders through a loop over sources (for truth and tests, never in the pipeline's hot path).

The pipeline's models, both persisted as the ``PSF`` HDU of ``*psf.fits`` products and read back
by :func:`psf_from_hdu`:

* :class:`MoffatFieldPSF`: an elliptical Moffat integrated over each pixel, its FWHM and
  ellipticity polynomials in position (fitted by :func:`zsds.instcal.moffat.build_moffat_psf`;
  the default);
* :class:`PolyPixelPSF`: an oversampled pixel grid whose every node is a polynomial in position
  (PSFEx-like; fitted by :func:`zsds.instcal.psf.build_psf`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from astropy.io import fits

__all__ = [
    "GridPSF", "MoffatFieldPSF", "MoffatPSF", "PSFModel", "PixelPSF", "PolyPixelPSF", "StampPSF",
    "moffat_alpha", "moffat_pixel", "moffat_profile", "moffat_stamps", "poly_terms",
    "psf_from_hdu",
]

LANCZOS_A = 3  # Lanczos kernel half-width (taps = 2a); PSFEx's choice for undersampled PSFs.
FD_STEP = 1e-3  # finite-difference step (oversampled pixels) of the kernel derivative


@runtime_checkable
class PSFModel(Protocol):
    """A PSF that can be rendered at any image position."""

    def render(self, x: np.ndarray, y: np.ndarray, ux: np.ndarray, uy: np.ndarray,
               deriv: bool = False):
        """PSF of N sources at (x, y) on offset grids ``ux`` (N, nx) and ``uy`` (N, ny): an
        array (N, ny, nx) of flux fractions, or (psf, dpsf/dx, dpsf/dy) when ``deriv``."""
        ...

    def stamps(self, x: np.ndarray, y: np.ndarray, size: int, deriv: bool = False):
        """Stamps (N, size, size) centred on pixel ``size // 2`` plus each sub-pixel offset."""
        ...

    def stamp(self, x: float, y: float, size: int = 25) -> np.ndarray:
        """PSF image of shape (size, size), odd size, centred on pixel ``size // 2`` plus the
        sub-pixel offset of (x, y), normalised to unit sum."""
        ...

    def fwhm_at(self, x: float, y: float) -> float:
        """FWHM in pixels at a position."""
        ...


class GridPSF:
    """Stamps, normalised stamps and the measured FWHM of a model that defines ``render``."""

    nx: int
    ny: int

    def render(self, x, y, ux, uy, deriv: bool = False):  # pragma: no cover - abstract
        raise NotImplementedError

    def stamps(self, x, y, size: int, deriv: bool = False):
        """Stamps (N, size, size) centred on pixel size//2 plus each sub-pixel offset."""
        x = np.atleast_1d(np.asarray(x, float))
        y = np.atleast_1d(np.asarray(y, float))
        g = np.arange(size) - size // 2
        ux = g[None, :] - (x - np.round(x))[:, None]
        uy = g[None, :] - (y - np.round(y))[:, None]
        return self.render(x, y, ux, uy, deriv)

    def stamp(self, x: float, y: float, size: int = 25) -> np.ndarray:
        if size % 2 != 1:
            raise ValueError("stamp size must be odd")
        st = np.asarray(self.stamps(np.array([x]), np.array([y]), size)[0], np.float64)
        return st / st.sum()

    def measured_fwhm(self, x: float, y: float) -> float:
        """FWHM of the PSF as the detector records it: the diameter of the circle with the
        area above half maximum of the pixel-integrated profile (what a seeing measured on the
        image, IPAC's SEEING keyword, compares with)."""
        step = 0.05  # fine sampling so that the area is measured to ~0.5%
        u = np.arange(-4.0, 4.0 + step / 2, step)[None, :]
        img = self.render(np.array([x]), np.array([y]), u, u)[0]
        area = np.count_nonzero(img > 0.5 * img.max()) * step**2
        return float(2.0 * np.sqrt(area / np.pi))

    def center_stamp(self, size: int = 25) -> np.ndarray:
        """PSF at the image centre (ZTF ``sciimgdaopsfcent.fits``)."""
        return self.stamp(self.nx / 2.0, self.ny / 2.0, size)


class StampPSF(GridPSF):
    """A model known by its normalised stamps: ``render`` cuts them out, one source at a time,
    with derivatives by central differences. For the simulator's truth and tests only; the
    pipeline's models render vectorised."""

    def stamp(self, x: float, y: float, size: int = 25) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def render(self, x, y, ux, uy, deriv: bool = False):
        x = np.atleast_1d(np.asarray(x, float))
        y = np.atleast_1d(np.asarray(y, float))
        ux, uy = np.asarray(ux, float), np.asarray(uy, float)
        n, sx = ux.shape
        sy = uy.shape[1]
        h = max(sx, sy) // 2 + 2

        def one(xx, yy):
            out = np.empty((n, sy, sx))
            for k in range(n):
                big = self.stamp(xx[k], yy[k], 2 * h + 1)
                ox = int(np.round(xx[k] + ux[k, 0]) - np.round(xx[k])) + h
                oy = int(np.round(yy[k] + uy[k, 0]) - np.round(yy[k])) + h
                out[k] = big[oy : oy + sy, ox : ox + sx]
            return out

        m = one(x, y)
        if not deriv:
            return m
        e = 0.01
        return (m, (one(x + e, y) - one(x - e, y)) / (2 * e),
                (one(x, y + e) - one(x, y - e)) / (2 * e))

    def stamps(self, x, y, size: int, deriv: bool = False):
        if not deriv:
            x, y = np.atleast_1d(x), np.atleast_1d(y)
            return np.stack([self.stamp(float(a), float(b), size) for a, b in zip(x, y,
                                                                                    strict=True)])
        return super().stamps(x, y, size, deriv)

def moffat_alpha(fwhm: np.ndarray | float, beta: np.ndarray | float) -> np.ndarray:
    """Moffat core width alpha from FWHM: FWHM = 2 alpha sqrt(2^(1/beta) - 1)."""
    return np.asarray(fwhm) / (2.0 * np.sqrt(2.0 ** (1.0 / np.asarray(beta)) - 1.0))


def moffat_stamps(
    dx: np.ndarray,
    dy: np.ndarray,
    fwhm: np.ndarray,
    beta: np.ndarray | float,
    q: np.ndarray | float,
    theta: np.ndarray | float,
    size: int,
    dtype: type = np.float32,
    oversample: int = 1,
) -> np.ndarray:
    """Render N elliptical Moffat stamps at once (vectorised, no per-star loop).

    Parameters
    ----------
    dx, dy : ndarray (N,)
        Position of each source relative to the centre pixel of its stamp (pixels).
    fwhm : ndarray (N,)
        Geometric-mean FWHM (pixels).
    beta : float or ndarray
        Moffat power index.
    q : float or ndarray
        Axis ratio b/a (<= 1).
    theta : float or ndarray
        Position angle of the major axis, radians from +x toward +y.
    size : int
        Odd stamp size.
    oversample : int
        Samples per pixel and axis (midpoint rule): 1 samples the profile at pixel centres;
        more integrates it over each pixel, as a detector does (the simulator's stars use 5).

    Returns
    -------
    ndarray (N, size, size)
        Stamps normalised to unit sum (the flux that falls on the stamp is the whole flux; stamp
        sizes are chosen by the caller so that the truncated wing is negligible).
    """
    if size % 2 != 1:
        raise ValueError("stamp size must be odd")
    n = len(dx)
    half = size // 2
    grid = np.arange(-half, half + 1, dtype=dtype)
    beta = np.broadcast_to(np.asarray(beta, dtype), (n,))
    q = np.broadcast_to(np.asarray(q, dtype), (n,))
    theta = np.broadcast_to(np.asarray(theta, dtype), (n,))
    alpha = moffat_alpha(np.asarray(fwhm, dtype), beta).astype(dtype)
    a2 = (alpha**2 / q)[:, None, None]
    b2 = (alpha**2 * q)[:, None, None]
    c = np.cos(theta)[:, None, None]
    s = np.sin(theta)[:, None, None]
    xx0 = grid[None, None, :] - np.asarray(dx, dtype)[:, None, None]
    yy0 = grid[None, :, None] - np.asarray(dy, dtype)[:, None, None]
    mb = -beta[:, None, None]
    sub = [float(t) for t in (np.arange(oversample) + 0.5) / oversample - 0.5]
    img = None
    for oy in sub:  # accumulate sub-pixel samples: memory stays that of one stamp set
        yy = yy0 + dtype(oy)
        for ox in sub:
            xx = xx0 + dtype(ox)
            u = xx * c + yy * s
            v = -xx * s + yy * c
            term = (1.0 + u * u / a2 + v * v / b2) ** mb
            img = term if img is None else img + term
    img /= img.sum(axis=(1, 2), keepdims=True)
    return img.astype(dtype, copy=False)


@dataclass(frozen=True)
class MoffatPSF(StampPSF):
    """A constant elliptical Moffat PSF (implements :class:`PSFModel`)."""

    fwhm: float
    beta: float = 3.0
    q: float = 1.0
    theta: float = 0.0

    def stamp(self, x: float, y: float, size: int = 25) -> np.ndarray:
        dx = np.array([x - np.round(x)])
        dy = np.array([y - np.round(y)])
        return moffat_stamps(
            dx, dy, np.array([self.fwhm]), self.beta, self.q, self.theta, size, np.float64
        )[0]

    def fwhm_at(self, x: float, y: float) -> float:
        return self.fwhm


@dataclass(frozen=True)
class PixelPSF(StampPSF):
    """An empirical PSF sampled on the pixel grid (constant over the image).

    Sub-pixel positions are applied with a Fourier shift, which preserves the flux.
    """

    image: np.ndarray
    fwhm: float

    def stamp(self, x: float, y: float, size: int = 25) -> np.ndarray:
        from scipy.ndimage import fourier_shift

        img = self.image
        n = img.shape[0]
        if size > n:
            pad = (size - n) // 2
            img = np.pad(img, pad)
        elif size < n:
            cut = (n - size) // 2
            img = img[cut : cut + size, cut : cut + size]
        shifted = np.fft.ifft2(fourier_shift(np.fft.fft2(img), (y - np.round(y), x - np.round(x))))
        out = shifted.real
        return out / out.sum()

    def fwhm_at(self, x: float, y: float) -> float:
        return self.fwhm


def poly_terms(xn: np.ndarray, yn: np.ndarray, degree: int) -> np.ndarray:
    """Monomials x^i y^j, i + j <= degree, of normalised coordinates; shape (N, n_terms)."""
    terms = [np.ones_like(xn)]
    for d in range(1, degree + 1):
        terms += [xn ** (d - j) * yn**j for j in range(d + 1)]
    return np.stack(terms, axis=-1)


def _lanczos(t: np.ndarray) -> np.ndarray:
    a = LANCZOS_A
    return np.where(np.abs(t) < a, np.sinc(t) * np.sinc(t / a), 0.0)


def _weights(t: np.ndarray, n: int, deriv: bool):
    """Lanczos taps of oversampled coordinates ``t``: (index, weight, d weight / d t).

    Weights are normalised to unit sum (flux preserving); taps outside the grid get weight 0
    because the model is zero there.
    """
    i0 = np.floor(t).astype(np.int64)
    k = np.arange(1 - LANCZOS_A, LANCZOS_A + 1)
    idx = i0[..., None] + k
    frac = (t - i0)[..., None] - k
    w = _lanczos(frac)
    s = w.sum(-1, keepdims=True)
    dw = None
    if deriv:
        wp = _lanczos(frac + FD_STEP)
        wm = _lanczos(frac - FD_STEP)
        dw = ((wp / wp.sum(-1, keepdims=True)) - (wm / wm.sum(-1, keepdims=True))) / (2 * FD_STEP)
    w = w / s
    out = (idx < 0) | (idx >= n)
    w[out] = 0.0
    if dw is not None:
        dw[out] = 0.0
    return np.clip(idx, 0, n - 1), w, dw


def moffat_profile(u: np.ndarray, v: np.ndarray, fwhm, beta, e1, e2, deriv: bool = False):
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


def moffat_pixel(u: np.ndarray, v: np.ndarray, fwhm, beta, e1, e2, deriv: bool = False):
    """:func:`moffat_profile` integrated over the pixel centred at (u, v) (what a detector records).

    The model's FWHM is that of the profile before pixelisation, so it compares with the
    seeing; the returned values are fractions of the total flux landing in each pixel. The
    quadrature rule is chosen by the narrowest FWHM of the call.
    """
    narrowest = float(np.min(fwhm))
    nodes, weights = next(rule for lo, rule in _PIXEL_RULES if narrowest >= lo)
    out = None
    for a, wa in zip(nodes, weights, strict=True):
        for b, wb in zip(nodes, weights, strict=True):
            term = moffat_profile(u + a, v + b, fwhm, beta, e1, e2, deriv)
            w = wa * wb
            if out is None:
                out = [t * w for t in term] if deriv else term * w
            elif deriv:
                for acc, t in zip(out, term, strict=True):
                    acc += t * w
            else:
                out += term * w
    return tuple(out) if deriv else out


def moffat_pixel_jacobian(u: np.ndarray, v: np.ndarray, fwhm: float, beta: float, e1: float,
                          e2: float, with_beta: bool = False) -> tuple[np.ndarray, ...]:
    """:func:`moffat_pixel` and its derivatives with respect to u, v, fwhm, e1, e2 (and beta).

    The quadratic form of :func:`moffat_profile` written in the pixel axes, smooth through
    e = 0 (where the position angle is undefined):
    ``qf = 1 + [(1 + e^2 - 2 e1) u^2 + (1 + e^2 + 2 e1) v^2 - 4 e2 u v] / (alpha^2 (1 - e^2))``,
    with ``e^2 = e1^2 + e2^2``; the same profile, so the values equal :func:`moffat_pixel`'s.
    Analytic derivatives let a least-squares fit of a star take one evaluation per step where
    finite differences took one per parameter (the PSF fit of a quadrant's stars, issue 22).

    Returns
    -------
    tuple of ndarray
        ``(value, d/du, d/dv, d/dfwhm, d/de1, d/de2)``, each integrated over the pixel, then
        ``d/dbeta`` (at fixed FWHM) with ``with_beta``.
    """
    nodes, weights = next(rule for lo, rule in _PIXEL_RULES if float(fwhm) >= lo)
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    esq = e1 * e1 + e2 * e2
    d = 1.0 - esq
    ca, cb, cc = (1.0 + esq - 2.0 * e1), (1.0 + esq + 2.0 * e1), -4.0 * e2
    scale = 1.0 / (alpha * alpha * d)
    norm = (beta - 1.0) / (np.pi * alpha * alpha)
    t = 2.0 ** (1.0 / beta) - 1.0
    dalpha = alpha * (t + 1.0) * np.log(2.0) / (2.0 * t * beta * beta)  # d alpha / d beta
    out = [np.zeros(np.broadcast(u, v).shape) for _ in range(7 if with_beta else 6)]
    for a, wa in zip(nodes, weights, strict=True):
        for b, wb in zip(nodes, weights, strict=True):
            uu, vv = u + a, v + b
            uu2, vv2, uv = uu * uu, vv * vv, uu * vv
            n = ca * uu2 + cb * vv2 + cc * uv
            qf = 1.0 + n * scale
            img = norm * qf ** (-beta)
            g = (-beta * scale) * img / qf  # d img / d n
            w = wa * wb
            rr = uu2 + vv2
            out[0] += w * img
            out[1] += w * g * (2.0 * ca * uu + cc * vv)
            out[2] += w * g * (2.0 * cb * vv + cc * uu)
            out[3] += w * (2.0 * img / fwhm) * (beta * (qf - 1.0) / qf - 1.0)
            # d(n / d) / de_i = (dn/de_i + 2 e_i n / d) / d; d scales as 1 / d already in g.
            out[4] += w * g * (2.0 * e1 * rr - 2.0 * (uu2 - vv2) + 2.0 * e1 * n / d)
            out[5] += w * g * (2.0 * e2 * rr - 4.0 * uv + 2.0 * e2 * n / d)
            if with_beta:  # d ln(value) / d beta, through the norm, the power and alpha
                out[6] += w * img * (1.0 / (beta - 1.0) - np.log(qf) + (dalpha / alpha)
                                     * (2.0 * beta * (qf - 1.0) / qf - 2.0))
    return tuple(out)


@dataclass(frozen=True)
class MoffatFieldPSF(GridPSF):
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
        out = moffat_pixel(u, v, fwhm.astype(f32)[sh], f32(self.beta), e1.astype(f32)[sh],
                            e2.astype(f32)[sh], deriv)
        if not deriv:
            return out.astype(f32, copy=False)
        img, du, dv = out
        # Moving the source by +dx moves every sample offset by -dx.
        np.negative(du, out=du)
        np.negative(dv, out=dv)
        return img.astype(f32, copy=False), du.astype(f32, copy=False), dv.astype(f32, copy=False)

    def fwhm_at(self, x: float, y: float) -> float:
        """FWHM of the profile before pixelisation (the seeing's, pixels); the FWHM as the
        detector records it is :meth:`measured_fwhm` (0.86 px before pixelisation is 1.2 px
        recorded; 3 px, 3.1 px)."""
        return float(self.shape_at(np.array([x]), np.array([y]))[0][0])

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


@dataclass(frozen=True, eq=False)
class PolyPixelPSF(GridPSF):
    """Oversampled pixel PSF varying as a polynomial over the image (implements PSFModel).

    Attributes
    ----------
    coeffs : ndarray (n_terms, G, G)
        Polynomial coefficient of every grid node; G = 2 radius oversample + 1. The grid holds
        the PSF value of a pixel whose centre lies at that offset from the star, so the sum of
        a rendered stamp is ~1.
    oversample : int
    degree : int
    nx, ny : int
        Image size; positions are normalised as (x - nx/2) / (nx/2) in the polynomial.
    nstars : int
        Number of stars the model was built from.
    """

    coeffs: np.ndarray
    oversample: int
    degree: int
    nx: int
    ny: int
    nstars: int = 0

    @property
    def radius(self) -> int:
        return (self.coeffs.shape[-1] // self.oversample) // 2

    def _terms(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        hx, hy = self.nx / 2.0, self.ny / 2.0
        return poly_terms(
            (np.asarray(x, float) - hx) / hx, (np.asarray(y, float) - hy) / hy, self.degree
        )

    def render(
        self,
        x: np.ndarray,
        y: np.ndarray,
        ux: np.ndarray,
        uy: np.ndarray,
        deriv: bool = False,
        chunk: int = 4096,
        normalise: bool = True,
    ):
        """PSF of N sources sampled on separable offset grids (vectorised over sources).

        Parameters
        ----------
        x, y : ndarray (N,)
            Source positions (select the spatial polynomial).
        ux, uy : ndarray (N, nx) and (N, ny)
            Offsets (pixels) of the sample columns and rows from each source centre.
        deriv : bool
            Also return the derivatives with respect to the source position x and y.
        chunk : int
            Sources per block (bounds the memory of the per-source grids).
        normalise : bool
            Divide by the integral of the grid at each position (False only while fitting).

        Returns
        -------
        ndarray (N, ny, nx), or a tuple (psf, dpsf/dx, dpsf/dy)
            Normalised so that the PSF integrates to 1 (not re-normalised to the sampled area).
        """
        x = np.atleast_1d(np.asarray(x, float))
        y = np.atleast_1d(np.asarray(y, float))
        os_, g = self.oversample, self.coeffs.shape[-1]
        c = g // 2
        coef = self.coeffs.reshape(len(self.coeffs), -1).astype(np.float32)
        terms = self._terms(x, y).astype(np.float32)
        # The grid sum over os^2 is the integral; dividing keeps every position at unit flux.
        norm = terms @ (coef.sum(1) / os_**2) if normalise else np.ones(len(x), np.float32)
        n, nxs, nys = len(x), ux.shape[1], uy.shape[1]
        out = np.empty((n, nys, nxs), np.float32)
        dx = np.empty_like(out) if deriv else None
        dy = np.empty_like(out) if deriv else None
        for s in range(0, n, chunk):
            sl = slice(s, s + chunk)
            m = len(x[sl])
            # One GEMM gives every source's grid; far cheaper than interpolating each term.
            grid = (terms[sl] @ coef).reshape(m, g, g) / norm[sl, None, None]
            ix, wx, dwx = _weights(c + os_ * ux[sl], g, deriv)
            iy, wy, dwy = _weights(c + os_ * uy[sl], g, deriv)
            ar = np.arange(m)[:, None, None]
            rows = grid[ar, iy]  # (m, ny, 6, G)
            ty = np.einsum("myk,mykg->myg", wy.astype(np.float32), rows)
            ar4 = np.arange(m)[:, None, None, None]
            ay = np.arange(nys)[None, :, None, None]
            cols = ty[ar4, ay, ix[:, None]]  # (m, ny, nx, 6)
            out[sl] = np.einsum("mxk,myxk->myx", wx.astype(np.float32), cols)
            if deriv:
                # d/dsource = -oversample * d/dt (the sample offset decreases as the source moves)
                dx[sl] = -os_ * np.einsum("mxk,myxk->myx", dwx.astype(np.float32), cols)
                tdy = np.einsum("myk,mykg->myg", dwy.astype(np.float32), rows)
                dy[sl] = -os_ * np.einsum(
                    "mxk,myxk->myx", wx.astype(np.float32), tdy[ar4, ay, ix[:, None]]
                )
        return (out, dx, dy) if deriv else out

    def fwhm_at(self, x: float, y: float) -> float:
        """FWHM of the pixel grid (already pixel-integrated): :meth:`measured_fwhm`."""
        return self.measured_fwhm(x, y)

    def center_stamp(self, size: int | None = None) -> np.ndarray:
        """PSF at the image centre (ZTF ``sciimgdaopsfcent.fits``)."""
        size = 2 * self.radius + 1 if size is None else size
        return self.stamp(self.nx / 2.0, self.ny / 2.0, size)

    def to_hdu(self) -> fits.ImageHDU:
        """FITS image of the coefficient cube (ZTF ``sciimgdao.psf``)."""
        hdu = fits.ImageHDU(self.coeffs.astype(np.float32), name="PSF")
        h = hdu.header
        h["PSFTYPE"] = ("PIXGRID", "oversampled grid, nodes polynomial in x, y")
        h["PSFOVER"] = (self.oversample, "oversampling factor of the grid")
        h["PSFDEG"] = (self.degree, "polynomial degree of the spatial variation")
        h["PSFNX"] = (self.nx, "image width, px (x normalised by PSFNX/2)")
        h["PSFNY"] = (self.ny, "image height, px")
        h["PSFNSTAR"] = (self.nstars, "number of PSF stars")
        h["PSFRAD"] = (self.radius, "model half-size, px")
        h["PSFFWHM"] = (self.fwhm_at(self.nx / 2.0, self.ny / 2.0), "FWHM at centre, px")
        return hdu

    @classmethod
    def from_hdu(cls, hdu: fits.ImageHDU) -> PolyPixelPSF:
        h = hdu.header
        return cls(
            np.asarray(hdu.data, np.float32),
            int(h["PSFOVER"]),
            int(h["PSFDEG"]),
            int(h["PSFNX"]),
            int(h["PSFNY"]),
            int(h.get("PSFNSTAR", 0)),
        )


#: The persisted PSF models by their ``PSFTYPE`` keyword.
_PSF_TYPES: dict[str, type] = {"MOFFAT": MoffatFieldPSF, "PIXGRID": PolyPixelPSF}


def psf_from_hdu(hdu: fits.ImageHDU) -> MoffatFieldPSF | PolyPixelPSF:
    """The PSF model stored in a ``PSF`` HDU (``sciimgdao.psf``-like products).

    Raises
    ------
    ValueError
        If the HDU's ``PSFTYPE`` names no known model.
    """
    kind = str(hdu.header.get("PSFTYPE", "PIXGRID" if "PSFOVER" in hdu.header else ""))
    if kind not in _PSF_TYPES:
        raise ValueError(f"PSF HDU of unknown PSFTYPE {kind!r} (known: {', '.join(_PSF_TYPES)})")
    return _PSF_TYPES[kind].from_hdu(hdu)
