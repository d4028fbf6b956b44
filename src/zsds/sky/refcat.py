"""Reference catalogues: Gaia DR3 and Pan-STARRS1 DR2, real or simulated, read from HATS.

One reader, :class:`RefCatalog`, serves the real surveys and the simulator's versions of them:
both are HATS catalogues (HEALPix-partitioned Parquet, the layout in which the surveys are
published for cone-by-cone access) with the surveys' published column names and units:

* **Gaia DR3** ``gaia_source`` (:data:`GAIA_DR3`): ``source_id``, ``ra``, ``dec`` (deg at
  ``ref_epoch``, Julian year 2016.0), ``ra_error``, ``dec_error`` (mas), ``parallax`` (mas),
  ``pmra`` (mas/yr, includes cos dec), ``pmdec`` (mas/yr) and their errors,
  ``phot_g_mean_mag`` (mag), ``phot_g_mean_flux_over_error``.
* **Pan-STARRS1 DR2** mean objects (:data:`PS1_DR2`, ``ObjectThin`` + ``MeanObject``):
  ``objID``, ``raMean``, ``decMean`` (deg), ``raMeanErr``, ``decMeanErr`` (arcsec),
  ``epochMean`` (MJD), ``nDetections``, ``ng`` .. ``nz``, ``gMeanPSFMag`` .. ``zMeanPSFMag``
  and their ``...Err`` (AB mag), plus ``ps_score`` (the PS1 point-source score of
  Tachibana & Miller 2018, 0 galaxy .. 1 star, joined on ``objID``; what ZTF calls sgscore).

A catalogue is located by a local folder, a URL (``https://``, ``s3://``, anything fsspec
reads) or ``"astroquery"`` (the Gaia archive and MAST, online only). :func:`open_refcat` picks
``$ZSDS_REFCAT_GAIA`` / ``$ZSDS_REFCAT_PS1`` when set, else ``HOME/refcat/gaia`` and
``HOME/refcat/ps1``, where the simulator writes (:func:`ensure_refcats`).

A query that cannot be answered raises :class:`RefCatalogError` naming the catalogue (a
source that cannot be opened or read, missing columns), or :class:`MissingPartitionError` when
the cone leaves the catalogue's coverage (e.g. PS1 south of dec -30, or sky the simulator never
built); only a cone that truly holds no source returns an empty table.

Simulated identifiers are the truth identifiers (``objID == star_id``/``gal_id``,
``source_id == star_id``) so that tests can match reference objects to the truth; the pipeline
must not rely on this.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zsds.sky.model import (
    SKY_ORDER,
    SkyModel,
    angular_separation,
    healpix,
    pixels_in_cone,
    positions_at,
)

__all__ = [
    "ASTROQUERY",
    "ENV_REFCAT",
    "GAIA_DR3",
    "GAIA_EPOCH",
    "GAIA_G_LIMIT",
    "PS1_DR2",
    "PS1_EPOCH_MJD",
    "PS1_LIMITS",
    "PS1_SATURATION",
    "CatalogSchema",
    "MissingPartitionError",
    "RefCatalog",
    "RefCatalogError",
    "ensure_refcats",
    "gaia_adql",
    "gaia_position_error",
    "julian_epoch",
    "make_gaia_like",
    "make_ps1_like",
    "open_refcat",
    "propagate_to_epoch",
    "ps1_mag_error",
]

TAG_PS1 = 3
TAG_GAIA = 4

#: Mean epoch of PS1 positions (2012.0) as MJD.
PS1_EPOCH_MJD = 55927.0
#: PS1 3π stack 5σ limits (AB).
PS1_LIMITS = {"g": 23.3, "r": 23.2, "i": 23.1, "z": 22.3}
#: Brighter than this (true mag) a PS1 band is saturated and reported as NaN.
PS1_SATURATION = 13.5
PS1_ERR_FLOOR = 0.005
_PS1_EPOCHS_PER_BAND = 12
_PS1_SINGLE_EPOCH_SHALLOWER = 1.0  # mag
#: PS1 DR2 writes -999 for "no measurement"; the reader turns it into NaN.
PS1_NULL = -999.0

GAIA_EPOCH = 2016.0
GAIA_G_LIMIT = 20.8
GAIA_G_BRIGHT = 3.0

_MJD_J2000 = 51544.5
_DAYS_PER_JULIAN_YEAR = 365.25
_MAS_PER_DEG = 3.6e6

#: Value of a catalogue location that queries the online archives through astroquery.
ASTROQUERY = "astroquery"
#: Environment variables naming a catalogue location (path, URL or ``astroquery``) per survey.
ENV_REFCAT = {"gaia": "ZSDS_REFCAT_GAIA", "ps1": "ZSDS_REFCAT_PS1"}

#: Order of the simulator's partitions (one per sky-model pixel) and of its skymap.
_SIM_SKYMAP_ORDER = 8
_LOCK_NAME = ".refcat.lock"


# ----------------------------------------------------------------------------------------------
# Schemas
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogSchema:
    """Published columns of one survey's catalogue, as the simulator writes them.

    Attributes
    ----------
    survey : str
        ``"gaia"`` or ``"ps1"``: the name under ``HOME/refcat`` and in error messages.
    title : str
        The survey table, for messages and the HATS properties.
    id_col, ra_col, dec_col : str
        Identifier and position columns.
    units : Mapping[str, str]
        Default columns of a cone (in this order) and their units (``""``: dimensionless).
    required : tuple of str
        Columns a catalogue must have; the other default columns are NaN where it lacks them.
    """

    survey: str
    title: str
    id_col: str
    ra_col: str
    dec_col: str
    units: Mapping[str, str]
    required: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        """Default columns of a cone, in order."""
        return list(self.units)


GAIA_DR3 = CatalogSchema(
    survey="gaia",
    title="Gaia DR3 gaia_source",
    id_col="source_id",
    ra_col="ra",
    dec_col="dec",
    units={
        "source_id": "",
        "ra": "deg",
        "ra_error": "mas",
        "dec": "deg",
        "dec_error": "mas",
        "parallax": "mas",
        "parallax_error": "mas",
        "pmra": "mas/yr",
        "pmra_error": "mas/yr",
        "pmdec": "mas/yr",
        "pmdec_error": "mas/yr",
        "ref_epoch": "yr",
        "phot_g_mean_flux_over_error": "",
        "phot_g_mean_mag": "mag",
    },
    required=("source_id", "ra", "dec", "pmra", "pmdec", "ref_epoch", "phot_g_mean_mag"),
)

_PS1_BANDS = ("g", "r", "i", "z")
PS1_DR2 = CatalogSchema(
    survey="ps1",
    title="Pan-STARRS1 DR2 mean objects",
    id_col="objID",
    ra_col="raMean",
    dec_col="decMean",
    units={
        "objID": "",
        "raMean": "deg",
        "decMean": "deg",
        "raMeanErr": "arcsec",
        "decMeanErr": "arcsec",
        "epochMean": "d",  # MJD
        "nDetections": "",
        **{f"n{b}": "" for b in _PS1_BANDS},
        **{k: "mag" for b in _PS1_BANDS for k in (f"{b}MeanPSFMag", f"{b}MeanPSFMagErr")},
        "ps_score": "",
    },
    required=("objID", "raMean", "decMean",
              *(k for b in _PS1_BANDS for k in (f"{b}MeanPSFMag", f"{b}MeanPSFMagErr"))),
)

_SCHEMAS = {s.survey: s for s in (GAIA_DR3, PS1_DR2)}


class RefCatalogError(LookupError):
    """A reference-catalogue query that cannot be answered; the message names the catalogue."""


class MissingPartitionError(RefCatalogError, FileNotFoundError):
    """The cone leaves the catalogue's coverage, or the catalogue does not exist locally."""


# ----------------------------------------------------------------------------------------------
# Epochs and proper motions
# ----------------------------------------------------------------------------------------------


def julian_epoch(mjd: float | np.ndarray) -> float | np.ndarray:
    """Julian epoch (yr, as Gaia's ``ref_epoch``) of an MJD: ``2000 + (MJD - 51544.5) / 365.25``."""
    return 2000.0 + (np.asarray(mjd, np.float64) - _MJD_J2000) / _DAYS_PER_JULIAN_YEAR


def propagate_to_epoch(ref: pd.DataFrame, epoch_mjd: float) -> pd.DataFrame:
    """Move Gaia positions from their ``ref_epoch`` to an epoch by their proper motions.

    Parameters
    ----------
    ref : pandas.DataFrame
        Gaia DR3 rows: ``ra``, ``dec`` (deg), ``pmra`` (mas/yr, includes cos dec), ``pmdec``
        (mas/yr) and ``ref_epoch`` (Julian year; 2016.0 where the column is absent). Missing
        proper motions (Gaia's 2-parameter solutions) count as zero.
    epoch_mjd : float
        Target epoch (MJD).

    Returns
    -------
    pandas.DataFrame
        A copy with ``ra``, ``dec`` at the epoch and ``ref_epoch`` set to it, so propagating
        again to the same epoch changes nothing. Linear in time (no parallax, no perspective
        acceleration: < 1 mas over a decade for all but the nearest stars).
    """
    out = ref.copy()
    target = float(julian_epoch(float(epoch_mjd)))
    if "ref_epoch" in ref:
        ref_epoch = np.nan_to_num(np.asarray(ref["ref_epoch"], np.float64), nan=GAIA_EPOCH)
    else:
        ref_epoch = np.full(len(ref), GAIA_EPOCH)
    dt_yr = target - ref_epoch
    pmra = np.nan_to_num(np.asarray(ref["pmra"], np.float64))
    pmdec = np.nan_to_num(np.asarray(ref["pmdec"], np.float64))
    dec0 = np.asarray(ref["dec"], np.float64)
    cosd = np.cos(np.deg2rad(dec0))
    out["ra"] = (np.asarray(ref["ra"], np.float64) + pmra * dt_yr / _MAS_PER_DEG / cosd) % 360.0
    out["dec"] = dec0 + pmdec * dt_yr / _MAS_PER_DEG
    out["ref_epoch"] = target
    return out


# ----------------------------------------------------------------------------------------------
# Simulated catalogues
# ----------------------------------------------------------------------------------------------


def ps1_mag_error(mag: np.ndarray, band: str) -> np.ndarray:
    """PS1-like magnitude error: 0.005 mag floor plus a sky-limited term (0.2 at 5σ)."""
    phot = 0.2 * 10.0 ** (0.4 * (np.asarray(mag, np.float64) - PS1_LIMITS[band]))
    return np.sqrt(PS1_ERR_FLOOR**2 + phot**2)


def gaia_position_error(g_mag: np.ndarray) -> np.ndarray:
    """Gaia-DR3-like position error (mas): ~0.02-0.03 at G<15, ~0.5 at G=20.7."""
    dg = np.asarray(g_mag, np.float64) - 20.7
    return np.sqrt(0.02**2 + (0.35 * 10.0 ** (0.2 * dg)) ** 2 + (0.35 * 10.0 ** (0.4 * dg)) ** 2)


def _jitter_radec(
    rng: np.random.Generator, ra: np.ndarray, dec: np.ndarray, sigma_mas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    d_dec = rng.normal(0.0, 1.0, ra.size) * sigma_mas / 3.6e6
    d_ra = rng.normal(0.0, 1.0, ra.size) * sigma_mas / 3.6e6 / np.cos(np.radians(dec))
    return (ra + d_ra) % 360.0, np.clip(dec + d_dec, -90.0, 90.0)


def make_ps1_like(stars: pd.DataFrame, galaxies: pd.DataFrame, seed: int, pix: int) -> pd.DataFrame:
    """Simulate the PS1 DR2 mean-object catalogue of one pixel.

    Parameters
    ----------
    stars, galaxies : pandas.DataFrame
        Truth of the pixel (:func:`~zsds.sky.model.true_stars`,
        :func:`~zsds.sky.model.true_galaxies`).
    seed, pix : int
        Sky seed and pixel; they seed the measurement noise.

    Returns
    -------
    pandas.DataFrame
        The columns of :data:`PS1_DR2`, in its order: ``objID`` (int64), ``raMean``,
        ``decMean`` (deg, ``epochMean`` = MJD 55927, 2012.0), ``raMeanErr``, ``decMeanErr``
        (arcsec), ``nDetections`` and ``ng`` .. ``nz`` (int16), ``{g,r,i,z}MeanPSFMag`` and
        ``...Err`` (AB mag; NaN if undetected or saturated), ``ps_score`` (0 galaxy .. 1
        star). Rows undetected in every band are dropped.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), TAG_PS1, int(pix)]))
    s_ra, s_dec = positions_at(stars, PS1_EPOCH_MJD)
    ns, ng = len(stars), len(galaxies)
    n = ns + ng
    objid = np.concatenate(
        [stars["star_id"].to_numpy(np.int64), galaxies["gal_id"].to_numpy(np.int64)]
    )
    ra = np.concatenate([s_ra, galaxies["ra"].to_numpy(np.float64)])
    dec = np.concatenate([s_dec, galaxies["dec"].to_numpy(np.float64)])
    is_star = np.concatenate([np.ones(ns, bool), np.zeros(ng, bool)])
    r_eff = np.concatenate([np.zeros(ns), galaxies["r_eff"].to_numpy(np.float64)])
    # Extended sources integrate more sky: inflate the sky-limited term.
    ext_fac = np.sqrt(1.0 + r_eff**2)

    out: dict[str, np.ndarray] = {}
    detected = np.zeros(n, bool)
    best_err = np.full(n, np.inf)
    n_band: dict[str, np.ndarray] = {}
    for band in _PS1_BANDS:
        true = np.concatenate(
            [stars[band].to_numpy(np.float64), galaxies[band].to_numpy(np.float64)]
        )
        phot = 0.2 * 10.0 ** (0.4 * (true - PS1_LIMITS[band])) * ext_fac
        err = np.sqrt(PS1_ERR_FLOOR**2 + phot**2)
        meas = true + rng.normal(0.0, 1.0, n) * err
        # Detection: measured mag within the 5σ limit and measured S/N >= 5 (which also
        # removes extended sources whose inflated error makes them undetectable).
        snr_meas = 1.0857 / err * 10.0 ** (-0.4 * (meas - true))
        ok = (meas <= PS1_LIMITS[band]) & (snr_meas >= 5.0) & (true >= PS1_SATURATION)
        out[f"{band}MeanPSFMag"] = np.where(ok, meas, np.nan).astype(np.float32)
        out[f"{band}MeanPSFMagErr"] = np.where(ok, err, np.nan).astype(np.float32)
        detected |= ok
        best_err = np.where(ok, np.minimum(best_err, err), best_err)
        p_epoch = 1.0 / (
            1.0 + np.exp((meas - (PS1_LIMITS[band] - _PS1_SINGLE_EPOCH_SHALLOWER)) / 0.3)
        )
        n_band[band] = np.where(ok, rng.binomial(_PS1_EPOCHS_PER_BAND, np.clip(p_epoch, 0, 1)), 0)

    # Centroid noise: 10 mas systematic floor plus ~FWHM/SNR (0.4"/SNR), worse for galaxies.
    snr = 1.0857 / np.where(np.isfinite(best_err), best_err, 1.0)
    sig_pos = np.sqrt(10.0**2 + (400.0 / snr) ** 2) * (1.0 + r_eff)
    ra, dec = _jitter_radec(rng, ra, dec, sig_pos)

    # Star/galaxy score: confident when bright, drifting to ~0.5 (noisy) near the limit.
    r_true = np.concatenate([stars["r"].to_numpy(np.float64), galaxies["r"].to_numpy(np.float64)])
    conf = 4.0 / (1.0 + np.exp((r_true - 21.3) / 0.5))
    logit = np.where(is_star, conf, -conf * (1.0 + 0.3 * r_eff)) + rng.normal(0.0, 1.0, n)
    ps_score = 1.0 / (1.0 + np.exp(-logit))

    k = detected
    err_arcsec = (sig_pos[k] / 1e3).astype(np.float32)
    df = pd.DataFrame(
        {
            "objID": objid[k],
            "raMean": ra[k],
            "decMean": dec[k],
            "raMeanErr": err_arcsec,
            "decMeanErr": err_arcsec,
            "epochMean": np.full(int(k.sum()), PS1_EPOCH_MJD),
            # Published as the sum over bands; every row here is detected at least once.
            "nDetections": np.maximum(sum(n_band.values())[k], 1).astype(np.int16),
        }
    )
    for band in _PS1_BANDS:
        df[f"n{band}"] = n_band[band][k].astype(np.int16)
    for band in _PS1_BANDS:
        df[f"{band}MeanPSFMag"] = out[f"{band}MeanPSFMag"][k]
        df[f"{band}MeanPSFMagErr"] = out[f"{band}MeanPSFMagErr"][k]
    df["ps_score"] = ps_score[k].astype(np.float32)
    return df


def make_gaia_like(stars: pd.DataFrame, seed: int, pix: int) -> pd.DataFrame:
    """Simulate the Gaia DR3 ``gaia_source`` catalogue of one pixel.

    Returns
    -------
    pandas.DataFrame
        Stars with 3 < measured G < 20.8, the columns of :data:`GAIA_DR3` in its order:
        ``source_id`` (int64), ``ra``, ``dec`` (deg, ``ref_epoch`` 2016.0), ``ra_error``,
        ``dec_error`` (mas; ra_error is on the sky, i.e. includes cos dec), ``parallax``,
        ``parallax_error`` (mas), ``pmra`` (mas/yr, includes cos dec), ``pmra_error``,
        ``pmdec``, ``pmdec_error`` (mas/yr), ``ref_epoch`` (Julian yr),
        ``phot_g_mean_flux_over_error`` and ``phot_g_mean_mag`` (Vega-like G, mag).
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), TAG_GAIA, int(pix)]))
    n = len(stars)
    g_true = stars["G"].to_numpy(np.float64)
    g_err = np.sqrt(0.0003**2 + (0.012 * 10.0 ** (0.4 * (g_true - 20.7))) ** 2)
    g_meas = g_true + rng.normal(0.0, 1.0, n) * g_err
    sig_pos = gaia_position_error(g_true)
    sig_pm = 1.1 * sig_pos
    sig_plx = 1.3 * sig_pos
    ra, dec = _jitter_radec(
        rng, stars["ra"].to_numpy(np.float64), stars["dec"].to_numpy(np.float64), sig_pos
    )
    pmra = stars["pmra"].to_numpy(np.float64) + rng.normal(0.0, 1.0, n) * sig_pm
    pmdec = stars["pmdec"].to_numpy(np.float64) + rng.normal(0.0, 1.0, n) * sig_pm
    plx = stars["parallax"].to_numpy(np.float64) + rng.normal(0.0, 1.0, n) * sig_plx

    k = (g_meas < GAIA_G_LIMIT) & (g_meas > GAIA_G_BRIGHT)
    f32 = np.float32
    return pd.DataFrame(
        {
            "source_id": stars["star_id"].to_numpy(np.int64)[k],
            "ra": ra[k],
            "ra_error": sig_pos[k].astype(f32),
            "dec": dec[k],
            "dec_error": sig_pos[k].astype(f32),
            "parallax": plx[k].astype(f32),
            "parallax_error": sig_plx[k].astype(f32),
            "pmra": pmra[k].astype(f32),
            "pmra_error": sig_pm[k].astype(f32),
            "pmdec": pmdec[k].astype(f32),
            "pmdec_error": sig_pm[k].astype(f32),
            "ref_epoch": np.full(int(k.sum()), GAIA_EPOCH),
            # Gaia publishes the flux S/N, not a magnitude error: sigma_G = 1.0857 / (S/N).
            "phot_g_mean_flux_over_error": (2.5 / np.log(10.0) / g_err[k]).astype(f32),
            "phot_g_mean_mag": g_meas[k].astype(f32),
        }
    )


# ----------------------------------------------------------------------------------------------
# Reader
# ----------------------------------------------------------------------------------------------


def _is_remote(location: str | os.PathLike) -> bool:
    return isinstance(location, str) and "://" in location


def _infer_survey(location: str | os.PathLike) -> str:
    name = str(location).lower()
    if "gaia" in name:
        return "gaia"
    if any(k in name for k in ("ps1", "panstarrs", "pan_starrs", "pan-starrs", "otmo")):
        return "ps1"
    raise ValueError(f"cannot tell the survey of the catalogue at {location!s}: "
                     "pass survey='gaia' or survey='ps1'")


def gaia_adql(ra: float, dec: float, radius_deg: float, columns: Sequence[str]) -> str:
    """ADQL cone query of Gaia DR3 ``gaiadr3.gaia_source`` for the Gaia archive."""
    return (f"SELECT {', '.join(columns)} FROM gaiadr3.gaia_source WHERE 1 = CONTAINS("
            f"POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra:.10f}, {dec:.10f}, {radius_deg:.10f}))")


class RefCatalog:
    """Cone queries of a Gaia DR3 or PS1 DR2 catalogue (HATS folder, HATS URL or astroquery).

    Parameters
    ----------
    location : str or os.PathLike
        A HATS catalogue (or collection): a local folder (e.g. ``HOME/refcat/gaia``) or a URL
        (``https://...``, ``s3://...``); or ``"astroquery"`` for the Gaia archive / MAST.
    survey : {"gaia", "ps1"}, optional
        Which survey the catalogue holds; by default guessed from the location's name.
    """

    def __init__(self, location: str | os.PathLike, survey: str | None = None) -> None:
        if isinstance(location, str) and location.startswith("file://"):
            location = location[len("file://"):]
        self.location: str | Path = (
            location if isinstance(location, str) and (location == ASTROQUERY
                                                       or _is_remote(location))
            else Path(location))
        survey = survey or _infer_survey(location)
        if survey not in _SCHEMAS:
            raise ValueError(f"unknown survey {survey!r}: expected one of {sorted(_SCHEMAS)}")
        self.schema = _SCHEMAS[survey]
        self.name = survey
        self._hats: Any = None  # hats.catalog.Catalog, opened on the first cone
        self._parts: dict[int, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"RefCatalog({str(self.location)!r}, survey={self.name!r})"

    @property
    def _label(self) -> str:
        return f"reference catalogue {self.name!r} ({self.schema.title}) at {self.location}"

    # -- HATS --------------------------------------------------------------------------------

    def _open(self) -> Any:
        """The HATS catalogue (a collection's main catalogue), opened once."""
        import hats
        from hats.catalog import Catalog, CatalogCollection

        if isinstance(self.location, Path) and not self.location.exists():
            raise MissingPartitionError(f"{self._label} does not exist; build it with "
                                        "zsds.sky.refcat.ensure_refcats or point "
                                        f"${ENV_REFCAT[self.name]} at a HATS catalogue")
        try:
            cat = hats.read_hats(self.location)
        except Exception as exc:  # any failure to reach or parse the source, named
            raise RefCatalogError(f"{self._label} cannot be opened as a HATS catalogue: "
                                  f"{type(exc).__name__}: {exc}") from exc
        if isinstance(cat, CatalogCollection):
            cat = cat.main_catalog
        if not isinstance(cat, Catalog):
            raise RefCatalogError(f"{self._label} is a HATS {type(cat).__name__}, "
                                  "not an object catalogue")
        self._hats = cat
        pixels = cat.get_healpix_pixels()
        orders = np.array([p.order for p in pixels], np.int64)
        npix = np.array([p.pixel for p in pixels], np.int64)
        self._parts = {int(o): np.sort(npix[orders == o]) for o in np.unique(orders)}
        return cat

    def pixels(self) -> list[tuple[int, int]]:
        """``(order, pixel)`` of every partition, sorted."""
        if self.location == ASTROQUERY:
            return []
        if self._hats is None:
            self._open()
        return sorted((o, int(p)) for o, arr in self._parts.items() for p in arr)

    def _cone_partitions(self, ra: float, dec: float, radius_deg: float
                         ) -> tuple[list[tuple[int, int]], np.ndarray, int]:
        """Partitions overlapping the cone, and the cone pixels (at ``order``) none covers."""
        kmax = max(self._parts, default=SKY_ORDER)  # no partition: nothing is covered
        if kmax <= SKY_ORDER:  # exact overlap test at the simulator's order
            order, cone = SKY_ORDER, pixels_in_cone(ra, dec, radius_deg)
        else:  # finer partitions (real catalogues): cdshealpix's (superset) cone coverage
            import astropy.units as u
            from astropy.coordinates import Latitude, Longitude
            from cdshealpix.nested import cone_search

            ipix, _, _ = cone_search(Longitude(ra * u.deg), Latitude(dec * u.deg),
                                     radius_deg * u.deg, depth=kmax, flat=True)
            order, cone = kmax, np.unique(np.asarray(ipix, np.int64))
        covered = np.zeros(len(cone), bool)
        hit: set[tuple[int, int]] = set()
        for o, have in self._parts.items():
            anc = cone >> (2 * (order - o))  # o <= order: the partition holding each pixel
            sel = np.isin(anc, have)
            covered |= sel
            hit.update((o, int(p)) for p in np.unique(anc[sel]))
        return sorted(hit), cone[~covered], order

    def _read_partition(self, order: int, pixel: int, columns: list[str] | None) -> pd.DataFrame:
        """One partition's ``columns`` as a numpy-backed DataFrame."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        from hats.io import paths
        from hats.pixel_math import HealpixPixel

        cat = self._hats
        hp_pixel = HealpixPixel(order, pixel)
        try:
            if isinstance(self.location, Path):  # local: pyarrow directly (file or directory)
                path = paths.pixel_catalog_file(cat.catalog_base_dir, hp_pixel,
                                                npix_suffix=cat.catalog_info.npix_suffix)
                return pq.read_table(path.path, columns=columns).to_pandas()
            df = cat.read_pixel_to_pandas(hp_pixel, columns=columns)
            # nested-pandas gives pyarrow-backed columns: the same numpy dtypes as a local read.
            table = pa.Table.from_pandas(pd.DataFrame(df), preserve_index=False)
            return table.replace_schema_metadata(None).to_pandas()
        except Exception as exc:
            raise RefCatalogError(f"{self._label}: partition Norder={order} Npix={pixel} "
                                  f"cannot be read: {type(exc).__name__}: {exc}") from exc

    def _hats_cone(self, ra: float, dec: float, radius_deg: float, read_cols: list[str]
                   ) -> pd.DataFrame:
        """The rows of every partition overlapping the cone (columns the catalogue has)."""
        if self._hats is None:
            self._open()
        parts, uncovered, order = self._cone_partitions(ra, dec, radius_deg)
        if len(uncovered) and isinstance(self.location, Path):
            self._open()  # the simulator may have added partitions since: look again
            parts, uncovered, order = self._cone_partitions(ra, dec, radius_deg)
        if len(uncovered):
            raise MissingPartitionError(
                f"{self._label} does not cover the cone (ra={ra:.5f}, dec={dec:.5f}, "
                f"r={radius_deg:.4f} deg): no partition holds Norder={order} "
                f"Npix={uncovered.tolist()[:20]}; a simulated home builds them with "
                "zsds.sky.refcat.ensure_refcats")
        names = set(self._hats.schema.names) if self._hats.schema is not None else None
        cols = read_cols if names is None else [c for c in read_cols if c in names]
        frames = [self._read_partition(o, p, cols) for o, p in parts]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)

    # -- astroquery --------------------------------------------------------------------------

    def _astroquery_cone(self, ra: float, dec: float, radius_deg: float, read_cols: list[str]
                         ) -> pd.DataFrame:
        """Cone from the Gaia archive (ADQL) or MAST (PS1 DR2 mean catalogue); online only."""
        try:
            if self.name == "gaia":
                from astroquery.gaia import Gaia

                table = Gaia.launch_job_async(gaia_adql(ra, dec, radius_deg, read_cols)
                                              ).get_results()
            else:
                import astropy.units as u
                from astropy.coordinates import SkyCoord
                from astroquery.mast import Catalogs

                # ps_score is not in MAST's PS1 mean table (it is PS1-PSC's): left NaN.
                table = Catalogs.query_region(
                    SkyCoord(ra, dec, unit="deg"), radius=radius_deg * u.deg,
                    catalog="Panstarrs", data_release="dr2", table="mean",
                    columns=[c for c in read_cols if c != "ps_score"])
        except Exception as exc:  # network, service or import failure, named
            raise RefCatalogError(f"{self._label}: the astroquery cone query failed: "
                                  f"{type(exc).__name__}: {exc}") from exc
        df = table.to_pandas()
        # The archives' column case varies (Gaia returns SOURCE_ID): use the published names.
        lower = {c.lower(): c for c in read_cols}
        return df.rename(columns={c: lower.get(c.lower(), c) for c in df.columns})

    # -- query -------------------------------------------------------------------------------

    def cone(
        self,
        ra: float,
        dec: float,
        radius_deg: float,
        columns: Sequence[str] | None = None,
        epoch_mjd: float | None = None,
    ) -> pd.DataFrame:
        """Rows within ``radius_deg`` of (ra, dec), exact great-circle selection.

        Parameters
        ----------
        ra, dec : float
            Cone centre (deg, ICRS).
        radius_deg : float
            Cone radius (deg).
        columns : sequence of str, optional
            Columns to return (any of the catalogue's); by default the survey's published
            columns of :class:`CatalogSchema` (``GAIA_DR3.columns`` / ``PS1_DR2.columns``).
        epoch_mjd : float, optional
            Gaia only: positions are moved by their proper motions from ``ref_epoch`` to this
            epoch (:func:`propagate_to_epoch`), and ``ref_epoch`` set to it. PS1 DR2 has no
            proper motions; its positions are at ``epochMean``.

        Returns
        -------
        pandas.DataFrame
            One row per source (positional index); ``attrs["units"]`` maps columns to units.
            Default columns a catalogue lacks, other than the required ones, are NaN; PS1's
            -999 "no measurement" is NaN. Empty (same columns) when the cone holds no source.

        Raises
        ------
        MissingPartitionError
            (a :class:`RefCatalogError` and ``FileNotFoundError``) if the catalogue does not
            exist locally or does not cover the cone.
        RefCatalogError
            If the source cannot be opened or read, or lacks a required or requested column.
        """
        if not (np.isfinite(radius_deg) and radius_deg > 0):
            raise ValueError(f"radius_deg must be positive, got {radius_deg}")
        s = self.schema
        want = list(dict.fromkeys(columns)) if columns is not None else s.columns
        extra = [s.ra_col, s.dec_col]
        if epoch_mjd is not None and self.name == "gaia":
            extra += ["pmra", "pmdec", "ref_epoch"]
        read_cols = list(dict.fromkeys([*want, *extra]))
        if self.location == ASTROQUERY:
            df = self._astroquery_cone(ra, dec, radius_deg, read_cols)
        else:
            df = self._hats_cone(ra, dec, radius_deg, read_cols)
        needed = set(s.required) & set(read_cols) | set(read_cols) - set(s.units)
        missing = [c for c in read_cols if c in needed and c not in df.columns]
        if missing:
            raise RefCatalogError(f"{self._label} has no column(s) {missing}")
        df = df.drop(columns=["_healpix_29"], errors="ignore")
        sep = angular_separation(ra, dec, df[s.ra_col].to_numpy(np.float64),
                                 df[s.dec_col].to_numpy(np.float64))
        df = df.loc[sep <= radius_deg].reset_index(drop=True)
        if self.name == "ps1":  # PS1's "no measurement" sentinel
            for c in df.columns:
                if df[c].dtype.kind == "f":
                    df[c] = df[c].mask(df[c] <= PS1_NULL)
        if epoch_mjd is not None and self.name == "gaia":
            df = propagate_to_epoch(df, epoch_mjd)
        for c in want:
            if c not in df.columns:
                df[c] = np.nan
        df = df[want]
        df.attrs["units"] = {c: s.units[c] for c in want if c in s.units}
        return df


def open_refcat(refcat_root: Path, survey: str) -> RefCatalog:
    """The catalogue the pipeline queries for a survey.

    ``$ZSDS_REFCAT_GAIA`` / ``$ZSDS_REFCAT_PS1`` (a HATS folder, a HATS URL, or
    ``astroquery``) when set, else the simulator's ``refcat_root/gaia`` or ``refcat_root/ps1``.

    Parameters
    ----------
    refcat_root : pathlib.Path
        ``HOME/refcat``.
    survey : {"gaia", "ps1"}
    """
    if survey not in ENV_REFCAT:
        raise ValueError(f"unknown survey {survey!r}: expected one of {sorted(ENV_REFCAT)}")
    location = os.environ.get(ENV_REFCAT[survey])
    return RefCatalog(location or Path(refcat_root) / survey, survey=survey)


# ----------------------------------------------------------------------------------------------
# Simulated catalogues as HATS catalogues
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive advisory lock: one builder at a time adds partitions and rewrites metadata."""
    import fcntl  # POSIX only: imported here so that reading catalogues works anywhere

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sim_title(schema: CatalogSchema) -> str:
    """``obs_title`` of a simulated catalogue: how :func:`ensure_refcats` recognises its own."""
    return f"zsds simulation of {schema.title}"


def _built_pixels(catdir: Path, schema: CatalogSchema) -> set[int]:
    """Order-6 partitions of a simulated catalogue (empty if it does not exist yet).

    Raises
    ------
    RefCatalogError
        If ``catdir`` holds a HATS catalogue that zsds did not write (e.g. a real one placed
        there): the simulator never adds partitions to it.
    """
    props = [catdir / n for n in ("hats.properties", "properties") if (catdir / n).exists()]
    if not props:
        return set()
    if f"obs_title={_sim_title(schema)}" not in props[0].read_text().splitlines():
        raise RefCatalogError(f"reference catalogue {schema.survey!r} at {catdir} was not "
                              "written by the zsds simulator; it will not add partitions to it")
    info = catdir / "partition_info.csv"
    if not info.exists():
        return set()
    parts = pd.read_csv(info)
    if (parts["Norder"] != SKY_ORDER).any():
        raise RefCatalogError(f"reference catalogue {schema.survey!r} at {catdir} has "
                              f"partitions of order other than {SKY_ORDER}")
    return set(parts["Npix"].astype(int).tolist())


def _sky_pixel_rows(df: pd.DataFrame, schema: CatalogSchema, pix: int
                    ) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows of ``df`` whose published position lies in order-6 pixel ``pix``, and their
    ``_healpix_29`` (hats' own, as lsdb computes it)."""
    from hats.pixel_math import compute_spatial_index
    from hats.pixel_math.spatial_index import SPATIAL_INDEX_ORDER

    h29 = compute_spatial_index(df[schema.ra_col].to_numpy(np.float64),
                                df[schema.dec_col].to_numpy(np.float64))
    keep = (h29 >> (2 * (SPATIAL_INDEX_ORDER - SKY_ORDER))) == pix
    return df.loc[keep], h29[keep]


def _write_partition(catdir: Path, pix: int, df: pd.DataFrame, h29: np.ndarray,
                     schema: CatalogSchema) -> None:
    """Write one order-6 partition as HATS does: sorted by ``_healpix_29``, units as field
    metadata; written aside and renamed, so a reader never sees a partial file."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from hats.io import paths
    from hats.io.file_io.file_io import get_parquet_write_table_kwargs
    from hats.pixel_math import HealpixPixel
    from hats.pixel_math.spatial_index import SPATIAL_INDEX_COLUMN

    from zsds.io.hatsio import arrow_table

    order = np.argsort(h29, kind="stable")
    table = arrow_table(df).take(pa.array(order))
    table = table.append_column(SPATIAL_INDEX_COLUMN, pa.array(h29[order], pa.int64()))
    fields = [f.with_metadata({"unit": schema.units[f.name]}) if schema.units.get(f.name) else f
              for f in table.schema]
    table = table.cast(pa.schema(fields))
    dest = Path(paths.pixel_catalog_file(catdir, HealpixPixel(SKY_ORDER, pix)).path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = catdir / f".part.{os.getpid()}.{uuid.uuid4().hex}.parquet"
    try:
        pq.write_table(table, tmp, **get_parquet_write_table_kwargs(table.schema))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _refresh_metadata(catdir: Path, schema: CatalogSchema, new_pixels: list[int]) -> None:
    """Rewrite the HATS metadata of a simulated catalogue after ``new_pixels`` were added.

    The same files and hats calls as :func:`zsds.lightcurves.hats.write_hats_catalog` (which
    rewrites a catalogue whole, where the simulator adds partitions cone by cone): built in a
    staging folder and renamed into place one by one, ``partition_info.csv`` last but for the
    properties, so a concurrent reader sees the old or the new partition list, each complete.
    """
    import pyarrow.parquet as pq
    from hats.catalog import PartitionInfo, TableProperties
    from hats.catalog.dataset.hats_properties import HatsProperties
    from hats.io import file_io, paths, write_parquet_metadata
    from hats.io.skymap import write_skymap
    from hats.pixel_math import HealpixPixel
    from hats.pixel_math.spatial_index import SPATIAL_INDEX_COLUMN, SPATIAL_INDEX_ORDER

    from zsds.io.hatsio import builder_name

    shift = 2 * (SPATIAL_INDEX_ORDER - _SIM_SKYMAP_ORDER)
    skymap_path = catdir / "skymap.fits"
    skymap = (file_io.read_fits_image(skymap_path).astype(np.int64) if skymap_path.exists()
              else np.zeros(12 * 4**_SIM_SKYMAP_ORDER, np.int64))
    block = 4 ** (_SIM_SKYMAP_ORDER - SKY_ORDER)  # skymap cells of one partition, contiguous
    for pix in new_pixels:  # set (not add) each new partition's cells: safe to redo after a crash
        path = paths.pixel_catalog_file(catdir, HealpixPixel(SKY_ORDER, pix)).path
        h29 = pq.read_table(path, columns=[SPATIAL_INDEX_COLUMN]).column(0).to_numpy()
        skymap[pix * block:(pix + 1) * block] = np.bincount((h29 >> shift) - pix * block,
                                                             minlength=block)

    pixels = sorted(int(p.stem.split("=")[1]) for p in
                    (catdir / "dataset" / f"Norder={SKY_ORDER}").glob("Dir=*/Npix=*.parquet"))
    per_partition = skymap.reshape(-1, block).sum(axis=1)
    staging = catdir / f".meta.{os.getpid()}.{uuid.uuid4().hex}"
    try:
        write_parquet_metadata(catdir, output_path=staging, create_metadata=True,
                               create_per_partition_stats=True)
        info = PartitionInfo.from_healpix([HealpixPixel(SKY_ORDER, p) for p in pixels])
        info.write_to_file(paths.get_partition_info_pointer(staging))
        file_io.write_fits_image(skymap, paths.get_point_map_file_pointer(staging))
        write_skymap(skymap, staging)
        TableProperties(
            catalog_name=schema.survey,
            catalog_type="object",
            total_rows=int(skymap.sum()),
            ra_column=schema.ra_col,
            dec_column=schema.dec_col,
            healpix_column=SPATIAL_INDEX_COLUMN,
            healpix_order=SPATIAL_INDEX_ORDER,
            npix_suffix=".parquet",
            skymap_order=_SIM_SKYMAP_ORDER,
            hats_max_rows=int(per_partition[pixels].max()),
            moc_sky_fraction=float(f"{info.calculate_fractional_coverage():.5g}"),
            hats_order=SKY_ORDER,
            obs_title=_sim_title(schema),
            **HatsProperties.new_provenance_dict(catdir, builder=builder_name()),
        ).to_properties_file(staging)
        for rel in ("dataset/_common_metadata", "dataset/_metadata",
                    "per_partition_statistics.parquet", "point_map.fits", "skymap.fits",
                    "partition_info.csv", "properties", "hats.properties"):
            if (staging / rel).exists():
                (catdir / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / rel, catdir / rel)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_refcats(
    sky: SkyModel, refcat_root: Path, ra: float, dec: float, radius_deg: float
) -> None:
    """Materialise the simulated Gaia DR3 and PS1 DR2 partitions covering a cone.

    ``refcat_root/gaia`` and ``refcat_root/ps1`` are HATS catalogues with one order-6
    partition per sky-model pixel; partitions that do not exist yet are added and the
    catalogue's metadata rewritten (idempotent; a partition's content is a pure function of
    ``(sky.seed, pix)`` and its neighbours; builders take turns under a file lock, readers
    never see a partial file).

    Raises
    ------
    RefCatalogError
        If a catalogue folder holds a HATS catalogue that zsds did not write.
    """
    root = Path(refcat_root)
    want = set(pixels_in_cone(ra, dec, radius_deg).tolist())
    schemas = (PS1_DR2, GAIA_DR3)
    if all(want <= _built_pixels(root / s.survey, s) for s in schemas):
        return  # the common case, without taking the lock
    with _locked(root / _LOCK_NAME):
        need = {s.survey: sorted(want - _built_pixels(root / s.survey, s)) for s in schemas}
        stars: dict[int, pd.DataFrame] = {}
        made: dict[tuple[str, int], pd.DataFrame] = {}

        def generated(survey: str, p: int) -> pd.DataFrame:
            """The catalogue measured from the truth of sky pixel ``p`` (memoised)."""
            if (survey, p) not in made:
                if p not in stars:
                    stars[p] = sky.stars([p])
                made[survey, p] = (
                    make_ps1_like(stars[p], sky.galaxies([p]), sky.seed, p) if survey == "ps1"
                    else make_gaia_like(stars[p], sky.seed, p))
            return made[survey, p]

        for s in schemas:
            for pix in need[s.survey]:
                # Proper motion (to PS1's 2012) and measurement noise move a few rows across
                # pixel edges: a HATS partition holds the rows whose published position is in
                # it, so the neighbours' catalogues contribute theirs.
                near = [pix, *(int(q) for q in healpix().neighbours(pix) if q >= 0)]
                df = pd.concat([generated(s.survey, q) for q in near], ignore_index=True)
                _write_partition(root / s.survey, pix, *_sky_pixel_rows(df, s, pix), s)
            if need[s.survey]:
                _refresh_metadata(root / s.survey, s, need[s.survey])
