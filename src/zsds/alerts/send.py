"""A night's alert packets: built once, archived, and published as archived.

**Building** (:func:`make_packets`; :func:`build_quadrant_packets` is the job the executive and
``zsds subtract`` run right after a quadrant's subtraction). Every candidate that passed the
packet cuts (``candidates.passed``) becomes one Avro packet (the real ZTF schema,
:mod:`zsds.alerts.packet`) with

* its object's 30-day history: previous detections and the upper limits of the difference
  images at its position without one (:func:`zsds.diffim.objects.history`, each upper limit
  with its image's file name and photometric calibration);
* its forced-photometry history: zsds's own forced photometry at its position on the
  difference images of the 30 days before it (:mod:`zsds.alerts.fphist`);
* the three cutouts written by the subtraction (``candcutouts.fits``), cropped at the image
  edges as IPAC's are.

The packet is archived as ``HOME/alerts/ztf_YYYYMMDD_programidN/<candid>.avro`` (a row in
``alerts``) and is never rebuilt by publishing. Re-processing a quadrant rebuilds its packets
(the same inputs give the same bytes) and removes those of candidates that no longer pass.

**Publishing** (:class:`Publisher`; ``zsds alerts send``; the executive with a Kafka address)
sends the archived bytes as they are to the topic ``ztf_YYYYMMDD_programidN``, created first
with :class:`~zsds.alerts.kafka.StreamConfig`'s partitions and replication; each message has
:func:`packet_message`'s key, timestamp (the exposure's time) and headers. Each delivery is
recorded per broker cluster id and topic (``alert_deliveries``) with the digest of the bytes
sent, so a new (or wiped and restarted) cluster gets every packet and sending to the same
cluster again sends nothing -- not even a packet rebuilt since by a re-processing, which is
reported -- unless ``resend``: a candidate is never streamed twice to a cluster by default.
A cluster that is down keeps nothing from being archived: its packets are reported undelivered
and sent when it is back (:class:`Publisher`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from astropy.io import fits
from confluent_kafka import KafkaError, KafkaException
from sqlalchemy import select
from sqlalchemy.engine import Engine

from zsds.alerts.archive import archive_dir, write_packet
from zsds.alerts.fphist import fp_hist_records, fp_window
from zsds.alerts.kafka import (
    DEFAULT_STREAM,
    PROGRAMS,
    AlertProducer,
    StreamConfig,
    ensure_topic,
    topic_digests,
    topic_name,
)
from zsds.alerts.packet import build_alert, decode_alert_packet, serialize_alert
from zsds.alerts.schema import load_alert_schema
from zsds.core.home import Home
from zsds.core.naming import nid_of, parse_night
from zsds.db.engine import session
from zsds.db.jobs import job
from zsds.db.schema import AlertDelivery, AlertRecord, Candidate, DiffImageRecord
from zsds.diffim.objects import history_many
from zsds.diffim.run import PROGRAMPI, photcal_values, read_cutouts

__all__ = [
    "Message",
    "Packet",
    "PublishResult",
    "Publisher",
    "SendSummary",
    "archived_packets",
    "build_quadrant_packets",
    "make_packets",
    "packet_message",
    "send_night",
]

ProgressFn = Callable[[str, int, int], None]
#: Julian date of the Unix epoch (1970-01-01T00:00 UTC).
JD_UNIX_EPOCH = 2440587.5
#: Upper-limit fields taken from the difference image's header (:func:`photcal_values`).
_UL_PHOTCAL = ("magzpsciunc", "magzpscirms", "clrcoeff", "clrcounc")
#: Candidates per difference image: ``candid = pid * CANDIDS_PER_IMAGE + index``.
CANDIDS_PER_IMAGE = 1_000_000


class Packet(NamedTuple):
    """An archived packet: its topic, candidate, object, file and size."""

    topic: str
    candid: int
    object_id: str
    path: Path
    nbytes: int


class Message(NamedTuple):
    """What a packet is sent as, besides its bytes (see :func:`packet_message`)."""

    key: bytes
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...]


@dataclass
class PublishResult:
    """Outcome of :meth:`Publisher.publish`."""

    sent: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    #: Skipped packets whose archived bytes differ from those delivered (rebuilt by a
    #: re-processing after their delivery): ``resend`` sends them.
    changed: list[int] = field(default_factory=list)
    #: Packets not delivered because the cluster is unreachable (or did not acknowledge in
    #: time): kept in the archive, unrecorded.
    unsent: int = 0
    #: Candids acknowledged now (recorded).
    delivered: list[int] = field(default_factory=list)
    #: Candids the cluster already had (``skipped``, and ``found``).
    already: list[int] = field(default_factory=list)
    #: Packets found on the cluster though not recorded as delivered (a publisher killed
    #: between a delivery and its record): recorded now, not sent again.
    found: int = 0


@dataclass
class SendSummary:
    """Outcome of :func:`send_night`.

    ``packets`` archived packets of the night (per ``topics``); ``missing`` passing candidates
    of the night without one (a quadrant whose packets were not built); ``sent`` delivered
    now, ``already_sent`` delivered before to this cluster (``cluster_id``), ``changed`` those
    of them rebuilt since with other bytes, ``unsent`` the others (not delivered).
    """

    packets: int = 0
    missing: int = 0
    sent: int = 0
    already_sent: int = 0
    changed: int = 0
    #: Archived packets not delivered (cluster unreachable, broker error, unreadable file).
    unsent: int = 0
    errors: list[str] = field(default_factory=list)
    topics: dict[str, int] = field(default_factory=dict)
    cluster_id: str | None = None
    seconds_kafka: float = 0.0


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------
def _image_values(home: Home, relpath: str) -> dict[str, Any]:
    """The upper-limit fields of a difference image that only its header holds."""
    path = home.path(relpath)
    try:
        header = fits.getheader(path)
    except (OSError, KeyError):
        return {}
    cal = photcal_values(header)
    return {k: cal[k] for k in _UL_PHOTCAL}


def _remove_stale(home: Home, date: dt.date, pids: Sequence[int], keep: set[int]) -> None:
    """Remove archived packets of the images ``pids`` whose candidate is not in ``keep``
    (candidates that no longer pass after re-processing); their ``alerts`` rows went with the
    candidates."""
    for programid in PROGRAMS:
        folder = archive_dir(home.alerts, topic_name(date, programid))
        if not folder.is_dir():
            continue
        for pid in pids:
            for path in folder.glob(f"{int(pid)}??????.avro"):
                candid = int(path.stem)
                if candid // CANDIDS_PER_IMAGE == int(pid) and candid not in keep:
                    path.unlink(missing_ok=True)


def make_packets(
    home: Home,
    engine: Engine,
    night: str | dt.date,
    progress: ProgressFn | None = None,
    pids: Sequence[int] | None = None,
) -> list[Packet]:
    """Build and archive the packets of a night's passing candidates (or of the difference
    images ``pids`` only), see the module docstring.

    Returns
    -------
    list of Packet
        One per packet written, in (jd, candid) order.
    """
    from zsds.diffim.forced import forced_photometry

    date = parse_night(night)
    nid = nid_of(date)
    schema = load_alert_schema()
    out: list[Packet] = []
    cut_cache: dict[int, dict] = {}
    image_cache: dict[int, dict[str, Any]] = {}
    fp_cache: dict[str, Any] = {}  # WCSs, PSFs and catalogues of the images measured
    with session(engine) as s:
        q = select(Candidate).where(Candidate.nid == nid, Candidate.passed)
        if pids is not None:
            q = q.where(Candidate.pid.in_([int(p) for p in pids]))
        cands = s.execute(q.order_by(Candidate.jd, Candidate.candid)).scalars().all()
        # Histories in one batch per difference image (three queries, not three a candidate).
        by_pid: dict[int, list[Candidate]] = {}
        for c in cands:
            by_pid.setdefault(c.pid, []).append(c)
        hist_cache: dict[int, tuple] = {}
        for k, c in enumerate(cands):
            if c.pid not in cut_cache:
                d = s.get(DiffImageRecord, c.pid)
                p = home.path(d.relpath.replace("scimrefdiffimg.fits", "candcutouts.fits"))
                cut_cache.clear()
                cut_cache[c.pid] = read_cutouts(p) if p.exists() else {}
            if c.candid not in hist_cache:
                group = by_pid[c.pid]
                hist_cache.update(zip([x.candid for x in group], history_many(s, group),
                                      strict=True))
            dets, ulims, hist = hist_cache.pop(c.candid)  # each kept only until used
            record = dict(c.record)
            record.update(hist)
            for u in ulims:
                if u["pid"] not in image_cache:
                    img = s.get(DiffImageRecord, u["pid"])
                    image_cache[u["pid"]] = {} if img is None else _image_values(home,
                                                                                 img.relpath)
                # rbversion is required (non-null) in prv_candidate.
                u.update(image_cache[u["pid"]], programpi=PROGRAMPI,
                         rbversion=record.get("rbversion", "none"))
            lc = forced_photometry(home, engine, c.ra, c.dec, *fp_window(c.jd), extra=True,
                                   cache=fp_cache)
            alert = build_alert(
                c.object_id,
                record,
                sorted(dets + ulims, key=lambda r: r["jd"]) or None,
                cut_cache[c.pid].get(c.candid),
                schema,
                fp_hists=fp_hist_records(lc, c.jd, exclude_pid=c.pid),
            )
            payload = serialize_alert(alert, schema)
            topic = topic_name(date, c.programid)
            path = write_packet(home.alerts, topic, c.candid, payload)
            rec = s.get(AlertRecord, c.candid)
            rel = str(path.relative_to(home.root))
            if rec is None:
                s.add(AlertRecord(candid=c.candid, object_id=c.object_id, topic=topic,
                                  relpath=rel, nbytes=len(payload)))
            else:
                rec.relpath, rec.nbytes, rec.topic = rel, len(payload), topic
            out.append(Packet(topic, c.candid, c.object_id, path, len(payload)))
            if progress:
                progress(c.object_id, k + 1, len(cands))
        if pids is None:
            pids = s.scalars(select(DiffImageRecord.pid).where(DiffImageRecord.nid == nid)).all()
    _remove_stale(home, date, pids, {p.candid for p in out})
    return out


def build_quadrant_packets(home: Home, engine: Engine, night: str | dt.date, pid: int
                           ) -> list[Packet]:
    """:func:`make_packets` of one difference image, recorded as the job ``("packets", pid)``
    (the executive's task and ``zsds subtract`` run it right after the subtraction)."""
    with job(engine, "packets", str(pid)):
        return make_packets(home, engine, night, pids=[pid])


def archived_packets(home: Home, engine: Engine, night: str | dt.date
                     ) -> tuple[list[Packet], int]:
    """The night's archived packets (``alerts`` rows of its topics) in candid order, and how
    many of its passing candidates have none."""
    date = parse_night(night)
    topics = [topic_name(date, p) for p in PROGRAMS]
    with session(engine) as s:
        rows = s.execute(select(AlertRecord).where(AlertRecord.topic.in_(topics))
                         .order_by(AlertRecord.candid)).scalars().all()
        packets = [Packet(r.topic, r.candid, r.object_id, home.path(r.relpath), r.nbytes)
                   for r in rows]
        have = {p.candid for p in packets}
        passing = s.scalars(select(Candidate.candid).where(Candidate.nid == nid_of(date),
                                                           Candidate.passed)).all()
    return packets, sum(1 for c in passing if c not in have)


# --------------------------------------------------------------------------------------------
# Publishing
# --------------------------------------------------------------------------------------------
def jd_to_unix_ms(jd: float) -> int:
    """Milliseconds since 1970-01-01 UTC of a Julian date."""
    return round((float(jd) - JD_UNIX_EPOCH) * 86_400_000)


def packet_message(payload: bytes) -> Message:
    """Key, timestamp and headers of the message that carries a packet.

    Read from the packet itself, so that what is sent is a function of the archived bytes
    only: key ``str(candid)``; timestamp the candidate's ``jd`` (the exposure's time) in ms
    since 1970; headers ``objectId``, ``candid``, ``schemavsn`` and ``sha256`` (of
    ``payload``), as ASCII.

    Raises
    ------
    ValueError
        If ``payload`` is not a readable alert packet.
    """
    try:
        records, writer = decode_alert_packet(payload)
        alert = records[0]
        candid = int(alert["candid"])
        jd = float(alert["candidate"]["jd"])
    except Exception as exc:  # fastavro raises several types for corrupt data
        raise ValueError(f"not a readable alert packet ({exc})") from exc
    version = alert.get("schemavsn") or writer.get("version") or ""
    headers = (("objectId", str(alert["objectId"]).encode()), ("candid", str(candid).encode()),
               ("schemavsn", str(version).encode()),
               ("sha256", hashlib.sha256(payload).hexdigest().encode()))
    return Message(str(candid).encode(), jd_to_unix_ms(jd), headers)


class Publisher:
    """Publish archived packets to one Kafka cluster and record their delivery.

    One idempotent producer for the publisher's life (the executive keeps one for a night).
    Each :meth:`publish` asks the cluster's id (a broker restarted without its data is a new
    cluster), creates the topics it has not seen on that cluster (``config`` partitions and
    replication; an existing topic is left as it is) and skips packets that
    ``alert_deliveries`` says this cluster already has (reporting those rebuilt since with
    other bytes). Not thread-safe; use as a context manager.

    **A broker that is down** (issue 19) never stops the caller: :meth:`publish` reports the
    packets as not delivered (``unsent``) with one error line per outage, keeps them archived
    and unrecorded, and does not knock again for ``retry_after`` seconds (so a night is not
    slowed by a connection timeout per quadrant). A packet is recorded only once the broker
    acknowledged it: messages still queued when a :meth:`publish` gives up waiting stay in the
    producer (librdkafka retries them) and are recorded by a later call when acknowledged;
    they are not produced a second time meanwhile, so a slow acknowledgement never makes a
    duplicate. **A publisher killed** between a delivery and its record (kill -9 of the
    executive) leaves packets on the cluster that ``alert_deliveries`` does not know: the
    first time a publisher sends to a topic that already exists, it reads the topic's keys
    (:func:`~zsds.alerts.kafka.topic_digests`) and records the packets it finds there instead
    of sending them again (with ``resend``, it sends them anyway).

    Parameters
    ----------
    engine
        Database of the ``alerts`` and ``alert_deliveries`` tables.
    bootstrap
        ``host:port`` of the cluster.
    config
        Topic and producer settings.
    producer_config
        Extra librdkafka settings of the producer.
    connect_timeout
        Seconds to wait for the cluster's metadata (its id) before calling it unreachable.
    retry_after
        Seconds during which :meth:`publish` does not try an unreachable cluster again
        (``force`` tries at once).
    """

    def __init__(self, engine: Engine, bootstrap: str, config: StreamConfig = DEFAULT_STREAM,
                 *, producer_config: dict[str, Any] | None = None,
                 connect_timeout: float = 10.0, retry_after: float = 30.0) -> None:
        self.engine = engine
        self.bootstrap = bootstrap
        self.config = config
        self.connect_timeout = connect_timeout
        self.retry_after = retry_after
        self._producer = AlertProducer(bootstrap, compression=config.compression,
                                       config=producer_config)
        self._topics: set[tuple[str, str]] = set()
        #: Produced and not yet acknowledged: candid -> (packet, sha256 of its bytes).
        self._pending: dict[int, tuple[Packet, str]] = {}
        self._down_until = 0.0
        #: Cluster id of the last :meth:`publish` that reached the cluster.
        self.cluster_id: str | None = None
        #: Why the cluster was last found unreachable (None while it answers).
        self.unreachable: str | None = None

    @property
    def in_flight(self) -> int:
        """Packets produced and not yet acknowledged (nor refused)."""
        return len(self._pending)

    def _ensure_topics(self, cluster: str, topics: set[str]) -> set[str]:
        """Create the topics this publisher has not seen on ``cluster``; return those of them
        that already existed (written by an earlier process, maybe one that died between a
        delivery and its record), which count as seen once read (:meth:`_reconcile`)."""
        existed = set()
        for topic in sorted(topics):
            if (cluster, topic) not in self._topics:
                if ensure_topic(self.bootstrap, topic, self.config.partitions,
                                replication=self.config.replication,
                                timeout=self.connect_timeout):
                    self._topics.add((cluster, topic))
                else:
                    existed.add(topic)
        return existed

    def _record(self, cluster: str, delivered: Sequence[tuple[Packet, str]]) -> None:
        """Record packets (with the digest of the bytes delivered) as on ``cluster``."""
        now = dt.datetime.now(dt.UTC)
        with session(self.engine) as s:
            for p, digest in delivered:
                row = s.get(AlertDelivery, (p.candid, cluster, p.topic))
                if row is None:
                    s.add(AlertDelivery(candid=p.candid, cluster_id=cluster, topic=p.topic,
                                        sha256=digest, bootstrap=self.bootstrap, sent_at=now))
                else:
                    row.sha256, row.bootstrap, row.sent_at = digest, self.bootstrap, now
                rec = s.get(AlertRecord, p.candid)
                if rec is not None:
                    rec.sent_at, rec.sent_to = now, f"{self.bootstrap} ({cluster})"

    def _reconcile(self, cluster: str, topics: set[str],
                   todo: list[tuple[Packet, bytes, Message]], result: PublishResult
                   ) -> list[tuple[Packet, bytes, Message]]:
        """Read the topics that were there before this publisher: packets found on them are
        recorded (``found``) instead of sent; the rest of ``todo`` is returned."""
        on_broker: dict[str, dict[int, str]] = {
            t: topic_digests(self.bootstrap, t, timeout=max(30.0, 3 * self.connect_timeout))
            for t in sorted(topics)}
        found = [(p, on_broker[p.topic][p.candid] or dict(m.headers)["sha256"].decode())
                 for p, _, m in todo if p.candid in on_broker.get(p.topic, {})]
        if found:
            self._record(cluster, found)
            result.found += len(found)
            result.already += [p.candid for p, _ in found]
        seen = {p.candid for p, _ in found}
        return [t for t in todo if t[0].candid not in seen]

    def _down(self, result: PublishResult, why: str, n: int) -> None:
        """Mark the cluster unreachable; one error line for the outage."""
        if self.unreachable is None:
            result.errors.append(f"Kafka at {self.bootstrap} unreachable ({why}): {n} "
                                 "packet(s) kept in the archive, not recorded as delivered")
        self.unreachable = why
        self._down_until = time.monotonic() + self.retry_after

    def _settle(self, result: PublishResult, timeout: float) -> None:
        """Wait up to ``timeout`` s for acknowledgements; record those that came."""
        if not self._pending:
            return
        report = self._producer.flush_report(timeout)
        for candid in report.failed:
            self._pending.pop(candid, None)  # refused: tried again by a later call
        result.errors += report.errors
        acked = [(self._pending.pop(c)) for c in report.delivered if c in self._pending]
        if report.remaining and timeout > 0:
            self._down(result, f"{report.remaining} message(s) not acknowledged within "
                               f"{timeout:g} s", report.remaining)
        if not acked:
            return
        # Acknowledged by the cluster the last publish reached (a late acknowledgement of an
        # earlier call comes from the broker connected now).
        self._record(self.cluster_id or f"bootstrap:{self.bootstrap}", acked)
        result.sent += len(acked)
        result.delivered += [p.candid for p, _ in acked]

    def publish(self, packets: Sequence[Packet], resend: bool = False,
                timeout: float = 60.0, *, force: bool = False) -> PublishResult:
        """Send archived packets (their files' bytes) that this cluster does not have yet.

        Parameters
        ----------
        packets
            Archived packets (:func:`make_packets`, :func:`archived_packets`).
        resend
            Send them even where ``alert_deliveries`` says the cluster has them.
        timeout
            Seconds to wait for the broker's acknowledgements.
        force
            Try the cluster even within ``retry_after`` of finding it unreachable.

        Returns
        -------
        PublishResult
            ``sent`` acknowledged now (and recorded; ``delivered`` their candids, which may
            include packets of an earlier call acknowledged late), ``skipped`` already there
            (``changed``: those whose archived bytes differ from the ones delivered; their
            candids in ``already``), ``unsent`` not delivered because the cluster is
            unreachable, ``errors`` packets not delivered (unreadable file or corrupt packet,
            broker error, broker unreachable); none of those is recorded, so the next call
            tries them again.
        """
        result = PublishResult()
        self._settle(result, 0.0)  # acknowledgements that came since the last call
        if not packets and not self._pending:
            return result
        if not force and time.monotonic() < self._down_until:
            result.unsent = sum(1 for p in packets if p.candid not in result.delivered)
            return result
        try:
            cluster = self._producer.cluster_id(self.connect_timeout)
        except KafkaException as exc:
            self._down(result, exc.args[0].str(), len(packets))
            result.unsent = sum(1 for p in packets if p.candid not in result.delivered)
            return result
        self.cluster_id, self.unreachable, self._down_until = cluster, None, 0.0
        with session(self.engine) as s:
            done = {(d.candid, d.topic): d.sha256 for d in s.execute(
                select(AlertDelivery).where(AlertDelivery.cluster_id == cluster,
                                            AlertDelivery.candid.in_([p.candid for p in packets]))
            ).scalars()}
        todo: list[tuple[Packet, bytes, Message]] = []
        for p in packets:
            if p.candid in self._pending:  # produced, acknowledgement still to come
                continue
            try:
                payload = Path(p.path).read_bytes()
                msg = packet_message(payload)
            except (OSError, ValueError) as exc:
                result.errors.append(f"candid {p.candid}: {p.path}: {exc}")
                continue
            before = done.get((p.candid, p.topic))
            if before is not None and not resend:
                result.skipped += 1
                result.already.append(p.candid)
                if before != dict(msg.headers)["sha256"].decode():
                    result.changed.append(p.candid)
                continue
            todo.append((p, payload, msg))
        if todo:
            try:
                existed = self._ensure_topics(cluster, {p.topic for p, _, _ in todo})
                if existed and not resend:
                    todo = self._reconcile(cluster, existed, todo, result)
                self._topics |= {(cluster, t) for t in existed}
            except (KafkaException, TimeoutError) as exc:
                why = (exc.args[0].str() if isinstance(exc, KafkaException)
                       and isinstance(exc.args[0], KafkaError) else str(exc) or "timed out")
                self._down(result, f"topics: {why}", len(todo))
                result.unsent = len(todo)
                return result
            for p, payload, msg in todo:
                self._producer.produce(p.topic, p.candid, payload,
                                       timestamp_ms=msg.timestamp_ms, headers=msg.headers)
                self._pending[p.candid] = (p, dict(msg.headers)["sha256"].decode())
        self._settle(result, timeout)
        result.unsent = sum(1 for p, _, _ in todo if p.candid in self._pending)
        return result

    def close(self, timeout: float = 10.0) -> PublishResult:
        """Wait (up to ``timeout`` s) for the acknowledgements still due and record them,
        then release the producer. Messages still unacknowledged are dropped, unrecorded: a
        later publish sends them again.

        Returns
        -------
        PublishResult
            The late acknowledgements (``sent``) and what was dropped (``unsent``).
        """
        result = PublishResult()
        if self._pending:
            self._settle(result, timeout)
        if self._pending:
            result.unsent = len(self._pending)
            self._producer.purge()
            self._pending.clear()
        return result

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_night(
    home: Home,
    engine: Engine,
    night: str | dt.date,
    kafka: str | None = None,
    resend: bool = False,
    config: StreamConfig = DEFAULT_STREAM,
) -> SendSummary:
    """Publish a night's archived packets to the cluster at ``kafka`` (``host:port``); without
    it, only count them. Nothing is built here: packets come from the archive
    (:func:`archived_packets`). An unreachable cluster is reported (``errors``, ``unsent``),
    never raised."""
    packets, missing = archived_packets(home, engine, night)
    summary = SendSummary(packets=len(packets), missing=missing)
    for p in packets:
        summary.topics[p.topic] = summary.topics.get(p.topic, 0) + 1
    if kafka is None:
        return summary
    t0 = time.perf_counter()
    publisher = Publisher(engine, kafka, config)
    try:
        res = publisher.publish(packets, resend)
    finally:
        late = publisher.close()  # acknowledgements still due, recorded
    summary.sent, summary.already_sent = res.sent + late.sent, res.skipped + res.found
    summary.errors = res.errors + late.errors
    summary.unsent = summary.packets - summary.sent - summary.already_sent
    summary.changed = len(res.changed)
    summary.cluster_id = publisher.cluster_id
    summary.seconds_kafka = time.perf_counter() - t0
    return summary
