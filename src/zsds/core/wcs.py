"""World coordinate systems of quadrant images (TAN with SIP distortion).

The camera model maps a quadrant pixel to the sky in four steps: the CCD's placement on the focal
plane (from the real layout), the radial optical distortion of the Schmidt focal plane, the
pointing rotation, and the gnomonic (TAN) projection about the pointing centre. Because the
distortion is a cubic polynomial in focal-plane position and the placement is affine, the whole
chain is *exactly* a FITS TAN-SIP WCS of order 3 with CRPIX at the optical axis; we build that WCS
analytically rather than fit it.
"""

from __future__ import annotations

import warnings

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from zsds.core.instrument import (
    DISTORTION_K,
    PIXEL_SCALE,
    QUAD_NX,
    QUAD_NY,
    quadrant_affine,
)


def sip_inverse(
    a: np.ndarray, b: np.ndarray, crpix: np.ndarray, nx: int, ny: int, order: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Fit inverse SIP polynomials (AP, BP) on a grid covering the image, by least squares."""
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 40), np.linspace(0, ny - 1, 40))
    u = gx.ravel() - (crpix[0] - 1)
    v = gy.ravel() - (crpix[1] - 1)
    fu = np.zeros_like(u)
    fv = np.zeros_like(v)
    for p in range(a.shape[0]):
        for q in range(a.shape[1]):
            fu += a[p, q] * u**p * v**q
            fv += b[p, q] * u**p * v**q
    U, V = u + fu, v + fv
    # Scale the polynomial basis to avoid a badly conditioned design with CRPIX far away.
    s = max(np.abs(U).max(), np.abs(V).max())
    terms = [(p, q) for p in range(order + 1) for q in range(order + 1 - p) if p + q >= 1]
    design = np.column_stack([(U / s) ** p * (V / s) ** q for p, q in terms])
    cu, *_ = np.linalg.lstsq(design, u - U, rcond=None)
    cv, *_ = np.linalg.lstsq(design, v - V, rcond=None)
    ap = np.zeros((order + 1, order + 1))
    bp = np.zeros((order + 1, order + 1))
    for (p, q), ca, cb in zip(terms, cu, cv, strict=True):
        ap[p, q] = ca / s ** (p + q)
        bp[p, q] = cb / s ** (p + q)
    return ap, bp


def quadrant_wcs(
    ra0: float,
    dec0: float,
    ccdid: int,
    qid: int,
    rotation_deg: float = 0.0,
    nx: int = QUAD_NX,
    ny: int = QUAD_NY,
    distortion_k: float = DISTORTION_K,
) -> WCS:
    """TAN-SIP WCS of one quadrant for a pointing.

    Parameters
    ----------
    ra0, dec0 : float
        Sky position of the optical axis (deg).
    ccdid, qid : int
        Quadrant.
    rotation_deg : float
        Rotation of the focal plane on the sky (deg, North through East).
    nx, ny : int
        Quadrant size (small simulated quadrants sit at the centre of the full-size one).
    distortion_k : float
        Radial distortion coefficient (deg^-2); 0 gives the linear, distortion-free WCS that the
        camera writes into raw headers.

    Returns
    -------
    astropy.wcs.WCS
        With CTYPE ``RA---TAN-SIP``/``DEC--TAN-SIP`` (or plain TAN when ``distortion_k == 0``),
        forward (A, B) and fitted inverse (AP, BP) polynomials.
    """
    offset, m = quadrant_affine(ccdid, qid, nx, ny)
    # Pixel position of the optical axis: offset + M p_c = 0.
    p_c = -np.linalg.solve(m, offset)
    rot = np.deg2rad(rotation_deg)
    r = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])
    flip = np.diag([-1.0, 1.0])  # focal-plane ew points West; intermediate x points East
    cd = r @ flip @ m
    w = WCS(naxis=2)
    w.wcs.crpix = p_c + 1.0
    w.wcs.crval = [ra0 % 360.0, dec0]
    w.wcs.cd = cd
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    w.pixel_shape = (nx, ny)
    if distortion_k == 0.0:
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.set()
        return w
    from astropy.wcs import Sip

    qf = m.T @ m
    k = distortion_k
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    a[3, 0], a[2, 1], a[1, 2] = k * qf[0, 0], 2 * k * qf[0, 1], k * qf[1, 1]
    b[2, 1], b[1, 2], b[0, 3] = k * qf[0, 0], 2 * k * qf[0, 1], k * qf[1, 1]
    ap, bp = sip_inverse(a, b, w.wcs.crpix, nx, ny)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.sip = Sip(a, b, ap, bp, w.wcs.crpix)
    w.wcs.set()
    return w


def pixel_scale_arcsec(w: WCS) -> float:
    """Mean linear pixel scale of a WCS (arcsec / pixel)."""
    return float(np.sqrt(abs(np.linalg.det(w.pixel_scale_matrix))) * 3600.0)


def header_wcs(h: fits.Header) -> WCS:
    """The WCS of an image header (TAN-SIP or IPAC's TPV), without astropy's fix-up chatter."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(h)


def image_footprint(h: fits.Header, shape: tuple[int, int]) -> tuple[float, float, float]:
    """(ra, dec, radius) in degrees of a cone centred on an image that encloses it.

    The radius is the half-diagonal at the nominal pixel scale: generous for ZTF's optics
    (the scale varies by < 0.5% over a quadrant), and cheap enough for every image row.
    """
    ny, nx = shape
    ra0, dec0 = header_wcs(h).all_pix2world([nx / 2 - 0.5], [ny / 2 - 0.5], 0)
    return float(ra0[0]), float(dec0[0]), float(np.hypot(nx, ny) / 2 * PIXEL_SCALE / 3600.0)


__all__ = ["PIXEL_SCALE", "header_wcs", "image_footprint", "pixel_scale_arcsec", "quadrant_wcs",
           "sip_inverse"]
