"""Heliocentric Keplerian orbits: element sets, state vectors and two-body propagation.

Frames and units
----------------
* Orbital elements are referred to the **mean ecliptic and equinox of J2000** (the MPC convention):
  ``a`` in au, angles in degrees, ``epoch`` as MJD in TDB.
* State vectors (positions in au, velocities in au/day) are heliocentric and expressed in the
  **equatorial, ICRS-aligned** axes (ecliptic rotated by the J2000 obliquity), so they can be
  combined directly with astropy's ICRS/GCRS vectors.
* Hyperbolic orbits use ``a < 0`` and ``e > 1``; their ``mean_anomaly`` is the hyperbolic mean
  anomaly ``M = e sinh F - F`` (in degrees). Exactly parabolic orbits (``e == 1``) are not
  representable by ``(a, e)`` and are not supported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "AU_KM",
    "C_AU_PER_DAY",
    "GM_SUN",
    "OBLIQUITY_J2000_DEG",
    "Orbits",
    "ecliptic_to_equatorial",
    "elements_to_state",
    "equatorial_to_ecliptic",
    "propagate",
    "state_to_elements",
    "stumpff",
]

#: Gaussian gravitational constant k (au^1.5 / day / solar mass^0.5).
GAUSS_K = 0.01720209895
#: Heliocentric gravitational parameter, au^3 / day^2 (k^2).
GM_SUN = GAUSS_K**2
#: IAU 1976/2006 obliquity of the ecliptic at J2000 (84381.448 arcsec), in degrees.
OBLIQUITY_J2000_DEG = 84381.448 / 3600.0
#: Astronomical unit in km (IAU 2012).
AU_KM = 149_597_870.700
#: Speed of light in au/day.
C_AU_PER_DAY = 299_792.458 * 86_400.0 / AU_KM

_EPS = np.deg2rad(OBLIQUITY_J2000_DEG)
# Rotation matrix taking ecliptic-J2000 vectors to equatorial (ICRS-aligned) vectors.
_ECL_TO_EQ = np.array(
    [
        [1.0, 0.0, 0.0],
        [0.0, np.cos(_EPS), -np.sin(_EPS)],
        [0.0, np.sin(_EPS), np.cos(_EPS)],
    ]
)

_ELEMENT_FIELDS = ("a", "e", "inc", "node", "argperi", "mean_anomaly", "epoch", "H", "G")


def ecliptic_to_equatorial(x: ArrayLike) -> NDArray[np.float64]:
    """Rotate (N, 3) ecliptic-J2000 vectors into equatorial (ICRS-aligned) axes."""
    return np.asarray(x, dtype=float) @ _ECL_TO_EQ.T


def equatorial_to_ecliptic(x: ArrayLike) -> NDArray[np.float64]:
    """Rotate (N, 3) equatorial (ICRS-aligned) vectors into ecliptic-J2000 axes."""
    return np.asarray(x, dtype=float) @ _ECL_TO_EQ


@dataclass(frozen=True)
class Orbits:
    """A set of heliocentric osculating orbits (structure of arrays).

    Parameters
    ----------
    designation : array of str
        Object identifiers.
    a : array
        Semi-major axis, au (negative for hyperbolic orbits).
    e : array
        Eccentricity.
    inc, node, argperi, mean_anomaly : array
        Inclination, longitude of ascending node, argument of perihelion and mean anomaly in
        degrees, referred to the mean ecliptic and equinox of J2000.
    epoch : array
        Osculation epoch, MJD (TDB).
    H, G : array
        Absolute magnitude and slope parameter of the H-G phase law (``G`` defaults to 0.15).
    """

    designation: NDArray[np.str_]
    a: NDArray[np.float64]
    e: NDArray[np.float64]
    inc: NDArray[np.float64]
    node: NDArray[np.float64]
    argperi: NDArray[np.float64]
    mean_anomaly: NDArray[np.float64]
    epoch: NDArray[np.float64]
    H: NDArray[np.float64] = field(default_factory=lambda: np.array([]))
    G: NDArray[np.float64] = field(default_factory=lambda: np.array([]))

    def __post_init__(self) -> None:
        des = np.atleast_1d(np.asarray(self.designation)).astype(str)
        n = des.size
        object.__setattr__(self, "designation", des)
        defaults = {"H": np.nan, "G": 0.15}
        for name in _ELEMENT_FIELDS:
            val = np.asarray(getattr(self, name), dtype=float)
            if name in defaults and val.size == 0:
                val = np.full(n, defaults[name])
            # Scalars (e.g. a common epoch) broadcast to every object.
            val = np.array(np.broadcast_to(val, (n,)), dtype=float)
            object.__setattr__(self, name, val)

    def __len__(self) -> int:
        return int(self.designation.size)

    def __getitem__(self, index: Any) -> Orbits:
        """Select objects with an integer, slice, integer array or boolean mask."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        kw = {name: getattr(self, name)[index] for name in ("designation", *_ELEMENT_FIELDS)}
        return Orbits(**kw)

    def to_frame(self) -> pd.DataFrame:
        """Return the orbits as a DataFrame with one column per field."""
        return pd.DataFrame(
            {name: getattr(self, name) for name in ("designation", *_ELEMENT_FIELDS)}
        )

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> Orbits:
        """Build orbits from a DataFrame with the columns produced by :meth:`to_frame`."""
        kw = {name: df[name].to_numpy() for name in ("designation", *_ELEMENT_FIELDS[:7])}
        for name in ("H", "G"):
            if name in df:
                kw[name] = df[name].to_numpy()
        return cls(**kw)

    @classmethod
    def concatenate(cls, parts: list[Orbits]) -> Orbits:
        """Join several :class:`Orbits` into one."""
        kw = {
            name: np.concatenate([getattr(p, name) for p in parts])
            for name in ("designation", *_ELEMENT_FIELDS)
        }
        return cls(**kw)


# --------------------------------------------------------------------------------------------
# Kepler's equation
# --------------------------------------------------------------------------------------------


def _solve_kepler_elliptic(M: NDArray, e: NDArray, tol: float = 1e-14) -> NDArray:
    """Eccentric anomaly E (rad) from mean anomaly M (rad), vectorised Newton."""
    M = np.remainder(M + np.pi, 2 * np.pi) - np.pi
    # Starting at pi for high e avoids Newton's slow start near perihelion.
    E = np.where(e < 0.8, M + e * np.sin(M), np.pi * np.sign(M + (M == 0)))
    for _ in range(50):
        dE = (E - e * np.sin(E) - M) / (1.0 - e * np.cos(E))
        E = E - dE
        if np.all(np.abs(dE) < tol):
            break
    return E


def _solve_kepler_hyperbolic(M: NDArray, e: NDArray, tol: float = 1e-14) -> NDArray:
    """Hyperbolic anomaly F from hyperbolic mean anomaly M = e sinh F - F (vectorised Newton)."""
    F = np.sign(M) * np.log(2.0 * np.abs(M) / e + 1.8)
    for _ in range(100):
        dF = (e * np.sinh(F) - F - M) / (e * np.cosh(F) - 1.0)
        F = F - dF
        if np.all(np.abs(dF) < tol * np.maximum(1.0, np.abs(F))):
            break
    return F


# --------------------------------------------------------------------------------------------
# Elements <-> state
# --------------------------------------------------------------------------------------------


def elements_to_state(
    orbits: Orbits, mu: float = GM_SUN
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Heliocentric state vectors at each orbit's own epoch.

    Parameters
    ----------
    orbits : Orbits
        Elements referred to the J2000 ecliptic.
    mu : float, optional
        Gravitational parameter in au^3/day^2.

    Returns
    -------
    r, v : ndarray, shape (N, 3)
        Position (au) and velocity (au/day) in equatorial, ICRS-aligned axes.
    """
    a, e = orbits.a, orbits.e
    inc, node, argp = (np.deg2rad(x) for x in (orbits.inc, orbits.node, orbits.argperi))
    M = np.deg2rad(orbits.mean_anomaly)
    hyp = e > 1.0
    nu = np.empty_like(a)
    ell = ~hyp
    if np.any(ell):
        E = _solve_kepler_elliptic(M[ell], e[ell])
        ee = e[ell]
        nu[ell] = np.arctan2(np.sqrt(1.0 - ee * ee) * np.sin(E), np.cos(E) - ee)
    if np.any(hyp):
        F = _solve_kepler_hyperbolic(M[hyp], e[hyp])
        eh = e[hyp]
        nu[hyp] = 2.0 * np.arctan(np.sqrt((eh + 1.0) / (eh - 1.0)) * np.tanh(F / 2.0))
    p = a * (1.0 - e * e)  # semi-latus rectum, positive for both conic types
    rad = p / (1.0 + e * np.cos(nu))
    cn, sn = np.cos(nu), np.sin(nu)
    vf = np.sqrt(mu / p)
    # Perifocal basis vectors P (towards perihelion) and Q, in ecliptic axes.
    cO, sO = np.cos(node), np.sin(node)
    cw, sw = np.cos(argp), np.sin(argp)
    ci, si = np.cos(inc), np.sin(inc)
    P = np.stack([cO * cw - sO * sw * ci, sO * cw + cO * sw * ci, sw * si], axis=-1)
    Q = np.stack([-cO * sw - sO * cw * ci, -sO * sw + cO * cw * ci, cw * si], axis=-1)
    r = (rad * cn)[:, None] * P + (rad * sn)[:, None] * Q
    v = (-vf * sn)[:, None] * P + (vf * (e + cn))[:, None] * Q
    return ecliptic_to_equatorial(r), ecliptic_to_equatorial(v)


def state_to_elements(
    r: ArrayLike,
    v: ArrayLike,
    epoch: ArrayLike,
    designation: ArrayLike | None = None,
    H: ArrayLike | None = None,
    G: ArrayLike | None = None,
    mu: float = GM_SUN,
) -> Orbits:
    """Osculating elements from heliocentric equatorial state vectors.

    Parameters
    ----------
    r, v : array_like, shape (N, 3)
        Position (au) and velocity (au/day), equatorial ICRS-aligned axes.
    epoch : array_like
        Epoch of the state, MJD (TDB); scalar or (N,).
    designation, H, G : array_like, optional
        Passed through to :class:`Orbits` (designations default to ``"0", "1", ...``).
    mu : float, optional
        Gravitational parameter in au^3/day^2.

    Returns
    -------
    Orbits
        Elements on the J2000 ecliptic. For circular orbits ``argperi`` is 0 and for planar
        orbits ``node`` is 0 (the undefined angle is folded into the others).
    """
    r = equatorial_to_ecliptic(np.atleast_2d(r))
    v = equatorial_to_ecliptic(np.atleast_2d(v))
    n_obj = r.shape[0]
    rn = np.linalg.norm(r, axis=1)
    v2 = np.einsum("ij,ij->i", v, v)
    rv = np.einsum("ij,ij->i", r, v)
    h = np.cross(r, v)
    hn = np.linalg.norm(h, axis=1)
    hhat = h / hn[:, None]
    evec = ((v2 - mu / rn)[:, None] * r - rv[:, None] * v) / mu
    e = np.linalg.norm(evec, axis=1)
    a = 1.0 / (2.0 / rn - v2 / mu)
    inc = np.arccos(np.clip(hhat[:, 2], -1.0, 1.0))
    # Node vector z x h; fall back to the x axis for planar orbits.
    nvec = np.stack([-h[:, 1], h[:, 0], np.zeros(n_obj)], axis=-1)
    nn = np.linalg.norm(nvec, axis=1)
    planar = nn < 1e-12 * hn
    nhat = np.where(planar[:, None], [1.0, 0.0, 0.0], nvec / np.where(planar, 1.0, nn)[:, None])
    mhat = np.cross(hhat, nhat)  # in-plane, 90 deg ahead of the node
    node = np.where(planar, 0.0, np.arctan2(nhat[:, 1], nhat[:, 0]))
    u = np.arctan2(np.einsum("ij,ij->i", r, mhat), np.einsum("ij,ij->i", r, nhat))
    circular = e < 1e-12
    argp = np.where(
        circular,
        0.0,
        np.arctan2(np.einsum("ij,ij->i", evec, mhat), np.einsum("ij,ij->i", evec, nhat)),
    )
    nu = u - argp
    hyp = e > 1.0
    with np.errstate(invalid="ignore"):
        E = np.arctan2(np.sqrt(np.abs(1.0 - e * e)) * np.sin(nu), e + np.cos(nu))
        M_ell = E - e * np.sin(E)
        F = 2.0 * np.arctanh(np.sqrt(np.abs((e - 1.0) / (e + 1.0))) * np.tan(nu / 2.0))
        M_hyp = e * np.sinh(F) - F
    M = np.where(hyp, M_hyp, np.remainder(M_ell, 2 * np.pi))
    if designation is None:
        designation = np.arange(n_obj).astype(str)
    return Orbits(
        designation=np.asarray(designation),
        a=a,
        e=e,
        inc=np.rad2deg(inc),
        node=np.remainder(np.rad2deg(node), 360.0),
        argperi=np.remainder(np.rad2deg(argp), 360.0),
        mean_anomaly=np.rad2deg(M),
        epoch=np.broadcast_to(np.asarray(epoch, dtype=float), (n_obj,)),
        H=np.array([]) if H is None else H,
        G=np.array([]) if G is None else G,
    )


# --------------------------------------------------------------------------------------------
# Universal-variable propagation
# --------------------------------------------------------------------------------------------


def stumpff(z: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Stumpff functions C(z) and S(z), valid for z of either sign.

    Parameters
    ----------
    z : array_like
        Argument ``alpha * chi**2``.

    Returns
    -------
    C, S : ndarray
    """
    z = np.asarray(z, dtype=float)
    C = np.empty_like(z)
    S = np.empty_like(z)
    small = np.abs(z) < 1e-2
    pos = (z > 0) & ~small
    neg = (z < 0) & ~small
    zs = z[small]
    # Series to z^4: truncation error < 1e-18 for |z| < 1e-2.
    C[small] = 1 / 2 - zs / 24 + zs**2 / 720 - zs**3 / 40320 + zs**4 / 3628800
    S[small] = 1 / 6 - zs / 120 + zs**2 / 5040 - zs**3 / 362880 + zs**4 / 39916800
    sz = np.sqrt(z[pos])
    C[pos] = 2.0 * np.sin(sz / 2.0) ** 2 / z[pos]  # half-angle form avoids cancellation
    S[pos] = (sz - np.sin(sz)) / sz**3
    sz = np.sqrt(np.minimum(-z[neg], 700.0**2))  # clip: cosh overflows beyond ~710
    C[neg] = (np.cosh(sz) - 1.0) / sz**2
    S[neg] = (np.sinh(sz) - sz) / sz**3
    return C, S


def propagate(
    r: ArrayLike,
    v: ArrayLike,
    dt: ArrayLike,
    mu: float = GM_SUN,
    tol: float = 1e-14,
    max_iter: int = 60,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Two-body propagation with universal variables (elliptic, parabolic and hyperbolic).

    Solves the universal Kepler equation for the universal anomaly ``chi`` with Laguerre's
    method (robust for hyperbolic orbits and large steps) and applies the Lagrange f, g
    coefficients. Elliptic steps are first reduced modulo the orbital period.

    Parameters
    ----------
    r, v : array_like, shape (N, 3) or (3,)
        Initial position (au) and velocity (au/day); any inertial axes.
    dt : array_like
        Time step in days, scalar or shape (N,).
    mu : float, optional
        Gravitational parameter in au^3/day^2.
    tol : float, optional
        Relative convergence tolerance on ``chi``.
    max_iter : int, optional
        Maximum number of Laguerre iterations.

    Returns
    -------
    r, v : ndarray, shape (N, 3)
        State after ``dt``.
    """
    r0 = np.atleast_2d(np.asarray(r, dtype=float))
    v0 = np.atleast_2d(np.asarray(v, dtype=float))
    n_obj = r0.shape[0]
    dt = np.array(np.broadcast_to(np.asarray(dt, dtype=float), (n_obj,)))
    sqmu = np.sqrt(mu)
    r0n = np.linalg.norm(r0, axis=1)
    v0sq = np.einsum("ij,ij->i", v0, v0)
    sigma0 = np.einsum("ij,ij->i", r0, v0) / sqmu
    alpha = 2.0 / r0n - v0sq / mu  # 1/a
    one_m_ar = 1.0 - alpha * r0n

    ell = alpha > 1e-10
    with np.errstate(divide="ignore", invalid="ignore"):
        period = np.where(ell, 2.0 * np.pi / np.sqrt(mu * np.abs(alpha) ** 3), np.inf)
        dt_red = np.where(ell, dt - period * np.round(dt / period), dt)
        chi = np.where(ell, sqmu * dt_red * alpha, sqmu * dt_red / r0n)
        # Vallado's hyperbolic starting value, used where it is finite.
        a_h = 1.0 / alpha
        sdt = np.sign(dt_red)
        arg = (-2.0 * mu * alpha * dt_red) / (sigma0 * sqmu + sdt * np.sqrt(-mu * a_h) * one_m_ar)
        chi_h = sdt * np.sqrt(-a_h) * np.log(arg)
    use_h = (alpha < -1e-10) & np.isfinite(chi_h) & (arg > 0)
    chi = np.where(use_h, chi_h, chi)

    target = sqmu * dt_red
    n_lag = 5.0
    for _ in range(max_iter):
        chi2 = chi * chi
        z = alpha * chi2
        C, S = stumpff(z)
        F = sigma0 * chi2 * C + one_m_ar * chi * chi2 * S + r0n * chi - target
        dF = sigma0 * chi * (1.0 - z * S) + one_m_ar * chi2 * C + r0n
        ddF = sigma0 * (1.0 - z * C) + one_m_ar * chi * (1.0 - z * S)
        disc = np.sqrt(np.abs((n_lag - 1) ** 2 * dF * dF - n_lag * (n_lag - 1) * F * ddF))
        delta = n_lag * F / (dF + np.sign(dF) * disc)
        chi = chi - delta
        if np.all(np.abs(delta) <= tol * np.maximum(1.0, np.abs(chi))):
            break

    chi2 = chi * chi
    z = alpha * chi2
    C, S = stumpff(z)
    f = 1.0 - chi2 / r0n * C
    g = dt_red - chi * chi2 / sqmu * S
    r_new = f[:, None] * r0 + g[:, None] * v0
    rn = np.linalg.norm(r_new, axis=1)
    fdot = sqmu / (rn * r0n) * (z * S - 1.0) * chi
    gdot = 1.0 - chi2 / rn * C
    v_new = fdot[:, None] * r0 + gdot[:, None] * v0
    return r_new, v_new
