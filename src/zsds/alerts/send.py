"""Make a night's alert packets, archive them on disk and publish them on Kafka.

Every candidate of the night that passed the packet cuts (``candidates.passed``) becomes one
Avro packet (the real ZTF schema, :mod:`zsds.alerts.packet`) with its object's 30-day history
(previous detections and the upper limits of difference images at its position without one,
:func:`zsds.diffim.objects.history`) and the three 63x63 cutouts written by the subtraction
(``candcutouts.fits``). Packets go

* always to the nightly archive ``HOME/alerts/ztf_YYYYMMDD_programidN/<candid>.avro``;
* with a bootstrap address, to the Kafka topic ``ztf_YYYYMMDD_programidN`` through an
  idempotent producer.

The ``alerts`` table records each packet and when the broker acknowledged it, so running the
command again re-sends nothing already delivered (``resend=True`` forces it) and never makes a
second file: re-running is idempotent end to end.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from zsds.alerts.archive import write_packet
from zsds.alerts.kafka import AlertProducer, topic_name
from zsds.alerts.packet import build_alert, serialize_alert
from zsds.alerts.schema import load_alert_schema
from zsds.core.home import Home
from zsds.core.naming import nid_of, parse_night
from zsds.db.engine import session
from zsds.db.schema import AlertRecord, Candidate, DiffImageRecord
from zsds.diffim.objects import history
from zsds.diffim.run import read_cutouts

__all__ = ["SendSummary", "make_packets", "publish", "send_night"]

ProgressFn = Callable[[str, int, int], None]


@dataclass
class SendSummary:
    """Outcome of :func:`send_night`."""

    packets: int = 0
    archived: int = 0
    sent: int = 0
    already_sent: int = 0
    errors: list[str] = field(default_factory=list)
    topics: dict[str, int] = field(default_factory=dict)
    seconds_build: float = 0.0
    seconds_kafka: float = 0.0


def make_packets(
    home: Home,
    engine: Engine,
    night: str | dt.date,
    progress: ProgressFn | None = None,
    pids: list[int] | None = None,
) -> list[tuple[str, int, str, Path, int]]:
    """Build and archive every packet of a night (or of the difference images ``pids``);
    returns (topic, candid, objectId, path, size).

    Packets are (re)written for every passing candidate, so the archive always reflects the
    current candidates; the ``alerts`` rows keep their delivery state.
    """
    date = parse_night(night)
    nid = nid_of(date)
    schema = load_alert_schema()
    out = []
    cut_cache: dict[int, dict] = {}
    with session(engine) as s:
        q = select(Candidate).where(Candidate.nid == nid, Candidate.passed)
        if pids is not None:
            q = q.where(Candidate.pid.in_([int(p) for p in pids]))
        cands = s.execute(q.order_by(Candidate.jd, Candidate.candid)).scalars().all()
        for k, c in enumerate(cands):
            if c.pid not in cut_cache:
                d = s.get(DiffImageRecord, c.pid)
                p = home.path(d.relpath.replace("scimrefdiffimg.fits", "candcutouts.fits"))
                cut_cache.clear()
                cut_cache[c.pid] = read_cutouts(p) if p.exists() else {}
            dets, ulims, hist = history(s, c.object_id, c.ra, c.dec, c.jd, c.field, c.rcid)
            record = dict(c.record)
            record.update(hist)
            for u in ulims:  # required (non-null) in prv_candidate
                u["rbversion"] = record.get("rbversion", "none")
            alert = build_alert(
                c.object_id,
                record,
                dets + ulims if (dets or ulims) else None,
                cut_cache[c.pid].get(c.candid),
                schema,
            )
            if alert["prv_candidates"] is not None:
                alert["prv_candidates"].sort(key=lambda r: r["jd"])
            payload = serialize_alert(alert, schema)
            topic = topic_name(date, c.programid)
            path = write_packet(home.alerts, topic, c.candid, payload)
            rec = s.get(AlertRecord, c.candid)
            rel = str(path.relative_to(home.root))
            if rec is None:
                s.add(
                    AlertRecord(
                        candid=c.candid,
                        object_id=c.object_id,
                        topic=topic,
                        relpath=rel,
                        nbytes=len(payload),
                    )
                )
            else:
                rec.relpath, rec.nbytes, rec.topic = rel, len(payload), topic
            out.append((topic, c.candid, c.object_id, path, len(payload)))
            if progress:
                progress(c.object_id, k + 1, len(cands))
    return out


def send_night(
    home: Home,
    engine: Engine,
    night: str | dt.date,
    kafka: str | None = None,
    resend: bool = False,
    progress: ProgressFn | None = None,
) -> SendSummary:
    """Archive a night's packets and, with ``kafka`` (``host:port``), publish them."""
    import time

    t0 = time.perf_counter()
    packets = make_packets(home, engine, night, progress)
    summary = SendSummary(packets=len(packets), archived=len(packets))
    summary.seconds_build = time.perf_counter() - t0
    for topic, *_ in packets:
        summary.topics[topic] = summary.topics.get(topic, 0) + 1
    if kafka is None:
        return summary
    t1 = time.perf_counter()
    sent, errors, already = publish(engine, kafka, packets, resend)
    summary.sent, summary.errors, summary.already_sent = sent, errors, already
    summary.seconds_kafka = time.perf_counter() - t1
    return summary


def publish(engine: Engine, kafka: str, packets: list[tuple[str, int, str, Path, int]],
            resend: bool = False, producer: AlertProducer | None = None
            ) -> tuple[int, list[str], int]:
    """Produce archived packets to Kafka and record their delivery.

    Packets the ``alerts`` table marks as delivered are skipped unless ``resend``. Returns
    ``(delivered, errors, skipped)``. A ``producer`` may be passed to keep one idempotent
    producer session across calls (the executive does so for a whole night).
    """
    cands = [p[1] for p in packets]
    with session(engine) as s:
        sent = set(s.execute(select(AlertRecord.candid).where(
            AlertRecord.candid.in_(cands), AlertRecord.sent_at.is_not(None))).scalars())
    todo = [p for p in packets if resend or p[1] not in sent]
    if not todo:
        return 0, [], len(packets)
    own = producer is None
    prod = AlertProducer(kafka) if own else producer
    try:
        for topic, candid, _oid, path, _n in todo:
            prod.produce(topic, candid, path.read_bytes())
        delivered, errors = prod.flush(60.0)
    finally:
        if own:
            prod.__exit__(None, None, None)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with session(engine) as s:
        for candid in delivered:
            rec = s.get(AlertRecord, candid)
            if rec is not None:
                rec.sent_at, rec.sent_to = now, kafka
    return len(delivered), errors, len(packets) - len(todo)
