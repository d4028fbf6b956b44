"""Transients and stellar flares: a deterministic, time-stationary population on the sky.

Transients are drawn per HEALPix pixel (the sky model's partitioning) and per 30-day block of
explosion times, so the population at any epoch is the same whichever fields, nights or CCDs are
simulated, and overlapping fields see the same events. Light curves follow the Bazin et al.
(2009) rise/fall form with a colour that reddens after peak.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BLOCK_DAYS = 30.0
#: Explosions per deg^2 per 30-day block (far above the real supernova rate on purpose: the
#: simulator is a test bench and needs statistics of detections per quadrant).
DEFAULT_RATE = 6.0
PIXEL_AREA_DEG2 = 41252.96 / (12 * 64**2)
_TAG_TRANSIENT = 31
_TAG_FLARE = 32


def transients_in_pixel(
    pix: int, block: int, seed: int, galaxies: pd.DataFrame, pixel_radec, rate: float = DEFAULT_RATE
) -> pd.DataFrame:
    """Transients exploding in one HEALPix pixel during one 30-day block.

    Parameters
    ----------
    pix : int
        HEALPix (order 6, nested) pixel.
    block : int
        ``floor(MJD / 30)`` of the explosion epochs.
    seed : int
        Sky seed.
    galaxies : DataFrame
        The true galaxies of the pixel (columns ra, dec, r_eff, axis_ratio, pa); ~70% of events
        are placed in one of them, offset along its light profile; the rest are hostless.
    pixel_radec : callable
        ``pixel_radec(pix, n, rng) -> (ra, dec)`` drawing uniform positions inside the pixel.
    rate : float
        Events per deg^2 per block.

    Returns
    -------
    DataFrame
        ``transient_id, ra, dec, host_id (-1 if hostless), t0 (MJD), tau_rise, tau_fall (days),
        peak_mag (r), t_peak``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, _TAG_TRANSIENT, pix, block]))
    n = rng.poisson(rate * PIXEL_AREA_DEG2)
    t0 = block * BLOCK_DAYS + rng.uniform(0, BLOCK_DAYS, n)
    tau_rise = rng.uniform(1.5, 8.0, n)
    tau_fall = rng.uniform(15.0, 60.0, n)
    peak = rng.uniform(16.5, 21.5, n)
    ra, dec = pixel_radec(pix, n, rng)
    host = np.full(n, -1, np.int64)
    hosted = rng.random(n) < 0.7
    if len(galaxies) and hosted.any():
        k = rng.integers(0, len(galaxies), n)
        g = galaxies.iloc[k[hosted]]
        # Offset drawn from an exponential profile along the host's ellipse.
        r = rng.exponential(0.6, hosted.sum()) * g["r_eff"].to_numpy() / 3600.0
        phi = rng.uniform(0, 2 * np.pi, hosted.sum())
        pa = np.deg2rad(g["pa"].to_numpy())
        q = g["axis_ratio"].to_numpy()
        du, dv = r * np.cos(phi), r * q * np.sin(phi)
        dx = du * np.sin(pa) + dv * np.cos(pa)  # towards east, PA from north
        dy = du * np.cos(pa) - dv * np.sin(pa)
        cosd = np.cos(np.deg2rad(g["dec"].to_numpy()))
        ra[hosted] = g["ra"].to_numpy() + dx / cosd
        dec[hosted] = g["dec"].to_numpy() + dy
        host[hosted] = g.iloc[:, 0].to_numpy() if "gal_id" not in g else g["gal_id"].to_numpy()
    ratio = np.maximum(tau_fall / tau_rise - 1.0, 1e-3)
    t_peak = t0 + tau_rise * np.log(ratio)
    ids = (np.int64(pix) << np.int64(20)) + np.int64(block % 4096) * 256 + np.arange(n)
    return pd.DataFrame(
        {
            "transient_id": ids.astype(np.int64),
            "ra": ra % 360.0,
            "dec": dec,
            "host_id": host,
            "t0": t0,
            "tau_rise": tau_rise,
            "tau_fall": tau_fall,
            "peak_mag": peak,
            "t_peak": t_peak,
        }
    )


def transient_mag(tr: pd.DataFrame, band: str, mjd: float) -> np.ndarray:
    """Magnitude of each transient in a PS1/ZTF band at ``mjd`` (inf before explosion)."""
    dt = mjd - tr["t0"].to_numpy()
    tr_, tf = tr["tau_rise"].to_numpy(), tr["tau_fall"].to_numpy()

    def bazin(t):
        return np.exp(-t / tf) / (1.0 + np.exp(-t / tr_))

    norm = bazin(tr["t_peak"].to_numpy() - tr["t0"].to_numpy())
    with np.errstate(over="ignore", divide="ignore"):
        flux = bazin(dt) / norm
        mag_r = tr["peak_mag"].to_numpy() - 2.5 * np.log10(flux)
    since_peak = mjd - tr["t_peak"].to_numpy()
    g_r = np.clip(-0.1 + 0.025 * since_peak, -0.3, 1.2)
    r_i = np.clip(-0.05 + 0.012 * since_peak, -0.2, 0.6)
    offset = {"g": g_r, "r": 0.0, "i": -r_i, "z": -r_i - 0.1}[band]
    mag = mag_r + offset
    return np.where(dt > -1.0 * tr_, mag, np.inf)  # negligible before ~one rise time


def flares_in_pixel(
    pix: int, night_mjd: int, seed: int, stars: pd.DataFrame, rate: float = 1.0
) -> pd.DataFrame:
    """Stellar flares on stars of one pixel during one night (``night_mjd`` = floor of MJD).

    Returns ``star_id, t_start (MJD), tau (days), amp_g`` where ``amp_g`` is the peak flux of
    the flare in units of the quiescent g-band flux (r gets half, i a third).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, _TAG_FLARE, pix, night_mjd]))
    cand = stars[(stars["r"] > 14.0) & (stars["r"] < 20.0)] if len(stars) else stars
    n = min(rng.poisson(rate * PIXEL_AREA_DEG2), len(cand))
    if n == 0:
        return pd.DataFrame({"star_id": [], "t_start": [], "tau": [], "amp_g": []})
    pick = cand.iloc[rng.choice(len(cand), n, replace=False)]
    return pd.DataFrame(
        {
            "star_id": pick["star_id"].to_numpy(),
            "t_start": night_mjd + rng.uniform(0.08, 0.55, n),
            "tau": rng.uniform(5.0, 40.0, n) / 1440.0,
            "amp_g": 10 ** rng.uniform(-0.5, 1.0, n),
        }
    )


def flare_factor(flares: pd.DataFrame, band: str, mjd: float) -> np.ndarray:
    """Multiplicative flux factor (>= 1) of each flaring star at ``mjd``."""
    dt = mjd - flares["t_start"].to_numpy()
    scale = {"g": 1.0, "r": 0.5, "i": 0.33, "z": 0.25}[band]
    rise = 1.0 / 1440.0
    prof = np.where(
        dt < 0, 0.0, np.where(dt < rise, dt / rise, np.exp(-(dt - rise) / flares["tau"].to_numpy()))
    )
    return 1.0 + scale * flares["amp_g"].to_numpy() * prof
