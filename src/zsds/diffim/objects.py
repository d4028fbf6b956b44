"""Objects: candidates within 1.5" grouped under one ZTF name, and their 30-day history.

Names are ZTF's: ``ZTF`` + two-digit year of the first detection + seven lowercase letters, a
base-26 counter with a = 0 (``shared/reference/ZTF_REFERENCE.md`` section 3), e.g. the first
object of 2026 is ``ZTF26aaaaaaa``. Counters live in the ``object_counters`` table, so names are
unique across processes (the counter row is locked by the transaction that takes a name).

The per-candidate functions (:func:`associate`, :func:`history`) have per-quadrant batched
counterparts (:func:`associate_many`, :func:`history_many`) that give the same results with a
fixed number of queries per call instead of a few per candidate (issue 22, item 3).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from zsds.core.sphere import chord_length, unit_vectors
from zsds.db.schema import AstroObject, Candidate, DiffImageRecord, ObjectCounter

__all__ = ["associate", "associate_many", "history", "history_many", "object_name",
           "parse_object_name", "refresh_objects"]

LETTERS = "abcdefghijklmnopqrstuvwxyz"
NAME_DIGITS = 7
ASSOC_RADIUS = 1.5  # arcsec
JD_YEAR0 = 2451544.5  # 2000-01-01T00:00 UTC
_CHUNK = 500  # ids per IN (...) list and (field, rcid) pairs per OR: well under SQLite's limits


def object_name(year: int, counter: int) -> str:
    """ZTF object name of the ``counter``-th object (0-based) first seen in ``year``."""
    if not 0 <= counter < 26**NAME_DIGITS:
        raise ValueError(f"object counter {counter} out of range")
    letters = []
    for _ in range(NAME_DIGITS):
        counter, r = divmod(counter, 26)
        letters.append(LETTERS[r])
    return f"ZTF{year % 100:02d}{''.join(reversed(letters))}"


def parse_object_name(name: str) -> tuple[int, int]:
    """Inverse of :func:`object_name`: ``(two-digit year, counter)``."""
    if len(name) != 3 + 2 + NAME_DIGITS or not name.startswith("ZTF"):
        raise ValueError(f"not a ZTF object name: {name!r}")
    n = 0
    for ch in name[5:]:
        n = 26 * n + LETTERS.index(ch)
    return int(name[3:5]), n


def _year(jd: float) -> int:
    from astropy.time import Time

    return int(Time(jd, format="jd").datetime.year) % 100


def _years(jd: np.ndarray) -> list[int]:
    """:func:`_year` of many dates at once."""
    from astropy.time import Time

    if not len(jd):
        return []
    return [int(d.year) % 100 for d in np.atleast_1d(Time(np.asarray(jd, float),
                                                          format="jd").datetime)]


def _next_name(s: Session, year: int) -> str:
    """Take the next name of ``year`` atomically (an upsert, then an increment that returns the
    new value under the row lock), so concurrent workers never share a name."""
    return _take_names(s, year, 1)[0]


def _take_names(s: Session, year: int, k: int) -> list[str]:
    """Take the next ``k`` names of ``year`` at once (one upsert and one increment by ``k``)."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only the two supported backends
        raise RuntimeError(f"unsupported database dialect {dialect!r}")
    s.execute(insert(ObjectCounter).values(year=year, next=0)
              .on_conflict_do_nothing(index_elements=["year"]))
    n = s.execute(update(ObjectCounter).where(ObjectCounter.year == year)
                  .values(next=ObjectCounter.next + k).returning(ObjectCounter.next)).scalar_one()
    return [object_name(year, int(n) - k + i) for i in range(k)]


def _box(ra: float, dec: float, radius: float) -> tuple[float, float, float, float, bool]:
    """The search box of a position: ``(dec_lo, dec_hi, ra_lo, ra_hi, wraps)``; a box that
    wraps at RA = 0/360 holds ``ra >= ra_lo or ra <= ra_hi``."""
    r = radius / 3600.0
    dra = r / max(np.cos(np.radians(dec)), 1e-6)
    # Positions near RA = 0/360 wrap; query both sides.
    if ra - dra < 0 or ra + dra >= 360:
        return dec - r, dec + r, (ra - dra) % 360, (ra + dra) % 360, True
    return dec - r, dec + r, ra - dra, ra + dra, False


def _in_box(box: tuple[float, float, float, float, bool], ra: float, dec: float) -> bool:
    """What :func:`_near`'s SQL condition says of a row at (ra, dec)."""
    dlo, dhi, lo, hi, wraps = box
    if not dlo <= dec <= dhi:
        return False
    return (ra >= lo or ra <= hi) if wraps else lo <= ra <= hi


def _near(table, ra: float, dec: float, radius: float):
    dlo, dhi, lo, hi, wraps = _box(ra, dec, radius)
    cond = and_(table.dec.between(dlo, dhi))
    if wraps:
        cond = and_(cond, (table.ra >= lo) | (table.ra <= hi))
    else:
        cond = and_(cond, table.ra.between(lo, hi))
    return cond


def _region(table, ra: np.ndarray, dec: np.ndarray, radius: float):
    """One box holding the boxes of all the positions (a quadrant's bounding box padded by the
    radius): every row :func:`_near` finds for any of them, and a few more."""
    r = radius / 3600.0
    cosd = np.maximum(np.cos(np.radians(dec)), 1e-6)
    pad = float(np.max(r / cosd)) * (1 + 1e-9) + 1e-9
    cond = table.dec.between(float(dec.min()) - r * (1 + 1e-9) - 1e-9,
                             float(dec.max()) + r * (1 + 1e-9) + 1e-9)
    # The shortest RA arc holding every position: the complement of the widest gap.
    a = np.sort(np.mod(ra, 360.0))
    gaps = np.diff(np.append(a, a[0] + 360.0))
    k = int(np.argmax(gaps))
    start = float(a[(k + 1) % len(a)])
    length = 360.0 - float(gaps[k])
    if length + 2 * pad >= 360.0 - 1e-9:
        return cond  # the boxes go all the way round (or nearly): no RA condition
    lo, hi = start - pad, start + length + pad
    if lo < 0 or hi >= 360.0:
        return and_(cond, (table.ra >= lo % 360.0) | (table.ra <= hi % 360.0))
    return and_(cond, table.ra.between(lo, hi))


def _chunks(seq: Sequence, n: int = _CHUNK) -> Iterable[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _sep(ra1, dec1, ra2, dec2) -> np.ndarray:
    r1, d1, r2, d2 = map(np.radians, (ra1, dec1, ra2, dec2))
    c = np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(r1 - r2)
    return np.degrees(np.arccos(np.clip(c, -1, 1))) * 3600.0


def associate(s: Session, ra: float, dec: float, jd: float, radius: float = ASSOC_RADIUS
              ) -> str:
    """Object name for a detection at (ra, dec, jd): the nearest object within ``radius``"
    or a new one (named from the year of ``jd``). :func:`refresh_objects` then recomputes the
    objects' counts and spans from their candidates."""
    rows = s.execute(select(AstroObject).where(_near(AstroObject, ra, dec, radius))).scalars()
    best, best_d = None, radius
    for o in rows:
        d = float(_sep(ra, dec, o.ra, o.dec))
        if d <= best_d:
            best, best_d = o, d
    if best is None:
        best = AstroObject(object_id=_next_name(s, _year(jd)), ra=ra, dec=dec, ndet=0,
                           jdstart=jd, jdend=jd)
        s.add(best)
        s.flush()
    return best.object_id


def associate_many(s: Session, ra: Sequence[float] | np.ndarray, dec: Sequence[float] | np.ndarray,
                   jd: Sequence[float] | np.ndarray, radius: float = ASSOC_RADIUS) -> list[str]:
    """:func:`associate` of many detections (a quadrant's) at once, with the same result as
    calling it on each in turn: the object names, in order.

    One query reads every object in the detections' bounding box padded by ``radius``; a
    KD-tree on unit vectors finds each detection's neighbours, which are then judged exactly as
    :func:`associate` judges them (its search box, then :func:`_sep` ``<= radius``, the nearest
    one). A detection matching nothing starts a new object at its position, which the later
    detections of the batch see, so several detections of one new object get one name. The new
    names are taken per year in one counter update each, and the new objects inserted together.
    """
    from scipy.spatial import cKDTree

    ra = np.asarray(ra, float).ravel()
    dec = np.asarray(dec, float).ravel()
    jd = np.asarray(jd, float).ravel()
    n = len(ra)
    if not n:
        return []
    if not len(dec) == len(jd) == n:
        raise ValueError("ra, dec and jd must have the same length")
    rows = s.execute(select(AstroObject.object_id, AstroObject.ra, AstroObject.dec)
                     .where(_region(AstroObject, ra, dec, radius))).all()
    oids = [r[0] for r in rows]
    ora = [float(r[1]) for r in rows]
    odec = [float(r[2]) for r in rows]
    # Chord of the radius with a margin over _sep's rounding: the KD-tree only pre-selects.
    chord = chord_length(radius * 1.01) + 1e-12
    pts = unit_vectors(ra, dec)
    near_obj = (cKDTree(unit_vectors(ora, odec)).query_ball_point(pts, chord)
                if rows else [[] for _ in range(n)])
    near_det = cKDTree(pts).query_ball_point(pts, chord) if n > 1 else [[0]]
    names: list[str | int] = [""] * n  # an int: index of the detection that starts the object
    new: list[int] = []  # the detections that start new objects, in order
    for i in range(n):
        a, d = float(ra[i]), float(dec[i])
        box = _box(a, d, radius)
        best: str | int | None = None
        best_d = radius
        for k in sorted(near_obj[i]):
            if _in_box(box, ora[k], odec[k]):
                dk = float(_sep(a, d, ora[k], odec[k]))
                if dk <= best_d:
                    best, best_d = oids[k], dk
        for j in sorted(near_det[i]):
            if j < i and names[j] == j:  # detection j started an object at its position
                aj, dj = float(ra[j]), float(dec[j])
                if _in_box(box, aj, dj):
                    dk = float(_sep(a, d, aj, dj))
                    if dk <= best_d:
                        best, best_d = j, dk
        if best is None:
            best = i
            new.append(i)
        names[i] = best
    if new:
        years = _years(jd[new])
        taken: dict[int, str] = {}
        for year in sorted(set(years)):
            mine = [i for i, y in zip(new, years, strict=True) if y == year]
            taken.update(zip(mine, _take_names(s, year, len(mine)), strict=True))
        s.add_all([AstroObject(object_id=taken[i], ra=float(ra[i]), dec=float(dec[i]), ndet=0,
                               jdstart=float(jd[i]), jdend=float(jd[i])) for i in new])
        s.flush()
        names = [taken[x] if isinstance(x, int) else x for x in names]
    return names  # type: ignore[return-value]


def refresh_objects(s: Session, object_ids: Iterable[str | None]) -> None:
    """Recompute ``ndet``, ``jdstart`` and ``jdend`` of objects from their candidates (so that
    re-processing an image never double-counts): one grouped query for all of them (per 500),
    one to load them, and the updates flushed together."""
    ids = sorted({o for o in object_ids if o is not None})
    stats: dict[str, tuple[int, float, float]] = {}
    for chunk in _chunks(ids):
        for oid, n, j0, j1 in s.execute(
                select(Candidate.object_id, func.count(), func.min(Candidate.jd),
                       func.max(Candidate.jd))
                .where(Candidate.object_id.in_(chunk)).group_by(Candidate.object_id)):
            if n:
                stats[oid] = (int(n), float(j0), float(j1))
    for chunk in _chunks(sorted(stats)):
        for o in s.execute(select(AstroObject).where(AstroObject.object_id.in_(chunk))).scalars():
            o.ndet, o.jdstart, o.jdend = stats[o.object_id]


def history(s: Session, object_id: str, ra: float, dec: float, jd: float, field: int,
            rcid: int, days: float = 30.0) -> tuple[list[dict], list[dict], dict[str, float]]:
    """Previous detections and upper limits at a position over the last ``days``.

    Returns ``(detections, upper_limits, hist)``: candidate records of the object before
    ``jd``; one record per difference image of the same field and readout channel in the window
    without a detection of the object (ZTF's non-detections: ``jd``, ``fid``, ``pid``,
    ``diffmaglim``, ``pdiffimfilename``, ... -- the image's calibration, which is in its
    header, is the caller's to add); and ``ndethist``, ``ncovhist``, ``jdstarthist``,
    ``jdendhist``.
    """
    # No object, no previous detections (``object_id == None`` would read as IS NULL).
    cands = [] if object_id is None else s.execute(
        select(Candidate).where(Candidate.object_id == object_id, Candidate.jd < jd)
        .order_by(Candidate.jd, Candidate.candid)).scalars().all()
    same = [c for c in cands if c.field == field and c.rcid == rcid]
    det_pids = {c.pid for c in cands}
    # Coverage history: the same field and readout channel always look at (nearly) the same
    # sky, so a count suffices; only the 30-day window is read row by row.
    cover = (DiffImageRecord.field == field, DiffImageRecord.rcid == rcid,
             DiffImageRecord.jd <= jd)
    ncov = s.scalar(select(func.count()).select_from(DiffImageRecord).where(*cover))
    covers = s.execute(select(DiffImageRecord).where(
        *cover, DiffImageRecord.jd >= jd - days)
        .order_by(DiffImageRecord.jd, DiffImageRecord.pid)).scalars().all()
    covers = [d for d in covers if _sep(ra, dec, d.ra, d.dec) <= d.radius * 3600.0]
    window = [c for c in cands if c.jd >= jd - days]
    dets = [dict(c.record) for c in window]
    ulims = [{"jd": d.jd, "fid": d.fid, "pid": d.pid, "diffmaglim": d.diffmaglim,
              "programid": d.programid, "nid": d.nid, "rcid": d.rcid, "field": d.field,
              "magzpsci": d.magzp, "pdiffimfilename": PurePosixPath(d.relpath).name}
             for d in covers if d.jd < jd and d.jd >= jd - days and d.pid not in det_pids]
    jds = [c.jd for c in same] + [jd]
    hist = {"ndethist": len(same) + 1, "ncovhist": int(ncov),
            "jdstarthist": min(jds), "jdendhist": max(jds)}
    return dets, ulims, hist


_HistoryArgs = tuple[str | None, float, float, float, int, int]


def _history_args(c: Any) -> _HistoryArgs:
    if isinstance(c, tuple | list):
        oid, ra, dec, jd, field, rcid = c
        return oid, ra, dec, jd, field, rcid
    return c.object_id, c.ra, c.dec, c.jd, c.field, c.rcid


def history_many(s: Session, candidates: Iterable[Any], days: float = 30.0
                 ) -> list[tuple[list[dict], list[dict], dict[str, float]]]:
    """:func:`history` of many candidates at once (a quadrant's, a night's), in their order.

    ``candidates`` are rows with ``object_id``, ``ra``, ``dec``, ``jd``, ``field`` and ``rcid``
    attributes (:class:`~zsds.db.schema.Candidate`) or tuples of those six, in that order. Three
    queries in all (per 500 objects or (field, rcid) pairs): every earlier candidate of all the
    objects; the coverage count of each (field, rcid) up to its earliest date; the difference
    images of each (field, rcid) from its earliest window start to its latest date, which give
    the rest of each count and the upper limits.
    """
    args = [_history_args(c) for c in candidates]
    if not args:
        return []
    # 1. Previous candidates of all the objects, by object in (jd, candid) order.
    last: dict[str, float] = {}
    for oid, _, _, jd, _, _ in args:
        if oid is not None:
            last[oid] = max(last.get(oid, jd), jd)
    prev: dict[str, list] = defaultdict(list)
    for chunk in _chunks(sorted(last)):
        jmax = max(last[o] for o in chunk)
        for row in s.execute(
                select(Candidate.object_id, Candidate.jd, Candidate.pid, Candidate.field,
                       Candidate.rcid, Candidate.record)
                .where(Candidate.object_id.in_(chunk), Candidate.jd < jmax)
                .order_by(Candidate.object_id, Candidate.jd, Candidate.candid)):
            prev[row[0]].append(row)
    prev_jd = {o: [r[1] for r in rows] for o, rows in prev.items()}
    # 2. and 3. Coverage of each (field, rcid): the count up to its earliest date, and the
    # images from its earliest window start to its latest date.
    span: dict[tuple[int, int], list[float]] = {}
    for _, _, _, jd, field, rcid in args:
        lo, hi, wlo = span.get((field, rcid), (jd, jd, jd - days))
        span[(field, rcid)] = [min(lo, jd), max(hi, jd), min(wlo, jd - days, jd)]
    base: dict[tuple[int, int], int] = {}
    images: dict[tuple[int, int], list] = defaultdict(list)
    D = DiffImageRecord
    for chunk in _chunks(sorted(span)):
        conds = [and_(D.field == f, D.rcid == r, D.jd <= span[(f, r)][0]) for f, r in chunk]
        for f, r, n in s.execute(select(D.field, D.rcid, func.count())
                                 .where(or_(*conds)).group_by(D.field, D.rcid)):
            base[(f, r)] = int(n)
        conds = [and_(D.field == f, D.rcid == r, D.jd <= span[(f, r)][1],
                      D.jd >= span[(f, r)][2]) for f, r in chunk]
        for row in s.execute(select(D.field, D.rcid, D.jd, D.pid, D.fid, D.diffmaglim,
                                    D.programid, D.nid, D.magzp, D.relpath, D.ra, D.dec,
                                    D.radius)
                             .where(or_(*conds)).order_by(D.field, D.rcid, D.jd, D.pid)):
            images[(row[0], row[1])].append(row)
    img_jd = {k: [r[2] for r in rows] for k, rows in images.items()}
    out = []
    for oid, ra, dec, jd, field, rcid in args:
        key = (field, rcid)
        cands = prev.get(oid, [])[:bisect_left(prev_jd.get(oid, []), jd)] if oid else []
        same = [c for c in cands if c[3] == field and c[4] == rcid]
        det_pids = {c[2] for c in cands}
        rows, jds = images.get(key, []), img_jd.get(key, [])
        lo = span[key][0]
        ncov = base.get(key, 0) + bisect_right(jds, jd) - bisect_right(jds, lo)
        # The window as history() reads it (jd - days <= d.jd <= jd), in (jd, pid) order.
        covers = [d for d in rows[bisect_left(jds, jd - days):bisect_right(jds, jd)]
                  if d[2] >= jd - days]
        if covers:
            sep = _sep(ra, dec, np.array([d[10] for d in covers]),
                       np.array([d[11] for d in covers]))
            lim = np.array([d[12] for d in covers]) * 3600.0
            keep = sep <= lim
            # At the edge (to a few parts in 10^12) judge as history() does, one by one.
            for k in np.flatnonzero(np.abs(sep - lim) <= 1e-9 * np.maximum(lim, 1.0)):
                d = covers[k]
                keep[k] = bool(_sep(ra, dec, d[10], d[11]) <= d[12] * 3600.0)
            covers = [d for d, ok in zip(covers, keep, strict=True) if ok]
        dets = [dict(c[5]) for c in cands if c[1] >= jd - days]
        ulims = [{"jd": d[2], "fid": d[4], "pid": d[3], "diffmaglim": d[5],
                  "programid": d[6], "nid": d[7], "rcid": d[1], "field": d[0],
                  "magzpsci": d[8], "pdiffimfilename": PurePosixPath(d[9]).name}
                 for d in covers if d[2] < jd and d[2] >= jd - days and d[3] not in det_pids]
        hj = [c[1] for c in same] + [jd]
        hist = {"ndethist": len(same) + 1, "ncovhist": int(ncov),
                "jdstarthist": min(hj), "jdendhist": max(hj)}
        out.append((dets, ulims, hist))
    return out
