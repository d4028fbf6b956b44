"""Catalogue-level simulation of a multi-night ZTF window for testing the moving-object linker.

:func:`simulate_window` produces the shared detection table (see
:mod:`zsds.moving.tracklets`) directly, without images: asteroids from
:func:`zsds.solar.population.simulate_population`, their light-time-corrected topocentric
positions at every exposure from :func:`zsds.solar.ephemeris.ephemerides_grid`, a detection
model and false detections.

Recipe
------
* **Nights and fields.** ``n_nights`` consecutive nights from ``start_night`` (the local date
  of the evening at Palomar). The ``n_fields`` ZTF primary-grid fields nearest to the anti-solar
  point at local midnight of the middle night are observed (so the field transits near local
  midnight). Each field's footprint is a 6.9 deg x 6.9 deg square (47.6 deg^2, the ZTF
  active area without chip gaps) in its gnomonic plane, aligned with RA/Dec.
* **Schedule.** Each night every field gets ``visits_per_night`` visits. The first block
  starts ``U(-1.4, -0.6)`` h from local midnight; consecutive blocks are ``U(30, 60)`` min
  apart; inside a block the fields follow one another every 45 s (30 s exposure + overhead).
  Filters cycle r, g, r, g, ... per visit (``fid`` 2, 1, ...). Times are mid-exposure MJD(UTC).
* **Asteroids.** One :func:`simulate_population` snapshot per field at the middle of the
  window, in a cone of radius 5.4 deg (the square's half-diagonal plus 0.5 deg of motion);
  an object is kept only by the field whose centre is nearest to it at that epoch, so
  overlapping cones do not double the density, and only if ``V < limiting_mag + 1.5``.
* **Photometry.** Band magnitudes are ``V - 0.2`` (r), ``V + 0.35`` (g) and ``V - 0.35`` (i)
  plus a trailing loss ``1.25 log10(1 + (L / 2")^2)`` for a trail of ``L`` arcsec in 30 s.
  Each exposure's 5-sigma depth is ``limiting_mag`` (r; +0.2 in g, -0.4 in i) plus
  ``N(0, 0.15)``. A source in the footprint is detected with probability
  ``fill / (1 + exp((m - m_lim) / 0.12))`` (``fill`` 0.93 for chip gaps and masks).
* **Astrometry.** Per-axis Gaussian noise with ``sigma = sqrt(0.1^2 + (1.4 / snr)^2)`` arcsec,
  ``snr = 5 * 10**(-0.4 (m - m_lim))`` (0.1 arcsec bright, 0.3 arcsec at the limit); the
  detection's ``sigma`` column holds that value. Magnitude noise is ``1.0857 / snr``.
* **False detections.** ``false_per_exposure`` per exposure, uniform in the footprint, with
  magnitudes uniform in ``[m_lim - 1, m_lim + 0.2]``; none repeats.
* **Stationary sources.** ``stationary_per_field`` fixed positions per field (variable stars,
  artefacts) detected in each exposure of their field with probability 0.6; their ``truth``
  is ``""`` too. :func:`zsds.moving.tracklets.remove_stationary` should remove them.

The whole simulation is a pure function of its arguments.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from astropy.time import Time
from numpy.typing import NDArray

from zsds.moving.tracklets import (
    PALOMAR_LON_DEG,
    _gnomonic_inverse,
    gnomonic,
    radec_to_unit,
    unit_to_radec,
)
from zsds.solar.ephemeris import ephemerides, ephemerides_grid
from zsds.solar.observer import observer_heliocentric
from zsds.solar.orbits import Orbits
from zsds.solar.population import simulate_population

__all__ = [
    "BAND_COLOR",
    "DETECTION_COLUMNS",
    "EXPOSURE_COLUMNS",
    "FOOTPRINT_HALF_DEG",
    "choose_fields",
    "simulate_window",
]

#: Columns of the detection table (the shared schema plus ``truth``).
DETECTION_COLUMNS = (
    "det_id", "mjd", "ra", "dec", "sigma", "mag", "fid", "expid", "field", "truth",
)  # fmt: skip
#: Columns of the exposure table.
EXPOSURE_COLUMNS = ("expid", "mjd", "ra", "dec", "field", "fid", "night", "limmag")
#: Half-width of the square footprint in the gnomonic plane, deg (6.9 x 6.9 deg = 47.6 deg^2).
FOOTPRINT_HALF_DEG = 3.45
#: Band magnitude minus V, per ``fid``.
BAND_COLOR = {1: 0.35, 2: -0.2, 3: -0.35}
#: 5-sigma depth minus the r-band depth, per ``fid``.
BAND_DEPTH = {1: 0.2, 2: 0.0, 3: -0.4}
_FILL = 0.93
_ROLLOFF = 0.12
_EXPTIME_S = 30.0
_SLEW_S = 15.0
_FWHM_ARCSEC = 2.0
_RNG_TAG = 0x11CC


def _local_midnight_utc(night_mjd: NDArray) -> NDArray:
    """UTC MJD of local mean midnight at Palomar after the evening of ``night_mjd``."""
    lon = (PALOMAR_LON_DEG + 180.0) % 360.0 - 180.0
    return night_mjd + 1.0 - lon / 360.0


def choose_fields(mjd: float, n_fields: int, min_dec: float = -25.0) -> pd.DataFrame:
    """The ``n_fields`` ZTF primary-grid fields nearest to the anti-solar point at ``mjd``.

    Returns a frame with ``field``, ``ra``, ``dec`` (deg), in order of distance.
    """
    from zsds.core.fields import primary_fields

    earth = observer_heliocentric(mjd, "500")[0]
    anti = earth / np.linalg.norm(earth)  # Sun -> Earth direction
    grid = primary_fields()
    grid = grid[grid["dec"] > min_dec]
    u = radec_to_unit(grid["ra"].to_numpy(), grid["dec"].to_numpy())
    order = np.argsort(-(u @ anti), kind="stable")[:n_fields]
    sel = grid.iloc[order]
    return pd.DataFrame(
        {
            "field": sel["fieldid"].to_numpy().astype(np.int64),
            "ra": sel["ra"].to_numpy(dtype=float),
            "dec": sel["dec"].to_numpy(dtype=float),
        }
    )


def _schedule(
    rng: np.random.Generator,
    fields: pd.DataFrame,
    nights: NDArray,
    visits_per_night: int,
    limiting_mag: float,
) -> pd.DataFrame:
    rows = []
    for night in nights:
        t = _local_midnight_utc(night) + rng.uniform(-1.4, -0.6) / 24.0
        for visit in range(visits_per_night):
            if visit > 0:
                t += rng.uniform(30.0, 60.0) / 1440.0
            fid = 2 if visit % 2 == 0 else 1
            for k, f in enumerate(fields.itertuples()):
                mid = t + (k * (_EXPTIME_S + _SLEW_S) + _EXPTIME_S / 2.0) / 86400.0
                lim = limiting_mag + BAND_DEPTH[fid] + rng.normal(0.0, 0.15)
                rows.append((mid, f.ra, f.dec, f.field, fid, int(night), lim))
    exp = pd.DataFrame(rows, columns=["mjd", "ra", "dec", "field", "fid", "night", "limmag"])
    exp.insert(0, "expid", np.arange(len(exp), dtype=np.int64) + 1)
    exp["field"] = exp["field"].astype(np.int64)
    exp["fid"] = exp["fid"].astype(np.int64)
    return exp


def _in_footprint(u: NDArray, center: NDArray) -> NDArray[np.bool_]:
    xi, eta = gnomonic(u, center)
    half = np.tan(np.deg2rad(FOOTPRINT_HALF_DEG))
    front = np.sum(u * center, axis=-1) > 0
    return front & (np.abs(xi) <= half) & (np.abs(eta) <= half)


def _noise(rng: np.random.Generator, mag: NDArray, lim: NDArray) -> tuple[NDArray, NDArray]:
    snr = 5.0 * 10.0 ** (-0.4 * (mag - lim))
    sigma = np.sqrt(0.1**2 + (1.4 / snr) ** 2)
    return sigma, 1.0857 / snr


def _perturb(
    rng: np.random.Generator, ra: NDArray, dec: NDArray, sigma_arcsec: NDArray
) -> tuple[NDArray, NDArray]:
    """Add isotropic Gaussian errors (``sigma`` per axis, arcsec) to positions in degrees."""
    u = radec_to_unit(ra, dec)
    s = np.deg2rad(sigma_arcsec / 3600.0)
    v = _gnomonic_inverse(rng.normal(0.0, 1.0, ra.size) * s, rng.normal(0.0, 1.0, ra.size) * s, u)
    return unit_to_radec(v)


def _uniform_square(rng: np.random.Generator, n: int, center: NDArray) -> NDArray:
    half = np.tan(np.deg2rad(FOOTPRINT_HALF_DEG))
    xi = rng.uniform(-half, half, n)
    eta = rng.uniform(-half, half, n)
    return _gnomonic_inverse(xi, eta, np.broadcast_to(center, (n, 3)))


def simulate_window(
    seed: int,
    n_nights: int = 3,
    start_night: str = "2024-03-15",
    n_fields: int = 2,
    visits_per_night: int = 3,
    density_scale: float = 1.0,
    limiting_mag: float = 20.5,
    false_per_exposure: int = 100,
    stationary_per_field: int = 50,
) -> tuple[pd.DataFrame, Orbits, pd.DataFrame]:
    """Simulate the detections of a multi-night window of a few ZTF fields near opposition.

    Parameters
    ----------
    seed : int
        Non-negative seed; the output depends only on the arguments.
    n_nights : int, optional
        Consecutive nights.
    start_night : str, optional
        Local date (ISO) of the evening of the first night at Palomar.
    n_fields : int, optional
        Number of ZTF primary fields (those nearest to opposition).
    visits_per_night : int, optional
        Visits of every field per night, 30-60 min apart.
    density_scale : float, optional
        Multiplier on the asteroid sky density of :func:`simulate_population`
        (about 20 deg^-2 brighter than V = 20.5 near the ecliptic at 1).
    limiting_mag : float, optional
        Mean 5-sigma r-band depth of an exposure.
    false_per_exposure : int, optional
        False (non-repeating) detections per exposure.
    stationary_per_field : int, optional
        Stationary recurring sources per field.

    Returns
    -------
    dets : pandas.DataFrame
        Detection table with the columns :data:`DETECTION_COLUMNS` (``truth`` is the object
        designation, ``""`` for false and stationary detections), sorted by ``expid``.
    orbits : Orbits
        All simulated asteroids (also undetected ones), osculating at the middle of the window.
    exposures : pandas.DataFrame
        ``expid``, ``mjd`` (mid-exposure UTC), ``ra``, ``dec`` (field centre), ``field``,
        ``fid``, ``night`` (MJD of the evening date) and ``limmag`` (5-sigma depth).
    """
    night0 = int(np.floor(Time(start_night, scale="utc").mjd))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _RNG_TAG, night0, n_fields]))
    nights = night0 + np.arange(n_nights)
    mid_night = nights[(n_nights - 1) // 2] if n_nights % 2 else nights[n_nights // 2 - 1] + 0.5
    fields = choose_fields(float(_local_midnight_utc(np.asarray(mid_night))), n_fields)
    exposures = _schedule(rng, fields, nights, visits_per_night, limiting_mag)
    epoch = 0.5 * (exposures["mjd"].min() + exposures["mjd"].max())

    # Population: one snapshot per field, each object owned by its nearest field centre.
    centers = radec_to_unit(fields["ra"].to_numpy(), fields["dec"].to_numpy())
    parts = []
    v_cut = limiting_mag + 1.5
    for k, f in enumerate(fields.itertuples()):
        orb = simulate_population(
            f.ra, f.dec, epoch, FOOTPRINT_HALF_DEG * np.sqrt(2.0) + 0.5, int(seed),
            density_scale=density_scale,
        )  # fmt: skip
        if len(orb) == 0:
            continue
        eph = ephemerides(orb, epoch)
        u = radec_to_unit(eph["ra"].to_numpy(), eph["dec"].to_numpy())
        owner = np.argmax(u @ centers.T, axis=1)
        parts.append(orb[(owner == k) & (eph["V"].to_numpy() < v_cut)])
    orbits = Orbits.concatenate(parts) if parts else simulate_population(0, 0, epoch, 0.0, 0)
    if len(np.unique(orbits.designation)) != len(orbits):
        raise RuntimeError("designation collision between fields; change the seed")

    # Asteroid detections.
    n_obj = len(orbits)
    det_parts = []
    if n_obj:
        eph = ephemerides_grid(orbits, exposures["mjd"].to_numpy())
        e_idx = np.repeat(np.arange(len(exposures)), n_obj)
        u = radec_to_unit(eph["ra"].to_numpy(), eph["dec"].to_numpy())
        inside = _in_footprint(
            u, radec_to_unit(exposures["ra"].to_numpy()[e_idx], exposures["dec"].to_numpy()[e_idx])
        )
        eph, e_idx = eph[inside].reset_index(drop=True), e_idx[inside]
        fid = exposures["fid"].to_numpy()[e_idx]
        color = np.vectorize(BAND_COLOR.get)(fid) if fid.size else np.zeros(0)
        rate = np.hypot(eph["ra_rate"].to_numpy(), eph["dec_rate"].to_numpy())
        trail = rate * 3600.0 * _EXPTIME_S / 86400.0
        mag = eph["V"].to_numpy() + color + 1.25 * np.log10(1.0 + (trail / _FWHM_ARCSEC) ** 2)
        lim = exposures["limmag"].to_numpy()[e_idx]
        p_det = _FILL / (1.0 + np.exp((mag - lim) / _ROLLOFF))
        det = rng.random(mag.size) < p_det
        eph, e_idx, mag, lim = eph[det], e_idx[det], mag[det], lim[det]
        sigma, sig_mag = _noise(rng, mag, lim)
        ra, dec = _perturb(rng, eph["ra"].to_numpy(), eph["dec"].to_numpy(), sigma)
        det_parts.append(
            pd.DataFrame(
                {
                    "e": e_idx,
                    "ra": ra,
                    "dec": dec,
                    "sigma": sigma,
                    "mag": mag + rng.normal(0.0, 1.0, mag.size) * sig_mag,
                    "truth": eph["designation"].to_numpy().astype(str),
                }
            )
        )

    # False detections: uniform in each exposure's footprint, never repeating.
    n_exp = len(exposures)
    exp_centers = radec_to_unit(exposures["ra"].to_numpy(), exposures["dec"].to_numpy())
    if false_per_exposure > 0:
        e_idx = np.repeat(np.arange(n_exp), false_per_exposure)
        u = _uniform_square(rng, e_idx.size, exp_centers[e_idx])
        ra, dec = unit_to_radec(u)
        lim = exposures["limmag"].to_numpy()[e_idx]
        mag = lim + rng.uniform(-1.0, 0.2, e_idx.size)
        sigma, _ = _noise(rng, mag, lim)
        det_parts.append(
            pd.DataFrame(
                {"e": e_idx, "ra": ra, "dec": dec, "sigma": sigma, "mag": mag, "truth": ""}
            )
        )

    # Stationary sources: fixed positions per field, detected in 60 % of its exposures.
    if stationary_per_field > 0:
        for k in range(len(fields)):
            pos = _uniform_square(rng, stationary_per_field, centers[k])
            mag0 = rng.uniform(15.0, limiting_mag - 0.5, stationary_per_field)
            exps = np.flatnonzero(exposures["field"].to_numpy() == fields["field"].iloc[k])
            e_idx = np.repeat(exps, stationary_per_field)
            s_idx = np.tile(np.arange(stationary_per_field), exps.size)
            seen = rng.random(e_idx.size) < 0.6
            e_idx, s_idx = e_idx[seen], s_idx[seen]
            lim = exposures["limmag"].to_numpy()[e_idx]
            mag = mag0[s_idx] + rng.normal(0.0, 0.3, e_idx.size)
            sigma, _ = _noise(rng, mag, lim)
            ra0, dec0 = unit_to_radec(pos[s_idx])
            ra, dec = _perturb(rng, ra0, dec0, sigma)
            det_parts.append(
                pd.DataFrame(
                    {"e": e_idx, "ra": ra, "dec": dec, "sigma": sigma, "mag": mag, "truth": ""}
                )
            )

    dets = pd.concat(det_parts, ignore_index=True)
    dets = dets.sort_values(["e", "ra"], kind="stable", ignore_index=True)
    e = dets["e"].to_numpy()
    out = pd.DataFrame(
        {
            "det_id": np.arange(len(dets), dtype=np.int64) + 1,
            "mjd": exposures["mjd"].to_numpy()[e],
            "ra": dets["ra"].to_numpy(),
            "dec": dets["dec"].to_numpy(),
            "sigma": dets["sigma"].to_numpy(),
            "mag": dets["mag"].to_numpy(),
            "fid": exposures["fid"].to_numpy()[e],
            "expid": exposures["expid"].to_numpy()[e],
            "field": exposures["field"].to_numpy()[e],
            "truth": dets["truth"].to_numpy().astype(str),
        }
    )
    return out[list(DETECTION_COLUMNS)], orbits, exposures
