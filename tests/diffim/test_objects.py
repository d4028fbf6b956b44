"""Batched association and history (issue 22, item 3) give what the per-candidate functions give.

:func:`associate_many`, :func:`history_many` and the grouped :func:`refresh_objects` are compared
with :func:`associate` called on each detection in turn and :func:`history` called on each
candidate, on random scenes (RA wrap at 0/360, a field near the pole, objects on the radius
edge, several detections of one new object in a batch, two years of names) on both backends.
"""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.db.conftest import engine  # noqa: F401  (the two-backend fixture)
from zsds.db import init_db
from zsds.db.engine import session
from zsds.db.schema import AstroObject, Candidate, DiffImageRecord, ObjectCounter
from zsds.diffim.objects import (
    ASSOC_RADIUS,
    associate,
    associate_many,
    history,
    history_many,
    refresh_objects,
)

JD2026 = 2461041.5  # 2026-01-01T00:00 UTC
ARCSEC = 1.0 / 3600.0


def _offset(ra: float, dec: float, r_arcsec: float, theta: float) -> tuple[float, float]:
    """A position ``r_arcsec`` from (ra, dec) towards position angle ``theta`` (flat sky)."""
    return ((ra + r_arcsec * ARCSEC * np.cos(theta) / np.cos(np.radians(dec))) % 360.0,
            dec + r_arcsec * ARCSEC * np.sin(theta))


def _scene(rng: np.random.Generator, ra0: float, dec0: float
           ) -> tuple[list[tuple[float, float]], np.ndarray, np.ndarray, np.ndarray]:
    """Existing objects in a 60" box around (ra0, dec0) (a few arcsec apart, so that the nearest
    one matters) and a batch of detections: near objects (0-2"), on the radius edge (to 1e-9"),
    clusters of one new object, and loose ones, shuffled, over two years."""
    objs = [_offset(ra0, dec0, float(rng.uniform(0, 30)), float(rng.uniform(0, 2 * np.pi)))
            for _ in range(120)]
    dets: list[tuple[float, float]] = []
    for k in rng.choice(len(objs), 40):
        dets.append(_offset(*objs[k], float(rng.uniform(0, 2.0)),
                            float(rng.uniform(0, 2 * np.pi))))
    for k in rng.choice(len(objs), 15):  # on the edge
        dets.append(_offset(*objs[k], ASSOC_RADIUS + float(rng.choice([-1e-9, 0.0, 1e-9])),
                            float(rng.uniform(0, 2 * np.pi))))
    for _ in range(10):  # several detections of one new object (some chained, some not)
        c = _offset(ra0, dec0, float(rng.uniform(30, 60)), float(rng.uniform(0, 2 * np.pi)))
        for _ in range(int(rng.integers(2, 5))):
            dets.append(_offset(*c, float(rng.uniform(0, 1.2)), float(rng.uniform(0, 2 * np.pi))))
    for _ in range(20):
        dets.append(_offset(ra0, dec0, float(rng.uniform(0, 60)), float(rng.uniform(0, 2 * np.pi))))
    order = rng.permutation(len(dets))
    ra = np.array([dets[i][0] for i in order])
    dec = np.array([dets[i][1] for i in order])
    jd = np.where(rng.random(len(dets)) < 0.5, JD2026 - 30, JD2026 + 30) + rng.uniform(0, 1,
                                                                                       len(dets))
    return objs, ra, dec, jd


def _state(s: Session) -> tuple[list, list]:
    objs = s.execute(select(AstroObject.object_id, AstroObject.ra, AstroObject.dec,
                            AstroObject.jdstart).order_by(AstroObject.object_id)).all()
    counters = s.execute(select(ObjectCounter.year, ObjectCounter.next)
                         .order_by(ObjectCounter.year)).all()
    return [tuple(o) for o in objs], [tuple(c) for c in counters]


@pytest.mark.parametrize("ra0,dec0", [(0.0, 20.0), (359.99, -10.0), (123.4, -25.0),
                                      (200.0, 86.5)])
def test_associate_many_matches_associate(engine, ra0, dec0):  # noqa: F811
    init_db(engine)
    rng = np.random.default_rng(int(ra0 * 100 + dec0))
    objs, ra, dec, jd = _scene(rng, ra0, dec0)
    with session(engine) as s:
        s.add_all([AstroObject(object_id=f"ZTF25x{k:06d}", ra=a, dec=d, ndet=1,
                               jdstart=JD2026 - 400, jdend=JD2026 - 400)
                   for k, (a, d) in enumerate(objs)])
        s.add(ObjectCounter(year=26, next=7))
    with Session(engine) as s:
        want = [associate(s, float(a), float(d), float(j))
                for a, d, j in zip(ra, dec, jd, strict=True)]
        want_state = _state(s)
        s.rollback()
    with Session(engine) as s:
        got = associate_many(s, ra, dec, jd)
        got_state = _state(s)
        s.rollback()
    assert got == want
    assert got_state == want_state
    # The scene exercises what it means to: matches, new objects shared by several detections,
    # names of both years.
    assert sum(n.startswith("ZTF25x") for n in got) > 30
    new = [n for n in got if not n.startswith("ZTF25x")]
    assert len(set(new)) < len(new)
    assert {n[:5] for n in new} == {"ZTF25", "ZTF26"}


def test_associate_many_in_an_empty_database_and_in_steps(engine):  # noqa: F811
    """No objects at all; an empty batch; a batch continuing an earlier one."""
    init_db(engine)
    rng = np.random.default_rng(5)
    _, ra, dec, jd = _scene(rng, 0.001, 1.0)
    with Session(engine) as s:
        want = [associate(s, float(a), float(d), float(j))
                for a, d, j in zip(ra, dec, jd, strict=True)]
        s.rollback()
    with Session(engine) as s:
        assert associate_many(s, [], [], []) == []
        got = associate_many(s, ra[:30], dec[:30], jd[:30]) + associate_many(s, ra[30:], dec[30:],
                                                                             jd[30:])
        s.rollback()
    assert got == want


def _history_db(s: Session, rng: np.random.Generator) -> tuple[list[str], list[float]]:
    """Difference images of three (field, rcid) over 80 days, footprints 40" across (so some
    positions are outside some), and objects with candidates on them (one with none)."""
    pairs = [(600, 10), (600, 11), (601, 10)]
    jds = sorted(JD2026 + rng.choice(np.arange(80.0), 40, replace=False) + 0.1)
    images = []
    pid = 1000
    for f, r in pairs:
        for j in rng.choice(jds, 30, replace=False):
            ra, dec = _offset(0.0, 20.0, float(rng.uniform(0, 15)), float(rng.uniform(0, 6.3)))
            images.append(DiffImageRecord(
                pid=pid, expid=pid, nid=int(j - JD2026), field=f, ccdid=3, qid=2, rcid=r,
                fid=1 + pid % 2, programid=1, jd=float(j), rfid=1, ra=ra, dec=dec,
                radius=20.0 / 3600, diffmaglim=20.0 + 0.01 * pid % 1,
                magzp=26.0, relpath=f"x/{pid}_scimrefdiffimg.fits"))
            pid += 1
    s.add_all(images)
    s.flush()
    oids = []
    for k in range(25):
        oid = f"ZTF26a{k:06d}"
        ra, dec = _offset(0.0, 20.0, float(rng.uniform(0, 30)), float(rng.uniform(0, 6.3)))
        s.add(AstroObject(object_id=oid, ra=ra, dec=dec, ndet=0, jdstart=0.0, jdend=0.0))
        oids.append(oid)
        if k == 0:
            continue  # an object without candidates
        for n, img in enumerate(rng.choice(images, int(rng.integers(1, 12)), replace=False)):
            candid = img.pid * 1_000_000 + k * 20 + n
            s.add(Candidate(candid=candid, pid=img.pid, object_id=oid, jd=img.jd, nid=img.nid,
                            fid=img.fid, field=img.field, rcid=img.rcid, programid=1, ra=ra,
                            dec=dec, isdiffpos="t", scorr=10.0, passed=True,
                            record={"candid": candid, "jd": img.jd, "pid": img.pid}))
    # A candidate without an object, which history must not pick up.
    s.add(Candidate(candid=images[0].pid * 1_000_000 + 999, pid=images[0].pid, object_id=None,
                    jd=images[0].jd, nid=1, fid=1, field=600, rcid=10, programid=1, ra=0.0,
                    dec=20.0, isdiffpos="t", scorr=10.0, passed=True, record={}))
    s.flush()
    return oids, [float(j) for j in jds]


@pytest.mark.parametrize("days", [30.0, 10.0])
def test_history_many_matches_history(engine, days):  # noqa: F811
    init_db(engine)
    rng = np.random.default_rng(11 + int(days))
    with session(engine) as s:
        oids, jds = _history_db(s, rng)
    queries = []
    for _ in range(120):
        oid = rng.choice([*oids, "ZTF26zzzzzzz", None])
        ra, dec = _offset(0.0, 20.0, float(rng.uniform(0, 30)), float(rng.uniform(0, 6.3)))
        # Dates on the images' (and so the candidates') dates, between them, and after them.
        jd = float(rng.choice(jds)) if rng.random() < 0.5 else float(JD2026 + rng.uniform(0, 95))
        f, r = [(600, 10), (600, 11), (601, 10), (602, 1)][int(rng.integers(4))]
        queries.append((None if oid is None else str(oid), ra, dec, jd, f, r))
    with Session(engine) as s:
        want = [history(s, *q, days=days) for q in queries]
        got = history_many(s, queries, days=days)
        # Candidate rows work as well (make_packets passes its candidates).
        cands = s.execute(select(Candidate).order_by(Candidate.candid)).scalars().all()
        want_c = [history(s, c.object_id, c.ra, c.dec, c.jd, c.field, c.rcid, days=days)
                  for c in cands]
        got_c = history_many(s, cands, days=days)
    assert got == want
    assert got_c == want_c
    assert history_many(s, []) == []
    # The scenes hold what the comparison is about.
    assert sum(bool(d) for d, _, _ in got) > 10 and sum(bool(u) for _, u, _ in got) > 10
    assert len({h["ncovhist"] for _, _, h in got}) > 10


def test_refresh_objects_grouped(engine):  # noqa: F811
    init_db(engine)
    rng = np.random.default_rng(3)
    with session(engine) as s:
        oids, _ = _history_db(s, rng)
        refresh_objects(s, set(oids) | {None, "ZTF26zzzzzzz"})
    with session(engine) as s:
        for oid in oids:
            o = s.get(AstroObject, oid)
            j = [c.jd for c in s.scalars(select(Candidate).where(Candidate.object_id == oid))]
            if j:
                assert (o.ndet, o.jdstart, o.jdend) == (len(j), min(j), max(j))
            else:  # no candidates: left as it was
                assert (o.ndet, o.jdstart, o.jdend) == (0, 0.0, 0.0)
