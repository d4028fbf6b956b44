"""Objects: candidates within 1.5" grouped under one ZTF name, and their 30-day history.

Names are ZTF's: ``ZTF`` + two-digit year of the first detection + seven lowercase letters, a
base-26 counter with a = 0 (``shared/reference/ZTF_REFERENCE.md`` section 3), e.g. the first
object of 2026 is ``ZTF26aaaaaaa``. Counters live in the ``object_counters`` table, so names are
unique across processes (the counter row is locked by the transaction that takes a name).
"""

from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np
from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from zsds.db.schema import AstroObject, Candidate, DiffImageRecord, ObjectCounter

__all__ = ["associate", "history", "object_name", "parse_object_name", "refresh_objects"]

LETTERS = "abcdefghijklmnopqrstuvwxyz"
NAME_DIGITS = 7
ASSOC_RADIUS = 1.5  # arcsec
JD_YEAR0 = 2451544.5  # 2000-01-01T00:00 UTC


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


def _next_name(s: Session, year: int) -> str:
    """Take the next name of ``year`` atomically (an upsert, then an increment that returns the
    new value under the row lock), so concurrent workers never share a name."""
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
                  .values(next=ObjectCounter.next + 1).returning(ObjectCounter.next)).scalar_one()
    return object_name(year, int(n) - 1)


def _near(table, ra: float, dec: float, radius: float):
    r = radius / 3600.0
    dra = r / max(np.cos(np.radians(dec)), 1e-6)
    cond = and_(table.dec.between(dec - r, dec + r))
    # Positions near RA = 0/360 wrap; query both sides.
    if ra - dra < 0 or ra + dra >= 360:
        lo, hi = (ra - dra) % 360, (ra + dra) % 360
        cond = and_(cond, (table.ra >= lo) | (table.ra <= hi))
    else:
        cond = and_(cond, table.ra.between(ra - dra, ra + dra))
    return cond


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


def refresh_objects(s: Session, object_ids: set[str]) -> None:
    """Recompute ``ndet``, ``jdstart`` and ``jdend`` of objects from their candidates (so that
    re-processing an image never double-counts)."""
    for oid in object_ids:
        n, j0, j1 = s.execute(select(func.count(), func.min(Candidate.jd), func.max(Candidate.jd))
                              .where(Candidate.object_id == oid)).one()
        o = s.get(AstroObject, oid)
        if o is not None and n:
            o.ndet, o.jdstart, o.jdend = int(n), float(j0), float(j1)


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
    cands = s.execute(select(Candidate).where(Candidate.object_id == object_id,
                                              Candidate.jd < jd)
                      .order_by(Candidate.jd)).scalars().all()
    same = [c for c in cands if c.field == field and c.rcid == rcid]
    det_pids = {c.pid for c in cands}
    # Coverage history: the same field and readout channel always look at (nearly) the same
    # sky, so a count suffices; only the 30-day window is read row by row.
    cover = (DiffImageRecord.field == field, DiffImageRecord.rcid == rcid,
             DiffImageRecord.jd <= jd)
    ncov = s.scalar(select(func.count()).select_from(DiffImageRecord).where(*cover))
    covers = s.execute(select(DiffImageRecord).where(
        *cover, DiffImageRecord.jd >= jd - days)).scalars().all()
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
