"""The units of work the executive hands to Dask workers.

Each task takes only plain, picklable values (the home folder, the database URL, ids), opens what
it needs in the worker process (one database engine per process and URL, cached), runs one
pipeline step through the same functions the command line uses, and returns a small summary.
The steps that have settings (:data:`CONFIGURED`) take the pipeline configuration as the
keyword ``config`` (a frozen :class:`~zsds.config.PipelineConfig`, picklable; ``None``: the
defaults), which the executive passes to each of them.
Every step is idempotent, so Dask may retry a task (after a worker died) without duplicating
products, rows or alerts, and each step records itself in the ``jobs`` table.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from zsds.core.home import Home
from zsds.db import connect, init_db
from zsds.db.engine import session
from zsds.db.jobs import job
from zsds.db.schema import QuadrantProduct

if TYPE_CHECKING:
    from zsds.config import PipelineConfig

__all__ = [
    "task_calibrate",
    "task_calibrations",
    "task_ingest",
    "task_moving",
    "task_packets",
    "task_refs",
    "task_subtract",
]


@lru_cache(maxsize=8)
def _engine(db_url: str) -> Engine:
    engine = connect(db_url)
    init_db(engine)
    return engine


def open_home(root: str, db_url: str) -> tuple[Home, Engine]:
    """The home and its (per-process cached) database engine."""
    return Home.resolve(root, db_url), _engine(db_url)


def task_ingest(root: str, db_url: str, path: str) -> dict[str, Any]:
    """Ingest one raw file (validate, archive or quarantine)."""
    from zsds.ingest.core import ingest_file

    home, engine = open_home(root, db_url)
    t = time.perf_counter()
    p = Path(path)
    if not p.exists():
        # A retry after the worker died having already archived (or quarantined) the file.
        from zsds.db.schema import Quarantine, RawFile

        with session(engine) as s:
            if s.execute(select(RawFile.id).where(RawFile.filename == p.name)).first():
                return {"file": p.name, "status": "ingested", "seconds": 0.0,
                        "message": f"{p.name}: already archived", "done_at": time.time()}
            q = s.execute(select(Quarantine.message).where(Quarantine.filename == p.name)
                          ).scalars().first()
            if q is not None:
                return {"file": p.name, "status": "quarantined", "message": q,
                        "seconds": 0.0, "done_at": time.time()}
        raise FileNotFoundError(f"{path}: raw file vanished before it was ingested")
    r = ingest_file(home, engine, p)
    return {"file": r.file, "status": r.status, "message": r.message,
            "seconds": time.perf_counter() - t, "done_at": time.time()}


def task_calibrations(root: str, db_url: str, night: str, ccdid: int, *_after: Any,
                      config: PipelineConfig | None = None) -> dict[str, Any]:
    """Master biases and flats of one CCD for a night (before its science)."""
    from zsds.calib.build import build_calibrations

    home, engine = open_home(root, db_url)
    key = f"{night}-c{ccdid:02d}"
    with job(engine, "calib", key, inputs={"night": night, "ccd": ccdid}):
        res = build_calibrations(home, engine, night, config, ccd=ccdid)
    return {"night": night, "ccd": ccdid, "products": len(res.products)}


def task_calibrate(root: str, db_url: str, night: str, expid: int, ccdid: int,
                   *_after: Any, config: PipelineConfig | None = None
                   ) -> list[dict[str, Any]]:
    """Instrumental calibration of the four quadrants of one CCD of one exposure.

    Extra positional arguments are upstream results (Dask dependencies) and are ignored.
    """
    from zsds.instcal.run import calibrate_night

    home, engine = open_home(root, db_url)
    t = time.perf_counter()
    out = calibrate_night(home, engine, night, expid=expid, ccd=ccdid, config=config)
    dt_s = time.perf_counter() - t
    return [{"pid": o.pid, "ok": o.ok, "message": o.message, "seconds": dt_s / max(len(out), 1)}
            for o in out]


def task_subtract(root: str, db_url: str, pid: int, *_after: Any,
                  config: PipelineConfig | None = None) -> dict[str, Any]:
    """Subtraction, candidates, real-bogus and objects of one quadrant (if it has a reference)."""
    from zsds.diffim.run import subtract_quadrant_job

    home, engine = open_home(root, db_url)
    with session(engine) as s:
        row = s.execute(select(QuadrantProduct).where(
            QuadrantProduct.pid == pid, QuadrantProduct.kind == "sciimg")).scalar_one_or_none()
        if row is not None:
            s.expunge(row)
    if row is None:
        return {"pid": pid, "ok": False, "state": "no-science", "message": "not calibrated"}
    t = time.perf_counter()
    out = subtract_quadrant_job(home, engine, row, config)
    return {"pid": pid, "ok": out.ok, "state": out.state, "message": out.message,
            "ncand": out.ncand, "npassed": out.npassed, "seconds": time.perf_counter() - t}


def task_subtraction_off(pid: int, *_after: Any) -> dict[str, Any]:
    """Stand-in for :func:`task_subtract` when subtraction is switched off (no job row, so
    a later run with subtraction on does the quadrant)."""
    return {"pid": pid, "ok": False, "state": "skipped", "message": "subtraction off"}


def task_no_packets(*_after: Any) -> list:
    """Stand-in for :func:`task_packets` when subtraction is switched off."""
    return []


def task_packets(root: str, db_url: str, night: str, pid: int, *_after: Any) -> list:
    """Build and archive the alert packets of one difference image
    (:func:`zsds.alerts.send.build_quadrant_packets`); publishing is the driver's: one
    idempotent producer session, and a dead worker cannot leave a packet sent but
    unrecorded. Returns the :class:`~zsds.alerts.send.Packet` s."""
    from zsds.alerts.send import build_quadrant_packets

    home, engine = open_home(root, db_url)
    return build_quadrant_packets(home, engine, night, pid)


def task_refs(root: str, db_url: str, *_after: Any, only_missing: bool = True,
              config: PipelineConfig | None = None) -> dict[str, Any]:
    """Build references where none exists and enough good epochs do (end-of-night work)."""
    from zsds.refs.run import build_references

    home, engine = open_home(root, db_url)
    with job(engine, "refs", "all"):
        out = build_references(home, engine, config=config, only_missing=only_missing)
    built = [o for o in out if o.ok and o.products]
    return {"built": len(built), "skipped": len(out) - len(built),
            "messages": [o.message for o in built]}


def task_moving(root: str, db_url: str, night: str, *_after: Any,
                config: PipelineConfig | None = None) -> dict[str, Any]:
    """End of night: link the moving objects of the window ending with ``night``, store the
    tracks and write the MPC/ADES reports."""
    from zsds.config import PipelineConfig
    from zsds.moving.run import link_window, write_reports

    home, engine = open_home(root, db_url)
    out = link_window(home, engine, night, PipelineConfig.of(config).moving)
    paths = write_reports(home, engine, night)
    return {"tracks": out.ntracks, "known": out.nknown, "detections": out.ndet,
            "reports": {k: str(p) for k, p in paths.items()}}


def task_lightcurves(root: str, db_url: str, field: int, ccdid: int, qid: int, fid: int,
                     features: bool = True, config: PipelineConfig | None = None
                     ) -> dict[str, Any]:
    """Match, refine and store the light curves of one field/quadrant/filter (with the
    ``lightcurves`` settings of ``config``; features only if ``features`` and they say so)."""
    from dataclasses import replace

    from zsds.config import PipelineConfig, record_config
    from zsds.io.fitsio import config_provenance
    from zsds.lightcurves.build import Unit, build_unit

    home, engine = open_home(root, db_url)
    unit = Unit(field, ccdid, qid, fid)
    key = f"{field}-{ccdid}-{qid}-{fid}"
    pipeline = PipelineConfig.of(config)
    cfg = pipeline.lightcurves
    # The matchfile records the configuration's hash (CFGHASH) as the FITS products do.
    with job(engine, "lightcurves", key), config_provenance(record_config(engine, pipeline)):
        out = build_unit(home, engine, unit, replace(cfg, features=features and cfg.features))
    return out


#: Tasks that take the pipeline configuration (keyword ``config``): the executive passes its
#: :attr:`~zsds.executive.night.ExecConfig.pipeline` to each.
CONFIGURED = frozenset({task_calibrations, task_calibrate, task_subtract, task_refs,
                        task_moving, task_lightcurves})
