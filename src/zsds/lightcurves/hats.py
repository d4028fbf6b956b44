"""Objects catalogue of the light curves as a HATS catalogue (HEALPix-partitioned Parquet).

The catalogue is readable by ``hats.read_hats`` and ``lsdb.read_hats``.  It is written with
the hats 0.11 building blocks that ``lsdb``'s own writer uses (``compute_spatial_index``,
``generate_alignment``, ``pixel_catalog_file``, ``get_parquet_write_table_kwargs``,
``write_parquet_metadata``, ``PartitionInfo``, ``write_skymap``, ``TableProperties``) in one
process (:func:`write_hats_catalog`, for a night's or a field's objects), or by ``hats-import``
on a Dask cluster (:func:`import_hats_catalog`, the survey-scale path)::

    <root>/<name>/
        hats.properties, properties        catalogue properties (identical files)
        partition_info.csv                 Norder,Npix of every partition
        per_partition_statistics.parquet   column min/max/nulls per partition
        point_map.fits, skymap.fits        object counts per HEALPix pixel (skymap order)
        dataset/_common_metadata           Parquet schema
        dataset/_metadata                  all row-group footers
        dataset/Norder=K/Dir=D/Npix=N.parquet   one file per partition, sorted by _healpix_29

Each row carries ``_healpix_29`` (nested HEALPix index at order 29, int64, last column), which
lsdb uses as the index.  The catalogue is rewritten whole (atomically) from all matchfiles.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hats.pixel_math.healpix_shim as hp
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hats.catalog import PartitionInfo, TableProperties
from hats.catalog.dataset.hats_properties import HatsProperties
from hats.io import file_io, paths, write_parquet_metadata
from hats.io.file_io.file_io import get_parquet_write_table_kwargs
from hats.io.skymap import write_skymap
from hats.pixel_math import HealpixPixel, compute_spatial_index, generate_alignment
from hats.pixel_math.spatial_index import SPATIAL_INDEX_COLUMN, SPATIAL_INDEX_ORDER

from zsds.io.hatsio import arrow_table, builder_name

__all__ = ["import_hats_catalog", "read_hats_cone", "write_hats_catalog"]

#: Up to this order the partitions are chosen by hats' ``generate_alignment`` (Python loops
#: over every pixel of every order: ~0.4 s at order 7, 4x more per order); above it by
#: :func:`_sparse_alignment`, the same rule over the occupied pixels only.
_HATS_ALIGNMENT_MAX_ORDER = 7
#: The skymap is at least order 8 (as lsdb writes it) and at most 10 (a dense int64 map of
#: 12 * 4**10 pixels is 100 MB).
_SKYMAP_ORDER_MIN, _SKYMAP_ORDER_MAX = 8, 10


def _shift(order: int) -> int:
    """Bit shift from ``_healpix_29`` to the pixel number at ``order``."""
    return 2 * (SPATIAL_INDEX_ORDER - order)


def _partition_order(h29_sorted: np.ndarray, max_rows: int) -> int:
    """Smallest HEALPix order at which no pixel holds more than ``max_rows`` objects."""
    for order in range(SPATIAL_INDEX_ORDER + 1):
        pix = h29_sorted >> _shift(order)
        edges = np.flatnonzero(np.diff(pix)) + 1
        if np.diff(edges, prepend=0, append=len(pix)).max() <= max_rows:
            return order
    raise ValueError(f"more than max_rows_per_partition={max_rows} objects share one position "
                     "(same _healpix_29); they cannot be split into partitions")


def _sparse_alignment(h29_sorted: np.ndarray, highest_order: int,
                      max_rows: int) -> list[tuple[int, int, int]]:
    """Partitions ``(order, pixel, rows)`` by the rule of hats' ``generate_alignment`` with
    ``drop_empty_siblings=True`` and ``lowest_order=0``, evaluated on the occupied pixels only
    (fast at any order, where hats loops over the dense histogram of all pixels).

    An occupied pixel of ``highest_order`` goes to its lowest-order ancestor that holds at most
    ``max_rows`` rows in more than one non-empty child; without such an ancestor it stays a
    partition of ``highest_order`` (an isolated group keeps a small pixel).
    """
    pix, counts = np.unique(h29_sorted >> _shift(highest_order), return_counts=True)
    final = np.full(len(pix), highest_order)
    for order in range(highest_order - 1, -1, -1):  # lower orders override higher ones
        parent = pix >> (2 * (highest_order - order))
        child = pix >> (2 * (highest_order - order - 1))
        starts = np.flatnonzero(np.diff(parent, prepend=-1))
        sums = np.add.reduceat(counts, starts)
        nchild = np.add.reduceat((np.diff(child, prepend=-1) != 0).astype(np.int64), starts)
        collapse = (nchild > 1) & (sums <= max_rows)
        final[np.repeat(collapse, np.diff(starts, append=len(pix)))] = order
    part_pix = pix >> (2 * (highest_order - final))
    keys, inverse = np.unique(np.stack([final, part_pix], axis=1), axis=0, return_inverse=True)
    rows = np.bincount(inverse.ravel(), weights=counts).astype(np.int64)
    return [(int(o), int(p), int(n)) for (o, p), n in zip(keys, rows, strict=True)]


def _partitions(h29_sorted: np.ndarray, max_rows: int) -> list[tuple[int, int, int]]:
    """Partition pixels ``(order, pixel, rows)``, sorted by ``_healpix_29`` range.

    As ``lsdb.from_dataframe(partition_rows=max_rows)`` (and hats-import) partition: the
    highest order is the smallest at which every pixel fits (hats' ``use_lower_order``), and
    pixels are merged upwards while they fit, except that a pixel whose siblings are all empty
    is not merged (``drop_empty_siblings=True``), so sparse isolated regions keep small pixels.
    """
    highest = _partition_order(h29_sorted, max_rows)
    if highest <= _HATS_ALIGNMENT_MAX_ORDER:
        histogram = np.bincount(h29_sorted >> _shift(highest), minlength=hp.order2npix(highest))
        alignment = generate_alignment(histogram.astype(np.int64), highest_order=highest,
                                       lowest_order=0, threshold=max_rows,
                                       drop_empty_siblings=True)
        parts = {(int(a[0]), int(a[1]), int(a[2])) for a in alignment if a is not None}
    else:
        parts = set(_sparse_alignment(h29_sorted, highest, max_rows))
    return sorted(parts, key=lambda p: p[1] << _shift(p[0]))


def write_hats_catalog(root: Path, df: pd.DataFrame, name: str = "ztf_lc_objects",
                       ra_col: str = "ra", dec_col: str = "dec",
                       max_rows_per_partition: int = 1_000_000) -> Path:
    """Write ``df`` as the HATS object catalogue ``root/name``, replacing any previous one.

    Parameters
    ----------
    root : Path
        Directory holding the catalogue (created if needed).
    df : pandas.DataFrame
        One row per object, with coordinates in degrees (ICRS).  A named index is written as a
        column; an unnamed one is dropped.  An existing ``_healpix_29`` (column or index, as
        in an lsdb result) is recomputed.
    name : str, optional
        Catalogue name: the directory name and ``obs_collection`` property.
    ra_col, dec_col : str, optional
        Coordinate columns.
    max_rows_per_partition : int, optional
        No partition holds more rows.  Partitions are chosen as
        ``lsdb.from_dataframe(partition_rows=...)`` chooses them (see :func:`_partitions`),
        with no upper limit on the order.

    Returns
    -------
    Path
        The catalogue directory ``root/name``.

    Raises
    ------
    ValueError
        If ``df`` is empty, lacks the coordinate columns, has non-finite or out-of-range
        coordinates, or more than ``max_rows_per_partition`` rows at one position.

    Notes
    -----
    The catalogue is built in ``root/.name.tmp`` and renamed into place; the previous one is
    moved aside first and deleted after, so readers see either the old or the new catalogue
    (``root/name`` is briefly absent between the two renames).
    """
    root = Path(root)
    if max_rows_per_partition < 1:
        raise ValueError("max_rows_per_partition must be >= 1")
    missing = [c for c in (ra_col, dec_col) if c not in df.columns]
    if missing:
        raise ValueError(f"df has no column(s) {missing}")
    if len(df) == 0:
        raise ValueError("cannot write an empty HATS catalogue")
    ra = df[ra_col].to_numpy(dtype=np.float64)
    dec = df[dec_col].to_numpy(dtype=np.float64)
    if not (np.isfinite(ra).all() and np.isfinite(dec).all()) or np.abs(dec).max() > 90:
        raise ValueError(f"{ra_col}/{dec_col} must be finite, with |{dec_col}| <= 90")

    h29 = compute_spatial_index(ra, dec)  # hats' own (cdshealpix), as lsdb computes it
    order = np.argsort(h29, kind="stable")
    h29 = h29[order]
    table = arrow_table(df)
    table = table.take(pa.array(order)).append_column(
        SPATIAL_INDEX_COLUMN, pa.array(h29, pa.int64()))
    parts = _partitions(h29, max_rows_per_partition)

    return _replace(root, name,
                    lambda tmp: _write_catalog(tmp, table, h29, parts, name, ra_col, dec_col))


def _replace(root: Path, name: str, build: Callable[[Path], object]) -> Path:
    """Build a catalogue with ``build(tmpdir)`` and move it to ``root/name``: the previous one
    is moved aside first and deleted after, so readers see either the old or the new one."""
    root.mkdir(parents=True, exist_ok=True)
    final, tmp, old = root / name, root / f".{name}.tmp", root / f".{name}.old"
    for leftover in (tmp, old):  # from an interrupted earlier run
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        build(tmp)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            old.rename(final)  # put the previous catalogue back
        raise
    shutil.rmtree(old, ignore_errors=True)
    return final


def import_hats_catalog(root: Path, files: Sequence[Path], client: Any,
                        name: str = "ztf_lc_objects", ra_col: str = "ra", dec_col: str = "dec",
                        max_rows_per_partition: int = 1_000_000) -> Path:
    """Write the HATS catalogue of many Parquet files on a Dask cluster, with hats-import.

    The survey-scale path (ZTF: ~10^9 objects): hats-import maps the files' positions to a
    HEALPix histogram, chooses the partitions, splits every file into per-partition shards
    and reduces each partition, all as tasks of ``client``'s cluster, so no process holds
    more than a partition.  The result is the same kind of catalogue as
    :func:`write_hats_catalog` (read by ``lsdb.read_hats``), replaced in the same way.

    Parameters
    ----------
    root : Path
        Directory holding the catalogue.
    files : sequence of Path
        Parquet files of objects (any columns, ``ra_col``/``dec_col`` in degrees); the
        workers of the cluster must see them and ``root``.
    client : distributed.Client
        The cluster to run on.
    name, ra_col, dec_col, max_rows_per_partition
        As :func:`write_hats_catalog`.
    """
    from hats_import.catalog.arguments import ImportArguments
    from hats_import.pipeline import pipeline_with_client

    files = [str(f) for f in files]
    if not files:
        raise ValueError("cannot write an empty HATS catalogue")
    root = Path(root)

    def build(tmp: Path) -> None:
        out, work = tmp.parent / f".{name}.import", tmp.parent / f".{name}.import-tmp"
        args = ImportArguments(
            output_path=out, output_artifact_name=name, input_file_list=files,
            file_reader="parquet", ra_column=ra_col, dec_column=dec_col,
            pixel_threshold=max_rows_per_partition, tmp_dir=work, resume=False,
            progress_bar=False)
        shutil.rmtree(out, ignore_errors=True)
        try:
            pipeline_with_client(args, client)
            (out / name).rename(tmp)
        finally:
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)

    return _replace(root, name, build)


def _write_catalog(catdir: Path, table: pa.Table, h29: np.ndarray,
                   parts: list[tuple[int, int, int]], name: str, ra_col: str,
                   dec_col: str) -> None:
    """Write the partitions and every metadata file of the catalogue into ``catdir``."""
    write_kwargs = get_parquet_write_table_kwargs(table.schema)
    pixels = []
    for order, pixel, nrows in parts:
        lo = np.searchsorted(h29, pixel << _shift(order), side="left")
        hi = np.searchsorted(h29, (pixel + 1) << _shift(order), side="left")
        if hi - lo != nrows:  # partitions must cover exactly what the alignment counted
            raise AssertionError(f"pixel {order}/{pixel}: {hi - lo} rows, expected {nrows}")
        hp_pixel = HealpixPixel(order, pixel)
        path = paths.pixel_catalog_file(catdir, hp_pixel)
        file_io.make_directory(path.parent, exist_ok=True)
        pq.write_table(table.slice(lo, hi - lo), path.path, **write_kwargs)
        pixels.append(hp_pixel)

    write_parquet_metadata(catdir, create_metadata=True, create_per_partition_stats=True)
    partition_info = PartitionInfo.from_healpix(pixels)
    partition_info.write_to_file(paths.get_partition_info_pointer(catdir))

    hats_order = max(p[0] for p in parts)
    skymap_order = min(max(hats_order, _SKYMAP_ORDER_MIN), _SKYMAP_ORDER_MAX)
    skymap = np.bincount(h29 >> _shift(skymap_order),
                         minlength=hp.order2npix(skymap_order)).astype(np.int64)
    file_io.write_fits_image(skymap, paths.get_point_map_file_pointer(catdir))
    write_skymap(skymap, catdir)

    coverage = partition_info.calculate_fractional_coverage()
    properties = TableProperties(
        catalog_name=name,
        catalog_type="object",
        total_rows=len(table),
        ra_column=ra_col,
        dec_column=dec_col,
        healpix_column=SPATIAL_INDEX_COLUMN,
        healpix_order=SPATIAL_INDEX_ORDER,
        npix_suffix=".parquet",
        skymap_order=skymap_order,
        hats_max_rows=max(p[2] for p in parts),
        moc_sky_fraction=float(f"{coverage:.5g}"),
        hats_order=hats_order,
        **HatsProperties.new_provenance_dict(catdir, builder=builder_name()),
    )
    properties.to_properties_file(catdir)


def read_hats_cone(path: Path, ra: float, dec: float, radius_arcsec: float) -> pd.DataFrame:
    """Objects of a HATS catalogue within ``radius_arcsec`` of (``ra``, ``dec``), via lsdb.

    Parameters
    ----------
    path : Path
        Catalogue directory (as returned by :func:`write_hats_catalog`).
    ra, dec : float
        Cone centre (degrees).
    radius_arcsec : float
        Cone radius (arcsec).

    Returns
    -------
    pandas.DataFrame
        All columns, indexed by ``_healpix_29`` (lsdb's convention); empty (same columns) when
        no object is in the cone.
    """
    import lsdb  # heavy (dask): imported only when a cone search is made

    catalog = lsdb.read_hats(Path(path))
    result = catalog.cone_search(ra, dec, radius_arcsec).compute(progress_bar=False)
    return pd.DataFrame(result)
