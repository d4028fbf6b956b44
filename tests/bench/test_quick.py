"""Benchmarks cannot rot: every script under ``bench/`` runs in its quick mode (issue 22, item 6).

Each script is run as a user runs it, ``python bench/<script> --quick``, in a subprocess with one
thread per library; the test asserts that it exits 0 and that it printed its figures (a number
with its unit on the line that carries the script's main result). The scripts that need a
simulated home with references (``bench_instcal``, ``bench_refs``, ``bench_diffim``,
``bench_executive``) share one small home, built once per module
(:data:`zsds.bench.homes.QUICK_HOME`, about 20 s of CPU); each works on it as it would on its own
(``bench_executive`` on a copy). ``zsds bench realtime --quick`` runs on the same home. The
last tests check the pure pieces of :mod:`zsds.bench` (step timings read back from a log, the
timing harness, the summary's figures, the ZOGY tile layout of the FFT floor).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zsds.bench.homes import QUICK_HOME, build_survey_home
from zsds.core.home import Home

BENCH = Path(__file__).resolve().parents[2] / "bench"
ZSDS = str(Path(sys.executable).with_name("zsds"))
NUMBER = r"[-+]?\d+(?:\.\d+)?"

#: script -> (uses the shared home, a pattern its output must contain).
CASES: dict[str, tuple[bool, str]] = {
    "bench_simulate.py": (False, rf"warm CCD exposure .*: +{NUMBER} s"),
    "bench_instcal.py": (True, rf"steps total +{NUMBER} s"),
    "bench_refs.py": (True, rf"coadd \(resample, reject, combine\) +{NUMBER} s"),
    "bench_diffim.py": (True, rf"subtraction steps: register {NUMBER} s"),
    "bench_executive.py": (True, rf"throughput +{NUMBER} quadrants/min"),
    "bench_streaks.py": (False, rf"detect_streaks: {NUMBER} s"),
    "bench_drb.py": (False, rf"batch_size +8: +{NUMBER} ms CPU"),
    "bench_zogy_gpu.py": (False, rf"numpy/scipy.fft, 1 thread +{NUMBER} s"),
    "bench_lightcurves.py": (False, rf"matchfile write +: +{NUMBER} s"),
    "bench_lc_search.py": (False, rf"cone +10\": median +{NUMBER} ms"),
    "bench_archive.py": (False, rf"SCS cone 1' over 10,000 objects: median +{NUMBER} ms"),
    "bench_archive_load.py": (False, rf"\| cone \| 1 \| 1 \| {NUMBER} \|"),
    "bench_known.py": (False, rf"tag_candidates with the night index: {NUMBER} s"),
    "bench_linking.py": (False, rf"quick +{NUMBER} +\d+"),
    "bench_nbody.py": (False, rf"round trip 3 yr forwards and back \(12893\): {NUMBER} m"),
    "bench_db_scale.py": (False, rf"per quadrant at [\d,]+ candidates: median {NUMBER} s"),
}


def test_every_script_has_a_case() -> None:
    assert sorted(CASES) == sorted(p.name for p in BENCH.glob("bench_*.py"))


@pytest.fixture(scope="module")
def quick_home(tmp_path_factory) -> Path:
    """The small survey home the quick modes that need references share."""
    home = Home.resolve(tmp_path_factory.mktemp("bench") / "home")
    build_survey_home(home, **QUICK_HOME)
    return home.root


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_realtime_quick(quick_home: Path, real_images: Path, tmp_path: Path) -> None:
    """``zsds bench realtime --quick`` (also what ``make bench`` runs, at full size) writes its
    figures as JSON and a PNG."""
    js, png = tmp_path / "rt.json", tmp_path / "rt.png"
    out = _run([ZSDS, "bench", "realtime", "--quick", "--home", str(quick_home),
                "--real-data", str(real_images), "--json", str(js), "--plot", str(png)],
               tmp_path)
    assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert re.search(rf"median {NUMBER} processor s per quadrant", out.stdout), out.stdout
    d = json.loads(js.read_text())
    for key in ("median_s_per_quadrant_core", "plane_s_per_quadrant_core", "peak_gb",
                "cores_for_ztf", "zogy_over_fft_floor", "peers"):
        assert key in d
    assert d["median_s_per_quadrant_core"] > 0 and 0 < d["peak_gb"] < 8
    assert d["cores_for_ztf"] >= 1 and d["zogy_over_fft_floor"] > 0
    assert {"sep_extract", "photutils_extract", "photutils_psfphot", "reproject_interp",
            "fft_floor"} <= set(d["peers"])
    assert d["real_quadrant"]["counts"]["sexcat"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("script", sorted(CASES))
def test_quick_mode(script: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    shared, pattern = CASES[script]
    cmd = [sys.executable, str(BENCH / script), "--quick"]
    if shared:
        cmd += ["--home", str(request.getfixturevalue("quick_home"))]
    out = _run(cmd, tmp_path)
    assert out.returncode == 0, (f"{script} --quick failed:\n{out.stdout[-3000:]}\n"
                                 f"{out.stderr[-3000:]}")
    assert re.search(pattern, out.stdout), f"{script}: no /{pattern}/ in\n{out.stdout[-3000:]}"


# ----------------------------------------------------------------------------------------------
# The pure pieces of zsds.bench (fast).
# ----------------------------------------------------------------------------------------------


def test_log_step_timings(tmp_path: Path) -> None:
    from zsds.bench.products import log_step_timings

    log = tmp_path / "x_sciimlog.txt"
    log.write_text("zsds instrumental calibration of pid 1 on vm\nstep flatfield       0.002 s\n"
                   "step psf             0.269 s\nastrometry: TAN\nqa seeing = 0.5\n")
    assert log_step_timings(log) == {"flatfield": 0.002, "psf": 0.269}


def test_timed_calls_wraps_and_restores() -> None:
    import types

    from zsds.bench.harness import timed_calls

    mod = types.ModuleType("m")
    mod.f = lambda x: x + 1
    mod.g = lambda: mod.f(1) * 10  # a caller looking f up in its module, as runners do
    original = mod.f
    sink: dict = {}
    with timed_calls(mod, ["f"], sink):
        assert mod.g() == 20
    assert mod.f is original
    with timed_calls(mod, ["f", "missing"], sink, keep=["f"], prefix="m."):
        assert mod.g() == 20
    assert mod.f is original and not hasattr(mod, "missing")
    assert len(sink["f"]) == 1 and sink["f"][0].result is None and sink["f"][0].wall >= 0
    assert sink["m.f"][0].result == 2 and sink["m.f"][0].cpu >= 0


def test_cores_and_summary() -> None:
    from zsds.bench.realtime import JobResult, cores_for, summarize

    assert cores_for(5.0) == 8  # the bar: 85 quadrants/min x 5 s = 7.1 cores
    assert cores_for(390.0, 85.0) == 553  # IPAC: 390 s per quadrant, 553 cores
    steps = {"extract": 1.0}
    jobs = [JobResult("high", 345, 1, (3080, 3072), steps, 4.0, 3.0, peak_rss_gb=1.0),
            JobResult("mid", 645, 2, (3080, 3072), steps, 5.0, 4.0, peak_rss_gb=1.2),
            JobResult("plane", 591, 3, (3080, 3072), steps, 12.0, 10.0, peak_rss_gb=1.4),
            JobResult("plane", 591, 4, (0, 0), {}, float("nan"), ok=False, message="boom")]
    peers = {"seconds": {"fft_floor": 0.5, "sep_extract": 0.25}, "zsds": {"zogy": 1.0}}
    s = summarize(jobs, batch_wall_s=15.0, workers=2, peers=peers)
    assert s["median_s_per_quadrant_core"] == 4.0  # processor seconds
    assert s["median_wall_s_per_quadrant"] == 5.0
    assert s["plane_s_per_quadrant_core"] == 10.0
    assert s["peak_gb"] == 1.4 and s["cores_for_ztf"] == 6 and s["full_size"]
    assert s["zogy_over_fft_floor"] == 2.0 and s["peers"]["sep_extract"] == 0.25
    assert s["quadrants_per_min"] == 12.0


def test_zogy_tile_shapes_follow_subtract() -> None:
    from zsds.bench.peers import zogy_tile_shapes
    from zsds.diffim.stage import SubtractConfig

    tiles = zogy_tile_shapes((3080, 3072), SubtractConfig())
    assert len(tiles) == 9  # 3 x 3 tiles of ~1024 px
    assert all(h >= 1027 + 64 + 31 and w >= 1024 + 64 + 31 for h, w in tiles)
    assert zogy_tile_shapes((384, 384), SubtractConfig()) == [(432, 432)]
