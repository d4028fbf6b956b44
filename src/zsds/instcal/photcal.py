"""Photometric calibration against the PS1 DR2 catalog: m_PS1 - m_inst = ZP + b * colour.

This is the ZTF solution (ES Eq. 2): per image, a linear fit of the PS1 magnitude minus the
instrumental PSF-fit magnitude against the PS1 colour (g-r for g and r, r-i for i), giving MAGZP,
CLRCOEFF, their uncertainties and covariance, and the robust statistics ZTF stores (ZPMED,
MAGZPRMS, NMATCHES, CLRMED, CLRRMS). Calibrated magnitudes follow
``m = m_inst + MAGZP + CLRCOEFF * colour``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from astropy.stats import mad_std
from scipy.spatial import cKDTree

from zsds.core.instrument import Filter
from zsds.core.sphere import chord_length, unit_vectors


@dataclass(frozen=True)
class PhotCalConfig:
    """Options of the zero-point fit.

    ``colour_range`` is the stellar locus where the colour term is linear. ``min_sgscore``
    keeps point sources only: PS1 ``ps_score`` (the star/galaxy score ZTF calls sgscore) at
    least this. Rows whose score is unknown (NaN: a PS1 catalogue without PS1-PSC scores) are
    kept and left to the sigma clipping.
    """

    match_radius_arcsec: float = 1.5  #: PSF-fit source to PS1 match radius (arcsec)
    bright_limit: float = 14.5  #: brightest PS1 mag used (PS1 saturates near 13.5-14)
    faint_limit: float = 19.5  #: faintest PS1 mag used (well above both catalogues' noise)
    max_inst_err: float = 0.05  #: largest instrumental magnitude error accepted (mag)
    colour_range: tuple[float, float] = (-0.2, 1.6)  #: PS1 colours of calibrators (linear locus)
    min_sgscore: float = 0.8  #: least PS1 ``ps_score`` (sgscore): stars only; NaN kept
    clip_sigma: float = 3.0  #: outlier rejection of the iterative fit (sigma)
    sys_floor: float = 0.01  #: added in quadrature to each calibrator's error for weights (mag)
    min_matches: int = 20  #: fewer clean calibrators: the fit fails (QA flag, no wrong ZP)


@dataclass(frozen=True)
class PhotCalResult:
    """Outcome of the zero-point fit (all magnitudes for fluxes in DN per exposure)."""

    ok: bool  #: whether the fit succeeded
    message: str  #: summary, or why the fit failed
    magzp: float = np.nan  #: magnitude zero point (MAGZP)
    magzpunc: float = np.nan  #: uncertainty of MAGZP (mag)
    magzprms: float = np.nan  #: robust rms of the calibrator residuals (mag)
    clrcoeff: float = np.nan  #: linear colour coefficient (CLRCOEFF)
    clrcounc: float = np.nan  #: uncertainty of CLRCOEFF
    zpclrcov: float = np.nan  #: covariance of MAGZP and CLRCOEFF
    zpmed: float = np.nan  #: median of m_PS1 - m_inst, no colour term (mag)
    nmatches: int = 0  #: PS1 calibrators used
    clrmed: float = np.nan  #: median colour of the calibrators (mag)
    clrrms: float = np.nan  #: rms colour of the calibrators (mag)
    pcolor: str = ""  #: PS1 colour of the colour term
    used_sources: np.ndarray | None = None  #: calibrators' indices into the input sources
    used_refs: np.ndarray | None = None  #: calibrators' indices into the reference table

    def header_cards(self) -> list[tuple[str, object, str]]:
        """FITS cards as ZTF writes them in ``sciimg.fits``."""

        def f(v: float) -> float:
            return float(v) if np.isfinite(v) else -999.0

        return [
            ("MAGZP", f(self.magzp), "magnitude zero point (DN, this exposure)"),
            ("MAGZPUNC", f(self.magzpunc), "uncertainty in MAGZP (mag)"),
            ("MAGZPRMS", f(self.magzprms), "robust rms of calibrator residuals (mag)"),
            ("CLRCOEFF", f(self.clrcoeff), "linear colour coefficient"),
            ("CLRCOUNC", f(self.clrcounc), "uncertainty in CLRCOEFF"),
            ("ZPCLRCOV", f(self.zpclrcov), "covariance of MAGZP and CLRCOEFF"),
            ("ZPMED", f(self.zpmed), "median of m_PS1 - m_inst (no colour term)"),
            ("NMATCHES", int(self.nmatches), "number of PS1 calibrators used"),
            ("CLRMED", f(self.clrmed), "median colour of calibrators"),
            ("CLRRMS", f(self.clrrms), "rms colour of calibrators"),
            ("PCOLOR", self.pcolor, "PS1 colour used for the colour term"),
        ]


def match_sky(
    ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray, radius_arcsec: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest neighbour of each position 1 among positions 2 within a radius.

    Returns (index1, index2, separation_arcsec) of the matched pairs.
    """
    if len(ra1) == 0 or len(ra2) == 0:
        e = np.array([], int)
        return e, e, np.array([])
    dist, j = cKDTree(unit_vectors(ra2, dec2)).query(unit_vectors(ra1, dec1),
                                                     distance_upper_bound=chord_length(radius_arcsec))
    i = np.nonzero(np.isfinite(dist))[0]
    sep = np.rad2deg(2 * np.arcsin(dist[i] / 2)) * 3600.0
    return i, j[i], sep


def photometric_calibration(
    mag_inst: np.ndarray,
    mag_inst_err: np.ndarray,
    ra: np.ndarray,
    dec: np.ndarray,
    ps1: pd.DataFrame,
    filt: Filter,
    config: PhotCalConfig = PhotCalConfig(),
) -> PhotCalResult:
    """Fit ``m_PS1 - m_inst = ZP + b * colour`` with sigma clipping and inverse-variance weights.

    Parameters
    ----------
    mag_inst, mag_inst_err : ndarray
        Instrumental PSF-fit magnitudes ``-2.5 log10(flux_DN)`` and their errors.
    ra, dec : ndarray
        Calibrated positions of the sources (deg).
    ps1 : DataFrame
        PS1 DR2 rows around the image, published names: ``raMean``, ``decMean``,
        ``gMeanPSFMag``, ``gMeanPSFMagErr``, ... and ``ps_score``.
    filt : Filter

    Returns
    -------
    PhotCalResult
        ``ok=False`` with a message when too few clean calibrators remain.
    """
    band = filt.name
    c1, c2 = filt.props.colour_bands
    pcolor = f"{c1}-{c2}"
    i, j, _ = match_sky(
        ra, dec, ps1["raMean"].to_numpy(), ps1["decMean"].to_numpy(), config.match_radius_arcsec
    )
    ref = ps1.iloc[j]
    m_ref = ref[f"{band}MeanPSFMag"].to_numpy(float)
    e_ref = ref[f"{band}MeanPSFMagErr"].to_numpy(float)
    colour = ref[f"{c1}MeanPSFMag"].to_numpy(float) - ref[f"{c2}MeanPSFMag"].to_numpy(float)
    score = ref["ps_score"].to_numpy(float)
    mi, ei = mag_inst[i], mag_inst_err[i]
    good = (
        np.isfinite(m_ref)
        & np.isfinite(colour)
        & np.isfinite(mi)
        & np.isfinite(ei)
        & (m_ref > config.bright_limit)
        & (m_ref < config.faint_limit)
        & (ei < config.max_inst_err)
        & (colour > config.colour_range[0])
        & (colour < config.colour_range[1])
        & ~(score < config.min_sgscore)  # NaN (unknown) passes
    )
    if good.sum() < config.min_matches:
        return PhotCalResult(
            False,
            f"only {int(good.sum())} PS1 calibrators (need {config.min_matches})",
            nmatches=int(good.sum()),
            pcolor=pcolor,
        )
    y = m_ref - mi
    w = 1.0 / (ei**2 + e_ref**2 + config.sys_floor**2)
    keep = good.copy()
    coef = np.array([np.median(y[good]), 0.0])
    cov = np.full((2, 2), np.nan)
    for _ in range(10):
        a = np.column_stack([np.ones(keep.sum()), colour[keep]])
        aw = a * w[keep, None]
        cov = np.linalg.inv(a.T @ aw)
        coef = cov @ (aw.T @ y[keep])
        resid = y - coef[0] - coef[1] * colour
        # Robust width (MAD) so that outliers do not inflate the clipping threshold.
        sig = mad_std(resid[keep])
        new = good & (
            np.abs(resid)
            < config.clip_sigma
            * max(sig, 1e-4)
            * np.sqrt(1.0 + (ei**2 + e_ref**2) / max(sig**2, 1e-8))
        )
        if np.array_equal(new, keep):
            break
        keep = new
    n = int(keep.sum())
    if n < config.min_matches:
        return PhotCalResult(
            False, f"only {n} PS1 calibrators after clipping", nmatches=n, pcolor=pcolor
        )
    resid = y - coef[0] - coef[1] * colour
    chi2 = float(np.sum(w[keep] * resid[keep] ** 2) / max(n - 2, 1))
    cov = cov * max(chi2, 1.0)  # scale by the reduced chi2 when the errors are underestimated
    rms = float(mad_std(resid[keep]))
    return PhotCalResult(
        ok=True,
        message="ok",
        magzp=float(coef[0]),
        magzpunc=float(np.sqrt(cov[0, 0])),
        magzprms=rms,
        clrcoeff=float(coef[1]),
        clrcounc=float(np.sqrt(cov[1, 1])),
        zpclrcov=float(cov[0, 1]),
        zpmed=float(np.median(y[keep])),
        nmatches=n,
        clrmed=float(np.median(colour[keep])),
        clrrms=float(np.std(colour[keep])),
        pcolor=pcolor,
        used_sources=i[keep],
        used_refs=j[keep],
    )
