"""Instrumental calibration at the edge: archive in, products and database rows out.

Each raw CCD file is read once and split into its four quadrants; each quadrant gets the nearest
valid master bias and high-nu flat, the static low-nu flat, and the reference catalogs around it,
goes through :func:`zsds.instcal.stage.calibrate_quadrant`, and its products are written under
the IRSA ``sci/`` layout (atomically, so re-running replaces them) and recorded in
``quadrant_products`` / ``qa_metrics`` / ``jobs``. A failing quadrant is recorded as a failed job
with its error and never stops the others. IPAC ``sciimg`` files imported without their raw file
(``zsds import``) are re-processed instead (:func:`_recalibrate_imported`).
"""

from __future__ import annotations

import datetime as dt
import logging
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from sqlalchemy import Engine, delete, select

from zsds.calib.build import nearest_calibration
from zsds.config import PipelineConfig, record_config
from zsds.core.home import Home
from zsds.core.image import QuadrantId, QuadrantImage
from zsds.core.instrument import Filter
from zsds.core.naming import BIAS_CODE, parse_night, static_cal_product
from zsds.core.wcs import header_wcs, image_footprint
from zsds.db.engine import session
from zsds.db.jobs import job
from zsds.db.schema import Exposure, QAMetric, QuadrantProduct, RawFile
from zsds.instcal.stage import (
    CalibrationFrames,
    InfoBits,
    InstCalConfig,
    InstCalResult,
    calibrate_quadrant,
)
from zsds.io.catalogs import psfcat_table
from zsds.io.fitsio import config_provenance, write_hdul, write_image, write_table, write_text
from zsds.sky.refcat import RefCatalog, RefCatalogError, open_refcat
from zsds.split import SplitConfig, quadrant_qa, read_raw_ccd, split_quadrant

ProgressFn = Callable[[str, int, int], None]
log = logging.getLogger(__name__)

@dataclass
class QuadrantOutcome:
    """What happened to one quadrant."""

    pid: int
    ok: bool
    message: str
    result: InstCalResult | None = None
    products: dict[str, Path] | None = None
    infobits: int = 0


def _load(path: Path) -> np.ndarray:
    return fits.getdata(path).astype(np.float32)


def _frames(home: Home, engine: Engine, filt: Filter, ccdid: int, qid: int, mjd: float,
            shape: tuple[int, int]) -> CalibrationFrames:
    bias = nearest_calibration(engine, "bias", BIAS_CODE, ccdid, qid, mjd)
    flat = nearest_calibration(engine, "hifreqflat", filt.code, ccdid, qid, mjd)
    if bias is None:
        raise LookupError(f"no valid master bias for c{ccdid:02d} q{qid} at MJD {mjd:.4f}; "
                          "run 'zsds calib build' for a night with bias frames")
    if flat is None:
        raise LookupError(f"no valid {filt.code} high-nu flat for c{ccdid:02d} q{qid} at MJD "
                          f"{mjd:.4f}; run 'zsds calib build' for a night with dome flats")
    bpath = home.path(bias.relpath)
    fpath = home.path(flat.relpath)
    b = _load(bpath)
    if b.shape != shape:
        raise ValueError(f"{bpath.name}: shape {b.shape} differs from the image {shape}")
    lownu_path = home.path(static_cal_product("lownuflat", filt.code, ccdid, qid,
                                              "lownuflat.fits"))
    return CalibrationFrames(
        bias=b,
        bias_mask=fits.getdata(bpath.with_name(bpath.name.replace("_bias.fits",
                                                                  "_biascmask.fits"))) != 0,
        flat=_load(fpath),
        flat_mask=fits.getdata(fpath.with_name(fpath.name.replace("_hifreqflat.fits",
                                                                  "_hifreqflatmask.fits"))),
        lownu=_load(lownu_path) if lownu_path.exists() else None,
    )


def write_products(home: Home, qid: QuadrantId, res: InstCalResult) -> dict[str, Path]:
    """Write sciimg, mskimg, psfcat, sexcat, PSF and log of a calibrated quadrant."""
    img = res.image
    out = {}
    out["sciimg"] = write_image(home.path(qid.product("sciimg.fits")), img.data, img.header)
    mh = fits.Header()
    for key in ("EXPID", "FIELDID", "CCD_ID", "QID", "RCID", "FILTER", "OBSMJD"):
        if key in img.header:
            mh[key] = (img.header[key], img.header.comments[key])
    mh.update(img.wcs.to_header(relax=True))
    for key in img.header:
        if key.startswith("MBIT_"):
            mh[key] = (img.header[key], img.header.comments[key])
    out["mskimg"] = write_image(home.path(qid.product("mskimg.fits")), img.mask, mh)
    table = psfcat_table(res.psfcat)
    ch = fits.Header()
    for key in ("MAGZP", "MAGZPUNC", "CLRCOEFF", "SEEING", "MAGLIM", "INFOBITS", "EXPID"):
        if key in img.header:
            ch[key] = (img.header[key], img.header.comments[key])
    out["psfcat"] = write_table(home.path(qid.product("psfcat.fits")), table, ch, "PSFCAT")
    sex = res.sexcat.copy()
    if len(sex):
        sex.insert(0, "number", np.arange(1, len(sex) + 1))
        sex["x"] = sex["x"] + 1.0
        sex["y"] = sex["y"] + 1.0
    out["sexcat"] = write_table(home.path(qid.product("sexcat.fits")),
                                Table.from_pandas(sex) if len(sex) else Table(), ch, "SEXCAT")
    if img.psf is not None:
        psf_path = home.path(qid.product("sciimgdao.psf"))
        out["psf"] = write_hdul(fits.HDUList([fits.PrimaryHDU(), img.psf.to_hdu()]), psf_path)
        cen = img.psf.stamp(img.shape[1] / 2, img.shape[0] / 2, 25).astype(np.float32)
        out["psfcent"] = write_image(home.path(qid.product("sciimgdaopsfcent.fits")), cen)
    log = home.path(qid.product("sciimlog.txt"))
    lines = [f"zsds instrumental calibration of pid {qid.pid} on {platform.node()}"]
    lines += [f"step {k:12s} {v:8.3f} s" for k, v in res.timings.items()]
    lines += [f"astrometry: {res.astrometry.message}", f"photcal: {res.photcal.message}"]
    lines += [f"qa {k} = {v}" for k, v in res.qa.items()]
    lines.append(f"INFOBITS = {res.infobits}")
    out["log"] = write_text(log, "\n".join(lines) + "\n")
    return out


def _record(engine: Engine, home: Home, qid: QuadrantId, res: InstCalResult,
            paths: dict[str, Path], only_kinds: bool = False) -> None:
    """Replace the quadrant's ``quadrant_products`` rows (only those of the kinds written when
    ``only_kinds``: an imported quadrant keeps its other imported products) and QA."""
    ph = res.photcal
    with session(engine) as s:
        old = delete(QuadrantProduct).where(QuadrantProduct.pid == qid.pid)
        if only_kinds:
            old = old.where(QuadrantProduct.kind.in_(list(paths)))
        s.execute(old)
        s.execute(delete(QAMetric).where(QAMetric.subject_kind == "quadrant",
                                         QAMetric.subject_id == qid.pid))
        for kind, path in paths.items():
            s.add(QuadrantProduct(
                pid=qid.pid, expid=qid.expid, ccdid=qid.ccdid, qid=qid.qid, rcid=qid.rcid,
                field=qid.field, fid=qid.filt.fid, kind=kind,
                relpath=str(path.relative_to(home.root)), infobits=res.infobits,
                seeing=_f(res.qa.get("seeing")), maglim=_f(res.qa.get("maglim")),
                magzp=_f(ph.magzp), magzpunc=_f(ph.magzpunc), clrcoeff=_f(ph.clrcoeff),
                nsources=len(res.psfcat),
            ))
        for name, value in res.qa.items():
            s.add(QAMetric(subject_kind="quadrant", subject_id=qid.pid, name=name,
                           value=_f(value)))


def _f(v) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def science_files(engine: Engine, night: dt.date, expid: int | None = None,
                  ccd: int | None = None) -> list[tuple[str, int, int, int, str, float]]:
    """Ingested science raw files of a night: (relpath, expid, ccdid, field, ffd, mjd)."""
    with session(engine) as s:
        q = (select(RawFile.relpath, RawFile.expid, RawFile.ccdid, Exposure.field,
                    Exposure.filefracday, Exposure.mjd, Exposure.fid)
             .join(Exposure, Exposure.expid == RawFile.expid)
             .where(Exposure.night == night, Exposure.imgtype == "object"))
        if expid is not None:
            q = q.where(RawFile.expid == expid)
        if ccd is not None:
            q = q.where(RawFile.ccdid == ccd)
        return [tuple(r) for r in s.execute(q.order_by(Exposure.mjd, RawFile.ccdid)).all()]


def _calibrate_one(home: Home, engine: Engine, raw, q: int, qid: QuadrantId, mjd: float,
                   gaia: RefCatalog, ps1: RefCatalog, config: InstCalConfig,
                   split: SplitConfig | None = None) -> tuple[InstCalResult, dict[str, Path]]:
    """Split (with ``split``), calibrate, write and record one quadrant of a raw CCD file."""

    image = split_quadrant(raw, q, split)
    image.id = qid
    frames = _frames(home, engine, qid.filt, qid.ccdid, q, mjd, image.shape)
    ra0, dec0, radius = image_footprint(image.header, image.shape)
    radius = radius * 1.02 + 0.02  # the pointing's uncertainty before astrometry
    res = calibrate_quadrant(
        image, frames, gaia.cone(ra0, dec0, radius, epoch_mjd=mjd),
        ps1.cone(ra0, dec0, radius), config)
    # QA of the split step (overscan level/noise, saturation) joins the record.
    split_qa = quadrant_qa(image, raw.overscans[q])
    res.qa.update({f"split_{k}": v for k, v in split_qa.items()})
    paths = write_products(home, qid, res)
    _record(engine, home, qid, res, paths)
    return res, paths


def imported_science(engine: Engine, night: dt.date, expid: int | None = None,
                     ccd: int | None = None, quad: int | None = None
                     ) -> list[tuple[QuadrantProduct, str]]:
    """Science quadrants of a night imported as IPAC ``sciimg`` (``zsds import``): the
    ``sciimg`` rows whose CCD has no raw file in the home, with their exposure's filefracday."""
    with session(engine) as s:
        has_raw = select(RawFile.id).where(RawFile.expid == QuadrantProduct.expid,
                                           RawFile.ccdid == QuadrantProduct.ccdid).exists()
        q = (select(QuadrantProduct, Exposure.filefracday)
             .join(Exposure, Exposure.expid == QuadrantProduct.expid)
             .where(Exposure.night == night, QuadrantProduct.kind == "sciimg", ~has_raw))
        for col, val in ((QuadrantProduct.expid, expid), (QuadrantProduct.ccdid, ccd),
                         (QuadrantProduct.qid, quad)):
            if val is not None:
                q = q.where(col == val)
        rows = s.execute(q.order_by(Exposure.mjd, QuadrantProduct.pid)).all()
        for row, _ in rows:
            s.expunge(row)
    return [(row, ffd) for row, ffd in rows]


def _recalibrate_imported(home: Home, engine: Engine, row: QuadrantProduct, qid: QuadrantId,
                          ps1: RefCatalog, config: InstCalConfig
                          ) -> tuple[InstCalResult, dict[str, Path]]:
    """zsds's masks, PSF and catalogs of an imported IPAC sciimg (with its mskimg if imported),
    IPAC's photometric calibration kept when no PS1 catalogue answers; products rewritten in
    place (:func:`zsds.instcal.reprocess.recalibrate_quadrant`)."""
    from zsds.instcal.reprocess import recalibrate_quadrant

    path = home.path(row.relpath)
    with fits.open(path, memmap=False) as h:
        data, hdr = np.asarray(h[0].data, np.float32), h[0].header.copy()
    mpath = path.with_name(path.name.replace("_sciimg.fits", "_mskimg.fits"))
    mask = fits.getdata(mpath) if mpath.exists() else None
    image = QuadrantImage(data, None, mask, header_wcs(hdr), None, hdr, qid)
    ra0, dec0, radius = image_footprint(hdr, image.shape)
    radius = radius * 1.02 + 0.02
    try:
        rows, note = ps1.cone(ra0, dec0, radius), ""
    except RefCatalogError as exc:  # no catalogue: IPAC's calibration is kept
        rows, note = None, f"no PS1 calibrators ({exc})"
    res = recalibrate_quadrant(image, rows, config, note or "no PS1 calibrators")
    if res.infobits & InfoBits.ZP_KEPT:
        log.warning("%s: %s", path.name, res.photcal.message)
    paths = write_products(home, qid, res)
    with paths["log"].open("a") as fh:
        fh.write(f"input: imported IPAC sciimg{' and mskimg' if mask is not None else ''}; "
                 "astrometry and pixels are IPAC's\n")
    _record(engine, home, qid, res, paths, only_kinds=True)
    return res, paths


def calibrate_night(
    home: Home,
    engine: Engine,
    night: str | dt.date,
    expid: int | None = None,
    ccd: int | None = None,
    quad: int | None = None,
    config: PipelineConfig | InstCalConfig | None = None,
    progress: ProgressFn | None = None,
    keep_results: bool = False,
) -> list[QuadrantOutcome]:
    """Calibrate every (or the selected) science quadrant of a night.

    ``config`` is the pipeline configuration (its ``instcal`` and ``split`` settings are
    used), or the instrumental calibration's settings alone (every other stage at its
    defaults), or ``None`` (the defaults). It is recorded in ``configs`` and its hash in every
    product's header (``CFGHASH``).

    Quadrants come from the night's raw files, and from IPAC ``sciimg`` imported without their
    raw file (:func:`imported_science`), which are re-processed
    (:func:`_recalibrate_imported`). The pixels of each calibrated quadrant are written and
    then released; ``keep_results`` keeps every :class:`InstCalResult` in the outcomes (tests;
    ~1 GB per full quadrant).
    """
    pipeline = PipelineConfig.of(config)
    config = pipeline.instcal
    cfg_hash = record_config(engine, pipeline)
    date = parse_night(night)
    files = science_files(engine, date, expid, ccd)
    quads = [quad] if quad else [1, 2, 3, 4]
    imported = imported_science(engine, date, expid, ccd, quad)
    total = len(files) * len(quads) + len(imported)
    outcomes: list[QuadrantOutcome] = []
    gaia = open_refcat(home.refcat, "gaia")
    ps1 = open_refcat(home.refcat, "ps1")
    done = 0
    for relpath, exp_id, ccdid, field, ffd, mjd, fid in files:
        try:  # read once for its four quadrants; an unreadable file fails each of them
            raw, raw_error = read_raw_ccd(home.path(relpath)), None
        except Exception as exc:
            raw, raw_error = None, exc
        filt = Filter(fid)
        for q in quads:
            qid = QuadrantId(exp_id, ffd, field, filt, ccdid, q)
            key = str(qid.pid)
            try:
                with (job(engine, "calibrate", key, inputs={"raw": relpath, "qid": q}),
                      config_provenance(cfg_hash)):
                    if raw_error is not None:
                        raise raw_error
                    res, paths = _calibrate_one(home, engine, raw, q, qid, mjd, gaia, ps1,
                                                config, pipeline.split)
                outcomes.append(QuadrantOutcome(qid.pid, True, "ok",
                                                res if keep_results else None, paths,
                                                int(res.infobits)))
                del res
            except Exception as exc:  # recorded by job(); one quadrant never stops the others
                msg = f"{Path(relpath).name} q{q}: {type(exc).__name__}: {exc}"
                outcomes.append(QuadrantOutcome(qid.pid, False, msg))
            done += 1
            if progress:
                progress(f"{Path(relpath).name} q{q}", done, total)
    for row, ffd in imported:
        qid = QuadrantId(row.expid, ffd, row.field, Filter(row.fid), row.ccdid, row.qid)
        name = Path(row.relpath).name
        try:
            with (job(engine, "calibrate", str(qid.pid),
                      inputs={"sciimg": row.relpath, "imported": True}),
                  config_provenance(cfg_hash)):
                res, paths = _recalibrate_imported(home, engine, row, qid, ps1, config)
            outcomes.append(QuadrantOutcome(qid.pid, True, f"ok: {res.photcal.message}",
                                            res if keep_results else None, paths,
                                            int(res.infobits)))
            del res
        except Exception as exc:  # recorded by job(); one quadrant never stops the others
            outcomes.append(QuadrantOutcome(qid.pid, False, f"{name}: {type(exc).__name__}: "
                                                            f"{exc}"))
        done += 1
        if progress:
            progress(name, done, total)
    return outcomes
