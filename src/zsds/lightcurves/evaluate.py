"""Light curves against the simulator's truth: photometric repeatability and periods.

For each matchfile of a home the reference sources are matched (1.5") to the true stars of
the quadrant (``truth/<night>/<expid>/cNN_sources.parquet`` of its latest epoch, joined with
the sky model's variability columns), then:

* **repeatability:** for bright (median S/N >= ``bright_snr``), unflagged, isolated (no other
  true star within 8" brighter than 3 mag fainter than it), non-variable stars with at least
  ``min_points`` good epochs, the rms over epochs of the raw (per-epoch PS1-calibrated) and of
  the refined magnitudes; the medians of both are the figures of merit;
* **periods:** for true periodic variables (sinusoids, RR Lyrae-like, detached and contact
  eclipsing binaries) with peak-to-peak amplitude >= ``min_amp`` and >= ``min_epochs`` good
  epochs, whether the best Lomb-Scargle period is the true one (within 1%), or for eclipsing
  binaries its half (the one-harmonic periodogram of two similar eclipses peaks there);
  "well measured" variables also have an amplitude >= 3 x their median error.

A small field holds too few variables for a rate, so :func:`period_recovery` also injects
the sky model's variables into a matchfile's cadence and noise.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from sqlalchemy import Engine, select

from zsds.core.home import Home
from zsds.core.sphere import chord_length, unit_vectors
from zsds.db import session
from zsds.lightcurves.build import BAD_CATFLAGS
from zsds.lightcurves.metrics import period_harmonic, period_matches
from zsds.sky.model import VAR_CONTACT, VAR_ECLIPSE, VAR_MIX, VAR_RRLYR, VAR_SINE

# Two eclipses per orbit: a one-harmonic periodogram may find half the period.
_TWO_MINIMA = (VAR_ECLIPSE, VAR_CONTACT)


@dataclass
class LightCurveQuality:
    """Figures of merit of the light curves of a home (see the module docstring)."""

    matchfiles: int
    n_bright: int
    rms_raw_mmag: float
    rms_refined_mmag: float
    n_periodic: int
    period_recovered: float
    n_periodic_well: int
    period_recovered_well: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _truth_stars(home: Home, expid: int, night: str, ccdid: int, qid: int) -> pd.DataFrame:
    """True stars on the quadrant at that exposure, with their variability columns."""
    from zsds.sky.model import SkyModel

    edir = home.truth / night / str(expid)
    src = pd.read_parquet(edir / f"c{ccdid:02d}_sources.parquet")
    src = src[(src["qid"] == qid) & (src["kind"] == 1)].copy()
    if src.empty:
        return src
    seed = json.loads((edir / "exposure.json").read_text())["sim_config"]["seed"]
    ra0, dec0 = float(src["ra"].median()), float(src["dec"].median())
    radius = float(np.max(np.hypot((src["ra"] - ra0) * np.cos(np.deg2rad(dec0)),
                                   src["dec"] - dec0))) + 0.01
    stars = SkyModel(home.truth / "sky", seed).stars_in_cone(ra0, dec0, radius)
    src["star_id"] = src["id"].astype(np.int64)
    cols = ["star_id", "var_type", "var_period", "var_amp"]
    return src.merge(stars[cols], on="star_id", how="left")


def evaluate_matchset(ms, truth: pd.DataFrame, bright_snr: float = 100.0,
                      min_points: int = 10, min_epochs: int = 30, min_amp: float = 0.1
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-star repeatability rows and per-variable period rows of one MatchSet."""
    sd = pd.DataFrame({k: ms.sourcedata[k] for k in ("matchid", "mag", "psfmag", "magerr",
                                                     "catflags", "snr")})
    sd["good"] = (sd["catflags"].to_numpy() & BAD_CATFLAGS) == 0
    g = sd[sd["good"]].groupby("matchid")
    per = pd.DataFrame({"n": g.size(), "rms_raw": g["psfmag"].std(),
                        "rms_ref": g["mag"].std(), "snr": g["snr"].median(),
                        "medmagerr": g["magerr"].median()})
    src = pd.DataFrame({"matchid": ms.sources["matchid"].astype(np.int64),
                        "ra": ms.sources["ra"], "dec": ms.sources["dec"],
                        "period": ms.sources["period"], "refmag": ms.sources["refmag"]})
    src = src.join(per, on="matchid", how="inner")
    if truth.empty or src.empty:
        return pd.DataFrame(), pd.DataFrame()
    txyz = unit_vectors(truth["ra"], truth["dec"])
    tree = cKDTree(txyz)
    dist, idx = tree.query(unit_vectors(src["ra"], src["dec"]),
                           distance_upper_bound=chord_length(1.5))
    ok = np.isfinite(dist)
    src = src[ok].copy()
    t = truth.iloc[idx[ok]].reset_index(drop=True)
    for c in ("mag", "var_type", "var_period", "var_amp"):
        src[f"true_{c}"] = t[c].to_numpy()
    # Isolation: no other true star within 8" brighter than (its magnitude + 3).
    near = tree.query_ball_point(unit_vectors(src["ra"], src["dec"]), chord_length(8.0))
    tmag = truth["mag"].to_numpy()
    src["isolated"] = [sum(tmag[j] < m + 3.0 for j in nb) <= 1
                       for nb, m in zip(near, src["true_mag"], strict=True)]
    bright = src[(src["snr"] >= bright_snr) & (src["n"] >= min_points)
                 & (src["true_var_type"] == 0) & src["isolated"]]
    var = src[(src["true_var_type"] > 0) & (src["true_var_amp"] >= min_amp)
              & (src["n"] >= min_epochs)].copy()
    if len(var):
        found, true = var["period"].to_numpy(float), var["true_var_period"].to_numpy(float)
        ecl = np.isin(var["true_var_type"].to_numpy(), _TWO_MINIMA)
        var["recovered"] = period_matches(found, true) | (ecl & period_harmonic(found, true))
        var["well_measured"] = var["true_var_amp"] >= 3.0 * var["medmagerr"]
    return bright, var


def evaluate_lightcurves(home: Home, engine: Engine, **kwargs) -> tuple[LightCurveQuality,
                                                                         pd.DataFrame,
                                                                         pd.DataFrame]:
    """Evaluate every matchfile of ``home``: (summary, bright-star rows, variable rows)."""
    from zsds.db.schema import Exposure, MatchfileRecord
    from zsds.lightcurves.matchfile import read_matchfile

    brights, variables = [], []
    with session(engine) as s:
        mfs = s.execute(select(MatchfileRecord)).scalars().all()
    for mf in mfs:
        ms = read_matchfile(home.path(mf.path))
        if not len(ms.exposures):
            continue
        last = ms.exposures[np.argmax(ms.exposures["obsmjd"])]
        with session(engine) as s:
            night = s.execute(select(Exposure.night).where(
                Exposure.expid == int(last["expid"]))).scalar_one()
        truth = _truth_stars(home, int(last["expid"]), f"{night:%Y%m%d}", mf.ccdid, mf.qid)
        b, v = evaluate_matchset(ms, truth, **kwargs)
        brights.append(b.assign(matchfile=mf.path))
        variables.append(v.assign(matchfile=mf.path))
    bright = pd.concat(brights, ignore_index=True) if brights else pd.DataFrame()
    var = pd.concat(variables, ignore_index=True) if variables else pd.DataFrame()

    def med(col: str) -> float:
        return float(np.median(bright[col]) * 1000.0) if len(bright) else float("nan")

    well = var[var["well_measured"]] if len(var) else var
    q = LightCurveQuality(
        matchfiles=len(mfs), n_bright=len(bright), rms_raw_mmag=med("rms_raw"),
        rms_refined_mmag=med("rms_ref"), n_periodic=len(var),
        period_recovered=float(var["recovered"].mean()) if len(var) else float("nan"),
        n_periodic_well=len(well),
        period_recovered_well=float(well["recovered"].mean()) if len(well) else float("nan"))
    return q, bright, var


def save_report(path: Path, quality: LightCurveQuality, periods: PeriodRecovery | None = None
                ) -> None:
    """Write the summary as JSON (for dashboards and the archive)."""
    doc: dict = quality.as_dict()
    if periods is not None:
        doc["injected_periods"] = {**asdict(periods), "overall": periods.overall}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def plot_quality(bright: pd.DataFrame, var: pd.DataFrame, path: Path) -> Path:
    """PNG: repeatability vs S/N (raw and refined, with the photon-noise expectation) and
    the periodogram's period against the true one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    if len(bright):
        a.loglog(bright["snr"], 1000 * bright["rms_raw"], ".", color="0.6", label="raw")
        a.loglog(bright["snr"], 1000 * bright["rms_ref"], ".", color="tab:blue",
                 label="refined")
        s = np.sort(bright["snr"].to_numpy())
        a.loglog(s, 1085.7 / s, "k:", label="photon noise")
        a.axhline(5.0, color="tab:red", lw=0.8, label="5 mmag")
    a.set_xlabel("median S/N")
    a.set_ylabel("rms over epochs (mmag)")
    a.set_title("repeatability of bright non-variable stars")
    a.legend(fontsize=8)
    if len(var):
        ok = var["recovered"].to_numpy(bool)
        b.loglog(var["true_var_period"][ok], var["period"][ok], "o", ms=4, label="recovered")
        b.loglog(var["true_var_period"][~ok], var["period"][~ok], "x", color="tab:red",
                 label="missed")
        lim = [0.1, 50]
        b.plot(lim, lim, "k:", lw=0.8)
        b.plot(lim, [v / 2 for v in lim], ":", color="0.6", lw=0.8)
    b.set_xlabel("true period (d)")
    b.set_ylabel("best Lomb-Scargle period (d)")
    b.set_title("periodic variables")
    b.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass
class PeriodRecovery:
    """Period recovery of simulated variables at a home's cadence and noise, per type.

    ``overall`` weights the per-type rates by the sky model's mix of types
    (:data:`zsds.sky.model.VAR_MIX`): the rate over the simulated population.
    """

    n_epochs: int
    baseline_days: float
    n: dict[str, int]
    recovered: dict[str, float]
    share: dict[str, float]

    @property
    def overall(self) -> float:
        tot = sum(self.share[k] for k in self.n if self.n[k])
        return (sum(self.recovered[k] * self.share[k] for k in self.n if self.n[k]) / tot
                if tot else float("nan"))


VAR_NAMES = {VAR_SINE: "sinusoid", VAR_RRLYR: "rrlyrae", VAR_ECLIPSE: "detached",
             VAR_CONTACT: "contact"}


def period_recovery(ms, n_per_type: int = 300, min_amp: float = 0.1,
                    mag_range: tuple[float, float] = (14.0, 19.0), seed: int = 1
                    ) -> tuple[PeriodRecovery, pd.DataFrame]:
    """Inject the sky model's periodic variables into a matchfile's cadence and noise.

    The light curves of real variables in a small simulated field are too few to measure a
    90% rate; this draws ``n_per_type`` of each type with the sky model's own distributions
    (:func:`zsds.sky.model.variability_params`, amplitudes >= ``min_amp``), computes their
    magnitudes with its light-curve shapes (:func:`zsds.sky.model.magnitudes_at`) at the
    matchfile's good epochs, adds Gaussian noise from the pipeline's measured
    error-versus-magnitude relation (median ``magerrmodel`` of the sources), and runs the
    same period search as the build.  Equal numbers per type give each rate the same
    precision; :attr:`PeriodRecovery.overall` weights them by the sky's mix.
    """
    from zsds.lightcurves.metrics import best_periods
    from zsds.sky.model import magnitudes_at, variability_params

    rng = np.random.default_rng(seed)
    good_ep = ms.exposures["badepoch"] == 0
    t = np.sort(ms.exposures["obsmjd"][good_ep].astype(float))
    src = ms.sources[(ms.sources["ngoodobs"] >= 5) & np.isfinite(ms.sources["medianmag"])]
    sd = ms.sourcedata
    med_err = pd.Series(sd["magerrmodel"]).groupby(sd["matchid"]).median()
    emag = src["medianmag"].astype(float)
    eerr = med_err.reindex(src["matchid"]).to_numpy(float)
    ok = np.isfinite(eerr)
    order = np.argsort(emag[ok])
    xm, ye = emag[ok][order], eerr[ok][order]
    vt = np.repeat(list(VAR_NAMES), n_per_type)
    n = vt.size
    period, amp = variability_params(rng, vt, min_amp=min_amp)
    base = rng.uniform(*mag_range, n)
    df = pd.DataFrame({"r": base, "var_type": vt.astype(np.int8), "var_period": period,
                       "var_amp": amp, "var_t0": 58000.0 + rng.uniform(size=n) * period})
    mags = magnitudes_at(df, "r", t[:, None]).T  # (n, n_epochs)
    err = np.interp(mags, xm, ye)  # the pipeline's error at each magnitude
    obs = mags + rng.normal(0, 1, mags.shape) * err
    ids = np.repeat(np.arange(n), t.size)
    found_ids, found, _ = best_periods(ids, np.tile(t, n), obs.ravel(), err.ravel(),
                                       np.ones(ids.size, bool))
    p = np.full(n, np.nan)
    p[found_ids] = found
    rec = period_matches(p, period) | (np.isin(vt, _TWO_MINIMA) & period_harmonic(p, period))
    table = pd.DataFrame({"type": [VAR_NAMES[int(v)] for v in vt], "period": period,
                          "amp": amp, "mag": base, "found": p, "recovered": rec})
    g = table.groupby("type")["recovered"]
    res = PeriodRecovery(int(t.size), float(np.ptp(t)) if t.size else 0.0,
                         {k: int(v) for k, v in g.size().items()},
                         {k: float(v) for k, v in g.mean().items()},
                         {VAR_NAMES[c]: float(f) for c, f in VAR_MIX.items()})
    return res, table


def period_recovery_home(home: Home, engine: Engine, **kwargs) -> PeriodRecovery | None:
    """:func:`period_recovery` at the cadence of the home's matchfile with most good epochs."""
    from zsds.db.schema import MatchfileRecord
    from zsds.lightcurves.matchfile import read_matchfile

    with session(engine) as s:
        mfs = s.execute(select(MatchfileRecord).order_by(
            MatchfileRecord.nexposures.desc(), MatchfileRecord.path)).scalars().all()
    if not mfs:
        return None
    return period_recovery(read_matchfile(home.path(mfs[0].path)), **kwargs)[0]
