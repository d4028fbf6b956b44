"""Labelled cutout triplets for the ``drb`` network, made with the simulator and the pipeline.

The training set is not stored: it is rebuilt, deterministically, by ``zsds rb train-drb``
(or read back from the ``.npz`` cache that command can write). Steps:

1. :func:`build_sim_home` simulates a night of one small quadrant (:class:`SimHomeSpec`) and
   runs the pipeline on it up to the reference, exactly as ``tests/diffim/test_pipeline.py``
   does: calibration frames, ingest, instrumental calibration, reference co-add.
2. :func:`collect_triplets` takes every calibrated science image ``passes`` times; each time
   :func:`inject` adds, with the image's own PSF, a fresh set of *real* events -- new point
   sources on empty sky (``point``), next to catalogue sources (``host``), brightening and
   fading catalogue stars (``varup``, ``vardown``), and sources present in the reference only
   (``vanish``, a negative event) -- and of *bogus* ones -- cosmic-ray hits and tracks
   (``cosmic``), hot-pixel clusters (``hotpix``), bad-column segments (``column``), star
   residuals from misregistration (``dipole``) and from PSF mismatch (``psfmis``), ring-shaped
   optical ghosts (``ghost``) and satellite-streak segments (``streak``). The quadrant is then
   subtracted and its candidates measured as in :func:`zsds.diffim.run.subtract_quadrant`.
3. :func:`label_injected` labels each candidate by the injection it lies on. Candidates on no
   injection are the pipeline's own: *bogus* (``natural``) unless the simulator's truth says a
   transient, asteroid or variable is there (:func:`zsds.diffim.evaluate.label_candidates`),
   in which case they are left out; they are taken from the first pass only, so that the same
   artefact is not repeated. Candidates on injections of both classes, and real injections
   detected with the wrong sign, are left out.
4. The cutouts are those of the packets (:func:`zsds.diffim.run.cutouts`), with the
   difference negated for negative events (IPAC's ``refmsci`` stamp), normalised with
   :func:`zsds.realbogus.drb.stack_triplets` and kept as float16.

Only this training code reads the truth and the injection tables; the pipeline never does.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zsds.realbogus.drb import stack_triplets

__all__ = [
    "BOGUS_KINDS",
    "REAL_KINDS",
    "InjectConfig",
    "SimHomeSpec",
    "TripletSet",
    "build_sim_home",
    "build_training_set",
    "collect_triplets",
    "inject",
    "label_injected",
    "split_of",
]

REAL_KINDS: tuple[str, ...] = ("point", "host", "varup", "vardown", "vanish")
"""Injected events labelled real (1)."""

BOGUS_KINDS: tuple[str, ...] = ("natural", "cosmic", "hotpix", "column", "dipole", "psfmis",
                                "ghost", "streak")
"""Bogus (0) events: the pipeline's own (``natural``) and the injected artefacts."""

KINDS: tuple[str, ...] = REAL_KINDS + BOGUS_KINDS
_NEGATIVE = ("vardown", "vanish")
_NO_FAKES = pd.DataFrame({"x": [], "y": [], "mag": [], "flux": []})


@dataclass(frozen=True)
class SimHomeSpec:
    """One simulated night of one quadrant, with its reference.

    Attributes
    ----------
    night : str
        UT date, ``YYYY-MM-DD``.
    field : int
        ZTF field id.
    ccd, qid : int
        CCD (1-16) and quadrant (1-4) that are calibrated and subtracted.
    filt : str
        Filter (``g``, ``r`` or ``i``).
    n_epochs : int
        Science exposures of ``night``; the reference is built from them (at most 15 needed).
    quad_size : int
        Side of the simulated quadrants (pixels).
    seed : int
        Simulator seed of the night.
    late_night : str or None
        A later night of science exposures of the same field, simulated and calibrated after
        the reference was built (so never in it).
    late_epochs : int
        Exposures of ``late_night``.
    late_seeing : float or None
        Seeing (arcsec) forced on the exposures of ``late_night`` (None: the night's own).
    """

    night: str = "2026-11-20"
    field: int = 645
    ccd: int = 6
    qid: int = 1
    filt: str = "r"
    n_epochs: int = 16
    quad_size: int = 512
    seed: int = 4
    late_night: str | None = None
    late_epochs: int = 8
    late_seeing: float | None = None


#: The two homes the packaged model is trained and tested on: different fields, CCDs and
#: filters; references from nights of 1.3-2.4" seeing, and a later night each with the broad
#: seeing (3.5" in r, 5" in g) that real ZTF images also have.
DEFAULT_HOMES: tuple[SimHomeSpec, ...] = (
    SimHomeSpec(late_night="2026-11-21", late_seeing=3.5),
    SimHomeSpec(night="2026-11-22", field=646, ccd=11, qid=1, filt="g", seed=9,
                late_night="2026-11-23", late_seeing=5.0),
)


@dataclass(frozen=True)
class InjectConfig:
    """Events injected into each science image at each pass (counts per pass).

    Attributes
    ----------
    counts : dict of str to int
        Number of each injected kind (see :data:`REAL_KINDS` and :data:`BOGUS_KINDS`).
    dmag : tuple of float
        Magnitudes of new sources relative to the image's ``MAGLIM``.
    edge : int
        Margin (pixels) kept free of injections at the image edges.
    star_min_snr : float
        Catalogue stars used for ``varup``/``vardown`` have at least this S/N; ``dipole`` and
        ``psfmis`` use stars of at least four times it.
    seed : int
        Seed of all injections (with the pass number and the image's pid).
    """

    counts: dict[str, int] = field(default_factory=lambda: {
        "point": 30, "host": 12, "varup": 10, "vardown": 10, "vanish": 12,
        "cosmic": 22, "hotpix": 10, "column": 4, "dipole": 12, "psfmis": 10, "ghost": 3,
        "streak": 2})
    dmag: tuple[float, float] = (-4.5, 0.5)
    edge: int = 12
    star_min_snr: float = 10.0
    seed: int = 11

    def __post_init__(self) -> None:
        unknown = set(self.counts) - set(KINDS) | ({"natural"} & set(self.counts))
        if unknown:
            raise ValueError(f"unknown injection kinds: {sorted(unknown)}")


# ------------------------------------------------------------------------------ injections


def _add(img: np.ndarray, ix: int, iy: int, stamp: np.ndarray) -> None:
    """Add ``stamp`` centred on pixel (ix, iy) to ``img``, clipped at the edges."""
    ny, nx = img.shape
    h = stamp.shape[0] // 2
    ys, ye, xs, xe = max(iy - h, 0), min(iy + h + 1, ny), max(ix - h, 0), min(ix + h + 1, nx)
    if ys < ye and xs < xe:
        img[ys:ye, xs:xe] += stamp[ys - iy + h:ye - iy + h, xs - ix + h:xe - ix + h].astype(
            img.dtype)


def _psf(psf: Any, x: float, y: float, size: int = 31) -> np.ndarray:
    st = np.asarray(psf.stamps(np.array([x]), np.array([y]), size)[0], np.float64)
    return st / st.sum()


def _add_source(img: np.ndarray, psf: Any, x: float, y: float, flux: float, gain: float,
                rng: np.random.Generator | None) -> None:
    """Point source of ``flux`` DN, with Poisson noise when ``rng`` is given (and flux > 0)."""
    st = flux * _psf(psf, x, y)
    if rng is not None and flux > 0:
        st = rng.poisson(np.clip(st * gain, 0, None)) / gain
    _add(img, round(x), round(y), st)


def _noise_sigma(img: np.ndarray) -> float:
    """Robust per-pixel noise of an image (MAD of a sample of finite pixels)."""
    v = img[::3, ::3]
    v = v[np.isfinite(v)]
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) if v.size else 1.0


def _segment_points(x0: float, y0: float, x1: float, y1: float, step: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    n = max(2, int(np.ceil(np.hypot(x1 - x0, y1 - y0) / step)) + 1)
    t = np.linspace(0.0, 1.0, n)
    return x0 + t * (x1 - x0), y0 + t * (y1 - y0)


def _deposit(img: np.ndarray, px: np.ndarray, py: np.ndarray, w: np.ndarray) -> None:
    ny, nx = img.shape
    ix = np.round(px).astype(np.int64)
    iy = np.round(py).astype(np.int64)
    ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    np.add.at(img, (iy[ok], ix[ok]), w[ok].astype(img.dtype))


def _gauss_smooth(stamp: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(stamp, sigma, mode="constant")


def inject(sci: Any, ref: Any, cat: pd.DataFrame, config: InjectConfig,
           rng: np.random.Generator) -> pd.DataFrame:
    """Add real events and artefacts to ``sci.data`` (and ``ref.data`` for ``vanish``) in place.

    Parameters
    ----------
    sci, ref : zsds.core.image.QuadrantImage
        Calibrated science image and reference (PSF models, WCSs and headers with ``GAIN``,
        ``MAGZP``, ``MAGLIM`` are used); positions are science pixels.
    cat : pandas.DataFrame
        The science PSF catalogue (``xpos``, ``ypos`` 1-based, ``flux`` in DN, ``snr``).
    config : InjectConfig
        What to inject.
    rng : numpy.random.Generator
        Source of all randomness.

    Returns
    -------
    pandas.DataFrame
        One row per injection: ``kind``, ``label`` (1 real, 0 bogus), ``x``, ``y`` (0-based
        position of the event), ``x1``, ``y1`` (other end of a segment, else equal to
        ``x``, ``y``), ``radius`` (candidates within it of the point or segment belong to it),
        ``sign`` (+1/-1 expected sign of a real event, 0 any) and ``flux`` (DN, NaN if none).
    """
    img = sci.data
    ny, nx = img.shape
    e = config.edge
    gain = float(sci.header["GAIN"])
    zp = float(sci.header["MAGZP"])
    maglim = float(sci.header["MAGLIM"])
    zp_ref = float(ref.header["MAGZP"])
    sigma = _noise_sigma(img)
    rows: list[dict[str, Any]] = []

    def row(kind: str, x: float, y: float, radius: float, flux: float = np.nan,
            x1: float | None = None, y1: float | None = None) -> None:
        label = 1 if kind in REAL_KINDS else 0
        sign = (-1 if kind in _NEGATIVE else 1) if label else 0
        rows.append({"kind": kind, "label": label, "x": x, "y": y,
                     "x1": x if x1 is None else x1, "y1": y if y1 is None else y1,
                     "radius": radius, "sign": sign, "flux": flux})

    def pos(n: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.uniform(e, nx - 1 - e, n), rng.uniform(e, ny - 1 - e, n)

    def mags(n: int) -> np.ndarray:
        return maglim + rng.uniform(*config.dmag, n)

    c = config.counts
    sx = cat["xpos"].to_numpy(float) - 1.0
    sy = cat["ypos"].to_numpy(float) - 1.0
    sflux = cat["flux"].to_numpy(float)
    ssnr = cat["snr"].to_numpy(float)
    inside = (sx > e) & (sx < nx - 1 - e) & (sy > e) & (sy < ny - 1 - e) & (sflux > 0)
    stars = np.flatnonzero(inside & (ssnr >= config.star_min_snr))
    bright = np.flatnonzero(inside & (ssnr >= 4 * config.star_min_snr))

    def pick(pool: np.ndarray, n: int) -> np.ndarray:
        return rng.choice(pool, size=min(n, pool.size), replace=False) if pool.size else pool

    # Real: new point sources on empty sky.
    x, y = pos(c.get("point", 0))
    for xi, yi, m in zip(x, y, mags(x.size), strict=True):
        f = 10 ** (-0.4 * (m - zp))
        _add_source(img, sci.psf, xi, yi, f, gain, rng)
        row("point", xi, yi, 1.5, f)
    # Real: new sources 0.3-3 px from a catalogue source (a transient in or near its host).
    hosts = pick(np.flatnonzero(inside), c.get("host", 0))
    for j, m in zip(hosts, mags(hosts.size), strict=True):
        r, a = rng.uniform(0.3, 3.0), rng.uniform(0, 2 * np.pi)
        xi, yi = sx[j] + r * np.cos(a), sy[j] + r * np.sin(a)
        f = 10 ** (-0.4 * (m - zp))
        _add_source(img, sci.psf, xi, yi, f, gain, rng)
        row("host", xi, yi, 1.5, f)
    # Real: variable stars, brighter or fainter now than in the reference.
    for kind, lo, hi in (("varup", 0.15, 3.0), ("vardown", -0.9, -0.2)):
        for j in pick(stars, c.get(kind, 0)):
            f = sflux[j] * rng.uniform(lo, hi)
            _add_source(img, sci.psf, sx[j], sy[j], f, gain, rng if f > 0 else None)
            row(kind, sx[j], sy[j], 1.5, f)
    # Real: a source in the reference that is gone now (negative event on empty sky).
    # The reference has its own pixel grid: place the source through the two WCSs.
    x, y = pos(c.get("vanish", 0))
    if x.size:
        ra, dec = sci.wcs.all_pix2world(x, y, 0)
        xr, yr = ref.wcs.all_world2pix(ra, dec, 0)
        for xi, yi, xri, yri, m in zip(x, y, xr, yr, mags(x.size), strict=True):
            _add_source(ref.data, ref.psf, float(xri), float(yri), 10 ** (-0.4 * (m - zp_ref)),
                        gain, None)
            row("vanish", xi, yi, 1.5, 10 ** (-0.4 * (m - zp)))
    # Bogus: cosmic rays, mostly 1-3 pixel hits, some tracks (deposited in single pixels).
    x, y = pos(c.get("cosmic", 0))
    for xi, yi in zip(x, y, strict=True):
        length = rng.uniform(0, 2.5) if rng.random() < 0.7 else rng.uniform(2.5, 15)
        a = rng.uniform(0, 2 * np.pi)
        x1, y1 = xi + length * np.cos(a), yi + length * np.sin(a)
        px, py = _segment_points(xi, yi, x1, y1, 0.7)
        energy = rng.lognormal(np.log(3000.0), 0.7) * max(length, 1.0) ** 0.8 / gain
        _deposit(img, px, py, np.full(px.size, energy / px.size))
        row("cosmic", xi, yi, 2.0, energy, x1, y1)
    # Bogus: hot-pixel clusters (1-4 pixels).
    x, y = pos(c.get("hotpix", 0))
    for xi, yi in zip(np.round(x), np.round(y), strict=True):
        k = int(rng.integers(1, 5))
        dx = np.concatenate([[0], rng.integers(-1, 2, k - 1)])
        dy = np.concatenate([[0], rng.integers(-1, 2, k - 1)])
        amp = sigma * rng.uniform(8, 200, k)
        _deposit(img, xi + dx, yi + dy, amp)
        row("hotpix", xi, yi, 2.0, float(amp.sum()))
    # Bogus: bad-column segments (5-40 px long, one pixel wide).
    x, y = pos(c.get("column", 0))
    for xi, yi in zip(np.round(x), y, strict=True):
        length = rng.uniform(5, 40)
        py = np.arange(yi, min(yi + length, ny - 1))
        _deposit(img, np.full(py.size, xi), py, np.full(py.size, sigma * rng.uniform(3, 25)))
        row("column", xi, yi, 2.0, np.nan, xi, yi + length)
    # Bogus: misregistration residual of a bright star (dipole), noiseless.
    for j in pick(bright, c.get("dipole", 0)):
        d, a = rng.uniform(0.1, 0.6), rng.uniform(0, 2 * np.pi)
        xs, ys = sx[j] + d * np.cos(a), sy[j] + d * np.sin(a)
        _add(img, round(xs), round(ys), sflux[j] * _psf(sci.psf, xs, ys))
        _add(img, round(sx[j]), round(sy[j]), -sflux[j] * _psf(sci.psf, sx[j], sy[j]))
        row("dipole", sx[j], sy[j], 2.5, sflux[j] * d)
    # Bogus: PSF-mismatch residual of a bright star (ring or core, either sign), noiseless.
    for j in pick(bright, c.get("psfmis", 0)):
        p = _psf(sci.psf, sx[j], sy[j])
        amp = rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.4)
        res = amp * sflux[j] * (_gauss_smooth(p, rng.uniform(0.5, 1.3)) - p)
        _add(img, round(sx[j]), round(sy[j]), res)
        row("psfmis", sx[j], sy[j], 2.5, float(np.abs(res).sum()))
    # Bogus: optical ghosts, smooth rings or discs 4-20 px in radius.
    x, y = pos(c.get("ghost", 0))
    for xi, yi in zip(x, y, strict=True):
        r_in = 0.0 if rng.random() < 0.3 else rng.uniform(3, 10)
        r_out = r_in + rng.uniform(3, 10)
        h = int(np.ceil(r_out)) + 4
        g = np.arange(-h, h + 1, dtype=float)
        rr = np.hypot(g[None, :] - (xi - round(xi)), g[:, None] - (yi - round(yi)))
        ring = ((rr >= r_in) & (rr <= r_out)).astype(float)
        st = _gauss_smooth(ring, 1.2) * sigma * rng.uniform(0.6, 3.0)
        _add(img, round(xi), round(yi), st)
        row("ghost", xi, yi, r_out + 2.0, float(st.sum()))
    # Bogus: satellite-streak segments (40-300 px, PSF-wide, possibly flickering).
    x, y = pos(c.get("streak", 0))
    for xi, yi in zip(x, y, strict=True):
        length, a = rng.uniform(40, 300), rng.uniform(0, 2 * np.pi)
        x1, y1 = xi + length * np.cos(a), yi + length * np.sin(a)
        s = max(float(sci.psf.fwhm_at(xi, yi)), 1.0) / 2.3548
        px, py = _segment_points(xi, yi, x1, y1, 0.5)
        lin = sigma * rng.uniform(1.0, 10.0) * s * np.sqrt(2 * np.pi) * 0.5  # DN per step
        w = np.full(px.size, lin)
        if rng.random() < 0.3:  # tumbling: brightness modulated along the track
            w *= 1.0 + 0.8 * np.sin(np.linspace(0, rng.uniform(3, 30), px.size))
        line = np.zeros_like(img)
        _deposit(line, px, py, w)
        img += _gauss_smooth(line, s).astype(img.dtype)
        row("streak", xi, yi, 4.0, float(w.sum()), x1, y1)
    out = pd.DataFrame(rows, columns=["kind", "label", "x", "y", "x1", "y1", "radius", "sign",
                                      "flux"])
    return out


def _segment_distance(px: np.ndarray, py: np.ndarray, inj: pd.DataFrame) -> np.ndarray:
    """Distances (n_points, n_injections) from points to each injection's point or segment."""
    x0, y0 = inj.x.to_numpy()[None, :], inj.y.to_numpy()[None, :]
    dx, dy = inj.x1.to_numpy()[None, :] - x0, inj.y1.to_numpy()[None, :] - y0
    ll = dx * dx + dy * dy
    t = np.divide((px[:, None] - x0) * dx + (py[:, None] - y0) * dy, ll,
                  out=np.zeros((px.size, x0.size)), where=ll > 0)
    t = np.clip(t, 0.0, 1.0)
    return np.hypot(px[:, None] - (x0 + t * dx), py[:, None] - (y0 + t * dy))


def label_injected(cand: pd.DataFrame, inj: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Label candidates by the injection they lie on.

    Parameters
    ----------
    cand : pandas.DataFrame
        Candidates with ``x``, ``y`` (0-based) and ``isdiffpos``.
    inj : pandas.DataFrame
        Output of :func:`inject`.

    Returns
    -------
    label : numpy.ndarray
        int8: 1 real, 0 bogus, -1 on no injection, -2 ambiguous (on injections of both classes,
        or a real injection detected with the wrong sign): leave out.
    kind : numpy.ndarray
        The nearest matching injection's kind ('' when none).
    """
    n = len(cand)
    label = np.full(n, -1, np.int8)
    kind = np.full(n, "", dtype=object)
    if n == 0 or len(inj) == 0:
        return label, kind
    d = _segment_distance(cand.x.to_numpy(float), cand.y.to_numpy(float), inj)
    hit = d <= inj.radius.to_numpy()[None, :]
    lab = inj.label.to_numpy()
    sign = inj.sign.to_numpy()
    pos = (cand.isdiffpos.to_numpy() == "t")
    csign = np.where(pos, 1, -1)
    for i in np.flatnonzero(hit.any(axis=1)):
        js = np.flatnonzero(hit[i])
        labs = set(lab[js].tolist())
        near = js[np.argmin(d[i, js])]
        if len(labs) > 1:
            label[i] = -2
        elif lab[near] == 1 and sign[near] != csign[i]:
            label[i] = -2
        else:
            label[i] = lab[near]
        kind[i] = inj.kind.iloc[near]
    return label, kind


# ------------------------------------------------------------------------------ data sets


def _plain(col: pd.Series) -> np.ndarray:
    """A column as a numpy array that loads without pickles (strings as unicode)."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return col.to_numpy()
    return np.array(col.astype(str).tolist(), dtype=str)


@dataclass
class TripletSet:
    """Normalised cutout triplets with labels.

    Attributes
    ----------
    x : numpy.ndarray
        ``(N, 3, 63, 63)`` float16 network inputs (:func:`zsds.realbogus.drb.stack_triplets`).
    table : pandas.DataFrame
        One row per triplet: ``label`` (1 real, 0 bogus), ``kind``, ``home`` (index of the
        :class:`SimHomeSpec`), ``pid``, ``night``, ``epoch`` (rank of the image in its night,
        by pid), ``split`` (:func:`split_of` the rank), ``pass_``, ``isdiffpos``, ``snr``,
        ``scorr``, ``passed`` (packet cuts) and ``rb`` (the feature model's score, NaN if not
        computed).
    info : dict
        How the set was made (specs, injection settings, versions).
    """

    x: np.ndarray
    table: pd.DataFrame
    info: dict[str, Any]

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, mask: np.ndarray) -> TripletSet:
        """The triplets where ``mask`` is true."""
        return TripletSet(self.x[mask], self.table[mask].reset_index(drop=True), self.info)

    def save(self, path: str | Path) -> Path:
        """Write to a compressed ``.npz`` (no pickles); returns the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        cols = {f"col_{c}": _plain(self.table[c]) for c in self.table.columns}
        with p.open("wb") as fo:
            np.savez_compressed(fo, x=self.x, info=np.array(json.dumps(self.info)), **cols)
        return p

    @classmethod
    def load(cls, path: str | Path) -> TripletSet:
        """Read a file written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as z:
            table = pd.DataFrame({k[4:]: z[k] for k in z.files if k.startswith("col_")})
            for c in table.columns:
                if table[c].dtype.kind == "U":
                    table[c] = table[c].astype(str)
            return cls(z["x"], table, json.loads(str(z["info"][()])))

    @staticmethod
    def concat(parts: list[TripletSet]) -> TripletSet:
        """One set from several (``info`` of the first)."""
        if not parts:
            raise ValueError("no triplet sets to join")
        return TripletSet(np.concatenate([p.x for p in parts]),
                          pd.concat([p.table for p in parts], ignore_index=True), parts[0].info)


def build_sim_home(root: str | Path, spec: SimHomeSpec) -> tuple[Any, Any]:
    """Simulate ``spec``'s night in a new home at ``root`` and run the pipeline to references.

    Returns
    -------
    home : zsds.core.home.Home
    engine : sqlalchemy.engine.Engine
        The home's database, initialised.

    Raises
    ------
    RuntimeError
        If a calibration or the reference fails.
    """
    from zsds.calib.build import build_calibrations
    from zsds.core.home import Home
    from zsds.db import connect, init_db
    from zsds.ingest import ingest_incoming
    from zsds.instcal.run import calibrate_night
    from zsds.refs.run import RefBuildConfig, build_references
    from zsds.refs.select import SelectConfig
    from zsds.sim.camera import SimConfig
    from zsds.sim.run import simulate_calib, simulate_night

    Path(root).mkdir(parents=True, exist_ok=True)
    h = Home.resolve(Path(root))
    simulate_calib(h, spec.night, spec.quad_size, [spec.ccd], seed=spec.seed + 1, n_bias=5,
                   n_flat=3, filters=(spec.filt,))
    simulate_night(h, spec.night, spec.n_epochs, [spec.field], spec.quad_size, [spec.ccd],
                   seed=spec.seed, filters=(spec.filt,))
    engine = connect(h.db_url)
    init_db(engine)
    bad = [r for r in ingest_incoming(h, engine) if not r.ok]
    if bad:
        raise RuntimeError(f"ingest failed for {len(bad)} file(s)")
    build_calibrations(h, engine, spec.night)
    out = calibrate_night(h, engine, spec.night, quad=spec.qid)
    failed = [o.message for o in out if not o.ok]
    if failed:
        raise RuntimeError(f"calibration failed: {failed[:3]}")
    refs = build_references(h, engine, config=RefBuildConfig(
        select=SelectConfig(min_epochs=min(15, spec.n_epochs))))
    if not any(r.ok for r in refs):
        raise RuntimeError(f"no reference could be built: {refs[0].message if refs else ''}")
    if spec.late_night is not None:
        simulate_calib(h, spec.late_night, spec.quad_size, [spec.ccd], seed=spec.seed + 101,
                       n_bias=5, n_flat=3, filters=(spec.filt,))
        simulate_night(h, spec.late_night, spec.late_epochs, [spec.field], spec.quad_size,
                       [spec.ccd], filters=(spec.filt,), config=SimConfig(
                           quad_size=spec.quad_size, seed=spec.seed + 100,
                           seeing=spec.late_seeing))
        if any(not r.ok for r in ingest_incoming(h, engine)):
            raise RuntimeError("ingest of the late night failed")
        build_calibrations(h, engine, spec.late_night)
        out = calibrate_night(h, engine, spec.late_night, quad=spec.qid)
        failed = [o.message for o in out if not o.ok]
        if failed:
            raise RuntimeError(f"calibration of the late night failed: {failed[:3]}")
    return h, engine


def _science_rows(engine: Any) -> list[tuple[Any, str, int]]:
    """``(QuadrantProduct, night, rank of the image in its night)`` of every science image
    with a photometric calibration (images whose calibration failed, ``MAGZP = -999``, as
    happens in the worst seeing, cannot be subtracted and are left out)."""
    from sqlalchemy import select

    from zsds.db.engine import session
    from zsds.db.schema import Exposure, QuadrantProduct

    with session(engine) as s:
        rows = s.execute(select(QuadrantProduct, Exposure.night).join(
            Exposure, Exposure.expid == QuadrantProduct.expid).where(
            QuadrantProduct.kind == "sciimg").order_by(QuadrantProduct.pid)).all()
        for r in rows:
            s.expunge(r[0])
    out, seen = [], {}
    for prod, night in rows:
        if not (prod.magzp is not None and prod.magzp > 0 and prod.maglim is not None
                and prod.maglim > 0):
            continue
        n = str(night)
        out.append((prod, n, seen.get(n, 0)))
        seen[n] = seen.get(n, 0) + 1
    return out


#: Role of the images of a night by their rank in it, repeating: 5 of 8 train, 1 validates,
#: 2 are held out (a night of 6 images gives 3, 1 and 2).
SPLIT_PATTERN: tuple[str, ...] = ("train", "test", "train", "val", "train", "test", "train",
                                  "train")


def split_of(rank: int) -> str:
    """``'train'``, ``'val'`` or ``'test'`` for the image of this rank in its night."""
    return SPLIT_PATTERN[rank % len(SPLIT_PATTERN)]


def collect_triplets(home: Any, engine: Any, passes: int = 4,
                     config: InjectConfig | None = None, home_index: int = 0,
                     score_rb: bool | Callable[[int], bool] = True, progress: Any = None
                     ) -> TripletSet:
    """Inject, subtract, label and cut out every science image of a home ``passes`` times.

    Parameters
    ----------
    home, engine
        A home with calibrated science images and references (see :func:`build_sim_home`).
    passes : int
        Injection rounds per image (each with fresh injections).
    config : InjectConfig, optional
        What to inject; defaults to :class:`InjectConfig`.
    home_index : int
        Written to the ``home`` column (and mixed into the seed).
    score_rb : bool or callable
        Also score the candidates with the packaged feature model (``rb`` column): all, none,
        or those of the images for whose rank in their night (``epoch``) it returns true.
    progress : callable, optional
        Called as ``progress(done, total, name)`` after each pass.

    Returns
    -------
    TripletSet
    """
    from zsds.diffim.candidates import measure_candidates
    from zsds.diffim.evaluate import label_candidates, quadrant_truth, reference_of
    from zsds.diffim.run import (
        SubtractRunConfig,
        candidate_context,
        cutouts,
        read_science,
        score_real_bogus,
    )
    from zsds.diffim.stage import subtract

    config = config or InjectConfig()
    run = SubtractRunConfig()
    rows = _science_rows(engine)
    xs: list[np.ndarray] = []
    tables: list[pd.DataFrame] = []
    refs: dict[tuple, Any] = {}
    total = len(rows) * passes
    for k, (row, night, epoch) in enumerate(rows):
        if (found := reference_of(engine, home, row, refs)) is None:
            continue
        ref, refimg, ref_cat = found
        truth, star_mags = quadrant_truth(home, row.expid, row.ccdid, row.qid,
                                  sorted({int(p) // 10_000 for p in ref.input_pids}))
        for p in range(passes):
            rng = np.random.default_rng([config.seed, home_index, int(row.pid), p])
            sci, sci_cat = read_science(home, row.relpath)
            rimg = replace(refimg, data=refimg.data.copy())  # vanish writes into it
            inj = inject(sci, rimg, sci_cat, config, rng)
            diff = subtract(sci, rimg, run.subtract, sci_cat, ref_cat)
            cand = measure_candidates(diff, run.candidates)
            if len(cand) == 0:
                continue
            zp = float(diff.header["MAGZP"])
            flux_sigma = 10 ** (-0.4 * (float(diff.header["DIFFMLIM"]) - zp)) / 5.0
            lab, kind = label_injected(cand, inj)
            # Truth of the simulated sky: -1 near a transient, asteroid or variable, else 0.
            natural = label_candidates(cand, _NO_FAKES, truth, star_mags, zp,
                                       flux_sigma)[0]["real"].to_numpy()
            free = lab == -1
            lab[free & (natural == 0)] = 0 if p == 0 else -2
            kind[free & (natural == 0)] = "natural"
            keep = lab >= 0
            if not keep.any():
                continue
            cand = cand[keep].reset_index(drop=True)
            if score_rb is True or (callable(score_rb) and score_rb(epoch)):
                cand = candidate_context(home, cand, ref_cat, diff.header)
                cand["rb"] = score_real_bogus(cand, True)[0]
            else:
                cand["rb"] = np.nan
            cand["passed"] = run.cuts.apply(cand)
            st = cutouts(diff, cand.x.to_numpy(), cand.y.to_numpy())
            neg = cand.isdiffpos.to_numpy() == "f"
            st[2, neg] *= -1.0  # IPAC's refmsci stamp: the event positive
            xs.append(stack_triplets(st[0], st[1], st[2]).astype(np.float16))
            tables.append(pd.DataFrame({
                "label": lab[keep].astype(np.int8), "kind": kind[keep].astype(str),
                "home": home_index, "pid": int(row.pid), "night": night, "epoch": epoch,
                "split": split_of(epoch), "pass_": p,
                "isdiffpos": cand.isdiffpos.to_numpy().astype(str),
                "snr": cand.snr.to_numpy(float), "scorr": cand.scorr.to_numpy(float),
                "passed": cand.passed.to_numpy(bool), "rb": cand.rb.to_numpy(float)}))
            if progress:
                progress(k * passes + p + 1, total, f"{row.pid} pass {p}")
    info = {"passes": passes, "inject": asdict(config)}
    if not xs:
        return TripletSet(np.zeros((0, 3, 63, 63), np.float16), pd.DataFrame(), info)
    return TripletSet(np.concatenate(xs), pd.concat(tables, ignore_index=True), info)


def _held_out(rank: int) -> bool:
    return split_of(rank) == "test"


def _one_home(root: str, spec: SimHomeSpec, index: int, passes: int, config: InjectConfig
              ) -> TripletSet:
    home, engine = build_sim_home(root, spec)
    try:
        return collect_triplets(home, engine, passes, config, index, _held_out)
    finally:
        engine.dispose()


def build_training_set(specs: Sequence[SimHomeSpec] = DEFAULT_HOMES, passes: int = 3,
                       config: InjectConfig | None = None, work: str | Path | None = None,
                       workers: int = 2, log: Callable[[str], None] | None = None
                       ) -> TripletSet:
    """Simulate each night of ``specs``, run the pipeline and collect its labelled triplets.

    Parameters
    ----------
    specs : sequence of SimHomeSpec
        The nights (one home each); the ``home`` column of the result is the index here.
    passes : int
        Injection rounds per science image.
    config : InjectConfig, optional
        What to inject.
    work : str or Path, optional
        Folder for the simulated homes (``home0``, ``home1``...; each must not exist yet);
        default a temporary folder, removed afterwards.
    workers : int
        Homes simulated and processed at once (separate processes). The candidates of the
        held-out images also get the feature model's ``rb``, for comparison.
    log : callable, optional
        Receives a line when each home is done.

    Returns
    -------
    TripletSet
        All homes' triplets; ``info`` records the specs, passes and injection settings.
    """
    config = config or InjectConfig()
    with tempfile.TemporaryDirectory(prefix="zsds-drb-") as tmp:
        base = Path(work) if work is not None else Path(tmp)
        roots = [str(base / f"home{k}") for k in range(len(specs))]
        for r in roots:
            if Path(r).exists():
                raise FileExistsError(f"{r} exists: give an empty --work folder")
        args = [(roots[k], s, k, passes, config) for k, s in enumerate(specs)]
        parts: list[TripletSet] = []
        if workers <= 1 or len(specs) == 1:
            for a in args:
                parts.append(_one_home(*a))
                if log:
                    log(f"home {a[2]}: {len(parts[-1])} triplets")
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(specs))) as pool:
                futures = [pool.submit(_one_home, *a) for a in args]
                for k, f in enumerate(futures):
                    parts.append(f.result())
                    if log:
                        log(f"home {k}: {len(parts[-1])} triplets")
    out = TripletSet.concat(parts)
    out.info = {"homes": [asdict(s) for s in specs], "passes": passes,
                "inject": asdict(config)}
    return out
