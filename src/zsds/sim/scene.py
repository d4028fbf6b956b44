"""What is on the sky during an exposure: stars, galaxies, transients, flares, asteroids and
satellites.

:func:`exposure_scene` computes the moving and exposure-wide things once per exposure (asteroid
ephemerides, satellite tracks); :func:`gather_scene` then collects every source around one CCD,
with its magnitude in the exposure's ZTF band at mid-exposure.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from zsds.core.fields import primary_fields
from zsds.core.instrument import PIXEL_SCALE, Filter
from zsds.core.wcs import quadrant_wcs
from zsds.sim.camera import (
    KIND_AIRPLANE,
    KIND_ASTEROID,
    KIND_SATELLITE,
    KIND_STAR,
    KIND_TRANSIENT,
    SceneSources,
    SimConfig,
)
from zsds.sim.observing import Exposure
from zsds.sim.transients import flare_factor, flares_in_pixel, transient_mag, transients_in_pixel
from zsds.sky import model as skymodel
from zsds.sky.model import SkyModel, angular_separation, magnitudes_at, positions_at

ASTEROID_BLOCK_DAYS = 10.0
#: Approximate asteroid colours relative to V (S/C-type average).
ASTEROID_COLOUR = {"g": 0.28, "r": -0.18, "i": -0.30}


def ztf_magnitude(ps1: dict[str, np.ndarray], filt: Filter) -> np.ndarray:
    """ZTF-band magnitude from PS1 magnitudes: m_ZTF = m_PS1 + colour_term * colour."""
    p = filt.props
    c1, c2 = p.colour_bands
    with np.errstate(invalid="ignore"):  # transients before explosion are at +inf
        return ps1[filt.name] + p.colour_term * (ps1[c1] - ps1[c2])


@dataclass
class ExposureScene:
    """Exposure-wide moving sources: asteroid trails and satellite tracks (sky coordinates)."""

    movers: pd.DataFrame  # id, kind, ra, dec (start), ra1, dec1 (end), mag (band)
    asteroid_ids: np.ndarray


@functools.lru_cache(maxsize=64)
def _patch_population(fieldid: int, block: int, seed: int, density: float):
    from zsds.solar.population import simulate_population

    f = primary_fields().loc[fieldid]
    sub = int(np.random.SeedSequence([seed, 41, fieldid, block]).generate_state(1)[0] % 2**31)
    # Cones of 4.5 deg around grid centres overlap; 0.74 = field area / cone area.
    return simulate_population(
        float(f.ra),
        float(f.dec),
        (block + 0.5) * ASTEROID_BLOCK_DAYS,
        4.5,
        sub,
        density_scale=0.74 * density,
    )


def exposure_scene(exp: Exposure, config: SimConfig) -> ExposureScene:
    """Asteroids (from their orbits, light-time corrected, from Palomar) and satellite tracks."""
    rows = []
    ids = np.array([], dtype=object)
    if config.asteroids:
        from zsds.solar.ephemeris import ephemerides

        fields = primary_fields()
        sep = angular_separation(exp.ra, exp.dec, fields.ra.to_numpy(), fields.dec.to_numpy())
        block = int(exp.mjd // ASTEROID_BLOCK_DAYS)
        t0, t1 = exp.mjd, exp.mjd + exp.exptime / 86400.0
        for fid in fields.fieldid.to_numpy()[sep < 9.0]:
            orbits = _patch_population(int(fid), block, config.seed, config.asteroid_density)
            if len(orbits) == 0:
                continue
            e0 = ephemerides(orbits, t0)
            near = angular_separation(exp.ra, exp.dec, e0.ra.to_numpy(), e0.dec.to_numpy()) < 5.5
            if not near.any():
                continue
            e0 = e0[near]
            e1 = ephemerides(orbits[np.nonzero(near)[0]], t1)
            band = exp.filter.name
            rows.append(
                pd.DataFrame(
                    {
                        "id": e0.designation.to_numpy(),
                        "kind": KIND_ASTEROID,
                        "ra": e0.ra.to_numpy(),
                        "dec": e0.dec.to_numpy(),
                        "ra1": e1.ra.to_numpy(),
                        "dec1": e1.dec.to_numpy(),
                        "mag": e0.V.to_numpy() + ASTEROID_COLOUR[band],
                    }
                )
            )
        if rows:
            ids = np.concatenate([r["id"].to_numpy() for r in rows])
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 51, exp.expid]))
    if config.satellites and rng.random() < config.satellite_prob:
        rows.append(_track(exp, rng, f"SAT{exp.expid}", KIND_SATELLITE, rng.uniform(11.0, 15.0)))
    if config.satellites and rng.random() < config.airplane_prob:
        rows.append(
            _track(exp, rng, f"AIR{exp.expid}", KIND_AIRPLANE, rng.uniform(9.0, 12.0), True)
        )
    movers = (
        pd.concat(rows, ignore_index=True)
        if rows
        else pd.DataFrame(columns=["id", "kind", "ra", "dec", "ra1", "dec1", "mag"])
    )
    return ExposureScene(movers, ids)


def _track(
    exp: Exposure,
    rng: np.random.Generator,
    name: str,
    kind: int,
    mag_per_px: float,
    dashes: bool = False,
) -> pd.DataFrame:
    """A 20-degree straight track through a point near the pointing (satellite or airplane).

    An airplane's blinking navigation lights leave a dashed track: 0.01-deg dashes every
    0.05 deg. ``mag_per_px`` is the brightness of each pixel of track, as a star of that
    magnitude would have on that pixel.
    """
    r0, a0, ang = rng.uniform(0, 3.5), rng.uniform(0, 2 * np.pi), rng.uniform(0, np.pi)
    cosd = np.cos(np.deg2rad(exp.dec))
    ra_c = exp.ra + r0 * np.sin(a0) / cosd
    dec_c = exp.dec + r0 * np.cos(a0)
    t0 = np.arange(-10.0, 10.0, 0.05) if dashes else np.array([-10.0])
    t1 = t0 + 0.01 if dashes else np.array([10.0])
    return pd.DataFrame(
        {
            "id": [f"{name}_{k}" for k in range(len(t0))] if dashes else [name],
            "kind": kind,
            "ra": ra_c + t0 * np.sin(ang) / cosd,
            "dec": dec_c + t0 * np.cos(ang),
            "ra1": ra_c + t1 * np.sin(ang) / cosd,
            "dec1": dec_c + t1 * np.cos(ang),
            "mag_per_px": mag_per_px,
        }
    )


def ccd_cone(exp: Exposure, ccdid: int, config: SimConfig) -> tuple[float, float, float]:
    """(ra, dec, radius) of a cone enclosing the four quadrants of a CCD (plus 1 arcmin)."""
    corners = []
    for qid in (1, 2, 3, 4):
        w = quadrant_wcs(exp.ra, exp.dec, ccdid, qid, exp.rotation, config.nx, config.ny)
        cx = np.array([0, config.nx - 1, 0, config.nx - 1, config.nx / 2])
        cy = np.array([0, 0, config.ny - 1, config.ny - 1, config.ny / 2])
        corners.append(np.array(w.all_pix2world(cx, cy, 0)).T)
    pts = np.concatenate(corners)
    v = np.column_stack(
        [
            np.cos(np.deg2rad(pts[:, 1])) * np.cos(np.deg2rad(pts[:, 0])),
            np.cos(np.deg2rad(pts[:, 1])) * np.sin(np.deg2rad(pts[:, 0])),
            np.sin(np.deg2rad(pts[:, 1])),
        ]
    ).mean(axis=0)
    ra = float(np.rad2deg(np.arctan2(v[1], v[0])) % 360.0)
    dec = float(np.rad2deg(np.arcsin(v[2] / np.linalg.norm(v))))
    radius = float(angular_separation(ra, dec, pts[:, 0], pts[:, 1]).max()) + 1.0 / 60.0
    return ra, dec, radius


def gather_scene(
    exp: Exposure, ccdid: int, config: SimConfig, sky: SkyModel, escene: ExposureScene
) -> SceneSources:
    """Every source within the cone of one CCD, with ZTF-band magnitudes at mid-exposure."""
    filt = exp.filter
    mjd = exp.mjd_mid
    ra0, dec0, radius = ccd_cone(exp, ccdid, config)
    stars = sky.stars_in_cone(ra0, dec0, radius + 0.01)
    if not config.stars:
        stars = stars.iloc[:0]
    ps1 = {b: magnitudes_at(stars, b, mjd) for b in ("g", "r", "i")}
    mag = ztf_magnitude(ps1, filt)
    pixels = sky.pixels_in_cone(ra0, dec0, radius)
    if config.flares and len(stars):
        fl = pd.concat(
            [
                flares_in_pixel(int(p), int(mjd), config.seed, stars[stars.star_id // 2**24 == p])
                for p in pixels
            ],
            ignore_index=True,
        )
        if len(fl):
            fac = flare_factor(fl, filt.name, mjd)
            idx = pd.Index(stars.star_id).get_indexer(fl.star_id)
            ok = idx >= 0
            mag[idx[ok]] -= 2.5 * np.log10(fac[ok])
    ra, dec = positions_at(stars, mjd)
    parts = [
        pd.DataFrame(
            {
                "id": stars.star_id.to_numpy(),
                "kind": KIND_STAR,
                "ra": ra,
                "dec": dec,
                "mag": mag,
                "ra1": np.nan,
                "dec1": np.nan,
            }
        )
    ]
    galaxies = sky.galaxies_in_cone(ra0, dec0, radius + 0.01) if config.galaxies else None
    if config.transients:
        trs = []
        allgal = sky.galaxies(pixels) if len(pixels) else pd.DataFrame()
        for p in pixels:
            gal_p = allgal[allgal.gal_id // 2**24 == p] if len(allgal) else allgal
            for block in range(int(mjd // 30) - 4, int(mjd // 30) + 1):
                trs.append(
                    transients_in_pixel(
                        int(p),
                        block,
                        config.seed,
                        gal_p,
                        lambda pix, n, rng: skymodel._uniform_in_pixel(rng, pix, n),
                        config.transient_rate,
                    )
                )
        tr = pd.concat(trs, ignore_index=True) if trs else pd.DataFrame()
        if len(tr):
            band = {b: transient_mag(tr, b, mjd) for b in ("g", "r", "i")}
            tmag = ztf_magnitude(band, filt)
            keep = np.isfinite(tmag) & (tmag < 24.5)
            keep &= angular_separation(ra0, dec0, tr.ra.to_numpy(), tr.dec.to_numpy()) < radius
            parts.append(
                pd.DataFrame(
                    {
                        "id": tr.transient_id.to_numpy()[keep],
                        "kind": KIND_TRANSIENT,
                        "ra": tr.ra.to_numpy()[keep],
                        "dec": tr.dec.to_numpy()[keep],
                        "mag": tmag[keep],
                        "ra1": np.nan,
                        "dec1": np.nan,
                    }
                )
            )
    mv = escene.movers
    if len(mv):
        # Satellite tracks start far outside the CCD; everything else must start near it.
        near = (
            angular_separation(ra0, dec0, mv.ra.to_numpy(), mv.dec.to_numpy()) < radius + 0.1
        ) | (mv.kind.to_numpy() == KIND_SATELLITE)
        mv = mv[near].copy()
        sat = np.isin(mv.kind.to_numpy(), [KIND_SATELLITE, KIND_AIRPLANE])
        if sat.any():
            # Total track magnitude from the per-pixel brightness and the track length.
            length_px = (
                angular_separation(mv.ra[sat], mv.dec[sat], mv.ra1[sat], mv.dec1[sat])
                * 3600.0
                / PIXEL_SCALE
            )
            mv.loc[sat, "mag"] = mv.loc[sat, "mag_per_px"] - 2.5 * np.log10(length_px)
        parts.append(mv[["id", "kind", "ra", "dec", "mag", "ra1", "dec1"]])
    points = pd.concat(parts, ignore_index=True)
    points["id"] = points["id"].astype(str)
    if galaxies is not None and len(galaxies):
        gps1 = {b: galaxies[b].to_numpy() for b in ("g", "r", "i")}
        gal = pd.DataFrame(
            {
                "id": galaxies.gal_id.astype(str).to_numpy(),
                "ra": galaxies.ra.to_numpy(),
                "dec": galaxies.dec.to_numpy(),
                "mag": ztf_magnitude(gps1, filt),
                "sersic_n": galaxies.sersic_n.to_numpy(),
                "r_eff": galaxies.r_eff.to_numpy(),
                "axis_ratio": galaxies.axis_ratio.to_numpy(),
                "pa": galaxies.pa.to_numpy(),
            }
        )
    else:
        gal = pd.DataFrame(
            columns=["id", "ra", "dec", "mag", "sersic_n", "r_eff", "axis_ratio", "pa"]
        )
    return SceneSources(points, gal)
