"""HATS objects catalogue: layout, hats/lsdb readability, partitioning, cone searches."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import hats
import lsdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord
from hats.pixel_math import compute_spatial_index, generate_alignment

from zsds.lightcurves.hats import (
    _HATS_ALIGNMENT_MAX_ORDER,
    _partitions,
    _sparse_alignment,
    read_hats_cone,
    write_hats_catalog,
)


def _patch(n: int, ra0: float, dec0: float, size: float, seed: int) -> pd.DataFrame:
    """``n`` objects uniform on the sphere within a ``size``-degree patch."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(ra0, ra0 + size, n)
    sin_dec = rng.uniform(np.sin(np.radians(dec0)), np.sin(np.radians(dec0 + size)), n)
    return pd.DataFrame({"oid": np.arange(n, dtype=np.int64) + 10**12, "ra": ra,
                         "dec": np.degrees(np.arcsin(sin_dec)),
                         "mag": rng.normal(18.0, 1.0, n).astype(np.float32),
                         "nobs": rng.integers(1, 500, n).astype(np.int32)})


def _brute_cone(df: pd.DataFrame, ra: float, dec: float, radius_arcsec: float,
                ra_col: str = "ra", dec_col: str = "dec") -> pd.DataFrame:
    sep = SkyCoord(df[ra_col].to_numpy() * u.deg, df[dec_col].to_numpy() * u.deg).separation(
        SkyCoord(ra * u.deg, dec * u.deg))
    return df[sep.arcsec <= radius_arcsec]


@pytest.fixture(scope="module")
def objects() -> pd.DataFrame:
    return _patch(20_000, 150.0, 10.0, 10.0, seed=1)


@pytest.fixture(scope="module")
def catalog(objects: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hats")
    return write_hats_catalog(root, objects, max_rows_per_partition=3000)


def test_layout(catalog: Path, objects: pd.DataFrame) -> None:
    assert catalog.name == "ztf_lc_objects"
    for name in ("hats.properties", "properties", "partition_info.csv", "skymap.fits",
                 "point_map.fits", "per_partition_statistics.parquet",
                 "dataset/_metadata", "dataset/_common_metadata"):
        assert (catalog / name).is_file(), name
    assert not any(p.name.startswith(".") for p in catalog.parent.iterdir())  # no tmp/old

    props = dict(line.split("=", 1) for line in (catalog / "hats.properties").read_text()
                 .splitlines() if "=" in line and not line.startswith("#"))
    assert props["dataproduct_type"] == "object"
    assert props["hats_nrows"] == "20000"
    assert props["hats_col_ra"] == "ra" and props["hats_col_dec"] == "dec"
    assert props["hats_col_healpix"] == "_healpix_29"
    assert int(props["hats_max_rows"]) <= 3000

    files = sorted((catalog / "dataset").glob("Norder=*/Dir=*/Npix=*.parquet"))
    info = pd.read_csv(catalog / "partition_info.csv")
    assert len(files) == len(info) > 1
    total = 0
    for f in files:
        order = int(f.parent.parent.name.split("=")[1])
        npix = int(f.stem.split("=")[1])
        assert f.parent.name == f"Dir={npix // 10_000 * 10_000}"
        t = pq.read_table(f)
        assert t.schema.names == ["oid", "ra", "dec", "mag", "nobs", "_healpix_29"]
        h29 = t["_healpix_29"].to_numpy()
        assert np.all(np.diff(h29) >= 0)  # sorted by _healpix_29
        assert np.all(h29 >> (2 * (29 - order)) == npix)  # rows belong to their pixel
        assert len(t) <= 3000
        total += len(t)
    assert total == 20_000
    assert pq.read_metadata(catalog / "dataset" / "_metadata").num_rows == 20_000


def test_readable_by_hats_and_lsdb(catalog: Path, objects: pd.DataFrame) -> None:
    hc = hats.read_hats(catalog)
    assert len(hc) == 20_000
    assert hc.catalog_info.total_rows == 20_000

    cat = lsdb.read_hats(catalog)
    assert cat.get_healpix_pixels() == hc.get_healpix_pixels()
    full = cat.compute(progress_bar=False)
    assert len(full) == 20_000
    assert full.index.name == "_healpix_29"
    got = full.sort_values("oid")
    np.testing.assert_array_equal(got["oid"].to_numpy(), objects["oid"].to_numpy())
    np.testing.assert_array_equal(got["ra"].to_numpy(), objects["ra"].to_numpy())
    np.testing.assert_array_equal(got["mag"].to_numpy(), objects["mag"].to_numpy())
    # our _healpix_29 is the one lsdb/hats compute
    np.testing.assert_array_equal(
        got.index.to_numpy(),
        compute_spatial_index(objects["ra"].to_numpy(), objects["dec"].to_numpy()))


def test_rewrite_lsdb_result(catalog: Path, tmp_path: Path) -> None:
    """An lsdb result (``_healpix_29`` index, pyarrow dtypes) can be written back."""
    full = lsdb.read_hats(catalog).compute(progress_bar=False)
    again = write_hats_catalog(tmp_path, full, max_rows_per_partition=3000)
    cat = lsdb.read_hats(again)
    assert cat.get_healpix_pixels() == lsdb.read_hats(catalog).get_healpix_pixels()
    back = cat.compute(progress_bar=False)
    assert list(back.columns) == ["oid", "ra", "dec", "mag", "nobs"]
    np.testing.assert_array_equal(np.sort(back["oid"].to_numpy()), np.sort(full["oid"]))


def test_partitions_as_lsdb_from_dataframe(catalog: Path, objects: pd.DataFrame) -> None:
    ref = lsdb.from_dataframe(objects, ra_column="ra", dec_column="dec", partition_rows=3000,
                              margin_threshold=None)
    assert lsdb.read_hats(catalog).get_healpix_pixels() == ref.get_healpix_pixels()


@pytest.mark.parametrize(("ra", "dec", "radius"), [
    (155.0, 15.0, 1800.0),     # inside the patch, across several partitions
    (150.2, 10.3, 3600.0),     # on the patch corner
    (157.3, 18.1, 20.0),       # small cone
    (30.0, -40.0, 600.0),      # far outside: empty
])
def test_cone_search(catalog: Path, objects: pd.DataFrame, ra: float, dec: float,
                     radius: float) -> None:
    got = read_hats_cone(catalog, ra, dec, radius)
    want = _brute_cone(objects, ra, dec, radius)
    assert sorted(got["oid"].tolist()) == sorted(want["oid"].tolist())
    if ra == 155.0:
        assert len(want) > 100


def test_rewrite_replaces(tmp_path: Path) -> None:
    df = _patch(5000, 20.0, -30.0, 5.0, seed=2)
    path = write_hats_catalog(tmp_path, df, name="cat", max_rows_per_partition=500)
    n_files = len(list(path.glob("dataset/Norder=*/Dir=*/*.parquet")))
    small = df.iloc[:300]
    assert write_hats_catalog(tmp_path, small, name="cat") == path
    assert len(hats.read_hats(path)) == 300
    assert len(list(path.glob("dataset/Norder=*/Dir=*/*.parquet"))) == 1 < n_files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat"]


def test_dense_region_uses_high_orders(tmp_path: Path) -> None:
    """5000 objects within ~1 arcmin and 200 rows per partition: orders above 8 (the sparse
    alignment path), still readable and correctly cone-searched by lsdb."""
    rng = np.random.default_rng(3)
    n = 5000
    df = pd.DataFrame({"oid": np.arange(n), "ra": 80.0 + rng.normal(0, 0.005, n),
                       "dec": 20.0 + rng.normal(0, 0.005, n)}).set_index("oid")
    path = write_hats_catalog(tmp_path, df, max_rows_per_partition=200)
    hc = hats.read_hats(path)
    orders = {p.order for p in hc.get_healpix_pixels()}
    assert max(orders) > 8
    counts = [pq.read_metadata(f).num_rows for f in path.glob("dataset/Norder=*/Dir=*/*.parquet")]
    assert sum(counts) == n and max(counts) <= 200
    got = read_hats_cone(path, 80.0, 20.0, 15.0)
    want = _brute_cone(df.reset_index(), 80.0, 20.0, 15.0)
    assert "oid" in got.columns  # the named index is written as a column
    assert sorted(got["oid"].tolist()) == sorted(want["oid"].tolist()) and len(want) > 10


def test_sparse_alignment_matches_hats() -> None:
    """Our occupied-pixel alignment (used at high orders) equals hats' generate_alignment."""
    rng = np.random.default_rng(4)
    parts = [_patch(3000, 10.0, 0.0, 30.0, seed=5),              # sparse background
             _patch(4000, 20.0, 10.0, 1.0, seed=6),              # dense clump
             pd.DataFrame({"ra": [200.0, 201.0, 300.0], "dec": [-60.0, -61.0, 45.0]})]
    df = pd.concat([p[["ra", "dec"]] for p in parts])
    df["ra"] += rng.normal(0, 1e-6, len(df))
    h29 = np.sort(compute_spatial_index(df["ra"].to_numpy(), df["dec"].to_numpy()))
    for max_rows in (1000, 2500):
        ours = _partitions(h29, max_rows)  # hats path (highest order <= 7)
        highest = max(o for o, _, _ in ours)
        assert highest <= _HATS_ALIGNMENT_MAX_ORDER
        hist = np.bincount(h29 >> (2 * (29 - highest)), minlength=12 * 4**highest)
        ref = generate_alignment(hist, highest_order=highest, lowest_order=0,
                                 threshold=max_rows, drop_empty_siblings=True)
        ref_set = {(int(a[0]), int(a[1]), int(a[2])) for a in ref if a is not None}
        assert set(_sparse_alignment(h29, highest, max_rows)) == ref_set == set(ours)
        assert len({o for o, _, _ in ours}) > 1  # really several orders
        assert sum(n for _, _, n in ours) == len(h29)


def test_dr5_objects(test_data: Path, tmp_path: Path) -> None:
    src = test_data / "matchfiles" / "ztf_000250_zg_c01_q1_dr5.parquet"
    df = pd.read_parquet(src, columns=["objectid", "objra", "objdec", "nepochs"])
    path = write_hats_catalog(tmp_path, df, name="dr5_objects", ra_col="objra",
                              dec_col="objdec", max_rows_per_partition=2000)
    assert len(hats.read_hats(path)) == len(df) == 5449
    first = df.iloc[0]
    got = read_hats_cone(path, float(first["objra"]), float(first["objdec"]), 60.0)
    want = _brute_cone(df, float(first["objra"]), float(first["objdec"]), 60.0,
                       "objra", "objdec")
    assert int(first["objectid"]) in got["objectid"].tolist()
    assert sorted(got["objectid"].tolist()) == sorted(want["objectid"].tolist())
    assert set(got.columns) == {"objectid", "objra", "objdec", "nepochs"}
    centre = (float(df["objra"].median()), float(df["objdec"].median()))
    got = read_hats_cone(path, *centre, 600.0)
    want = _brute_cone(df, *centre, 600.0, "objra", "objdec")
    assert len(want) > 50
    assert sorted(got["objectid"].tolist()) == sorted(want["objectid"].tolist())


def test_invalid_input(tmp_path: Path) -> None:
    df = _patch(10, 0.0, 0.0, 1.0, seed=7)
    with pytest.raises(ValueError, match="empty"):
        write_hats_catalog(tmp_path, df.iloc[:0])
    with pytest.raises(ValueError, match="column"):
        write_hats_catalog(tmp_path, df, ra_col="objra")
    bad = df.copy()
    bad.loc[3, "dec"] = np.nan
    with pytest.raises(ValueError, match="finite"):
        write_hats_catalog(tmp_path, bad)
    same = pd.DataFrame({"ra": [1.0] * 5, "dec": [2.0] * 5})
    with pytest.raises(ValueError, match="share one position"):
        write_hats_catalog(tmp_path, same, max_rows_per_partition=4)
    assert list(tmp_path.iterdir()) == []  # nothing written on failure


def test_import_on_a_dask_cluster(objects: pd.DataFrame, catalog: Path,
                                  tmp_path: Path) -> None:
    """The survey-scale path: per-unit Parquet files imported by hats-import on a Dask
    cluster give the same objects, partitions of at most the threshold, and cone searches
    that agree with the in-memory writer; a second import replaces the first."""
    from distributed import Client, LocalCluster

    from zsds.lightcurves.hats import import_hats_catalog

    files = []
    for k in range(4):  # as the build's per-unit files
        files.append(tmp_path / f"unit{k}.parquet")
        objects.iloc[k * 5000:(k + 1) * 5000].to_parquet(files[-1], index=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        path = import_hats_catalog(tmp_path / "hats", files, client,
                                   max_rows_per_partition=3000)
        again = import_hats_catalog(tmp_path / "hats", files, client,
                                    max_rows_per_partition=3000)
    assert path == again == tmp_path / "hats" / "ztf_lc_objects"
    assert sorted(p.name for p in path.parent.iterdir()) == ["ztf_lc_objects"]  # no tmp
    cat = lsdb.read_hats(path)
    assert cat.hc_structure.catalog_info.total_rows == len(objects)
    got = pd.DataFrame(cat.compute())
    assert sorted(got["oid"]) == sorted(objects["oid"])
    sizes = [pq.ParquetFile(f).metadata.num_rows
             for f in (path / "dataset").glob("Norder=*/Dir=*/Npix=*.parquet")]
    assert len(sizes) > 1 and max(sizes) <= 3000 and sum(sizes) == len(objects)
    for ra, dec in ((152.0, 12.0), (155.3, 17.1)):
        a = read_hats_cone(path, ra, dec, 600.0)
        b = read_hats_cone(catalog, ra, dec, 600.0)
        assert sorted(a["oid"]) == sorted(b["oid"]) and len(a) > 0
