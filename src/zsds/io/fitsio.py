"""Atomic FITS product writing.

Every product is written to a hidden temporary file next to its final name and renamed into
place, so a reader never sees half a file and re-running a step replaces a product whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from zsds import __version__


def write_hdul(hdul: fits.HDUList, path: Path) -> Path:
    """Write an HDU list atomically (temporary name, then rename), with FITS checksums."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    hdul.writeto(tmp, overwrite=True, checksum=True)
    os.replace(tmp, path)
    return path


def stamp_header(header: fits.Header | None = None) -> fits.Header:
    """Copy of a header with the software version recorded."""
    h = fits.Header() if header is None else header.copy()
    h["ZSDSVER"] = (__version__, "zsds software version")
    return h


def write_image(
    path: Path,
    data: np.ndarray,
    header: fits.Header | None = None,
    extra: list[fits.ImageHDU] | None = None,
) -> Path:
    """Write an image product (primary HDU) atomically."""
    hdul = fits.HDUList([fits.PrimaryHDU(data, header=stamp_header(header)), *(extra or [])])
    return write_hdul(hdul, path)


def write_table(
    path: Path, table: Table, header: fits.Header | None = None, name: str = "CATALOG"
) -> Path:
    """Write a FITS binary-table product (header-only primary + one table) atomically."""
    hdu = fits.table_to_hdu(table)
    hdu.name = name
    hdul = fits.HDUList([fits.PrimaryHDU(header=stamp_header(header)), hdu])
    return write_hdul(hdul, path)
