"""``zsds bench realtime``: the whole real-time chain of a quadrant, one process per core.

One *job* is what a worker does when a quadrant arrives, in the order the executive runs it
(:mod:`zsds.executive.tasks`): read the raw CCD file, split out the quadrant, calibrate it and
write its products (:func:`zsds.instcal.run.calibrate_night`), subtract the reference, find
candidates, score them, search streaks, tag known asteroids and record it all
(:func:`zsds.diffim.run.subtract_quadrant`), then build and archive the alert packets
(:func:`zsds.alerts.send.build_quadrant_packets`). The runners are called as they are; the
timing harness (:func:`timed_calls`) only wraps the functions they call, at the edge, so the
steps are timed without changing what runs.

Each job runs in a fresh single-threaded process of a pool of ``workers`` processes (one per
core), so its peak resident memory is its own. What a long-lived worker does once (imports, the
real-bogus models, the night's known-asteroid index) is done before the clock starts and
reported apart as ``warmup_s``.

Seconds per quadrant per core are the job's processor time (user + system) in its
single-threaded process: on a machine shared with other work the wall time also counts the
time the job waited for a core. Both are kept (``cpu_s``, ``total_s``). The harness measures
the processor time of each step (:data:`WRAPPED`, :func:`chain_steps`); the runners' own wall
timings are kept beside them (``wall_steps``).

:func:`summarize` turns the jobs into the figures of issue 22 (seconds per quadrant per core over
the survey mix and in the Galactic plane, peak memory, cores for ZTF's 85 quadrants per
minute); the peers (:mod:`zsds.bench.peers`) and the real ZTF quadrant
(:func:`real_quadrant_job`) join them in :func:`run_realtime`.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from zsds.bench.harness import Call, real_quadrant_inputs, timed_calls
from zsds.bench.homes import (
    NIGHT_SCI,
    QUICK_HOME,
    SURVEY_MIX,
    ScienceQuadrant,
    build_survey_home,
    science_quadrants,
)
from zsds.core.home import Home

__all__ = ["CHAIN_STEPS", "WRAPPED", "ZTF_QUADRANTS_PER_MIN", "Call", "JobResult",
           "RealtimeConfig", "chain_steps", "real_quadrant_job", "run_realtime", "summarize",
           "timed_calls"]

#: ZTF's input rate: 64 quadrants every 45 s.
ZTF_QUADRANTS_PER_MIN = 64 * 60 / 45
#: IPAC's real-time chain (issue 22): seconds per quadrant per core, and cores used.
IPAC_S_PER_QUADRANT_CORE, IPAC_CORES = 390.0, 553
#: Steps of a job, in order; their processor seconds add up to the job's (:func:`chain_steps`).
CHAIN_STEPS = (
    "read_raw", "split", "flatfield_qa", "cosmics", "extract", "psf", "psfphot", "astrometry",
    "photcal", "calib_write", "calib_io", "sub_read", "register", "match", "zogy", "finish",
    "streaks", "candidates", "rb", "known", "sub_write", "database", "sub_other", "packets",
    "other",
)
#: The calibration's steps (:func:`zsds.instcal.stage.calibrate_quadrant` timings).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RealtimeConfig:
    """Options of :func:`run_realtime`.

    Attributes
    ----------
    quad_size : int or None
        Side of small square quadrants (``zsds.core.instrument.SMALL_SIZES``); None: full size
        (3072 x 3080).
    workers : int
        Worker processes, one per core, each single-threaded.
    mix : dict of str to int
        Label -> ZTF field of the survey-like mix; the label ``plane`` gives
        ``plane_s_per_quadrant_core``.
    quads : tuple of int
        Quadrants of CCD 6 processed per field (each a job).
    n_ref : int
        Epochs co-added into each reference.
    peers : bool
        Run the peer packages (:mod:`zsds.bench.peers`) on the peer quadrant.
    peer_label : str
        Label of the mix whose quadrant the peers run on.
    peer_max_sources : int
        photutils' PSF photometry fits at most this many sources (its time is scaled to the
        whole catalogue); the other peers run on everything.
    photutils, sfft : bool
        Run these slow peers (photutils' extraction with deblending and PSF photometry; sfft,
        whose numba compilation alone takes tens of seconds).
    sfft_max_side : int
        sfft runs on at most this square of the peer quadrant (its Numpy backend needs about
        2.4 GB per million pixels; a full quadrant would need over 20 GB); its time is scaled
        by the pixels.
    peer_memory_gb : float
        Data-segment limit of the process that runs the peers and the real quadrant, so that a
        peer that runs out of memory fails alone (``MemoryError``) instead of the machine.
    real : bool
        Also time :func:`zsds.instcal.stage.measure_sources` and the extraction peers on the
        real ZTF quadrant (:func:`zsds.core.realdata.fetch_real_data`).
    real_data : Path or None
        Folder of the real images (default: the cache of ``zsds eval real``).
    real_cutout : int or None
        Use only the central ``real_cutout`` square pixels of the real quadrant.
    """

    quad_size: int | None = None
    workers: int = 2
    mix: dict[str, int] = field(default_factory=lambda: dict(SURVEY_MIX))
    quads: tuple[int, ...] = (1,)
    n_ref: int = 3
    peers: bool = True
    peer_label: str = "mid"
    peer_max_sources: int = 2000
    photutils: bool = True
    sfft: bool = True
    sfft_max_side: int = 1024
    peer_memory_gb: float = 12.0
    real: bool = True
    real_data: Path | None = None
    real_cutout: int | None = None

    @classmethod
    def quick(cls, **overrides) -> RealtimeConfig:
        """A tiny run: one field at :data:`zsds.bench.homes.QUICK_HOME`'s size, one worker,
        no sfft (its compilation alone is long), a 384 px cut of the real quadrant."""
        base = {"quad_size": QUICK_HOME["quad_size"], "workers": 1,
                "mix": {"mid": QUICK_HOME["fields"][0]}, "n_ref": QUICK_HOME["n_ref"],
                "sfft": False, "peer_max_sources": 200, "real_cutout": 384}
        return cls(**{**base, **overrides})


@dataclass
class JobResult:
    """One quadrant through the chain (or the real quadrant through its steps).

    Attributes
    ----------
    label : str
        Label of the mix (``high``, ``mid``, ``plane``) or ``real``.
    field, pid : int
        Field and quadrant product id (0 for the real quadrant).
    shape : tuple of int
        ``(ny, nx)`` of the quadrant.
    steps : dict of str to float
        Processor seconds per step (:data:`CHAIN_STEPS` for a chain job,
        :func:`~zsds.instcal.stage.measure_sources`'s steps for the real quadrant).
    total_s : float
        Wall time of the job, warm-up excluded.
    cpu_s : float
        Processor time of the job (user + system, one thread), warm-up excluded: seconds per
        quadrant per core.
    phase_cpu_s : dict of str to float
        Processor time of the phases (``calibrate``, ``subtract``, ``packets``).
    warmup_s : float
        One-time per-process work done before the clock started.
    peak_rss_gb, base_rss_gb : float
        Peak resident memory of the job's process during the job, and its resident memory
        after the warm-up (imports and models), GB.
    counts : dict of str to int
        Sources, candidates, packets, streaks...
    ok : bool
    message : str
    wall_steps : dict of str to float
        Wall seconds of the steps as the runners time them.
    """

    label: str
    field: int
    pid: int
    shape: tuple[int, int]
    steps: dict[str, float]
    total_s: float
    cpu_s: float = float("nan")
    phase_cpu_s: dict[str, float] = field(default_factory=dict)
    warmup_s: float = 0.0
    peak_rss_gb: float = float("nan")
    base_rss_gb: float = float("nan")
    counts: dict[str, int] = field(default_factory=dict)
    ok: bool = True
    message: str = "ok"
    wall_steps: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Timing harness
# ----------------------------------------------------------------------------------------------


def _cpu(sink: dict[str, list[Call]], *keys: str) -> float:
    """Processor seconds of all the calls under ``keys``."""
    return float(sum(c.cpu for k in keys for c in sink.get(k, [])))


def _wall(sink: dict[str, list[Call]], *keys: str) -> float:
    return float(sum(c.wall for k in keys for c in sink.get(k, [])))


#: What the harness wraps: module -> names (key prefix = the module's last name + ".").
WRAPPED = {
    "zsds.instcal.run": ("read_raw_ccd", "split_quadrant", "calibrate_quadrant",
                         "write_products"),
    "zsds.instcal.stage": ("column_defect_mask", "cosmic_ray_mask", "estimate_background",
                           "extract_sources", "select_psf_stars", "build_moffat_psf",
                           "psf_photometry", "solve_astrometry", "photometric_calibration"),
    "zsds.diffim.run": ("read_science", "read_reference", "subtract", "find_diff_streaks",
                        "measure_candidates", "candidate_context", "cutouts", "score_real_bogus",
                        "candidate_records", "write_diff_products", "write_streaks",
                        "_record"),
    "zsds.diffim.stage": ("align_reference", "catalog_match_stats", "estimate_background",
                          "zogy"),
    "zsds.moving.run": ("tag_known",),
}
#: Step -> the wrapped calls whose processor time it is (``*`` steps are remainders).
STEP_CALLS = {
    "read_raw": ("run.read_raw_ccd",),
    "split": ("run.split_quadrant",),
    "cosmics": ("stage.column_defect_mask", "stage.cosmic_ray_mask"),
    "extract": ("stage.estimate_background", "stage.extract_sources"),
    "psf": ("stage.select_psf_stars", "stage.build_moffat_psf"),
    "psfphot": ("stage.psf_photometry",),
    "astrometry": ("stage.solve_astrometry",),
    "photcal": ("stage.photometric_calibration",),
    "calib_write": ("run.write_products",),
    "sub_read": ("drun.read_science", "drun.read_reference"),
    "register": ("dstage.align_reference",),
    "match": ("dstage.catalog_match_stats", "dstage.estimate_background"),
    "zogy": ("dstage.zogy",),
    "streaks": ("drun.find_diff_streaks",),
    "candidates": ("drun.measure_candidates", "drun.candidate_context", "drun.cutouts"),
    "rb": ("drun.score_real_bogus",),
    "known": ("mrun.tag_known",),
    "sub_write": ("drun.write_diff_products", "drun.write_streaks"),
    "database": ("drun.candidate_records", "drun._record"),
}
_PREFIX = {"zsds.instcal.run": "run.", "zsds.instcal.stage": "stage.",
           "zsds.diffim.run": "drun.", "zsds.diffim.stage": "dstage.",
           "zsds.moving.run": "mrun."}


@contextlib.contextmanager
def _chain_harness(sink: dict[str, list[Call]]) -> Iterator[None]:
    """:func:`timed_calls` on every function of :data:`WRAPPED` at once."""
    import importlib

    with contextlib.ExitStack() as stack:
        for mod, names in WRAPPED.items():
            stack.enter_context(timed_calls(importlib.import_module(mod), names, sink,
                                            keep=("calibrate_quadrant", "subtract"),
                                            prefix=_PREFIX[mod]))
        yield


def chain_steps(sink: dict[str, list[Call]], phase_cpu: dict[str, float]) -> dict[str, float]:
    """Processor seconds per step of :data:`CHAIN_STEPS` from the harness's calls.

    The remainders: ``flatfield_qa`` (the calibration's flat-fielding, masks and QA: its
    processor time less its timed steps), ``calib_io`` (the calibration runner less the
    calibration and its product writing: calibration frames, reference-catalogue cones,
    database), ``finish`` (the subtraction stage less registration, matching and ZOGY),
    ``sub_other`` (the subtraction runner's own work: reference lookup, bookkeeping) and
    ``other`` (anything else of the job).
    """
    steps = {k: _cpu(sink, *calls) for k, calls in STEP_CALLS.items()}
    inside_cal = sum(steps[k] for k in ("cosmics", "extract", "psf", "psfphot", "astrometry",
                                        "photcal"))
    steps["flatfield_qa"] = _cpu(sink, "run.calibrate_quadrant") - inside_cal
    steps["calib_io"] = (phase_cpu["calibrate"] - steps["read_raw"] - steps["split"]
                         - _cpu(sink, "run.calibrate_quadrant") - steps["calib_write"])
    steps["finish"] = _cpu(sink, "drun.subtract") - steps["register"] - steps["match"] - \
        steps["zogy"]
    sub_side = ("sub_read", "register", "match", "zogy", "finish", "streaks", "candidates",
                "rb", "known", "sub_write", "database")
    steps["sub_other"] = phase_cpu["subtract"] - sum(steps[k] for k in sub_side)
    steps["packets"] = phase_cpu["packets"]
    steps["other"] = phase_cpu["lookup"]
    return {k: steps[k] for k in CHAIN_STEPS}


def _rss_gb() -> float:
    """Peak resident memory of this process (GB): since :func:`reset_peak_rss` where Linux
    allows it (``VmHWM``), else since the process started (``ru_maxrss``, KiB on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory to its current one (Linux >= 4.0:
    ``/proc/self/clear_refs``), so that a job's peak excludes what was freed before it;
    False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def single_thread_env() -> None:
    """Pin BLAS/OpenMP to one thread for processes started from now on (one core per job)."""
    for var in THREAD_VARS:
        os.environ[var] = "1"


# ----------------------------------------------------------------------------------------------
# One job
# ----------------------------------------------------------------------------------------------


def warm_up(home: Home, mjd: float) -> None:
    """What a long-lived worker does once: imports, models, the night's known-asteroid index."""
    import zsds.alerts.send
    import zsds.diffim.run
    import zsds.instcal.run  # noqa: F401
    from zsds.moving.run import known_index
    from zsds.realbogus import load_default_model
    from zsds.streaks import load_streak_rb

    load_default_model()
    load_streak_rb()
    known_index(home, mjd)


def run_chain(home: Home, engine, sq: ScienceQuadrant, night: str = NIGHT_SCI
              ) -> tuple[dict[str, float], dict[str, float], dict[str, float], dict[str, int],
                         int, tuple[int, int]]:
    """Run one quadrant through the chain and time its steps (see the module docstring).

    Parameters
    ----------
    home : Home
    engine : sqlalchemy.Engine
    sq : ScienceQuadrant
        The ingested raw CCD file and the quadrant.
    night : str
        Its night.

    Returns
    -------
    steps : dict of str to float
        Processor seconds per step of :data:`CHAIN_STEPS` (:func:`chain_steps`).
    wall_steps : dict of str to float
        Wall seconds of the steps as the runners time them (``calibrate_quadrant``'s and
        ``subtract_quadrant``'s own timings, the subtraction stage's, the packets').
    phase_cpu : dict of str to float
        Processor seconds of the phases: ``calibrate``, ``lookup`` (the database row of the
        calibrated quadrant), ``subtract``, ``packets``.
    counts : dict of str to int
    pid : int
    shape : tuple of int

    Raises
    ------
    RuntimeError
        If the calibration or the subtraction of the quadrant failed.
    """
    from sqlalchemy import select

    import zsds.diffim.run as drun
    import zsds.instcal.run as icrun
    from zsds.alerts.send import build_quadrant_packets
    from zsds.db.engine import session
    from zsds.db.schema import QuadrantProduct

    sink: dict[str, list[Call]] = {}
    with _chain_harness(sink):
        t0, c0 = time.perf_counter(), time.process_time()
        outcomes = icrun.calibrate_night(home, engine, night, expid=sq.expid, ccd=sq.ccdid,
                                         quad=sq.qid)
        t1, c1 = time.perf_counter(), time.process_time()
        if not outcomes or not outcomes[0].ok:
            raise RuntimeError(outcomes[0].message if outcomes else "nothing to calibrate")
        pid = outcomes[0].pid
        res = sink["run.calibrate_quadrant"][0].result
        wall_steps = {f"cal_{k}": float(v) for k, v in res.timings.items()}
        shape = tuple(int(v) for v in res.image.shape)
        counts = {"sexcat": len(res.sexcat), "psfcat": len(res.psfcat)}
        sink["run.calibrate_quadrant"][0].result = None
        del res, outcomes
        with session(engine) as s:
            row = s.execute(select(QuadrantProduct).where(
                QuadrantProduct.pid == pid, QuadrantProduct.kind == "sciimg")).scalar_one()
            s.expunge(row)
        t2, c2 = time.perf_counter(), time.process_time()
        out = drun.subtract_quadrant(home, engine, row)
        t3, c3 = time.perf_counter(), time.process_time()
        if not out.ok:
            raise RuntimeError(f"subtraction: {out.message}")
        sub = sink["drun.subtract"][0].result.timings
        sink["drun.subtract"][0].result = None
        packets = build_quadrant_packets(home, engine, night, pid)
        t4, c4 = time.perf_counter(), time.process_time()
    phase_cpu = {"calibrate": c1 - c0, "lookup": c2 - c1, "subtract": c3 - c2,
                 "packets": c4 - c3}
    wall_steps.update({"read_raw": _wall(sink, "run.read_raw_ccd"),
                       "split": _wall(sink, "run.split_quadrant"),
                       "calibrate_night": t1 - t0, "subtract_quadrant": t3 - t2,
                       "packets": t4 - t3})
    wall_steps.update({f"sub_{k}": float(v) for k, v in out.timings.items()})
    wall_steps.update({f"stage_{k}": float(v) for k, v in sub.items()})
    counts.update({"candidates": int(out.ncand), "passed": int(out.npassed),
                   "packets": len(packets)})
    return chain_steps(sink, phase_cpu), wall_steps, phase_cpu, counts, pid, shape


def quadrant_job(root: str, db_url: str | None, sq: ScienceQuadrant, label: str) -> JobResult:
    """A worker's job: warm up, run the chain on one quadrant, report its time and memory.

    Runs in its own process (:func:`run_realtime`); never raises: a failure is a
    ``JobResult`` with ``ok=False`` and the error as its message.
    """
    from zsds.core.naming import parse_night
    from zsds.db import connect
    from zsds.instcal.run import science_files

    home = Home.resolve(root, db_url)
    engine = connect(home.db_url)
    t = time.perf_counter()
    mjd = next((f[5] for f in science_files(engine, parse_night(NIGHT_SCI), sq.expid, sq.ccdid)),
               None)
    if mjd is not None:
        warm_up(home, float(mjd))
    warmup = time.perf_counter() - t
    reset_peak_rss()  # the job's peak: what the warm-up built and freed does not count
    base = _rss_gb()
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        steps, wall_steps, phase_cpu, counts, pid, shape = run_chain(home, engine, sq)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
    except Exception as exc:  # reported in the table, never stops the other jobs
        return JobResult(label, sq.field, 0, (0, 0), {}, float("nan"), warmup_s=warmup,
                         peak_rss_gb=_rss_gb(), base_rss_gb=base, ok=False,
                         message=f"{type(exc).__name__}: {exc}")
    return JobResult(label, sq.field, pid, shape, steps, total, cpu, phase_cpu, warmup,
                     _rss_gb(), base, counts, wall_steps=wall_steps)


# ----------------------------------------------------------------------------------------------
# The real ZTF quadrant
# ----------------------------------------------------------------------------------------------


def real_quadrant_job(folder: Path, cutout: int | None = None) -> JobResult:
    """The steps of the chain that apply to a real IPAC quadrant (already flat-fielded): the
    calibration's :func:`~zsds.instcal.stage.measure_sources` (masks found in the image,
    background and extraction, PSF, PSF-fit photometry), processor seconds per step in this
    process."""
    from zsds.instcal.stage import InstCalConfig, measure_sources

    reset_peak_rss()
    t0, c0 = time.perf_counter(), time.process_time()
    q = real_quadrant_inputs(folder, cutout)
    t_read = time.process_time() - c0
    h = q.header
    ticks = {"start": time.process_time()}
    m = measure_sources(q.data, q.variance, q.mask, float(h["GAIN"]), float(h["READNOI"]),
                        float(h["SATURATE"]), float(h["SEEING"]), InstCalConfig(),
                        lambda name: ticks.__setitem__(name, time.process_time()))
    names = list(ticks)
    steps = {"read": t_read} | {names[k]: ticks[names[k]] - ticks[names[k - 1]]
                                for k in range(1, len(names))}
    return JobResult("real", int(h.get("FIELDID", 0)), 0, q.data.shape, steps,
                     time.perf_counter() - t0, time.process_time() - c0, peak_rss_gb=_rss_gb(),
                     counts={"sexcat": len(m.sexcat), "psfcat": len(m.psfcat)})


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def cores_for(s_per_quadrant_core: float, rate_per_min: float = ZTF_QUADRANTS_PER_MIN) -> int:
    """Cores that keep up with ``rate_per_min`` quadrants at this many seconds per quadrant."""
    if not np.isfinite(s_per_quadrant_core):
        return -1
    return max(1, math.ceil(rate_per_min * s_per_quadrant_core / 60.0 - 1e-9))


def summarize(jobs: Sequence[JobResult], batch_wall_s: float, workers: int,
              peers: dict | None = None, real: JobResult | None = None) -> dict:
    """The figures of a run as a JSON-ready dict.

    Parameters
    ----------
    jobs : sequence of JobResult
        The chain jobs (failed ones are listed but not counted).
    batch_wall_s : float
        Wall time of the whole batch on ``workers`` processes.
    workers : int
    peers : dict, optional
        :func:`zsds.bench.peers.run_peers` output.
    real : JobResult, optional
        The real ZTF quadrant.

    Returns
    -------
    dict
        ``median_s_per_quadrant_core`` (median of the jobs' processor times over the survey
        mix), ``plane_s_per_quadrant_core`` (mean over the ``plane`` jobs; NaN without any),
        ``peak_gb`` (largest peak resident memory of a job's process), ``cores_for_ztf``
        (cores for 85 quadrants per minute at the median), ``zogy_over_fft_floor``, ``peers``
        (peer -> seconds on the peer quadrant) and the details: per-job steps, the median step
        times, the batch throughput, the real quadrant, the peer comparisons.
    """
    good = [j for j in jobs if j.ok]
    cpu = np.array([j.cpu_s for j in good]) if good else np.array([np.nan])
    wall = np.array([j.total_s for j in good]) if good else np.array([np.nan])
    median = float(np.median(cpu))
    plane = [j.cpu_s for j in good if j.label == "plane"]
    plane_s = float(np.mean(plane)) if plane else float("nan")
    peak = max((j.peak_rss_gb for j in good), default=float("nan"))
    step_median = {k: float(np.median([j.steps.get(k, 0.0) for j in good]))
                   for k in CHAIN_STEPS} if good else {}
    qpm = len(good) / batch_wall_s * 60.0 if batch_wall_s > 0 and good else float("nan")
    shape = good[0].shape if good else (0, 0)
    full = 3080 * 3072
    out = {
        "median_s_per_quadrant_core": median,
        "plane_s_per_quadrant_core": plane_s,
        "peak_gb": float(peak),
        "cores_for_ztf": cores_for(median),
        "zogy_over_fft_floor": float("nan"),
        "peers": {},
        "median_wall_s_per_quadrant": float(np.median(wall)),
        "cpu_over_wall": float(np.sum(cpu) / np.sum(wall)) if good else float("nan"),
        "quadrant_shape": list(shape),
        "full_size": tuple(shape) == (3080, 3072),
        "pixels_over_full_size": shape[0] * shape[1] / full,
        "workers": workers,
        "batch_wall_s": batch_wall_s,
        "quadrants_per_min": qpm,
        "cores_for_ztf_from_throughput": (cores_for(60.0 * workers / qpm) if np.isfinite(qpm)
                                          and qpm > 0 else -1),
        "ztf_quadrants_per_min": ZTF_QUADRANTS_PER_MIN,
        "ipac": {"s_per_quadrant_core": IPAC_S_PER_QUADRANT_CORE, "cores": IPAC_CORES},
        "step_median_s": step_median,
        "jobs": [asdict(j) for j in jobs],
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else [],
    }
    if peers:
        out["peers"] = dict(peers.get("seconds", {}))
        out["peer_details"] = peers
        zogy = peers.get("zsds", {}).get("zogy")
        floor = peers.get("seconds", {}).get("fft_floor")
        if zogy and floor:
            out["zogy_over_fft_floor"] = float(zogy / floor)
    if real is not None:
        out["real_quadrant"] = asdict(real)
    return out


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------


def prepare_home(home: Home, config: RealtimeConfig,
                 note: Callable[[str], None] = lambda _m: None
                 ) -> list[tuple[str, ScienceQuadrant]]:
    """Build (or complete: the builder is resumable) the survey home, then list
    ``(label, quadrant)`` of the jobs: the science quadrants of the mix's fields
    (``config.quads``)."""
    # Idempotent: on a built home, the references are only confirmed up to date.
    build_survey_home(home, list(config.mix.values()), config.quad_size, quads=config.quads,
                      n_ref=config.n_ref, progress=note,
                      **({"n_bias": QUICK_HOME["n_bias"], "n_flat": QUICK_HOME["n_flat"]}
                         if config.quad_size == QUICK_HOME["quad_size"] else {}))
    label_of = {f: k for k, f in config.mix.items()}
    jobs = [(label_of[sq.field], sq) for sq in science_quadrants(home, NIGHT_SCI, config.quads)
            if sq.field in label_of]
    if not jobs:
        raise RuntimeError(f"{home.root}: no science quadrant of fields "
                           f"{sorted(config.mix.values())} on {NIGHT_SCI}")
    return jobs


def run_realtime(home: Home, config: RealtimeConfig, progress: ProgressFn | None = None,
                 note: Callable[[str], None] = lambda _m: None,
                 checkpoint: Callable[[dict], object] | None = None) -> dict:
    """Prepare (if needed) and run the benchmark; returns :func:`summarize`'s dict.

    Parameters
    ----------
    home : Home
        A survey home (:func:`zsds.bench.homes.build_survey_home`), built here if it has no
        references yet. Its science night is (re)processed.
    config : RealtimeConfig
    progress : callable, optional
        ``progress(item, done, total)`` as jobs and peers finish.
    note : callable
        Receives a line of text at each preparation step.
    checkpoint : callable, optional
        Called with the summary so far after the jobs and after the peers (the CLI writes the
        JSON there, so that a long run's figures survive a failure later on).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    jobs_in = prepare_home(home, config, note)
    n_total = len(jobs_in) + int(config.peers) + int(config.real)
    done = 0
    single_thread_env()
    note(f"running {len(jobs_in)} quadrant job(s) on {config.workers} worker process(es)")
    results: list[JobResult] = []
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=config.workers,
                             mp_context=multiprocessing.get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        futures = {pool.submit(quadrant_job, str(home.root), home.db_url_override, sq, label):
                   label for label, sq in jobs_in}
        for fut in as_completed(futures):
            results.append(fut.result())
            done += 1
            if progress:
                progress(f"quadrant {futures[fut]}", done, n_total)
    batch = time.perf_counter() - t0
    order = {k: i for i, k in enumerate(config.mix)}
    results.sort(key=lambda j: (order.get(j.label, 99), j.pid))
    peers = None
    real = None
    if checkpoint:
        checkpoint(summarize(results, batch, config.workers))
    # The peers and the real quadrant run in one more process, its memory limited: a peer that
    # runs out of it fails alone.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_limit_memory,
                             initargs=(int(config.peer_memory_gb * 1024**3),)) as pool:
        if config.peers:
            target = next((j for j in results if j.ok and j.label == config.peer_label),
                          next((j for j in results if j.ok), None))
            if target is not None:
                note(f"peers on the {target.label} quadrant (pid {target.pid})")
                try:
                    peers = pool.submit(_peers_job, str(home.root), home.db_url_override,
                                        target.pid, config).result()
                except Exception as exc:  # reported, the rest of the run goes on
                    peers = {"error": f"{type(exc).__name__}: {exc}"}
            done += 1
            if progress:
                progress("peers", done, n_total)
            if checkpoint:
                checkpoint(summarize(results, batch, config.workers, peers))
        if config.real:
            note("the real ZTF quadrant")
            try:
                real, real_peers = pool.submit(_real_job, config).result()
                peers = peers or {}
                peers["real"] = real_peers
            except Exception as exc:
                peers = peers or {}
                peers["real"] = {"error": f"{type(exc).__name__}: {exc}"}
            done += 1
            if progress:
                progress("real quadrant", done, n_total)
    return summarize(results, batch, config.workers, peers, real)


def _limit_memory(limit_bytes: int) -> None:
    """Pool initializer: one thread, and a data-segment limit (Linux counts anonymous
    mappings in it), so that numpy raises ``MemoryError`` past it."""
    single_thread_env()
    with contextlib.suppress(ValueError, OSError):
        _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        limit = limit_bytes if hard == resource.RLIM_INFINITY else min(limit_bytes, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def _peers_job(root: str, db_url: str | None, pid: int, config: RealtimeConfig) -> dict:
    from zsds.bench.peers import run_peers

    return run_peers(Home.resolve(root, db_url), pid, config)


def _real_job(config: RealtimeConfig) -> tuple[JobResult, dict]:
    from zsds.bench.peers import run_real_peers
    from zsds.core.realdata import fetch_real_data

    folder = fetch_real_data(config.real_data)
    with _one_thread():
        real = real_quadrant_job(folder, config.real_cutout)
    return real, run_real_peers(folder, config)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """BLAS/OpenMP limited to one thread in this process (the peers' and the real quadrant's
    timings are single-core, as the jobs')."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        yield
        return
    with threadpool_limits(limits=1):
        yield
