"""Tests for the PS1-like / Gaia-like reference catalogues (zsds.sky.refcat)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord

from zsds.sky.model import (
    SkyModel,
    angular_separation,
    hats_path,
    pixel_of,
    pixels_in_cone,
    positions_at,
    true_galaxies,
    true_stars,
)
from zsds.sky.refcat import (
    PS1_EPOCH_MJD,
    PS1_LIMITS,
    MissingPartitionError,
    RefCatalog,
    ensure_refcats,
    make_gaia_like,
    make_ps1_like,
)

SEED = 7


def _pixel_at(l_deg: float, b_deg: float) -> int:
    c = SkyCoord(l=l_deg, b=b_deg, unit="deg", frame="galactic").icrs
    return int(pixel_of(np.array([c.ra.deg]), np.array([c.dec.deg]))[0])


PIX = _pixel_at(120.0, 40.0)


@pytest.fixture(scope="module")
def truth() -> tuple[pd.DataFrame, pd.DataFrame]:
    return true_stars(PIX, SEED), true_galaxies(PIX, SEED)


@pytest.fixture(scope="module")
def ps1(truth) -> pd.DataFrame:
    return make_ps1_like(truth[0], truth[1], SEED, PIX)


def test_ps1_columns_and_determinism(truth, ps1) -> None:
    cols = [
        "objid",
        "ra",
        "dec",
        "gmag",
        "gmagerr",
        "rmag",
        "rmagerr",
        "imag",
        "imagerr",
        "zmag",
        "zmagerr",
        "sgscore",
        "nDetections",
    ]
    assert list(ps1.columns) == cols
    assert ps1["objid"].dtype == np.int64 and ps1["objid"].is_unique
    pd.testing.assert_frame_equal(ps1, make_ps1_like(truth[0], truth[1], SEED, PIX))
    mags = ps1[["gmag", "rmag", "imag", "zmag"]]
    assert mags.notna().any(axis=1).all()  # detected in at least one band
    assert ps1["objid"].isin(truth[1]["gal_id"]).sum() > 500  # galaxies included
    assert (ps1["nDetections"] >= 1).all()


def test_ps1_errors_and_limits(truth, ps1) -> None:
    for band, lim in PS1_LIMITS.items():
        mag, err = ps1[f"{band}mag"].to_numpy(), ps1[f"{band}magerr"].to_numpy()
        ok = np.isfinite(mag)
        assert np.array_equal(ok, np.isfinite(err))
        assert mag[ok].max() <= lim and mag[ok].min() > 13.0
        assert err[ok].min() >= 0.005 - 1e-7
        # Errors grow with magnitude (compare medians in bins).
        stars = ps1["objid"].isin(truth[0]["star_id"]).to_numpy()
        med = [np.median(err[ok & stars & (mag > lo) & (mag < lo + 1)]) for lo in (15, 18, 21)]
        assert med[0] < med[1] < med[2] and med[0] < 0.01 and 0.03 < med[2] < 0.2
    # Stars saturated in every band (true mag < 13.5) are absent.
    bright = truth[0]["star_id"][truth[0][["g", "r", "i", "z"]].max(axis=1) < 13.5]
    assert not ps1["objid"].isin(bright).any()
    # Faint stars beyond every limit are absent.
    faint = truth[0]["star_id"][(truth[0]["z"] > 23.5) & (truth[0]["i"] > 24)]
    assert not ps1["objid"].isin(faint).any()


def test_ps1_measured_mags_and_epoch(truth, ps1) -> None:
    stars = truth[0].set_index("star_id")
    common = ps1[ps1["objid"].isin(stars.index) & (ps1["rmag"] < 19)]
    true_r = stars.loc[common["objid"], "r"].to_numpy()
    pull = (common["rmag"].to_numpy() - true_r) / common["rmagerr"].to_numpy()
    assert abs(np.mean(pull)) < 0.1 and 0.85 < np.std(pull) < 1.15
    # Positions are at epoch 2012.0, not 2016.0: check high proper-motion stars.
    st = stars.loc[common["objid"]].reset_index()
    fast = np.hypot(st["pmra"], st["pmdec"]).to_numpy() > 30
    assert fast.sum() > 3
    ra12, dec12 = positions_at(st, PS1_EPOCH_MJD)
    d12 = angular_separation(ra12, dec12, common["ra"], common["dec"])[fast] * 3.6e6
    d16 = angular_separation(st["ra"], st["dec"], common["ra"], common["dec"])[fast] * 3.6e6
    assert np.median(d12) < 40 and np.all(d12 < d16)


def test_sgscore_separates_bright(truth, ps1) -> None:
    is_star = ps1["objid"].isin(truth[0]["star_id"]).to_numpy()
    bright = (ps1["rmag"] < 19).to_numpy()
    score = ps1["sgscore"].to_numpy()
    assert score.min() >= 0 and score.max() <= 1
    correct = (score > 0.5) == is_star
    assert correct[bright].mean() > 0.97
    assert np.median(score[bright & is_star]) > 0.9 and np.median(score[bright & ~is_star]) < 0.1
    faint = (ps1["rmag"] > 22.5).to_numpy()
    assert correct[faint].mean() < correct[bright].mean()  # noisy near the limit


def test_gaia_like(truth) -> None:
    stars = truth[0]
    gaia = make_gaia_like(stars, SEED, PIX)
    pd.testing.assert_frame_equal(gaia, make_gaia_like(stars, SEED, PIX))
    assert gaia["phot_g_mean_mag"].between(3, 20.8).all()
    assert (gaia["ref_epoch"] == 2016.0).all()
    g = gaia["phot_g_mean_mag"].to_numpy()
    err = gaia["ra_error"].to_numpy()
    assert np.median(err[g < 15]) < 0.04 and 0.3 < np.median(err[g > 20.5]) < 0.7
    s = stars.set_index("star_id").loc[gaia["source_id"]]
    d_mas = angular_separation(s["ra"], s["dec"], gaia["ra"], gaia["dec"]) * 3.6e6
    assert np.median(d_mas / err) < 2.0
    pull = (gaia["pmra"].to_numpy() - s["pmra"].to_numpy()) / gaia["pmra_error"].to_numpy()
    assert 0.85 < np.std(pull) < 1.15
    # Nearly all stars with true G < 20 make it into Gaia.
    assert stars["star_id"][stars["G"] < 20].isin(gaia["source_id"]).mean() > 0.99
    assert not gaia["source_id"].isin(stars["star_id"][stars["G"] > 21.2]).any()


def test_refcatalog_cone_and_missing(tmp_path) -> None:
    sky = SkyModel(tmp_path / "cache", SEED)
    root = tmp_path / "refcat"
    ra0, dec0, rad = 150.0, 40.0, 0.6
    ensure_refcats(sky, root, ra0, dec0, rad)
    ps1 = RefCatalog(root / "ps1")
    gaia = RefCatalog(root / "gaia")
    assert ps1.name == "ps1" and gaia.name == "gaia"
    pix = pixels_in_cone(ra0, dec0, rad)
    assert np.array_equal(ps1.pixels(), pix) and np.array_equal(gaia.pixels(), pix)
    for pp in pix:
        assert hats_path(root / "ps1", pp).exists()

    got = ps1.cone(ra0, dec0, 0.5)
    full = pd.concat([pd.read_parquet(hats_path(root / "ps1", pp)) for pp in pix])
    sep = angular_separation(ra0, dec0, full["ra"], full["dec"])
    assert np.array_equal(np.sort(got["objid"]), np.sort(full["objid"][sep <= 0.5]))
    sub = gaia.cone(ra0, dec0, 0.3, columns=["source_id", "phot_g_mean_mag"])
    assert list(sub.columns) == ["source_id", "phot_g_mean_mag"] and len(sub) > 100

    with pytest.raises(MissingPartitionError, match=r"'ps1'.*Npix=") as exc:
        ps1.cone(ra0, dec0, 3.0)
    assert isinstance(exc.value, FileNotFoundError) and isinstance(exc.value, LookupError)
    with pytest.raises(LookupError, match="gaia"):
        gaia.cone(10.0, -20.0, 0.1)


def test_ensure_refcats_idempotent_and_deterministic(tmp_path) -> None:
    ra0, dec0, rad = 30.0, 10.0, 0.2
    root1 = tmp_path / "r1"
    ensure_refcats(SkyModel(tmp_path / "c1", SEED), root1, ra0, dec0, rad)
    files = sorted(root1.rglob("*.parquet"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    ensure_refcats(SkyModel(tmp_path / "c1", SEED), root1, ra0, dec0, rad)
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert not list(root1.rglob("*.tmp"))
    # A fresh build without the truth cache gives identical catalogues.
    root2 = tmp_path / "r2"
    ensure_refcats(SkyModel(None, SEED), root2, ra0, dec0, rad)
    for f in files:
        pd.testing.assert_frame_equal(
            pd.read_parquet(f), pd.read_parquet(root2 / f.relative_to(root1))
        )
