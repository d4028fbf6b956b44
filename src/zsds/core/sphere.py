"""Sky geometry on the unit sphere, shared by every stage (cross-matching, cones, footprints).

Positions are ICRS right ascension and declination in degrees throughout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["angular_distance_deg", "chord_length", "unit_vectors"]


def unit_vectors(ra: Any, dec: Any) -> np.ndarray:
    """Cartesian unit vectors of positions: shape ``(..., 3)`` (``(n, 3)`` for n positions)."""
    r, d = np.deg2rad(np.asarray(ra, float)), np.deg2rad(np.asarray(dec, float))
    cd = np.cos(d)
    return np.stack([cd * np.cos(r), cd * np.sin(r), np.sin(d)], axis=-1)


def chord_length(radius_arcsec: float) -> float:
    """Straight-line distance between unit vectors separated by ``radius_arcsec``."""
    return 2.0 * np.sin(np.deg2rad(radius_arcsec / 3600.0) / 2.0)


def angular_distance_deg(ra1: Any, dec1: Any, ra2: Any, dec2: Any) -> np.ndarray:
    """Great-circle distance (deg) by the haversine formula (accurate at small separations)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, np.float64)) for v in (ra1, dec1, ra2, dec2))
    h = (np.sin((dec2 - dec1) / 2) ** 2
         + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2)
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))
