"""Simulated sky (true stars/galaxies per HEALPix pixel) and the Gaia DR3 / PS1 DR2 reference
catalogues (real or simulated HATS catalogues, one reader)."""

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
    GAIA_DR3,
    PS1_DR2,
    MissingPartitionError,
    RefCatalog,
    RefCatalogError,
    ensure_refcats,
    make_gaia_like,
    make_ps1_like,
    open_refcat,
    propagate_to_epoch,
)

__all__ = [
    "EPOCH_MJD",
    "GAIA_DR3",
    "PS1_DR2",
    "SKY_ORDER",
    "MissingPartitionError",
    "RefCatalog",
    "RefCatalogError",
    "SkyModel",
    "ensure_refcats",
    "magnitudes_at",
    "make_gaia_like",
    "make_ps1_like",
    "open_refcat",
    "pixels_in_cone",
    "positions_at",
    "propagate_to_epoch",
    "star_density",
    "true_galaxies",
    "true_stars",
]
