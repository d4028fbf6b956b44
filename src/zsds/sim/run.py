"""Drive the simulator: afternoon calibrations and nights of science exposures into a home.

Raw files appear in ``HOME/incoming`` the way the camera writes them (each written to a hidden
temporary name, then renamed, so a watcher never sees half a file); ground truth goes to
``HOME/truth/YYYYMMDD/<expid>/``; the PS1-like and Gaia-like catalogs covering every simulated
CCD are materialised under ``HOME/refcat``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from dataclasses import replace as dc_replace
from pathlib import Path

import numpy as np
import pandas as pd

from zsds.core.home import Home
from zsds.core.instrument import SMALL_SIZES, Filter, check_ccd_quad
from zsds.core.naming import BIAS_CODE, parse_night, raw_name
from zsds.sim.camera import SimConfig, simulate_ccd
from zsds.sim.observing import Exposure, calibration_schedule, night_schedule

ProgressFn = Callable[[str, int, int], None]


def validate_quad_size(size: int | None) -> int | None:
    """Check a small-quadrant size; None (full size) passes."""
    if size is None:
        return None
    if int(size) not in SMALL_SIZES:
        raise ValueError(
            f"quadrant size {size} is not allowed: use one of "
            f"{', '.join(map(str, SMALL_SIZES))} (or omit it for full-size 3072x3080)"
        )
    return int(size)


def validate_ccds(ccds: Iterable[int] | None) -> list[int]:
    """CCD ids to simulate (default all 16)."""
    out = list(range(1, 17)) if not ccds else sorted({int(c) for c in ccds})
    for c in out:
        check_ccd_quad(c)
    return out


@dataclass(frozen=True)
class SimRunResult:
    """What a simulation run wrote."""

    night: dt.date
    exposures: list[Exposure]
    raw_files: list[Path]
    truth_dir: Path


def _write_atomic_fits(hdul, path: Path) -> None:
    from zsds.io.fitsio import write_hdul

    write_hdul(hdul, path)


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _truth_dir(home: Home, exp: Exposure) -> Path:
    return home.truth / exp.filefracday[:8] / str(exp.expid)


def _filtercode(exp: Exposure) -> str:
    return BIAS_CODE if exp.imgtype == "bias" else Filter.parse(exp.filt).code


def simulate_exposures(
    home: Home,
    exposures: list[Exposure],
    config: SimConfig,
    ccds: list[int],
    progress: ProgressFn | None = None,
    realtime_speedup: float | None = None,
) -> list[Path]:
    """Simulate the given CCDs of the given exposures into ``home``; returns the raw files.

    With ``realtime_speedup`` K, each exposure's files are written no earlier than its start
    time relative to the first exposure divided by K (K = 1: the survey cadence, one exposure
    every ~45 s), so ``zsds night watch`` sees a night arrive as the camera would deliver it.
    """
    import time

    exposures = with_config_conditions(exposures, config)
    t_start = time.monotonic()
    mjd0 = exposures[0].mjd if exposures else 0.0
    from zsds.sim.scene import exposure_scene, gather_scene
    from zsds.sky.model import SkyModel
    from zsds.sky.refcat import ensure_refcats

    home.ensure()
    sky = SkyModel(home.truth / "sky", config.seed)
    files = []
    total = len(exposures) * len(ccds)
    done = 0
    asteroid_ids: set[str] = set()
    for exp in exposures:
        if realtime_speedup:
            wait = (exp.mjd - mjd0) * 86400.0 / realtime_speedup - (time.monotonic() - t_start)
            if wait > 0:
                time.sleep(wait)
        tdir = _truth_dir(home, exp)
        tdir.mkdir(parents=True, exist_ok=True)
        (tdir / "exposure.json").write_text(
            json.dumps(
                {**exp.to_dict(), "filefracday": exp.filefracday, "sim_config": config.__dict__},
                indent=1,
            )
        )
        escene = exposure_scene(exp, config) if exp.imgtype == "science" else None
        if escene is not None:
            asteroid_ids.update(map(str, escene.asteroid_ids))
            if len(escene.movers):
                _write_parquet(escene.movers.astype({"id": str}), tdir / "movers.parquet")
        for ccdid in ccds:
            scene = None
            if exp.imgtype == "science":
                from zsds.sim.scene import ccd_cone

                scene = gather_scene(exp, ccdid, config, sky, escene)
                ra, dec, radius = ccd_cone(exp, ccdid, config)
                ensure_refcats(sky, home.refcat, ra, dec, radius + 0.05)
            hdul, truth = simulate_ccd(exp, ccdid, config, scene)
            name = raw_name(exp.mjd, exp.field, _filtercode(exp), ccdid, exp.imgtype)
            path = home.incoming / name.filename
            _write_atomic_fits(hdul, path)
            files.append(path)
            stem = f"c{ccdid:02d}"
            _write_parquet(truth.quadrants, tdir / f"{stem}_quadrants.parquet")
            if len(truth.sources):
                _write_parquet(truth.sources, tdir / f"{stem}_sources.parquet")
            if len(truth.cosmic_rays):
                _write_parquet(truth.cosmic_rays, tdir / f"{stem}_cosmics.parquet")
            if len(truth.streaks):
                _write_parquet(truth.streaks, tdir / f"{stem}_streaks.parquet")
            done += 1
            if progress:
                progress(name.filename, done, total)
    return files


def with_config_conditions(exposures: list[Exposure], config: SimConfig) -> list[Exposure]:
    """The exposures with the conditions that ``config`` forces (``config.seeing``)."""
    if config.seeing is None:
        return list(exposures)
    return [
        dc_replace(e, seeing=float(config.seeing)) if e.imgtype == "science" else e
        for e in exposures
    ]


def write_night_truth(home: Home, night: dt.date, exposures: list[Exposure], kind: str) -> Path:
    """Write the night's ``<kind>_exposures.parquet`` truth table; returns the night's truth
    folder."""
    ndir = home.truth / f"{night:%Y%m%d}"
    ndir.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([{**e.to_dict(), "filefracday": e.filefracday} for e in exposures])
    _write_parquet(table, ndir / f"{kind}_exposures.parquet")
    return ndir


def simulate_calib(
    home: Home,
    night: str | dt.date,
    quad_size: int | None = None,
    ccds: Iterable[int] | None = None,
    seed: int = 1,
    n_bias: int = 10,
    n_flat: int = 5,
    filters: tuple[str, ...] = ("g", "r", "i"),
    progress: ProgressFn | None = None,
) -> SimRunResult:
    """Write the afternoon bias and dome-flat sequences of a night into ``home/incoming``."""
    date = parse_night(night)
    config = SimConfig(quad_size=validate_quad_size(quad_size), seed=seed)
    ccd_list = validate_ccds(ccds)
    exposures = calibration_schedule(date, n_bias, n_flat, filters)
    files = simulate_exposures(home, exposures, config, ccd_list, progress)
    write_static_lownu_flats(home, config, ccd_list, filters)
    return SimRunResult(date, exposures, files, write_night_truth(home, date, exposures, "calib"))


def write_static_lownu_flats(
    home: Home, config: SimConfig, ccds: list[int], filters: Iterable[str]
) -> list[Path]:
    """Deliver the static low-frequency flats (``lownuflat``) of the simulated camera.

    ZTF's low-frequency flat is a static calibration product made offline from star flats
    (dithered photometry of many stars); the simulator's instrument team delivers the
    equivalent: the sky illumination of each quadrant, normalised at the optical axis.
    Idempotent.
    """
    from astropy.io import fits

    from zsds.core.naming import static_cal_product
    from zsds.sim.detector import illumination

    out = []
    for f in filters:
        filt = Filter.parse(f)
        for ccdid in ccds:
            for qid in (1, 2, 3, 4):
                path = home.path(static_cal_product("lownuflat", filt.code, ccdid, qid,
                                                    "lownuflat.fits"))
                if path.exists():
                    continue
                data = illumination(ccdid, qid, config.nx, config.ny, filt, "sky")
                hdr = fits.Header()
                hdr["CALTYPE"] = ("lownuflat", "static low-frequency flat")
                hdr["FILTER"] = (f"ZTF_{filt.name}", "filter")
                _write_atomic_fits(fits.HDUList([fits.PrimaryHDU(data, header=hdr)]), path)
                out.append(path)
    return out


def simulate_night(
    home: Home,
    night: str | dt.date,
    n_exposures: int,
    fields: list[int] | None = None,
    quad_size: int | None = None,
    ccds: Iterable[int] | None = None,
    seed: int = 1,
    filters: tuple[str, ...] = ("r", "g"),
    config: SimConfig | None = None,
    progress: ProgressFn | None = None,
    realtime_speedup: float | None = None,
) -> SimRunResult:
    """Write a night of science exposures into ``home/incoming`` (truth into ``home/truth``);
    ``realtime_speedup`` paces them at the survey cadence divided by it."""
    date = parse_night(night)
    if config is None:
        config = SimConfig(quad_size=validate_quad_size(quad_size), seed=seed)
    ccd_list = validate_ccds(ccds)
    exposures = with_config_conditions(
        night_schedule(date, n_exposures, fields, filters, config.seed), config
    )
    files = simulate_exposures(home, exposures, config, ccd_list, progress, realtime_speedup)
    ndir = write_night_truth(home, date, exposures, "science")
    if config.asteroids:
        table = _write_asteroid_truth(ndir, exposures, config)
        if table is not None:
            deliver_known_orbits(home, table, config.known_asteroid_fraction)
    return SimRunResult(date, exposures, files, ndir)


def _write_asteroid_truth(ndir: Path, exposures: list[Exposure], config: SimConfig
                          ) -> pd.DataFrame | None:
    """Orbits (MPCORB format and Parquet) of every simulated asteroid population of the night."""
    from zsds.core.fields import primary_fields
    from zsds.sim.scene import ASTEROID_BLOCK_DAYS, _patch_population
    from zsds.sky.model import angular_separation
    from zsds.solar.mpcorb import write_mpcorb
    from zsds.solar.orbits import Orbits

    fields = primary_fields()
    frames = []
    seen = set()
    for exp in exposures:
        sep = angular_separation(exp.ra, exp.dec, fields.ra.to_numpy(), fields.dec.to_numpy())
        block = int(exp.mjd // ASTEROID_BLOCK_DAYS)
        for fid in fields.fieldid.to_numpy()[sep < 9.0]:
            if (fid, block) in seen:
                continue
            seen.add((fid, block))
            orb = _patch_population(int(fid), block, config.seed, config.asteroid_density)
            if len(orb):
                frames.append(orb.to_frame())
    if not frames:
        return None
    table = pd.concat(frames, ignore_index=True).drop_duplicates("designation")
    _write_parquet(table, ndir / "asteroids.parquet")
    write_mpcorb(Orbits.from_frame(table), ndir / "asteroids_mpcorb.dat")
    return table


def is_known(designation: np.ndarray, fraction: float) -> np.ndarray:
    """Whether the simulated MPC knows each asteroid (a fixed hash of the designation)."""
    import zlib

    h = np.array([zlib.crc32(str(d).encode()) for d in designation], dtype=np.float64)
    return h / 2.0**32 < fraction


def deliver_known_orbits(home: Home, table: pd.DataFrame, fraction: float) -> Path:
    """Merge the known asteroids of ``table`` into ``refcat/MPCORB.DAT`` (atomic, idempotent).

    The simulated Minor Planet Center: the orbits of the asteroids it knows (a fixed
    ``fraction`` of them, :func:`is_known`) in the MPCORB.DAT format, which is what the
    pipeline's known-object tagging reads (:func:`zsds.moving.run.known_orbits`).
    """
    from zsds.solar.mpcorb import read_mpcorb, write_mpcorb
    from zsds.solar.orbits import Orbits

    path = home.refcat / "MPCORB.DAT"
    new = table[is_known(table["designation"].to_numpy(), fraction)]
    if path.exists():
        old = read_mpcorb(path).to_frame()
        if set(new["designation"]) <= set(old["designation"]):
            return path
        new = pd.concat([old, new], ignore_index=True).drop_duplicates("designation")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    write_mpcorb(Orbits.from_frame(new.sort_values("designation")), tmp)
    tmp.replace(path)
    return path


__all__ = ["SimConfig", "SimRunResult", "simulate_calib", "simulate_night"]
