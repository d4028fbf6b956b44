"""Deep real-bogus score ``drb``: a small convolutional network on the three alert cutouts.

ZTF scores every alert with ``drb`` from *braai* (Duev et al. 2019, MNRAS 489, 3582;
``drbversion`` ``d6_m7``), a VGG-like network on the 63x63 science, reference and difference
cutouts. This module is zsds's counterpart: a smaller network of the same shape (3x3
convolutions, ReLU, 2x2 max-pooling, two dense layers, a sigmoid), evaluated in plain numpy so
that scoring needs neither a GPU nor a deep-learning framework. The weights ship with the
package (``zsds/realbogus/models/<version>.npz``) and are trained by ``zsds rb train-drb``
(:mod:`zsds.realbogus.drb_train`, the only part that needs PyTorch).

Inputs
------
Three stamps per candidate, in the alert packet's convention: science, reference (template)
and difference with the event positive, i.e. ``sci - ref`` when ``isdiffpos = 't'`` and
``ref - sci`` when ``isdiffpos = 'f'`` (IPAC's ``scimref``/``refmsci`` stamps). Each stamp is
normalised on its own, as braai does (:func:`normalize_stamps`): NaN pixels become the stamp's
background, the stamp is divided by its Euclidean norm, and stamps smaller than 63x63 (at an
image edge) are padded at the end of each axis. braai does not subtract a background first;
zsds does (the stamp's median), because IPAC's science and template stamps carry the sky while
zsds's are background-subtracted, and the score must not depend on that.

Network (``drb_arch`` in the weights file)
------------------------------------------
``conv3x3(3->c1) ReLU maxpool2 | conv3x3(c1->c2) ReLU maxpool2 | conv3x3(c2->c3) ReLU maxpool2
| dense(6*6*c3 -> d) ReLU | dense(d -> 1) sigmoid``, "valid" convolutions, float32. Weights are
stored in PyTorch's layouts (convolution ``(out, in, 3, 3)``, dense ``(out, in)``, flattening in
``(channel, row, column)`` order), which is also the order the channel-major im2col + matrix
products of :class:`DRBModel` use.

Concurrency: :class:`DRBModel` is immutable after loading, so one instance may score from
several threads at once.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DRB_VERSION",
    "STAMP_SIZE",
    "DRBModel",
    "drb_score",
    "load_drb_model",
    "normalize_stamps",
    "stack_triplets",
]

DRB_VERSION = "zsds_drb_v1"
"""Version of the packaged model (the alert field ``drbversion``) and its file stem."""

STAMP_SIZE = 63
"""Side of the cutouts the network expects (ZTF's nominal stamp size)."""

WEIGHTS_FORMAT = "zsds-drb-weights/1"
"""``format`` of the metadata inside a weights file."""

_RETRAIN = "zsds rb train-drb"
_FILL_LIMIT = 1e30


def _as_stack(stamps: Any, name: str) -> np.ndarray:
    """``(N, h, w)`` float32 from an ``(N, h, w)`` stack, one ``(h, w)`` stamp, or a sequence
    of 2-D stamps of possibly different (edge-trimmed) shapes, padded to the largest."""
    if isinstance(stamps, np.ndarray) and stamps.ndim in (2, 3):
        a = stamps.astype(np.float32, copy=False)
        return a[None] if a.ndim == 2 else a
    if isinstance(stamps, Sequence) and not isinstance(stamps, str | bytes):
        parts = [np.asarray(s, dtype=np.float32) for s in stamps]
        if any(p.ndim != 2 for p in parts):
            raise ValueError(f"{name}: every stamp of a sequence must be 2-D")
        if not parts:
            return np.zeros((0, STAMP_SIZE, STAMP_SIZE), np.float32)
        h = max(p.shape[0] for p in parts)
        w = max(p.shape[1] for p in parts)
        out = np.full((len(parts), h, w), np.nan, np.float32)
        for k, p in enumerate(parts):
            out[k, : p.shape[0], : p.shape[1]] = p
        return out
    a = np.asarray(stamps, dtype=np.float32)
    if a.ndim not in (2, 3):
        raise ValueError(f"{name}: expected (N, h, w) or (h, w) stamps, got shape {a.shape}")
    return a[None] if a.ndim == 2 else a


def _row_median(rows: np.ndarray) -> np.ndarray:
    """Median of each row of a finite 2-D array (one partition: several times faster than
    :func:`numpy.median`, which also looks for NaNs)."""
    n = rows.shape[1]
    k = n // 2
    if n % 2:
        return np.partition(rows, k, axis=1)[:, k]
    p = np.partition(rows, (k - 1, k), axis=1)
    return 0.5 * (p[:, k - 1] + p[:, k])


def normalize_stamps(stamps: Any, size: int = STAMP_SIZE) -> np.ndarray:
    """Normalise cutouts the way the network was trained on them.

    Parameters
    ----------
    stamps : array-like
        ``(N, h, w)`` stack, a single ``(h, w)`` stamp, or a sequence of 2-D stamps; ``h`` and
        ``w`` at most ``size`` (smaller stamps, cut at an image edge, are padded at the end of
        each axis, as braai pads them). NaN (and IPAC's -3.4e38 fill, any ``|value| >= 1e30``)
        marks missing pixels.
    size : int
        Side of the output stamps.

    Returns
    -------
    numpy.ndarray
        ``(N, size, size)`` float32: each stamp minus its median over valid pixels, missing
        pixels and padding set to 0, divided by its Euclidean norm (left at 0 when the norm is
        0). The input is not modified.

    Raises
    ------
    ValueError
        If a stamp is larger than ``size``.
    """
    a = _as_stack(stamps, "stamps")
    n, h, w = a.shape
    if h > size or w > size:
        raise ValueError(f"stamps of {h}x{w} pixels are larger than {size}x{size}")
    # IPAC fills some masked template pixels with -FLT_MAX: missing, like NaN.
    finite = np.isfinite(a) & (np.abs(a) < _FILL_LIMIT)
    med = np.zeros(n, np.float32)
    full = finite.all(axis=(1, 2))
    if full.any():
        med[full] = _row_median(a[full].reshape(int(full.sum()), -1))
    part = ~full & finite.any(axis=(1, 2))  # all-missing stamps keep 0 (nanmedian would warn)
    if part.any():
        valid = np.where(finite[part], a[part], np.nan)
        med[part] = np.nanmedian(valid.reshape(int(part.sum()), -1), axis=1)
    out = np.zeros((n, size, size), np.float32)
    out[:, :h, :w] = np.where(finite, a - med[:, None, None], np.float32(0.0))
    norm = np.sqrt(np.einsum("nij,nij->n", out, out, dtype=np.float64)).astype(np.float32)
    scale = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)
    out *= scale[:, None, None]
    return out


def stack_triplets(sci: Any, ref: Any, diff: Any) -> np.ndarray:
    """Normalised network input ``(N, 3, 63, 63)`` float32 (channels science, reference,
    difference) from the three cutouts; see :func:`normalize_stamps` for the accepted shapes.

    Raises
    ------
    ValueError
        If the three inputs hold different numbers of stamps.
    """
    parts = [normalize_stamps(s) for s in (sci, ref, diff)]
    counts = {p.shape[0] for p in parts}
    if len(counts) != 1:
        raise ValueError(f"science, reference and difference hold {[p.shape[0] for p in parts]}"
                         " stamps: they must be equal")
    return np.stack(parts, axis=1)


def _conv3x3_relu(a: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Valid 3x3 convolution + ReLU of channel-major ``a`` (c, n, h, w) with ``w`` (k, 9c).

    im2col with the channel axis first: ``cols[(i, dy, dx)] = a[i, :, dy:, dx:]`` are 9c slice
    copies, and one ``(k, 9c) @ (9c, n*h'*w')`` product gives the output already channel-major.
    """
    c, n, h, wd = a.shape
    ho, wo = h - 2, wd - 2
    cols = np.empty((c, 3, 3, n, ho, wo), np.float32)
    for dy in range(3):
        for dx in range(3):
            cols[:, dy, dx] = a[:, :, dy : dy + ho, dx : dx + wo]
    y = w @ cols.reshape(c * 9, n * ho * wo)
    y += b[:, None]
    np.maximum(y, 0.0, out=y)
    return y.reshape(w.shape[0], n, ho, wo)


def _maxpool2(a: np.ndarray) -> np.ndarray:
    """2x2 max-pooling, stride 2, over the last two axes (odd trailing rows/columns dropped, as
    PyTorch does)."""
    h2, w2 = a.shape[-2] // 2 * 2, a.shape[-1] // 2 * 2
    return np.maximum(np.maximum(a[..., 0:h2:2, 0:w2:2], a[..., 0:h2:2, 1:w2:2]),
                      np.maximum(a[..., 1:h2:2, 0:w2:2], a[..., 1:h2:2, 1:w2:2]))


@dataclass(frozen=True)
class DRBModel:
    """A trained ``drb`` network, ready to score.

    Attributes
    ----------
    version : str
        Model name, written as ``drbversion``.
    threshold : float
        Operating point chosen at training (candidates with ``drb >= threshold`` are called real);
        see :attr:`meta` for how it was chosen and its held-out rates.
    meta : dict
        Everything else recorded at training: architecture, training settings and data,
        held-out figures, the comparison with braai on real ZTF alerts.
    arrays : dict of str to numpy.ndarray
        The weights in PyTorch layouts (``conv{k}.weight``, ``conv{k}.bias``, ``fc{k}.weight``,
        ``fc{k}.bias``), float32.
    """

    version: str
    threshold: float
    meta: dict[str, Any]
    arrays: Mapping[str, np.ndarray]
    _convs: tuple[tuple[np.ndarray, np.ndarray], ...] = field(init=False, repr=False)
    _dense: tuple[tuple[np.ndarray, np.ndarray], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        arr = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.arrays.items()}
        object.__setattr__(self, "arrays", arr)
        convs = []
        k = 1
        while f"conv{k}.weight" in arr:
            w = arr[f"conv{k}.weight"]
            if w.ndim != 4 or w.shape[2:] != (3, 3):
                raise ValueError(f"conv{k}.weight must be (out, in, 3, 3), got {w.shape}")
            cin = w.shape[1]
            expect = 3 if k == 1 else convs[-1][0].shape[0]
            if cin != expect:
                raise ValueError(f"conv{k} takes {cin} channels, previous layer gives {expect}")
            # (out, in, 3, 3) -> (out, in*9): columns in the (in, dy, dx) order of the im2col.
            convs.append((np.ascontiguousarray(w.reshape(w.shape[0], cin * 9)),
                          arr[f"conv{k}.bias"]))
            k += 1
        if not convs:
            raise ValueError("weights hold no convolution layer (conv1.weight)")
        side = STAMP_SIZE
        for _ in convs:
            side = (side - 2) // 2
        cl = convs[-1][0].shape[0]
        dense = []
        k = 1
        while f"fc{k}.weight" in arr:
            w = arr[f"fc{k}.weight"]
            if k == 1 and w.shape[1] != cl * side * side:
                raise ValueError(f"fc1 takes {w.shape[1]} inputs, the convolutions give "
                                 f"{cl}x{side}x{side}")
            dense.append((np.ascontiguousarray(w.T), arr[f"fc{k}.bias"]))
            k += 1
        if not dense or dense[-1][0].shape[1] != 1:
            raise ValueError("the last dense layer must have one output")
        object.__setattr__(self, "_convs", tuple(convs))
        object.__setattr__(self, "_dense", tuple(dense))

    def logits(self, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Pre-sigmoid outputs for normalised input ``x`` (N, 3, 63, 63) (:func:`stack_triplets`).

        Parameters
        ----------
        x : numpy.ndarray
            Normalised triplets.
        batch_size : int
            Triplets per pass: the im2col buffers take under 1 MB per triplet, and passes of
            a few tens of triplets keep them in the processor's caches.

        Returns
        -------
        numpy.ndarray
            ``(N,)`` float32.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (3, STAMP_SIZE, STAMP_SIZE):
            raise ValueError(f"expected (N, 3, {STAMP_SIZE}, {STAMP_SIZE}) input, got {x.shape}")
        out = np.empty(x.shape[0], np.float32)
        step = max(1, int(batch_size))
        for s in range(0, x.shape[0], step):
            a = x[s : s + step].transpose(1, 0, 2, 3)  # channel-major (c, n, h, w)
            for w, b in self._convs:
                a = _maxpool2(_conv3x3_relu(a, w, b))
            # Flatten each triplet in PyTorch's (channel, row, column) order.
            a = a.transpose(1, 0, 2, 3).reshape(a.shape[1], -1)
            for k, (w, b) in enumerate(self._dense):
                a = a @ w
                a += b
                if k < len(self._dense) - 1:
                    np.maximum(a, 0.0, out=a)
            out[s : s + a.shape[0]] = a[:, 0]
        return out

    def score_normalized(self, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """``drb`` in [0, 1] (float32) of normalised triplets ``x`` (N, 3, 63, 63)."""
        z = self.logits(x, batch_size).astype(np.float64)
        # Numerically safe logistic; float32 rounding can reach exactly 0 or 1.
        return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)

    def score(self, sci: Any, ref: Any, diff: Any, batch_size: int = 32) -> np.ndarray:
        """``drb`` of each candidate; arguments as in :func:`drb_score`."""
        return self.score_normalized(stack_triplets(sci, ref, diff), batch_size)

    def save(self, path: str | Path) -> Path:
        """Write the weights and metadata to one ``.npz`` file (uncompressed, no pickles).

        Parameters
        ----------
        path : str or Path
            Output file; ``.npz`` is appended if missing; parent folders are created.

        Returns
        -------
        Path
            The written file.
        """
        p = Path(path)
        if p.suffix != ".npz":
            p = p.with_name(p.name + ".npz")
        p.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta, format=WEIGHTS_FORMAT, version=self.version,
                    threshold=float(self.threshold))
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(meta, sort_keys=True, allow_nan=False)),
                 **dict(sorted(self.arrays.items())))
        p.write_bytes(buf.getvalue())
        return p

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>") -> DRBModel:
        """Model from the bytes of a file written by :meth:`save`.

        Raises
        ------
        ValueError
            If the file is not a drb weights file or its weights do not fit together.
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(str(z["meta"][()]))
                arrays = {k: z[k] for k in z.files if k != "meta"}
        except Exception as exc:
            raise ValueError(f"{name} is not a drb weights file ({exc}); run `{_RETRAIN}`") \
                from exc
        if meta.get("format") != WEIGHTS_FORMAT:
            raise ValueError(f"{name}: format {meta.get('format')!r}, expected "
                             f"{WEIGHTS_FORMAT!r}")
        return cls(version=str(meta["version"]), threshold=float(meta["threshold"]), meta=meta,
                   arrays=arrays)

    @classmethod
    def load(cls, path: str | Path) -> DRBModel:
        """Model from a file written by :meth:`save` (see :meth:`from_bytes`)."""
        p = Path(path)
        return cls.from_bytes(p.read_bytes(), str(p))


@lru_cache(maxsize=4)
def load_drb_model(version: str = DRB_VERSION) -> DRBModel:
    """The model shipped in the package (loaded once per process).

    Parameters
    ----------
    version : str
        Model version; ``zsds/realbogus/models/<version>.npz`` is read with
        :mod:`importlib.resources`, so it works from a wheel or a zip.

    Raises
    ------
    FileNotFoundError
        If the package holds no such model.
    """
    res = resources.files("zsds.realbogus").joinpath("models", f"{version}.npz")
    if not res.is_file():
        raise FileNotFoundError(f"no packaged drb model {version!r}; run `{_RETRAIN}`")
    return DRBModel.from_bytes(res.read_bytes(), f"zsds/realbogus/models/{version}.npz")


def drb_score(sci: Any, ref: Any, diff: Any, *, model: DRBModel | None = None,
              batch_size: int = 32) -> np.ndarray:
    """Deep real-bogus score of candidates from their science, reference and difference cutouts.

    Parameters
    ----------
    sci, ref, diff : array-like
        Cutouts as in the alert packet: ``(N, 63, 63)`` stacks, single ``(h, w)`` stamps, or
        sequences of 2-D stamps (edge stamps may be smaller than 63x63); NaN for missing pixels.
        ``diff`` has the event positive (IPAC's ``refmsci`` stamp, ``ref - sci``, for
        ``isdiffpos = 'f'``). Any flux unit: every stamp is normalised on its own.
    model : DRBModel, optional
        Defaults to the packaged model, :data:`DRB_VERSION`.
    batch_size : int
        Candidates per pass of the network (memory bound only; results do not depend on it).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float32 in [0, 1], 1 for real; ``N = 1`` for single stamps.
    """
    m = load_drb_model() if model is None else model
    return m.score(sci, ref, diff, batch_size)
