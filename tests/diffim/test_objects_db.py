"""Objects, names and 30-day history on both database backends (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from tests.db.conftest import engine  # noqa: F401  (the two-backend fixture)
from zsds.db import init_db
from zsds.db.engine import session
from zsds.db.schema import AstroObject, Candidate, DiffImageRecord, ObjectCounter
from zsds.diffim.objects import associate, history, refresh_objects

JD0 = 2461365.5  # 2026-11-21


def _diff(s, pid: int, jd: float, ra: float = 10.0, dec: float = 20.0) -> None:
    s.add(DiffImageRecord(pid=pid, expid=pid // 100, nid=1, field=645, ccdid=6, qid=1, rcid=20,
                          fid=2, programid=1, jd=jd, rfid=645200120, ra=ra, dec=dec,
                          radius=0.5, diffmaglim=20.5, magzp=26.0, relpath=f"d{pid}.fits"))


def _cand(s, pid: int, n: int, jd: float, ra: float, dec: float) -> str:
    oid = associate(s, ra, dec, jd)
    candid = pid * 1_000_000 + n
    s.add(Candidate(candid=candid, pid=pid, object_id=oid, jd=jd, nid=1, fid=2, field=645,
                    rcid=20, programid=1, ra=ra, dec=dec, isdiffpos="t", magpsf=19.0,
                    sigmapsf=0.05, scorr=20.0, rb=0.9, passed=True,
                    record={"candid": candid, "jd": jd, "pid": pid, "magpsf": 19.0}))
    s.flush()
    refresh_objects(s, {oid})
    return oid


def test_association_names_and_history(engine):  # noqa: F811
    init_db(engine)
    with session(engine) as s:
        for k in range(5):
            _diff(s, 1000 + k, JD0 + k)
        s.flush()
        a0 = _cand(s, 1000, 0, JD0, 10.0, 20.0)
        b0 = _cand(s, 1000, 1, JD0, 10.01, 20.0)  # 34" away: another object
        a1 = _cand(s, 1002, 0, JD0 + 2, 10.0 + 1.0 / 3600, 20.0)  # 0.94": the same object
        # Object names near RA = 0 / 360 associate across the wrap.
        w0 = _cand(s, 1003, 5, JD0 + 3, 359.99995, -5.0)
        w1 = _cand(s, 1004, 5, JD0 + 4, 0.0002, -5.0)
    assert a0 == "ZTF26aaaaaaa" and b0 == "ZTF26aaaaaab" and a1 == a0
    assert w0 == w1 == "ZTF26aaaaaac"
    with session(engine) as s:
        o = s.get(AstroObject, a0)
        assert o.ndet == 2 and o.jdstart == JD0 and o.jdend == JD0 + 2
        assert s.get(ObjectCounter, 26).next == 3
        dets, ulims, hist = history(s, a0, 10.0, 20.0, JD0 + 4.5, 645, 20)
    assert [d["pid"] for d in dets] == [1000, 1002]
    assert sorted(u["pid"] for u in ulims) == [1001, 1003, 1004]  # covered, not detected
    assert hist["ndethist"] == 3 and hist["ncovhist"] == 5 and hist["jdstarthist"] == JD0


def test_thirty_day_window(engine):  # noqa: F811
    init_db(engine)
    with session(engine) as s:
        _diff(s, 2000, JD0 - 40)
        _diff(s, 2001, JD0 - 10)
        _diff(s, 2002, JD0)
        s.flush()
        oid = _cand(s, 2000, 0, JD0 - 40, 10.0, 20.0)
        dets, ulims, hist = history(s, oid, 10.0, 20.0, JD0, 645, 20)
    assert dets == [] and [u["pid"] for u in ulims] == [2001]
    assert hist["ndethist"] == 2 and hist["jdstarthist"] == JD0 - 40


@pytest.mark.parametrize("n_threads", [4])
def test_concurrent_names_are_unique(engine, n_threads):  # noqa: F811
    """Workers naming objects at the same time never give one name twice."""
    init_db(engine)
    names: list[str] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        for i in range(5):
            with session(engine) as s:
                oid = associate(s, 50.0 + k + i * 0.01, 10.0, JD0)
            with lock:
                names.append(oid)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(names) == len(set(names)) == 5 * n_threads
    with session(engine) as s:
        assert s.scalar(select(func.count()).select_from(AstroObject)) == 5 * n_threads
