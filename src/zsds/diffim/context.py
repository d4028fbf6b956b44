"""Catalogue context of candidates: nearest reference source, PS1 and Gaia neighbours.

The ZTF candidate record carries the nearest source of the reference image's PSF catalogue
(``distnr`` in pixels, ``magnr``, ``sigmagnr``, ``chinr``, ``sharpnr``, ``ranr``, ``decnr``; within
30 px), the three nearest PS1 sources within 30" (``sgmagN``..``szmagN``, ``sgscoreN``,
``distpsnrN``, ``objectidpsN``, ``nmtchps``) and the nearest Gaia sources within 90" (``neargaia``,
``maggaia``; ``neargaiabright``, ``maggaiabright`` for G < 14); see
``shared/reference/ZTF_REFERENCE.md`` section 2.4 item 7. Absent values are the schema's -999
sentinel where the field is not nullable and ``NaN`` (null) otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from zsds.core.instrument import PIXEL_SCALE
from zsds.core.sphere import unit_vectors

__all__ = ["gaia_context", "nearest_reference", "ps1_context"]

NONE = -999.0


def _chord(arcsec: float) -> float:
    return 2.0 * np.sin(np.radians(arcsec / 3600.0) / 2.0)


def _arcsec(chord: np.ndarray) -> np.ndarray:
    return np.degrees(2.0 * np.arcsin(np.clip(chord / 2.0, 0, 1))) * 3600.0


def nearest_reference(cand: pd.DataFrame, refcat: pd.DataFrame, radius_px: float = 30.0
                      ) -> pd.DataFrame:
    """Nearest reference PSF-catalogue source (columns ``ra, dec, mag, sigmag, chi, sharp``)."""
    n = len(cand)
    out = pd.DataFrame({"distnr": np.full(n, NONE), "magnr": np.nan, "sigmagnr": np.nan,
                        "chinr": np.nan, "sharpnr": np.nan, "ranr": NONE, "decnr": NONE})
    if n == 0 or len(refcat) == 0:
        return out
    tree = cKDTree(unit_vectors(refcat["ra"].to_numpy(float), refcat["dec"].to_numpy(float)))
    d, j = tree.query(unit_vectors(cand["ra"].to_numpy(float), cand["dec"].to_numpy(float)),
                      distance_upper_bound=_chord(radius_px * PIXEL_SCALE))
    ok = np.isfinite(d)
    jj = j[ok]
    out.loc[ok, "distnr"] = _arcsec(d[ok]) / PIXEL_SCALE
    for dst, src in (("magnr", "mag"), ("sigmagnr", "sigmag"), ("chinr", "chi"),
                     ("sharpnr", "sharp"), ("ranr", "ra"), ("decnr", "dec")):
        out.loc[ok, dst] = refcat[src].to_numpy(float)[jj]
    return out


def ps1_context(cand: pd.DataFrame, ps1: pd.DataFrame, radius: float = 30.0) -> pd.DataFrame:
    """The three nearest PS1 sources within ``radius`` arcsec, and their count (``nmtchps``).

    ``ps1`` holds PS1 DR2 rows with their published names (``objID``, ``raMean``, ``decMean``,
    ``gMeanPSFMag`` .. ``zMeanPSFMag``, ``ps_score``; :data:`zsds.sky.refcat.PS1_DR2`).
    """
    n = len(cand)
    cols: dict[str, np.ndarray] = {"nmtchps": np.zeros(n, int)}
    for k in (1, 2, 3):
        for b in "griz":
            cols[f"s{b}mag{k}"] = np.full(n, np.nan)
        cols[f"sgscore{k}"] = np.full(n, np.nan)
        cols[f"distpsnr{k}"] = np.full(n, np.nan)
        cols[f"objectidps{k}"] = np.full(n, -999, dtype=np.int64)
    if n and len(ps1):
        tree = cKDTree(unit_vectors(ps1["raMean"].to_numpy(float), ps1["decMean"].to_numpy(float)))
        xyz = unit_vectors(cand["ra"].to_numpy(float), cand["dec"].to_numpy(float))
        cols["nmtchps"] = np.array([len(v) for v in tree.query_ball_point(xyz, _chord(radius))])
        d, j = tree.query(xyz, k=3, distance_upper_bound=_chord(radius))
        for k in (1, 2, 3):
            ok = np.isfinite(d[:, k - 1])
            jj = j[ok, k - 1]
            for b in "griz":
                cols[f"s{b}mag{k}"][ok] = ps1[f"{b}MeanPSFMag"].to_numpy(float)[jj]
            cols[f"sgscore{k}"][ok] = ps1["ps_score"].to_numpy(float)[jj]
            cols[f"distpsnr{k}"][ok] = _arcsec(d[ok, k - 1])
            cols[f"objectidps{k}"][ok] = ps1["objID"].to_numpy(np.int64)[jj]
    return pd.DataFrame(cols)


def gaia_context(cand: pd.DataFrame, gaia: pd.DataFrame, radius: float = 90.0,
                 bright: float = 14.0) -> pd.DataFrame:
    """Nearest Gaia source and nearest one brighter than G = ``bright`` within ``radius``".

    ``gaia`` holds Gaia DR3 rows (``ra``, ``dec``, ``phot_g_mean_mag``), ideally at the epoch.
    """
    n = len(cand)
    out = pd.DataFrame({"neargaia": np.full(n, np.nan), "maggaia": np.nan,
                        "neargaiabright": np.nan, "maggaiabright": np.nan})
    if n == 0 or len(gaia) == 0:
        return out
    xyz = unit_vectors(cand["ra"].to_numpy(float), cand["dec"].to_numpy(float))
    g = gaia["phot_g_mean_mag"].to_numpy(float)
    for sel, dcol, mcol in ((np.ones(len(gaia), bool), "neargaia", "maggaia"),
                            (g < bright, "neargaiabright", "maggaiabright")):
        if not sel.any():
            continue
        sub = gaia[sel]
        tree = cKDTree(unit_vectors(sub["ra"].to_numpy(float), sub["dec"].to_numpy(float)))
        d, j = tree.query(xyz, distance_upper_bound=_chord(radius))
        ok = np.isfinite(d)
        out.loc[ok, dcol] = _arcsec(d[ok])
        out.loc[ok, mcol] = g[sel][j[ok]]
    return out
