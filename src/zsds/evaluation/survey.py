"""A simulated multi-night survey of one field, run through the pipeline, for light curves.

Night 0 takes the afternoon calibrations and ``ref_epochs`` consecutive exposures (enough for
a reference image); then one exposure on each of ``n_nights`` nights drawn from ``span_days``
(:func:`zsds.sim.observing.survey_schedule`), with fresh calibrations every
``calib_every_days``. Each night is run by the pipeline executive, exactly as the survey would
be. The result is a home whose light curves can be built and compared with the sky's truth
(:mod:`zsds.lightcurves.evaluate`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from sqlalchemy import Engine

from zsds.core.home import Home
from zsds.core.naming import parse_night
from zsds.sim.camera import SimConfig


@dataclass(frozen=True)
class SurveyConfig:
    """Options of :func:`simulate_survey`."""

    start: str = "2026-09-10"  #: UT date of night 0
    field: int = 645  #: ZTF field observed
    ccds: tuple[int, ...] = (6,)  #: CCDs simulated
    quad_size: int = 512  #: small quadrant side (px)
    ref_epochs: int = 15  #: consecutive exposures on night 0 (the reference's inputs)
    n_nights: int = 30  #: later nights, one exposure each ...
    span_days: int = 60  #: ... drawn from this many days after night 0
    calib_every_days: int = 7  #: days between calibration sequences (biases valid +- 7 d)
    seed: int = 1  #: random seed of the simulation and the schedule
    filt: str = "r"  #: filter of every exposure ("g", "r" or "i")
    subtract: bool = True  #: also subtraction and alerts each night (off: calib, refs only)


def simulate_survey(home: Home, engine: Engine, config: SurveyConfig | None = None,
                    n_workers: int | None = None, progress=None) -> list[str]:
    """Simulate the survey night by night and run each night through the executive.

    Returns the nights run (ISO dates). Asteroids, satellites and transients are left out:
    this survey is about the light curves of the static sky (variables included).
    """
    from zsds.executive import ExecConfig, Executive
    from zsds.sim.observing import night_schedule, survey_schedule
    from zsds.sim.run import simulate_calib, simulate_exposures, write_night_truth

    cfg = config or SurveyConfig()
    d0 = parse_night(cfg.start)
    sim = SimConfig(quad_size=cfg.quad_size, seed=cfg.seed, asteroids=False, satellites=False,
                    transients=False, flares=False)
    later = survey_schedule(d0 + dt.timedelta(days=1), cfg.n_nights, cfg.span_days, cfg.field,
                            cfg.filt, cfg.seed)
    nights = [(d0, night_schedule(d0, cfg.ref_epochs, [cfg.field], (cfg.filt,), cfg.seed))]
    nights += [(_night_of(e.mjd), [e]) for e in later]
    last_calib: dt.date | None = None
    done = []
    with Executive(home, engine, ExecConfig(n_workers=n_workers, subtract=cfg.subtract),
                  progress=progress) as ex:
        for date, exposures in nights:
            if last_calib is None or (date - last_calib).days >= cfg.calib_every_days:
                simulate_calib(home, date, cfg.quad_size, list(cfg.ccds), seed=cfg.seed,
                               n_bias=5, n_flat=3, filters=(cfg.filt,))
                last_calib = date
            simulate_exposures(home, exposures, replace(sim), list(cfg.ccds))
            write_night_truth(home, date, exposures, "science")
            ex.run_night(date)
            done.append(date.isoformat())
    return done


def _night_of(mjd: float) -> dt.date:
    """UT date of the night an exposure belongs to (Palomar nights start in the UT evening,
    ~02:00-13:00 UT, so the UT date of the exposure is the night's date)."""
    from astropy.time import Time

    return Time(mjd, format="mjd").to_datetime().date()
