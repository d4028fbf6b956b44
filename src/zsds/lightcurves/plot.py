"""Light-curve figure: points with errors per band, the periodogram, the folded curve."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zsds.lightcurves.build import BAD_CATFLAGS

BAND_COLOURS = {1: "tab:green", 2: "tab:red", 3: "goldenrod"}
BAND_NAMES = {1: "zg", 2: "zr", 3: "zi"}


@dataclass
class Curve:
    """One object's light curve (one band) for plotting."""

    oid: int
    fid: int
    points: np.ndarray  # sourcedata/transientdata rows
    period: float | None = None


def _periodogram(t: np.ndarray, m: np.ndarray, e: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    from astropy.timeseries import LombScargle

    base = max(float(np.ptp(t)), 1.0)
    freq = np.linspace(1.0 / (2 * base), 10.0, int(200 * base * 10) // 10 + 2000)
    power = LombScargle(t, m, e).power(freq)
    return freq, power, float(1.0 / freq[np.argmax(power)])


def plot_lightcurves(curves: list[Curve], path: Path, title: str = "") -> Path:
    """Write a PNG: light curves per band (top), Lomb-Scargle periodogram of the band with
    most good points (bottom left) and that band folded at its best period (bottom right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(11, 7.5), constrained_layout=True)
    gs = fig.add_gridspec(2, 2)
    ax = fig.add_subplot(gs[0, :])
    best = None
    for c in curves:
        p = c.points
        good = (p["catflags"] & BAD_CATFLAGS) == 0
        col = BAND_COLOURS.get(c.fid, "k")
        lab = f"{BAND_NAMES.get(c.fid, c.fid)} oid {c.oid} ({good.sum()} good)"
        ax.errorbar(p["mjd"][good], p["mag"][good], p["magerr"][good], fmt="o", ms=3,
                    color=col, label=lab, elinewidth=0.8)
        if (~good).any():
            ax.plot(p["mjd"][~good], p["mag"][~good], "x", color="0.6", ms=4)
        if good.sum() >= 10 and (best is None or good.sum() > best[1].sum()):
            best = (c, good)
    ax.invert_yaxis()
    ax.set_xlabel("MJD")
    ax.set_ylabel("mag (refined)")
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "zsds light curves", fontsize=10)
    axp = fig.add_subplot(gs[1, 0])
    axf = fig.add_subplot(gs[1, 1])
    if best is not None:
        c, good = best
        t, m, e = (c.points[k][good].astype(float) for k in ("mjd", "mag", "magerr"))
        freq, power, p_best = _periodogram(t, m, e)
        period = c.period if c.period and np.isfinite(c.period) else p_best
        axp.plot(1.0 / freq, power, lw=0.7, color=BAND_COLOURS.get(c.fid, "k"))
        axp.axvline(period, color="k", ls=":", lw=0.8)
        axp.set_xscale("log")
        axp.set_xlabel("period (d)")
        axp.set_ylabel("Lomb-Scargle power")
        axp.set_title(f"periodogram: best {period:.5f} d", fontsize=9)
        phase = np.mod(t - t.min(), period) / period
        for k in (0, 1):
            axf.errorbar(phase + k, m, e, fmt="o", ms=3, color=BAND_COLOURS.get(c.fid, "k"),
                         elinewidth=0.8)
        axf.invert_yaxis()
        axf.set_xlabel(f"phase (P = {period:.5f} d)")
        axf.set_ylabel("mag")
    else:
        for a in (axp, axf):
            a.text(0.5, 0.5, "fewer than 10 good points", ha="center", transform=a.transAxes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
