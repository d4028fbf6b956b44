"""Benchmark: the ZOGY kernel (``zsds.diffim.zogy.zogy``) on a full-size quadrant, CPU vs GPU.

The kernel uses only ``numpy`` and ``scipy.fft``; on a machine with CuPy the same module runs on
the GPU by binding its ``np`` to ``cupy`` and its ``sfft`` to ``cupyx.scipy.fft`` (nothing in
the kernel is written for one backend). Inputs are a synthetic 3080 x 3072 pair with 3000
point sources, Moffat PSFs of FWHM 2.0 and 2.6 px and full variance images, as a ZTF quadrant.
Prints seconds per call (median of ``--repeat``) for numpy on 1 thread and on all cores and,
when CuPy and a GPU are present, for CuPy (with and without host<->device transfers), and
checks that the GPU result equals the CPU one.

Standalone on purpose (imports ``zogy.py`` by path): it needs only numpy, scipy and optionally
cupy, so it runs on an accelerator machine without the rest of zsds installed.

``--quick`` runs one repetition on a 256 x 256 pair with 30 sources (the test suite runs it,
so that the benchmark cannot rot; without CuPy or a GPU it prints the CPU figures and says so).

Usage: python bench/bench_zogy_gpu.py [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import types
from pathlib import Path

import numpy as np

ZOGY = Path(__file__).resolve().parents[1] / "src" / "zsds" / "diffim" / "zogy.py"
NY, NX = 3080, 3072


def load_zogy(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, ZOGY)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def moffat(fwhm: float, size: int = 31, beta: float = 2.5) -> np.ndarray:
    g = np.arange(size) - size // 2
    r2 = g[None, :] ** 2 + g[:, None] ** 2
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    p = (1 + r2 / alpha**2) ** (-beta)
    return (p / p.sum()).astype(np.float32)


def make_pair(seed: int = 1, ny: int = NY, nx: int = NX, n_src: int = 3000):
    """A synthetic science/reference pair: (new, ref, psf_new, psf_ref, sigma_new, sigma_ref,
    var_new, var_ref)."""
    rng = np.random.default_rng(seed)
    pn, pr = moffat(2.6), moffat(2.0)
    sky_n, sky_r = 300.0, 40.0
    ys, xs = rng.integers(20, ny - 20, n_src), rng.integers(20, nx - 20, n_src)
    flux = 10 ** rng.uniform(2, 5, n_src)
    truth = np.zeros((ny, nx), np.float32)
    np.add.at(truth, (ys, xs), flux)
    from scipy.signal import fftconvolve

    n = fftconvolve(truth, pn, mode="same").astype(np.float32)
    r = fftconvolve(truth, pr, mode="same").astype(np.float32)
    vn = (n + sky_n).astype(np.float32)
    vr = (r / 10 + sky_r / 10).astype(np.float32)
    n += rng.standard_normal((ny, nx), dtype=np.float32) * np.sqrt(vn)
    r += rng.standard_normal((ny, nx), dtype=np.float32) * np.sqrt(vr)
    return n, r, pn, pr, float(np.sqrt(sky_n)), float(np.sqrt(sky_r / 10)), vn, vr


def timeit(fn, repeat: int, sync=lambda: None) -> float:
    fn()
    sync()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one repetition on 256 x 256")
    args = parser.parse_args()
    ny, nx, n_src = (256, 256, 30) if args.quick else (NY, NX, 3000)
    if args.quick:
        args.repeat = 1
    n, r, pn, pr, sn, sr, vn, vr = make_pair(1, ny, nx, n_src)
    z = load_zogy("zogy_cpu")
    print(f"ZOGY on {ny} x {nx} float32 with variance images (source noise + astrometric terms)")
    for workers, label in ((1, "numpy/scipy.fft, 1 thread"), (-1, f"numpy/scipy.fft, "
                                                              f"{os.cpu_count()} threads")):
        cfg = z.ZogyConfig(workers=workers, pad=31)
        t = timeit(lambda c=cfg: z.zogy(n, r, pn, pr, sn, sr, vn, vr, config=c), args.repeat)
        print(f"  {label:38s} {t:7.3f} s")
    cpu = z.zogy(n, r, pn, pr, sn, sr, vn, vr, config=z.ZogyConfig(workers=-1, pad=31))
    try:
        import cupy as cp
        import cupyx.scipy.fft as cfft

        cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no GPU here: the CPU figures are the result
        print(f"  cupy: not available ({type(exc).__name__})")
        return
    g = load_zogy("zogy_gpu")
    shim = types.SimpleNamespace(
        rfft2=lambda a, s=None, workers=None: cfft.rfft2(a, s=s),
        irfft2=lambda a, s=None, workers=None: cfft.irfft2(a, s=s),
        next_fast_len=z.sfft.next_fast_len,
    )
    g.np, g.sfft = cp, shim
    dev = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    arrays = [cp.asarray(a) for a in (n, r, pn, pr)]
    dvn, dvr = cp.asarray(vn), cp.asarray(vr)
    cfg = g.ZogyConfig(pad=31)

    def on_device():
        return g.zogy(*arrays, sn, sr, dvn, dvr, config=cfg)

    def with_transfers():
        res = g.zogy(*(cp.asarray(a) for a in (n, r, pn, pr)), sn, sr, cp.asarray(vn),
                     cp.asarray(vr), config=cfg)
        return cp.asnumpy(res.score_corr), cp.asnumpy(res.diff)

    sync = cp.cuda.Device(0).synchronize
    print(f"  cupy on {dev:30s} {timeit(on_device, args.repeat, sync):7.3f} s (data on device)")
    print(f"  cupy incl. host<->device transfers      "
          f"{timeit(with_transfers, args.repeat, sync):7.3f} s")
    res = on_device()
    for name in ("diff", "score_corr"):
        a, b = getattr(cpu, name), cp.asnumpy(getattr(res, name))
        ok = np.isfinite(a)
        print(f"  max |cpu - gpu| {name:11s} {np.max(np.abs(a[ok] - b[ok])):.2e} "
              f"(rms of cpu {np.std(a[ok]):.2f})")


if __name__ == "__main__":
    main()
