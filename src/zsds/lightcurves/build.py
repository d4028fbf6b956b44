"""Build the light curves of one field/CCD-quadrant/filter: match, refine, measure, store.

The unit of work is one readout quadrant of one field in one filter (one matchfile), as at
IPAC; :func:`build_unit` does one unit (it is what a Dask worker runs), :func:`assemble` is
its pure science core. Inputs are the reference catalogue (``refpsfcat``) and every epochal
PSF-fit catalogue (``psfcat``) of the unit; outputs are the matchfile (HDF5, IPAC structure),
the objects' rows in the database (``lc_objects``, searchable by position and metrics) and,
for the whole archive, a HEALPix-partitioned Parquet catalogue (HATS) written by
:func:`write_objects_catalog`.

Object ids are stable: sources keep the reference catalogue's ``sourceid`` as long as the
matchfile stays tied to its reference (``referenceImageID``; a rebuild uses the same
reference even when a newer version exists), and transients keep the matchid of an earlier
build when detections fall within the match radius of them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.table import Table
from sqlalchemy import Engine, select

from zsds.core.home import Home
from zsds.core.instrument import Filter, rcid_of
from zsds.core.masks import BAD_PIXEL_BITS
from zsds.core.sphere import unit_vectors
from zsds.db import session
from zsds.db.schema import Exposure, QuadrantProduct, Reference
from zsds.lightcurves.ids import oid as make_oid
from zsds.lightcurves.match import MatchConfig, match_detections
from zsds.lightcurves.metrics import MetricsConfig, ipac_metrics, lc_features
from zsds.lightcurves.model import (
    CATFLAG_BAD_EPOCH,
    EXPOSURES_DTYPE,
    SOURCEDATA_DTYPE,
    SOURCES_DTYPE,
    TRANSIENT_MATCHID0,
    TRANSIENTDATA_DTYPE,
    MatchSet,
)
from zsds.lightcurves.photcal import RefineConfig, refine_zeropoints

#: ``catflags`` bit of points whose 5 x 5 flag box touched the image edge (psfcat flags -1).
CATFLAG_EDGE = 16384
#: Mask bits that make a point unusable: the ZTF "bad pixel" set 6141 (all but "source"
#: and "PSF-extracted position"), the edge bit and the bad-epoch bit.
BAD_CATFLAGS = BAD_PIXEL_BITS | CATFLAG_EDGE | CATFLAG_BAD_EPOCH
#: INFOBITS at or above this mark an image as bad data (ES cautionary notes).
BAD_INFOBITS = 2**25


@dataclass(frozen=True)
class LightCurveConfig:
    """Options of the light-curve pipeline (one sub-config per step).

    Attributes
    ----------
    match, refine, metrics : MatchConfig, RefineConfig, MetricsConfig
    features : bool
        Compute the full feature set (> 100 metrics) besides the IPAC columns.
    """

    match: MatchConfig = field(default_factory=MatchConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    features: bool = True


@dataclass(frozen=True, order=True)
class Unit:
    """One field, CCD quadrant and filter: one matchfile."""

    field: int
    ccdid: int
    qid: int
    fid: int

    @property
    def rcid(self) -> int:
        return rcid_of(self.ccdid, self.qid)

    @property
    def filt(self) -> Filter:
        return Filter(self.fid)

    def matchfile_relpath(self) -> str:
        """Path of the matchfile relative to the home."""
        from zsds.lightcurves.matchfile import matchfile_name

        name = matchfile_name(self.field, self.filt.code, self.ccdid, self.qid)
        return f"products/lc/rc{self.rcid:02d}/fr{self.field:06d}/{name}"

    def __str__(self) -> str:
        return f"field {self.field} c{self.ccdid:02d} q{self.qid} {self.filt.code}"


def find_units(engine: Engine, fields: list[int] | None = None) -> list[Unit]:
    """Every unit with calibrated epochs (psfcat) and a reference image."""
    with session(engine) as s:
        q = select(QuadrantProduct.field, QuadrantProduct.ccdid, QuadrantProduct.qid,
                   QuadrantProduct.fid).where(QuadrantProduct.kind == "psfcat").distinct()
        if fields:
            q = q.where(QuadrantProduct.field.in_(fields))
        have = {Unit(*r) for r in s.execute(q)}
        refs = {Unit(r.field, r.ccdid, r.qid, r.fid)
                for r in s.execute(select(Reference.field, Reference.ccdid, Reference.qid,
                                          Reference.fid))}
    return sorted(have & refs)


# -- inputs ------------------------------------------------------------------------------

@dataclass
class Epochs:
    """The epochal catalogues of one unit: one exposures row and many detections per epoch."""

    exposures: np.ndarray          # EXPOSURES_DTYPE, sorted by obsmjd
    detections: pd.DataFrame       # psfcat rows plus column ``epoch`` (index into exposures)


def _hjd(mjd: np.ndarray, ra: float, dec: float) -> np.ndarray:
    """Heliocentric JD (UTC) of a position: JD plus the light-travel time from the Earth to
    the Sun along the line of sight, ``(r_earth - r_sun) . n / c``.

    Computed from the geocentre with astropy's built-in ephemeris (the observatory's offset
    is < 21 ms); unlike ``Time.light_travel_time`` with a location this needs no UT1, so it
    works offline for dates past the bundled IERS predictions.
    """
    from astropy import constants
    from astropy.coordinates import get_body_barycentric
    from astropy.time import Time

    if len(mjd) == 0:
        return np.zeros(0)
    t = Time(np.asarray(mjd, float), format="mjd", scale="utc")
    earth = get_body_barycentric("earth", t.tdb).xyz.to_value("m")
    sun = get_body_barycentric("sun", t.tdb).xyz.to_value("m")
    ltt = (unit_vectors(ra, dec) @ (earth - sun)) / constants.c.to_value("m/s")
    return t.jd + ltt / 86400.0


def read_epochs(home: Home, engine: Engine, unit: Unit) -> Epochs:
    """Read the psfcat of every calibrated epoch of ``unit`` (each file once) and the
    quantities of its exposure (science-image header)."""
    with session(engine) as s:
        rows = s.execute(
            select(QuadrantProduct.pid, QuadrantProduct.kind, QuadrantProduct.relpath,
                   QuadrantProduct.expid, Exposure.mjd, Exposure.programid,
                   Exposure.filefracday)
            .join(Exposure, Exposure.expid == QuadrantProduct.expid)
            .where(QuadrantProduct.field == unit.field, QuadrantProduct.ccdid == unit.ccdid,
                   QuadrantProduct.qid == unit.qid, QuadrantProduct.fid == unit.fid,
                   QuadrantProduct.kind.in_(("psfcat", "sciimg")))).all()
    by_pid: dict[int, dict[str, Any]] = {}
    for r in rows:
        d = by_pid.setdefault(r.pid, {"expid": r.expid, "mjd": r.mjd,
                                      "programid": r.programid, "ffd": r.filefracday})
        d[r.kind] = r.relpath
    pids = sorted((p for p, d in by_pid.items() if "psfcat" in d and "sciimg" in d),
                  key=lambda p: by_pid[p]["mjd"])
    exp = np.zeros(len(pids), EXPOSURES_DTYPE)
    frames = []
    for j, pid in enumerate(pids):
        d = by_pid[pid]
        hdr = fits.getheader(home.path(d["sciimg"]))
        cat = Table.read(home.path(d["psfcat"]), hdu=1).to_pandas()
        cat["epoch"] = j
        frames.append(cat)
        e = exp[j]
        e["expid"], e["obsmjd"], e["pid"] = d["expid"], d["mjd"], pid
        e["fieldid"], e["filterid"], e["rcid"] = unit.field, unit.fid, unit.rcid
        e["programid"] = d["programid"]
        e["fracday"] = int(d["ffd"])
        e["exptime"] = hdr.get("EXPTIME", np.nan)
        e["airmass"] = hdr.get("AIRMASS", np.nan)
        e["diq"] = hdr.get("SEEING", np.nan)
        e["infobits"] = int(hdr.get("INFOBITS", 0)) & 0xFFFFFFFF
        e["limitmag"] = hdr.get("MAGLIM", np.nan)
        e["nps1matches"] = hdr.get("NMATCHES", 0)
        e["nsources"] = len(cat)
        e["gmedian"] = hdr.get("SKYLEVEL", np.nan)
        e["pcolor"] = str(hdr.get("PCOLOR", "")).encode()
        e["programpi"] = b""
        e["ipac_pub_date"] = np.nan
        for col, key in (("magzp", "MAGZP"), ("magzpunc", "MAGZPUNC"),
                         ("magzprms", "MAGZPRMS"), ("clrcoeff", "CLRCOEFF"),
                         ("clrcounc", "CLRCOUNC"), ("zpclrcov", "ZPCLRCOV"),
                         ("zpmed", "ZPMED"), ("clrmed", "CLRMED"), ("clrrms", "CLRRMS")):
            e[col] = hdr.get(key, np.nan)
    det = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {"epoch": np.zeros(0, int)})
    if len(exp):
        ra0, dec0 = (float(np.median(det["ra"])), float(np.median(det["dec"]))) if len(det) \
            else (0.0, 0.0)
        exp["obshjd"] = _hjd(exp["obsmjd"], ra0, dec0)
    return Epochs(exp, det)


def reference_for(engine: Engine, unit: Unit, rfid: int | None = None) -> Reference | None:
    """The reference a matchfile is tied to: ``rfid`` if it still exists, else the latest."""
    with session(engine) as s:
        if rfid is not None:
            ref = s.get(Reference, rfid)
            if ref is not None:
                return ref
        return s.execute(select(Reference).where(
            Reference.field == unit.field, Reference.ccdid == unit.ccdid,
            Reference.qid == unit.qid, Reference.fid == unit.fid,
        ).order_by(Reference.version.desc())).scalars().first()


def read_refcat(home: Home, ref: Reference) -> tuple[pd.DataFrame, fits.Header]:
    """The reference's PSF-fit catalogue and its header."""
    path = home.path(ref.relpath.replace("refimg.fits", "refpsfcat.fits"))
    with fits.open(path) as hdul:
        hdr = hdul[0].header.copy()
        cat = Table(hdul[1].data).to_pandas() if len(hdul) > 1 else pd.DataFrame()
    return cat, hdr


# -- science core --------------------------------------------------------------------------

def _catflags(flags: np.ndarray) -> np.ndarray:
    f = np.asarray(flags, np.int64)
    return np.where(f < 0, CATFLAG_EDGE, f & 0x1FFF).astype(np.uint16)


def _objects(ids: np.ndarray, det: pd.DataFrame, matchid: np.ndarray, epochs: np.ndarray,
             mag: np.ndarray, good: np.ndarray, config: LightCurveConfig
             ) -> tuple[np.ndarray, pd.DataFrame | None]:
    """IPAC object rows (metrics, mean positions) and the features of ``ids`` (sorted)."""
    sel = np.isin(matchid, ids)
    out = np.zeros(len(ids), SOURCES_DTYPE)
    out["matchid"] = ids
    for c in SOURCES_DTYPE.names:
        if SOURCES_DTYPE[c].kind == "f":
            out[c] = np.nan
    if sel.any():
        m = ipac_metrics(matchid[sel], epochs["obsmjd"][det["epoch"].to_numpy()[sel]],
                         mag[sel], det["sigmag"].to_numpy(float)[sel], good[sel],
                         raw_mag=det["mag"].to_numpy(float)[sel], config=config.metrics)
        pos = np.searchsorted(ids, m["matchid"])
        for c in m.dtype.names:
            if c not in ("ra", "dec", "x", "y", "z", "astrometricrms", "matchid"):
                out[c][pos] = m[c]
        # Mean position (mean unit vector) and astrometric rms of the detections.
        xyz = unit_vectors(det["ra"].to_numpy(float)[sel], det["dec"].to_numpy(float)[sel])
        inv = np.searchsorted(ids, matchid[sel])
        n = np.bincount(inv, minlength=len(ids))
        v = np.stack([np.bincount(inv, weights=xyz[:, k], minlength=len(ids))
                      for k in range(3)], axis=1)
        has = n > 0
        v[has] /= np.linalg.norm(v[has], axis=1, keepdims=True)
        sep2 = np.sum((xyz - v[inv]) ** 2, axis=1)
        rms = np.sqrt(np.bincount(inv, weights=sep2, minlength=len(ids)) / np.maximum(n, 1))
        out["x"][has], out["y"][has], out["z"][has] = v[has, 0], v[has, 1], v[has, 2]
        out["ra"][has] = np.rad2deg(np.arctan2(v[has, 1], v[has, 0])) % 360.0
        out["dec"][has] = np.rad2deg(np.arcsin(np.clip(v[has, 2], -1, 1)))
        out["astrometricrms"][has] = np.rad2deg(rms[has])
    if config.features and sel.any():
        feats = lc_features(matchid[sel], epochs["obsmjd"][det["epoch"].to_numpy()[sel]],
                            mag[sel], det["sigmag"].to_numpy(float)[sel], good[sel],
                            config.metrics)
        pos = np.searchsorted(ids, feats.index.to_numpy())
        out["period"][pos] = feats["period"].to_numpy()
        out["periodpower"][pos] = feats["periodpower"].to_numpy()
    else:
        feats = None
    return out, feats


def _transient_ok(det: pd.DataFrame, cfg: MatchConfig) -> np.ndarray:
    """Detections clean enough to make a transient: S/N, PSF-fit chi-square, no bad flags."""
    if not len(det):
        return np.zeros(0, bool)
    flags = _catflags(det["flags"].to_numpy())
    snr = det["snr"].to_numpy(float)
    # The PSF model's own error grows with S/N (chi ~ 4-5 at S/N 300 for real stars here), so
    # the chi limit rises with it; artefacts on bleed trails sit at S/N 5-20 with chi 6-8.
    max_chi = np.maximum(cfg.transient_max_chi, snr / 50.0)
    return ((snr >= cfg.transient_min_snr) & (det["chi"].to_numpy(float) <= max_chi)
            & ((flags & BAD_CATFLAGS) == 0))


def assemble(unit: Unit, ref: Reference, refcat: pd.DataFrame, refhdr: fits.Header,
             epochs: Epochs, prior: MatchSet | None = None,
             config: LightCurveConfig | None = None) -> MatchSet:
    """Match, refine and measure one unit (pure: no I/O).

    Parameters
    ----------
    unit : Unit
    ref : Reference
        The reference image row the matchfile is tied to.
    refcat, refhdr : pandas.DataFrame, astropy.io.fits.Header
        Its ``refpsfcat`` and header.
    epochs : Epochs
        The epochal catalogues.
    prior : MatchSet, optional
        The previous build (objects only): its transients keep their matchids.
    config : LightCurveConfig, optional

    Returns
    -------
    MatchSet
    """
    cfg = config or LightCurveConfig()
    exp = epochs.exposures.copy()
    det = epochs.detections
    ref_ids = refcat["sourceid"].to_numpy(np.int64) if len(refcat) else np.zeros(0, np.int64)
    ep_idx = det["epoch"].to_numpy(np.int64) if len(det) else np.zeros(0, np.int64)
    pt = prior.transients if prior is not None else np.zeros(0, SOURCES_DTYPE)
    res = match_detections(
        det["ra"].to_numpy(float) if len(det) else np.zeros(0),
        det["dec"].to_numpy(float) if len(det) else np.zeros(0), ep_idx,
        ref_ids, refcat["ra"].to_numpy(float) if len(refcat) else np.zeros(0),
        refcat["dec"].to_numpy(float) if len(refcat) else np.zeros(0),
        pt["matchid"], pt["ra"], pt["dec"], cfg.match, _transient_ok(det, cfg.match))
    matchid = res.matchid
    raw = det["mag"].to_numpy(float) if len(det) else np.zeros(0)
    sig = det["sigmag"].to_numpy(float) if len(det) else np.zeros(0)
    cflags = _catflags(det["flags"].to_numpy() if len(det) else np.zeros(0))
    bad_image = (exp["infobits"].astype(np.int64) >= BAD_INFOBITS)
    clean = ((cflags & BAD_CATFLAGS) == 0) & np.isfinite(raw) & np.isfinite(sig)
    clean &= ~bad_image[ep_idx] if len(exp) else clean

    # Relative refinement on the reference sources only (transients are not anchors).
    src = res.is_source
    sorter = np.argsort(ref_ids)
    obj_index = sorter[np.searchsorted(ref_ids, matchid[src], sorter=sorter)]
    ref_fit = refine_zeropoints(obj_index, ep_idx[src], raw[src], sig[src], clean[src],
                                len(exp), det["snr"].to_numpy(float)[src] if len(det)
                                else None, cfg.refine)
    bad_epoch = ref_fit.bad | bad_image
    exp["zprefine"] = ref_fit.zp
    exp["gaincorr"] = ref_fit.gain_factor
    exp["zprefineunc"] = ref_fit.zp_err
    exp["ncalib"] = ref_fit.ncalib
    exp["calrms"] = ref_fit.rms
    exp["badepoch"] = bad_epoch
    mag = raw + ref_fit.zp[ep_idx] if len(exp) else raw
    cflags = np.where(bad_epoch[ep_idx], cflags | CATFLAG_BAD_EPOCH, cflags).astype(np.uint16) \
        if len(exp) else cflags
    good = (cflags & BAD_CATFLAGS) == 0
    good &= np.isfinite(mag)
    errmodel = ref_fit.error_model(sig)
    exp["ntransients"] = np.bincount(ep_idx[~src & (matchid >= 0)], minlength=len(exp))
    exp["nstars"] = np.bincount(ep_idx[src], minlength=len(exp))

    # Per-point tables.
    keep = matchid >= 0
    order = np.lexsort((exp["obsmjd"][ep_idx] if len(exp) else ep_idx, matchid))
    order = order[keep[order]]
    is_src = src[order]

    def _points(dtype: np.dtype, rows: np.ndarray) -> np.ndarray:
        out = np.zeros(rows.size, dtype)
        e = ep_idx[rows]
        out["catflags"], out["chi"] = cflags[rows], det["chi"].to_numpy()[rows]
        out["ra"], out["dec"] = det["ra"].to_numpy()[rows], det["dec"].to_numpy()[rows]
        out["expid"], out["mjd"], out["hjd"] = exp["expid"][e], exp["obsmjd"][e], \
            exp["obshjd"][e]
        out["mag"], out["magerr"], out["magerrmodel"] = mag[rows], sig[rows], errmodel[rows]
        out["matchid"] = matchid[rows]
        out["programid"] = exp["programid"][e]
        out["psfflux"], out["psffluxerr"] = det["flux"].to_numpy()[rows], \
            det["sigflux"].to_numpy()[rows]
        out["sharp"] = det["sharp"].to_numpy()[rows]
        out["xpos"], out["ypos"] = det["xpos"].to_numpy()[rows], det["ypos"].to_numpy()[rows]
        out["psfmag"], out["psfmagerr"] = raw[rows], sig[rows]
        out["snr"] = det["snr"].to_numpy()[rows]
        out["sid"] = det["sourceid"].to_numpy()[rows]
        if "x" in dtype.names:
            xyz = unit_vectors(out["ra"], out["dec"])
            out["x"], out["y"], out["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        return out

    sourcedata = _points(SOURCEDATA_DTYPE, order[is_src])
    transientdata = _points(TRANSIENTDATA_DTYPE, order[~is_src])
    # Objects: every reference source (detected or not) and every transient.
    sources, f_src = _objects(ref_ids, det, matchid, exp, mag, good, cfg)
    if len(refcat):
        for col, rc in (("refmag", "mag"), ("refmagerr", "sigmag"), ("refchi", "chi"),
                        ("refsharp", "sharp"), ("refsnr", "snr")):
            sources[col] = refcat[rc].to_numpy()
        undetected = sources["nobs"] == 0
        xyz = unit_vectors(refcat["ra"].to_numpy(), refcat["dec"].to_numpy())
        sources["ra"] = np.where(undetected, refcat["ra"].to_numpy(), sources["ra"])
        sources["dec"] = np.where(undetected, refcat["dec"].to_numpy(), sources["dec"])
        for k, c in enumerate("xyz"):
            sources[c] = np.where(undetected, xyz[:, k], sources[c])
    tids = np.unique(matchid[matchid >= TRANSIENT_MATCHID0])
    transients, f_tr = _objects(tids, det, matchid, exp, mag, good, cfg)
    for arr in (sources, transients):
        arr["oid"] = make_oid(unit.field, unit.fid, unit.ccdid, unit.qid, arr["matchid"])
        arr["nobsrel"], arr["ngoodobsrel"] = arr["nobs"], arr["ngoodobs"]
    feats = None
    if f_src is not None or f_tr is not None:
        feats = pd.concat([f for f in (f_src, f_tr) if f is not None])
    good_anchor = np.isin(ref_ids, ref_ids[ref_fit.anchors]) if ref_fit.anchors.size else \
        np.zeros(len(ref_ids), bool)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    attrs = {
        "fieldID": unit.field, "ccdID": unit.ccdid, "quadrantID": unit.qid,
        "rcID": unit.rcid, "filterID": unit.fid, "referenceImageID": int(ref.rfid),
        "referenceZeroPoint": float(refhdr.get("MAGZP", np.nan)),
        "referenceZeroPointErr": float(refhdr.get("MAGZPUNC", 0.0)),
        "saturatedMagnitude": float(np.nanmin(refcat["mag"])) if len(refcat) else np.inf,
        "globalMaglimit": float(np.nanmedian(exp["limitmag"])) if len(exp) else np.nan,
        "goodSystematicErrorLimit": float(ref_fit.sys_err),
        "nCalibrationSources": int(good_anchor.sum()),
        "calibratedSinceLastMatch": 0,
        "datetimeMatched": now, "datetimeCalibrated": now,
        "zsdsErrorScale": float(ref_fit.err_scale),
    }
    return MatchSet(attrs, exp, sources, sourcedata, transients, transientdata, feats)


# -- edges: files and database ------------------------------------------------------------

def object_rows(ms: MatchSet, matchfile: str) -> pd.DataFrame:
    """The ``lc_objects`` rows (search columns and main metrics) of a MatchSet."""
    from zsds.lightcurves.search import healpix29

    parts = []
    for kind, arr in ((0, ms.sources), (1, ms.transients)):
        if not len(arr):
            continue
        amp = arr["maxmag"].astype(float) - arr["minmag"].astype(float)
        df = pd.DataFrame({
            "oid": arr["oid"], "field": ms.fieldid, "rcid": ms.rcid,
            "ccdid": int(ms.attrs["ccdID"]), "qid": int(ms.attrs["quadrantID"]),
            "fid": ms.filterid, "matchid": arr["matchid"].astype(np.int64), "kind": kind,
            "ra": arr["ra"], "dec": arr["dec"],
            "refmag": arr["refmag"].astype(float), "medianmag": arr["medianmag"].astype(float),
            "meanmag": arr["meanmag"].astype(float), "magrms": arr["magrms"].astype(float),
            "chisq": arr["chisq"].astype(float), "stetsonj": arr["stetsonj"].astype(float),
            "vonneumannratio": arr["vonneumannratio"].astype(float),
            "period": arr["period"].astype(float),
            "periodpower": arr["periodpower"].astype(float), "amplitude": amp,
            "nobs": arr["nobs"].astype(np.int64), "ngoodobs": arr["ngoodobs"].astype(np.int64),
            "matchfile": matchfile,
        })
        parts.append(df)
    if not parts:
        return pd.DataFrame()
    df = pd.concat(parts, ignore_index=True)
    data = np.concatenate([ms.sourcedata[["matchid", "mjd"]],
                           ms.transientdata[["matchid", "mjd"]]]) if len(ms.sourcedata) or \
        len(ms.transientdata) else np.zeros(0, [("matchid", "<u4"), ("mjd", "<f8")])
    span = pd.DataFrame({"matchid": data["matchid"].astype(np.int64), "mjd": data["mjd"]}) \
        .groupby("matchid")["mjd"].agg(["min", "max"])
    df["mjdmin"] = df["matchid"].map(span["min"])
    df["mjdmax"] = df["matchid"].map(span["max"])
    df["healpix29"] = healpix29(df["ra"].to_numpy(), df["dec"].to_numpy())
    # SQL wants None, not NaN; the DB layer converts.
    return df


OBJECTS_DIR = "products/lc/objects"
HATS_DIR = "products/lc/hats"


def objects_table(ms: MatchSet) -> pd.DataFrame:
    """Every object of a MatchSet with its IPAC metrics and features: one flat row each.

    Array columns are spread into scalars (``percentiles_0`` .. ``percentiles_11``,
    ``nabovemeanbystd_0`` ..); the features (``lc_*``) are joined on ``matchid``.
    """
    parts = []
    for kind, arr in ((0, ms.sources), (1, ms.transients)):
        if not len(arr):
            continue
        cols: dict[str, Any] = {}
        for name in arr.dtype.names:
            v = arr[name]
            if v.ndim == 2:
                for k in range(v.shape[1]):
                    cols[f"{name}_{k}"] = v[:, k]
            else:
                cols[name] = v
        df = pd.DataFrame(cols)
        df.insert(0, "kind", kind)
        parts.append(df)
    if not parts:
        return pd.DataFrame()
    df = pd.concat(parts, ignore_index=True)
    df.insert(0, "fid", ms.filterid)
    df.insert(0, "rcid", ms.rcid)
    df.insert(0, "field", ms.fieldid)
    if ms.features is not None and len(ms.features):
        feats = ms.features.drop(columns=[c for c in ("period", "periodpower")
                                          if c in ms.features.columns])
        df = df.join(feats, on="matchid")
    return df


#: Above this many objects the HATS catalogue is imported on the Dask cluster (hats-import)
#: instead of gathered in one process (measured 1.1 kB per object with the > 100 features:
#: ~2.2 GB at this size, and as much again for the Arrow copy the writer makes).
DISTRIBUTED_HATS_ROWS = 2_000_000


def write_objects_catalog(home: Home, max_rows_per_partition: int = 1_000_000,
                          client: Any | None = None,
                          distributed_rows: int = DISTRIBUTED_HATS_ROWS) -> Path | None:
    """Gather the per-unit object tables into one HATS catalogue (``products/lc/hats``).

    Returns its path, or None when there are no objects.  Up to ``distributed_rows`` objects
    (counted from the Parquet footers) are gathered in memory and written in this process
    (:func:`~zsds.lightcurves.hats.write_hats_catalog`); more, with a Dask ``client``, are
    imported on its cluster by hats-import
    (:func:`~zsds.lightcurves.hats.import_hats_catalog`), which never holds more than a
    partition per worker: the survey-scale path.
    """
    import pyarrow.parquet as pq

    from zsds.lightcurves.hats import import_hats_catalog, write_hats_catalog

    files = sorted(home.path(OBJECTS_DIR).glob("*.parquet"))
    if not files:
        return None
    nrows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if client is not None and nrows > distributed_rows:
        return import_hats_catalog(home.path(HATS_DIR), files, client, "ztf_lc_objects",
                                   max_rows_per_partition=max_rows_per_partition)
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return write_hats_catalog(home.path(HATS_DIR), df, "ztf_lc_objects",
                              max_rows_per_partition=max_rows_per_partition)


def build_unit(home: Home, engine: Engine, unit: Unit,
               config: LightCurveConfig | None = None) -> dict[str, Any]:
    """Build (or rebuild, idempotently) the matchfile and database rows of one unit."""
    from zsds.lightcurves.matchfile import read_matchfile, write_matchfile
    from zsds.lightcurves.search import delete_objects, upsert_matchfile, upsert_objects

    rel = unit.matchfile_relpath()
    path = home.path(rel)
    prior = None
    if path.exists():
        try:
            prior = read_matchfile(path, objects_only=True)
        except ValueError:
            prior = None  # unreadable: rebuilt from scratch (the ids of transients may change)
    ref = reference_for(engine, unit,
                        int(prior.attrs["referenceImageID"]) if prior is not None else None)
    if ref is None:
        raise ValueError(f"{unit}: no reference image")
    refcat, refhdr = read_refcat(home, ref)
    epochs = read_epochs(home, engine, unit)
    ms = assemble(unit, ref, refcat, refhdr, epochs, prior, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_matchfile(path, ms)
    objects = objects_table(ms)
    opath = home.path(f"{OBJECTS_DIR}/{Path(rel).stem}.parquet")
    opath.parent.mkdir(parents=True, exist_ok=True)
    tmp = opath.with_name(f".{opath.name}.tmp")
    objects.to_parquet(tmp, index=False)
    tmp.replace(opath)
    rows = object_rows(ms, rel)
    delete_objects(engine, unit.field, unit.rcid, unit.fid)
    n = upsert_objects(engine, rows) if len(rows) else 0
    qa = {
        "zprefine_rms": float(np.nanstd(ms.exposures["zprefine"])) if len(ms.exposures)
        else None,
        "bad_epochs": int(ms.exposures["badepoch"].sum()),
        "ncalib_median": float(np.median(ms.exposures["ncalib"])) if len(ms.exposures)
        else None,
        "sys_err": float(ms.attrs["goodSystematicErrorLimit"]),
    }
    upsert_matchfile(engine, field=unit.field, rcid=unit.rcid, ccdid=unit.ccdid,
                     qid=unit.qid, fid=unit.fid, path=rel, nexposures=len(ms.exposures),
                     nsources=len(ms.sources), ntransients=len(ms.transients),
                     npoints=len(ms.sourcedata) + len(ms.transientdata),
                     reference_pid=int(ref.rfid), qa=qa)
    return {"unit": str(unit), "matchfile": rel, "exposures": len(ms.exposures),
            "sources": len(ms.sources), "transients": len(ms.transients),
            "points": len(ms.sourcedata) + len(ms.transientdata), "objects_db": n, **qa}
