"""Reference (template) images: epoch selection and co-addition (pipeline 7)."""

from zsds.refs.coadd import CoaddConfig, CoaddResult, coadd, reference_grid
from zsds.refs.select import SelectConfig, candidates_from_headers, select_epochs

__all__ = [
    "CoaddConfig",
    "CoaddResult",
    "SelectConfig",
    "candidates_from_headers",
    "coadd",
    "reference_grid",
    "select_epochs",
]
