"""Benchmark: N-body (ASSIST, DE440 + 16 asteroids) against two-body, and the error budget.

For three real-life orbits it prints, against the propagation time, the N-body minus two-body
position difference (km), the same as an angle seen from the geocentre at the target time
(arcsec) and its largest possible value |dr| / delta, and the two-body error bound of
:func:`zsds.solar.nbody.two_body_error_bound` (arcsec); then the longest step that the budget
(0.1 arcsec) keeps two-body, and timings.

* main belt: (12893) 1998 QS55, the state fitted by ``zsds moving fit`` to its 1,401 real
  observations (1983-2019) at MJD 58056.24 TDB;
* NEO: (99942) Apophis, JPL's heliocentric state at JD 2462138.5360 TDB (2029 January; from
  ASSIST's own test), propagated **backwards** (forwards it meets the Earth in April 2029);
* Jupiter Trojan: an L4 Trojan made from DE440's Jupiter at MJD 60400 rotated 60 degrees
  ahead along Jupiter's orbit.

``--quick`` runs steps up to 30 days and skips the timings (seconds; the test suite runs it).

Usage: python bench/bench_nbody.py [--quick]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse
import time

import numpy as np

from zsds.solar.nbody import (
    MJD_ASSIST_ORIGIN,
    TWO_BODY_TOLERANCE_ARCSEC,
    _ephem,
    _sun,
    kernel_paths,
    nbody_states,
    two_body_error_bound,
)
from zsds.solar.observer import observer_heliocentric
from zsds.solar.orbits import AU_KM, propagate

MBA = (58056.241900723275,
       [2.1885697115742087, 1.3826326491973013, 0.5432378805923768],
       [-0.005884856062803859, 0.0085841646439404, 0.0032913754601553036])
APOPHIS = (2462138.5359989386 - 2400000.5,
           [-5.5946538550488512e-01, 8.5647564757574512e-01, 3.0415066217102493e-01],
           [-1.3818324735921638e-02, -6.0088275597939191e-03, -2.5805044631309632e-03])


def trojan(mjd: float = 60400.0) -> tuple[float, list[float], list[float]]:
    """An L4 Trojan: DE440's heliocentric Jupiter rotated 60 degrees ahead."""
    ta = mjd - MJD_ASSIST_ORIGIN
    j = _ephem().get_particle("jupiter", ta)
    sr, sv = _sun(ta)
    r = np.array([j.x, j.y, j.z]) - sr
    v = np.array([j.vx, j.vy, j.vz]) - sv
    h = np.cross(r, v)
    k = h / np.linalg.norm(h)
    a = np.deg2rad(60.0)

    def rot(x: np.ndarray) -> np.ndarray:  # Rodrigues
        return x * np.cos(a) + np.cross(k, x) * np.sin(a) + k * (k @ x) * (1 - np.cos(a))

    return mjd, rot(r).tolist(), rot(v).tolist()


def _angle(u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    """Angles (arcsec) between rows of u1 and u2 (atan2: exact for tiny angles)."""
    cross = np.linalg.norm(np.cross(u1, u2), axis=1)
    return np.rad2deg(np.arctan2(cross, np.sum(u1 * u2, axis=1))) * 3600.0


def table(name: str, state: tuple, steps: list[float], sign: float) -> None:
    epoch, r, v = state
    r = np.asarray(r, float)
    v = np.asarray(v, float)
    t = epoch + sign * np.asarray(steps)
    pn, _ = nbody_states(r, v, epoch, t)
    p2, _ = propagate(np.tile(r, (t.size, 1)), np.tile(v, (t.size, 1)), t - epoch)
    earth = observer_heliocentric(t, "500")
    ang = _angle(pn[0] - earth, p2 - earth)
    dr = np.linalg.norm(pn[0] - p2, axis=1)
    worst = dr / np.linalg.norm(p2 - earth, axis=1) * 206264.806
    _, bound = two_body_error_bound(np.tile(r, (t.size, 1)), np.tile(v, (t.size, 1)), epoch, t)
    print(f"--- {name} ({'forwards' if sign > 0 else 'backwards'} from MJD {epoch:.2f}) ---")
    print(f"{'step (d)':>9} {'|dr| (km)':>12} {'angle (as)':>11} {'|dr|/delta':>11} "
          f"{'bound (as)':>11}")
    for s, d, a, w, b in zip(steps, dr * AU_KM, ang, worst, bound, strict=True):
        print(f"{s:9.1f} {d:12.4g} {a:11.4g} {w:11.4g} {b:11.4g}")
    # Longest step the budget keeps two-body (bisection on the bound).
    lo, hi = 0.0, 400.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        _, b = two_body_error_bound(r[None], v[None], epoch, epoch + sign * mid)
        lo, hi = (mid, hi) if b[0] <= TWO_BODY_TOLERANCE_ARCSEC else (lo, mid)
    pn1, _ = nbody_states(r, v, epoch, [epoch + sign * lo])
    p21, _ = propagate(r[None], v[None], sign * lo)
    e1 = observer_heliocentric(epoch + sign * lo, "500")[0]
    real = _angle((pn1[0, 0] - e1)[None], (p21[0] - e1)[None])[0]
    print(f"two-body budget ({TWO_BODY_TOLERANCE_ARCSEC}\"): {name} up to {lo:.2f} d "
          f"(actual difference there {real:.3g}\")")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short steps, no timings")
    args = parser.parse_args()
    print("kernels:", *kernel_paths())
    steps = [1.0, 3.0, 10.0, 30.0] + ([] if args.quick else [100.0, 365.25, 1096.0, 3652.5])
    table("main belt (12893)", MBA, steps, +1.0)
    table("NEO (99942) Apophis", APOPHIS, steps, -1.0)
    table("Jupiter Trojan (L4)", trojan(), steps, +1.0)
    # Round trip: 3 years forwards and back.
    epoch, r, v = MBA
    p, q = nbody_states(r, v, epoch, [epoch + 1096.0])
    back, _ = nbody_states(p[0, 0], q[0, 0], epoch + 1096.0, [epoch])
    err = np.linalg.norm(back[0, 0] - np.asarray(r)) * AU_KM * 1e3
    print(f"round trip 3 yr forwards and back (12893): {err:.3g} m")
    if args.quick:
        t = time.perf_counter()
        nbody_states(r, v, epoch, [epoch + 365.25])
        print(f"N-body 1 orbit over 1 yr: {time.perf_counter() - t:.3f} s")
        return
    for n, years in ((1, 36.0), (7, 36.0), (1000, 3.0)):
        rng = np.random.default_rng(0)
        rr = np.asarray(r) * (1 + 1e-3 * rng.standard_normal((n, 3)))
        vv = np.asarray(v) * (1 + 1e-3 * rng.standard_normal((n, 3)))
        t = time.perf_counter()
        nbody_states(rr, vv, epoch, [epoch - years * 365.25, epoch + 1.0])
        dt = time.perf_counter() - t
        print(f"N-body {n} orbit(s) over {years:g} yr: {dt:.3f} s "
              f"({dt / n / years * 1e3:.2f} ms per orbit-year)")


if __name__ == "__main__":
    main()
