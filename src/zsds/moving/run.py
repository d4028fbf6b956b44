"""Pipeline 9 runner: the database and file edges of moving-object work.

* :func:`known_orbits` reads the known asteroids (``refcat/MPCORB.DAT``) once per process;
  :func:`known_index` brings them to the middle of a UT date once (N-body where their epochs
  are too far for two-body; the result is kept on disk under ``refcat/nbody-cache/`` so that
  every worker process of the night reuses it) and builds the night index;
  :func:`tag_known` fills ZTF's ``ssnamenr``, ``ssdistnr`` and ``ssmagnr`` of a difference
  image's candidates in real time (called by :mod:`zsds.diffim.run`).
* :func:`window_detections` gathers the positive, vetted candidates of a window of nights;
  :func:`link_window` removes stationary ones, forms tracklets, links them across nights
  (:mod:`zsds.moving.heliolinc`), fits an orbit to each linkage (:mod:`zsds.moving.orbitfit`)
  and stores the accepted tracks in ``ss_tracks`` / ``ss_track_members``. Re-linking a window
  replaces its tracks (names are deterministic), so it is idempotent.
* :func:`write_reports` writes MPC 80-column and ADES PSV observation files of a window's tracks
  (new objects by ``trkSub``, known ones by designation) under ``products/moving/``.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from zsds.core.home import Home
from zsds.core.naming import nid_of, parse_night
from zsds.db.engine import session
from zsds.db.jobs import job
from zsds.db.schema import Candidate, DiffImageRecord, SSTrack, SSTrackMember
from zsds.solar.orbits import Orbits

__all__ = [
    "LinkOutcome",
    "LinkRunConfig",
    "known_orbits",
    "link_window",
    "orbits_at_night",
    "tag_known",
    "track_name",
    "window_detections",
    "write_reports",
]

log = logging.getLogger(__name__)

#: Floor of the astrometric uncertainty of a detection (ZTF: 45-85 mas rms per axis at high
#: S/N, Masci et al. 2019), arcsec.
SIGMA_FLOOR = 0.07
MJD_JD = 2400000.5


def astrometric_sigma(sigmapsf: ArrayLike, fwhm_px: ArrayLike
                      ) -> tuple[np.ndarray, np.ndarray]:
    """S/N and per-axis astrometric uncertainty (arcsec) of detections from their PSF
    magnitude error and FWHM (px; 2" where missing): seeing / (2.355 S/N), with a 70 mas
    floor added in quadrature."""
    snr = 1.0857 / np.clip(np.asarray(sigmapsf, float), 1e-4, None)
    seeing = np.nan_to_num(np.asarray(fwhm_px, float) * 1.012, nan=2.0)
    return snr, np.hypot(seeing / (2.355 * snr), SIGMA_FLOOR)


def mpcorb_path(home: Home) -> Path:
    """Where the known asteroids' orbits live: ``refcat/MPCORB.DAT`` (MPC's format)."""
    return home.refcat / "MPCORB.DAT"


@functools.lru_cache(maxsize=4)
def _read_orbits(path: str, mtime_ns: int) -> Orbits:
    from zsds.solar.mpcorb import read_mpcorb

    return read_mpcorb(path)


def known_orbits(home: Home) -> Orbits | None:
    """The known asteroids (cached per process until the file changes), or None if none."""
    p = mpcorb_path(home)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return None
    return _read_orbits(str(p), st.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _night_index(path: str, mtime_ns: int, mjd_day: int):
    from zsds.moving.known import precompute_night

    # Palomar nights fall within one UT date: one coarse grid per UT date and process.
    orbits = orbits_at_night(_read_orbits(path, mtime_ns), mjd_day,
                             Path(path).parent / NBODY_CACHE, f"{mtime_ns}")
    return precompute_night(orbits, float(mjd_day), mjd_day + 1.0)


#: Folder (beside the orbit file) of catalogues brought to a UT date with N-body.
NBODY_CACHE = "nbody-cache"
_ELEMENTS = ("a", "e", "inc", "node", "argperi", "mean_anomaly", "epoch", "H", "G")


def orbits_at_night(orbits: Orbits, mjd_day: int, cache_dir: Path | None = None,
                    key: str = "", keep: int = 3) -> Orbits:
    """The catalogue osculating at the middle of the UT date ``mjd_day`` (MJD of 0h UTC).

    Orbits whose epoch is beyond the two-body error budget are integrated with N-body
    (:func:`zsds.solar.nbody.propagate_states`). That costs about a millisecond of CPU per
    orbit and year, so with ``cache_dir`` the result is written there once
    (``<key>_<mjd_day>.npz``, under a file lock: the other worker processes of the night wait
    and read it) and the ``keep`` newest files are kept. Without any orbit beyond the budget
    the catalogue is returned as it is (:func:`~zsds.moving.known.precompute_night` then
    propagates it two-body).
    """
    from zsds.solar.ephemeris import utc_to_tdb
    from zsds.solar.nbody import (
        TWO_BODY_TOLERANCE_ARCSEC,
        nbody_available,
        propagate_states,
        two_body_error_bound,
    )
    from zsds.solar.orbits import elements_to_state, state_to_elements

    if len(orbits) == 0 or not nbody_available():
        return orbits  # (precompute_night logs the two-body fallback)
    mid = float(utc_to_tdb(mjd_day + 0.5)[0])
    r, v = elements_to_state(orbits)
    _, bound = two_body_error_bound(r, v, orbits.epoch, mid)
    if not np.any(bound > TWO_BODY_TOLERANCE_ARCSEC):
        return orbits

    def compute() -> Orbits:
        state = propagate_states(r, v, orbits.epoch, mid)
        return state_to_elements(state.r, state.v, mid, orbits.designation, orbits.H,
                                 orbits.G)

    if cache_dir is None:
        return compute()
    import fcntl

    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{key}_{int(mjd_day)}.npz"
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            with np.load(target, allow_pickle=False) as z:
                return Orbits(designation=z["designation"],
                              **{k: z[k] for k in _ELEMENTS})
        out = compute()
        tmp = target.with_suffix(".tmp.npz")
        np.savez(tmp, designation=out.designation, **{k: getattr(out, k) for k in _ELEMENTS})
        os.replace(tmp, target)
        log.info("%d known orbits brought to MJD %d with N-body, cached in %s", len(out),
                 mjd_day, target)
        for old in sorted(cache_dir.glob("*.npz"), key=lambda f: f.stat().st_mtime)[:-keep]:
            old.unlink(missing_ok=True)
        return out


def known_index(home: Home, mjd: float):
    """The known asteroids prepared for the UT date of ``mjd`` (:class:`NightIndex`, cached
    per process), or None without an orbit file."""
    p = mpcorb_path(home)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return None
    return _night_index(str(p), st.st_mtime_ns, int(np.floor(mjd)))


def track_name(window_end_nid: int, rank: int) -> str:
    """ADES ``trkSub`` of a track: ``z`` + 3 base-36 digits of the night id + 3 of the rank.

    Seven characters, unique per window and rank, and the same when a window is re-linked.
    """
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"

    def b36(v: int, w: int) -> str:
        if not 0 <= v < 36**w:
            raise ValueError(f"{v} does not fit {w} base-36 digits")
        return "".join(digits[(v // 36**k) % 36] for k in reversed(range(w)))

    return "z" + b36(window_end_nid, 3) + b36(rank, 3)


# ----------------------------------------------------------------------------------------
# Known objects (real time)
# ----------------------------------------------------------------------------------------


def tag_known(home: Home, cands: pd.DataFrame, mjd_mid: float, ra0: float, dec0: float,
              radius_deg: float) -> pd.DataFrame:
    """``ssnamenr``, ``ssdistnr`` (arcsec), ``ssmagnr`` (V) of candidates of one image.

    Parameters
    ----------
    cands : DataFrame
        ``candid``, ``ra``, ``dec`` of the image's candidates.
    mjd_mid : float
        Mid-exposure time, MJD (UTC).
    ra0, dec0, radius_deg : float
        A cone enclosing the image.

    Returns
    -------
    DataFrame
        Indexed like ``cands``; ``ssnamenr`` None and the others -999 where no known object
        lies within 30" (or no orbit file exists).
    """
    out = pd.DataFrame({"ssnamenr": pd.Series([None] * len(cands), dtype=object),
                        "ssdistnr": -999.0, "ssmagnr": -999.0}, index=cands.index)
    if len(cands) == 0:
        return out
    index = known_index(home, mjd_mid)
    if index is None or len(index.orbits) == 0:
        return out
    from zsds.moving.known import tag_candidates

    exposures = pd.DataFrame({"expid": [0], "mjd": [mjd_mid], "ra": [ra0], "dec": [dec0],
                              "radius": [radius_deg]})
    c = pd.DataFrame({"candid": cands["candid"].to_numpy(), "ra": cands["ra"].to_numpy(),
                      "dec": cands["dec"].to_numpy(), "mjd": mjd_mid, "expid": 0})
    tags = tag_candidates(c, index, exposures).set_index("candid")
    tags = tags.reindex(cands["candid"].to_numpy())
    out["ssnamenr"] = tags["ssnamenr"].to_numpy(object)
    out["ssdistnr"] = tags["ssdistnr"].fillna(-999.0).to_numpy(float)
    out["ssmagnr"] = tags["ssmagnr"].fillna(-999.0).to_numpy(float)
    return out


# ----------------------------------------------------------------------------------------
# Linking (end of night)
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkRunConfig:
    """Settings of the end-of-night linking."""

    window_nights: int = 3  #: nights in the window, ending with the night linked
    min_snr: float = 5.0  #: smallest S/N of a detection used
    min_rb: float = 0.2  #: smallest real-bogus score of a detection used
    fit_orbits: bool = True  #: fit an orbit to each linkage, keep only those it accepts


@dataclass
class LinkOutcome:
    """What :func:`link_window` did."""

    end_night: str  #: last night of the window, YYYY-MM-DD
    ndet: int = 0  #: positive vetted detections in the window
    nstationary: int = 0  #: of them, stationary (dropped before linking)
    ntracklets: int = 0  #: tracklets built
    nlinkages: int = 0  #: linkages found by the linker
    ntracks: int = 0  #: tracks stored (``ss_tracks`` rows)
    nknown: int = 0  #: tracks that are a known object (majority ``ssnamenr``)
    timings: dict[str, float] = field(default_factory=dict)  #: seconds per step
    tracks: pd.DataFrame | None = None  #: the stored track rows


def window_detections(engine: Engine, end_night: str | dt.date, config: LinkRunConfig
                      ) -> pd.DataFrame:
    """Positive, vetted candidates of the window, in the linker's detection schema.

    Columns: ``det_id`` (= ``candid``), ``mjd`` (UTC, mid-exposure), ``ra``, ``dec``,
    ``sigma`` (arcsec: seeing / (2.355 S/N) with a 70 mas floor), ``mag``, ``fid``,
    ``expid``, ``field``, ``ssnamenr``, ``rb``.
    """
    end = nid_of(parse_night(end_night))
    with session(engine) as s:
        rows = s.execute(
            select(Candidate.candid, Candidate.jd, Candidate.ra, Candidate.dec,
                   Candidate.magpsf, Candidate.sigmapsf, Candidate.fid, Candidate.field,
                   Candidate.rb, Candidate.ssnamenr, Candidate.record,
                   DiffImageRecord.expid)
            .join(DiffImageRecord, DiffImageRecord.pid == Candidate.pid)
            .where(Candidate.nid > end - config.window_nights, Candidate.nid <= end,
                   Candidate.isdiffpos == "t")
        ).all()
    cols = ["candid", "jd", "ra", "dec", "magpsf", "sigmapsf", "fid", "field", "rb",
            "ssnamenr", "record", "expid"]
    df = pd.DataFrame(rows, columns=cols)
    if len(df) == 0:
        return pd.DataFrame(columns=["det_id", "mjd", "ra", "dec", "sigma", "mag", "fid",
                                     "expid", "field", "ssnamenr", "rb"])
    snr, sigma = astrometric_sigma(df["sigmapsf"].astype(float),
                                   df["record"].map(lambda r: (r or {}).get("fwhm")).astype(float))
    det = pd.DataFrame({
        "det_id": df["candid"].astype(np.int64), "mjd": df["jd"].astype(float) - MJD_JD,
        "ra": df["ra"].astype(float), "dec": df["dec"].astype(float), "sigma": sigma,
        "mag": df["magpsf"].astype(float), "fid": df["fid"].astype(int),
        "expid": df["expid"].astype(np.int64), "field": df["field"].astype(int),
        "ssnamenr": df["ssnamenr"], "rb": df["rb"].astype(float), "snr": snr,
    })
    keep = (det["snr"] >= config.min_snr) & (det["rb"].fillna(0.0) >= config.min_rb)
    return det[keep].sort_values(["mjd", "det_id"]).reset_index(drop=True)


def fit_track_orbit(dets: pd.DataFrame, designation: str = "track"):
    """:func:`zsds.moving.orbitfit.fit_orbit` of a track's detections (columns ``mjd``,
    ``ra``, ``dec``, ``sigma``), as the linking check and ``zsds moving`` use it."""
    from zsds.moving.orbitfit import fit_orbit

    return fit_orbit(dets[["mjd", "ra", "dec", "sigma"]].reset_index(drop=True),
                     designation=designation)


def link_detections(dets: pd.DataFrame, config: LinkRunConfig = LinkRunConfig()
                    ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Stationary removal, tracklets, HelioLinC linking and the orbit-fit check (pure).

    Returns
    -------
    linkages, link_members : DataFrame
        As :func:`zsds.moving.heliolinc.link`.
    stats : dict
        Counts and timings.
    """
    import time

    from zsds.moving.heliolinc import link
    from zsds.moving.tracklets import make_tracklets, remove_stationary

    t0 = time.perf_counter()
    keep = remove_stationary(dets)
    moving = dets[keep].reset_index(drop=True)
    t1 = time.perf_counter()
    trk, members = make_tracklets(moving)
    t2 = time.perf_counter()

    def accept(df: pd.DataFrame) -> tuple[bool, float]:
        f = fit_track_orbit(df)
        return bool(f.ok), -float(f.rms_arcsec)

    linkages, link_members = link(trk, members, moving, accept=accept if config.fit_orbits
                                  else None)
    t3 = time.perf_counter()
    stats = {"ndet": len(dets), "nstationary": int((~keep).sum()), "ntracklets": len(trk),
             "nlinkages": len(linkages), "stationary_s": t1 - t0, "tracklets_s": t2 - t1,
             "link_s": t3 - t2}
    return linkages, link_members, stats


def link_window(home: Home, engine: Engine, end_night: str | dt.date,
                config: LinkRunConfig = LinkRunConfig()) -> LinkOutcome:
    """Link the window of nights ending with ``end_night`` and store its tracks (idempotent).

    Every accepted linkage becomes an ``ss_tracks`` row (named by :func:`track_name` in
    order of first detection) with its fitted orbit, and its detections ``ss_track_members``
    rows; the window's previous tracks are replaced. A track whose members mostly carry the
    same ``ssnamenr`` is that known object.
    """
    date = parse_night(end_night)
    end_nid = nid_of(date)
    key = f"{date:%Y-%m-%d}"
    out = LinkOutcome(key)
    with job(engine, "moving", key):
        dets = window_detections(engine, date, config)
        out.ndet = len(dets)
        rows: list[dict] = []
        members: list[dict] = []
        if len(dets):
            linkages, link_members, stats = link_detections(dets, config)
            out.nstationary = int(stats["nstationary"])
            out.ntracklets = int(stats["ntracklets"])
            out.nlinkages = len(linkages)
            out.timings = {k: v for k, v in stats.items() if k.endswith("_s")}
            by_det = dets.set_index("det_id")
            groups = [(lid, by_det.loc[g["det_id"].to_numpy()].reset_index())
                      for lid, g in link_members.groupby("link_id")]
            groups.sort(key=lambda item: (item[1]["mjd"].min(), int(item[1]["det_id"].min())))
            for rank, (_lid, g) in enumerate(groups):
                g = g.sort_values("mjd").reset_index(drop=True)
                name = track_name(end_nid, rank)
                rows.append(_track_row(name, end_nid, config, g))
                fit = fit_track_orbit(g, name)
                rows[-1].update(_orbit_columns(fit, g))
                rej = fit.rejected if fit.rejected is not None else np.zeros(len(g), bool)
                members += [{"trksub": name, "candid": int(d), "jd": float(m) + MJD_JD,
                             "ra": float(r), "dec": float(dd), "rejected": bool(x)}
                            for d, m, r, dd, x in zip(g["det_id"], g["mjd"], g["ra"],
                                                      g["dec"], rej, strict=True)]
        _store_tracks(engine, end_nid, rows, members)
        out.ntracks = len(rows)
        out.nknown = sum(r["designation"] is not None for r in rows)
        out.tracks = pd.DataFrame(rows)
    return out


def _track_row(name: str, end_nid: int, config: LinkRunConfig, g: pd.DataFrame) -> dict:
    from zsds.moving.tracklets import night_index

    nights = np.unique(night_index(g["mjd"].to_numpy()))  # split at local noon at Palomar
    ss = g["ssnamenr"].dropna()
    ss = ss[ss != ""]
    designation = None
    if len(ss):
        top = ss.value_counts()
        if top.iloc[0] > 0.5 * len(g):
            designation = str(top.index[0])
    return {"trksub": name, "window_end": end_nid, "window_nights": config.window_nights,
            "designation": designation, "ndet": len(g), "nnights": len(nights),
            "jdstart": float(g["mjd"].min() + MJD_JD), "jdend": float(g["mjd"].max() + MJD_JD),
            "ra": float(g["ra"].iloc[0]), "dec": float(g["dec"].iloc[0])}


def _orbit_columns(fit, g: pd.DataFrame) -> dict:
    cols: dict = {"orbit_ok": bool(fit.ok),
                  "rms": float(fit.rms_arcsec) if np.isfinite(fit.rms_arcsec) else None,
                  "fit": {"message": fit.message, "chi2": float(fit.chi2), "dof": int(fit.dof),
                          "n_used": int(fit.n_used), "arc_days": float(fit.arc_days)}}
    if fit.orbit is not None:
        o = fit.orbit
        for k in ("a", "e", "inc", "node", "argperi", "mean_anomaly", "epoch"):
            cols[k] = float(getattr(o, k)[0])
        # Absolute magnitude from the detections: H = m - 5 log10(r delta) - phase term.
        from zsds.solar.ephemeris import ephemerides, hg_magnitude

        eph = ephemerides(o[np.zeros(len(g), int)], g["mjd"].to_numpy())
        dm = g["mag"].to_numpy() - hg_magnitude(0.0, 0.15, eph["r"].to_numpy(),
                                                  eph["delta"].to_numpy(),
                                                  eph["phase"].to_numpy())
        # ZTF bands to V (mean asteroid colours, zsds.sim.scene.ASTEROID_COLOUR).
        dm = dm - g["fid"].map({1: 0.28, 2: -0.18, 3: -0.30}).fillna(0.0).to_numpy()
        cols["H"] = float(np.nanmedian(dm)) if np.isfinite(dm).any() else None
    return cols


def _store_tracks(engine: Engine, end_nid: int, rows: list[dict], members: list[dict]) -> None:
    with session(engine) as s:
        old = select(SSTrack.track_id).where(SSTrack.window_end == end_nid)
        s.execute(delete(SSTrackMember).where(SSTrackMember.track_id.in_(old)))
        s.execute(delete(SSTrack).where(SSTrack.window_end == end_nid))
        s.flush()
        ids = {}
        for r in rows:
            t = SSTrack(**r)
            s.add(t)
            s.flush()
            ids[r["trksub"]] = t.track_id
        for m in members:
            s.add(SSTrackMember(track_id=ids[m.pop("trksub")], **m))


def _mpc_designation(value: object) -> str | None:
    """``value`` if it is an MPC designation (number or provisional), else None."""
    import mpc_designation

    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if text.isdigit():
        return text
    try:
        mpc_designation.detect_format(text)
    except mpc_designation.MPCDesignationError:
        return None
    return text


def report_observations(engine: Engine, end_night: str | dt.date, known_within: float = 2.0
                        ) -> pd.DataFrame:
    """Observations to report for the window ending with ``end_night``.

    * every detection of the window's tracks: a new object's under its ``trkSub``, a known
      object's under its designation (``disc`` marks a new track's first detection);
    * the end night's detections tagged in real time as a known object within
      ``known_within`` arcsec, under its designation.

    Designations that are not MPC designations (the simulator's are not) are reported as
    ``trkSub``. Columns are those of :func:`zsds.moving.report.format_mpc80`.
    """
    date = parse_night(end_night)
    end_nid = nid_of(date)
    with session(engine) as s:
        tracks = s.execute(
            select(SSTrack.trksub, SSTrack.designation, SSTrackMember.candid,
                   SSTrackMember.rejected)
            .join(SSTrackMember, SSTrackMember.track_id == SSTrack.track_id)
            .where(SSTrack.window_end == end_nid)).all()
        tagged = s.execute(select(Candidate.candid, Candidate.ssnamenr, Candidate.record)
                           .where(Candidate.nid == end_nid, Candidate.ssnamenr.is_not(None),
                                  Candidate.isdiffpos == "t")).all()
        want = {int(c) for _t, _d, c, rej in tracks if not rej}
        want |= {int(c) for c, _n, r in tagged
                 if float((r or {}).get("ssdistnr", -999.0)) <= known_within
                 and float((r or {}).get("ssdistnr", -999.0)) >= 0.0}
        rows = s.execute(select(Candidate.candid, Candidate.jd, Candidate.ra, Candidate.dec,
                                Candidate.magpsf, Candidate.sigmapsf, Candidate.fid,
                                Candidate.ssnamenr, Candidate.record)
                         .where(Candidate.candid.in_(sorted(want)))).all() if want else []
    ident: dict[int, tuple[str | None, str | None, bool]] = {}
    for trksub, des, candid, rej in tracks:
        if not rej:
            ident[int(candid)] = (des, trksub, des is None)
    out = []
    for candid, jd, ra, dec, mag, smag, fid, ssname, rec in rows:
        des, trk, new = ident.get(int(candid), (ssname, None, False))
        mpc = _mpc_designation(des)
        if mpc is None and des is not None:
            trk = "".join(ch for ch in str(des) if ch.isalnum())[:7]
        fwhm_px = (rec or {}).get("fwhm")
        snr_a, sig_a = astrometric_sigma(smag if smag is not None else 0.1,
                                         np.nan if fwhm_px is None else fwhm_px)
        snr, sig = float(snr_a), float(sig_a)
        fwhm = 2.0 if fwhm_px is None else float(fwhm_px) * 1.012
        out.append({"candid": int(candid), "mjd": float(jd) - MJD_JD, "ra": float(ra),
                    "dec": float(dec), "mag": float(mag) if mag is not None else np.nan,
                    "sigma_mag": float(smag) if smag is not None else np.nan,
                    "band": {1: "g", 2: "r", 3: "i"}.get(int(fid), "r"),
                    "sigma_ra": sig, "sigma_dec": sig, "snr": snr,
                    "seeing": fwhm, "exptime": float((rec or {}).get("exptime") or 30.0),
                    "designation": mpc, "trksub": None if mpc else trk, "new": bool(new)})
    cols = ["candid", "mjd", "ra", "dec", "mag", "sigma_mag", "band", "sigma_ra", "sigma_dec",
            "snr", "seeing", "exptime", "designation", "trksub", "new"]
    return pd.DataFrame(out, columns=cols).sort_values(["mjd", "candid"]).reset_index(drop=True)


def write_reports(home: Home, engine: Engine, end_night: str | dt.date,
                  out_dir: Path | None = None, validate: bool = True) -> dict[str, Path]:
    """Write the window's MPC 80-column (``.mpc80``) and ADES PSV (``.psv``) reports.

    Files go to ``products/moving/YYYYMMDD/`` unless ``out_dir`` is given:
    ``ztf_YYYYMMDD_I41_obs.mpc80`` and ``ztf_YYYYMMDD_I41_obs.psv`` (the same observations;
    new objects' first detections carry the discovery asterisk). The PSV is validated
    against the MPC's submission schema with ``iau-ades``; with nothing to report only the
    80-column header is written.

    Raises
    ------
    ValueError
        If the PSV does not validate.
    """
    from zsds.moving.report import format_ades_psv, format_mpc80, mpc80_header

    date = parse_night(end_night)
    obs = report_observations(engine, date)
    folder = out_dir or home.products / "moving" / f"{date:%Y%m%d}"
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"ztf_{date:%Y%m%d}_I41_obs"
    paths = {"mpc80": stem.with_suffix(".mpc80"), "ades": stem.with_suffix(".psv")}
    lines = mpc80_header(comment=f"zsds moving-object report, window ending {date}")
    psv = ""
    if len(obs):
        new, old = obs[obs["new"]], obs[~obs["new"]]
        lines += format_mpc80(old) + (format_mpc80(new, discovery=True) if len(new) else [])
        psv = format_ades_psv(obs, discovery=False)
        if validate:
            from zsds.moving.report import validate_ades

            ok, msg = validate_ades(psv)
            if not ok:
                raise ValueError(f"ADES report of {date} does not validate: {msg}")
    if not psv:  # nothing to report: an ADES submission needs at least one observation
        paths["ades"].unlink(missing_ok=True)
        del paths["ades"]
    for key, text in (("mpc80", "\n".join(lines) + "\n"), ("ades", psv)):
        if key in paths:
            tmp = paths[key].with_suffix(paths[key].suffix + ".tmp")
            tmp.write_text(text)
            tmp.replace(paths[key])
    return paths
