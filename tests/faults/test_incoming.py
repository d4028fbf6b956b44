"""Faults in ``incoming/`` (issue 19, items 9-12), each reproduced first:

* a directory or a badly named file stopped ``zsds night run`` (rc 1, nothing processed);
* a science (``_o``) file whose IMGTYPE says ``bias`` was ingested as a bias;
* calibration frames ingested before ``night run`` (``zsds ingest``, or a run killed in the
  afternoon) were never built into master bias and flats: every quadrant failed;
* a raw file still being written under its final name was quarantined as truncated.
"""

from __future__ import annotations

import os
import threading
import time

from astropy.io import fits
from sqlalchemy import select

from tests.faults.conftest import NIGHT
from zsds.db import Exposure, Quarantine, connect, init_db, session
from zsds.executive import ExecConfig, Executive
from zsds.ingest import ingest_file, ingest_incoming


def _science(home):
    return next(p for p in sorted(home.incoming.iterdir()) if p.name.endswith("_o.fits.fz"))


def _home_engine(home):
    """The home's own database: the executive's workers open it by the home's URL."""
    engine = connect(home.db_url)
    init_db(engine)
    return engine


def _night(home, engine):
    with Executive(home, engine, ExecConfig(n_workers=1, subtract=False, build_refs=False,
                                            link_moving=False)) as ex:
        return ex.run_night(NIGHT)


def test_strays_in_incoming_are_quarantined_and_the_night_goes_on(home):
    engine = _home_engine(home)
    (home.incoming / "ztf_20261120_junk.fits").mkdir()  # a directory with a raw-like name
    (home.incoming / "notes.txt").write_text("operator notes\n")
    (home.incoming / "ztf_garbage.fits").write_bytes(b"\0" * 2880)
    s = _night(home, engine)
    assert s.calibrated == 4 and s.failed == 0, s.errors
    assert s.quarantined == 3
    kept = sorted(p.name for p in home.quarantine.iterdir() if not p.name.endswith(".json"))
    assert kept == ["notes.txt", "ztf_20261120_junk.fits", "ztf_garbage.fits"]
    assert (home.quarantine / "ztf_20261120_junk.fits").is_dir()  # moved whole, nothing lost
    with session(engine) as s_:
        reasons = dict(s_.execute(select(Quarantine.filename, Quarantine.reason)).all())
    assert reasons == {"notes.txt": "bad_name", "ztf_garbage.fits": "bad_name",
                       "ztf_20261120_junk.fits": "not_a_file"}


def test_ingest_quarantines_a_directory(home, engine):
    init_db(engine)
    (home.incoming / "transfer").mkdir()
    res = {r.file: r for r in ingest_incoming(home, engine)}
    assert (res["transfer"].status, res["transfer"].reason) == ("quarantined", "not_a_file")


def test_science_name_with_bias_imgtype_is_quarantined(home, engine):
    init_db(engine)
    sci = _science(home)
    with fits.open(sci, mode="update") as hdul:
        hdul[0].header["IMGTYPE"] = "bias"
    r = ingest_file(home, engine, sci)
    assert (r.status, r.reason) == ("quarantined", "bad_value"), r.message
    assert "IMGTYPE" in r.message and "_o" in r.message
    with session(engine) as s:
        assert s.scalars(select(Exposure)).all() == []


def test_calibrations_are_built_for_frames_ingested_before_the_night_run(home):
    engine = _home_engine(home)
    assert all(r.status == "ingested" for r in ingest_incoming(home, engine))
    s = _night(home, engine)
    assert s.calibrated == 4 and s.failed == 0, s.errors
    # A second run finds them built and does not rebuild them.
    from zsds.db.schema import Job

    with session(engine) as s_:
        calib = s_.scalars(select(Job).where(Job.stage == "calib")).all()
    assert [j.state for j in calib] == ["done"]


def test_a_file_still_being_written_waits_and_is_then_ingested(home, engine):
    init_db(engine)
    sci = _science(home)
    data = sci.read_bytes()
    sci.write_bytes(data[: len(data) // 3])  # the writer is a third of the way through
    res = {r.file: r for r in ingest_incoming(home, engine)}
    assert res[sci.name].status == "waiting", res[sci.name].message
    assert sci.exists() and not (home.quarantine / sci.name).exists()

    # Still growing while the ingest looks at it: waiting again.
    def write_rest() -> None:
        with sci.open("ab") as fo:
            for k in range(len(data) // 3, len(data), 1 << 16):
                fo.write(data[k : min(k + (1 << 16), len(data))])
                fo.flush()
                time.sleep(0.01)

    t = threading.Thread(target=write_rest)
    t.start()
    busy = {r.file: r for r in ingest_incoming(home, engine)}
    t.join()
    assert busy[sci.name].status == "waiting"
    res = {r.file: r for r in ingest_incoming(home, engine)}
    assert res[sci.name].status == "ingested", res[sci.name].message


def test_an_old_truncated_file_is_quarantined(home, engine):
    init_db(engine)
    sci = _science(home)
    data = sci.read_bytes()
    sci.write_bytes(data[: len(data) // 3])
    old = time.time() - 3600
    os.utime(sci, (old, old))
    r = ingest_file(home, engine, sci)
    assert (r.status, r.reason) == ("quarantined", "truncated")
