"""``kill -9`` of ``zsds night run`` at random moments, then a plain rerun (issue 19, faults).

The short version of the evaluation's loop (``zsds eval reliability``: 20 kills on a night
with alerts and a Kafka broker, each followed by a rerun that finishes the night): three
kills, at seeded moments after the Dask workers are up, of the whole process group (the
executive and its workers, as a crashed machine) on the small calibration night; each killed
run is resumed by the next, and a last plain run must finish the night with no raw file,
quadrant, row or file lost or duplicated, no temporary file of a killed writer left and no
job ``running``.
"""

from __future__ import annotations

import datetime as dt

from zsds.executive import Executive
from zsds.reliability.scenarios import TINY_NIGHT, kill_loop


def test_three_kills_then_a_rerun_finishes_the_night(home):
    r = kill_loop(home, TINY_NIGHT, kills=3, seed=5, kafka=False, workers=2, worker_share=0.0,
                  max_delay=10.0, finish_each=False, run_timeout=300.0)
    f = r.facts
    assert f["kills"] == 3 and not f["failures"], f
    assert f["rounds"][-1]["rerun_rc"] == 0
    assert f["counted"] == {"raw files": 9, "quadrants": 4, "packets": 0}
    assert r.integrity.ok, r.integrity.details
    assert (r.lost, r.duplicated) == (0, 0) and r.ok, r.outcome


def test_a_quadrant_is_done_only_when_each_step_followed_the_one_before():
    """A ``--redo`` killed half-way leaves newer upstream work under older downstream
    records. Found by the evaluation's loop: a subtraction re-done (its candidates and their
    ``alerts`` rows replaced) after the packets' ``done`` was taken for done, and the rerun
    never rebuilt the quadrant's packets (13 alerts lost)."""
    t = [dt.datetime(2026, 11, 22, 3, m) for m in range(6)]
    pid = 3612089582015
    key = str(pid)

    def done(jobs, ends):
        return Executive._quadrant_done(jobs, ends, pid)

    jobs = {("calibrate", key): "done", ("subtract", key): "done", ("packets", key): "done"}
    ends = {("calibrate", key): t[0], ("subtract", key): t[1], ("packets", key): t[2]}
    assert done(jobs, ends)
    assert not done(jobs, {**ends, ("subtract", key): t[3]})  # subtraction re-done
    assert not done(jobs, {**ends, ("calibrate", key): t[4]})  # calibration re-done
    assert not done({**jobs, ("calibrate", key): "failed"}, ends)  # killed re-calibration
    assert not done({**jobs, ("packets", key): "failed"}, ends)
    skipped = {("calibrate", key): "done", ("subtract", key): "skipped"}
    assert done(skipped, ends)  # no reference: no packets to wait for
    assert not done(skipped, {**ends, ("calibrate", key): t[5]})
