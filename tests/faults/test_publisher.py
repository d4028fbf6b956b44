"""Publishing alerts when the broker misbehaves (issue 19, faults), without a night.

* A broker that does not answer made :meth:`Publisher.publish` raise (the executive's night
  stopped at its first quadrant with packets) and cost a full metadata timeout per quadrant.
  It must report the packets as not delivered, record nothing, and back off.
* A publisher killed between a delivery and its record (``kill -9`` of the executive) left
  packets on the broker that ``alert_deliveries`` did not know: the rerun sent them again
  (a duplicate on the stream). The first publish to a topic that already exists must find
  them there and record them instead.
* An acknowledgement slower than ``publish``'s wait was never recorded, and the packet was
  produced again by the next call (a duplicate once both arrived).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.alerts.helpers import needs_kafka
from tests.conftest import TEST_DATA
from zsds.alerts.broker import LocalBroker, free_port
from zsds.alerts.kafka import AlertProducer, consume_alerts, topic_keys
from zsds.alerts.packet import build_alert, read_alert_file, serialize_alert
from zsds.alerts.send import Packet, Publisher, packet_message
from zsds.db import connect, init_db
from zsds.db.engine import session
from zsds.db.schema import AlertDelivery

TOPIC = "ztf_20261122_programid1"
N = 12


@pytest.fixture(scope="module")
def packets(tmp_path_factory) -> list[Packet]:
    """N archived packets (files) built from a real v4.01 alert."""
    sample = read_alert_file(TEST_DATA / "alerts/kowalski/20231012/2475433850015010009.avro")[0]
    rng = np.random.default_rng(19)
    cut = {k: rng.normal(0, 1, (63, 63)) for k in ("science", "template", "difference")}
    folder = tmp_path_factory.mktemp("packets") / TOPIC
    folder.mkdir()
    out = []
    for i in range(N):
        cand = dict(sample["candidate"], candid=sample["candidate"]["candid"] + 500 + i)
        payload = serialize_alert(build_alert(sample["objectId"], cand,
                                              sample["prv_candidates"], cut))
        path = folder / f"{cand['candid']}.avro"
        path.write_bytes(payload)
        out.append(Packet(TOPIC, cand["candid"], sample["objectId"], path, len(payload)))
    return out


@pytest.fixture
def engine(tmp_path: Path):
    eng = connect(f"sqlite:///{tmp_path / 'zsds.sqlite'}")
    init_db(eng)
    yield eng
    eng.dispose()


def _recorded(engine) -> int:
    with session(engine) as s:
        return len(s.query(AlertDelivery).all())


def test_unreachable_broker_is_reported_not_raised_and_backed_off(engine, packets):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    with Publisher(engine, dead, connect_timeout=1.0, retry_after=60.0) as pub:
        t0 = time.monotonic()
        res = pub.publish(packets)
        assert time.monotonic() - t0 < 8
        assert (res.sent, res.unsent) == (0, N)
        assert len(res.errors) == 1 and "unreachable" in res.errors[0]
        assert "kept in the archive" in res.errors[0]
        # Within retry_after: no new attempt, no second error line for the same outage.
        t0 = time.monotonic()
        again = pub.publish(packets)
        assert time.monotonic() - t0 < 0.5
        assert (again.sent, again.unsent, again.errors) == (0, N, [])
        forced = pub.publish(packets, force=True)  # the end of a night tries anyway
        assert forced.unsent == N
    assert _recorded(engine) == 0


@needs_kafka
def test_packets_a_killed_publisher_delivered_are_found_not_sent_twice(engine, packets):
    with LocalBroker() as broker:
        # A publisher that produced half the packets and died before recording them.
        with AlertProducer(broker.bootstrap) as producer:
            for p in packets[: N // 2]:
                msg = packet_message(p.path.read_bytes())
                producer.produce(TOPIC, p.candid, p.path.read_bytes(), headers=msg.headers)
            delivered, errors = producer.flush(30)
        assert len(delivered) == N // 2 and not errors
        assert _recorded(engine) == 0
        with Publisher(engine, broker.bootstrap) as pub:
            res = pub.publish(packets)
        assert (res.found, res.sent) == (N // 2, N - N // 2)
        assert sorted(res.already + res.delivered) == sorted(p.candid for p in packets)
        keys = Counter(c for c, _ in topic_keys(broker.bootstrap, TOPIC))
        assert sorted(keys) == sorted(p.candid for p in packets)
        assert set(keys.values()) == {1}  # each exactly once
        with Publisher(engine, broker.bootstrap) as pub:
            assert pub.publish(packets).sent == 0
    assert _recorded(engine) == N


@needs_kafka
def test_a_late_acknowledgement_is_recorded_and_never_produced_again(engine, packets):
    with LocalBroker() as broker:
        pub = Publisher(engine, broker.bootstrap)
        try:
            # No wait at all: every acknowledgement comes after publish has returned.
            first = pub.publish(packets, timeout=0.0)
            assert first.sent + first.unsent == N
            late = pub.publish(packets)  # the next quadrant's call
            assert first.sent + late.sent == N
            assert pub.in_flight == 0
        finally:
            pub.close()
        got = Counter(int(m.key) for m in consume_alerts(broker.bootstrap, [TOPIC], "late",
                                                          idle_timeout=2.0))
    assert sorted(got) == sorted(p.candid for p in packets) and set(got.values()) == {1}
    assert _recorded(engine) == N
