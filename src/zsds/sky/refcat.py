"""PS1-like and Gaia-like reference catalogues derived from the simulated sky.

The catalogues are "observed" versions of :mod:`zsds.sky.model`: true mean
magnitudes and positions plus survey-like noise, limits and selection. They
are stored HEALPix-partitioned (order 6, HATS-like layout
``root/Norder=6/Dir=<10000*(pix//10000)>/Npix=<pix>.parquet``) and read back by
:class:`RefCatalog`, which is what the calibration pipeline queries in place of
the real PS1 / Gaia services.

Identifiers are the truth identifiers (``objid == star_id``/``gal_id``,
``source_id == star_id``) so that tests can match reference objects to the
truth; the pipeline must not rely on this.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from zsds.sky.model import (
    SKY_ORDER,
    SkyModel,
    angular_separation,
    hats_path,
    pixels_in_cone,
    positions_at,
    write_parquet_atomic,
)

__all__ = [
    "GAIA_EPOCH",
    "GAIA_G_LIMIT",
    "PS1_EPOCH_MJD",
    "PS1_LIMITS",
    "PS1_SATURATION",
    "MissingPartitionError",
    "RefCatalog",
    "ensure_refcats",
    "gaia_position_error",
    "make_gaia_like",
    "make_ps1_like",
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

GAIA_EPOCH = 2016.0
GAIA_G_LIMIT = 20.8
GAIA_G_BRIGHT = 3.0


class MissingPartitionError(FileNotFoundError, LookupError):
    """A cone touched a catalogue partition that was never built."""


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
    """Simulate the PS1 mean-object catalogue of one pixel.

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
        ``objid`` (int64), ``ra``, ``dec`` (deg, epoch 2012.0), ``{g,r,i,z}mag``
        and ``{g,r,i,z}magerr`` (AB mag; NaN if undetected or saturated),
        ``sgscore`` (0 galaxy .. 1 star), ``nDetections``. Rows undetected in
        every band are dropped.
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
    n_det = np.zeros(n, np.int64)
    for band in ("g", "r", "i", "z"):
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
        out[f"{band}mag"] = np.where(ok, meas, np.nan).astype(np.float32)
        out[f"{band}magerr"] = np.where(ok, err, np.nan).astype(np.float32)
        detected |= ok
        best_err = np.where(ok, np.minimum(best_err, err), best_err)
        p_epoch = 1.0 / (
            1.0 + np.exp((meas - (PS1_LIMITS[band] - _PS1_SINGLE_EPOCH_SHALLOWER)) / 0.3)
        )
        n_det += np.where(ok, rng.binomial(_PS1_EPOCHS_PER_BAND, np.clip(p_epoch, 0, 1)), 0)

    # Centroid noise: 10 mas systematic floor plus ~FWHM/SNR (0.4"/SNR), worse for galaxies.
    snr = 1.0857 / np.where(np.isfinite(best_err), best_err, 1.0)
    sig_pos = np.sqrt(10.0**2 + (400.0 / snr) ** 2) * (1.0 + r_eff)
    ra, dec = _jitter_radec(rng, ra, dec, sig_pos)

    # Star/galaxy score: confident when bright, drifting to ~0.5 (noisy) near the limit.
    r_true = np.concatenate([stars["r"].to_numpy(np.float64), galaxies["r"].to_numpy(np.float64)])
    conf = 4.0 / (1.0 + np.exp((r_true - 21.3) / 0.5))
    logit = np.where(is_star, conf, -conf * (1.0 + 0.3 * r_eff)) + rng.normal(0.0, 1.0, n)
    sgscore = 1.0 / (1.0 + np.exp(-logit))

    keep = detected
    df = pd.DataFrame({"objid": objid[keep], "ra": ra[keep], "dec": dec[keep]})
    for band in ("g", "r", "i", "z"):
        df[f"{band}mag"] = out[f"{band}mag"][keep]
        df[f"{band}magerr"] = out[f"{band}magerr"][keep]
    df["sgscore"] = sgscore[keep].astype(np.float32)
    df["nDetections"] = np.maximum(n_det[keep], 1).astype(np.int16)
    return df


def make_gaia_like(stars: pd.DataFrame, seed: int, pix: int) -> pd.DataFrame:
    """Simulate the Gaia-DR3-like astrometric catalogue of one pixel.

    Returns
    -------
    pandas.DataFrame
        Stars with 3 < measured G < 20.8: ``source_id`` (int64), ``ra``, ``dec``
        (deg, ``ref_epoch`` 2016.0), ``ra_error``, ``dec_error`` (mas; ra_error
        is on the sky, i.e. includes cos dec), ``pmra`` (mas/yr, includes cos
        dec), ``pmdec``, ``pmra_error``, ``pmdec_error`` (mas/yr),
        ``parallax``, ``parallax_error`` (mas), ``phot_g_mean_mag``,
        ``phot_g_mean_mag_error`` (Vega-like G, mag), ``ref_epoch`` (yr).
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
            "dec": dec[k],
            "ra_error": sig_pos[k].astype(f32),
            "dec_error": sig_pos[k].astype(f32),
            "pmra": pmra[k].astype(f32),
            "pmdec": pmdec[k].astype(f32),
            "pmra_error": sig_pm[k].astype(f32),
            "pmdec_error": sig_pm[k].astype(f32),
            "parallax": plx[k].astype(f32),
            "parallax_error": sig_plx[k].astype(f32),
            "phot_g_mean_mag": g_meas[k].astype(f32),
            "phot_g_mean_mag_error": g_err[k].astype(f32),
            "ref_epoch": np.full(int(k.sum()), GAIA_EPOCH),
        }
    )


class RefCatalog:
    """Read-only access to a HEALPix-partitioned (HATS-like) Parquet catalogue.

    Parameters
    ----------
    root : pathlib.Path
        Catalogue root holding ``Norder=6/Dir=.../Npix=....parquet``; its
        directory name is the catalogue :attr:`name` (e.g. ``ps1``, ``gaia``).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.name = self.root.name

    def __repr__(self) -> str:
        return f"RefCatalog({str(self.root)!r})"

    def pixels(self) -> np.ndarray:
        """Sorted order-6 pixel indices of the partitions present on disk."""
        paths = (self.root / f"Norder={SKY_ORDER}").glob("Dir=*/Npix=*.parquet")
        return np.array(sorted(int(p.stem.split("=")[1]) for p in paths), dtype=np.int64)

    def partition_path(self, pix: int) -> Path:
        """Path of one partition (which may not exist)."""
        return hats_path(self.root, pix)

    def cone(
        self, ra: float, dec: float, radius_deg: float, columns: list[str] | None = None
    ) -> pd.DataFrame:
        """Rows within ``radius_deg`` of (ra, dec), exact great-circle selection.

        Only the partitions overlapping the cone are read.

        Raises
        ------
        MissingPartitionError
            (a ``FileNotFoundError`` and ``LookupError``) if an overlapping
            partition was never built.
        """
        pix = pixels_in_cone(ra, dec, radius_deg)
        paths = [self.partition_path(p) for p in pix.tolist()]
        missing = [p for p, path in zip(pix.tolist(), paths, strict=True) if not path.exists()]
        if missing:
            raise MissingPartitionError(
                f"reference catalogue {self.name!r} at {self.root} lacks partition(s) "
                f"Norder={SKY_ORDER} Npix={missing} needed for the cone "
                f"(ra={ra:.5f}, dec={dec:.5f}, r={radius_deg:.4f} deg); "
                "build them with zsds.sky.refcat.ensure_refcats"
            )
        read_cols = None
        if columns is not None:
            read_cols = list(dict.fromkeys([*columns, "ra", "dec"]))
        table = pa.concat_tables([pq.read_table(p, columns=read_cols) for p in paths])
        df = table.to_pandas()
        sep = angular_separation(ra, dec, df["ra"].to_numpy(), df["dec"].to_numpy())
        df = df.loc[sep <= radius_deg].reset_index(drop=True)
        if columns is not None:
            df = df[list(columns)]
        return df


def ensure_refcats(
    sky: SkyModel, refcat_root: Path, ra: float, dec: float, radius_deg: float
) -> None:
    """Materialise PS1-like and Gaia-like partitions covering a cone.

    Writes ``refcat_root/ps1`` and ``refcat_root/gaia`` partitions that do not
    exist yet (idempotent; each file written atomically, and the content is a
    pure function of ``(sky.seed, pix)`` so concurrent builders agree).
    """
    refcat_root = Path(refcat_root)
    for pix in pixels_in_cone(ra, dec, radius_deg).tolist():
        ps1_path = hats_path(refcat_root / "ps1", pix)
        gaia_path = hats_path(refcat_root / "gaia", pix)
        if ps1_path.exists() and gaia_path.exists():
            continue
        stars = sky.stars([pix])
        if not ps1_path.exists():
            write_parquet_atomic(make_ps1_like(stars, sky.galaxies([pix]), sky.seed, pix), ps1_path)
        if not gaia_path.exists():
            write_parquet_atomic(make_gaia_like(stars, sky.seed, pix), gaia_path)
