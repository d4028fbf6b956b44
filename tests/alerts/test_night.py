"""A night's packets end to end: built once by the executive, archived readable, published
as archived to a broker started afterwards (each packet exactly once per cluster), with the
fields filled as ZTF fills them, and read by real broker clients (AMPEL, Fink, Pitt-Google).

The night is night 2 of the archive tests' two-night home (``tests/archive/conftest.py``,
built once per test run by the executive: 16 reference epochs, then 3 exposures of one CCD of
512 px quadrants with dense transients), copied for this module.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import stat

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from tests.alerts.helpers import needs_kafka
from tests.archive.conftest import NIGHT2 as NIGHT
from tests.conftest import TEST_DATA
from zsds.alerts.broker import LocalBroker
from zsds.alerts.evaluate import always_null_fields, is_v4, packet_stats, read_packets
from zsds.alerts.fphist import FP_NONE
from zsds.alerts.kafka import consume_alerts, list_topics, topic_name
from zsds.alerts.packet import read_alert_file, read_cutout, serialize_alert
from zsds.alerts.send import make_packets, packet_message, send_night
from zsds.cli.main import cli
from zsds.core.home import Home
from zsds.core.naming import nid_of
from zsds.db import connect, init_db
from zsds.db.engine import session
from zsds.db.schema import AlertDelivery, Candidate
from zsds.realbogus.drb import DRB_VERSION

TOPIC = topic_name(NIGHT, 1)
#: AMPEL's DecentFilter as its ZTF channels configure it, with the Gaia catalogue query (a
#: web service) switched off.
DECENT = {
    "min_ndet": 1, "min_tspan": 0.0, "max_tspan": 365.0, "min_archive_tspan": -1.0,
    "max_archive_tspan": 10000.0, "min_rb": 0.3, "min_drb": 0.0, "max_fwhm": 5.5,
    "max_elong": 1.4, "max_magdiff": 1.0, "max_nbad": 2, "min_sso_dist": 20.0,
    "min_gal_lat": -1.0, "ps1_sgveto_rad": 1.0, "ps1_sgveto_th": 0.8,
    "ps1_confusion_rad": 3.0, "ps1_confusion_sg_tol": 0.1, "gaia_rs": 0.0,
    "gaia_pm_signif": 3.0, "gaia_plx_signif": 3.0, "gaia_veto_gmag_min": 9.0,
    "gaia_veto_gmag_max": 20.0, "gaia_excessnoise_sig_max": 999.0,
}  # fmt: skip


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


@pytest.fixture(scope="module")
def night(archive_base, tmp_path_factory):
    """A copy of the home; its engine; night 2's packets as the executive archived them
    (candid -> bytes)."""
    dest = tmp_path_factory.mktemp("alerts-night") / "home"
    shutil.copytree(archive_base, dest)
    h = Home.resolve(dest)
    engine = connect(h.db_url)
    init_db(engine)
    files = sorted((h.alerts / TOPIC).glob("*.avro"))
    assert len(files) >= 20, f"only {len(files)} packets"
    yield h, engine, {int(f.stem): f.read_bytes() for f in files}
    engine.dispose()


def _digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


# ------------------------------------------------------------------------ one packet
def test_packets_are_built_once_archived_readable_and_deterministic(night):
    h, engine, archived = night
    with session(engine) as s:
        npass = s.scalar(select(func.count()).select_from(Candidate).where(
            Candidate.passed, Candidate.nid == nid_of(NIGHT)))
    assert len(archived) == npass
    for path in (h.alerts / TOPIC).glob("*.avro"):
        # Readable as the umask allows (0644 under 022), not mkstemp's 0600.
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
    # Counting or sending never rebuilds: without a broker, nothing is written.
    mtimes = {p: p.stat().st_mtime_ns for p in h.alerts.rglob("*.avro")}
    res = CliRunner().invoke(cli, ["alerts", "send", "--home", str(h.root), "--night", NIGHT])
    assert res.exit_code == 0, res.output
    assert f"{len(archived)} archived packets" in res.output
    assert {p: p.stat().st_mtime_ns for p in h.alerts.rglob("*.avro")} == mtimes
    # The same inputs give the same bytes (history, fp_hists, stamps, embedded schema). The
    # executive built each packet in real time, when later-processed earlier images could
    # still be missing from its history; rebuilt now, twice, they agree with each other.
    first = {p.candid: p.path.read_bytes() for p in make_packets(h, engine, NIGHT)}
    again = {p.candid: p.path.read_bytes() for p in make_packets(h, engine, NIGHT)}
    assert first == again and sorted(first) == sorted(archived)
    for candid, payload in archived.items():  # put the executive's packets back
        (h.alerts / TOPIC / f"{candid}.avro").write_bytes(payload)


def test_packet_fields_follow_ztf(night):
    _, _, archived = night
    alerts = [read_alert_file(p)[0] for p in archived.values()]
    n_ul = n_fp = n_neg = n_edge = 0
    for a in alerts:
        c = a["candidate"]
        assert c["scorr"] > 0  # significance, also for isdiffpos = f
        n_neg += c["isdiffpos"] == "f"
        assert c["ssnamenr"] == "null" or c["ssdistnr"] >= 0
        for name in ("sgmag1", "srmag1", "distpsnr1", "sgscore1", "objectidps1", "neargaia",
                     "maggaia", "neargaiabright", "maggaiabright", "distnr", "magnr",
                     "ranr", "decnr"):
            assert c[name] is not None, name  # -999 where there is no match
        for p in a["prv_candidates"] or []:
            if p["candid"] is None:
                n_ul += 1
                for name in ("pdiffimfilename", "programpi", "magzpsci", "magzpsciunc",
                             "magzpscirms", "clrcoeff", "clrcounc", "diffmaglim"):
                    assert p[name] is not None, name
                assert p["pdiffimfilename"].endswith("scimrefdiffimg.fits")
            else:
                assert p["scorr"] > 0 and p["jd"] < c["jd"]
        for fp in a["fp_hists"]:
            n_fp += 1
            assert fp["jd"] < c["jd"] and fp["pid"] != c["pid"]
            assert c["jd"] - fp["jd"] <= 30
            if fp["procstatus"] != "0":
                assert fp["forcediffimflux"] == FP_NONE
            assert (fp["distnr"] == FP_NONE) == (fp["ranr"] == FP_NONE)
        shapes = {read_cutout(a[k]).shape for k in
                  ("cutoutScience", "cutoutTemplate", "cutoutDifference")}
        assert len(shapes) == 1
        (shape,) = shapes
        n_edge += shape != (63, 63)
        if shape != (63, 63):  # cut at the image edge, as IPAC's: no NaN padding
            d = read_cutout(a["cutoutDifference"])
            assert not np.isnan(d[[0, -1], :]).all(axis=1).all()
    assert n_ul > 0 and n_fp > 0 and n_neg > 0 and n_edge > 0
    assert {a["fp_hists"] is not None for a in alerts} == {True}
    # drb from the deep real-bogus network, in every packet.
    assert {a["candidate"]["drbversion"] for a in alerts} == {DRB_VERSION}
    assert all(0.0 <= a["candidate"]["drb"] <= 1.0 for a in alerts)


def test_eval_alerts_against_real_packets(night):
    h, _, archived = night
    real = read_packets([TEST_DATA / "alerts"])
    ours = read_packets([h.alerts / TOPIC])
    assert len(ours) == len(archived)
    gaps = always_null_fields(packet_stats(ours), packet_stats([p for p in real if is_v4(p)]))
    assert gaps == []
    res = CliRunner().invoke(cli, ["eval", "alerts", "--home", str(h.root), "--night", NIGHT,
                                   "--against", str(TEST_DATA / "alerts")])
    assert res.exit_code == 0, res.output
    assert "always filled in real v4 packets, always null in zsds: 0" in res.output
    assert "stamps_with_nan_fraction" in res.output


# ------------------------------------------------------------------------ Kafka
@needs_kafka
def test_a_broker_started_after_the_night_gets_every_packet_once(night):
    h, engine, archived = night
    with LocalBroker() as broker:
        res = CliRunner().invoke(cli, ["alerts", "send", "--home", str(h.root), "--night",
                                       NIGHT, "--kafka", broker.bootstrap, "--partitions", "3"])
        assert res.exit_code == 0, res.output
        assert f"{len(archived)} sent" in res.output and broker.cluster_id in res.output
        assert list_topics(broker.bootstrap)[TOPIC] == 3  # created before the first message
        again = send_night(h, engine, NIGHT, broker.bootstrap)
        assert again.sent == 0 and again.already_sent == len(archived)
        # A packet rebuilt after its delivery (re-processing) is reported, not streamed twice.
        victim = h.alerts / TOPIC / f"{min(archived)}.avro"
        record = read_alert_file(victim)[0]
        victim.write_bytes(serialize_alert(dict(record, publisher="zsds-reprocessed")))
        rebuilt = send_night(h, engine, NIGHT, broker.bootstrap)
        victim.write_bytes(archived[min(archived)])
        assert (rebuilt.sent, rebuilt.changed) == (0, 1)
        got = list(consume_alerts(broker.bootstrap, "^ztf_.*", "night-check",
                                  idle_timeout=3.0))
        first_cluster = broker.cluster_id
    keys = [int(m.key) for m in got]
    assert sorted(keys) == sorted(archived)  # each packet exactly once
    for m in got:
        assert m.value == archived[int(m.key)]  # the archived bytes, never a rebuilt packet
        meta = packet_message(m.value)
        assert m.timestamp == meta.timestamp_ms  # the exposure's time
        headers = dict(m.headers)
        assert headers["sha256"].decode() == _digest(archived[int(m.key)])
        assert headers["candid"] == m.key and headers["schemavsn"] == b"4.02"
    a = read_alert_file(got[0].value)[0]
    assert abs(got[0].timestamp / 86_400_000 + 2440587.5 - a["candidate"]["jd"]) < 1e-6

    # A new (or restarted, empty) broker is a new cluster: it gets everything again.
    with LocalBroker() as broker:
        assert broker.cluster_id != first_cluster
        fresh = send_night(h, engine, NIGHT, broker.bootstrap)
        assert fresh.sent == len(archived) and fresh.already_sent == 0
        assert send_night(h, engine, NIGHT, broker.bootstrap).sent == 0
        forced = send_night(h, engine, NIGHT, broker.bootstrap, resend=True)
        assert forced.sent == len(archived)
        got = [int(m.key) for m in consume_alerts(broker.bootstrap, "^ztf_.*", "g2",
                                                  idle_timeout=3.0)]
    assert sorted(got) == sorted(list(archived) * 2)  # --resend is explicit
    with session(engine) as s:
        clusters = s.execute(select(AlertDelivery.cluster_id, func.count())
                             .group_by(AlertDelivery.cluster_id)).all()
    assert sorted(n for _, n in clusters) == [len(archived)] * 2


# ------------------------------------------------------------------------ real consumers
def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture(scope="module")
def ampel_alerts(night):
    """The night's packets through AMPEL's ZiAlertSupplier (its own Avro reading)."""
    if not _has("ampel.ztf.alert.ZiAlertSupplier"):
        pytest.skip("ampel-ztf is not installed")
    from ampel.alert.load.FileAlertLoader import FileAlertLoader
    from ampel.base.AuxUnitRegister import AuxUnitRegister
    from ampel.ztf.alert.ZiAlertSupplier import ZiAlertSupplier

    # Without an AMPEL configuration the loader unit must be registered by hand.
    AuxUnitRegister._dyn["FileAlertLoader"] = FileAlertLoader
    h, _, archived = night
    files = [str(p) for p in sorted((h.alerts / TOPIC).glob("*.avro"))]
    supplier = ZiAlertSupplier(loader={"unit": "FileAlertLoader", "config": {"files": files}})
    alerts = list(supplier)
    assert sorted(a.id for a in alerts) == sorted(archived)
    return alerts


def _decent_filter(**overrides):
    from ampel.log.AmpelLogger import AmpelLogger
    from ampel.ztf.t0.DecentFilter import DecentFilter

    unit = DecentFilter(logger=AmpelLogger.get_logger(), **{**DECENT, **overrides})
    unit.post_init()
    return unit


def test_ampel_supplier_and_decent_filter(ampel_alerts):
    for alert in ampel_alerts:
        cand = alert.datapoints[0]
        assert cand["candid"] == alert.id and alert.extra["name"].startswith("ZTF26")
        for dp in alert.datapoints[1:]:
            assert dp["jd"] < cand["jd"]
            if dp.get("candid") is None:  # upper limits keep their image's file name
                assert dp["pdiffimfilename"].endswith("scimrefdiffimg.fits")
    decent = _decent_filter()
    results = [decent.process(a) for a in ampel_alerts]  # no exception on any packet
    assert set(results) <= {None, True}
    assert any(results)


def test_ampel_decent_filter_with_min_drb(ampel_alerts):
    decent = _decent_filter(min_drb=0.5)
    for alert in ampel_alerts:
        decent.process(alert)


@pytest.mark.skipif(not _has("fink_client"), reason="fink-client is not installed")
def test_fink_alert_reader(night):
    from fink_client.avro_utils import AlertReader

    h, _, archived = night
    frame = AlertReader(str(h.alerts / TOPIC)).to_pandas()
    assert sorted(frame["candid"]) == sorted(archived)
    assert set(frame["schemavsn"]) == {"4.02"}
    assert frame["fp_hists"].map(len).sum() > 0


@pytest.mark.skipif(not _has("pittgoogle"), reason="pittgoogle-client is not installed")
def test_pittgoogle_alert(night):
    import pittgoogle

    h, _, _ = night
    for path in sorted((h.alerts / TOPIC).glob("*.avro")):
        alert = pittgoogle.Alert.from_path(path, schema_name="ztf")
        assert alert.sourceid == int(path.stem) and alert.objectid.startswith("ZTF26")
        prv = alert.dict["prv_candidates"] or []
        assert len(alert.dataframe) == 1 + len(prv)
        assert alert.get("source")["candid"] == alert.sourceid  # its "candidate" record
