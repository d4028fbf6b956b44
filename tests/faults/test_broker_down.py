"""The Kafka broker down for a night, or for part of it (issue 19, faults).

The executive's publishing raised on the first quadrant with packets when the broker did not
answer, so the night stopped (nothing more calibrated, subtracted or archived). Now the night
must complete with every packet archived and none recorded as delivered; when the broker is
back, ``zsds alerts send`` must deliver each archived packet exactly once and, run again,
nothing. When the broker comes back during the night, the night itself must deliver the
packets it could not send before (the backlog), each once. The broker is a real one
(:class:`~zsds.alerts.broker.LocalBroker`, Tansu), started on the port the night was given.
"""

from __future__ import annotations

from click.testing import CliRunner

from tests.alerts.helpers import needs_kafka
from zsds.cli.main import cli
from zsds.reliability.scenarios import FAULT_NIGHT, broker_down


def _check_common(r) -> None:
    f = r.facts
    assert f["failed"] == 0 and f["quadrants"] == 4, f
    assert f["archived"] > 0 and f["archived"] == f["night_alerts"], f
    assert f["again_sent"] == 0 and f["again_already"] == f["archived"], f
    # Each archived packet is on the broker exactly once, nothing else lost or doubled.
    assert r.integrity.counted["kafka messages"] == f["archived"]
    assert r.integrity.ok, r.integrity.details
    assert r.ok, r.outcome


@needs_kafka
def test_broker_down_all_night_then_alerts_send_delivers_each_once(survey_home):
    r = broker_down(survey_home, FAULT_NIGHT)
    f = r.facts
    # The night completed without the broker, recorded nothing as delivered, and says so.
    assert f["sent_by_night"] == 0 and f["recorded_by_night"] == 0, f
    assert f["unsent_at_end"] == f["archived"]
    assert "alert(s) archived but not delivered to Kafka" in f["problem"]
    assert any("unreachable" in e for e in f["errors"]), f["errors"]
    # alerts send delivered every packet, once.
    assert f["send_sent"] == f["archived"] and f["send_unsent"] == 0
    _check_common(r)
    # The command line says how many were not delivered while the broker was down.
    res = CliRunner().invoke(
        cli,
        [
            "alerts",
            "send",
            "--home",
            str(survey_home.root),
            "--night",
            FAULT_NIGHT,
            "--kafka",
            "127.0.0.1:1",
        ],
    )
    assert res.exit_code == 1 and f"{f['archived']} packet(s) were not delivered" in res.output


@needs_kafka
def test_broker_back_during_the_night_gets_the_backlog_once(survey_home):
    r = broker_down(survey_home, FAULT_NIGHT, back_during_night=True)
    f = r.facts
    assert f["archived_while_down"] > 0, f  # the night really met the broker down
    assert f["sent_by_night"] == f["archived"] and f["unsent_at_end"] == 0, f
    assert f["send_sent"] == 0
    _check_common(r)
