"""Tests for zsds.solar.population."""

import numpy as np
import pytest

from zsds.solar.ephemeris import ephemerides
from zsds.solar.orbits import equatorial_to_ecliptic
from zsds.solar.population import (
    BETA_CORE_DEG,
    BETA_SCALE_DEG,
    DENSITY_V215,
    simulate_population,
)

EPOCH = 60390.3  # 2024-03-22: RA 180 deg is near opposition


def _unit(ra, dec):
    ra, dec = np.deg2rad(ra), np.deg2rad(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], -1)


def _sep_deg(ra, dec, ra0, dec0):
    return np.rad2deg(np.arccos(np.clip(_unit(ra, dec) @ _unit(ra0, dec0), -1, 1)))


def _cone_area(radius):
    return 2 * np.pi * (1 - np.cos(np.deg2rad(radius))) * np.rad2deg(1) ** 2


@pytest.fixture(scope="module")
def ecliptic_field():
    orb = simulate_population(180.0, 0.0, EPOCH, 2.0, seed=7)
    return orb, ephemerides(orb, EPOCH)


def test_inside_cone(ecliptic_field):
    orb, eph = ecliptic_field
    assert len(orb) > 300
    sep = _sep_deg(eph["ra"], eph["dec"], 180.0, 0.0)
    assert sep.max() <= 2.0 + 1e-7
    # Sky positions fill the cone uniformly: about a quarter within half the radius.
    assert 0.18 < np.mean(sep < 1.0) < 0.32


def test_density_near_ecliptic(ecliptic_field):
    _, eph = ecliptic_field
    density = np.sum(eph["V"] < 21.5) / _cone_area(2.0)
    assert density == pytest.approx(DENSITY_V215, rel=0.25)
    v = eph["V"].to_numpy()
    assert np.mean((v > 15) & (v < 22.5)) > 0.97
    assert v.max() < 22.5 + 1e-6


def test_density_scale_and_latitude_profile():
    half = simulate_population(180.0, 0.0, EPOCH, 2.0, seed=8, density_scale=0.5)
    eph = ephemerides(half, EPOCH)
    assert np.sum(eph["V"] < 21.5) / _cone_area(2.0) == pytest.approx(20.0, rel=0.25)
    # Far from the ecliptic: expected density from the profile averaged over the cone.
    ra0, dec0, radius = 180.0, 30.0, 3.0
    high = simulate_population(ra0, dec0, EPOCH, radius, seed=9)
    eph = ephemerides(high, EPOCH)
    rng = np.random.default_rng(0)
    ra_s = ra0 + rng.uniform(-radius, radius, 200_000) / np.cos(np.deg2rad(dec0))
    dec_s = dec0 + rng.uniform(-radius, radius, 200_000)
    inside = _sep_deg(ra_s, dec_s, ra0, dec0) < radius
    beta = np.rad2deg(np.arcsin(equatorial_to_ecliptic(_unit(ra_s, dec_s)[inside])[:, 2]))
    prof = np.exp(-np.maximum(np.abs(beta) - BETA_CORE_DEG, 0) / BETA_SCALE_DEG).mean()
    expected = DENSITY_V215 * prof * _cone_area(radius)
    assert np.sum(eph["V"] < 21.5) == pytest.approx(expected, rel=0.35)
    assert expected < 0.2 * DENSITY_V215 * _cone_area(radius)


def test_orbit_classes_and_fast_neos(ecliptic_field):
    orb, eph = ecliptic_field
    q = orb.a * (1 - orb.e)
    mba = (orb.a > 2.1) & (orb.a < 3.3) & (orb.e < 0.25 + 1e-6) & (q > 1.3)
    assert 0.9 < mba.mean() < 0.99
    neo = q < 1.3
    assert 0.01 < neo.mean() < 0.06
    rate = np.hypot(eph["ra_rate"], eph["dec_rate"]).to_numpy()
    fast = rate[neo] > 5.0
    assert fast.sum() >= 2
    assert fast.mean() < 0.7
    assert np.median(rate[mba]) == pytest.approx(0.25, abs=0.1)  # opposition MBA motion
    assert np.all(orb.e < 1) and np.all(np.isfinite(orb.H))
    np.testing.assert_allclose(orb.epoch, orb.epoch[0])


def test_determinism_and_designations(ecliptic_field):
    orb, _ = ecliptic_field
    again = simulate_population(180.0, 0.0, EPOCH, 2.0, seed=7)
    np.testing.assert_array_equal(again.designation, orb.designation)
    np.testing.assert_array_equal(again.mean_anomaly, orb.mean_anomaly)
    np.testing.assert_array_equal(again.H, orb.H)
    assert len(set(orb.designation)) == len(orb)
    assert all(len(d) == 7 and d.startswith("S") for d in orb.designation)
    other = simulate_population(180.0, 0.0, EPOCH, 2.0, seed=8)
    assert other.designation[0][:4] != orb.designation[0][:4]
    assert len(other) != len(orb) or not np.array_equal(other.a, orb.a)
    named = simulate_population(180.0, 0.0, EPOCH, 0.5, seed=7, prefix="t")
    assert named.designation[0].startswith("t0")


def test_other_epoch_and_far_side():
    # Near conjunction-ish geometry (low elongation) still places objects in the cone.
    orb = simulate_population(60.0, 20.0, EPOCH, 1.0, seed=3)
    eph = ephemerides(orb, EPOCH)
    assert _sep_deg(eph["ra"], eph["dec"], 60.0, 20.0).max() <= 1.0 + 1e-7
