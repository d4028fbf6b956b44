"""The true PSF of an exposure: Kolmogorov atmosphere, optics and pixel, varying over the field.

The pipeline fits elliptical Moffat profiles (:mod:`zsds.instcal.moffat`). A simulator that drew
stars from the same family would hide every error of that model, so the truth is another family,
defined by its optical transfer function (OTF). With spatial frequencies ``k = (kx, ky)`` in
cycles per pixel:

.. code-block:: text

    T(k) = exp(-3.44 (|M k| w_atm / 0.9756)^(5/3))   Kolmogorov long exposure (Fried 1966)
         * exp(-2 pi^2 s_opt^2 |M k|^2)               optics: a Gaussian, s_opt = w_opt / 2.3548
         * sinc(kx) sinc(ky)                          integration over the square pixel

``w_atm`` is the FWHM of the atmospheric profile (the seeing, in pixels): the Kolmogorov
long-exposure PSF has FWHM 0.9756 lambda / r0, which puts ``lambda / r0 = w_atm / 0.9756``
in the classic ``exp(-3.44 (lambda k / r0)^(5/3))``. Its wing falls as r^(-11/3) where a Moffat
of beta ~ 3 falls as r^(-6). ``M`` is an area-preserving shear (axis ratio ``q``, major axis at
angle ``theta``) applied to atmosphere and optics together: the tracking/wind ellipticity and
the optical one, added as spin-2 quantities. Diffraction (lambda / D ~ 0.1" for the 1.2 m
Schmidt) is left out: it is far below the pixel.

The inverse transform of ``T`` is the PSF already integrated over a pixel: sampled at integer
offsets from a star it gives the exact fraction of the star's light in each pixel, whatever the
sub-pixel phase, with no midpoint rule. Because the sampled PSF is undersampled at ZTF's best
seeing (power above the Nyquist frequency), a Fourier shift of a pixel-sampled stamp would be
wrong; stamps are instead interpolated from the profile tabulated every 1/8 px
(:class:`QuadrantTruePSF`).

FWHM. :meth:`QuadrantTruePSF.fwhm_at` is the FWHM of the rendered, pixel-convolved profile
(the profile above, inverse transformed), as a geometric mean ``2 sqrt(A / pi)`` with ``A`` the
area above half of the peak: what a pixel-grid PSF model or SExtractor's FWHM_IMAGE measures.
Seeing maps to it as ``fwhm_sky ~ sqrt(seeing^2 + optics^2) / 1.012"`` (within 3%) for the
profile before the pixel, then ``fwhm_px^2 ~ fwhm_sky^2 + 0.57..0.73 px^2`` for the pixel (more
than a Gaussian's 0.46 px^2: the Kolmogorov profile's cusp is flattened more); see
``docs/simulator.md`` for a table. Seeing 0.7" (the simulator's floor) renders at 1.2 px.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from zsds.core.instrument import PIXEL_SCALE, QUAD_NX, QUAD_NY, quadrant_pixel_to_focal_plane
from zsds.core.psf import GridPSF

#: FWHM of the Kolmogorov long-exposure PSF in units of lambda / r0 (computed from its OTF;
#: the literature's 0.976 / 0.98).
KOLMOGOROV_FWHM = 0.9756

#: Gaussian FWHM / sigma.
_GAUSS_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))

#: Stamp sizes that the renderer picks from (steps of ~1.3x); the tables of any odd size up to
#: 41 and up to 129 px are crops of two tables, larger sizes get a table of their own.
STAMP_SIZES = (7, 9, 11, 13, 17, 23, 31, 41, 55, 71, 97, 129)

#: Tables per group of stamp sizes: (largest size, samples per pixel). Profiles are tabulated
#: every 1/8 px for the stamps of faint and PSF-building stars (cubic B-spline interpolation is
#: then within ~1e-4 of the peak at FWHM 1.3 px), every 1/4 px for bright and saturated stars
#: and galaxy kernels (within ~5e-4), whose tables are otherwise 10x larger.
_GROUPS = ((41, 8), (129, 4))

#: Spacing (px) of the nodes at which the PSF is tabulated; in between it is interpolated
#: bilinearly (a full quadrant has 3 x 3 nodes, a small one its 4 corners). Over the outermost
#: quadrants the FWHM changes by up to 12% at the best seeing, nearly linearly: the bilinear
#: interpolation misses < 0.05% of it.
NODE_SPACING = 1536.0


def transfer_function(
    kx: np.ndarray,
    ky: np.ndarray,
    w_atm: float,
    w_opt: float,
    q: float,
    theta: float,
    pixel: bool = True,
) -> np.ndarray:
    """OTF of the true PSF (see the module docstring).

    Parameters
    ----------
    kx, ky : ndarray
        Spatial frequencies (cycles per pixel), broadcastable.
    w_atm, w_opt : float
        FWHM of the atmospheric (Kolmogorov) and optical (Gaussian) terms (pixels).
    q, theta : float
        Axis ratio (<= 1) and major-axis angle (rad from +x toward +y) of the shear.
    pixel : bool
        Include the square pixel (the profile a detector records); False gives the PSF on the
        sky.

    Returns
    -------
    ndarray
        Real OTF (the profile is centro-symmetric), 1 at k = 0.
    """
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    u = kx * c + ky * s
    v = -kx * s + ky * c
    # |M k|^2: the profile stretched by 1/sqrt(q) along theta has its OTF squeezed by sqrt(q).
    k2 = u * u * np.float32(1.0 / q) + v * v * np.float32(q)
    a = np.float32((w_atm / KOLMOGOROV_FWHM) ** 2)
    b = np.float32(2.0 * np.pi**2 * (w_opt / _GAUSS_FWHM) ** 2)
    t = np.exp(np.float32(-3.44) * (k2 * a) ** np.float32(5.0 / 6.0) - b * k2)
    if pixel:  # separable: two 1-D sincs
        t = t * np.sinc(kx) * np.sinc(ky)
    return t


def profile_image(
    w_atm: float,
    w_opt: float,
    q: float,
    theta: float,
    npx: int,
    oversample: int,
    pixel: bool = True,
    spline: bool = False,
) -> np.ndarray:
    """The profile sampled every ``1 / oversample`` px over ``npx`` pixels.

    Sample ``(j, i)`` is at offset ``((i - c) / oversample, (j - c) / oversample)`` px from the
    star, ``c = npx * oversample // 2``. With ``pixel`` the value is the fraction of a unit star's
    light that falls in a pixel centred there (so that the samples at integer offsets are the
    star's pixel values); without, the surface density per px^2 on the sky.

    With ``spline`` the result is instead the cubic B-spline coefficients that interpolate those
    samples (what ``scipy.ndimage.spline_filter`` would give, with periodic boundaries): the
    prefilter, a convolution, is applied in the Fourier domain for free.

    Notes
    -----
    The transform is periodic over ``npx`` pixels: light beyond ``npx / 2`` of the star wraps
    round. With ``npx >= size + 8 w`` (w the FWHM) the wrapped light is < 1e-4 of the peak.
    """
    n = npx * oversample
    # float32: the OTF and its transform are good to ~1e-7 of the peak, twice as fast.
    ky = sfft.fftfreq(n, d=1.0 / oversample).astype(np.float32)
    kx = sfft.rfftfreq(n, d=1.0 / oversample).astype(np.float32)
    otf = transfer_function(kx[None, :], ky[:, None], w_atm, w_opt, q, theta, pixel)
    if spline:
        # Inverse of the sampled cubic B-spline (1, 4, 1) / 6, per axis.
        bx = 3.0 / (2.0 + np.cos(2.0 * np.pi * kx / oversample))
        by = 3.0 / (2.0 + np.cos(2.0 * np.pi * ky / oversample))
        otf = otf * bx[None, :] * by[:, None]
    img = sfft.irfft2(otf, s=(n, n)) * np.float32(oversample * oversample)
    return sfft.fftshift(img)


@lru_cache(maxsize=256)  # pure; the simulator asks for the same quadrant centres repeatedly
def profile_fwhm(
    w_atm: float, w_opt: float, q: float, theta: float, pixel: bool = True
) -> float:
    """Geometric-mean FWHM ``2 sqrt(A / pi)`` of the profile, A = area above half its peak (px).

    The half-maximum contour is found along 90 rays through the centre (the profile is
    centro-symmetric) on a cubic-spline interpolant of the profile tabulated every 1/16 px:
    accurate to ~1e-4.
    """
    k = 16
    w = float(np.hypot(w_atm, w_opt)) / np.sqrt(q)
    npx = 2 * int(np.ceil(3.0 * w)) + 8
    coef = profile_image(w_atm, w_opt, q, theta, npx, k, pixel, spline=True)
    c = coef.shape[0] // 2
    peak = ndimage.map_coordinates(coef, [[c], [c]], order=3, prefilter=False)[0]
    phi = (np.arange(90) + 0.5) * np.pi / 90
    r = np.arange(0.0, 2.0 * w + 1.5, 0.01)
    yy = c + k * r[None, :] * np.sin(phi)[:, None]
    xx = c + k * r[None, :] * np.cos(phi)[:, None]
    vals = ndimage.map_coordinates(coef, [yy.ravel(), xx.ravel()], order=3, prefilter=False)
    vals = vals.reshape(yy.shape) / peak - 0.5
    j = np.argmax(vals < 0.0, axis=1)  # first sample below half maximum on each ray
    rows = np.arange(len(phi))
    v0, v1 = vals[rows, j - 1], vals[rows, j]
    rh = r[j - 1] + (r[j] - r[j - 1]) * v0 / (v0 - v1)
    area = float(np.sum(rh**2) * np.pi / len(phi))
    return 2.0 * np.sqrt(area / np.pi)


@dataclass(frozen=True)
class FocalPlanePSF:
    """The true PSF of one exposure and its variation over the focal plane.

    Atmosphere: Kolmogorov with FWHM ``seeing``, the same everywhere. Optics: a Gaussian of
    FWHM ``optics + 0.5" (r / 5 deg)^2`` (r the distance from the optical axis). Shear: the
    tracking/wind ellipticity (constant over the exposure) plus an optical term
    ``0.05 (r / 5 deg)^2`` oriented tangentially, added as spin-2 quantities and clipped at 0.5.

    Attributes
    ----------
    seeing : float
        Atmospheric FWHM (arcsec).
    optics : float
        FWHM of the optics on the optical axis (arcsec).
    e_track, theta_track : float
        Tracking ellipticity and its angle (rad).
    """

    seeing: float
    optics: float
    e_track: float
    theta_track: float

    @classmethod
    def from_exposure(cls, exp: Any) -> FocalPlanePSF:
        """From an :class:`~zsds.sim.observing.Exposure` or its truth record (a mapping, e.g.
        ``exposure.json``)."""
        get = exp.__getitem__ if isinstance(exp, Mapping) else exp.__getattribute__
        return cls(get("seeing"), get("psf_optics"), get("psf_e"), get("psf_theta"))

    def params_fp(
        self, ew: np.ndarray, ns: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(w_atm, w_opt, q, theta)`` at focal-plane positions (deg); widths in pixels."""
        ew = np.asarray(ew, float)
        ns = np.asarray(ns, float)
        r2 = (ew**2 + ns**2) / 25.0
        w_atm = np.full(ew.shape, self.seeing / PIXEL_SCALE)
        w_opt = (self.optics + 0.5 * r2) / PIXEL_SCALE
        phi = np.arctan2(ns, ew) + np.pi / 2.0  # tangential direction
        e_opt = 0.05 * r2
        # Ellipticities add as spin-2 quantities.
        e1 = self.e_track * np.cos(2 * self.theta_track) + e_opt * np.cos(2 * phi)
        e2 = self.e_track * np.sin(2 * self.theta_track) + e_opt * np.sin(2 * phi)
        e = np.clip(np.hypot(e1, e2), 0.0, 0.5)
        q = (1.0 - e) / (1.0 + e)
        theta = 0.5 * np.arctan2(e2, e1)
        return w_atm, w_opt, q, theta


def _bspline_weights(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cubic B-spline interpolation at table coordinates ``t`` (any shape).

    Returns the index of the sample below each coordinate, the weights of the samples
    ``i0 - 1 .. i0 + 2`` and their derivatives with respect to ``t`` (shape ``t.shape + (4,)``).
    """
    i0 = np.floor(t)
    f = (t - i0)[..., None]
    w = np.concatenate(
        [(1.0 - f) ** 3, 3.0 * f**3 - 6.0 * f**2 + 4.0, -3.0 * f**3 + 3.0 * f**2 + 3.0 * f + 1.0,
         f**3],
        axis=-1,
    ) / 6.0  # fmt: skip
    dw = np.concatenate(
        [-0.5 * (1.0 - f) ** 2, 1.5 * f**2 - 2.0 * f, -1.5 * f**2 + f + 0.5, 0.5 * f**2], axis=-1
    )
    return i0.astype(np.int64), w, dw


@dataclass(frozen=True)
class _Group:
    """Phase tables of one group of stamp sizes over a grid of nodes.

    ``table[node, py, px, my, mx]`` is the cubic B-spline coefficient of the profile at
    ``(my + (py - oversample // 2 - 1) / oversample, mx + ...)`` px from the star: for each
    node, every stamp pixel ``m`` and the ``oversample + 4`` sub-pixel offsets that the four
    spline coefficients of any phase can need, so that a stamp is a weighted sum of 4 x 4
    contiguous (size, size) blocks per node.
    """

    size: int
    oversample: int
    x_nodes: np.ndarray
    y_nodes: np.ndarray
    table: np.ndarray  # (n_nodes, P, P, size, size) float32, P = oversample + 4


@dataclass(frozen=True)
class QuadrantTruePSF(GridPSF):
    """The true PSF restricted to one quadrant (implements :class:`zsds.core.psf.PSFModel`).

    Stamps are exact pixel integrals of the true profile up to the interpolation of its tables:
    < 1e-4 of the peak for the faint and PSF-building stars near the optical axis, < 1.2e-3 at
    the best seeing in the outermost quadrants, where the PSF varies most between the nodes.
    The tables are built on first use and cached; two threads may both build a missing one
    (with identical results), so an instance can be shared between threads.
    """

    fp_psf: FocalPlanePSF
    ccdid: int
    qid: int
    nx: int = QUAD_NX
    ny: int = QUAD_NY
    _groups: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _crops: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def params(
        self, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(w_atm, w_opt, q, theta)`` (pixels, pixels, axis ratio, rad) at quadrant pixels."""
        ew, ns = quadrant_pixel_to_focal_plane(self.ccdid, self.qid, x, y, self.nx, self.ny)
        return self.fp_psf.params_fp(ew, ns)

    def fwhm_at(self, x: float, y: float) -> float:
        """FWHM (px) of the rendered, pixel-convolved profile at a position (geometric mean
        ``2 sqrt(A / pi)``, A the area above half maximum)."""
        p = [float(a[0]) for a in self.params(np.array([x]), np.array([y]))]
        return profile_fwhm(*p, pixel=True)

    def measured_fwhm(self, x: float, y: float) -> float:
        """The same as :meth:`fwhm_at` (the truth's FWHM is already the pixel-integrated one)."""
        return self.fwhm_at(x, y)

    def sky_fwhm_at(self, x: float, y: float) -> float:
        """FWHM (px) of the profile before the pixel (geometric mean)."""
        p = [float(a[0]) for a in self.params(np.array([x]), np.array([y]))]
        return profile_fwhm(*p, pixel=False)

    @cached_property
    def typical_fwhm(self) -> float:
        """:meth:`fwhm_at` the quadrant centre (sets stamp sizes)."""
        return self.fwhm_at(self.nx / 2.0, self.ny / 2.0)

    def stamps(self, x: np.ndarray, y: np.ndarray, size: int, deriv: bool = False):
        """Pixel values of unit-flux stars at ``(x, y)`` (vectorised, float32).

        Parameters
        ----------
        x, y : ndarray (N,)
            Star positions (pixels); each stamp is centred on pixel ``round(x), round(y)``.
        size : int
            Odd stamp size.
        deriv : bool
            Also return the derivatives with respect to x and y.

        Returns
        -------
        ndarray (N, size, size), or three of them with ``deriv``
            The exact fraction of each star's light per pixel: not renormalised, so the light
            beyond the stamp (the Kolmogorov wing) is left out rather than moved into the core.

        Notes
        -----
        A stamp is a weighted sum of 64 tabulated (size, size) blocks: 4 spline coefficients
        per axis for the sub-pixel phase times the 4 nodes around the star. The weights of
        the stars between the same 4 nodes form a sparse (N, 4 (K + 4)^2) matrix that is
        multiplied densely with those nodes' tables: BLAS does the ~9x extra flops far faster
        than numpy gathers 64 blocks per star.
        """
        if size % 2 != 1:
            raise ValueError("stamp size must be odd")
        x = np.atleast_1d(np.asarray(x, float))
        y = np.atleast_1d(np.asarray(y, float))
        n = len(x)
        g = self._group(size)
        table = self._crop(g, size)
        k = g.oversample
        npp = k + 4
        # Sub-pixel phase -> the 4 spline coefficients along each axis; a pixel at offset m
        # from the centre pixel is at m - (x - round(x)) from the star.
        iy0, wy, dwy = _bspline_weights(-k * (y - np.round(y)))
        ix0, wx, dwx = _bspline_weights(-k * (x - np.round(x)))
        iy0 += k // 2
        ix0 += k // 2
        jx, gx = _node_weights(g.x_nodes, x)
        jy, gy = _node_weights(g.y_nodes, y)
        nnx = len(g.x_nodes)
        cell = jy * (nnx - 1) + jx
        wn = _corner_weights(gx, gy)
        a = np.arange(4)
        cols = (
            (a[None, :, None, None] * npp + iy0[:, None, None, None] + a[None, None, :, None])
            * npp
            + ix0[:, None, None, None]
            + a[None, None, None, :]
        ).reshape(n, 64)

        def weights(vy, vx):
            return (wn[:, :, None, None] * vy[:, None, :, None] * vx[:, None, None, :]).reshape(
                n, 64).astype(np.float32)  # fmt: skip

        # The phase is -k * (x - round(x)): d/dx = -k d/dphase.
        sets = [weights(wy, wx)]
        if deriv:
            sets += [weights(wy, -k * dwx), weights(-k * dwy, wx)]
        outs = [np.empty((n, size * size), np.float32) for _ in sets]
        step = max(1, int(2e7 // (4 * npp * npp + size * size)))  # bounded memory
        for c in np.unique(cell):
            sel = np.flatnonzero(cell == c)
            cy, cx = divmod(int(c), nnx - 1)
            nodes = [cy * nnx + cx, cy * nnx + cx + 1, (cy + 1) * nnx + cx, (cy + 1) * nnx + cx + 1]
            tc = table[nodes].reshape(4 * npp * npp, size * size)
            for lo in range(0, len(sel), step):
                ss = sel[lo : lo + step]
                for vals, out in zip(sets, outs, strict=True):
                    w = np.zeros((len(ss), 4 * npp * npp), np.float32)
                    np.put_along_axis(w, cols[ss], vals[ss], axis=1)
                    out[ss] = w @ tc
        outs = [o.reshape(n, size, size) for o in outs]
        return tuple(outs) if deriv else outs[0]

    def render(self, x: np.ndarray, y: np.ndarray, ux: np.ndarray, uy: np.ndarray,
               deriv: bool = False):  # fmt: skip
        """PSF of N sources on separable offset grids (pixel centre minus source position).

        Parameters
        ----------
        x, y : ndarray (N,)
            Source positions.
        ux, uy : ndarray (N, nx), (N, ny)
            Offsets of the pixel centres from each source, along x and y. Unit-spaced grids
            (pixels) are cut from :meth:`stamps`; any other offsets (a finer grid, say) are
            interpolated from the same tables, one value at a time.
        deriv : bool
            Also return the derivatives with respect to the source position.

        Returns
        -------
        ndarray (N, ny, nx), or three of them with ``deriv``
            Fractions of each source's flux per pixel (float64).
        """
        x = np.atleast_1d(np.asarray(x, float))
        y = np.atleast_1d(np.asarray(y, float))
        ux = np.atleast_2d(np.asarray(ux, float))
        uy = np.atleast_2d(np.asarray(uy, float))
        n = len(x)
        px = ux + x[:, None]  # pixel centres
        py = uy + y[:, None]
        if np.allclose(px, np.rint(px), atol=1e-6) and np.allclose(py, np.rint(py), atol=1e-6):
            # Pixel offsets relative to each stamp's centre pixel.
            cx = np.rint(px).astype(np.int64) - np.rint(x).astype(np.int64)[:, None]
            cy = np.rint(py).astype(np.int64) - np.rint(y).astype(np.int64)[:, None]
            half = int(max(np.abs(cx).max(), np.abs(cy).max()))
            res = self.stamps(x, y, 2 * half + 1, deriv)
            res = res if deriv else (res,)
            idx = np.arange(n)[:, None, None]
            out = [r[idx, cy[:, :, None] + half, cx[:, None, :] + half].astype(float)
                   for r in res]  # fmt: skip
            return tuple(out) if deriv else out[0]
        mx = np.rint(ux).astype(np.int64)
        my = np.rint(uy).astype(np.int64)
        half = int(max(np.abs(mx).max(), np.abs(my).max()))
        return self._render_any(x, y, ux, uy, mx, my, 2 * half + 1, deriv)

    def _render_any(self, x, y, ux, uy, mx, my, size, deriv):
        """:meth:`render` at arbitrary offsets: 64 table values gathered per output value."""
        g = self._group(size)
        table = self._crop(g, size)
        h = size // 2
        k = g.oversample
        npp = k + 4
        ix0, wx, dwx = _bspline_weights(k * (ux - mx))  # (N, nx), (N, nx, 4)
        iy0, wy, dwy = _bspline_weights(k * (uy - my))
        px = ix0 + k // 2
        py = iy0 + k // 2
        jx, gx = _node_weights(g.x_nodes, x)
        jy, gy = _node_weights(g.y_nodes, y)
        nnx = len(g.x_nodes)
        node = np.stack([jy * nnx + jx, jy * nnx + jx + 1, (jy + 1) * nnx + jx,
                         (jy + 1) * nnx + jx + 1], axis=1)  # fmt: skip
        wn = _corner_weights(gx, gy)
        a = np.arange(4)
        flat = (
            (
                (node[:, :, None, None, None, None] * npp
                 + py[:, None, :, None, None, None] + a[None, None, None, :, None, None]) * npp
                + px[:, None, None, None, :, None] + a[None, None, None, None, None, :]
            ) * size
            + my[:, None, :, None, None, None] + h
        ) * size + mx[:, None, None, None, :, None] + h  # (N, 4, ny, 4, nx, 4)  # fmt: skip
        vals = table.reshape(-1)[flat].astype(float)
        # Offsets are pixel minus source: d/dsource = -d/doffset = -k d/dt.
        res = [np.einsum("nc,ncjaib,nja,nib->nji", wn, vals, wy, wx)]
        if deriv:
            res.append(np.einsum("nc,ncjaib,nja,nib->nji", wn, vals, wy, -k * dwx))
            res.append(np.einsum("nc,ncjaib,nja,nib->nji", wn, vals, -k * dwy, wx))
        return tuple(res) if deriv else res[0]

    def _group(self, size: int) -> _Group:
        gmax, k = next(((gm, km) for gm, km in _GROUPS if size <= gm), (size, 4))
        g = self._groups.get(gmax)
        if g is None:
            g = self._build(gmax, k)
            self._groups[gmax] = g
        return g

    def _crop(self, g: _Group, size: int) -> np.ndarray:
        """The group's table cropped to ``size`` (contiguous, cached)."""
        if size == g.size:
            return g.table
        key = (g.size, size)
        t = self._crops.get(key)
        if t is None:
            c = (g.size - size) // 2
            t = np.ascontiguousarray(g.table[..., c : c + size, c : c + size])
            self._crops[key] = t
        return t

    def _build(self, size: int, k: int) -> _Group:
        nnx = max(2, round((self.nx - 1) / NODE_SPACING) + 1)
        nny = max(2, round((self.ny - 1) / NODE_SPACING) + 1)
        xn = np.linspace(0.0, self.nx - 1.0, nnx)
        yn = np.linspace(0.0, self.ny - 1.0, nny)
        gx, gy = np.meshgrid(xn, yn)
        w_atm, w_opt, q, theta = self.params(gx.ravel(), gy.ravel())
        wmax = float(np.max(np.hypot(w_atm, w_opt) / np.sqrt(q)))
        # Margin for the periodic wrap of the transform (see profile_image) and the spline.
        npx = size + 2 * int(np.ceil(4.0 * wmax)) + 4
        while sfft.next_fast_len(npx * k, real=True) != npx * k:  # a fast transform length
            npx += 1
        c = npx * k // 2
        h = size // 2
        p = np.arange(-(k // 2) - 1, k // 2 + 3)
        rows = c + k * np.arange(-h, h + 1)[None, :] + p[:, None]  # (P, size)
        table = np.empty((len(w_atm), len(p), len(p), size, size), np.float32)
        for i in range(len(w_atm)):
            coef = profile_image(w_atm[i], w_opt[i], q[i], theta[i], npx, k, spline=True)
            table[i] = coef[rows[:, None, :, None], rows[None, :, None, :]]
        return _Group(size, k, xn, yn, table)


def _corner_weights(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Bilinear weights (N, 4) of the node corners (0,0), (0,1), (1,0), (1,1) as (y, x)."""
    return np.stack([(1 - gy) * (1 - gx), (1 - gy) * gx, gy * (1 - gx), gy * gx], axis=1)


def _node_weights(nodes: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the node below each value and the linear weight of the next one (clamped)."""
    d = nodes[1] - nodes[0]
    t = np.clip((v - nodes[0]) / d, 0.0, len(nodes) - 1.0)
    j = np.minimum(np.floor(t).astype(np.int64), len(nodes) - 2)
    return j, t - j
