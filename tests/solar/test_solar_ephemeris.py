"""Tests for zsds.solar.observer and zsds.solar.ephemeris."""


import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import get_body_barycentric
from astropy.time import Time

from zsds.solar.ephemeris import ephemerides, ephemerides_grid, hg_magnitude, utc_to_tdb
from zsds.solar.observer import PALOMAR, observer_heliocentric, observer_heliocentric_posvel
from zsds.solar.orbits import C_AU_PER_DAY, Orbits, elements_to_state, propagate, state_to_elements

T0 = 60390.3  # 2024-03-22 UTC


def _mba(n: int, seed: int = 0) -> Orbits:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 12]))
    return Orbits(
        designation=np.char.add("m", np.arange(n).astype(str)),
        a=rng.uniform(2.1, 3.3, n),
        e=rng.uniform(0, 0.25, n),
        inc=rng.uniform(0, 20, n),
        node=rng.uniform(0, 360, n),
        argperi=rng.uniform(0, 360, n),
        mean_anomaly=rng.uniform(0, 360, n),
        epoch=60400.0,
        H=rng.uniform(12, 19, n),
    )


def _unit(ra, dec):
    ra, dec = np.deg2rad(ra), np.deg2rad(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], -1)


def _sep_arcsec(ra1, dec1, ra2, dec2):
    d = np.linalg.norm(_unit(ra1, dec1) - _unit(ra2, dec2), axis=-1)
    return np.rad2deg(2 * np.arcsin(d / 2)) * 3600


def test_palomar_location():
    assert PALOMAR.lat.deg == pytest.approx(33.356, abs=0.01)  # geodetic
    assert PALOMAR.lon.deg == pytest.approx(243.14022 - 360, abs=1e-9)
    geo = observer_heliocentric(T0, "500")
    topo = observer_heliocentric(T0, "I41")
    assert np.linalg.norm(topo - geo) * 1.495978707e8 == pytest.approx(6372, abs=15)
    assert np.linalg.norm(geo) == pytest.approx(0.996, abs=0.003)  # Earth near equinox


def test_observer_posvel_consistent():
    t = T0 + np.array([-1e-3, 0.0, 1e-3])
    pos, vel = observer_heliocentric_posvel(t)
    fd = (pos[2] - pos[0]) / 2e-3
    np.testing.assert_allclose(vel[1], fd, rtol=0, atol=1e-8)  # au/day, incl. Earth rotation
    with pytest.raises(ValueError):
        observer_heliocentric(T0, "XXX")


def test_hg_magnitude():
    assert hg_magnitude(15.0, 0.15, 2.0, 1.0, 0.0) == pytest.approx(15 + 5 * np.log10(2))
    assert hg_magnitude(15.0, 0.15, 2.0, 1.0, 20.0) > hg_magnitude(15.0, 0.15, 2.0, 1.0, 10.0)


def test_columns_and_shapes():
    orb = _mba(5)
    df = ephemerides(orb, T0)
    assert list(df.columns) == [
        "designation", "mjd_utc", "ra", "dec", "ra_rate", "dec_rate",
        "delta", "r", "phase", "elong", "V", "light_time",
    ]  # fmt: skip
    assert len(df) == 5
    per_obj = ephemerides(orb, np.full(5, T0))
    np.testing.assert_allclose(per_obj["ra"], df["ra"])
    grid = ephemerides_grid(orb, [T0, T0 + 1])
    assert len(grid) == 10
    np.testing.assert_allclose(grid["dec"].to_numpy()[:5], df["dec"])
    with pytest.raises(ValueError):
        ephemerides(orb, np.zeros(3))


def test_light_time_is_delta_over_c_and_shift():
    orb = _mba(50)
    # Compared with two-body states below (the epoch is 10 days away: "auto" would be N-body).
    df = ephemerides(orb, T0, engine="two-body")
    np.testing.assert_allclose(df["light_time"], df["delta"] / C_AU_PER_DAY, rtol=1e-10)
    # Instantaneous (no light-time) geometry differs by the transverse motion over lt.
    obs, _ = observer_heliocentric_posvel(np.full(len(orb), T0))
    r0, v0 = elements_to_state(orb)
    r, v = propagate(r0, v0, utc_to_tdb(T0) - orb.epoch)
    rho = r - obs
    ra_i = np.rad2deg(np.arctan2(rho[:, 1], rho[:, 0])) % 360
    dec_i = np.rad2deg(np.arcsin(rho[:, 2] / np.linalg.norm(rho, axis=1)))
    uvec = rho / np.linalg.norm(rho, axis=1)[:, None]
    v_perp = v - uvec * np.sum(v * uvec, 1)[:, None]
    expected = np.linalg.norm(v_perp, axis=1) * df["light_time"] / df["delta"]
    got = np.deg2rad(_sep_arcsec(df["ra"], df["dec"], ra_i, dec_i) / 3600)
    np.testing.assert_allclose(got, expected, rtol=2e-3)
    assert np.median(got) * 206265 > 5  # tens of arcsec for main-belt objects


def test_rates_match_finite_differences():
    orb = _mba(30)
    # Add a close, fast object.
    fast = state_to_elements([[1.0, 0.0, 0.05]], [[0.0, 0.02, 0.002]], 60400.0, ["f"], [25.0])
    orb = Orbits.concatenate([orb, fast])
    h = 2e-4
    mid = ephemerides(orb, T0)
    lo, hi = ephemerides(orb, T0 - h), ephemerides(orb, T0 + h)
    dra = ((hi["ra"] - lo["ra"] + 180) % 360 - 180) * np.cos(np.deg2rad(mid["dec"])) / (2 * h)
    ddec = (hi["dec"] - lo["dec"]) / (2 * h)
    np.testing.assert_allclose(mid["ra_rate"], dra, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(mid["dec_rate"], ddec, rtol=1e-4, atol=1e-6)


def test_against_astropy_mars():
    """Independent check: osculating two-body Mars vs astropy's builtin planetary ephemeris."""
    # Heliocentric state from positions only: the builtin (plan94) velocities are approximate.
    h = 0.02
    t_epoch = Time(60400.0 + np.array([-h, 0.0, h]), format="mjd", scale="tdb")
    helio = (
        (
            get_body_barycentric("mars", t_epoch, ephemeris="builtin").xyz
            - get_body_barycentric("sun", t_epoch, ephemeris="builtin").xyz
        )
        .to_value(u.au)
        .T
    )
    r = helio[1][None]
    v = ((helio[2] - helio[0]) / (2 * h))[None]
    mars = state_to_elements(r, v, 60400.0, ["Mars"], [-1.5])
    t_obs = np.array([60400.0, 60400.3, 60400.6])
    # Two-body on purpose: Mars itself is a perturber of the N-body engine.
    eph = ephemerides(mars[np.zeros(3, int)], t_obs, engine="two-body")
    # Reference: barycentric Mars at t - lt minus the barycentric observer, all from astropy.
    obs_helio = observer_heliocentric(t_obs)
    t = Time(t_obs, format="mjd", scale="utc")
    sun_t = get_body_barycentric("sun", t, ephemeris="builtin").xyz.to_value(u.au).T
    obs_bary = obs_helio + sun_t
    lt = np.zeros(3)
    for _ in range(4):
        m = get_body_barycentric("mars", t - lt * u.day, ephemeris="builtin")
        rho = m.xyz.to_value(u.au).T - obs_bary
        lt = np.linalg.norm(rho, axis=1) / C_AU_PER_DAY
    ra = np.rad2deg(np.arctan2(rho[:, 1], rho[:, 0])) % 360
    dec = np.rad2deg(np.arcsin(rho[:, 2] / np.linalg.norm(rho, axis=1)))
    sep = _sep_arcsec(eph["ra"], eph["dec"], ra, dec)
    assert sep.max() < 0.02, sep  # measured ~4 mas
    np.testing.assert_allclose(eph["delta"], np.linalg.norm(rho, axis=1), rtol=1e-7)


def test_topocentric_parallax():
    # A close object shows the ~R_earth/delta diurnal parallax between I41 and the geocentre.
    close = state_to_elements([[0.99, 0.1, 0.04]], [[-0.004, 0.017, 0.0]], T0, ["n"], [28.0])
    topo = ephemerides(close, T0, "I41")
    geo = ephemerides(close, T0, "500")
    sep = _sep_arcsec(topo["ra"], topo["dec"], geo["ra"], geo["dec"])[0]
    bound = 6378.137 / (geo["delta"][0] * 1.495978707e8) * 206265
    assert 0.05 * bound < sep <= bound * 1.001


def test_grid_of_many_orbits():
    """2000 orbits x 100 epochs through the vectorised two-body path (its speed is measured by
    bench/bench_known.py and bench/bench_nbody.py, not here)."""
    orb = _mba(2000)
    epochs = T0 + np.linspace(0, 30, 100)
    df = ephemerides_grid(orb, epochs, engine="two-body")
    assert len(df) == 200_000
    assert np.isfinite(df[["ra", "dec", "V"]].to_numpy()).all()
