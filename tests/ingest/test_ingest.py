"""Raw-file ingest: archiving, idempotence and quarantine, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import time

from astropy.io import fits
from sqlalchemy import func, select

from zsds.core.naming import parse_raw_name
from zsds.db import Exposure, Quarantine, RawFile, init_db, session
from zsds.ingest import ingest_file, ingest_incoming


def _counts(engine) -> tuple[int, int, int]:
    with session(engine) as s:
        return tuple(
            s.scalar(select(func.count()).select_from(t)) for t in (Exposure, RawFile, Quarantine)
        )


def _science(home):
    return next(p for p in sorted(home.incoming.iterdir()) if p.name.endswith("_o.fits.fz"))


def test_happy_path(home, engine):
    init_db(engine)
    results = ingest_incoming(home, engine)
    assert [r.status for r in results] == ["ingested"] * 3, [r.message for r in results]
    assert list(home.incoming.iterdir()) == []
    for r in results:
        relpath = parse_raw_name(r.file).relpath.as_posix()
        assert r.path == home.path(relpath) and r.path.exists()
        assert r.file in r.message
    assert _counts(engine) == (3, 3, 0)
    with session(engine) as s:
        sci = s.scalars(select(Exposure).where(Exposure.imgtype == "object")).one()
        assert sci.field > 0 and sci.exptime == 30.0 and sci.nid == 3610
        assert str(sci.night) == "2026-11-20"
        assert all(len(f.sha256) == 64 for f in s.scalars(select(RawFile)))


def test_reingest_identical_file_is_duplicate(home, engine):
    init_db(engine)
    first = ingest_incoming(home, engine)
    archived = first[0].path
    shutil.copy2(archived, home.incoming / archived.name)
    again = ingest_incoming(home, engine)
    assert [r.status for r in again] == ["duplicate"]
    assert _counts(engine) == (3, 3, 0)
    assert archived.exists() and list(home.incoming.iterdir()) == []
    assert list(home.quarantine.iterdir()) == []


def test_same_name_different_content_is_conflict(home, engine):
    init_db(engine)
    sci = _science(home)
    keep = sci.read_bytes()
    ingest_incoming(home, engine)
    changed = home.incoming / sci.name
    changed.write_bytes(keep)
    with fits.open(changed, mode="update") as hdul:
        hdul[0].header["SEEING"] = 9.9
    r = ingest_file(home, engine, changed)
    assert (r.status, r.reason) == ("quarantined", "conflict")
    assert _counts(engine) == (3, 3, 1)
    assert r.path.exists() and r.path.parent == home.quarantine


def _check_quarantined(home, engine, name, reason):
    results = ingest_incoming(home, engine)
    bad = [r for r in results if r.file == name]
    assert len(bad) == 1
    r = bad[0]
    assert (r.status, r.reason) == ("quarantined", reason), r.message
    assert r.message.startswith(name) and "\n" not in r.message
    assert r.path == home.quarantine / name and r.path.exists()
    sidecar = json.loads((home.quarantine / f"{name}.reason.json").read_text())
    assert sidecar["file"] == name and sidecar["reason"] == reason
    assert len(sidecar["sha256"]) == 64 and sidecar["message"] and sidecar["time"]
    assert _counts(engine) == (2, 2, 1)
    with session(engine) as s:
        assert s.scalars(select(Quarantine.reason)).one() == reason
    return r


def _age(path) -> None:
    """Make a file an hour old: a truncated file modified within SETTLE_S is still arriving."""
    old = time.time() - 3600
    os.utime(path, (old, old))


def test_truncated_file_is_quarantined(home, engine):
    init_db(engine)
    sci = _science(home)
    data = sci.read_bytes()
    sci.write_bytes(data[: len(data) // 2 + 100])
    _age(sci)
    r = _check_quarantined(home, engine, sci.name, "truncated")
    assert r.path.stat().st_size == len(data) // 2 + 100  # nothing lost


def test_truncated_on_block_boundary_is_quarantined(home, engine):
    init_db(engine)
    sci = _science(home)
    data = sci.read_bytes()
    sci.write_bytes(data[: (len(data) // 2 // 2880) * 2880])
    _age(sci)
    r = ingest_incoming(home, engine)
    bad = next(x for x in r if x.file == sci.name)
    assert bad.status == "quarantined" and bad.reason in ("truncated", "bad_structure")


def test_missing_keyword_is_quarantined(home, engine):
    init_db(engine)
    sci = _science(home)
    with fits.open(sci, mode="update") as hdul:
        del hdul[0].header["EXPTIME"]
    r = _check_quarantined(home, engine, sci.name, "missing_keyword")
    assert "EXPTIME" in r.message


def test_missing_flat_keyword_is_quarantined(home, engine):
    init_db(engine)
    flat = next(p for p in home.incoming.iterdir() if p.name.endswith("_f.fits.fz"))
    with fits.open(flat, mode="update") as hdul:
        del hdul[0].header["ILUMWAVE"]
    r = _check_quarantined(home, engine, flat.name, "missing_keyword")
    assert "ILUMWAVE" in r.message


def test_bad_value_is_quarantined(home, engine):
    init_db(engine)
    sci = _science(home)
    with fits.open(sci, mode="update") as hdul:
        hdul[0].header["CCD_ID"] = 7
    r = _check_quarantined(home, engine, sci.name, "bad_value")
    assert "CCD_ID" in r.message


def test_bad_name_is_quarantined(home, engine):
    init_db(engine)
    sci = _science(home)
    bad = sci.rename(home.incoming / "image_0001.fits")
    _check_quarantined(home, engine, bad.name, "bad_name")


def test_quarantine_never_overwrites(home, engine):
    init_db(engine)
    for i in range(2):
        (home.incoming / "junk.fits").write_bytes(b"x" * (i + 1))
        ingest_incoming(home, engine)
    names = sorted(p.name for p in home.quarantine.iterdir())
    assert names == ["junk.fits", "junk.fits.1", "junk.fits.1.reason.json", "junk.fits.reason.json"]
