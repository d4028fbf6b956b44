"""Simulated homes for the benchmarks: a reference night and a science night of a few fields.

:func:`build_survey_home` writes into a home everything the real-time chain needs before a new
exposure arrives, as the survey has it: the afternoon calibrations and their master frames,
``n_ref`` calibrated epochs of each field on a first night co-added into a reference per
quadrant, and ``n_sci`` new exposures of each field on the next night, ingested but not yet
calibrated. ``bench/bench_diffim.py``, ``bench/bench_executive.py`` and ``zsds bench realtime``
run on such a home; building it is set-up, never timed.

Fields of the survey-like mix (:data:`SURVEY_MIX`), all observable from Palomar at the start of
the nights used here (``tests/instcal/test_fields.py`` checks the altitude of two of them):

* ``high``: field 345 (l = 101, b = -71): a sparse high-latitude field;
* ``mid``: field 645 (l = 89, b = -27): the benchmarks' typical field;
* ``plane``: field 591 (l = 56, b = -3): the Galactic plane, thousands of stars per quadrant.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select

from zsds.core.home import Home
from zsds.core.naming import parse_night

__all__ = ["NIGHT_REF", "NIGHT_SCI", "QUICK_HOME", "SURVEY_MIX", "ScienceQuadrant",
           "build_survey_home", "science_quadrants"]

#: The reference night and the science night (the next one).
NIGHT_REF, NIGHT_SCI = "2026-11-20", "2026-11-21"
#: Survey-like mix: label -> ZTF field id.
SURVEY_MIX: dict[str, int] = {"high": 345, "mid": 645, "plane": 591}

#: The home of the benchmarks' quick modes (``--quick``): one field, 384 px quadrants (the
#: smallest size at which field 645 has enough PS1 calibrators for a zero point), references
#: from two epochs. About 20 s of CPU to build.
QUICK_HOME: dict = {"fields": (645,), "quad_size": 384, "n_ref": 2, "n_bias": 3, "n_flat": 2}

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class ScienceQuadrant:
    """One quadrant of a science exposure waiting for the real-time chain.

    Attributes
    ----------
    raw : str
        Path of the raw CCD file relative to the home.
    expid, ccdid, qid, field : int
        Exposure, CCD, quadrant (1-4) and field.
    """

    raw: str
    expid: int
    ccdid: int
    qid: int
    field: int


def _engine(home: Home) -> Engine:
    from zsds.db import connect, init_db

    engine = connect(home.db_url)
    init_db(engine)
    return engine


def build_survey_home(
    home: Home,
    fields: Sequence[int],
    quad_size: int | None = None,
    *,
    ccd: int = 6,
    quads: Sequence[int] = (1,),
    n_ref: int = 3,
    n_sci: int = 1,
    seed: int = 11,
    n_bias: int = 5,
    n_flat: int = 3,
    progress: ProgressFn = lambda _msg: None,
) -> list[ScienceQuadrant]:
    """Simulate and prepare a home for the real-time chain (see the module docstring).

    Resumable: the simulation is skipped when the reference night's raw files are already
    ingested, the calibration of the reference epochs when they are calibrated, and a
    reference that exists is kept (never rebuilt with the science night's epochs, once
    those are calibrated).

    Parameters
    ----------
    home : Home
        Where to build (created if needed).
    fields : sequence of int
        ZTF fields, each observed ``n_ref`` times on :data:`NIGHT_REF` and ``n_sci`` times on
        :data:`NIGHT_SCI` (r band, one CCD).
    quad_size : int or None
        Small square quadrants (``zsds.core.instrument.SMALL_SIZES``); None for full size.
    ccd : int
        The CCD simulated.
    quads : sequence of int
        Quadrants of each field that get a reference (the others stay without one).
    n_ref : int
        Epochs per field co-added into each reference (the reference selection is relaxed
        to accept that few, less one that fails the quality cuts).
    n_sci : int
        Science exposures per field on the second night (0: none).
    seed : int
        Simulation seed of the reference night (the science night uses ``seed + 1``).
    n_bias, n_flat : int
        Bias frames and dome flats of the afternoon sequence.
    progress : callable
        Called with a line of text as each preparation step starts.

    Returns
    -------
    list of ScienceQuadrant
        The science night's quadrants in ``quads`` (ingested, not calibrated).

    Raises
    ------
    RuntimeError
        If a reference could not be built for some field and quadrant.
    """
    from zsds.calib.build import build_calibrations
    from zsds.ingest import ingest_incoming
    from zsds.instcal.run import calibrate_night, science_files
    from zsds.refs.run import RefBuildConfig, build_references
    from zsds.refs.select import SelectConfig
    from zsds.sim.run import simulate_calib, simulate_night

    home = Home.resolve(home.root, home.db_url_override).ensure()
    fields = [int(f) for f in fields]
    engine = _engine(home)
    # Resumable: a step whose products are in the database is not done again.
    if not science_files(engine, parse_night(NIGHT_REF)):
        progress("simulating the afternoon calibrations")
        simulate_calib(home, NIGHT_REF, quad_size, [ccd], seed=seed, n_bias=n_bias,
                       n_flat=n_flat, filters=("r",))
        progress(f"simulating {n_ref} reference epochs of fields {fields}")
        simulate_night(home, NIGHT_REF, n_ref * len(fields), fields, quad_size, [ccd],
                       seed=seed, filters=("r",))
        if n_sci > 0:
            progress(f"simulating {n_sci} science exposure(s) of fields {fields}")
            simulate_night(home, NIGHT_SCI, n_sci * len(fields), fields, quad_size, [ccd],
                           seed=seed + 1, filters=("r",))
        progress("ingesting and building the master calibrations")
        bad = [r.message for r in ingest_incoming(home, engine) if r.status == "quarantined"]
        if bad:
            raise RuntimeError(f"ingest quarantined {len(bad)} file(s): {bad[0]}")
        build_calibrations(home, engine, NIGHT_REF)
    for q in quads:
        if _calibrated(engine, NIGHT_REF, q):
            continue
        progress(f"calibrating the reference epochs, quadrant {q}")
        failed = [o.message for o in calibrate_night(home, engine, NIGHT_REF, ccd=ccd, quad=q)
                  if not o.ok]
        if failed:
            raise RuntimeError(f"calibration of a reference epoch failed: {failed[0]}")
    progress("co-adding the references")
    # One epoch may fail the quality cuts (a saturated satellite trail, a cloud) without
    # costing the field its reference.
    config = RefBuildConfig(select=SelectConfig(min_epochs=max(1, min(n_ref, 15) - 1)))
    missing = []
    for f in fields:
        for q in quads:
            out = build_references(home, engine, field=f, ccd=ccd, quad=q, config=config,
                                   only_missing=True)
            if not any(o.ok for o in out):
                missing.append(f"field {f} q{q}: "
                               + ("; ".join(o.message for o in out) or "no epochs"))
    if missing:
        raise RuntimeError("no reference for " + "; ".join(missing))
    return science_quadrants(home, NIGHT_SCI, quads)


def _calibrated(engine: Engine, night: str, qid: int) -> bool:
    """Whether some science quadrant ``qid`` of the night has been calibrated."""
    from zsds.db.engine import session
    from zsds.db.schema import Exposure, QuadrantProduct

    with session(engine) as s:
        return s.execute(select(QuadrantProduct.pid).join(
            Exposure, Exposure.expid == QuadrantProduct.expid).where(
            Exposure.night == parse_night(night), QuadrantProduct.qid == qid,
            QuadrantProduct.kind == "sciimg").limit(1)).first() is not None


def science_quadrants(home: Home, night: str | dt.date = NIGHT_SCI,
                      quads: Sequence[int] = (1,)) -> list[ScienceQuadrant]:
    """The ingested science quadrants of a night (``quads`` of each raw CCD file), in time
    order."""
    from zsds.instcal.run import science_files

    files = science_files(_engine(home), parse_night(night))
    return [ScienceQuadrant(relpath, int(expid), int(ccdid), int(q), int(field))
            for relpath, expid, ccdid, field, _ffd, _mjd, _fid in files for q in quads]
