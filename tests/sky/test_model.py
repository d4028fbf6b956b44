"""Tests for the simulated true sky (zsds.sky.model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord
from astropy.timeseries import LombScargle

from zsds.sky import model as m
from zsds.sky.model import (
    EPOCH_MJD,
    PIXEL_AREA_DEG2,
    VAR_MIX,
    SkyModel,
    angular_separation,
    galactic_lb,
    hats_path,
    magnitudes_at,
    pixel_of,
    pixels_in_cone,
    positions_at,
    star_density,
    true_galaxies,
    true_stars,
)

SEED = 20240601
TARGETS = {90: 8_000.0, 30: 27_000.0, 5: 200_000.0}


def _pixel_at(l_deg: float, b_deg: float) -> int:
    c = SkyCoord(l=l_deg, b=b_deg, unit="deg", frame="galactic").icrs
    return int(pixel_of(np.array([c.ra.deg]), np.array([c.dec.deg]))[0])


PIX_B90 = _pixel_at(90.0, 89.5)
PIX_B30 = _pixel_at(90.0, 30.0)
PIX_B5 = _pixel_at(90.0, 5.0)


@pytest.fixture(scope="module")
def stars30() -> pd.DataFrame:
    return true_stars(PIX_B30, SEED)


def test_galactic_matrix_matches_astropy() -> None:
    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(0, 360, 50), rng.uniform(-89, 89, 50)
    l_deg, b_deg = galactic_lb(ra, dec)
    g = SkyCoord(ra=ra, dec=dec, unit="deg").galactic
    assert np.allclose(b_deg, g.b.deg, atol=1e-9)
    assert np.allclose(angular_separation(l_deg, b_deg, g.l.deg, g.b.deg), 0, atol=1e-9)


@pytest.mark.parametrize("b", [90, 30, 5])
def test_star_density_function_targets(b: int) -> None:
    assert star_density(b) == pytest.approx(TARGETS[b], rel=0.1)


def test_star_density_smooth_and_bulge() -> None:
    b = np.linspace(-90, 90, 721)
    d = star_density(b)
    assert np.all(np.abs(np.diff(np.log(d))) < 0.05)  # no jumps at 0.25 deg steps
    assert star_density(5, l_deg=0) > 1.2 * star_density(5, l_deg=90)
    assert star_density(30, r_lim=20) < star_density(30, r_lim=24)


@pytest.mark.parametrize(("pix", "b"), [(PIX_B90, 90), (PIX_B30, 30), (PIX_B5, 5)])
def test_generated_density_within_30pct(pix: int, b: int) -> None:
    stars = true_stars(pix, SEED)
    dens = len(stars) / PIXEL_AREA_DEG2
    assert dens == pytest.approx(TARGETS[b], rel=0.3)
    gals = true_galaxies(pix, SEED)
    assert 700 < len(gals) / PIXEL_AREA_DEG2 < 2200


def test_determinism_and_seed(stars30: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(stars30, true_stars(PIX_B30, SEED))
    pd.testing.assert_frame_equal(true_galaxies(PIX_B30, SEED), true_galaxies(PIX_B30, SEED))
    other = true_stars(PIX_B30, SEED + 1)
    assert len(other) != len(stars30) or not np.array_equal(other["ra"], stars30["ra"])


def test_columns_ids_and_positions(stars30: pd.DataFrame) -> None:
    cols = [
        "star_id",
        "ra",
        "dec",
        "pmra",
        "pmdec",
        "parallax",
        "g",
        "r",
        "i",
        "z",
        "G",
        "var_type",
        "var_period",
        "var_amp",
        "var_t0",
    ]
    assert list(stars30.columns) == cols
    assert stars30["star_id"].dtype == np.int64 and stars30["var_type"].dtype == np.int8
    ids = stars30["star_id"].to_numpy()
    assert np.unique(ids).size == ids.size
    assert np.all(ids // 2**24 == PIX_B30) and np.all(ids % 2**24 < 2**23)
    assert np.all(pixel_of(stars30["ra"], stars30["dec"]) == PIX_B30)
    gals = true_galaxies(PIX_B30, SEED)
    assert np.all(pixel_of(gals["ra"], gals["dec"]) == PIX_B30)
    assert np.all(gals["gal_id"] % 2**24 >= 2**23)
    assert gals["r"].max() < 21.5
    assert gals["sersic_n"].between(0.5, 4).all() and gals["r_eff"].between(0.5, 8).all()
    assert gals["axis_ratio"].between(0.2, 1).all()


def test_star_properties_realistic(stars30: pd.DataFrame) -> None:
    s = stars30
    assert s["r"].between(9, 24).all()
    gr = (s["g"] - s["r"]).to_numpy()
    assert np.mean((gr > 0.15) & (gr < 1.6)) > 0.9
    pm = np.hypot(s["pmra"], s["pmdec"]).to_numpy()
    assert 0.3 < np.median(pm) < 5.0
    bright, faint = s["r"] < 15, s["r"] > 21
    assert np.median(pm[bright]) > 5 * np.median(pm[faint])
    assert (s["parallax"] > 0).all()
    # Luminosity function flattens toward faint magnitudes.
    h, _ = np.histogram(s["r"], bins=[12, 13, 14, 15, 16, 21, 22, 23, 24])
    slope_bright = np.polyfit([12.5, 13.5, 14.5, 15.5], np.log10(h[:4]), 1)[0]
    slope_faint = np.polyfit([21.5, 22.5, 23.5], np.log10(h[5:]), 1)[0]
    assert slope_bright > slope_faint and 0.1 < slope_faint < 0.3
    frac_var = np.mean(s["var_type"] > 0)
    assert 0.005 < frac_var < 0.02
    assert s.loc[s["var_type"] == 0, "var_period"].isna().all()


def test_order_independence_and_cache(tmp_path) -> None:
    pa_, pb = PIX_B90, PIX_B90 + 1
    sky1 = SkyModel(tmp_path / "c1", SEED)
    both = sky1.stars([pa_, pb])
    sky2 = SkyModel(tmp_path / "c2", SEED)
    only_b = sky2.stars([pb])
    only_a = sky2.stars([pa_])
    pd.testing.assert_frame_equal(
        both, pd.concat([only_a, only_b], ignore_index=True), check_dtype=True
    )
    path = hats_path(tmp_path / "c1" / "stars", pa_)
    assert path.exists() and path.parent.name == f"Dir={10000 * (pa_ // 10000)}"
    assert (tmp_path / "c1" / "stars" / "Norder=6").is_dir()
    # Read back from cache is identical; no temp files left behind.
    pd.testing.assert_frame_equal(SkyModel(tmp_path / "c1", SEED).stars([pa_, pb]), both)
    assert not list((tmp_path / "c1").rglob("*.tmp"))
    assert len(sky1.galaxies([pa_])) > 0
    assert (tmp_path / "c1" / "galaxies" / "Norder=6").is_dir()


def test_pixels_in_cone_complete() -> None:
    rng = np.random.default_rng(3)
    # The first cone is one where HEALPix.cone_search_lonlat alone misses pixel 11261.
    cones = [(184.2557848920924, 64.28023788547603, 0.2968776293120711)]
    cones += [(rng.uniform(0, 360), rng.uniform(-85, 85), rng.uniform(0.05, 1.5)) for _ in range(8)]
    for ra0, dec0, r in cones:
        pix = set(pixels_in_cone(ra0, dec0, r).tolist())
        n = 200_000
        ra = (ra0 + rng.uniform(-1, 1, n) * (r + 0.01) / np.cos(np.radians(dec0))) % 360
        dec = dec0 + rng.uniform(-1, 1, n) * (r + 0.01)
        inside = angular_separation(ra0, dec0, ra, dec) <= r
        hit = set(np.unique(pixel_of(ra[inside], dec[inside])).tolist())
        assert hit <= pix
        assert len(pix - hit) <= 1  # essentially no superfluous partitions
    assert 11261 in pixels_in_cone(*cones[0])


def test_cone_query_exact(tmp_path) -> None:
    sky = SkyModel(tmp_path, SEED)
    ra0, dec0 = float(np.median(true_stars(PIX_B90, SEED)["ra"])), 27.1
    rad = 0.4
    got = sky.stars_in_cone(ra0, dec0, rad)
    allst = sky.stars(pixels_in_cone(ra0, dec0, rad + 0.5))
    sep = angular_separation(ra0, dec0, allst["ra"], allst["dec"])
    want = np.sort(allst.loc[sep <= rad, "star_id"].to_numpy())
    assert np.array_equal(np.sort(got["star_id"].to_numpy()), want)
    assert len(got) > 1000
    gals = sky.galaxies_in_cone(ra0, dec0, rad)
    assert (angular_separation(ra0, dec0, gals["ra"], gals["dec"]) <= rad).all()


@pytest.mark.parametrize("dec0", [0.0, 45.0, 89.99])
def test_proper_motion_propagation(dec0: float) -> None:
    df = pd.DataFrame({"ra": [10.0], "dec": [dec0], "pmra": [60.0], "pmdec": [80.0]})
    mjd = EPOCH_MJD + 10 * 365.25
    ra, dec = positions_at(df, mjd)
    sep_arcsec = angular_separation(10.0, dec0, ra, dec)[0] * 3600
    assert sep_arcsec == pytest.approx(1.0, rel=1e-6)
    if dec0 < 80:
        assert (dec[0] - dec0) * 3600 == pytest.approx(0.8, rel=1e-4)
        assert (ra[0] - 10.0) * np.cos(np.radians(dec0)) * 3600 == pytest.approx(0.6, rel=1e-4)
    ra_back, dec_back = positions_at(df, EPOCH_MJD)
    assert ra_back[0] == pytest.approx(10.0, abs=1e-12) and dec_back[0] == pytest.approx(dec0)
    gal = pd.DataFrame({"ra": [1.0], "dec": [2.0]})
    assert positions_at(gal, mjd) == (pytest.approx([1.0]), pytest.approx([2.0]))


def test_variability_periodic(stars30: pd.DataFrame) -> None:
    var = stars30[stars30["var_type"] > 0]
    assert set(var["var_type"].unique()) == {1, 2, 3, 4}
    assert var["var_period"].between(0.2, 20).all() and var["var_amp"].between(0.05, 1).all()
    rr = var[var["var_type"] == 2]
    assert rr["var_period"].between(0.4, 0.8).all()
    contact = var[var["var_type"] == 4]
    assert contact["var_period"].between(0.22, 0.6).all() and (contact["var_amp"] <= 0.8).all()
    # The mix of types follows VAR_MIX (binomial errors on ~200 variables).
    for code, share in VAR_MIX.items():
        frac = np.mean(var["var_type"] == code)
        assert abs(frac - share) < 4 * np.sqrt(share * (1 - share) / len(var)), code
    t = 58500.123 + np.arange(len(var)) * 0.37
    m0 = magnitudes_at(var, "r", t)
    m1 = magnitudes_at(var, "r", t + var["var_period"].to_numpy())
    assert np.allclose(m0, m1, atol=1e-6)
    # Dense phase sampling recovers the peak-to-peak amplitude in r.
    phase = np.linspace(0, 1, 2001)[:, None]
    grid = var["var_t0"].to_numpy() + phase * var["var_period"].to_numpy()
    mags = magnitudes_at(var, "r", grid)
    assert np.allclose(np.ptp(mags, axis=0), var["var_amp"], rtol=0.02)
    # Non-variables are constant at the catalogue magnitude.
    const = stars30[stars30["var_type"] == 0].head(100)
    assert np.array_equal(magnitudes_at(const, "g", 59000.0), const["g"].to_numpy(np.float64))


def test_lomb_scargle_recovers_period(stars30: pd.DataFrame) -> None:
    var = stars30[stars30["var_type"] == 1].iloc[:3]
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(58200, 58400, 300))
    for _, row in var.iterrows():
        one = row.to_frame().T.astype(stars30.dtypes.to_dict())
        mag = magnitudes_at(one, "r", t)
        freq, power = LombScargle(t, mag).autopower(
            minimum_frequency=0.04, maximum_frequency=6, samples_per_peak=20
        )
        assert 1 / freq[np.argmax(power)] == pytest.approx(row["var_period"], rel=0.01)


def test_unknown_band() -> None:
    with pytest.raises(ValueError, match="unknown band"):
        magnitudes_at(pd.DataFrame({"r": [1.0]}), "u", 0.0)


def test_one_cell_of_the_sky_model() -> None:
    """One sky cell's stars and galaxies are drawn (speed: bench/bench_simulate.py)."""
    assert len(true_stars(PIX_B30 + 2, SEED)) > 0
    assert true_galaxies(PIX_B30 + 2, SEED) is not None
    assert m.SKY_ORDER == 6
