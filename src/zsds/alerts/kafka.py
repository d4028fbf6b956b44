"""Kafka transport of alert packets: topic names, an idempotent producer, a group consumer.

Topics follow ZTF/ZADS: ``ztf_YYYYMMDD_programidN``, one per UT night and program (N = 1 public,
2 partnership, 3 Caltech), created with :class:`StreamConfig`'s partitions and replication
before the first message. Each message value is one alert OCF (:mod:`zsds.alerts.packet`), its
key the ``candid`` as ASCII digits (so a re-sent alert lands on the same partition), its
timestamp the exposure's time and its headers :data:`HEADERS` (see
:func:`zsds.alerts.send.packet_message`).

Only ``bootstrap.servers`` ties this module to a broker: it runs against the Tansu test broker
(:mod:`zsds.alerts.broker`) and a real Kafka cluster alike. Consumer settings work around Tansu's
slow group joins (``session.timeout.ms=6000``, ``heartbeat.interval.ms=1000``; see
``shared/reference/KAFKA.md``) and are harmless on Kafka.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from zsds.core.naming import parse_night

#: Programme ids that have alert topics, with the name used by the public archive tarballs.
PROGRAMS = {1: "public", 2: "partnership", 3: "caltech"}
#: Subscription pattern matching every ZTF alert topic.
ALL_TOPICS = "^ztf_.*"
_TOPIC = re.compile(r"^ztf_(?P<date>\d{8})_programid(?P<pid>\d+)$")

#: librdkafka's own log lines go to this logger rather than straight to stderr.
log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())  # a library stays quiet unless the application logs

#: Consumer settings that keep group joins at ~3 s on Tansu (default gives ~23 s).
GROUP_TIMEOUTS = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
#: Message headers of an alert, in order (ASCII values): ``objectId``, ``candid``,
#: ``schemavsn`` and ``sha256`` (hex digest of the message value, i.e. of the archived file).
HEADERS = ("objectId", "candid", "schemavsn", "sha256")


@dataclass(frozen=True)
class StreamConfig:
    """How alert topics are made and written."""

    partitions: int = 4  #: partitions of each topic, created before its first message
    replication: int = 1  #: replication factor of each topic (at most the brokers)
    compression: str = "lz4"  #: producer compression: lz4, gzip, zstd, snappy or none

    def __post_init__(self) -> None:
        if self.partitions < 1 or self.replication < 1:
            raise ValueError(f"partitions ({self.partitions}) and replication "
                             f"({self.replication}) must be at least 1")


#: The default :class:`StreamConfig`.
DEFAULT_STREAM = StreamConfig()


def topic_name(night: dt.date | str, programid: int) -> str:
    """Alert topic of a UT night and programme, e.g. ``ztf_20261120_programid1``.

    Parameters
    ----------
    night
        UT night as a date, ``YYYY-MM-DD`` or ``YYYYMMDD``.
    programid
        1 (public), 2 (partnership) or 3 (Caltech).
    """
    if int(programid) not in PROGRAMS:
        raise ValueError(f"invalid programid {programid!r}: expected one of {sorted(PROGRAMS)}")
    return f"ztf_{parse_night(night):%Y%m%d}_programid{int(programid)}"


def parse_topic(topic: str) -> tuple[dt.date, int]:
    """Inverse of :func:`topic_name`: ``(night, programid)``; ValueError if not an alert topic."""
    match = _TOPIC.match(topic)
    if not match:
        raise ValueError(f"invalid alert topic {topic!r}: expected ztf_YYYYMMDD_programidN")
    return parse_night(match["date"]), int(match["pid"])


# --------------------------------------------------------------------------------------------
# Producer
# --------------------------------------------------------------------------------------------
class FlushReport(NamedTuple):
    """What :meth:`AlertProducer.flush_report` learnt: candids ``delivered`` (acknowledged)
    and ``failed`` (refused, with ``errors``), and messages ``remaining`` in the queue."""

    delivered: list[int]
    failed: list[int]
    errors: list[str]
    remaining: int


class AlertProducer:
    """Idempotent Kafka producer of alert packets.

    ``enable.idempotence`` (hence ``acks=all``) means a retried send is never duplicated within
    a partition; the key ``str(candid)`` keeps one candidate on one partition. Delivery reports
    are collected and returned by :meth:`flush`. Use as a context manager; leaving it flushes.
    Not thread-safe: one instance per thread.

    Parameters
    ----------
    bootstrap
        ``host:port[,host:port...]``.
    compression
        ``lz4`` (default), ``gzip``, ``zstd``, ``snappy`` or ``none``.
    config
        Extra librdkafka settings (override the defaults).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        compression: str = "lz4",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        settings: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": compression,
            "linger.ms": 20,
            "message.max.bytes": 10_000_000,  # a packet with a long history can reach MBs
            "logger": log,
        }
        settings.update(config or {})
        self.bootstrap = bootstrap
        self._producer = Producer(settings)
        self._delivered: list[int] = []
        self._failed: list[int] = []
        self._errors: list[str] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        key = msg.key()
        candid = int(key) if key is not None else -1
        if err is not None:
            self._failed.append(candid)
            self._errors.append(f"candid {candid} to {msg.topic()}: {err.str()}")
        else:
            self._delivered.append(candid)

    def produce(
        self,
        topic: str,
        candid: int,
        payload: bytes,
        *,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        """Queue one packet; waits for queue space if the local buffer is full.

        Parameters
        ----------
        topic, candid, payload
            Topic, ``candid`` (the key, as ASCII digits) and the packet bytes.
        timestamp_ms
            Message timestamp (ms since 1970, UTC); None: the time of sending.
        headers
            ``(name, value)`` message headers.
        """
        extra: dict[str, Any] = {}
        if timestamp_ms is not None:
            extra["timestamp"] = int(timestamp_ms)
        if headers:
            extra["headers"] = list(headers)
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=payload,
                    key=str(int(candid)).encode(),
                    on_delivery=self._on_delivery,
                    **extra,
                )
                break
            except BufferError:
                self._producer.poll(0.1)  # let deliveries drain the local queue
        self._producer.poll(0)

    def flush(self, timeout: float = 30.0) -> tuple[list[int], list[str]]:
        """Wait for outstanding deliveries.

        Returns
        -------
        delivered, errors
            Candids acknowledged and error messages since the previous flush; messages still
            queued after ``timeout`` are reported as one error.
        """
        report = self.flush_report(timeout)
        errors = report.errors
        if report.remaining:
            errors.append(f"{report.remaining} message(s) not delivered within {timeout:g} s")
        return report.delivered, errors

    def flush_report(self, timeout: float = 30.0) -> FlushReport:
        """Wait for outstanding deliveries and say what became of each message.

        Unlike :meth:`flush`, messages still queued after ``timeout`` are not reported as an
        error: they stay queued (librdkafka keeps retrying them) and their delivery reports
        come with a later call.

        Returns
        -------
        FlushReport
            Candids acknowledged and refused (with the error messages) since the previous
            call, and how many messages are still queued.
        """
        remaining = self._producer.flush(timeout)
        report = FlushReport(self._delivered, self._failed, self._errors, remaining)
        self._delivered, self._failed, self._errors = [], [], []
        return report

    def purge(self) -> None:
        """Drop every message still queued (their delivery reports say so)."""
        self._producer.purge()
        self._producer.poll(0)

    def cluster_id(self, timeout: float = 10.0) -> str:
        """The id of the cluster this producer writes to (see :func:`cluster_id`)."""
        return _cluster_of(self._producer.list_topics(timeout=timeout), self.bootstrap)

    def __len__(self) -> int:
        """Messages queued and not yet acknowledged."""
        return len(self._producer)

    def __enter__(self) -> AlertProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._producer.flush(10.0 if exc_type is None else 0.0)


# --------------------------------------------------------------------------------------------
# Consumer
# --------------------------------------------------------------------------------------------
class AlertMessage(NamedTuple):
    """One consumed message (``timestamp`` in ms since 1970, None if the broker gave none)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def _poll(consumer: Any, errors: list[str]) -> Any:
    """The next message of ``consumer`` (0.2 s wait), or None when there is none or it is a
    transient error (broker not up yet, topic not created yet, rebalance...), which is
    appended to ``errors``; a fatal error raises :class:`KafkaException`."""
    msg = consumer.poll(0.2)
    if msg is None:
        return None
    err = msg.error()
    if err is None:
        return msg
    if err.fatal():
        raise KafkaException(err)
    errors.append(err.str())
    return None


def consume_alerts(
    bootstrap: str,
    topics: str | Sequence[str],
    group_id: str,
    *,
    max_messages: int | None = None,
    idle_timeout: float = 5.0,
    from_beginning: bool = True,
    commit: bool = True,
    join_timeout: float = 30.0,
    config: Mapping[str, Any] | None = None,
) -> Iterator[AlertMessage]:
    """Consume alert packets as a member of a consumer group.

    A message's offset is stored only once the caller asks for the next one, and stored offsets
    are committed synchronously every 100 messages and when the iterator ends (or is closed),
    so a consumer that stops early leaves the rest to the next member of the group:
    at-least-once delivery.

    Parameters
    ----------
    bootstrap
        ``host:port``.
    topics
        A topic, a list of topics, or a regex starting with ``^`` (e.g. :data:`ALL_TOPICS`).
    group_id
        Consumer group; offsets are committed under it.
    max_messages
        Stop after this many messages (None: no limit).
    idle_timeout
        Stop when no message arrived for this long (s) after partitions were assigned, or
        when, this long after the start, the broker has no topic matching ``topics``.
    from_beginning
        ``auto.offset.reset=earliest`` for partitions without a committed offset (else
        ``latest``, which Tansu gets wrong, see ``KAFKA.md``).
    commit
        Commit consumed offsets to the group.
    join_timeout
        Give up (TimeoutError) if matching topics exist but no partitions are assigned within
        this many seconds (broker unreachable, group stuck).
    config
        Extra librdkafka settings.

    Yields
    ------
    AlertMessage
        ``(topic, partition, offset, key, value)``.
    """
    names = [topics] if isinstance(topics, str) else list(topics)
    if not names:
        raise ValueError("no topic given")
    settings: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        # Pattern subscriptions should see topics created while we run.
        "topic.metadata.refresh.interval.ms": 2000,
        "logger": log,
        "error_cb": lambda err: errors.append(err.str()),
        **GROUP_TIMEOUTS,
    }
    settings.update(config or {})
    errors: deque[str] = deque(maxlen=10)  # recent client errors, for the timeout message
    consumer = Consumer(settings)
    assigned_at: list[float] = []

    def on_assign(_consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        if not assigned_at:
            assigned_at.append(time.monotonic())

    consumer.subscribe(names, on_assign=on_assign)
    started = time.monotonic()
    last = started
    next_check = started + idle_timeout
    count = uncommitted = 0
    try:
        while max_messages is None or count < max_messages:
            now = time.monotonic()
            if not assigned_at:
                if now >= next_check:
                    # No topic to subscribe to (yet) is an idle stream, not an error.
                    next_check = now + 1.0
                    if _topics_missing(consumer, names):
                        break
                if now - started > join_timeout:
                    raise TimeoutError(
                        f"no partitions of {names} assigned to group {group_id!r} at {bootstrap} "
                        f"within {join_timeout:g} s"
                        + (f" (last error: {errors[-1]})" if errors else "")
                    )
            elif now - max(last, assigned_at[0]) > idle_timeout:
                break
            msg = _poll(consumer, errors)
            if msg is None:
                continue
            last = time.monotonic()
            kind, stamp = msg.timestamp()
            yield AlertMessage(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                               None if kind == TIMESTAMP_NOT_AVAILABLE else stamp,
                               tuple(msg.headers() or ()))
            count += 1
            if commit:
                consumer.store_offsets(message=msg)
                uncommitted += 1
                if uncommitted >= 100:
                    _commit(consumer)
                    uncommitted = 0
    finally:
        try:
            if commit and uncommitted:
                _commit(consumer)
        finally:
            consumer.close()


def topic_keys(bootstrap: str, topic: str, *, idle_timeout: float = 2.0,
               timeout: float = 60.0) -> list[tuple[int, str]]:
    """Every message of a topic as ``(candid, sha256 header)``, in partition order.

    Reads every partition from its beginning without a consumer group (nothing is joined or
    committed), until no message came for ``idle_timeout`` seconds (end offsets are not
    trusted: Tansu reports them wrong, see ``KAFKA.md``). A candid appears as many times as
    the topic holds it.

    Parameters
    ----------
    bootstrap
        ``host:port``.
    topic
        The topic (one that does not exist gives an empty list).
    idle_timeout
        Seconds without a message that mean the end was reached.
    timeout
        Give up (TimeoutError) after this many seconds in all.

    Returns
    -------
    list of (int, str)
        The key of each message as a candid, with the hex digest of its ``sha256`` header
        ("" without one); messages whose key is not a candid are left out.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "zsds-topic-keys",
                         "enable.auto.commit": False, "enable.partition.eof": False,
                         "logger": log})
    out: list[tuple[int, str]] = []
    try:
        meta = consumer.list_topics(topic, timeout=min(timeout, 10.0))
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            return out
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in info.partitions])
        start = last = time.monotonic()
        while time.monotonic() - last < idle_timeout:
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"reading {topic} at {bootstrap} took over {timeout:g} s")
            msg = _poll(consumer, [])
            if msg is None:
                continue
            last = time.monotonic()
            key = msg.key()
            if key is None or not key.isdigit():
                continue
            headers = dict(msg.headers() or ())
            out.append((int(key), headers.get("sha256", b"").decode(errors="replace")))
    finally:
        consumer.close()
    return out


def topic_digests(bootstrap: str, topic: str, *, idle_timeout: float = 2.0,
                  timeout: float = 60.0) -> dict[int, str]:
    """What a topic holds: candid -> ``sha256`` header of its (last) message.

    See :func:`topic_keys`. The publisher reads a topic it finds already there before sending
    to it, so a packet delivered by a process killed before it could record the delivery is
    recorded now rather than sent twice.
    """
    return dict(topic_keys(bootstrap, topic, idle_timeout=idle_timeout, timeout=timeout))


def _topics_missing(consumer: Consumer, names: Sequence[str]) -> bool:
    """True if the broker answers and has no topic matching the subscription."""
    try:
        existing = consumer.list_topics(timeout=1.0).topics
    except KafkaException:
        return False  # broker unreachable: let the join timeout report it
    for name in names:
        if name.startswith("^"):
            if any(re.search(name, topic) for topic in existing):
                return False
        elif name in existing and existing[name].error is None:
            return False
    return True


def _commit(consumer: Consumer) -> None:
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:
            raise


# --------------------------------------------------------------------------------------------
# Admin
# --------------------------------------------------------------------------------------------
def cluster_id(bootstrap: str, *, timeout: float = 10.0) -> str:
    """The broker cluster's id (Kafka's ``cluster.id``), which tells one cluster from another.

    A new cluster, or one whose data were wiped, has a new id; :class:`~zsds.alerts.broker.
    LocalBroker` gives each in-memory broker it starts a new one. A broker that reports none
    is identified by its bootstrap address instead.

    Raises
    ------
    KafkaException
        If the broker does not answer within ``timeout`` seconds.
    """
    meta = AdminClient({"bootstrap.servers": bootstrap, "logger": log}).list_topics(
        timeout=timeout)
    return _cluster_of(meta, bootstrap)


def _cluster_of(meta: Any, bootstrap: str) -> str:
    return meta.cluster_id or f"bootstrap:{bootstrap}"


def ensure_topic(bootstrap: str, topic: str, partitions: int = 4, *, replication: int = 1,
                 timeout: float = 10.0) -> bool:
    """Create ``topic`` with ``partitions`` partitions and ``replication`` replicas unless it
    exists (an existing topic is left as it is).

    Returns
    -------
    bool
        True if it was created, False if it already existed.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": log})
    future = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=replication)],
        request_timeout=timeout,
        operation_timeout=timeout,
    )[topic]
    try:
        future.result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise
    return True


def list_topics(bootstrap: str, *, timeout: float = 10.0) -> dict[str, int]:
    """Topics of the cluster with their partition counts (internal ``__`` topics left out)."""
    meta = AdminClient({"bootstrap.servers": bootstrap, "logger": log}).list_topics(timeout=timeout)
    return {
        name: len(t.partitions)
        for name, t in sorted(meta.topics.items())
        if not name.startswith("__")
    }
