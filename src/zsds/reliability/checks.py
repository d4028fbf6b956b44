"""What a night lost or duplicated: the checks run after every fault scenario.

**Lost** (:attr:`Integrity.lost`, by kind):

* ``raw``: raw files given to the night that are neither archived (a ``raw_files`` row and its
  file) nor quarantined (a ``quarantine`` row and its file);
* ``quadrants``: science quadrants of the night's ingested raw files not calibrated (job
  ``done`` and a ``sciimg`` on disk) or, with subtraction, not subtracted (job ``done`` or
  ``skipped``, the difference image on disk) or not packaged (``packets`` job ``done``);
* ``alerts``: passing candidates without an archived packet, archived packets whose file is
  gone;
* ``kafka``: archived packets the broker does not hold (when a broker is given).

**Duplicated** (:attr:`Integrity.duplicated`, by kind):

* ``rows``: the same detection twice (candidates with the same image and position), the same
  object twice (objects of the night's candidates within 1.5 arcsec of each other), objects
  whose ``ndet`` disagrees with their candidates, a file quarantined twice;
* ``files``: temporary files of writers that are gone, a raw file both in ``incoming/`` and
  archived, packets in the night's alert folders that no ``alerts`` row knows;
* ``kafka``: messages beyond the first of each candid on the night's topics.

Unique constraints already forbid the other duplicates (one ``raw_files`` row per exposure
and CCD, one product per quadrant and kind, one job per stage and key...).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from zsds.core.home import Home
from zsds.core.naming import nid_of, parse_night, pid_of
from zsds.db.engine import session
from zsds.db.schema import (
    AlertRecord,
    AstroObject,
    Candidate,
    DiffImageRecord,
    Job,
    QuadrantProduct,
    Quarantine,
    RawFile,
)
from zsds.io.fitsio import stale_temporaries

__all__ = ["Integrity", "night_integrity"]

#: Radius (arcsec) within which two objects are the same object (the association radius).
SAME_OBJECT_ARCSEC = 1.5


@dataclass
class Integrity:
    """What a night lost and duplicated, and the jobs left ``running``."""

    lost: dict[str, int] = field(default_factory=dict)
    duplicated: dict[str, int] = field(default_factory=dict)
    running_jobs: int = 0
    #: One line per problem found (the first few of each kind).
    details: list[str] = field(default_factory=list)
    #: What was counted: raw files, quadrants, packets, Kafka messages.
    counted: dict[str, int] = field(default_factory=dict)

    @property
    def total_lost(self) -> int:
        return sum(self.lost.values())

    @property
    def total_duplicated(self) -> int:
        return sum(self.duplicated.values())

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing duplicated, no job left running."""
        return not self.total_lost and not self.total_duplicated and not self.running_jobs

    def _add(self, table: dict[str, int], kind: str, problems: list[str]) -> None:
        table[kind] = table.get(kind, 0) + len(problems)
        self.details += problems[:5]

    def summary(self) -> str:
        """One line: lost and duplicated by kind, jobs running."""
        def fmt(d: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in d.items() if v) or "0"

        return (f"lost {fmt(self.lost)}; duplicated {fmt(self.duplicated)}; "
                f"{self.running_jobs} job(s) running")


def _lost_raw(home: Home, engine: Engine, names: Iterable[str]) -> list[str]:
    out = []
    with session(engine) as s:
        for name in names:
            rows = s.execute(select(RawFile.relpath).where(RawFile.filename == name)
                             ).scalars().all()
            if any(home.path(r).is_file() for r in rows):
                continue
            q = s.execute(select(Quarantine.relpath).where(Quarantine.filename == name)
                          ).scalars().all()
            if any(home.path(r).exists() for r in q):
                continue
            out.append(f"raw file {name}: neither archived nor quarantined")
    return out


def _lost_quadrants(home: Home, engine: Engine, date: dt.date, subtraction: bool
                    ) -> tuple[list[str], int]:
    from zsds.instcal.run import science_files

    out = []
    files = science_files(engine, date)
    with session(engine) as s:
        jobs = {(j.stage, j.key): j.state for j in s.execute(select(Job)).scalars()}
        products = {(p.pid, p.kind): p.relpath for p in s.execute(
            select(QuadrantProduct).where(QuadrantProduct.kind == "sciimg")).scalars()}
        diffs = {d.pid: d.relpath for d in s.execute(select(DiffImageRecord)).scalars()}
    pids = [pid_of(int(expid), int(ccdid), q) for _, expid, ccdid, *_ in files
            for q in (1, 2, 3, 4)]
    for pid in pids:
        key = str(pid)
        sci = products.get((pid, "sciimg"))
        if jobs.get(("calibrate", key)) != "done" or sci is None or not home.path(sci).is_file():
            out.append(f"quadrant {pid}: not calibrated "
                       f"(job {jobs.get(('calibrate', key))}, sciimg {sci})")
            continue
        if not subtraction:
            continue
        state = jobs.get(("subtract", key))
        if state == "skipped":
            continue
        diff = diffs.get(pid)
        if state != "done" or diff is None or not home.path(diff).is_file():
            out.append(f"quadrant {pid}: not subtracted (job {state}, difference {diff})")
        elif jobs.get(("packets", key)) != "done":
            out.append(f"quadrant {pid}: packets not built (job {jobs.get(('packets', key))})")
    return out, len(pids)


def _alerts(home: Home, engine: Engine, date: dt.date
            ) -> tuple[list[str], list[str], dict[int, AlertRecord]]:
    """Lost packets, orphan packet files, and the night's ``alerts`` rows by candid."""
    from zsds.alerts.kafka import PROGRAMS, topic_name

    topics = [topic_name(date, p) for p in PROGRAMS]
    with session(engine) as s:
        passing = s.execute(select(Candidate.candid).where(
            Candidate.nid == nid_of(date), Candidate.passed)).scalars().all()
        records = {r.candid: r for r in s.execute(
            select(AlertRecord).where(AlertRecord.topic.in_(topics))).scalars()}
        for r in records.values():
            s.expunge(r)
    lost = [f"candidate {c}: passing, no archived packet" for c in passing if c not in records]
    lost += [f"packet {r.candid}: file {r.relpath} missing" for r in records.values()
             if not home.path(r.relpath).is_file()]
    orphans = []
    for topic in topics:
        folder = home.alerts / topic
        if folder.is_dir():
            orphans += [f"packet file {p.name} in {topic}: no alerts row"
                        for p in sorted(folder.glob("*.avro"))
                        if not p.stem.isdigit() or int(p.stem) not in records]
    return lost, orphans, records


def _duplicate_rows(engine: Engine, date: dt.date) -> list[str]:
    out = []
    nid = nid_of(date)
    with session(engine) as s:
        for pid, ra, dec, n in s.execute(
                select(Candidate.pid, Candidate.ra, Candidate.dec, func.count())
                .where(Candidate.nid == nid)
                .group_by(Candidate.pid, Candidate.ra, Candidate.dec)
                .having(func.count() > 1)).all():
            out += [f"candidate at ({ra:.6f}, {dec:.6f}) on image {pid}"] * (n - 1)
        counts = dict(s.execute(select(Candidate.object_id, func.count())
                                .where(Candidate.object_id.in_(
                                    select(Candidate.object_id).where(Candidate.nid == nid)))
                                .group_by(Candidate.object_id)).all())
        objs = s.execute(select(AstroObject).where(AstroObject.object_id.in_(list(counts)))
                         ).scalars().all()
        for filename, n in s.execute(select(Quarantine.filename, func.count())
                                     .group_by(Quarantine.filename)
                                     .having(func.count() > 1)).all():
            out += [f"{filename} quarantined {n} times"] * (n - 1)
    out += [f"object {o.object_id}: ndet {o.ndet}, {counts[o.object_id]} candidates"
            for o in objs if o.ndet != counts[o.object_id]]
    if len(objs) > 1:
        ra = np.radians([o.ra for o in objs])
        dec = np.radians([o.dec for o in objs])
        cosd = (np.sin(dec[:, None]) * np.sin(dec[None, :])
                + np.cos(dec[:, None]) * np.cos(dec[None, :]) * np.cos(ra[:, None] - ra[None, :]))
        sep = np.degrees(np.arccos(np.clip(cosd, -1.0, 1.0))) * 3600.0
        i, j = np.nonzero(np.triu(sep < SAME_OBJECT_ARCSEC, k=1))
        out += [f"objects {objs[a].object_id} and {objs[b].object_id} are "
                f"{sep[a, b]:.2f} arcsec apart" for a, b in zip(i, j, strict=True)]
    return out


def _kafka(bootstrap: str, date: dt.date, records: dict[int, AlertRecord]
           ) -> tuple[list[str], list[str], int]:
    from zsds.alerts.kafka import topic_keys

    lost: list[str] = []
    dups: list[str] = []
    n = 0
    for topic in sorted({r.topic for r in records.values()}):
        keys = Counter(c for c, _ in topic_keys(bootstrap, topic))
        n += sum(keys.values())
        lost += [f"packet {c}: not on {topic}" for c, r in sorted(records.items())
                 if r.topic == topic and c not in keys]
        dups += [f"packet {c}: {k} times on {topic}" for c, k in sorted(keys.items()) if k > 1
                 for _ in range(k - 1)]
    return lost, dups, n


def night_integrity(home: Home, engine: Engine, night: str | dt.date, *,
                    raw_names: Iterable[str] | None = None, kafka: str | None = None,
                    subtraction: bool = True) -> Integrity:
    """Count what a night lost and duplicated (see the module docstring).

    Parameters
    ----------
    home, engine
        The home and its database.
    night
        UT night.
    raw_names
        Names of the raw files given to the night (each must be archived or quarantined).
    kafka
        Bootstrap address of a broker whose topics of the night must hold each archived
        packet exactly once.
    subtraction
        Whether quadrants must also be subtracted and packaged.

    Returns
    -------
    Integrity
    """
    date = parse_night(night)
    res = Integrity()
    names = list(raw_names or [])
    res._add(res.lost, "raw", _lost_raw(home, engine, names))
    lost_q, nquads = _lost_quadrants(home, engine, date, subtraction)
    res._add(res.lost, "quadrants", lost_q)
    lost_a, orphans, records = _alerts(home, engine, date)
    res._add(res.lost, "alerts", lost_a)
    res._add(res.duplicated, "rows", _duplicate_rows(engine, date))
    temps = [f"temporary file {p.relative_to(home.root)} left by a writer that is gone"
             for d in (home.products, home.alerts, home.raw) for p in stale_temporaries(d)]
    archived = {p.name for p in home.raw.rglob("*.fits*")} if home.raw.is_dir() else set()
    twice = [f"raw file {p.name} both in incoming/ and archived"
             for p in sorted(home.incoming.glob("*")) if p.name in archived]
    res._add(res.duplicated, "files", temps + twice + orphans)
    res.counted = {"raw files": len(names), "quadrants": nquads, "packets": len(records)}
    if kafka is not None:
        lost_k, dup_k, nmsg = _kafka(kafka, date, records)
        res._add(res.lost, "kafka", lost_k)
        res._add(res.duplicated, "kafka", dup_k)
        res.counted["kafka messages"] = nmsg
    with session(engine) as s:
        running = s.execute(select(Job.stage, Job.key).where(Job.state == "running")).all()
    res.running_jobs = len(running)
    res.details += [f"job {stage} {key} left running" for stage, key in running[:5]]
    return res
