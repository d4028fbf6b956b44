"""Tests for zsds.solar.orbits: element conversions and universal-variable propagation."""

from dataclasses import replace

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from zsds.solar.orbits import (
    C_AU_PER_DAY,
    GM_SUN,
    Orbits,
    ecliptic_to_equatorial,
    elements_to_state,
    propagate,
    state_to_elements,
)


def _random_orbits(n: int, seed: int, hyperbolic: bool = False) -> Orbits:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    if hyperbolic:
        a, e, M = -rng.uniform(0.5, 6, n), rng.uniform(1.05, 3, n), rng.uniform(-500, 500, n)
    else:
        a, e, M = rng.uniform(0.5, 6, n), rng.uniform(0.0, 0.95, n), rng.uniform(0, 360, n)
    return Orbits(
        designation=np.arange(n).astype(str),
        a=a,
        e=e,
        inc=rng.uniform(1, 170, n),
        node=rng.uniform(0, 360, n),
        argperi=rng.uniform(0, 360, n),
        mean_anomaly=M,
        epoch=60000.0,
        H=rng.uniform(10, 20, n),
    )


def _angle_diff(x, y):
    return (np.asarray(x) - np.asarray(y) + 180.0) % 360.0 - 180.0


def test_constants():
    assert GM_SUN == pytest.approx(2.959122082855911e-4, rel=1e-12)
    assert C_AU_PER_DAY == pytest.approx(299792.458 * 86400 / 149597870.7, rel=1e-15)


@pytest.mark.parametrize("hyperbolic", [False, True])
def test_elements_state_round_trip(hyperbolic):
    orb = _random_orbits(500, 1, hyperbolic)
    r, v = elements_to_state(orb)
    back = state_to_elements(r, v, orb.epoch, orb.designation, orb.H, orb.G)
    np.testing.assert_allclose(back.a, orb.a, rtol=1e-12)
    np.testing.assert_allclose(back.e, orb.e, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(back.inc, orb.inc, atol=1e-9)
    for name in ("node", "argperi"):
        assert np.abs(_angle_diff(getattr(back, name), getattr(orb, name))).max() < 1e-8
    if hyperbolic:
        np.testing.assert_allclose(back.mean_anomaly, orb.mean_anomaly, rtol=1e-10)
    else:
        assert np.abs(_angle_diff(back.mean_anomaly, orb.mean_anomaly)).max() < 1e-8


def test_frame_is_equatorial():
    # A body at its ascending node on an i=90 deg orbit with node 0 moves along ecliptic +z.
    orb = Orbits(["x"], a=1.0, e=0.0, inc=90.0, node=0.0, argperi=0.0, mean_anomaly=0.0, epoch=0)
    r, v = elements_to_state(orb)
    np.testing.assert_allclose(r[0], [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(v[0] / np.linalg.norm(v[0]), ecliptic_to_equatorial([0, 0, 1]))


def test_orbits_container():
    orb = _random_orbits(10, 2)
    assert len(orb) == 10
    assert len(orb[orb.a > 3]) == int((orb.a > 3).sum())
    assert orb[3].designation[0] == "3"
    back = Orbits.from_frame(orb.to_frame())
    np.testing.assert_array_equal(back.mean_anomaly, orb.mean_anomaly)
    np.testing.assert_array_equal(back.designation, orb.designation)
    assert np.all(Orbits(["a"], 2.0, 0.1, 1, 2, 3, 4, 60000.0).G == 0.15)
    both = Orbits.concatenate([orb[:4], orb[4:]])
    np.testing.assert_array_equal(both.H, orb.H)


def test_circular_orbit_analytic():
    a = 1.7
    n = np.sqrt(GM_SUN / a**3)
    dt = np.array([0.1, 0.37, 0.5, 2.6, -0.3]) * 2 * np.pi / n
    orb = Orbits(["c"], a=a, e=0.0, inc=0.0, node=0.0, argperi=0.0, mean_anomaly=0.0, epoch=0)
    r0, v0 = elements_to_state(orb)
    r, v = propagate(np.repeat(r0, dt.size, 0), np.repeat(v0, dt.size, 0), dt)
    th = n * dt
    expect_r = ecliptic_to_equatorial(np.stack([a * np.cos(th), a * np.sin(th), 0 * th], -1))
    expect_v = ecliptic_to_equatorial(np.stack([-np.sin(th), np.cos(th), 0 * th], -1)) * a * n
    np.testing.assert_allclose(r, expect_r, atol=1e-12)
    np.testing.assert_allclose(v, expect_v, atol=1e-14)


@pytest.mark.parametrize("hyperbolic", [False, True])
def test_propagation_matches_mean_anomaly_and_conserves(hyperbolic):
    orb = _random_orbits(400, 3, hyperbolic)
    r0, v0 = elements_to_state(orb)
    dt = np.random.default_rng(4).uniform(-4000, 4000, len(orb))
    r, v = propagate(r0, v0, dt)
    n = np.rad2deg(np.sqrt(GM_SUN / np.abs(orb.a) ** 3))
    moved = replace(orb, mean_anomaly=orb.mean_anomaly + n * dt, epoch=orb.epoch + dt)
    r_exp, _ = elements_to_state(moved)
    scale = np.linalg.norm(r_exp, axis=1)
    assert np.max(np.linalg.norm(r - r_exp, axis=1) / scale) < 1e-10
    energy0 = 0.5 * np.sum(v0**2, 1) - GM_SUN / np.linalg.norm(r0, axis=1)
    energy = 0.5 * np.sum(v**2, 1) - GM_SUN / np.linalg.norm(r, axis=1)
    np.testing.assert_allclose(energy, energy0, rtol=1e-10)
    np.testing.assert_allclose(np.cross(r, v), np.cross(r0, v0), rtol=1e-10, atol=1e-14)


def test_propagation_matches_numerical_integration():
    # Eccentric elliptic, hyperbolic and near-parabolic cases against DOP853.
    orb = Orbits(
        ["ell", "hyp", "par"],
        a=[1.2, -0.8, 5000.0],
        e=[0.9, 1.8, 0.99985],
        inc=[10, 40, 80],
        node=[20, 30, 40],
        argperi=[50, 60, 70],
        mean_anomaly=[350, -20, 0.0],
        epoch=0,
    )
    r0, v0 = elements_to_state(orb)
    dt = 150.0

    def rhs(_t, y):
        out = np.empty_like(y)
        for k in range(3):
            pos = y[6 * k : 6 * k + 3]
            out[6 * k : 6 * k + 3] = y[6 * k + 3 : 6 * k + 6]
            out[6 * k + 3 : 6 * k + 6] = -GM_SUN * pos / np.linalg.norm(pos) ** 3
        return out

    y0 = np.concatenate([np.concatenate([r0[k], v0[k]]) for k in range(3)])
    sol = solve_ivp(rhs, (0, dt), y0, method="DOP853", rtol=1e-13, atol=1e-15)
    r, _ = propagate(r0, v0, dt)
    r_num = sol.y[:, -1].reshape(3, 6)[:, :3]
    np.testing.assert_allclose(r, r_num, rtol=0, atol=1e-9)


def test_propagation_round_trip_and_broadcast():
    orb = _random_orbits(50, 5)
    r0, v0 = elements_to_state(orb)
    r1, v1 = propagate(r0, v0, 123.4)
    r2, v2 = propagate(r1, v1, np.full(len(orb), -123.4))
    np.testing.assert_allclose(r2, r0, atol=1e-12)
    np.testing.assert_allclose(v2, v0, atol=1e-14)
    r_single, _ = propagate(r0[0], v0[0], 123.4)
    np.testing.assert_allclose(r_single[0], r1[0], atol=1e-15)
    r_zero, _ = propagate(r0, v0, 0.0)
    np.testing.assert_allclose(r_zero, r0, atol=1e-15)
