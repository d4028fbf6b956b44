"""Simulated sky: true stars/galaxies per HEALPix pixel and PS1/Gaia-like reference catalogues."""

from zsds.sky.model import (
    EPOCH_MJD,
    SKY_ORDER,
    SkyModel,
    magnitudes_at,
    pixels_in_cone,
    positions_at,
    star_density,
    true_galaxies,
    true_stars,
)
from zsds.sky.refcat import (
    MissingPartitionError,
    RefCatalog,
    ensure_refcats,
    make_gaia_like,
    make_ps1_like,
)

__all__ = [
    "EPOCH_MJD",
    "SKY_ORDER",
    "MissingPartitionError",
    "RefCatalog",
    "SkyModel",
    "ensure_refcats",
    "magnitudes_at",
    "make_gaia_like",
    "make_ps1_like",
    "pixels_in_cone",
    "positions_at",
    "star_density",
    "true_galaxies",
    "true_stars",
]
