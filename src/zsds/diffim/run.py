"""Pipeline 6 runner: subtract every calibrated quadrant of a night that has a reference.

For each science quadrant (``sciimg`` in ``quadrant_products``) with a reference of its field,
CCD, quadrant and filter: read the science products and the latest reference version once,
:func:`~zsds.diffim.stage.subtract`, :func:`~zsds.diffim.candidates.measure_candidates`, add
catalogue context and the real-bogus score, apply the packet cuts, and write

* ``..._scimrefdiffimg.fits`` (D in science DN), ``..._diffimgpsf.fits`` (P_D),
  ``..._scimrefscorrimg.fits`` (Scorr), ``..._diffcands.fits`` (every candidate) and
  ``..._candcutouts.fits`` (63x63 science/template/difference cutouts of every candidate);
* rows in ``diff_images`` and ``candidates`` and the objects they belong to.

Re-running a quadrant replaces its products and rows (candidate ids are deterministic), so
nothing is duplicated; object names, once given, are kept.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.table import Table
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from zsds.config import PipelineConfig, record_config
from zsds.core.home import Home
from zsds.core.image import QuadrantImage
from zsds.core.naming import mjd_to_jd, nid_of, parse_night
from zsds.core.photometry import flux_to_mag
from zsds.core.psf import psf_from_hdu
from zsds.core.wcs import header_wcs, image_footprint
from zsds.db.engine import session
from zsds.db.jobs import job
from zsds.db.schema import (
    AlertRecord,
    AstroObject,
    Candidate,
    DiffImageRecord,
    Exposure,
    QuadrantProduct,
    Reference,
    StreakRecord,
)
from zsds.diffim.candidates import measure_candidates
from zsds.diffim.config import PacketCuts, SubtractRunConfig
from zsds.diffim.context import gaia_context, nearest_reference, ps1_context
from zsds.diffim.objects import associate_many, refresh_objects
from zsds.diffim.stage import DiffImage, subtract
from zsds.io.fitsio import config_provenance, write_hdul, write_image, write_table
from zsds.sky.refcat import open_refcat
from zsds.streaks.base import StreakConfig

__all__ = ["PacketCuts", "QuadrantDiffOutcome", "SubtractRunConfig", "subtract_night",
           "subtract_quadrant", "subtract_quadrant_job"]

log = logging.getLogger(__name__)
ProgressFn = Callable[[int, int, str], None]
CUTOUT = 63


@dataclass
class QuadrantDiffOutcome:
    """What happened to one quadrant."""

    pid: int
    ok: bool
    message: str
    ncand: int = 0
    npassed: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    candidates: pd.DataFrame | None = None
    #: ``done``, ``skipped`` (nothing to subtract against) or ``failed``.
    state: str = "done"


def _read(path: Path) -> tuple[np.ndarray, fits.Header]:
    with fits.open(path, memmap=False) as h:
        return np.asarray(h[0].data, np.float32), h[0].header.copy()


def _table(path: Path) -> pd.DataFrame:
    with fits.open(path, memmap=False) as h:
        t = Table(h[1].data)
    return t.to_pandas() if len(t) else pd.DataFrame(columns=t.colnames)


def _psf(path: Path, required: bool):
    """The PSF model of a ``*psf`` product; None if there is none and it is not required."""
    if not required and not path.exists():
        return None
    with fits.open(path, memmap=False) as h:
        return psf_from_hdu(h[1])


def _optional(path: Path, required: bool) -> np.ndarray | None:
    return _read(path)[0] if required or path.exists() else None


def _imported(hdr: fits.Header) -> bool:
    """An IPAC file filed by ``zsds import`` (as IRSA served it): zsds's own products carry
    ``ZSDSVER``. Only those may lack zsds's companion products (PSF, mask, catalogue)."""
    return "ZSDSVER" not in hdr


def read_science(home: Home, sciimg: str) -> tuple[QuadrantImage, pd.DataFrame]:
    """Calibrated science quadrant (pixels, mask, WCS, PSF, header) and its psfcat.

    An IPAC ``sciimg`` imported by ``zsds import`` and not re-processed by ``zsds calibrate``
    has no zsds PSF (and may come without its mskimg or psfcat): the PSF is fitted on the spot
    (:func:`zsds.instcal.reprocess.complete_imported`).
    """
    path = home.path(sciimg)
    base = str(path)[: -len("sciimg.fits")]
    data, hdr = _read(path)
    own = not _imported(hdr)
    mask = _optional(Path(base + "mskimg.fits"), own)
    img = QuadrantImage(data, None, mask, header_wcs(hdr),
                        _psf(Path(base + "sciimgdao.psf"), own),
                        hdr)
    cpath = Path(base + "psfcat.fits")
    cat = _table(cpath) if own or cpath.exists() else None
    if img.psf is None or cat is None:
        from zsds.instcal.reprocess import complete_imported

        img, cat = complete_imported(img, cat)
    return img, cat


def read_reference(home: Home, ref: Reference) -> tuple[QuadrantImage, pd.DataFrame]:
    """Reference co-add (pixels, variance from refunc, mask, WCS, PSF, header), refpsfcat.

    An IPAC reference imported by ``zsds import`` has no mask and no zsds PSF: the mask marks
    pixels that are not finite or that its ``refcov`` leaves uncovered, and the PSF is fitted on
    the spot (:func:`zsds.instcal.reprocess.complete_imported`).
    """
    path = home.path(ref.relpath)
    base = str(path)[: -len("refimg.fits")]
    data, hdr = _read(path)
    own = not _imported(hdr)
    unc = _optional(Path(base + "refunc.fits"), own)
    var = None if unc is None else np.where(np.isfinite(unc), unc * unc, np.inf).astype(
        np.float32)
    mask = _optional(Path(base + "refmskimg.fits"), own)
    if mask is None:
        from zsds.instcal.reprocess import coverage_mask

        mask = coverage_mask(data, _optional(Path(base + "refcov.fits"), False))
    img = QuadrantImage(data, var, mask, header_wcs(hdr), _psf(Path(base + "refpsf.fits"), own),
                        hdr)
    cpath = Path(base + "refpsfcat.fits")
    cat = _table(cpath) if own or cpath.exists() else None
    if img.psf is None or cat is None:
        from zsds.instcal.reprocess import complete_imported

        img, cat = complete_imported(img, cat)
    return img, cat


def latest_reference(engine: Engine, field_: int, ccdid: int, qid: int, fid: int
                     ) -> Reference | None:
    with session(engine) as s:
        return s.execute(select(Reference).where(
            Reference.field == field_, Reference.ccdid == ccdid, Reference.qid == qid,
            Reference.fid == fid).order_by(Reference.version.desc())).scalars().first()


def stamp_window(shape: tuple[int, int], x: float, y: float, n: int = CUTOUT
                 ) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: the part of the ``n`` x ``n`` stamp centred on pixel (x, y) that
    lies on an image of ``shape``, in stamp coordinates (``(0, n, 0, n)`` away from the edges;
    an empty window when the centre is off the image)."""
    h = n // 2
    xi, yi = round(x), round(y)
    ny, nx = shape
    ys, ye, xs, xe = max(yi - h, 0), min(yi + h + 1, ny), max(xi - h, 0), min(xi + h + 1, nx)
    if ys >= ye or xs >= xe:
        return 0, 0, 0, 0
    return ys - yi + h, ye - yi + h, xs - xi + h, xe - xi + h


def _stamp(a: np.ndarray, x: float, y: float, n: int = CUTOUT) -> np.ndarray:
    """``n`` x ``n`` stamp centred on (x, y); NaN where it falls off the image."""
    h = n // 2
    xi, yi = round(x), round(y)
    out = np.full((n, n), np.nan, np.float32)
    y0, y1, x0, x1 = stamp_window(a.shape, x, y, n)
    if y0 < y1 and x0 < x1:
        out[y0:y1, x0:x1] = a[y0 + yi - h:y1 + yi - h, x0 + xi - h:x1 + xi - h]
    return out


def cutouts(diff: DiffImage, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(3, n, 63, 63) science, template and difference stamps centred on each event.

    Pixels off the image are NaN here (a fixed-size stack, as the classifiers want); the
    packets crop them away (:func:`stamp_window`, :func:`read_cutouts`), as IPAC's stamps are
    smaller at the image edges. Pixels that the subtraction could not use are NaN in all
    three (:class:`~zsds.diffim.stage.DiffImage`), as in IPAC's stamps.
    """
    out = np.empty((3, len(x), CUTOUT, CUTOUT), np.float32)
    for k, img in enumerate((diff.science, diff.template, diff.diff)):
        for i in range(len(x)):
            out[k, i] = _stamp(img, x[i], y[i])
    return out


def candidate_context(home: Home, cand: pd.DataFrame, refcat: pd.DataFrame,
                      hdr: fits.Header) -> pd.DataFrame:
    """Candidates with their catalogue context: the nearest source of the reference catalogue,
    and the nearest PS1 and Gaia stars of the home's catalogues (null where there are none)."""
    ra0, dec0, radius = image_footprint(hdr, (int(hdr["NAXIS2"]), int(hdr["NAXIS1"])))
    radius += 0.03
    parts = [nearest_reference(cand, refcat)]
    try:
        ps1 = open_refcat(home.refcat, "ps1").cone(ra0, dec0, radius + 0.01)
        gaia = open_refcat(home.refcat, "gaia").cone(ra0, dec0, radius + 0.03,
                                                     epoch_mjd=hdr.get("OBSMJD"))
        parts += [ps1_context(cand, ps1), gaia_context(cand, gaia)]
    except FileNotFoundError as exc:  # no local catalogue: context stays null
        log.warning("catalogue context skipped: %s", exc)
        parts += [ps1_context(cand, pd.DataFrame()), gaia_context(cand, pd.DataFrame())]
    return pd.concat([cand.reset_index(drop=True)] + [p.reset_index(drop=True) for p in parts],
                     axis=1)


RB_NONE = "none"


def score_real_bogus(cand: pd.DataFrame, enabled: bool) -> tuple[np.ndarray, str]:
    """Real-bogus scores of the candidates by the packaged model, and its version (NaN and
    ``none`` when scoring is off)."""
    if not enabled or len(cand) == 0:
        return np.full(len(cand), np.nan), RB_NONE
    from zsds.realbogus import load_default_model

    model = load_default_model()
    feats = rb_features(cand)
    return model.score(feats).astype(float), model.version


def rb_features(cand: pd.DataFrame) -> pd.DataFrame:
    """The real-bogus feature table of measured candidates."""
    f = cand.copy()
    f["scorr"] = np.abs(cand["scorr"])
    f["isdiffpos_pos"] = (cand["isdiffpos"] == "t").astype(float)
    return f


def _hv(h: fits.Header, key: str) -> float | None:
    v = h.get(key)
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) and v != -999.0 else None


#: ``programpi`` of zsds's candidates and upper limits (IPAC: the programme's PI).
PROGRAMPI = "zsds"


def photcal_values(h: fits.Header) -> dict[str, float | None]:
    """Photometric calibration of an image as ZTF's alert fields (``magzpsci``,
    ``magzpsciunc``, ``magzpscirms``, ``clrcoeff``, ``clrcounc``; None where unknown), from a
    science or difference image header."""
    return {"magzpsci": _hv(h, "MAGZP"), "magzpsciunc": _hv(h, "MAGZPUNC"),
            "magzpscirms": _hv(h, "MAGZPRMS"), "clrcoeff": _hv(h, "CLRCOEFF"),
            "clrcounc": _hv(h, "CLRCOUNC")}


def candidate_records(cand: pd.DataFrame, diff: DiffImage, pid: int, ref: Reference,
                      programid: int, diffname: str, rbversion: str) -> list[dict]:
    """ZTF ``candidate`` records (plain Python values; NaN -> None)."""
    h = diff.header
    jd = float(h.get("OBSJD", mjd_to_jd(float(h["OBSMJD"]))))
    jd_mid = jd + 0.5 * float(h.get("EXPTIME", 30.0)) / 86400.0
    common = {
        "jd": jd_mid, "fid": int(h["FILTERID"]), "pid": int(pid), "programid": int(programid),
        "programpi": PROGRAMPI, "pdiffimfilename": diffname,
        "nid": int(nid_of(_night_of(h))), "rcid": int(h["RCID"]), "field": int(h["FIELDID"]),
        "rfid": int(ref.rfid), "jdstartref": float(ref.jdstart), "jdendref": float(ref.jdend),
        "nframesref": int(ref.nframes), "rbversion": rbversion, "drb": None,
        "drbversion": RB_NONE, "tooflag": 0, "ssdistnr": -999.0, "ssmagnr": -999.0,
        "ssnamenr": None, "exptime": _hv(h, "EXPTIME"), **photcal_values(h),
        "nmatches": int(h.get("NMATCHES", 0)),
        "zpclrcov": _hv(h, "ZPCLRCOV"), "zpmed": _hv(h, "ZPMED"), "clrmed": _hv(h, "CLRMED"),
        "clrrms": _hv(h, "CLRRMS"),
    }
    keep = [c for c in cand.columns if c not in ("x", "y", "sign", "npix", "flux", "fluxerr",
                                                  "theta", "difffwhm", "seeing_px")]
    recs = []
    for i, row in enumerate(cand[keep].to_dict("records")):
        r = dict(common)
        for k, v in row.items():
            if isinstance(v, float | np.floating):
                r[k] = float(v) if np.isfinite(v) else None
            elif isinstance(v, np.integer):
                r[k] = int(v)
            else:
                r[k] = v
        r["candid"] = int(pid) * 1_000_000 + i
        r["tblid"] = i
        recs.append(r)
    return recs


def mjd_mid_of(h: fits.Header) -> float:
    """Mid-exposure MJD (UTC) of an image header."""
    return float(h["OBSMJD"]) + 0.5 * float(h.get("EXPTIME", 30.0)) / 86400.0


#: A streak shorter than this many FWHM next to a star this many times brighter (template
#: peak over the trail's central surface brightness) is a subtraction residual of the star.
STAR_RESIDUAL_MAX_FWHM = 5.0
STAR_RESIDUAL_RATIO = 50.0


def star_ratio(streaks: pd.DataFrame, template: np.ndarray, fwhm: float) -> np.ndarray:
    """Brightest template pixel within 1.5 FWHM of each streak's segment over the streak's
    central surface brightness (flux / (L sqrt(2 pi) sigma) per pixel).

    Short "streaks" on bright stars are arcs of the ring or dipole that a PSF mismatch
    leaves in the difference image; the trailed-PSF fit and the features of the streak alone
    cannot tell them from a short trail, the template can.
    """
    ny, nx = template.shape
    sig = fwhm / 2.3548
    out = np.zeros(len(streaks))
    r = 1.5 * fwhm
    for k, t in enumerate(streaks.itertuples()):
        xa, xb = sorted((t.x0, t.x1))
        ya, yb = sorted((t.y0, t.y1))
        i0, i1 = max(int(ya - r), 0), min(int(yb + r) + 2, ny)
        j0, j1 = max(int(xa - r), 0), min(int(xb + r) + 2, nx)
        if i1 <= i0 or j1 <= j0:
            continue
        yy, xx = np.mgrid[i0:i1, j0:j1]
        vx, vy = t.x1 - t.x0, t.y1 - t.y0
        L2 = vx * vx + vy * vy
        u = np.clip(((xx - t.x0) * vx + (yy - t.y0) * vy) / L2 if L2 > 0 else 0.0, 0.0, 1.0)
        near = np.hypot(xx - t.x0 - u * vx, yy - t.y0 - u * vy) <= r
        stamp = template[i0:i1, j0:j1]
        vals = stamp[near & np.isfinite(stamp)]
        sb = float(t.flux) / (max(float(t.length), 1.0) * np.sqrt(2 * np.pi) * sig)
        if vals.size and sb > 0:
            out[k] = float(np.max(vals)) / sb
    return out


def find_diff_streaks(diff: DiffImage, config: StreakConfig | None = None) -> pd.DataFrame:
    """Streaks of a difference image (:func:`zsds.streaks.find.find_streaks`, with ``config``
    or the default settings) with sky coordinates of their ends and midpoint, position angle,
    rate and magnitude.

    Short streaks on bright template stars (:func:`star_ratio` above
    :data:`STAR_RESIDUAL_RATIO`, length under :data:`STAR_RESIDUAL_MAX_FWHM` FWHM) keep their
    row but get ``rb = 0``: they are residuals of the star's subtraction.
    """
    from zsds.streaks.find import find_streaks

    d = diff.diff
    bad = (diff.mask != 0) | ~np.isfinite(d) | ~np.isfinite(diff.diff_sigma)
    sig = np.where(bad, np.float32(1.0), diff.diff_sigma).astype(np.float32)
    h = diff.header
    st = find_streaks(np.where(bad, np.float32(0.0), d).astype(np.float32), sig,
                      float(h["DIFFFWHM"]), bad, config=config or StreakConfig(),
                      psf=diff.central_tile().psf)
    if len(st) == 0:
        return st
    fwhm = float(h["DIFFFWHM"])
    st["star_ratio"] = star_ratio(st, diff.template, fwhm)
    residual = ((st["star_ratio"] > STAR_RESIDUAL_RATIO)
                & (st["length"] < STAR_RESIDUAL_MAX_FWHM * fwhm))
    st.loc[residual, "rb"] = 0.0
    w = header_wcs(h)
    for tag, (xc, yc) in {"0": ("x0", "y0"), "1": ("x1", "y1"), "": ("xmid", "ymid")}.items():
        ra, dec = w.all_pix2world(st[xc].to_numpy(), st[yc].to_numpy(), 0)
        st[f"ra{tag}"], st[f"dec{tag}"] = ra, dec
    from astropy.coordinates import SkyCoord

    c0 = SkyCoord(st["ra0"].to_numpy(), st["dec0"].to_numpy(), unit="deg")
    c1 = SkyCoord(st["ra1"].to_numpy(), st["dec1"].to_numpy(), unit="deg")
    st["length_arcsec"] = c0.separation(c1).arcsec
    st["pa"] = c0.position_angle(c1).deg % 180.0
    st["rate"] = st["length_arcsec"] / 3600.0 / (float(h.get("EXPTIME", 30.0)) / 86400.0)
    zp = float(h.get("MAGZP", np.nan))
    st["mag"], st["sigmamag"] = flux_to_mag(st["flux"].to_numpy(), st["fluxerr"].to_numpy(), zp)
    return st


def streak_cutout(diff: np.ndarray, row: pd.Series | dict, margin: int = 16,
                  lo: int = 63, hi: int = 255) -> np.ndarray:
    """Square difference-image stamp centred on a streak's midpoint, long enough for the
    whole trail (side = length + 2 margin, odd, within [lo, hi]; NaN outside the image)."""
    n = int(np.clip(np.ceil(float(row["length"])) + 2 * margin, lo, hi)) | 1
    return _stamp(diff, float(row["xmid"]), float(row["ymid"]), n)


def write_streaks(home: Home, sciimg: str, h: fits.Header, streaks: pd.DataFrame,
                  diff: np.ndarray | None = None) -> Path:
    """``..._scimrefdiffimg_streaks.fits``: every streak of the image (table ``STREAKS``)
    and, given the difference image, one cutout per streak (``CUT0``, ``CUT1``, ... in
    table order; :func:`streak_cutout`)."""
    base = str(home.path(sciimg))[: -len("sciimg.fits")]
    uh = fits.Header()
    for k in ("EXPID", "FIELDID", "RCID", "FILTERID", "OBSMJD", "EXPTIME", "MAGZP", "DIFFFWHM"):
        if k in h:
            uh[k] = (h[k], h.comments[k])
    uh["NSTREAK"] = (len(streaks), "streaks found")
    text = {c: streaks[c].fillna("").astype(str) for c in streaks.columns
            if streaks[c].dtype == object}
    t = Table.from_pandas(streaks.assign(**text)) if len(streaks) else Table()
    path = Path(base + "scimrefdiffimg_streaks.fits")
    if diff is None or not len(streaks):
        return write_table(path, t, uh, "STREAKS")
    tab = fits.table_to_hdu(t)
    tab.name = "STREAKS"
    cuts = [fits.ImageHDU(streak_cutout(diff, r).astype(np.float32), name=f"CUT{k}")
            for k, r in enumerate(streaks.to_dict("records"))]
    return write_hdul(fits.HDUList([fits.PrimaryHDU(header=uh), tab, *cuts]), path)


def streak_records(streaks: pd.DataFrame, pid: int, sciimg: QuadrantProduct, h: fits.Header,
                   jd: float) -> list[StreakRecord]:
    """``streaks`` rows of one image (``streakid = pid * 1000 + rank``)."""
    out = []
    nid = int(nid_of(_night_of(h)))
    for k, r in enumerate(streaks.to_dict("records")):
        rec = {c: (float(v) if isinstance(v, float | np.floating) and np.isfinite(v) else
                   None if isinstance(v, float | np.floating) else
                   int(v) if isinstance(v, np.integer) else v) for c, v in r.items()}
        ss = r.get("ssnamenr")
        out.append(StreakRecord(
            streakid=pid * 1000 + k, pid=pid, expid=sciimg.expid, nid=nid, jd=jd,
            field=sciimg.field, rcid=sciimg.rcid, fid=sciimg.fid, ra=rec["ra"], dec=rec["dec"],
            ra0=rec["ra0"], dec0=rec["dec0"], ra1=rec["ra1"], dec1=rec["dec1"],
            length=rec["length_arcsec"], pa=rec["pa"], rate=rec["rate"], mag=rec.get("mag"),
            sigmamag=rec.get("sigmamag"), snr=rec["snr"], rb=rec.get("rb"),
            ssnamenr=ss if isinstance(ss, str) and ss else None,
            ssdistnr=rec.get("ssdistnr") if ss else None, record=rec))
    return out


def _night_of(h: fits.Header) -> dt.date:
    from zsds.core.naming import night_of_mjd

    return night_of_mjd(float(h["OBSMJD"]))


def write_diff_products(home: Home, sciimg: str, diff: DiffImage, cand: pd.DataFrame,
                        stamps: np.ndarray) -> dict[str, Path]:
    """Write the difference image, its PSF, Scorr, the candidate table and the cutouts."""
    base = str(home.path(sciimg))[: -len("sciimg.fits")]
    h = diff.header
    out = {}
    out["scimrefdiffimg"] = write_image(Path(base + "scimrefdiffimg.fits"), diff.diff, h)
    uh = fits.Header()
    for k in ("EXPID", "FIELDID", "RCID", "FILTERID", "RFID", "MAGZP"):
        if k in h:
            uh[k] = (h[k], h.comments[k])
    uh["BUNIT"] = ("DN", "1-sigma uncertainty of the difference image")
    out["diffimgunc"] = write_image(Path(base + "scimrefdiffimgunc.fits"), diff.diff_sigma, uh)
    ph = uh.copy()
    ph["BUNIT"] = ("", "unit-sum PSF of the difference image at its centre")
    ph["DIFFFWHM"] = (h["DIFFFWHM"], h.comments["DIFFFWHM"])
    tiles = fits.HDUList([fits.PrimaryHDU(diff.central_tile().psf, ph)])
    tt = Table({k: [getattr(t, k) for t in diff.tiles]
                for k in ("x0", "x1", "y0", "y1", "flux_scale", "fwhm")})
    tiles.append(fits.ImageHDU(np.stack([t.psf for t in diff.tiles]), name="TILEPSF"))
    tiles.append(fits.BinTableHDU(tt, name="TILES"))
    out["diffimgpsf"] = write_hdul(tiles, Path(base + "diffimgpsf.fits"))
    sh = uh.copy()
    sh["BUNIT"] = ("", "ZOGY corrected score (standard deviations)")
    out["scorr"] = write_image(Path(base + "scimrefscorrimg.fits"), diff.scorr, sh)
    # Text columns with missing values (ssnamenr) as fixed-width strings, "" for none.
    text = {c: cand[c].fillna("").astype(str) for c in cand.columns if cand[c].dtype == object}
    t = Table.from_pandas(cand.assign(**text)) if len(cand) else Table()
    out["diffcands"] = write_table(Path(base + "diffcands.fits"), t, uh, "CANDS")
    ch = fits.Header()
    ch["NCAND"] = (len(cand), "candidates (second axis)")
    index = {"candid": cand["candid"].to_numpy() if len(cand) else np.zeros(0, np.int64)}
    win = (np.array([stamp_window(diff.shape, x, y) for x, y in zip(
        cand["x"].to_numpy(float), cand["y"].to_numpy(float), strict=True)], np.int16)
        if len(cand) else np.zeros((0, 4), np.int16))
    for k, name in enumerate(STAMP_WINDOW_COLUMNS):
        index[name] = win[:, k]
    cut = fits.HDUList([fits.PrimaryHDU(header=ch)]
                       + [fits.ImageHDU(stamps[k], name=n)
                          for k, n in enumerate(("SCIENCE", "TEMPLATE", "DIFFERENCE"))]
                       + [fits.BinTableHDU(Table(index), name="CANDID")])
    out["candcutouts"] = write_hdul(cut, Path(base + "candcutouts.fits"))
    return out


#: Columns of the ``CANDID`` table of ``candcutouts.fits`` giving each stamp's on-image window
#: (:func:`stamp_window`); files written before they existed have none.
STAMP_WINDOW_COLUMNS = ("sy0", "sy1", "sx0", "sx1")


def read_cutouts(path: Path) -> dict[int, dict[str, np.ndarray]]:
    """``candid -> {'science', 'template', 'difference'}`` stamps from a candcutouts file,
    cropped to the part on the image (IPAC's smaller stamps at the edges)."""
    with fits.open(path, memmap=False) as h:
        table = h["CANDID"].data
        ids = np.asarray(table["candid"], np.int64)
        windows = (np.stack([np.asarray(table[c], int) for c in STAMP_WINDOW_COLUMNS], axis=1)
                   if all(c in table.names for c in STAMP_WINDOW_COLUMNS) else None)
        planes = {n.lower(): np.asarray(h[n].data) for n in ("SCIENCE", "TEMPLATE",
                                                             "DIFFERENCE")}
    out = {}
    for i, c in enumerate(ids):
        if windows is None:
            out[int(c)] = {k: v[i] for k, v in planes.items()}
        else:
            y0, y1, x0, x1 = windows[i]
            out[int(c)] = {k: v[i, y0:y1, x0:x1] for k, v in planes.items()}
    return out


def subtract_quadrant(home: Home, engine: Engine, sciimg: QuadrantProduct,
                      config: PipelineConfig | SubtractRunConfig | None = None
                      ) -> QuadrantDiffOutcome:
    """Subtract, extract, vet and record one science quadrant (see the module docstring).

    ``config`` is the pipeline configuration (its ``diffim`` and ``streaks`` settings are
    used), or the runner's settings alone (every other stage at its defaults), or ``None``
    (the defaults). It is recorded in ``configs`` and its hash in every product's header
    (``CFGHASH``).
    """
    pipeline = PipelineConfig.of(config)
    config = pipeline.diffim
    pid = int(sciimg.pid)
    t0 = time.perf_counter()
    ref = latest_reference(engine, sciimg.field, sciimg.ccdid, sciimg.qid, sciimg.fid)
    if ref is None:
        return QuadrantDiffOutcome(pid, False, "no reference", state="skipped")
    sci, sci_cat = read_science(home, sciimg.relpath)
    refimg, ref_cat = read_reference(home, ref)
    t1 = time.perf_counter()
    diff = subtract(sci, refimg, config.subtract, sci_cat, ref_cat)
    t2 = time.perf_counter()
    streaks, streak_error = None, ""
    if config.streaks:
        try:
            streaks = find_diff_streaks(diff, pipeline.streaks)
        except Exception as exc:  # a streak failure must not cost the image its alerts
            log.exception("streak search of %s failed", sciimg.relpath)
            streak_error = f"; streak search failed: {type(exc).__name__}: {exc}"
    t2s = time.perf_counter()
    cand = measure_candidates(diff, config.candidates)
    if len(cand):
        cand = candidate_context(home, cand, ref_cat, diff.header)
    t3 = time.perf_counter()
    rb, rbversion = score_real_bogus(cand, config.score_rb)
    t3b = time.perf_counter()
    if len(cand):
        cand["rb"] = rb
        cand["passed"] = config.cuts.apply(cand)
    footprint = image_footprint(diff.header, diff.shape)
    if len(cand) and config.tag_known:
        # Known asteroids (ssnamenr, ssdistnr, ssmagnr), in real time as ZTF does.
        from zsds.moving.run import tag_known

        cand = cand.assign(candid=np.arange(len(cand)))
        tags = tag_known(home, cand, mjd_mid_of(diff.header), *footprint)
        cand = cand.drop(columns="candid").assign(**{c: tags[c] for c in tags})
    t3c = time.perf_counter()
    with session(engine) as s:
        programid = s.execute(select(Exposure.programid).where(
            Exposure.expid == sciimg.expid)).scalar_one_or_none() or 1
    diffname = Path(sciimg.relpath).name.replace("sciimg.fits", "scimrefdiffimg.fits")
    recs = candidate_records(cand, diff, pid, ref, programid, diffname, rbversion)
    if len(cand):
        cand["candid"] = [r["candid"] for r in recs]
    stamps = cutouts(diff, cand["x"].to_numpy(), cand["y"].to_numpy()) if len(cand) else \
        np.zeros((3, 0, CUTOUT, CUTOUT), np.float32)
    if len(cand):
        # Deep real-bogus on the three cutouts, with the event positive in the difference
        # (IPAC's ref - sci stamp for isdiffpos = 'f'), as the network was trained.
        from zsds.realbogus.drb import DRB_VERSION, drb_score

        positive = (cand["isdiffpos"].to_numpy() == "t")[:, None, None]
        drb = drb_score(stamps[0], stamps[1], np.where(positive, stamps[2], -stamps[2]))
        for r, v in zip(recs, drb, strict=True):
            r["drb"], r["drbversion"] = float(v), DRB_VERSION
    if streaks is not None and len(streaks) and config.tag_known:
        from zsds.moving.run import tag_known

        tags = tag_known(home, streaks.assign(candid=np.arange(len(streaks))), mjd_mid_of(
            diff.header), *footprint)
        streaks = streaks.assign(**{c: tags[c].to_numpy() for c in tags})
    with config_provenance(record_config(engine, pipeline)):
        paths = write_diff_products(home, sciimg.relpath, diff, cand, stamps)
        if streaks is not None:
            paths["streaks"] = write_streaks(home, sciimg.relpath, diff.header, streaks,
                                             diff.diff)
    t4 = time.perf_counter()
    _record(home, engine, sciimg, diff, ref, programid, cand, recs, paths, streaks)
    t5 = time.perf_counter()
    timings = {"read": t1 - t0, "subtract": t2 - t1, "streaks": t2s - t2,
               "candidates": t3 - t2s, "rb": t3b - t3,
               "known": t3c - t3b, "write": t4 - t3c, "database": t5 - t4}
    npass = int(cand["passed"].sum()) if len(cand) else 0
    msg = (f"{len(cand)} candidates ({npass} pass the packet cuts), DIFFMLIM "
           f"{diff.header['DIFFMLIM']:.2f}")
    if streaks is not None and len(streaks):
        msg += f", {len(streaks)} streaks"
    msg += streak_error
    return QuadrantDiffOutcome(pid, True, msg, len(cand), npass, timings, cand)


def _record(home: Home, engine: Engine, sciimg: QuadrantProduct, diff: DiffImage,
            ref: Reference, programid: int, cand: pd.DataFrame, recs: list[dict],
            paths: dict[str, Path], streaks: pd.DataFrame | None = None) -> None:
    h = diff.header
    ra0, dec0, radius = image_footprint(h, diff.shape)
    pid = int(sciimg.pid)
    jd = recs[0]["jd"] if recs else float(h.get("OBSJD", mjd_to_jd(float(h["OBSMJD"])))) \
        + 0.5 * float(h.get("EXPTIME", 30.0)) / 86400.0
    lim = float(h["DIFFMLIM"])
    with session(engine) as s:
        # Idempotent re-run: this image's candidates (and alerts of them) are replaced.
        old = select(Candidate.candid).where(Candidate.pid == pid)
        # Names already given to this image's events are kept (candids are deterministic).
        named = dict(s.execute(select(Candidate.candid, Candidate.object_id)
                               .where(Candidate.pid == pid)).all())
        s.execute(delete(AlertRecord).where(AlertRecord.candid.in_(old)))
        s.execute(delete(StreakRecord).where(StreakRecord.pid == pid))
        s.execute(delete(Candidate).where(Candidate.pid == pid))
        s.execute(delete(DiffImageRecord).where(DiffImageRecord.pid == pid))
        s.execute(delete(QuadrantProduct).where(
            QuadrantProduct.pid == pid, QuadrantProduct.kind.in_(list(paths))))
        s.flush()
        s.add(DiffImageRecord(
            pid=pid, expid=sciimg.expid, nid=int(nid_of(_night_of(h))), field=sciimg.field,
            ccdid=sciimg.ccdid, qid=sciimg.qid, rcid=sciimg.rcid, fid=sciimg.fid,
            programid=programid, jd=jd, rfid=ref.rfid, ra=ra0, dec=dec0, radius=radius,
            diffmaglim=lim if lim != -999.0 else None, magzp=_hv(h, "MAGZP"),
            relpath=str(paths["scimrefdiffimg"].relative_to(home.root)), ncand=len(recs)))
        s.flush()
        if streaks is not None and len(streaks):
            s.add_all(streak_records(streaks, pid, sciimg, h, jd))
        for kind, p in paths.items():
            s.add(QuadrantProduct(
                pid=pid, expid=sciimg.expid, ccdid=sciimg.ccdid, qid=sciimg.qid,
                rcid=sciimg.rcid, field=sciimg.field, fid=sciimg.fid, kind=kind,
                relpath=str(p.relative_to(home.root)), infobits=sciimg.infobits,
                magzp=sciimg.magzp))
        s.flush()
        passed = cand["passed"].to_numpy(bool) if len(cand) else np.zeros(0, bool)
        touched = set(named.values())
        # Association in one batch: the names kept whose objects still exist (one query), then
        # associate_many for the others, in order (as one associate() call each would).
        kept = {o for o in touched if o is not None}
        kept = set(s.scalars(select(AstroObject.object_id)
                             .where(AstroObject.object_id.in_(sorted(kept))))) if kept else set()
        oids = [named.get(r["candid"]) for r in recs]
        todo = [k for k, o in enumerate(oids) if o not in kept]
        for k, o in zip(todo, associate_many(s, [recs[k]["ra"] for k in todo],
                                             [recs[k]["dec"] for k in todo],
                                             [recs[k]["jd"] for k in todo]), strict=True):
            oids[k] = o
        for r, ok, oid in zip(recs, passed, oids, strict=True):
            touched.add(oid)
            s.add(Candidate(
                candid=r["candid"], pid=pid, object_id=oid, jd=r["jd"], nid=r["nid"],
                fid=r["fid"], field=r["field"], rcid=r["rcid"], programid=programid,
                ra=r["ra"], dec=r["dec"], isdiffpos=r["isdiffpos"], magpsf=r.get("magpsf"),
                sigmapsf=r.get("sigmapsf"), scorr=r["scorr"], rb=r.get("rb"),
                passed=bool(ok), record=r, ssnamenr=r.get("ssnamenr")))
        s.flush()
        refresh_objects(s, touched)


def subtract_quadrant_job(home: Home, engine: Engine, sciimg: QuadrantProduct,
                          config: PipelineConfig | SubtractRunConfig | None = None
                          ) -> QuadrantDiffOutcome:
    """:func:`subtract_quadrant` (with ``config``) recorded as the job ``("subtract", pid)``.

    A quadrant without a reference ends ``skipped``; one that raises ends ``failed`` (the job
    holds the traceback) and is returned as a failed outcome, so one quadrant's failure never
    stops the others.
    """
    try:
        with job(engine, "subtract", str(sciimg.pid), inputs={"sciimg": sciimg.relpath}) as run:
            out = subtract_quadrant(home, engine, sciimg, config)
            if out.state == "skipped":
                run.skip(out.message)
    except Exception as exc:
        log.exception("subtraction of %s failed", sciimg.relpath)
        return QuadrantDiffOutcome(int(sciimg.pid), False, f"{type(exc).__name__}: {exc}",
                                   state="failed")
    return out


def subtract_night(home: Home, engine: Engine, night: str | dt.date, expid: int | None = None,
                   ccd: int | None = None, quad: int | None = None,
                   config: PipelineConfig | SubtractRunConfig | None = None,
                   progress: ProgressFn | None = None,
                   after: Callable[[QuadrantDiffOutcome], object] | None = None
                   ) -> list[QuadrantDiffOutcome]:
    """Subtract every calibrated science quadrant of a night that has a reference, in time
    order; ``after`` is called with each quadrant's outcome as soon as it is done (``zsds
    subtract`` builds the quadrant's alert packets there, as the executive does)."""
    date = parse_night(night)
    with session(engine) as s:
        q = (select(QuadrantProduct).join(Exposure, Exposure.expid == QuadrantProduct.expid)
             .where(Exposure.night == date, QuadrantProduct.kind == "sciimg"))
        if expid is not None:
            q = q.where(QuadrantProduct.expid == expid)
        if ccd is not None:
            q = q.where(QuadrantProduct.ccdid == ccd)
        if quad is not None:
            q = q.where(QuadrantProduct.qid == quad)
        rows = s.execute(q.order_by(Exposure.mjd, QuadrantProduct.pid)).scalars().all()
        for r in rows:
            s.expunge(r)
    outcomes = []
    for k, row in enumerate(rows):
        if progress:
            progress(k, len(rows), Path(row.relpath).name)
        outcomes.append(subtract_quadrant_job(home, engine, row, config))
        if after is not None:
            after(outcomes[-1])
    if progress:
        progress(len(rows), len(rows), "done")
    return outcomes
