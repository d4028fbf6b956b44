"""Light-curve build of one full-size unit: seconds and peak memory per step.

A synthetic unit as ZTF delivers at high latitude: ``--sources`` reference sources (default
20,000), ``--epochs`` epochs (default 300), 85% of the sources detected per epoch, per-epoch
zero-point errors of 20 mmag, 1% variables. Runs ``assemble`` (matching, refinement, IPAC
metrics, > 100 features, periodogram) and the matchfile write, and prints the time of each
and the zero points recovered (rms of the refined minus the true offsets).

    python bench/bench_lightcurves.py [--sources 20000] [--epochs 300] [--no-features] [--quick]

``--quick`` builds a unit of 500 sources x 30 epochs (seconds; the test suite runs it so that
the benchmark cannot rot).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from zsds.db.schema import Reference
from zsds.lightcurves.build import Epochs, LightCurveConfig, Unit, assemble
from zsds.lightcurves.matchfile import write_matchfile
from zsds.lightcurves.model import EXPOSURES_DTYPE


def synthetic(n_src: int, n_ep: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    ra0, dec0 = 150.0, 30.0
    ra = ra0 + rng.uniform(-0.43, 0.43, n_src) / np.cos(np.deg2rad(dec0))
    dec = dec0 + rng.uniform(-0.43, 0.43, n_src)
    mag = 13.5 + 7.0 * rng.power(2.5, n_src)
    refcat = pd.DataFrame({"sourceid": np.arange(1, n_src + 1), "ra": ra, "dec": dec,
                           "mag": mag, "sigmag": 0.01, "chi": 1.0, "sharp": 0.0,
                           "snr": 100.0})
    t = np.sort(60000 + rng.uniform(0, 365, n_ep))
    z = rng.normal(0, 0.02, n_ep)
    var = rng.random(n_src) < 0.01
    period = 10 ** rng.uniform(-0.7, 1.3, n_src)
    exp = np.zeros(n_ep, EXPOSURES_DTYPE)
    exp["expid"] = np.arange(n_ep) + 1000
    exp["obsmjd"], exp["obshjd"] = t, t + 2400000.5
    exp["fieldid"], exp["filterid"], exp["rcid"], exp["programid"] = 600, 2, 20, 1
    frames = []
    for j in range(n_ep):
        seen = np.flatnonzero(rng.random(n_src) < 0.85)
        m = mag[seen] + np.where(var[seen], 0.3 * np.sin(2 * np.pi * t[j] / period[seen]), 0)
        err = np.hypot(0.003, 0.01 * 10 ** (0.4 * (m - 17)))
        obs = m + z[j] + rng.normal(0, 1, seen.size) * err
        flux = 10 ** (-0.4 * (obs - 26.0))
        frames.append(pd.DataFrame({
            "sourceid": np.arange(seen.size) + 1, "epoch": j,
            "ra": ra[seen] + rng.normal(0, 0.1 / 3600, seen.size),
            "dec": dec[seen] + rng.normal(0, 0.1 / 3600, seen.size),
            "mag": obs, "sigmag": err, "snr": 1.0857 / err, "flux": flux,
            "sigflux": flux * err / 1.0857, "chi": 1.0, "sharp": 0.0, "flags": 0,
            "xpos": 1.0, "ypos": 1.0}))
    det = pd.concat(frames, ignore_index=True)
    return refcat, Epochs(exp, det), z


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=20_000)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--no-features", action="store_true")
    ap.add_argument("--quick", action="store_true", help="500 sources x 30 epochs")
    args = ap.parse_args()
    if args.quick:
        args.sources, args.epochs = min(args.sources, 500), min(args.epochs, 30)
    t0 = time.perf_counter()
    refcat, epochs, z = synthetic(args.sources, args.epochs)
    t1 = time.perf_counter()
    unit = Unit(600, 6, 1, 2)
    ref = Reference(rfid=600210061, field=600, ccdid=6, qid=1, fid=2, version=1)
    ms = assemble(unit, ref, refcat, fits.Header({"MAGZP": 26.0}), epochs,
                  config=LightCurveConfig(features=not args.no_features))
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.pytable"
        write_matchfile(path, ms)
        size = path.stat().st_size / 1e6
    t3 = time.perf_counter()
    zp_err = (ms.exposures["zprefine"] + z)
    zp_err -= zp_err.mean()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    n_pts = len(epochs.detections)
    print(f"unit: {args.sources} sources x {args.epochs} epochs = {n_pts:,} detections")
    print(f"synthesis            : {t1 - t0:7.2f} s")
    print(f"assemble (match, refine, metrics{'' if args.no_features else ', features'}): "
          f"{t2 - t1:7.2f} s  ({n_pts / (t2 - t1) / 1e6:.2f} M detections/s)")
    print(f"matchfile write      : {t3 - t2:7.2f} s  ({size:.0f} MB)")
    print(f"peak memory          : {peak:7.2f} GB")
    print(f"zero points: injected rms {1000 * np.std(z):.1f} mmag, after refinement "
          f"{1000 * np.std(zp_err):.2f} mmag; bad epochs {int(ms.exposures['badepoch'].sum())}")


if __name__ == "__main__":
    main()
