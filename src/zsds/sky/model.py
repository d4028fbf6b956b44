"""Deterministic simulated sky: stars and galaxies per HEALPix pixel.

The sky is partitioned into HEALPix order-6 (nside 64, NESTED, ICRS) pixels of
~0.839 deg². Every pixel's content is a pure function of ``(seed, pixel)``: all
random draws come from ``np.random.default_rng(SeedSequence([seed, tag, pix]))``
so a pixel never depends on which other pixels were generated or in what order.

Stellar model (three components, each with its own density law, luminosity
function, colours and kinematics):

* ``halo`` – thick disc + halo, nearly isotropic, blue turn-off dominated,
  velocity dispersion ~120 km/s.
* ``disc`` – thin disc, density ``∝ exp(-|b|/10.8°)`` with a mild ``1 + 0.15 cos l``
  longitude modulation; steeper counts and more M dwarfs; ~30 km/s.
* ``bulge`` – Gaussian enhancement around ``(l, b) = (0, 0)``; ~100 km/s.

Positions are uniform within the pixel (exact: a random order-18 sub-pixel,
then a uniform offset inside it). Apparent magnitudes are drawn from the
component luminosity function in *observed* (extincted) ``r``; intrinsic
colours follow the PS1 stellar locus, absolute magnitudes follow the Jurić et
al. (2008) photometric parallax relation, distances are solved including the
line-of-sight extinction, and proper motions/parallaxes follow from distance and
the component velocity dispersion.

Reference epoch of positions is J2016.0 (MJD 57388.5).
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
from astropy.coordinates import ICRS, Galactic, SkyCoord
from astropy_healpix import HEALPix

__all__ = [
    "BANDS",
    "EPOCH_MJD",
    "PIXEL_AREA_DEG2",
    "SKY_NSIDE",
    "SKY_ORDER",
    "SkyModel",
    "angular_separation",
    "galactic_lb",
    "galaxy_density",
    "hats_path",
    "healpix",
    "magnitudes_at",
    "pixel_of",
    "pixels_in_cone",
    "positions_at",
    "read_partition",
    "star_density",
    "true_galaxies",
    "true_stars",
    "write_parquet_atomic",
]

SKY_ORDER = 6
SKY_NSIDE = 2**SKY_ORDER
#: Reference epoch of the true positions (J2016.0) as MJD.
EPOCH_MJD = 57388.5
DAYS_PER_YEAR = 365.25
MAS_PER_RAD = 180.0 / np.pi * 3.6e6
BANDS = ("g", "r", "i", "z")

# Random-stream tags (second entry of the SeedSequence); never reuse one.
TAG_STARS = 1
TAG_GALAXIES = 2

# Sub-pixel order used for exact uniform sampling inside an order-6 pixel.
_SUB_ORDER = 18
_SUB_SHIFT = 4 ** (_SUB_ORDER - SKY_ORDER)

# Extinction coefficients A_band / E(B-V) for PS1 (Schlafly & Finkbeiner 2011).
EXT_COEFF = {"g": 3.172, "r": 2.271, "i": 1.682, "z": 1.322}

STAR_MAG_RANGE = (9.0, 24.0)
GAL_MAG_RANGE = (12.0, 21.5)

# Star id layout: pix * 2**24 + k (stars), pix * 2**24 + 2**23 + k (galaxies).
_ID_STRIDE = 2**24
_GAL_OFFSET = 2**23


@functools.cache
def healpix(order: int = SKY_ORDER) -> HEALPix:
    """Return the (cached) NESTED ICRS HEALPix grid of the given order."""
    return HEALPix(nside=2**order, order="nested", frame=ICRS())


PIXEL_AREA_DEG2 = float(healpix().pixel_area.to_value(u.deg**2))


def hats_path(root: Path, pix: int, order: int = SKY_ORDER) -> Path:
    """HATS-layout path ``root/Norder=o/Dir=d/Npix=p.parquet`` of one partition."""
    pix = int(pix)
    return Path(root) / f"Norder={order}" / f"Dir={10000 * (pix // 10000)}" / f"Npix={pix}.parquet"


# ----------------------------------------------------------------------------------------------
# Geometry helpers
# ----------------------------------------------------------------------------------------------


def _unit(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    cd = np.cos(dec)
    return np.stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)], axis=-1)


def _lonlat(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon = np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360.0
    lat = np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))
    return lon, lat


@functools.cache
def _icrs_to_gal_matrix() -> np.ndarray:
    # Derive the rotation once from astropy so it matches its Galactic frame exactly.
    basis = SkyCoord(
        x=[1.0, 0.0, 0.0],
        y=[0.0, 1.0, 0.0],
        z=[0.0, 0.0, 1.0],
        representation_type="cartesian",
        frame=ICRS(),
    ).transform_to(Galactic())
    cart = basis.cartesian.xyz.value  # columns are images of the ICRS basis vectors
    return np.asarray(cart)


def galactic_lb(ra_deg: np.ndarray, dec_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Galactic longitude and latitude (deg) of ICRS positions (deg), vectorised."""
    v = _unit(np.asarray(ra_deg, float), np.asarray(dec_deg, float))
    g = v @ _icrs_to_gal_matrix().T
    return _lonlat(g)


def angular_separation(
    ra1: np.ndarray | float,
    dec1: np.ndarray | float,
    ra2: np.ndarray | float,
    dec2: np.ndarray | float,
) -> np.ndarray:
    """Great-circle separation (deg) using the numerically stable haversine form."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(x, float)) for x in (ra1, dec1, ra2, dec2))
    s = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(s, 0.0, 1.0))))


def pixel_of(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Order-6 NESTED pixel index of ICRS positions (deg)."""
    return np.asarray(
        healpix().lonlat_to_healpix(np.asarray(ra_deg) * u.deg, np.asarray(dec_deg) * u.deg),
        dtype=np.int64,
    )


def _dist_to_arcs(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angular distance (rad) from unit vector ``p`` to great-circle arcs ``a``→``b``."""
    n = np.cross(a, b)
    nn = np.linalg.norm(n, axis=-1, keepdims=True)
    n = n / np.where(nn > 0, nn, 1.0)
    pn = np.einsum("...k,k->...", n, p)
    foot = p - pn[..., None] * n
    inside = (np.einsum("...k,...k->...", np.cross(a, foot), n) >= 0) & (
        np.einsum("...k,...k->...", np.cross(foot, b), n) >= 0
    )
    d_line = np.arcsin(np.clip(np.abs(pn), 0.0, 1.0))
    d_a = np.arccos(np.clip(np.einsum("...k,k->...", a, p), -1.0, 1.0))
    d_b = np.arccos(np.clip(np.einsum("...k,k->...", b, p), -1.0, 1.0))
    return np.where(inside, d_line, np.minimum(d_a, d_b))


def pixels_in_cone(ra: float, dec: float, radius_deg: float) -> np.ndarray:
    """All order-6 pixels that overlap a cone (sorted, int64).

    ``HEALPix.cone_search_lonlat`` is approximate (it occasionally misses a
    pixel grazed by the cone), so it is called with a padded radius and the
    candidates are then filtered exactly: a pixel is kept if it contains the
    cone centre or its boundary comes within ``radius_deg`` of it.
    """
    hp = healpix()
    cand = np.asarray(
        hp.cone_search_lonlat(ra * u.deg, dec * u.deg, (radius_deg + 0.25) * u.deg), np.int64
    )
    step = 16
    lon, lat = hp.boundaries_lonlat(cand, step=step)
    a = _unit(lon.to_value(u.deg), lat.to_value(u.deg))  # (npix, 4*step, 3)
    b = np.roll(a, -1, axis=1)
    p = _unit(np.float64(ra), np.float64(dec))
    dmin = np.degrees(_dist_to_arcs(p, a, b).min(axis=1))
    # Boundary arcs are chords of slightly curved edges: pad by a tiny tolerance.
    keep = dmin <= radius_deg + 1e-4
    keep |= cand == pixel_of(np.array([ra]), np.array([dec]))[0]
    return np.sort(cand[keep])


def _uniform_in_pixel(rng: np.random.Generator, pix: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exactly uniform positions inside an order-6 pixel.

    Equal-area order-18 sub-pixels (~0.8 arcsec) are drawn uniformly and a
    uniform (dx, dy) offset is applied inside each; the area distortion within
    one sub-pixel is negligible and membership of the parent pixel is exact.
    """
    sub = int(pix) * _SUB_SHIFT + rng.integers(0, _SUB_SHIFT, n, dtype=np.int64)
    dx = rng.uniform(1e-6, 1 - 1e-6, n)
    dy = rng.uniform(1e-6, 1 - 1e-6, n)
    lon, lat = healpix(_SUB_ORDER).healpix_to_lonlat(sub, dx=dx, dy=dy)
    return lon.to_value(u.deg).astype(np.float64), lat.to_value(u.deg).astype(np.float64)


def _pixel_sample_points(pix: int) -> tuple[np.ndarray, np.ndarray]:
    """Boundary points and order-9 sub-pixel centres, used to bound densities."""
    hp = healpix()
    blon, blat = hp.boundaries_lonlat(np.array([pix]), step=4)
    sub = int(pix) * 64 + np.arange(64)
    slon, slat = healpix(SKY_ORDER + 3).healpix_to_lonlat(sub)
    ra = np.concatenate([blon.to_value(u.deg).ravel(), slon.to_value(u.deg)])
    dec = np.concatenate([blat.to_value(u.deg).ravel(), slat.to_value(u.deg)])
    return ra, dec


# ----------------------------------------------------------------------------------------------
# Density and luminosity functions
# ----------------------------------------------------------------------------------------------

# Component luminosity functions: d log10(dN/dm) / dm goes from a_bright to a_faint around m_b.
_LF_PARAMS = {
    "halo": dict(a_bright=0.30, a_faint=0.15, m_break=17.0, width=1.0),
    "disc": dict(a_bright=0.32, a_faint=0.20, m_break=19.0, width=1.5),
    "bulge": dict(a_bright=0.35, a_faint=0.22, m_break=19.0, width=1.0),
}
_COMPONENTS = ("halo", "disc", "bulge")

# Cumulative densities (stars/deg², r < 24) of each component.
_HALO_N24 = 7900.0
_DISC_N24 = 305000.0
_DISC_BSCALE = 10.8  # deg
_BULGE_N24 = 150000.0
_BULGE_SIGMA_L = 10.0  # deg
_BULGE_SIGMA_B = 5.0  # deg


@functools.cache
def _lf_table(component: str) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude grid and normalised cumulative N(<m)/N(<24) for a component."""
    p = _LF_PARAMS[component]
    m = np.linspace(*STAR_MAG_RANGE, 3001)
    # Slope varies smoothly (logistic) from bright to faint; integrate it for log10 dN/dm.
    slope = p["a_faint"] + (p["a_bright"] - p["a_faint"]) / (
        1.0 + np.exp((m - p["m_break"]) / p["width"])
    )
    logdn = np.concatenate([[0.0], np.cumsum(0.5 * (slope[1:] + slope[:-1]) * np.diff(m))])
    dn = 10.0 ** (logdn - logdn.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dn[1:] + dn[:-1]) * np.diff(m))])
    return m, cdf / cdf[-1]


def _component_densities(l_deg: np.ndarray, b_deg: np.ndarray) -> dict[str, np.ndarray]:
    """Stars/deg² brighter than r=24 for each component at (l, b) in degrees."""
    l_deg = np.asarray(l_deg, float)
    b_deg = np.asarray(b_deg, float)
    lw = (l_deg + 180.0) % 360.0 - 180.0
    # sqrt(b² + 0.5²) softens the cusp of exp(-|b|) at the mid-plane.
    babs = np.sqrt(b_deg**2 + 0.25)
    halo = np.full(np.broadcast(l_deg, b_deg).shape, _HALO_N24)
    disc = _DISC_N24 * np.exp(-babs / _DISC_BSCALE) * (1.0 + 0.15 * np.cos(np.radians(lw)))
    bulge = _BULGE_N24 * np.exp(-0.5 * ((lw / _BULGE_SIGMA_L) ** 2 + (b_deg / _BULGE_SIGMA_B) ** 2))
    return {"halo": halo, "disc": disc, "bulge": bulge}


def star_density(
    b_deg: np.ndarray | float, l_deg: np.ndarray | float = 90.0, r_lim: float = 24.0
) -> np.ndarray:
    """Surface density of stars brighter than ``r_lim`` (observed r, AB).

    Parameters
    ----------
    b_deg, l_deg : array_like
        Galactic latitude and longitude in degrees. The default ``l=90`` sits
        away from the bulge and at the mean of the disc longitude modulation.
    r_lim : float
        Limiting magnitude, clipped to the modelled range 9-24.

    Returns
    -------
    numpy.ndarray
        Stars per deg² (~8,000 at |b|=90, ~27,000 at |b|=30, ~200,000 at |b|=5
        for ``r_lim=24``).
    """
    dens = _component_densities(np.asarray(l_deg, float), np.asarray(b_deg, float))
    r_lim = float(np.clip(r_lim, *STAR_MAG_RANGE))
    total = 0.0
    for comp in _COMPONENTS:
        m, cdf = _lf_table(comp)
        total = total + dens[comp] * np.interp(r_lim, m, cdf)
    return np.asarray(total)


def ebv_total(b_deg: np.ndarray) -> np.ndarray:
    """Total line-of-sight E(B-V) (a csc|b| dust slab, capped at 1.5)."""
    s = np.abs(np.sin(np.radians(np.asarray(b_deg, float))))
    return np.minimum(0.025 / (s + 0.01), 1.5)


def _ext_fraction(dist_pc: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    # Fraction of the total column in front of a star: exponential dust layer, h=125 pc.
    s = np.maximum(np.abs(np.sin(np.radians(b_deg))), 0.04)
    return 1.0 - np.exp(-dist_pc * s / 125.0)


def galaxy_density(b_deg: np.ndarray | float, r_lim: float = 21.5) -> np.ndarray:
    """Galaxies per deg² brighter than ``r_lim`` including Galactic extinction."""
    a_r = EXT_COEFF["r"] * ebv_total(np.asarray(b_deg, float))
    m, cdf = _gal_lf_table()
    return np.asarray(_GAL_N215 * np.interp(np.minimum(r_lim, 21.5) - a_r, m, cdf, left=0.0))


_GAL_N215 = 1500.0  # unextincted galaxies/deg² with r < 21.5


@functools.cache
def _gal_lf_table() -> tuple[np.ndarray, np.ndarray]:
    m = np.linspace(*GAL_MAG_RANGE, 2001)
    slope = 0.35 + 0.15 / (1.0 + np.exp((m - 18.0) / 1.0))
    logdn = np.concatenate([[0.0], np.cumsum(0.5 * (slope[1:] + slope[:-1]) * np.diff(m))])
    dn = 10.0 ** (logdn - logdn.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dn[1:] + dn[:-1]) * np.diff(m))])
    return m, cdf / cdf[-1]


# ----------------------------------------------------------------------------------------------
# Stars
# ----------------------------------------------------------------------------------------------


def _locus_ri(gr: np.ndarray) -> np.ndarray:
    """PS1 stellar locus r-i as a smooth function of g-r (steep for M dwarfs)."""
    return 0.37 * gr - 0.03 + 0.6 * np.exp((gr - 1.4) / 0.12)


def _abs_mag_r(ri: np.ndarray) -> np.ndarray:
    """Jurić et al. (2008) main-sequence photometric parallax relation M_r(r-i)."""
    x = np.clip(ri, -0.1, 1.8)
    return 3.2 + 13.30 * x - 11.50 * x**2 + 5.40 * x**3 - 0.70 * x**4


def gaia_g_from_ps1(g: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Approximate Gaia G from PS1 g, r: ``G = r - 0.10 - 0.30 x - 0.04 x²``, x = g-r."""
    x = np.asarray(g) - np.asarray(r)
    return np.asarray(r) - 0.10 - 0.30 * x - 0.04 * x**2


# (blue mean, blue sigma, red mean, red sigma, red fraction at bright end, at faint end)
_COLOUR_PARAMS = {
    "halo": (0.32, 0.08, 1.25, 0.15, 0.10, 0.20),
    "disc": (0.55, 0.15, 1.30, 0.15, 0.25, 0.65),
    "bulge": (0.75, 0.20, 1.30, 0.15, 0.10, 0.30),
}
_SIGMA_V = {"halo": 120.0, "disc": 30.0, "bulge": 100.0}  # km/s per tangential axis

VAR_NONE, VAR_SINE, VAR_RRLYR, VAR_ECLIPSE, VAR_CONTACT = 0, 1, 2, 3, 4
_VAR_FRACTION = 0.01
# Shares of the periodic variable types.  Eclipsing binaries are 35% of all, 4 in 5 of them
# contact (W UMa) systems: in the ZTF DR2 periodic-variable catalogue (Chen et al. 2020,
# ApJS 249, 18) contact binaries outnumber detached (Algol-type) ones by about 7 to 1; the
# 4:1 used here allows for detached binaries being harder to find.
VAR_MIX = {VAR_SINE: 0.50, VAR_RRLYR: 0.15, VAR_CONTACT: 0.28, VAR_ECLIPSE: 0.07}
# W UMa periods cluster at 0.25-0.45 d with a sharp cut-off near 0.22 d.
_CONTACT_PERIOD = (0.22, 0.6)
_CONTACT_MAX_AMP = 0.8
_VAR_T0_MJD = 58000.0


def variability_params(rng: np.random.Generator, vtype: np.ndarray, min_amp: float = 0.05
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Periods (d) and peak-to-peak r amplitudes (mag) of variables of the given types.

    Sinusoids and detached eclipsing binaries: periods 0.2-20 d and amplitudes ``min_amp``-1
    mag, both log-uniform; RR Lyrae-like: 0.4-0.8 d and ``max(0.3, min_amp)``-1 mag, uniform;
    contact binaries: 0.22-0.6 d and ``min_amp``-0.8 mag, log-uniform.  Non-variables get
    values too (the caller masks them), so every row consumes the same draws.

    Parameters
    ----------
    rng : numpy.random.Generator
        Consumed by exactly four draws of ``len(vtype)`` numbers.
    vtype : numpy.ndarray
        ``VAR_*`` codes.
    min_amp : float
        Smallest amplitude drawn (the sky has 0.05; evaluations choose their own).
    """
    n = len(vtype)
    u_period = rng.uniform(0.0, 1.0, n)
    period = 10.0 ** (np.log10(0.2) + 2.0 * u_period)
    period = np.where(vtype == VAR_RRLYR, rng.uniform(0.4, 0.8, n), period)
    u_amp = rng.uniform(0.0, 1.0, n)
    amp = min_amp * (1.0 / min_amp) ** u_amp
    amp = np.where(vtype == VAR_RRLYR, rng.uniform(max(0.3, min_amp), 1.0, n), amp)
    # Contact binaries map the same uniform draws onto their own ranges.
    pc = np.log10(_CONTACT_PERIOD)
    period = np.where(vtype == VAR_CONTACT, 10.0 ** (pc[0] + (pc[1] - pc[0]) * u_period), period)
    amp = np.where(vtype == VAR_CONTACT,
                   min_amp * (_CONTACT_MAX_AMP / min_amp) ** u_amp, amp)
    return period, amp


def _draw_component(
    rng: np.random.Generator, pix: int, comp: str, dens_max: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Thinned Poisson draw of one component: (ra, dec, l, b) of accepted stars."""
    n_prop = rng.poisson(dens_max * PIXEL_AREA_DEG2)
    ra, dec = _uniform_in_pixel(rng, pix, n_prop)
    l_deg, b_deg = galactic_lb(ra, dec)
    dens = _component_densities(l_deg, b_deg)[comp]
    keep = rng.uniform(0.0, dens_max, n_prop) < dens
    return ra[keep], dec[keep], l_deg[keep], b_deg[keep]


def true_stars(pix: int, seed: int) -> pd.DataFrame:
    """Generate the true stars of one order-6 pixel.

    Parameters
    ----------
    pix : int
        NESTED order-6 HEALPix index.
    seed : int
        Global sky seed.

    Returns
    -------
    pandas.DataFrame
        Columns: ``star_id`` (int64, ``pix*2**24 + k``), ``ra``, ``dec`` (deg,
        ICRS, epoch J2016.0), ``pmra`` (mas/yr, includes cos dec), ``pmdec``
        (mas/yr), ``parallax`` (mas), ``g``, ``r``, ``i``, ``z`` (true mean PS1
        AB mags, extincted), ``G`` (Gaia G), ``var_type`` (int8: 0 none,
        1 sinusoid, 2 RR Lyrae-like, 3 detached eclipsing, 4 contact binary, in the
        shares of :data:`VAR_MIX`), ``var_period`` (days),
        ``var_amp`` (mag, peak-to-peak in r), ``var_t0`` (MJD of phase 0);
        variability columns are NaN for non-variables.
    """
    pix = int(pix)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), TAG_STARS, pix]))
    sra, sdec = _pixel_sample_points(pix)
    sl, sb = galactic_lb(sra, sdec)
    sdens = _component_densities(sl, sb)

    parts = []
    for comp in _COMPONENTS:
        dmax = float(sdens[comp].max()) * 1.1
        ra, dec, _, b_deg = _draw_component(rng, pix, comp, dmax)
        n = ra.size
        m, cdf = _lf_table(comp)
        r_obs = np.interp(rng.uniform(0.0, 1.0, n), cdf, m)

        mb, sb_, mr, sr, f0, f1 = _COLOUR_PARAMS[comp]
        # M dwarfs are intrinsically faint, so they only become common at faint r.
        f_red = f0 + (f1 - f0) / (1.0 + np.exp(-(r_obs - 19.0) / 1.5))
        f_red = f_red / (1.0 + np.exp(-(r_obs - 16.0) / 1.0))
        red = rng.uniform(size=n) < f_red
        gr0 = np.where(red, rng.normal(mr, sr, n), rng.normal(mb, sb_, n))
        gr0 = np.clip(gr0, 0.0, 1.55)
        ri0 = _locus_ri(gr0) + rng.normal(0.0, 0.02, n)
        iz0 = 0.5 * ri0 - 0.02 + rng.normal(0.0, 0.02, n)

        abs_r = _abs_mag_r(ri0) + rng.normal(0.0, 0.3, n)
        # Giants are a large fraction of bright stars and rare at faint ones.
        f_giant = 0.03 + 0.35 / (1.0 + np.exp((r_obs - 13.0) / 1.0))
        giant = (rng.uniform(size=n) < f_giant) & (gr0 > 0.5)
        abs_r = np.where(giant, rng.normal(0.5, 0.7, n), abs_r)

        # Solve distance with extinction (one fixed-point iteration suffices).
        ebv_inf = ebv_total(b_deg)
        dist = 10.0 ** ((r_obs - abs_r + 5.0) / 5.0)
        ebv = ebv_inf * _ext_fraction(dist, b_deg)
        dist = 10.0 ** ((r_obs - EXT_COEFF["r"] * ebv - abs_r + 5.0) / 5.0)
        ebv = ebv_inf * _ext_fraction(dist, b_deg)

        r = r_obs
        g = r + gr0 + (EXT_COEFF["g"] - EXT_COEFF["r"]) * ebv
        i = r - ri0 - (EXT_COEFF["r"] - EXT_COEFF["i"]) * ebv
        z = i - iz0 - (EXT_COEFF["i"] - EXT_COEFF["z"]) * ebv

        # Tangential velocity -> proper motion: mu [mas/yr] = v [km/s] / (4.74 d [kpc]).
        dkpc = dist / 1000.0
        sig_v = _SIGMA_V[comp]
        if comp == "halo":
            # Nearby members of this component are thick-disc-like (~45 km/s).
            sig_v = 45.0 + (sig_v - 45.0) * (1.0 - np.exp(-dkpc / 2.0))
        vra, vdec = rng.normal(0.0, 1.0, (2, n)) * sig_v
        pmra = vra / (4.74 * dkpc)
        pmdec = vdec / (4.74 * dkpc)
        plx = 1.0 / dkpc
        parts.append(dict(ra=ra, dec=dec, pmra=pmra, pmdec=pmdec, parallax=plx, g=g, r=r, i=i, z=z))

    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    n = cols["ra"].size

    vtype = np.zeros(n, np.int8)
    u_var = rng.uniform(size=n)
    is_var = u_var < _VAR_FRACTION
    # Within variables, the types in the shares of VAR_MIX.
    sub = u_var / _VAR_FRACTION
    lo = 0.0
    for code, share in VAR_MIX.items():
        vtype[is_var & (sub >= lo) & (sub < lo + share)] = code
        lo += share
    vtype[is_var & (sub >= lo)] = VAR_ECLIPSE  # rounding of the shares
    period, amp = variability_params(rng, vtype)
    t0 = _VAR_T0_MJD + rng.uniform(size=n) * period
    nan = np.full(n, np.nan)

    df = pd.DataFrame(
        {
            "star_id": pix * _ID_STRIDE + np.arange(n, dtype=np.int64),
            "ra": cols["ra"],
            "dec": cols["dec"],
            "pmra": cols["pmra"].astype(np.float32),
            "pmdec": cols["pmdec"].astype(np.float32),
            "parallax": cols["parallax"].astype(np.float32),
            "g": cols["g"].astype(np.float32),
            "r": cols["r"].astype(np.float32),
            "i": cols["i"].astype(np.float32),
            "z": cols["z"].astype(np.float32),
            "G": gaia_g_from_ps1(cols["g"], cols["r"]).astype(np.float32),
            "var_type": vtype,
            "var_period": np.where(is_var, period, nan),
            "var_amp": np.where(is_var, amp, nan).astype(np.float32),
            "var_t0": np.where(is_var, t0, nan),
        }
    )
    return df


# ----------------------------------------------------------------------------------------------
# Galaxies
# ----------------------------------------------------------------------------------------------


def true_galaxies(pix: int, seed: int) -> pd.DataFrame:
    """Generate the true galaxies (r < 21.5) of one order-6 pixel.

    Returns
    -------
    pandas.DataFrame
        Columns: ``gal_id`` (int64, ``pix*2**24 + 2**23 + k``), ``ra``, ``dec``
        (deg), ``g``, ``r``, ``i``, ``z`` (total AB mags incl. Galactic
        extinction), ``sersic_n``, ``r_eff`` (arcsec), ``axis_ratio`` (b/a),
        ``pa`` (deg E of N, 0-180), ``redshift``.
    """
    pix = int(pix)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), TAG_GALAXIES, pix]))
    n = rng.poisson(_GAL_N215 * PIXEL_AREA_DEG2)
    ra, dec = _uniform_in_pixel(rng, pix, n)
    _, b_deg = galactic_lb(ra, dec)
    m, cdf = _gal_lf_table()
    r0 = np.interp(rng.uniform(size=n), cdf, m)
    ebv = ebv_total(b_deg)

    z_med = 0.35 * 10.0 ** (0.2 * (r0 - 21.5))
    redshift = np.clip(z_med * np.exp(rng.normal(0.0, 0.35, n)), 0.003, 1.5)
    # Red-sequence fraction higher for bright galaxies.
    red = rng.uniform(size=n) < 0.25 + 0.25 / (1.0 + np.exp((r0 - 18.0) / 1.0))
    gr = np.where(red, 0.75 + 1.0 * redshift, 0.40 + 0.5 * redshift) + rng.normal(0, 0.06, n)
    ri = np.where(red, 0.38 + 0.5 * redshift, 0.20 + 0.4 * redshift) + rng.normal(0, 0.05, n)
    iz = np.where(red, 0.22 + 0.3 * redshift, 0.12 + 0.2 * redshift) + rng.normal(0, 0.05, n)
    gr, ri = np.clip(gr, 0.1, 2.0), np.clip(ri, -0.1, 1.2)

    r = r0 + EXT_COEFF["r"] * ebv
    g = r + gr + (EXT_COEFF["g"] - EXT_COEFF["r"]) * ebv
    i = r - ri - (EXT_COEFF["r"] - EXT_COEFF["i"]) * ebv
    z = i - iz - (EXT_COEFF["i"] - EXT_COEFF["z"]) * ebv

    sersic = np.where(
        red, np.clip(rng.normal(4.0, 0.4, n), 2.5, 4.0), np.clip(rng.normal(1.0, 0.2, n), 0.5, 1.5)
    )
    r_eff = np.clip(10.0 ** (0.35 - 0.15 * (r0 - 18.0) + rng.normal(0, 0.15, n)), 0.5, 8.0)
    q = np.where(red, rng.uniform(0.5, 1.0, n), rng.uniform(0.2, 1.0, n))
    pa = rng.uniform(0.0, 180.0, n)

    keep = r < GAL_MAG_RANGE[1]
    k = np.flatnonzero(keep)
    return pd.DataFrame(
        {
            "gal_id": pix * _ID_STRIDE + _GAL_OFFSET + np.arange(k.size, dtype=np.int64),
            "ra": ra[k],
            "dec": dec[k],
            "g": g[k].astype(np.float32),
            "r": r[k].astype(np.float32),
            "i": i[k].astype(np.float32),
            "z": z[k].astype(np.float32),
            "sersic_n": sersic[k].astype(np.float32),
            "r_eff": r_eff[k].astype(np.float32),
            "axis_ratio": q[k].astype(np.float32),
            "pa": pa[k].astype(np.float32),
            "redshift": redshift[k].astype(np.float32),
        }
    )


# ----------------------------------------------------------------------------------------------
# Time-dependent quantities
# ----------------------------------------------------------------------------------------------


def positions_at(df: pd.DataFrame, mjd: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (deg) at ``mjd`` from J2016.0 positions and proper motions.

    The motion is applied as a straight line in 3-D (``v = v0 + dt * mu``,
    renormalised), which is exact to first order and well behaved at the poles.
    Parallax is ignored (positions are barycentric). Rows without ``pmra`` /
    ``pmdec`` columns (galaxies) are returned unchanged.

    Parameters
    ----------
    df : pandas.DataFrame
        Must have ``ra``, ``dec`` and optionally ``pmra`` (incl. cos dec), ``pmdec``.
    mjd : float or array_like
        Epoch(s); an array must broadcast against the rows.
    """
    ra = df["ra"].to_numpy(np.float64)
    dec = df["dec"].to_numpy(np.float64)
    if "pmra" not in df or "pmdec" not in df:
        return ra.copy(), dec.copy()
    dt_yr = (np.asarray(mjd, np.float64) - EPOCH_MJD) / DAYS_PER_YEAR
    pmra = df["pmra"].to_numpy(np.float64) / MAS_PER_RAD
    pmdec = df["pmdec"].to_numpy(np.float64) / MAS_PER_RAD
    a, d = np.radians(ra), np.radians(dec)
    v0 = _unit(ra, dec)
    e_ra = np.stack([-np.sin(a), np.cos(a), np.zeros_like(a)], axis=-1)
    e_dec = np.stack([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)], axis=-1)
    v = v0 + (dt_yr * pmra)[..., None] * e_ra + (dt_yr * pmdec)[..., None] * e_dec
    return _lonlat(v)


def _sawtooth(phase: np.ndarray) -> np.ndarray:
    # RR Lyrae-like: slow linear decline over 85% of the cycle, fast rise; zero mean, p2p = 1.
    rise = 0.15
    return np.where(phase < 1 - rise, -0.5 + phase / (1 - rise), 0.5 - (phase - (1 - rise)) / rise)


def _eclipse(phase: np.ndarray) -> np.ndarray:
    # Narrow Gaussian dips: primary (depth 1) at phase 0, secondary (0.4) at 0.5; 0 out of eclipse.
    w = 0.02
    d0 = np.minimum(phase, 1.0 - phase)
    d1 = np.abs(phase - 0.5)
    return np.exp(-0.5 * (d0 / w) ** 2) + 0.4 * np.exp(-0.5 * (d1 / w) ** 2)


def _contact(phase: np.ndarray) -> np.ndarray:
    # W UMa-like: continuous variation with two minima per orbit (primary depth 1 at phase 0,
    # secondary 0.9 at 0.5), narrower than the maxima as in real contact binaries.
    d = (0.5 * (1.0 + np.cos(4 * np.pi * phase))) ** 1.5
    return d * (1.0 - 0.05 * (1.0 - np.cos(2 * np.pi * phase)))


# Pulsation amplitude relative to r (eclipses are achromatic).
_PULS_BAND_SCALE = {"g": 1.25, "r": 1.0, "i": 0.85, "z": 0.75, "G": 0.95}


def magnitudes_at(df: pd.DataFrame, band: str, mjd: float | np.ndarray) -> np.ndarray:
    """Apparent magnitude in ``band`` at ``mjd`` including variability.

    ``var_amp`` is the peak-to-peak amplitude in r; pulsators are scaled per
    band (g 1.25, i 0.85, z 0.75, G 0.95). Sinusoidal and RR Lyrae-like
    curves have zero mean about the catalogue magnitude; eclipsing binaries
    (detached and contact) sit at the catalogue magnitude at maximum light and dim by up to
    ``var_amp``.
    Galaxies and non-variables return the catalogue magnitude.

    Parameters
    ----------
    df : pandas.DataFrame
        Rows from :func:`true_stars` or :func:`true_galaxies`.
    band : {"g", "r", "i", "z", "G"}
    mjd : float or array_like
        Epoch(s), broadcast against the rows.
    """
    if band not in _PULS_BAND_SCALE:
        raise ValueError(f"unknown band {band!r}; expected one of {sorted(_PULS_BAND_SCALE)}")
    mag = df[band].to_numpy(np.float64)
    if "var_type" not in df:
        return np.broadcast_to(mag, np.broadcast(mag, np.asarray(mjd)).shape).copy()
    vt = df["var_type"].to_numpy()
    period = np.nan_to_num(df["var_period"].to_numpy(np.float64), nan=1.0)
    t0 = np.nan_to_num(df["var_t0"].to_numpy(np.float64), nan=0.0)
    amp = np.nan_to_num(df["var_amp"].to_numpy(np.float64), nan=0.0)
    phase = np.mod((np.asarray(mjd, np.float64) - t0) / period, 1.0)
    scale = _PULS_BAND_SCALE[band]
    delta = np.where(
        vt == VAR_SINE,
        0.5 * scale * amp * np.sin(2 * np.pi * phase),
        np.where(
            vt == VAR_RRLYR,
            scale * amp * _sawtooth(phase),
            np.where(vt == VAR_ECLIPSE, amp * _eclipse(phase),
                     np.where(vt == VAR_CONTACT, amp * _contact(phase), 0.0)),
        ),
    )
    return mag + delta


# ----------------------------------------------------------------------------------------------
# Parquet I/O (edges)
# ----------------------------------------------------------------------------------------------


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` via a unique temp file and ``os.replace``.

    Concurrent writers of the same partition produce identical content, so the
    last rename winning is harmless and readers never see a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        df.to_parquet(tmp, index=False, engine="pyarrow")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_partition(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read one partition with pyarrow (no pandas index, optional column subset)."""
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns).to_pandas()


# ----------------------------------------------------------------------------------------------
# Cached access
# ----------------------------------------------------------------------------------------------


class SkyModel:
    """Cached, deterministic access to the true sky.

    Parameters
    ----------
    cache_dir : pathlib.Path or None
        Generated pixels are cached as HATS-layout Parquet under
        ``cache_dir/stars`` and ``cache_dir/galaxies``; ``None`` disables caching.
    seed : int
        Global sky seed.
    """

    def __init__(self, cache_dir: Path | None, seed: int) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"SkyModel(cache_dir={self.cache_dir!r}, seed={self.seed})"

    def _get(self, kind: str, pixels: Iterable[int] | int) -> pd.DataFrame:
        gen = true_stars if kind == "stars" else true_galaxies
        pix_list = np.atleast_1d(np.asarray(pixels, dtype=np.int64))
        frames = []
        for pix in pix_list.tolist():
            if self.cache_dir is None:
                frames.append(gen(pix, self.seed))
                continue
            path = hats_path(self.cache_dir / kind, pix)
            if path.exists():
                frames.append(read_partition(path))
            else:
                df = gen(pix, self.seed)
                write_parquet_atomic(df, path)
                frames.append(df)
        if not frames:
            return gen(0, self.seed).iloc[:0]
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def stars(self, pixels: Iterable[int] | int) -> pd.DataFrame:
        """True stars of the given order-6 pixels (see :func:`true_stars`)."""
        return self._get("stars", pixels)

    def galaxies(self, pixels: Iterable[int] | int) -> pd.DataFrame:
        """True galaxies of the given order-6 pixels (see :func:`true_galaxies`)."""
        return self._get("galaxies", pixels)

    @staticmethod
    def pixels_in_cone(ra: float, dec: float, radius_deg: float) -> np.ndarray:
        """Order-6 pixels overlapping a cone (see :func:`pixels_in_cone`)."""
        return pixels_in_cone(ra, dec, radius_deg)

    def _cone(self, kind: str, ra: float, dec: float, radius_deg: float) -> pd.DataFrame:
        df = self._get(kind, pixels_in_cone(ra, dec, radius_deg))
        sep = angular_separation(ra, dec, df["ra"].to_numpy(), df["dec"].to_numpy())
        return df.loc[sep <= radius_deg].reset_index(drop=True)

    def stars_in_cone(self, ra: float, dec: float, radius_deg: float) -> pd.DataFrame:
        """True stars within ``radius_deg`` of (ra, dec) at J2016.0 positions."""
        return self._cone("stars", ra, dec, radius_deg)

    def galaxies_in_cone(self, ra: float, dec: float, radius_deg: float) -> pd.DataFrame:
        """True galaxies within ``radius_deg`` of (ra, dec)."""
        return self._cone("galaxies", ra, dec, radius_deg)
