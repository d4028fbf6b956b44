"""Pieces of HATS catalogue writing shared by the light-curve catalogue and the simulated
reference catalogues (both write partitions and metadata with the hats library itself)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pandas as pd
import pyarrow as pa
from hats.pixel_math.spatial_index import SPATIAL_INDEX_COLUMN

__all__ = ["arrow_table", "builder_name"]


def builder_name() -> str:
    """The ``hats_builder`` provenance string: ``zsds v<version>`` (``zsds`` from a source
    tree that is not installed)."""
    try:
        return f"zsds v{version('zsds')}"
    except PackageNotFoundError:
        return "zsds"


def arrow_table(df: pd.DataFrame) -> pa.Table:
    """``df`` as an Arrow table without pandas metadata (as lsdb writes its partitions) and
    without ``_healpix_29`` (recomputed by the caller)."""
    if isinstance(df.index, pd.MultiIndex) or df.index.name is not None:
        df = df.reset_index()  # a named index is data (e.g. oid): keep it as a column
    df = df.drop(columns=[SPATIAL_INDEX_COLUMN], errors="ignore")  # e.g. an lsdb result's
    table = pa.Table.from_pandas(df, preserve_index=False)
    return table.replace_schema_metadata(None)
