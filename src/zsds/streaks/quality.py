"""Streak finding measured on the pipeline's own difference images (injected trails).

The standard completeness method, as for point sources (:mod:`zsds.diffim.evaluate`): into
each calibrated science quadrant of a night that has a reference, trails are injected with the
image's own PSF model (points every 0.7 px sharing the flux, Poisson noise), the quadrant is
subtracted with ZOGY exactly as the pipeline does (nothing is written) and searched with
:func:`zsds.diffim.run.find_diff_streaks`. The true integrated S/N of each trail is its
flux times :func:`~zsds.streaks.fit.trail_norm` over the difference image's noise along it. A
found streak (``rb >= 0.5``) matches a trail when its midpoint lies within max(5 px, L/4) of
the segment and the angles agree within 10 deg; every other one is false.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
from astropy.stats import mad_std
from sqlalchemy import select
from sqlalchemy.engine import Engine

from zsds.core.geometry import point_segment_distance
from zsds.core.home import Home
from zsds.core.image import QuadrantImage
from zsds.core.instrument import PIXEL_SCALE, QUAD_NX, QUAD_NY
from zsds.core.naming import parse_night
from zsds.db.engine import session
from zsds.db.schema import Exposure, QuadrantProduct

__all__ = ["evaluate_injected_streaks", "inject_trails", "match_trails",
           "training_from_pipeline"]


def _segments_apart(a: tuple[float, float, float, float],
                    b: tuple[float, float, float, float], gap: float) -> bool:
    """Whether two segments stay ``gap`` px apart (they do not cross and no end point of one
    comes within ``gap`` of the other)."""
    def side(p: tuple[float, float], q: tuple[float, float], r: tuple[float, float]) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    a0, a1, b0, b1 = a[:2], a[2:], b[:2], b[2:]
    if side(a0, a1, b0) * side(a0, a1, b1) < 0 and side(b0, b1, a0) * side(b0, b1, a1) < 0:
        return False
    d = point_segment_distance
    return min(d(*b0, a), d(*b1, a), d(*a0, b), d(*a1, b)) >= gap


def inject_trails(img: QuadrantImage, rng: np.random.Generator, n: int = 3,
                  length: tuple[float, float] = (8.0, 200.0),
                  snr: tuple[float, float] = (5.0, 60.0), margin: float = 12.0,
                  min_gap: float = 20.0) -> pd.DataFrame:
    """Add ``n`` trails to ``img.data`` in place; returns ``x0, y0, x1, y1, flux`` (DN).

    Lengths and nominal S/N are log-uniform; the flux for a nominal S/N uses the image's
    robust background noise times sqrt(2) (the difference of two images of similar depth).
    Trails are kept ``min_gap`` px apart, as in the synthetic evaluation: two trails that
    touch are one streak to the search (and to an observer), so a test that injects them
    would count a correct detection as a false one.
    """
    from zsds.streaks.fit import trail_norm

    ny, nx = img.shape
    gain = float(img.header.get("GAIN", 1.0))
    d = img.data[::2, ::2]
    sky_sigma = float(mad_std(d, ignore_nan=True))  # robust: stars
    fwhm = float(img.header.get("SEEING", 2.0)) / PIXEL_SCALE
    rows: list[tuple[float, float, float, float, float]] = []
    for _ in range(100 * n):
        if len(rows) == n:
            break
        L = float(np.exp(rng.uniform(*np.log(length))))
        ang = rng.uniform(0.0, np.pi)
        dx, dy = 0.5 * L * np.cos(ang), 0.5 * L * np.sin(ang)
        xc = rng.uniform(margin + abs(dx), nx - 1 - margin - abs(dx))
        yc = rng.uniform(margin + abs(dy), ny - 1 - margin - abs(dy))
        s = float(np.exp(rng.uniform(*np.log(snr))))
        flux = s * np.sqrt(2.0) * sky_sigma / float(trail_norm(L, fwhm / 2.3548))
        seg = (xc - dx, yc - dy, xc + dx, yc + dy)
        if all(_segments_apart(seg, r[:4], min_gap) for r in rows):
            rows.append((*seg, flux))
    tr = pd.DataFrame(rows, columns=["x0", "y0", "x1", "y1", "flux"])
    size = 25
    h = size // 2
    for t in tr.itertuples():
        npt = max(2, int(np.hypot(t.x1 - t.x0, t.y1 - t.y0) / 0.7) + 1)
        u = np.linspace(0.0, 1.0, npt)
        px, py = t.x0 + u * (t.x1 - t.x0), t.y0 + u * (t.y1 - t.y0)
        stamps = img.psf.stamps(px, py, size)
        stamps = stamps / stamps.sum(axis=(1, 2), keepdims=True) * (t.flux / npt)
        add = np.zeros((ny + size, nx + size), np.float64)
        for k in range(npt):  # a few hundred stamps per trail: no per-pixel loop
            ix, iy = round(float(px[k])), round(float(py[k]))
            add[iy:iy + size, ix:ix + size] += stamps[k]
        add = add[h:h + ny, h:h + nx]
        img.data += (rng.poisson(np.clip(add * gain, 0, None)) / gain).astype(np.float32)
    return tr


def match_trails(found: pd.DataFrame, truth: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Which truth trails a found streak matches: its midpoint within max(5 px, length / 4) of
    the trail's segment and its angle within 10 degrees. Returns (``hit`` per truth trail,
    ``real`` per found streak)."""
    hit = np.zeros(len(truth), bool)
    real = np.zeros(len(found), bool)
    for i, f in enumerate(found.itertuples()):
        for k, t in enumerate(truth.itertuples()):
            seg = (t.x0, t.y0, t.x1, t.y1)
            L = float(np.hypot(t.x1 - t.x0, t.y1 - t.y0))
            tang = float(np.degrees(np.arctan2(t.y1 - t.y0, t.x1 - t.x0)) % 180.0)
            dang = abs((float(f.angle) - tang + 90.0) % 180.0 - 90.0)
            if point_segment_distance(float(f.xmid), float(f.ymid), seg) <= max(5.0, L / 4) and \
                    dang <= 10.0:
                hit[k] = real[i] = True
    return hit, real


def evaluate_injected_streaks(home: Home, engine: Engine, night: str | dt.date,
                              n_per_image: int = 3, seed: int = 5, rb_min: float = 0.5,
                              limit: int | None = None) -> dict[str, Any]:
    """Inject, subtract and search every quadrant of a night with a reference.

    Returns
    -------
    dict
        ``n_images``, ``n_true_snr10``, ``completeness_snr10`` (rb >= ``rb_min``),
        ``by_snr`` (completeness per S/N bin), ``n_false``, ``false_per_quadrant`` (scaled to
        a full 3072 x 3080 quadrant by area), the ``truth`` table (``found`` with the rb cut,
        ``found_any_rb`` without) and the ``found`` table (``rb`` and ``real`` of every streak
        found with its classifier features, for choosing a threshold or training).
    """
    from zsds.diffim.run import (
        SubtractRunConfig,
        find_diff_streaks,
        latest_reference,
        read_reference,
        read_science,
    )
    from zsds.diffim.stage import subtract
    from zsds.streaks.features import RB_FEATURES
    from zsds.streaks.fit import trail_norm

    cfg = SubtractRunConfig()
    with session(engine) as s:
        rows = s.execute(select(QuadrantProduct).join(
            Exposure, Exposure.expid == QuadrantProduct.expid).where(
            QuadrantProduct.kind == "sciimg", Exposure.night == parse_night(night))
            .order_by(Exposure.mjd, QuadrantProduct.pid)).scalars().all()
        for r in rows:
            s.expunge(r)
    rng = np.random.default_rng(seed)
    truths, scored, n_false, area, n_img = [], [], 0, 0.0, 0
    for row in rows[:limit] if limit else rows:
        ref = latest_reference(engine, row.field, row.ccdid, row.qid, row.fid)
        if ref is None:
            continue
        sci, sci_cat = read_science(home, row.relpath)
        refimg, ref_cat = read_reference(home, ref)
        tr = inject_trails(sci, rng, n_per_image)
        diff = subtract(sci, refimg, cfg.subtract, sci_cat, ref_cat)
        every = find_diff_streaks(diff)
        found = every[every["rb"] >= rb_min] if len(every) else every
        sig_psf = float(diff.header["DIFFFWHM"]) / 2.3548
        snr = []
        for t in tr.itertuples():
            L = float(np.hypot(t.x1 - t.x0, t.y1 - t.y0))
            xm, ym = round(0.5 * (t.x0 + t.x1)), round(0.5 * (t.y0 + t.y1))
            noise = float(np.nanmedian(diff.diff_sigma[max(ym - 3, 0):ym + 4,
                                                       max(xm - 3, 0):xm + 4]))
            snr.append(t.flux * float(trail_norm(L, sig_psf)) / noise)
        tr["snr_true"] = snr
        tr["length"] = np.hypot(tr.x1 - tr.x0, tr.y1 - tr.y0)
        hit, real = match_trails(found, tr) if len(found) else (np.zeros(len(tr), bool),
                                                          np.zeros(0, bool))
        tr["found"] = hit
        tr["found_any_rb"] = match_trails(every, tr)[0] if len(every) else False
        tr["pid"] = row.pid
        truths.append(tr)
        n_false += int((~real).sum())
        if len(every):
            real_any = match_trails(every, tr)[1]
            scored.append(every[list(RB_FEATURES)].assign(
                rb=every["rb"].to_numpy(), real=real_any, pid=row.pid))
        area += diff.shape[0] * diff.shape[1]
        n_img += 1
    truth = pd.concat(truths, ignore_index=True) if truths else pd.DataFrame(
        columns=["snr_true", "found"])
    bright = truth[truth["snr_true"] >= 10]
    bins = [5, 7, 10, 15, 20, 30, 50, np.inf]
    by = truth.groupby(pd.cut(truth["snr_true"], bins), observed=False)["found"]
    quads = area / (QUAD_NX * QUAD_NY) if area else 0.0
    return {"n_images": n_img, "n_true_snr10": len(bright),
            "completeness_snr10": float(bright["found"].mean()) if len(bright) else None,
            "completeness_snr10_no_rb": (float(bright["found_any_rb"].mean()) if len(bright)
                                         else None),
            "by_snr": {str(k): (round(float(v.mean()), 3), len(v)) for k, v in by if len(v)},
            "n_false": n_false, "false_per_quadrant": n_false / quads if quads else None,
            "truth": truth,
            "found": pd.concat(scored, ignore_index=True) if scored else pd.DataFrame()}


def training_from_pipeline(home: Home, engine: Engine, nights: list[str],
                           n_per_image: int = 4, seed: int = 11
                           ) -> tuple[pd.DataFrame, np.ndarray]:
    """Labelled streaks of the pipeline's own difference images: every streak found after
    injecting trails into the nights' quadrants (real = matches an injected trail), for
    :func:`zsds.streaks.train.train_streak_rb` (``extra=``)."""
    parts = [evaluate_injected_streaks(home, engine, n, n_per_image, seed + k)["found"]
             for k, n in enumerate(nights)]
    table = pd.concat([p for p in parts if len(p)], ignore_index=True)
    return table, table["real"].to_numpy(int)
