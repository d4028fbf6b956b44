"""Tests for zsds.moving.orbitfit: Gauss IOD and least-squares orbit fitting of short arcs.

Observations are simulated at I41 for ``simulate_population`` objects with a ZTF-like cadence
(two visits 1 h apart on nights 0, 1, 3 and 5: an 8-observation, 5-day arc) and 0.15" noise.
Run with ``-s`` to see the accuracy distributions and the time per fit.

Everything here is two-body on purpose (the simulated truth, the fits and the predictions:
``engine="two-body"``): these tests check the short-arc machinery (Gauss, the differential
correction, outlier rejection) to the precision of a two-body universe. The N-body model and
its "auto" choice are tested in ``test_orbitdet.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest

from zsds.moving.orbitfit import (
    OrbitFit,
    OrbitFitConfig,
    _propagate_short,
    fit_orbit,
    fit_orbits,
    gauss_iod,
    predict,
)
from zsds.solar import (
    Orbits,
    elements_to_state,
    ephemerides_grid,
    propagate,
    simulate_population,
    utc_to_tdb,
)

T0 = 60389.3  # 2024-03-20 07:12 UTC, opposition near RA 180 deg
NIGHTS = np.array([0.0, 1.0, 3.0, 5.0])
TIMES = (T0 + NIGHTS[:, None] + np.array([0.0, 1.0 / 24.0])[None, :]).ravel()
SIGMA = 0.15  # arcsec per axis
TWO_BODY = OrbitFitConfig(engine="two-body")
N_MBA, N_HILDA, N_NEO = 200, 40, 40


def _sep_arcsec(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = (np.deg2rad(np.asarray(x, float)) for x in (ra1, dec1, ra2, dec2))
    c = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(ra1 - ra2)
    return np.rad2deg(np.arccos(np.clip(c, -1.0, 1.0))) * 3600.0


@dataclass
class Sample:
    """Objects of one class, their exact ephemerides at TIMES (time-major) and noisy frames."""

    orbits: Orbits
    ra: np.ndarray  # (n_obj, n_times)
    dec: np.ndarray
    delta: np.ndarray
    elong: np.ndarray
    frames: list[pd.DataFrame]


def _observe(orbits: Orbits, seed: int, sigma: float = SIGMA) -> Sample:
    n = len(orbits)
    eph = ephemerides_grid(orbits, TIMES, engine="two-body")
    ra, dec, delta, elong = (eph[c].to_numpy().reshape(TIMES.size, n).T for c in
                             ("ra", "dec", "delta", "elong"))  # fmt: skip
    rng = np.random.default_rng(seed)
    dra = rng.normal(0.0, sigma, ra.shape) / 3600.0 / np.cos(np.deg2rad(dec))
    ddec = rng.normal(0.0, sigma, dec.shape) / 3600.0
    frames = [
        pd.DataFrame({"mjd": TIMES, "ra": ra[k] + dra[k], "dec": dec[k] + ddec[k], "sigma": sigma})
        for k in range(n)
    ]
    return Sample(orbits, ra, dec, delta, elong, frames)


@pytest.fixture(scope="module")
def population() -> Orbits:
    return simulate_population(180.0, 0.0, T0, 6.0, seed=3)


def _classes(pop: Orbits) -> dict[str, np.ndarray]:
    q = pop.a * (1.0 - pop.e)
    return {
        "mba": np.flatnonzero((q > 1.3) & (pop.a < 3.4)),
        "hilda": np.flatnonzero((pop.a > 3.6) & (pop.a < 4.3)),
        "neo": np.flatnonzero(q < 1.3),
    }


@pytest.fixture(scope="module")
def samples(population: Orbits) -> dict[str, Sample]:
    cls = _classes(population)
    out = {
        "mba": _observe(population[cls["mba"][:N_MBA]], seed=11),
        "hilda": _observe(population[cls["hilda"][:N_HILDA]], seed=12),
    }
    # NEOs observable at night (elongation > 60 deg) and not closer than 0.05 au: the close
    # approachers of the population trail and move by tens of degrees over the arc.
    neo = _observe(population[cls["neo"]], seed=13)
    keep = np.flatnonzero((neo.elong.min(axis=1) > 60.0) & (neo.delta.min(axis=1) > 0.05))
    out["neo"] = _observe(population[cls["neo"][keep[:N_NEO]]], seed=13)
    return out


@dataclass
class Fits:
    fits: list[OrbitFit]
    cpu_ms: float
    wall_ms: float


@pytest.fixture(scope="module")
def fitted(samples: dict[str, Sample]) -> dict[str, Fits]:
    fit_orbits(samples["hilda"].frames[:2], TWO_BODY)  # warm up
    out = {}
    for name, s in samples.items():
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        fits = fit_orbits(s.frames, TWO_BODY)
        n = len(fits)
        out[name] = Fits(
            fits,
            (time.process_time() - t_cpu) / n * 1e3,
            (time.perf_counter() - t_wall) / n * 1e3,
        )
    return out


def _stats(s: Sample, f: Fits) -> dict[str, np.ndarray]:
    has = np.array([x.orbit is not None for x in f.fits])
    a = np.array([x.orbit.a[0] if x.orbit is not None else np.nan for x in f.fits])
    e = np.array([x.orbit.e[0] if x.orbit is not None else np.nan for x in f.fits])
    pred = {}
    good = [k for k, x in enumerate(f.fits) if x.orbit is not None]
    fitted_orbits = Orbits.concatenate([f.fits[k].orbit for k in good])
    for days in (1.0, 7.0):
        t = TIMES[-1] + days
        truth = ephemerides_grid(s.orbits[good], [t], engine="two-body")
        model = predict(fitted_orbits, t, engine="two-body")
        err = np.full(len(f.fits), np.nan)
        err[good] = _sep_arcsec(truth.ra, truth.dec, model.ra, model.dec)
        pred[days] = err
    return {
        "ok": np.array([x.ok for x in f.fits]),
        "has": has,
        "rms": np.array([x.rms_arcsec for x in f.fits]),
        "chi2_dof": np.array([x.chi2 / x.dof for x in f.fits]),
        "da": np.abs(a - s.orbits.a) / s.orbits.a,
        "de": np.abs(e - s.orbits.e),
        "pred1": pred[1.0],
        "pred7": pred[7.0],
        "n_rejected": np.array([x.rejected.sum() for x in f.fits]),
    }


def _pct(x: np.ndarray) -> str:
    p = np.nanpercentile(x, [50, 90, 100])
    return f"median {p[0]:.3g}  p90 {p[1]:.3g}  max {p[2]:.3g}"


@pytest.fixture(scope="module")
def stats(samples, fitted) -> dict[str, dict[str, np.ndarray]]:
    return {name: _stats(samples[name], fitted[name]) for name in samples}


# ---------------------------------------------------------------------------------------------


def test_report(samples, fitted, stats, capsys):
    """Print the accuracy distributions and the speed (no assertion beyond sanity)."""
    with capsys.disabled():
        print('\norbitfit: 8 obs (2/night on nights 0,1,3,5; arc 5.04 d), sigma 0.15"')
        for name, st in stats.items():
            f = fitted[name]
            print(
                f"  {name:5s} n={len(f.fits):3d} ok={st['ok'].mean():.3f} "
                f"time/fit: {f.cpu_ms:.1f} ms cpu, {f.wall_ms:.1f} ms wall"
            )
            print(f'        rms"      {_pct(st["rms"])}')
            print(f"        |da|/a    {_pct(st['da'])}")
            print(f"        |de|      {_pct(st['de'])}")
            print(f'        pred +1d" {_pct(st["pred1"])}')
            print(f'        pred +7d" {_pct(st["pred7"])}')
    assert all(len(fitted[n].fits) == len(samples[n].frames) for n in samples)


def test_mba_fits(stats):
    st = stats["mba"]
    assert st["ok"].mean() >= 0.98
    # Per-axis rms of 8 obs with 6 fitted parameters: sigma * sqrt(10/16) ~ 0.12".
    assert 0.09 < np.median(st["rms"]) < 0.14
    assert np.nanmax(st["rms"][st["ok"]]) < 3 * SIGMA
    assert 0.6 < np.median(st["chi2_dof"]) < 1.4
    # 5-day, 4-night arcs: a to ~0.2 % typically (1.3 % p90), e to ~0.01.
    assert np.nanmedian(st["da"]) < 0.01
    assert np.nanpercentile(st["da"], 90) < 0.03
    assert np.nanpercentile(st["da"], 98) < 0.08
    assert np.nanmedian(st["de"]) < 0.02
    assert np.nanpercentile(st["de"], 90) < 0.08
    # Predictions: ~0.25" one day after the last observation, a few arcsec after a week.
    assert np.nanpercentile(st["pred1"], 90) < 1.0
    assert np.nanmax(st["pred1"]) < 2.0
    assert np.nanmedian(st["pred7"]) < 6.0
    assert np.nanpercentile(st["pred7"], 90) < 15.0
    # No observation of clean data is rejected, bar the odd >4-sigma deviate.
    assert st["n_rejected"].sum() <= 3


def test_hilda_fits(stats):
    st = stats["hilda"]
    assert st["ok"].mean() >= 0.95
    assert 0.09 < np.median(st["rms"]) < 0.14
    assert np.nanmedian(st["da"]) < 0.02
    assert np.nanpercentile(st["da"], 90) < 0.06
    assert np.nanpercentile(st["pred1"], 90) < 1.0
    assert np.nanpercentile(st["pred7"], 90) < 15.0


def test_neo_fits(stats):
    st = stats["neo"]
    assert st["ok"].mean() >= 0.9
    assert 0.09 < np.median(st["rms"][st["ok"]]) < 0.14
    assert np.nanmedian(st["da"]) < 0.02
    assert np.nanpercentile(st["da"], 90) < 0.08
    assert np.nanpercentile(st["pred1"], 90) < 1.5
    assert np.nanpercentile(st["pred7"], 90) < 20.0


def test_gauss_iod_exact(samples):
    """On noise-free observations Gauss's method (with the exact f, g and light time)
    recovers the true state; one of the returned roots is it."""
    worst_r, worst_v = 0.0, 0.0
    for name, n in (("mba", 15), ("hilda", 10), ("neo", 10)):
        s = samples[name]
        r_true, v_true = elements_to_state(s.orbits)
        for k in range(n):
            frame = pd.DataFrame({"mjd": TIMES, "ra": s.ra[k], "dec": s.dec[k]})
            states = gauss_iod(frame)
            assert states, f"{name} {k}: no root"
            errs = []
            for r, v, epoch in states:
                assert r.shape == (3,) and v.shape == (3,)
                # Light-time corrected epoch of the middle observation (index 4).
                assert abs(epoch - utc_to_tdb(TIMES[4])[0]) < 0.05
                rt, vt = propagate(r_true[k], v_true[k], epoch - s.orbits.epoch[k])
                errs.append(
                    (
                        np.linalg.norm(r - rt[0]) / np.linalg.norm(rt[0]),
                        np.linalg.norm(v - vt[0]) / np.linalg.norm(vt[0]),
                    )
                )
            er, ev = min(errs)
            worst_r, worst_v = max(worst_r, er), max(worst_v, ev)
    # Observed: <= 2e-8 relative (the iteration stalls at the conditioning of a 5-day arc).
    assert worst_r < 1e-6
    assert worst_v < 1e-6


def test_gauss_iod_explicit_triplet_and_noise(samples):
    s = samples["mba"]
    frame = s.frames[0]
    states = gauss_iod(frame, triplet=(0, 4, 7))
    assert states
    r_true, v_true = elements_to_state(s.orbits[:1])
    r, _v, epoch = states[0]
    rt, _ = propagate(r_true[0], v_true[0], epoch - s.orbits.epoch[0])
    # With 0.15" noise the three-point solution is only a start: within ~10 %.
    assert np.linalg.norm(r - rt[0]) / np.linalg.norm(rt[0]) < 0.1
    assert gauss_iod(frame.iloc[:2]) == []


def test_false_linkage_rejected(samples):
    """Two objects' tracklets joined: the night-3 neighbour on the sky (hardest) and a random
    partner, switching after 1, 2 or 3 nights; none may pass."""
    s = samples["mba"]
    n = len(s.frames)
    p = np.stack([s.ra[:, 4], s.dec[:, 4]], axis=1)
    groups = []
    for ia in range(30):
        d = np.hypot((p[:, 0] - p[ia, 0]) * np.cos(np.deg2rad(p[ia, 1])), p[:, 1] - p[ia, 1])
        d[ia] = np.inf
        for ib in (int(np.argmin(d)), (ia + 37) % n):
            for split in (2, 4, 6):
                frame = s.frames[ia].copy()
                frame.iloc[split:, 1:3] = s.frames[ib].iloc[split:, 1:3].to_numpy()
                groups.append(frame)
    fits = fit_orbits(groups, TWO_BODY)
    assert not any(f.ok for f in fits)
    rms = np.array([f.rms_arcsec for f in fits])
    assert np.all(~np.isfinite(rms) | (rms > 3.0))


def test_outlier_rejected(samples):
    s = samples["mba"]
    rng = np.random.default_rng(7)
    caught, groups, bad_rows = [], [], []
    for k in range(30):
        frame = s.frames[k].copy()
        j = int(rng.integers(len(frame)))
        pa = rng.uniform(0, 2 * np.pi)
        frame.loc[j, "dec"] += 10.0 / 3600 * np.sin(pa)
        frame.loc[j, "ra"] += 10.0 / 3600 * np.cos(pa) / np.cos(np.deg2rad(frame.loc[j, "dec"]))
        groups.append(frame)
        bad_rows.append(j)
    fits = fit_orbits(groups, TWO_BODY)
    for f, j in zip(fits, bad_rows, strict=True):
        caught.append(f.ok and f.rejected[j] and f.rejected.sum() == 1)
        assert abs(f.residuals[j]).max() > 5.0  # the outlier's residual is reported
    assert np.mean(caught) >= 0.95
    assert np.median([f.rms_arcsec for f in fits]) < 0.15
    # Without rejection the same data fail.
    f = fit_orbit(groups[0], reject_sigma=1e9, config=TWO_BODY)
    assert not f.ok and not f.rejected.any()


def test_fit_orbit_api(samples):
    s = samples["mba"]
    # Unsorted rows, no sigma column, explicit obscode: results come back in input order.
    frame = s.frames[3].drop(columns="sigma").iloc[::-1].reset_index(drop=True)
    frame["obscode"] = "I41"
    fit = fit_orbit(frame, designation="K24A00A", config=TWO_BODY)
    assert fit.ok, fit.message
    assert fit.orbit is not None and fit.orbit.designation[0] == "K24A00A"
    assert fit.n_obs == fit.n_used == 8 and fit.dof == 10
    assert fit.rejected.shape == (8,) and not fit.rejected.any()
    assert fit.residuals.shape == (8, 2)
    assert fit.arc_days == pytest.approx(TIMES[-1] - TIMES[0])
    # Reference epoch: the TDB time of the observation nearest mid-arc.
    assert fit.epoch == pytest.approx(float(utc_to_tdb(TIMES[4])[0]), abs=1e-9)
    r, v = fit.state
    np.testing.assert_allclose(elements_to_state(fit.orbit)[0][0], r, atol=1e-12)
    assert fit.covariance is not None and fit.covariance.shape == (6, 6)
    np.testing.assert_allclose(fit.covariance, fit.covariance.T, rtol=1e-6, atol=1e-20)
    assert np.all(np.linalg.eigvalsh(fit.covariance) > 0)
    # The formal position uncertainty is consistent with the actual error (< 5 sigma).
    r_true, v_true = elements_to_state(s.orbits[3:4])
    rt, vt = propagate(r_true[0], v_true[0], fit.epoch - s.orbits.epoch[3])
    dx = np.concatenate([r - rt[0], v - vt[0]])
    assert dx @ np.linalg.solve(fit.covariance, dx) < 6 * 25
    # Residuals in input order match an independent prediction.
    eph = predict(fit, frame["mjd"].to_numpy(), engine="two-body")
    d = _sep_arcsec(eph.ra, eph.dec, frame.ra, frame.dec)
    np.testing.assert_allclose(d, np.hypot(*fit.residuals.T), atol=2e-3)

    # fit_orbits gives the same answer; an initial orbit is accepted; trf works too.
    (again,) = fit_orbits([frame], TWO_BODY, designations=["K24A00A"])
    np.testing.assert_allclose(again.state[0], r, rtol=1e-9)
    with_init = fit_orbit(frame, initial=s.orbits[3:4], config=TWO_BODY)
    assert with_init.ok and with_init.chi2 <= fit.chi2 * (1 + 1e-6)
    trf = fit_orbit(frame, config=replace(TWO_BODY, method="trf"))
    assert trf.ok and trf.chi2 == pytest.approx(fit.chi2, rel=1e-4)

    # Too few observations, and a strict rms threshold.
    few = fit_orbit(frame.iloc[:3], config=TWO_BODY)
    assert not few.ok and few.orbit is None and "too few" in few.message
    strict = fit_orbit(frame, config=replace(TWO_BODY, max_rms_arcsec=0.01))
    assert not strict.ok and "rms" in strict.message


def test_geocentric_obscode(samples):
    """Observations from the geocentre ("500") fit as well (the observer comes per row)."""
    s = samples["mba"]
    eph = ephemerides_grid(s.orbits[5:6], TIMES, obscode="500", engine="two-body")
    frame = pd.DataFrame({"mjd": TIMES, "ra": eph.ra, "dec": eph.dec, "obscode": "500"})
    fit = fit_orbit(frame, config=replace(TWO_BODY, default_sigma_arcsec=0.01))
    assert fit.ok
    assert fit.rms_arcsec < 1e-3
    assert fit.orbit.a[0] == pytest.approx(s.orbits.a[5], rel=1e-6)


def test_propagate_short_matches_library():
    rng = np.random.default_rng(3)
    n = 400
    a = rng.uniform(0.8, 5.5, n)
    e = rng.uniform(0, 0.95, n)
    orbits = Orbits(
        designation=np.arange(n).astype(str), a=a, e=e, inc=rng.uniform(0, 40, n),
        node=rng.uniform(0, 360, n), argperi=rng.uniform(0, 360, n),
        mean_anomaly=rng.uniform(0, 360, n), epoch=T0,
    )  # fmt: skip
    r, v = elements_to_state(orbits)
    for span in (0.1, 6.0, 60.0):
        dt = rng.uniform(-span, span, n)
        r1, v1 = propagate(r, v, dt)
        r2, v2 = _propagate_short(r, v, dt)
        np.testing.assert_allclose(r2, r1, rtol=0, atol=1e-12)
        np.testing.assert_allclose(v2, v1, rtol=0, atol=1e-14)
