"""Run every fault scenario (``zsds eval reliability``) and list the attack corpus.

:func:`run_reliability` prepares the surveys once (the survey with references, or a given
one; the small calibration night as a template), runs each scenario of
:mod:`zsds.reliability.scenarios` in its own folder and returns one
:class:`~zsds.reliability.scenarios.ScenarioResult` per scenario; a scenario that raises is a
failed row, never the end of the run. :func:`attack_corpus` counts the tests of
``tests/security`` and ``tests/faults`` (listed by pytest, not run) when the source tree is
there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from zsds.core.home import Home
from zsds.reliability.scenarios import (
    FAULT_NIGHT,
    ScenarioResult,
    add_night,
    broker_down,
    build_survey,
    copy_home,
    disk_full,
    kill_loop,
    matchfile_missing,
    pg_drop,
    tiny_night,
)

__all__ = ["SCENARIOS", "attack_corpus", "run_reliability"]

#: Scenario names, in the order they run.
SCENARIOS = ("matchfile", "broker", "broker-part", "postgres", "disk", "kill", "corpus")

LogFn = Callable[[str], None]


def _source_tests() -> Path | None:
    """``tests/`` of the source tree this package runs from, else of the working folder,
    if there is one."""
    for root in (Path(__file__).resolve().parents[3], Path.cwd()):
        if (root / "tests" / "security").is_dir() and (root / "pyproject.toml").is_file():
            return root / "tests"
    return None


def attack_corpus(tests: Path | None = None) -> ScenarioResult:
    """Count the tests of ``tests/security`` (attacks) and ``tests/faults`` (faults), as
    pytest collects them (nothing is run)."""
    t0 = time.monotonic()
    res = ScenarioResult("attack corpus", "tests/security and tests/faults (listed, not run)")
    tests = tests or _source_tests()
    if tests is None:
        res.ok, res.outcome = True, "no source tree with tests/ here"
        res.facts["skipped"] = True
        return res
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                          "-p", "no:cacheprovider", "tests/security", "tests/faults"],
                         capture_output=True, text=True, cwd=tests.parent, timeout=600)
    ids = [ln for ln in out.stdout.splitlines() if re.match(r"tests/\w+/\S+::", ln)]
    counts = {sub: sum(ln.startswith(f"tests/{sub}/") for ln in ids)
              for sub in ("security", "faults")}
    res.facts = {"tests": counts, "uncounted": True}
    res.seconds = round(time.monotonic() - t0, 1)
    res.ok = all(v for v in counts.values())
    res.outcome = (f"{counts['security']} attack tests (tests/security), {counts['faults']} "
                   "fault tests (tests/faults); run by `pytest tests/security tests/faults`")
    return res


def _failed(name: str, exc: BaseException, t0: float) -> ScenarioResult:
    last = traceback.format_exception(exc)[-1].strip()
    return ScenarioResult(name, "", ok=False, outcome=f"ERROR: {last}",
                          seconds=round(time.monotonic() - t0, 1))


def run_reliability(work: Path, *, survey: Path | None = None, kills: int = 20,
                    seed: int = 19, pg_url: str | None = None,
                    only: Sequence[str] | None = None, max_delay: float = 60.0,
                    log: LogFn = print) -> list[ScenarioResult]:
    """Run the scenarios (all, or those named in ``only``) under ``work``.

    Parameters
    ----------
    work
        An empty folder for the homes of the scenarios.
    survey
        A home with the survey's references (:func:`~zsds.reliability.scenarios.build_survey`
        or the archive tests' home), copied for each alert scenario; None builds one (about
        3 minutes on 2 cores).
    kills
        ``kill -9`` of the kill loop.
    seed
        Seed of the kill loop's moments and targets.
    pg_url
        PostgreSQL URL of a database where a schema can be made; None skips that scenario.
    only
        Names from :data:`SCENARIOS`.
    max_delay
        Latest kill moment (s after the workers are up) of the kill loop.
    log
        Progress lines.
    """
    names = [n for n in SCENARIOS if not only or n in only]
    work.mkdir(parents=True, exist_ok=True)
    out: list[ScenarioResult] = []
    templates: dict[str, Path] = {}

    def tiny() -> Home:
        if "tiny" not in templates:
            log("simulating the small calibration night")
            templates["tiny"] = tiny_night(work / "tiny-template").root
        dest = Path(tempfile.mkdtemp(dir=work, prefix="tiny-")) / "home"
        shutil.copytree(templates["tiny"], dest)
        return Home.resolve(dest)

    def surveyed(tag: str) -> Home:
        if "survey" not in templates:
            if survey is not None:
                templates["survey"] = Path(survey)
            else:
                log("building the survey (calibrations, 16 epochs, references)")
                templates["survey"] = build_survey(work / "survey").root
        home = copy_home(templates["survey"], work / f"survey-{tag}")
        add_night(home, FAULT_NIGHT, exposures=1, seed=3)
        return home

    for name in names:
        t0 = time.monotonic()
        log(f"scenario {name}")
        try:
            if name == "matchfile":
                r = matchfile_missing(work / "matchfile")
            elif name == "broker":
                r = broker_down(surveyed("broker"), FAULT_NIGHT, log=log)
            elif name == "broker-part":
                r = broker_down(surveyed("broker-part"), FAULT_NIGHT, back_during_night=True,
                                log=log)
            elif name == "postgres":
                if pg_url is None:
                    r = ScenarioResult("postgres drop", "PostgreSQL connection terminated "
                                       "mid-transaction", ok=True,
                                       outcome="no PostgreSQL URL given (or unreachable)",
                                       facts={"skipped": True})
                else:
                    r = pg_drop(tiny(), pg_url, log=log)
            elif name == "disk":
                r = disk_full(tiny(), log=log)
            elif name == "kill":
                r = kill_loop(surveyed("kill"), FAULT_NIGHT, kills=kills, seed=seed,
                              max_delay=max_delay, log=log)
            else:
                r = attack_corpus()
        except Exception as exc:  # one scenario's crash is its row, the others still run
            r = _failed(name, exc, t0)
        log(f"  {'ok' if r.ok else 'FAILED'}: {r.outcome} ({r.seconds:.0f} s)")
        out.append(r)
    return out

