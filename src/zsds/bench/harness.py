"""The benchmarks' timing harness and inputs, shared by :mod:`zsds.bench.realtime` and its
peers (:mod:`zsds.bench.peers`), which import them from here and not from each other."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

__all__ = ["Call", "real_quadrant_inputs", "timed_calls"]


@dataclass
class Call:
    """One timed call: wall and processor seconds, and the result when it was asked for."""

    wall: float
    cpu: float
    result: object = None


@contextlib.contextmanager
def timed_calls(module: ModuleType, names: Sequence[str], sink: dict[str, list[Call]],
                keep: Sequence[str] = (), prefix: str = "") -> Iterator[dict[str, list[Call]]]:
    """Time the calls a module makes to some of its global functions.

    Inside the block, ``module.<name>`` is a wrapper that appends a :class:`Call` (wall and
    processor seconds; the result too for the names in ``keep``) to ``sink[prefix + name]``;
    the originals are restored on exit. Only lookups of the module's globals at call time are
    affected (a runner calling a function it imported, or importing it from the module
    inside a function body), nothing else. Names the module does not have are ignored, so
    the harness survives a renamed helper (its time then shows as the step's remainder).

    Parameters
    ----------
    module : module
        The module whose globals are wrapped (e.g. :mod:`zsds.instcal.run`).
    names : sequence of str
        Global function names in ``module``.
    sink : dict
        Receives ``prefix + name -> [Call, ...]``.
    keep : sequence of str
        Names whose results are kept (the others are dropped at once: memory is measured).
    prefix : str
        Prefix of the keys in ``sink``.
    """
    originals = {n: getattr(module, n) for n in names if callable(getattr(module, n, None))}

    def wrap(name: str, fn: Callable) -> Callable:
        key, keep_result = prefix + name, name in keep

        def timed(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn(*args, **kwargs)
            sink.setdefault(key, []).append(Call(time.perf_counter() - t0,
                                                 time.process_time() - c0,
                                                 out if keep_result else None))
            return out

        return timed

    try:
        for n, fn in originals.items():
            setattr(module, n, wrap(n, fn))
        yield sink
    finally:
        for n, fn in originals.items():
            setattr(module, n, fn)


def real_quadrant_inputs(folder: Path, cutout: int | None = None):
    """The real ZTF quadrant (:func:`zsds.instcal.realcheck.read_ipac_quadrant`), cut to its
    central ``cutout`` pixels when given."""
    from zsds.core.realdata import ZTF_QUADRANT
    from zsds.instcal.realcheck import read_ipac_quadrant

    q = read_ipac_quadrant(folder / f"{ZTF_QUADRANT}_sciimg.fits",
                           folder / f"{ZTF_QUADRANT}_mskimg.fits")
    if cutout:
        ny, nx = q.data.shape
        y0, x0 = (ny - cutout) // 2, (nx - cutout) // 2
        sl = (slice(y0, y0 + cutout), slice(x0, x0 + cutout))
        q.data, q.variance, q.mask = (np.ascontiguousarray(a[sl])
                                      for a in (q.data, q.variance, q.mask))
        q.ipac_mask = q.ipac_mask[sl]
    return q
