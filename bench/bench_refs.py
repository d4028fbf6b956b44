"""Benchmark: co-add one full-size quadrant reference (3072 x 3080) from N inputs on one core.

The inputs are one real calibrated full-size quadrant (from a home made by
``bench/bench_instcal.py``, or simulated and calibrated here) repeated N times with independent
noise, a pointing offset of a few pixels and a different zero point each, so resampling, outlier
rejection and weighting do the work they do on a real stack. Prints seconds per stage and the
peak resident memory. Issue 4 asks for the time and memory of one reference from 20 inputs.

``--quick`` co-adds 3 inputs of a small quadrant (the 384 px home of
``bench_instcal.py --quick``, or the one of ``--home``): a smoke run that the test suite makes,
so that the benchmark cannot rot.

Usage: python bench/bench_refs.py [--home DIR] [--inputs 20] [--quick]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one core

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from zsds.core.image import QuadrantImage
from zsds.refs.coadd import coadd, reference_grid


def _inputs(sciimg: Path, n: int, seed: int = 1) -> list[QuadrantImage]:
    hdr = fits.getheader(sciimg)
    data = fits.getdata(sciimg).astype(np.float32)
    mask = fits.getdata(sciimg.with_name(sciimg.name.replace("sciimg", "mskimg")))
    gain = float(hdr["GAIN"])
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h = hdr.copy()
        w = WCS(h)
        # Pointing jitter: move the pixels and the WCS together (a few pixels).
        dx, dy = (int(v) for v in rng.integers(-4, 5, 2))
        w.wcs.crpix = w.wcs.crpix + np.array([dx, dy], float)
        h.update(w.to_header(relax=True))
        dzp = rng.normal(0, 0.05)
        h["MAGZP"] = float(hdr["MAGZP"]) + dzp
        scale = np.float32(10 ** (0.4 * dzp))
        noisy = data * scale + rng.standard_normal(data.shape, dtype=np.float32) * np.sqrt(
            np.maximum(data, 0) / gain).astype(np.float32) * np.float32(0.3)
        noisy = np.roll(noisy, (dy, dx), axis=(0, 1))
        out.append(QuadrantImage(noisy, mask=np.roll(mask, (dy, dx), axis=(0, 1)), wcs=w,
                                 header=h))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=None, help="home with a calibrated full-size quadrant")
    parser.add_argument("--inputs", type=int, default=20)
    parser.add_argument("--quick", action="store_true",
                        help="3 inputs of a small quadrant: a smoke run of seconds")
    args = parser.parse_args()
    if args.quick:
        args.inputs = min(args.inputs, 3)
    home = Path(args.home or tempfile.mkdtemp(prefix="zsds-bench-refs-"))
    sci = sorted(home.rglob("*_q1_sciimg.fits"))
    if not sci:
        here = Path(__file__).resolve().parent
        subprocess.run([sys.executable, str(here / "bench_instcal.py"), "--home", str(home),
                        *(["--quick"] if args.quick else [])],
                       check=True, stdout=subprocess.DEVNULL)
        sci = sorted(home.rglob("*_q1_sciimg.fits"))
    # The last one: a survey home's reference epochs come first, its co-adds' inputs.
    hdr = fits.getheader(sci[-1])
    ny, nx = int(hdr["NAXIS2"]), int(hdr["NAXIS1"])
    if not 0.0 < float(hdr.get("MAGZP", -999.0)) < 50.0:
        raise SystemExit(f"{sci[-1].name}: no photometric calibration (MAGZP "
                         f"{hdr.get('MAGZP')}, too few calibrators at {nx}x{ny}?): nothing to "
                         "co-add at a common zero point")
    t0 = time.perf_counter()
    images = _inputs(sci[-1], args.inputs)
    t1 = time.perf_counter()
    grid = reference_grid(int(hdr["FIELDID"]), int(hdr["CCD_ID"]), int(hdr["QID"]), nx, ny)
    res = coadd(images, grid, (ny, nx))
    t2 = time.perf_counter()
    from zsds.core.instrument import Filter
    from zsds.refs.run import reference_catalogs
    from zsds.sky.refcat import RefCatalog

    ra, dec = grid.all_pix2world([nx / 2 - 0.5], [ny / 2 - 0.5], 0)
    radius = float(np.hypot(nx, ny)) / 2 * 1.02 * 1.012 / 3600 + 0.02  # as zsds calibrate
    ps1 = RefCatalog(home / "refcat" / "ps1").cone(float(ra[0]), float(dec[0]), radius)
    cats = reference_catalogs(res, 5e4, ps1, Filter(int(hdr["FILTERID"])))
    t3 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"co-add of {args.inputs} inputs of {nx}x{ny} onto the field grid, one core")
    print(f"  make inputs (not pipeline work)   {t1 - t0:7.2f} s")
    print(f"  coadd (resample, reject, combine) {t2 - t1:7.2f} s "
          f"({(t2 - t1) / args.inputs:.2f} s per input)")
    print(f"  catalogs of the co-add (extract, PSF, PSF photometry, PS1 ZP) {t3 - t2:7.2f} s")
    print(f"  total                             {t3 - t1:7.2f} s ({len(cats.psfcat)} PSF-fit "
          f"sources, ZP fit {cats.photcal.magzp:.4f} vs 27.0)")
    print(f"  coverage median {np.median(res.coverage):.0f}, rejected fraction "
          f"{res.rejected_fraction:.4f}")
    print(f"peak memory (max RSS, inputs held in memory included): {peak:.2f} GB")

    if args.quick and not args.home:  # a smoke run leaves nothing behind
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
