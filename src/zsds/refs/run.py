"""Reference-image building at the edge: calibrated epochs in, versioned reference products out.

For every (field, CCD, quadrant, filter) with calibrated ``sciimg`` rows in ``quadrant_products``:

1. gather candidates (database rows + the QA keywords of each ``sciimg`` header) and
   :func:`~zsds.refs.select.select_epochs`; too few good epochs gives an ``ok=False`` outcome;
2. if the latest reference of that quadrant was built from exactly the same input ``pid``\\ s and
   its files exist, nothing is done (idempotent); otherwise a new *version* is built;
3. read the selected ``sciimg``/``mskimg`` and :func:`~zsds.refs.coadd.coadd` them onto the
   fixed :func:`~zsds.refs.coadd.reference_grid`;
4. :func:`reference_catalogs` (pure): background, source extraction (``sexcat``), Moffat PSF,
   PSF-fit photometry (``psfcat``), photometric calibration against the PS1-like catalog
   (MAGZP/CLRCOEFF, verifying the co-add's zero point of 27.0), SEEING and MAGLIM;
5. write the products under a version folder (``.../q<Q>/v<NNN>/ztf_..._refimg.fits``; an older
   version is never overwritten) and record a ``references`` row.

``rfid = field * 1_000_000 + fid * 100_000 + version * 100 + rcid``.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from sqlalchemy import Engine, select

from zsds.config import PipelineConfig, record_config
from zsds.core.home import Home
from zsds.core.image import QuadrantImage
from zsds.core.instrument import PIXEL_SCALE, Filter, rcid_of
from zsds.core.masks import BAD_PIXEL_BITS, MASK_DTYPE, MaskBit, mask_header_cards
from zsds.core.naming import ref_product
from zsds.core.photometry import flux_to_mag
from zsds.core.psf import MoffatFieldPSF
from zsds.db.engine import session
from zsds.db.schema import QuadrantProduct, Reference
from zsds.instcal.detect import estimate_background, extract_sources
from zsds.instcal.photcal import PhotCalResult, photometric_calibration
from zsds.instcal.stage import fit_psf_and_photometry
from zsds.io.catalogs import psfcat_table
from zsds.io.fitsio import config_provenance, write_hdul, write_image, write_table
from zsds.refs.coadd import CoaddResult, coadd, reference_grid, zp_scale
from zsds.refs.config import RefBuildConfig
from zsds.refs.select import candidates_from_headers, select_epochs
from zsds.sky.refcat import open_refcat

ProgressFn = Callable[[str, int, int], None]

#: Product suffixes of one reference version.
REF_SUFFIXES = ("refimg.fits", "refunc.fits", "refcov.fits", "refmskimg.fits", "refpsf.fits",
                "refpsfcat.fits", "refsexcat.fits", "refimlog.txt")


@dataclass
class RefOutcome:
    """What happened to one field/CCD/quadrant/filter."""

    field: int
    ccdid: int
    qid: int
    fid: int
    ok: bool
    message: str
    rfid: int | None = None
    version: int | None = None
    products: dict[str, Path] = field(default_factory=dict)


@dataclass
class RefCatalogs:
    """Output of :func:`reference_catalogs`."""

    psf: MoffatFieldPSF | None
    psfcat: pd.DataFrame
    sexcat: pd.DataFrame
    photcal: PhotCalResult
    mask: np.ndarray
    qa: dict[str, float]


def make_rfid(field: int, fid: int, version: int, ccdid: int, qid: int) -> int:
    """Reference id ``field * 1_000_000 + fid * 100_000 + version * 100 + rcid``."""
    if not 1 <= version <= 999:
        raise ValueError(f"reference version must be 1..999, got {version}")
    return field * 1_000_000 + fid * 100_000 + version * 100 + rcid_of(ccdid, qid)


def ref_version_product(field: int, filt: Filter | str, ccdid: int, qid: int, version: int,
                        suffix: str) -> PurePosixPath:
    """Path of a product of one reference version: ``ref_product`` with a ``v<NNN>`` folder."""
    p = ref_product(field, filt, ccdid, qid, suffix)
    return p.parent / f"v{version:03d}" / p.name


def reference_catalogs(
    res: CoaddResult,
    saturate: float,
    ps1: pd.DataFrame,
    filt: Filter,
    config: RefBuildConfig | None = None,
) -> RefCatalogs:
    """Background, extraction, PSF, PSF-fit photometry and photometric calibration of a co-add.

    Parameters
    ----------
    res : CoaddResult
        The co-add (sky-subtracted, DN at ``res.zp``).
    saturate : float
        Lowest saturation level of the inputs scaled to ``res.zp`` (DN above sky); pixels above
        half of it that lost inputs are flagged SATURATED.
    ps1 : DataFrame
        PS1 DR2 rows (published column names) covering the grid.
    filt : Filter
    config : RefBuildConfig, optional

    Returns
    -------
    RefCatalogs
        ``psfcat`` and ``sexcat`` with ``ra``/``dec`` from the reference WCS and calibrated
        magnitudes (the fitted MAGZP if the fit succeeded, else ``res.zp``); ``qa`` holds
        ``seeing`` (arcsec), ``fwhm_px``, ``n_eff``, ``skyrms`` (per-pixel sigma used for the
        limit), ``maglim``, ``magzp`` and ``zp_fit_offset`` (fit minus ``res.zp``).
    """
    cfg = config or RefBuildConfig()
    ny, nx = res.image.shape
    mask = res.mask.copy()
    lost = (res.coverage < res.coverage.max()) & (res.image > 0.5 * saturate)
    mask[lost | (res.image > saturate)] |= MASK_DTYPE(int(MaskBit.SATURATED))
    bad = (mask & BAD_PIXEL_BITS) != 0
    variance = np.where(bad, np.float32(1e30), res.variance).astype(np.float32)
    bkg = estimate_background(res.image, bad, cfg.detect)
    sub = np.where(bad, 0.0, res.image - bkg.level).astype(np.float32)
    sexcat = extract_sources(sub, bkg, mask, cfg.detect)
    psf, psfcat = fit_psf_and_photometry(sub, variance, bad, mask, sexcat, 0.5 * saturate, cfg)
    phot = PhotCalResult(False, "no PSF-fit sources")
    if len(psfcat):
        ra, dec = res.wcs.all_pix2world(psfcat["x"].to_numpy(), psfcat["y"].to_numpy(), 0)
        psfcat["ra"], psfcat["dec"] = ra, dec
        minst, einst = flux_to_mag(psfcat["flux"].to_numpy(), psfcat["fluxerr"].to_numpy(), 0.0)
        phot = photometric_calibration(minst, einst, ra, dec, ps1, filt, cfg.photcal)
    zp = phot.magzp if phot.ok else res.zp
    if len(psfcat):
        psfcat["mag"], psfcat["sigmag"] = flux_to_mag(psfcat["flux"].to_numpy(),
                                               psfcat["fluxerr"].to_numpy(), zp)
        psfcat["snr"] = psfcat["flux"] / psfcat["fluxerr"]
    if len(sexcat):
        sra, sdec = res.wcs.all_pix2world(sexcat["x"].to_numpy(), sexcat["y"].to_numpy(), 0)
        sexcat["ra"], sexcat["dec"] = sra, sdec
        sexcat["mag_auto"], sexcat["magerr_auto"] = flux_to_mag(
            sexcat["flux_auto"].to_numpy(), sexcat["fluxerr_auto"].to_numpy(), zp)
    fwhm_px, n_eff = np.nan, np.nan
    if psf is not None:
        fwhm_px = float(psf.fwhm_at(nx / 2, ny / 2))
        st = psf.stamp(nx / 2, ny / 2, 31)
        n_eff = 1.0 / float(np.sum(st**2))
    # Resampling correlates the noise of neighbouring pixels, so the measured pixel rms
    # understates the noise of a PSF-sized sum; the propagated variance map does not.
    sky = ~bad & (res.coverage > 0)
    sigma_pix = max(bkg.global_rms, float(np.sqrt(np.median(res.variance[sky])))) if sky.any() \
        else bkg.global_rms
    maglim = zp - 2.5 * np.log10(5.0 * sigma_pix * np.sqrt(n_eff))
    qa = {
        "seeing": fwhm_px * PIXEL_SCALE, "fwhm_px": fwhm_px, "n_eff": n_eff,
        "skyrms": sigma_pix, "pixrms": bkg.global_rms, "maglim": float(maglim),
        "magzp": float(zp), "zp_fit_offset": float(phot.magzp - res.zp) if phot.ok else np.nan,
        "nsexcat": len(sexcat), "npsfcat": len(psfcat),
        "rejected_fraction": res.rejected_fraction,
    }
    return RefCatalogs(psf, psfcat, sexcat, phot, mask, qa)


# ---------------------------------------------------------------------------- I/O edges


def _groups(engine: Engine, field_: int | None, ccd: int | None, quad: int | None,
            fid: int | None) -> dict[tuple[int, int, int, int], list[tuple[int, str]]]:
    """(field, ccdid, qid, fid) -> [(pid, sciimg relpath)] of calibrated sciimg rows."""
    q = select(QuadrantProduct.field, QuadrantProduct.ccdid, QuadrantProduct.qid,
               QuadrantProduct.fid, QuadrantProduct.pid, QuadrantProduct.relpath).where(
        QuadrantProduct.kind == "sciimg")
    for col, val in ((QuadrantProduct.field, field_), (QuadrantProduct.ccdid, ccd),
                     (QuadrantProduct.qid, quad), (QuadrantProduct.fid, fid)):
        if val is not None:
            q = q.where(col == val)
    out: dict[tuple[int, int, int, int], list[tuple[int, str]]] = {}
    with session(engine) as s:
        for f, c, qq, fi, pid, rel in s.execute(q.order_by(QuadrantProduct.pid)).all():
            out.setdefault((f, c, qq, fi), []).append((int(pid), rel))
    return out


def _candidates(home: Home, rows: list[tuple[int, str]], ignore_infobits: int) -> pd.DataFrame:
    headers = [fits.getheader(home.path(rel)) for _, rel in rows]
    cand = candidates_from_headers(headers)
    ib = cand["infobits"].to_numpy(float)
    ok = np.isfinite(ib)
    cand["infobits_raw"] = cand["infobits"]
    cand.loc[ok, "infobits"] = (ib[ok].astype(np.int64) & ~np.int64(ignore_infobits))
    cand["pid"] = [pid for pid, _ in rows]
    cand["relpath"] = [rel for _, rel in rows]
    cand["obsjd"] = [float(h.get("OBSJD", np.nan)) for h in headers]
    return cand


def _read_input(path: Path) -> QuadrantImage:
    with fits.open(path) as hdul:
        data = hdul[0].data.astype(np.float32)
        hdr = hdul[0].header.copy()
    mpath = path.with_name(path.name.replace("_sciimg.fits", "_mskimg.fits"))
    mask = fits.getdata(mpath) if mpath.exists() else None
    return QuadrantImage(data, None, mask, WCS(hdr), None, hdr)


def _latest(engine: Engine, key: tuple[int, int, int, int]) -> Reference | None:
    f, c, q, fi = key
    with session(engine) as s:
        return s.execute(select(Reference).where(
            Reference.field == f, Reference.ccdid == c, Reference.qid == q, Reference.fid == fi,
        ).order_by(Reference.version.desc()).limit(1)).scalar_one_or_none()


def write_reference(home: Home, key: tuple[int, int, int, int], version: int, rfid: int,
                    res: CoaddResult, cats: RefCatalogs, header: fits.Header,
                    log: list[str]) -> dict[str, Path]:
    """Write every product of one reference version (atomically); returns suffix -> path."""
    f, c, q, fi = key
    filt = Filter(fi)

    def path(suffix: str) -> Path:
        return home.path(ref_version_product(f, filt, c, q, version, suffix))

    wcs_hdr = res.wcs.to_header(relax=True)
    base = fits.Header()
    for k in ("FIELDID", "CCD_ID", "QID", "RCID", "FILTERID", "FILTER", "RFID", "NFRAMES"):
        if k in header:
            base[k] = (header[k], header.comments[k])
    base.update(wcs_hdr)
    out: dict[str, Path] = {}
    out["refimg"] = write_image(path("refimg.fits"), res.image.astype(np.float32), header)
    uh = base.copy()
    uh["BUNIT"] = ("DN", "1-sigma uncertainty at MAGZP")
    out["refunc"] = write_image(path("refunc.fits"), res.uncertainty.astype(np.float32), uh)
    ch = base.copy()
    ch["BUNIT"] = ("", "number of input images per pixel")
    out["refcov"] = write_image(path("refcov.fits"), res.coverage.astype(np.int16), ch)
    mh = base.copy()
    for name, value, comment in mask_header_cards():
        mh[name] = (value, comment)
    out["refmskimg"] = write_image(path("refmskimg.fits"), cats.mask.astype(MASK_DTYPE), mh)
    if cats.psf is not None:
        out["refpsf"] = write_hdul(fits.HDUList([fits.PrimaryHDU(header=base.copy()),
                                                 cats.psf.to_hdu()]), path("refpsf.fits"))
    th = fits.Header()
    for k in ("RFID", "MAGZP", "MAGZPUNC", "CLRCOEFF", "SEEING", "MAGLIM", "NFRAMES"):
        if k in header:
            th[k] = (header[k], header.comments[k])
    out["refpsfcat"] = write_table(path("refpsfcat.fits"), psfcat_table(cats.psfcat), th,
                                   "PSFCAT")
    sex = cats.sexcat.copy()
    if len(sex):
        sex.insert(0, "number", np.arange(1, len(sex) + 1))
        sex["x"] = sex["x"] + 1.0
        sex["y"] = sex["y"] + 1.0
    out["refsexcat"] = write_table(path("refsexcat.fits"),
                                   Table.from_pandas(sex) if len(sex) else Table(), th, "SEXCAT")
    lp = path("refimlog.txt")
    tmp = lp.with_name(f".{lp.name}.tmp")
    tmp.write_text("\n".join(log) + "\n")
    tmp.replace(lp)
    out["refimlog"] = lp
    return out


def _build_one(home: Home, engine: Engine, key: tuple[int, int, int, int],
               rows: list[tuple[int, str]], cfg: RefBuildConfig) -> RefOutcome:
    f, c, q, fi = key
    t0 = time.perf_counter()
    cand = _candidates(home, rows, cfg.ignore_infobits)
    try:
        sel = select_epochs(cand, cfg.select)
    except ValueError as exc:
        return RefOutcome(f, c, q, fi, False, str(exc))
    pids = sorted(int(p) for p in sel["pid"])
    latest = _latest(engine, key)
    if latest is not None and sorted(latest.input_pids) == pids \
            and home.path(latest.relpath).exists():
        paths = {s.split(".")[0]: home.path(ref_version_product(f, Filter(fi), c, q,
                                                                latest.version, s))
                 for s in REF_SUFFIXES}
        return RefOutcome(f, c, q, fi, True, f"up to date (version {latest.version}, same "
                          f"{len(pids)} inputs)", latest.rfid, latest.version,
                          {k: p for k, p in paths.items() if p.exists()})
    version = 1 if latest is None else latest.version + 1
    rfid = make_rfid(f, fi, version, c, q)
    filt = Filter(fi)
    images = [_read_input(home.path(rel)) for rel in sel["relpath"]]
    shape = cfg.shape or images[0].shape
    ref_wcs = reference_grid(f, c, q, shape[1], shape[0])
    t1 = time.perf_counter()
    res = coadd(images, ref_wcs, shape, cfg.coadd)
    t2 = time.perf_counter()
    saturate = min(
        (float(im.header.get("SATURATE", np.inf)) - float(im.header.get("SKYLEVEL", 0.0)))
        * zp_scale(float(im.header["MAGZP"]), res.zp) for im in images)
    ny, nx = shape
    ra0, dec0 = ref_wcs.all_pix2world([nx / 2 - 0.5], [ny / 2 - 0.5], 0)
    radius = np.hypot(nx, ny) / 2 * PIXEL_SCALE / 3600.0 * 1.02 + 0.02
    ps1 = open_refcat(home.refcat, "ps1").cone(float(ra0[0]), float(dec0[0]), radius)
    cats = reference_catalogs(res, saturate, ps1, filt, cfg)
    t3 = time.perf_counter()
    jd = sel["obsjd"].to_numpy(float)
    qa = cats.qa
    hdr = res.header()
    h0 = images[0].header
    for k in ("FIELDID", "CCD_ID", "QID", "RCID", "FILTERID", "FILTER"):
        if k in h0:
            hdr[k] = (h0[k], h0.comments[k])
    hdr["RFID"] = (rfid, "reference image id")
    hdr["REFVERS"] = (version, "version of this reference")
    for card in cats.photcal.header_cards():
        hdr[card[0]] = card[1:]
    hdr["MAGZP"] = (round(qa["magzp"], 4), f"PS1-fit zero point (scaled to {res.zp})")
    hdr["NFRAMES"] = (res.n_inputs, "number of input images")
    hdr["JDSTART"] = (float(np.nanmin(jd)), "OBSJD of the earliest input")
    hdr["JDEND"] = (float(np.nanmax(jd)), "OBSJD of the latest input")

    def fin(v: float, nd: int) -> float:
        return round(float(v), nd) if np.isfinite(v) else -999.0

    hdr["SEEING"] = (fin(qa["seeing"], 3), "co-add PSF FWHM at the centre (arcsec)")
    hdr["MAGLIM"] = (fin(qa["maglim"], 3), "5-sigma point-source limiting magnitude")
    hdr["SATURATE"] = (round(saturate, 1), "lowest input saturation (DN above sky)")
    hdr["INFOBITS"] = (0, "quality bits (0 = good)")
    in_maglim = sel["maglim"].to_numpy(float)
    hdr["INMAGLIM"] = (round(float(np.median(in_maglim)), 3), "median MAGLIM of the inputs")
    log = [f"zsds reference build rfid {rfid} version {version} on {platform.node()}",
           f"inputs ({len(pids)}): {' '.join(str(p) for p in pids)}",
           f"rejected outlier fraction: {res.rejected_fraction:.5f}",
           f"photcal: {cats.photcal.message}",
           f"step read {t1 - t0:8.3f} s", f"step coadd {t2 - t1:8.3f} s",
           f"step catalogs {t3 - t2:8.3f} s"]
    log += [f"qa {k} = {v}" for k, v in qa.items()]
    log.append(f"median input MAGLIM = {np.median(in_maglim):.3f}, co-add MAGLIM = "
               f"{qa['maglim']:.3f}, gain = {qa['maglim'] - np.median(in_maglim):.3f} mag")
    paths = write_reference(home, key, version, rfid, res, cats, hdr, log)
    with session(engine) as s:
        s.add(Reference(
            rfid=rfid, field=f, ccdid=c, qid=q, fid=fi, version=version, nframes=res.n_inputs,
            jdstart=float(np.nanmin(jd)), jdend=float(np.nanmax(jd)), input_pids=pids,
            relpath=str(paths["refimg"].relative_to(home.root)),
            maglim=float(qa["maglim"]) if np.isfinite(qa["maglim"]) else None,
            seeing=float(qa["seeing"]) if np.isfinite(qa["seeing"]) else None,
        ))
    msg = (f"built version {version} from {res.n_inputs} inputs: MAGLIM {qa['maglim']:.2f} "
           f"(median input {np.median(in_maglim):.2f}), SEEING {qa['seeing']:.2f}\", "
           f"MAGZP {qa['magzp']:.4f}")
    return RefOutcome(f, c, q, fi, True, msg, rfid, version, paths)


def build_references(
    home: Home,
    engine: Engine,
    field: int | None = None,
    ccd: int | None = None,
    quad: int | None = None,
    filt: Filter | str | int | None = None,
    config: PipelineConfig | RefBuildConfig | None = None,
    progress: ProgressFn | None = None,
    only_missing: bool = False,
) -> list[RefOutcome]:
    """Build (or confirm up to date) the references of every selected quadrant and filter.

    Parameters
    ----------
    home : Home
    engine : Engine
        Database with calibrated ``sciimg`` rows (schema version >= 2).
    field, ccd, quad : int, optional
        Restrict to one field / CCD / quadrant.
    filt : Filter or str or int, optional
        Restrict to one filter (``"r"``, ``"zr"``, fid...).
    config : PipelineConfig or RefBuildConfig, optional
        The pipeline configuration (its ``refs`` settings are used), or these settings alone
        (every other stage at its defaults); default: the defaults. It is recorded in
        ``configs`` and its hash in every product's header (``CFGHASH``).
    progress : callable(label, done, total), optional
    only_missing : bool
        Build only where no reference exists yet (the executive's nightly policy: a
        reference is a long-lived product that light curves and subtractions are tied to;
        a new version is made on request, ``zsds refs build``).

    Returns
    -------
    list of RefOutcome
        One per (field, ccdid, qid, fid) with calibrated images; ``ok=False`` with the selection
        message when too few good epochs exist, or with the error when the build failed (one
        failure never stops the others).
    """
    pipeline = PipelineConfig.of(config)
    cfg = pipeline.refs
    cfg_hash = record_config(engine, pipeline)
    fid = None if filt is None else Filter.parse(filt).fid
    groups = _groups(engine, field, ccd, quad, fid)
    outcomes: list[RefOutcome] = []
    for i, (key, rows) in enumerate(sorted(groups.items())):
        if only_missing and (latest := _latest(engine, key)) is not None:
            outcomes.append(RefOutcome(*key, True, f"exists (version {latest.version})",
                                       latest.rfid, latest.version, {}))
            continue
        try:
            with config_provenance(cfg_hash):
                outcomes.append(_build_one(home, engine, key, rows, cfg))
        except Exception as exc:  # one quadrant's failure never stops the others
            outcomes.append(RefOutcome(*key, False, f"{type(exc).__name__}: {exc}"))
        if progress:
            f, c, q, fi = key
            progress(f"field {f} c{c:02d} q{q} {Filter(fi).code}", i + 1, len(groups))
    return outcomes


__all__ = [
    "REF_SUFFIXES",
    "RefBuildConfig",
    "RefCatalogs",
    "RefOutcome",
    "build_references",
    "make_rfid",
    "ref_version_product",
    "reference_catalogs",
    "write_reference",
]
