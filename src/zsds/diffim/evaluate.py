"""Science quality of subtraction, extraction and vetting, against the simulator's truth.

For each calibrated science quadrant with a reference, a set of artificial point sources
("fakes", the standard completeness method) is injected into the calibrated science pixels with
the image's own PSF model and Poisson noise, over a range of magnitudes; the quadrant is then
subtracted and its candidates measured exactly as in :func:`zsds.diffim.run.subtract_quadrant`
(nothing is written). Every candidate is labelled:

* ``real = 1``: within 1.5 px of a fake;
* ``astro`` (``real = -1``): within 2" of a simulated transient or asteroid (truth ``kind`` 3,
  4), or of a star whose truth flux in this epoch differs from its median over the reference's
  input epochs by more than 2 sigma of the difference image's PSF flux (a variable or flare) --
  real sky events, neither fakes nor bogus;
* ``real = 0`` (bogus): everything else.

Figures (:func:`summarize`): completeness of fakes with true S/N >= 6 (true S/N from the fake's
flux and the difference image's PSF noise), median ``magpsf - mag_true`` at S/N > 20, and the
number of bogus candidates per quadrant passing the packet cuts with ``rb`` at or above the
model's threshold. The labelled table also trains the real-bogus model (``zsds rb train``).
Only evaluation code reads the truth; the pipeline never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from sqlalchemy import select
from sqlalchemy.engine import Engine

from zsds.core.home import Home
from zsds.core.image import QuadrantImage
from zsds.core.naming import parse_night
from zsds.db.engine import session
from zsds.db.schema import Exposure, QuadrantProduct, Reference
from zsds.diffim.candidates import measure_candidates
from zsds.diffim.run import (
    SubtractRunConfig,
    candidate_context,
    latest_reference,
    read_reference,
    read_science,
    score_real_bogus,
)
from zsds.diffim.stage import subtract

__all__ = ["FakeConfig", "evaluate_home", "inject_fakes", "label_candidates", "reference_of",
           "summarize"]


@dataclass(frozen=True)
class FakeConfig:
    """Artificial sources per quadrant: count, magnitude range (relative to the image's MAGLIM),
    edge margin and the minimum distance from catalogue sources (pixels; 0 allows any)."""

    n: int = 40
    dmag: tuple[float, float] = (-5.0, 0.5)
    edge: int = 20
    seed: int = 7


def inject_fakes(img: QuadrantImage, config: FakeConfig, rng: np.random.Generator
                 ) -> pd.DataFrame:
    """Add point sources to ``img.data`` in place; returns their ``x, y, mag, flux`` (DN)."""
    ny, nx = img.shape
    e = config.edge
    n = config.n
    x = rng.uniform(e, nx - 1 - e, n)
    y = rng.uniform(e, ny - 1 - e, n)
    maglim = float(img.header["MAGLIM"])
    mag = maglim + rng.uniform(*config.dmag, n)
    zp = float(img.header["MAGZP"])
    gain = float(img.header["GAIN"])
    flux = 10.0 ** (-0.4 * (mag - zp))
    size = 31
    h = size // 2
    stamps = img.psf.stamps(x, y, size)
    for k in range(n):
        ix, iy = round(float(x[k])), round(float(y[k]))
        st = stamps[k] / stamps[k].sum()
        e_img = rng.poisson(np.clip(flux[k] * st * gain, 0, None)) / gain
        ys, ye, xs, xe = max(iy - h, 0), min(iy + h + 1, ny), max(ix - h, 0), min(ix + h + 1, nx)
        img.data[ys:ye, xs:xe] += e_img[ys - iy + h:ye - iy + h,
                                        xs - ix + h:xe - ix + h].astype(np.float32)
    return pd.DataFrame({"x": x, "y": y, "mag": mag, "flux": flux})


def quadrant_truth(home: Home, expid: int, ccdid: int, qid: int, ref_expids: list[int]
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Truth sources of the quadrant in this epoch, and the star magnitudes of the epochs that
    went into its reference (what the difference is relative to)."""
    hits = sorted(home.truth.glob(f"*/{expid}"))
    if not hits:
        return pd.DataFrame(), pd.DataFrame()
    f = hits[0] / f"c{ccdid:02d}_sources.parquet"
    now = pd.read_parquet(f) if f.exists() else pd.DataFrame()
    now = now[now.qid == qid] if len(now) else now
    mags, movers = [], []
    for e in ref_expids:
        for d in home.truth.glob(f"*/{e}"):
            p = d / f"c{ccdid:02d}_sources.parquet"
            if p.exists():
                t = pd.read_parquet(p, columns=["qid", "id", "kind", "mag", "ra", "dec"])
                t = t[t.qid == qid]
                mags.append(t[t.kind == 1][["id", "mag"]])
                # A transient or asteroid in the reference leaves a negative event later.
                movers.append(t[t.kind.isin([3, 4])])
    if movers and len(now):
        now = pd.concat([now] + [m.assign(x=np.nan, y=np.nan) for m in movers],
                        ignore_index=True)
    return now, (pd.concat(mags) if mags else pd.DataFrame(columns=["id", "mag"]))


def reference_of(engine: Engine, home: Home, row: QuadrantProduct,
                 cache: dict[tuple, tuple | None]
                 ) -> tuple[Reference, QuadrantImage, pd.DataFrame] | None:
    """The latest reference of the quadrant of science product ``row`` as (the database row,
    the co-add, its PSF-fit catalogue), or None when the quadrant has none; each quadrant's
    (field, ccdid, qid, fid) is looked up and read once, through ``cache``."""
    key = (row.field, row.ccdid, row.qid, row.fid)
    if key not in cache:
        ref = latest_reference(engine, *key)
        cache[key] = (ref, *read_reference(home, ref)) if ref is not None else None
    return cache[key]


def label_candidates(cand: pd.DataFrame, fakes: pd.DataFrame, truth: pd.DataFrame,
                     star_mags: pd.DataFrame, zp: float, flux_sigma: float
                     ) -> tuple[pd.DataFrame, np.ndarray]:
    """Add ``real`` (1 fake, 0 bogus, -1 astrophysical) to candidates; detected flags of fakes."""
    cand = cand.copy()
    cand["real"] = 0
    detected = np.zeros(len(fakes), bool)
    cand["fake_mag"] = np.nan
    if len(cand) and len(fakes):
        tree = cKDTree(np.column_stack([cand.x, cand.y]))
        d, j = tree.query(np.column_stack([fakes.x, fakes.y]), distance_upper_bound=1.5)
        detected = np.isfinite(d)
        hit = j[detected]
        pos = cand["isdiffpos"].to_numpy()[hit] == "t"
        detected[detected] = pos
        cand.loc[cand.index[hit[pos]], "real"] = 1
        cand.loc[cand.index[hit[pos]], "fake_mag"] = fakes.mag.to_numpy()[detected]
    if len(cand) and len(truth):
        astro = truth[truth.kind.isin([3, 4])]
        stars = truth[truth.kind == 1]
        if len(star_mags) and len(stars):
            med = star_mags.groupby("id")["mag"].median()
            m0 = med.reindex(stars["id"]).to_numpy()
            dflux = np.abs(10 ** (-0.4 * (stars.mag.to_numpy() - zp)) - 10 ** (-0.4 * (m0 - zp)))
            var = stars[dflux > 2.0 * flux_sigma]
            astro = pd.concat([astro, var])
        if len(astro):
            # Matched on the sky (2"): reference-epoch sources have no position on this grid.
            cosd = np.cos(np.radians(cand.dec.to_numpy().mean()))
            t = cKDTree(np.column_stack([astro.ra.to_numpy() * cosd, astro.dec.to_numpy()]))
            d, _ = t.query(np.column_stack([cand.ra.to_numpy() * cosd, cand.dec.to_numpy()]),
                           distance_upper_bound=2.0 / 3600.0)
            cand.loc[np.isfinite(d) & (cand.real == 0).to_numpy(), "real"] = -1
    return cand, detected


def evaluate_home(home: Home, engine: Engine, config: SubtractRunConfig | None = None,
                  fakes: FakeConfig | None = None, limit: int | None = None,
                  progress=None, night: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Inject, subtract and label every quadrant with a reference (of one night if given).

    Epochs that went into their reference are skipped when the selection has others.

    Returns ``(candidates, fakes)`` over all quadrants (column ``pid`` identifies the image).
    """
    config = config or SubtractRunConfig()
    fakes = fakes or FakeConfig()
    with session(engine) as s:
        rows = s.execute(select(QuadrantProduct).join(
            Exposure, Exposure.expid == QuadrantProduct.expid).where(
            QuadrantProduct.kind == "sciimg").where(
            True if night is None else Exposure.night == parse_night(night))
            .order_by(Exposure.mjd, QuadrantProduct.pid)).scalars().all()
        for r in rows:
            s.expunge(r)
    rng = np.random.default_rng(fakes.seed)
    cands, fks = [], []
    refs: dict[tuple, tuple | None] = {}
    rows = rows[:limit] if limit else rows
    with session(engine) as s:
        used = {int(p) for r in s.execute(select(Reference.input_pids)).scalars() for p in r}
    all_in_refs = all(r.pid in used for r in rows)
    for k, row in enumerate(rows):
        if (found := reference_of(engine, home, row, refs)) is None:
            continue
        ref, refimg, ref_cat = found
        if row.pid in ref.input_pids and not all_in_refs:
            continue
        sci, sci_cat = read_science(home, row.relpath)
        fk = inject_fakes(sci, fakes, rng)
        diff = subtract(sci, refimg, config.subtract, sci_cat, ref_cat)
        cand = measure_candidates(diff, config.candidates)
        zp = float(diff.header["MAGZP"])
        flux_sigma = 10 ** (-0.4 * (float(diff.header["DIFFMLIM"]) - zp)) / 5.0
        fk["snr_true"] = fk.flux / flux_sigma
        fk["pid"] = row.pid
        if len(cand):
            cand = candidate_context(home, cand, ref_cat, diff.header)
            cand["rb"] = score_real_bogus(cand, config.score_rb)[0]
            cand["passed"] = config.cuts.apply(cand)
        truth, star_mags = quadrant_truth(home, row.expid, row.ccdid, row.qid,
                                  sorted({int(p) // 10_000 for p in ref.input_pids}))
        cand, det = label_candidates(cand, fk, truth, star_mags, zp, flux_sigma)
        fk["detected"] = det
        cand["pid"] = row.pid
        cands.append(cand)
        fks.append(fk)
        if progress:
            progress(k + 1, len(rows), Path(row.relpath).name)
    return (pd.concat(cands, ignore_index=True) if cands else pd.DataFrame(),
            pd.concat(fks, ignore_index=True) if fks else pd.DataFrame())


def summarize(cand: pd.DataFrame, fakes: pd.DataFrame, threshold: float | None) -> dict:
    """Completeness, photometric bias and false candidates per quadrant (module docstring)."""
    out: dict[str, float] = {"n_quadrants": int(fakes.pid.nunique()) if len(fakes) else 0}
    bright = fakes[fakes.snr_true >= 6]
    out["n_fakes_snr6"] = len(bright)
    out["completeness_snr6"] = float(bright.detected.mean()) if len(bright) else np.nan
    real = cand[cand.real == 1]
    m = real[(real.snr > 20) & real.fake_mag.notna()]
    out["median_dmag_snr20"] = float(np.median(m.magpsf - m.fake_mag)) if len(m) else np.nan
    out["n_dmag_snr20"] = len(m)
    bogus = cand[cand.real == 0]
    nq = max(out["n_quadrants"], 1)
    out["bogus_per_quadrant"] = len(bogus) / nq
    out["bogus_passed_per_quadrant"] = float(bogus.passed.sum()) / nq if len(bogus) else 0.0
    if threshold is not None and "rb" in cand and cand.rb.notna().any():
        ok = bogus.passed & (bogus.rb >= threshold)
        out["false_after_rb_per_quadrant"] = float(ok.sum()) / nq
        rp = real[real.passed]
        out["real_passed_kept_by_rb"] = float((rp.rb >= threshold).mean()) if len(rp) else np.nan
        out["rb_threshold"] = threshold
    return out
