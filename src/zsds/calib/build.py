"""Calibration pipelines (3) and (4) at the edge: from ingested raw frames to archived products.

For a night, every ingested bias frame is split and overscan-corrected, stacked into a master
bias per quadrant (``bias``, ``biasunc``, ``biascmask``), then every dome flat of each filter is
stacked into a high-frequency flat (``hifreqflat``, ``hifreqflatunc``, ``hifreqflatmask``). Each
product is written under the IRSA ``cal/`` layout and recorded in ``calib_products`` with a
validity range; :func:`nearest_calibration` is how the science pipeline picks one.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time
from sqlalchemy import Engine, select

from zsds.calib.bias import make_master_bias
from zsds.calib.config import CalibBuildConfig
from zsds.calib.flat import make_hifreq_flat
from zsds.config import PipelineConfig, record_config
from zsds.core.home import Home
from zsds.core.instrument import Filter
from zsds.core.naming import BIAS_CODE, cal_product, parse_night
from zsds.db.engine import session
from zsds.db.schema import CalibProduct, Exposure, RawFile
from zsds.io.fitsio import write_image
from zsds.split import read_raw_ccd, split_quadrant

#: Days either side of the night during which a product is valid.
VALIDITY_DAYS = {"bias": 7.0, "hifreqflat": 30.0}


@dataclass(frozen=True)
class CalibBuildResult:
    """What was built: (kind, filtercode, ccdid, qid) -> product path, plus failures."""

    products: dict[tuple[str, str, int, int], Path]
    skipped: list[str]


def _raw_frames(home: Home, engine: Engine, night: dt.date, imgtype: str,
                ccd: int | None = None):
    with session(engine) as s:
        q = (
            select(RawFile.relpath, RawFile.ccdid, Exposure.fid, Exposure.mjd)
            .join(Exposure, Exposure.expid == RawFile.expid)
            .where(Exposure.night == night, Exposure.imgtype == imgtype)
        )
        if ccd is not None:
            q = q.where(RawFile.ccdid == ccd)
        rows = s.execute(q.order_by(Exposure.mjd)).all()
    return [(home.path(r.relpath), r.ccdid, r.fid, r.mjd) for r in rows]


def _record(
    engine: Engine,
    home: Home,
    kind: str,
    fc: str,
    ccdid: int,
    qid: int,
    night: dt.date,
    path: Path,
    qa: dict,
) -> None:
    mjd0 = Time(night.isoformat()).mjd
    rel = str(path.relative_to(home.root))
    with session(engine) as s:
        row = s.execute(
            select(CalibProduct).where(CalibProduct.relpath == rel)
        ).scalar_one_or_none()
        if row is None:
            row = CalibProduct(relpath=rel)
            s.add(row)
        row.kind, row.filtercode, row.ccdid, row.qid, row.night = kind, fc, ccdid, qid, night
        row.valid_from = mjd0 - VALIDITY_DAYS[kind]
        row.valid_to = mjd0 + 1.0 + VALIDITY_DAYS[kind]
        row.qa = {
            k: (float(v) if isinstance(v, int | float | np.floating) else v) for k, v in qa.items()
        }


def _header(kind: str, nframes: int, night: dt.date, qa: dict) -> fits.Header:
    h = fits.Header()
    h["CALTYPE"] = (kind, "calibration product type")
    h["NFRAMES"] = (nframes, "number of frames stacked")
    h["NIGHT"] = (night.isoformat(), "UT night of the input frames")
    for k, v in qa.items():
        if isinstance(v, int | float | np.floating) and len(k) <= 8:
            h[k.upper()] = float(v)
    return h


def build_calibrations(
    home: Home, engine: Engine, night: str | dt.date,
    config: PipelineConfig | CalibBuildConfig | None = None, ccd: int | None = None,
) -> CalibBuildResult:
    """Build master biases and high-frequency flats for a night from ingested raw frames
    (of one CCD if ``ccd`` is given: the executive builds one CCD per task, as the frames of a
    CCD are held in memory together).

    ``config`` is the pipeline configuration (its ``calib`` and ``split`` settings are used),
    or these settings alone (every other stage at its defaults), or ``None`` (the defaults);
    it is recorded in ``configs`` and its hash in every product's header (``CFGHASH``).
    Idempotent: products are rewritten in place (atomically) and their database rows updated.
    """
    pipeline = PipelineConfig.of(config)
    config, split = pipeline.calib, pipeline.split
    cfg_hash = record_config(engine, pipeline)
    date = parse_night(night)
    products: dict[tuple[str, str, int, int], Path] = {}
    skipped: list[str] = []
    biases: dict[tuple[int, int], list[np.ndarray]] = defaultdict(list)
    for path, ccdid, _fid, _mjd in _raw_frames(home, engine, date, "bias", ccd):
        raw = read_raw_ccd(path)
        for qid in (1, 2, 3, 4):
            biases[(ccdid, qid)].append(split_quadrant(raw, qid, split).data)
    masters = {}
    for ccdid, qid in sorted(biases):
        frames = biases.pop((ccdid, qid))  # frees each quadrant's stack once used
        if len(frames) < config.min_bias:
            skipped.append(f"bias c{ccdid:02d} q{qid}: {len(frames)} frames")
            continue
        res = make_master_bias(frames, config.bias)
        masters[(ccdid, qid)] = res
        h = _header("bias", len(frames), date, res.qa)
        for suffix, data in (
            ("bias.fits", res.bias),
            ("biasunc.fits", res.bias_unc),
            ("biascmask.fits", res.cmask.astype(np.int16)),
        ):
            p = home.path(cal_product(date, "bias", BIAS_CODE, ccdid, qid, suffix))
            write_image(p, np.asarray(data, np.float32 if data.dtype != np.int16 else np.int16), h,
                        config_hash=cfg_hash)
        products[("bias", BIAS_CODE, ccdid, qid)] = p.with_name(p.name.replace("biascmask", "bias"))
        _record(
            engine,
            home,
            "bias",
            BIAS_CODE,
            ccdid,
            qid,
            date,
            products[("bias", BIAS_CODE, ccdid, qid)],
            res.qa,
        )
    flats: dict[tuple[str, int, int], list[np.ndarray]] = defaultdict(list)
    for path, ccdid, fid, _mjd in _raw_frames(home, engine, date, "dome", ccd):
        raw = read_raw_ccd(path)
        for qid in (1, 2, 3, 4):
            flats[(Filter(fid).code, ccdid, qid)].append(split_quadrant(raw, qid, split).data)
    for fc, ccdid, qid in sorted(flats):
        frames = flats.pop((fc, ccdid, qid))
        mb = masters.get((ccdid, qid))
        if mb is None or len(frames) < config.min_flat:
            skipped.append(
                f"flat {fc} c{ccdid:02d} q{qid}: "
                f"{'no master bias' if mb is None else f'{len(frames)} frames'}"
            )
            continue
        res = make_hifreq_flat(frames, mb.bias, mb.cmask, config.flat)
        h = _header("hifreqflat", len(frames), date, res.qa)
        h["FILTER"] = (f"ZTF_{fc[1]}", "filter")
        for suffix, data in (
            ("hifreqflat.fits", res.flat),
            ("hifreqflatunc.fits", res.flat_unc),
            ("hifreqflatmask.fits", res.mask),
        ):
            p = home.path(cal_product(date, "hifreqflat", fc, ccdid, qid, suffix))
            arr = np.asarray(data)
            write_image(
                p, arr.astype(np.int16) if arr.dtype.kind in "biu" else arr.astype(np.float32), h,
                config_hash=cfg_hash,
            )
        main = home.path(cal_product(date, "hifreqflat", fc, ccdid, qid, "hifreqflat.fits"))
        products[("hifreqflat", fc, ccdid, qid)] = main
        _record(engine, home, "hifreqflat", fc, ccdid, qid, date, main, res.qa)
    return CalibBuildResult(products, skipped)


def nearest_calibration(
    engine: Engine, kind: str, filtercode: str, ccdid: int, qid: int, mjd: float
) -> CalibProduct | None:
    """The valid calibration product whose night is nearest to ``mjd`` (None if none is valid)."""
    with session(engine) as s:
        rows = (
            s.execute(
                select(CalibProduct).where(
                    CalibProduct.kind == kind,
                    CalibProduct.filtercode == filtercode,
                    CalibProduct.ccdid == ccdid,
                    CalibProduct.qid == qid,
                    CalibProduct.valid_from <= mjd,
                    CalibProduct.valid_to >= mjd,
                )
            )
            .scalars()
            .all()
        )
        if not rows:
            return None
        best = min(rows, key=lambda r: abs(Time(r.night.isoformat()).mjd + 0.5 - mjd))
        s.expunge(best)
        return best
