"""Training and evaluation of the ``drb`` network (``zsds rb train-drb``).

PyTorch is needed here only (``pip install zsds[train]``); the trained weights are exported
to the numpy format of :mod:`zsds.realbogus.drb`, and every reported figure is computed with
that numpy inference, i.e. with the scores users get.

Splits: the triplets of :mod:`zsds.realbogus.drb_data` are split by *image*, never by triplet,
so that the injections and artefacts of one image, and the natural artefacts shared by its
passes, stay on one side (:func:`zsds.realbogus.drb_data.split_of`: of every 8 images of a
night, 5 train, 1 validates -- best epoch and operating threshold -- and 2 are the held-out test
set of the reported figures).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from zsds.realbogus.drb import DRB_VERSION, STAMP_SIZE, DRBModel, stack_triplets
from zsds.realbogus.drb_data import TripletSet
from zsds.realbogus.model import choose_threshold, jsonable, roc_metrics

__all__ = ["DRBTrainConfig", "compare_with_braai", "read_alert_triplets", "train_drb"]

INPUT_SCALE = float(STAMP_SIZE)
"""Training multiplies the unit-norm stamps by this (pure noise then has unit RMS, which suits
the default initialisation); the factor is folded into ``conv1.weight`` at export."""


@dataclass(frozen=True)
class DRBTrainConfig:
    """Settings of :func:`train_drb`.

    Attributes
    ----------
    channels : tuple of int
        Output channels of the three 3x3 convolution layers.
    dense : int
        Width of the hidden dense layer.
    dropout : float
        Dropout before each dense layer (training only).
    epochs : int
        Passes over the training triplets.
    batch_size : int
        Triplets per optimisation step.
    learning_rate, weight_decay : float
        AdamW settings; the rate follows a cosine decay to 5% over the epochs.
    augment : bool
        Apply a random rotation by a multiple of 90 degrees and a random flip to each batch
        (the sky has no preferred orientation).
    target_fpr : float
        The operating threshold is the lowest one whose false-positive rate on the validation
        images is at most this.
    seed : int
        Seed of the weight initialisation, shuffling, dropout and augmentation.
    threads : int
        CPU threads PyTorch may use.
    """

    channels: tuple[int, int, int] = (8, 16, 32)
    dense: int = 64
    dropout: float = 0.3
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    augment: bool = True
    target_fpr: float = 0.01
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if len(self.channels) != 3 or min(self.channels) < 1:
            raise ValueError(f"channels must be three positive ints, got {self.channels}")
        if not 0.0 < self.target_fpr < 1.0:
            raise ValueError(f"target_fpr must be in (0, 1), got {self.target_fpr}")


def _network(config: DRBTrainConfig) -> Any:
    import torch
    from torch import nn

    c1, c2, c3 = config.channels
    side = STAMP_SIZE
    for _ in range(3):
        side = (side - 2) // 2

    class Net(nn.Module):
        """conv-ReLU-pool x3, dense-ReLU, dense: the layout :class:`DRBModel` evaluates."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, c1, 3)
            self.conv2 = nn.Conv2d(c1, c2, 3)
            self.conv3 = nn.Conv2d(c2, c3, 3)
            self.fc1 = nn.Linear(c3 * side * side, config.dense)
            self.fc2 = nn.Linear(config.dense, 1)
            self.drop = nn.Dropout(config.dropout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = nn.functional
            x = x * INPUT_SCALE
            for conv in (self.conv1, self.conv2, self.conv3):
                x = f.max_pool2d(f.relu(conv(x)), 2)
            x = self.drop(torch.flatten(x, 1))
            x = self.drop(f.relu(self.fc1(x)))
            return self.fc2(x)[:, 0]

    return Net()


def _batches(n: int, size: int, gen: Any) -> Iterable[Any]:
    import torch

    order = torch.randperm(n, generator=gen)
    for s in range(0, n, size):
        yield order[s : s + size]


def _torch_scores(net: Any, x: np.ndarray, batch: int = 512) -> np.ndarray:
    import torch

    net.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            out.append(net(torch.from_numpy(x[s : s + batch].astype(np.float32))).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _bce(labels: np.ndarray, logits: np.ndarray) -> float:
    z = logits.astype(np.float64)
    y = labels.astype(np.float64)
    return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def _rates(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    real = labels == 1
    called = scores >= threshold
    return {"fpr": float(called[~real].mean()) if (~real).any() else math.nan,
            "fnr": float((~called[real]).mean()) if real.any() else math.nan,
            "n_real": int(real.sum()), "n_bogus": int((~real).sum())}


def train_drb(data: TripletSet, config: DRBTrainConfig = DRBTrainConfig(),
              version: str = DRB_VERSION, log: Callable[[str], None] | None = None
              ) -> tuple[DRBModel, dict[str, Any]]:
    """Train the network on the training images and measure it on the held-out ones.

    Parameters
    ----------
    data : TripletSet
        Labelled, normalised triplets (:func:`zsds.realbogus.drb_data.collect_triplets`).
    config : DRBTrainConfig
        Network and optimisation settings.
    version : str
        ``drbversion`` of the model.
    log : callable, optional
        Receives one line per epoch.

    Returns
    -------
    model : DRBModel
        Weights of the epoch with the lowest validation loss, the threshold chosen on the
        validation images, and in ``meta`` the settings and the figures below.
    report : dict
        ``test``: :func:`zsds.realbogus.model.roc_metrics` on the test images at the chosen
        threshold; ``test_passed``: the same on the test candidates that pass the packet cuts
        (the ones that get a ``drb`` in a packet); ``per_kind``: fraction called real per
        kind on the test images; ``rb_test_auc``: AUC of the feature model ``rb`` on the same
        test candidates; ``numpy_vs_torch``: largest score difference of the two
        implementations; ``history``: per-epoch losses; sizes and timings.
    """
    import torch

    t0, c0 = time.perf_counter(), time.process_time()
    torch.manual_seed(config.seed)
    torch.set_num_threads(max(1, config.threads))
    torch.use_deterministic_algorithms(True, warn_only=True)
    split = data.table["split"].to_numpy().astype(str)
    y_all = data.table["label"].to_numpy(np.int8)
    tr, va, te = (np.flatnonzero(split == s) for s in ("train", "val", "test"))
    for name, idx in (("training", tr), ("validation", va), ("test", te)):
        if len(set(y_all[idx].tolist())) < 2:
            raise ValueError(f"the {name} images hold only one class; simulate more images")
    x_tr = torch.from_numpy(np.ascontiguousarray(data.x[tr]))  # float16, cast per batch
    y_tr = torch.from_numpy(y_all[tr].astype(np.float32))
    net = _network(config).to(memory_format=torch.channels_last)  # faster on CPUs
    opt = torch.optim.AdamW(net.parameters(), lr=config.learning_rate,
                            weight_decay=config.weight_decay)
    steps = config.epochs * math.ceil(len(tr) / config.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps)))
    gen = torch.Generator().manual_seed(config.seed)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    x_va = data.x[va]
    best: tuple[float, dict[str, Any], int] = (math.inf, {}, -1)
    history = []
    for ep in range(config.epochs):
        net.train()
        total, count = 0.0, 0
        for idx in _batches(len(tr), config.batch_size, gen):
            xb = x_tr[idx].float().contiguous(memory_format=torch.channels_last)
            if config.augment:
                k = int(torch.randint(0, 4, (1,), generator=gen))
                xb = torch.rot90(xb, k, dims=(2, 3))
                if int(torch.randint(0, 2, (1,), generator=gen)):
                    xb = torch.flip(xb, dims=(3,))
            loss = loss_fn(net(xb), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        v_logit = _torch_scores(net, x_va)
        v_loss = _bce(y_all[va], v_logit)
        v_auc = float(roc_auc_score(y_all[va], v_logit))
        history.append({"epoch": ep + 1, "train_loss": total / count, "val_loss": v_loss,
                        "val_auc": v_auc})
        if log:
            log(f"epoch {ep + 1:2d}/{config.epochs}: train loss {total / count:.4f}, "
                f"validation loss {v_loss:.4f}, AUC {v_auc:.5f} "
                f"({time.perf_counter() - t0:.0f} s)")
        if v_loss < best[0]:
            best = (v_loss, {k: v.detach().clone() for k, v in net.state_dict().items()}, ep + 1)
    net.load_state_dict(best[1])
    t_train, c_train = time.perf_counter() - t0, time.process_time() - c0
    arrays = {k: v.numpy().astype(np.float32) for k, v in net.state_dict().items()}
    arrays["conv1.weight"] = arrays["conv1.weight"] * np.float32(INPUT_SCALE)
    model = DRBModel(version=version, threshold=0.5, meta={}, arrays=arrays)

    # Every figure from here on uses the numpy inference.
    s_va = model.score_normalized(x_va.astype(np.float32))
    threshold = choose_threshold(y_all[va], s_va, config.target_fpr)
    s_te = model.score_normalized(data.x[te].astype(np.float32))
    gap = float(np.max(np.abs(
        1.0 / (1.0 + np.exp(-_torch_scores(net, x_va).astype(np.float64))) - s_va)))
    t_te = data.table.iloc[te].reset_index(drop=True)
    y_te = y_all[te]
    test = roc_metrics(y_te, s_te, threshold=threshold)
    passed = t_te["passed"].to_numpy(bool)
    test_passed = (roc_metrics(y_te[passed], s_te[passed], threshold=threshold)
                   if len(set(y_te[passed].tolist())) == 2 else {})
    per_kind = {str(k): float((s_te[(t_te["kind"] == k).to_numpy()] >= threshold).mean())
                for k in sorted(t_te["kind"].unique())}
    rb = t_te["rb"].to_numpy(float)
    has_rb = np.isfinite(rb)
    rb_auc = (float(roc_auc_score(y_te[has_rb], rb[has_rb]))
              if has_rb.sum() > 10 and len(set(y_te[has_rb].tolist())) == 2 else math.nan)
    drb_auc_same = (float(roc_auc_score(y_te[has_rb], s_te[has_rb]))
                    if not math.isnan(rb_auc) else math.nan)
    report: dict[str, Any] = {
        "test": test, "test_passed": test_passed, "per_kind_called_real": per_kind,
        "val": {**_rates(y_all[va], s_va, threshold),
                "auc": float(roc_auc_score(y_all[va], s_va))},
        "rb_test_auc": rb_auc, "drb_test_auc_where_rb": drb_auc_same,
        "numpy_vs_torch": gap, "best_epoch": best[2], "history": history,
        "n_train": len(tr), "n_val": len(va), "n_test": len(te),
        "train_seconds": t_train, "train_cpu_seconds": c_train,
    }
    meta = {
        "drb_arch": {"conv_channels": list(config.channels), "dense": config.dense,
                     "input": [3, STAMP_SIZE, STAMP_SIZE],
                     "layout": "conv3x3-relu-maxpool2 x3, dense-relu, dense, sigmoid"},
        "normalisation": "per stamp: minus median, NaN -> 0, / L2 norm, pad to 63x63",
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "config": {**asdict(config), "channels": list(config.channels)},
        "data": data.info,
        "threshold_rule": f"lowest FNR with FPR <= {config.target_fpr} on the validation images",
        "metrics": {k: v for k, v in report.items() if k != "history"},
    }
    meta = jsonable(meta)
    model = DRBModel(version=version, threshold=float(threshold), meta=meta, arrays=arrays)
    return model, report


def read_alert_triplets(paths: Iterable[str | Path]) -> tuple[np.ndarray, pd.DataFrame]:
    """Normalised triplets and ``candid``, ``drb``, ``rb``, ``isdiffpos``, ``schemavsn`` of the
    real alerts in ``paths`` (files or folders searched for ``*.avro``), one per candid.

    Returns
    -------
    x : numpy.ndarray
        ``(N, 3, 63, 63)`` float32 (:func:`zsds.realbogus.drb.stack_triplets`).
    table : pandas.DataFrame
        One row per alert, in the order of ``x``.
    """
    from zsds.alerts.packet import read_alert_file, read_cutout

    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(p.rglob("*.avro")) if p.is_dir() else [p]
    rows, sci, ref, diff = [], [], [], []
    seen: set[int] = set()
    for f in files:
        for rec in read_alert_file(f):
            c = rec["candidate"]
            if int(rec["candid"]) in seen or any(
                    rec.get(k) is None for k in ("cutoutScience", "cutoutTemplate",
                                                 "cutoutDifference")):
                continue
            seen.add(int(rec["candid"]))
            sci.append(read_cutout(rec["cutoutScience"]))
            ref.append(read_cutout(rec["cutoutTemplate"]))
            diff.append(read_cutout(rec["cutoutDifference"]))
            rows.append({"candid": int(rec["candid"]), "drb": c.get("drb"), "rb": c.get("rb"),
                         "isdiffpos": c.get("isdiffpos"), "schemavsn": rec.get("schemavsn"),
                         "file": f.name})
    table = pd.DataFrame(rows, columns=["candid", "drb", "rb", "isdiffpos", "schemavsn", "file"])
    if not rows:
        return np.zeros((0, 3, STAMP_SIZE, STAMP_SIZE), np.float32), table
    return stack_triplets(sci, ref, diff), table


def compare_with_braai(model: DRBModel, paths: Iterable[str | Path]) -> dict[str, Any]:
    """Agreement of the model with braai's ``drb`` on real ZTF alerts.

    Parameters
    ----------
    model : DRBModel
        The model to check.
    paths : iterable of str or Path
        Alert files or folders (``*.avro``, searched recursively); alerts repeated under
        several files count once.

    Returns
    -------
    dict
        ``n_alerts``, ``n_with_drb`` (alerts of schema >= 3.3, which carry braai's score),
        ``n_braai_real``/``n_braai_bogus`` (drb >= / < 0.5), ``agree_real_0p5`` (fraction of
        braai-real ones we also score >= 0.5), ``agree_real_threshold`` (>= our threshold),
        ``agree_bogus_0p5`` (fraction of braai-bogus ones we score < 0.5), ``spearman`` (rank
        correlation with braai), ``median_drb`` (ours, all alerts) and ``scores`` (per alert).
    """
    from scipy.stats import spearmanr

    x, t = read_alert_triplets(paths)
    s = model.score_normalized(x) if len(x) else np.zeros(0, np.float32)
    t = t.assign(zsds_drb=s)
    w = t[t["drb"].notna()]
    braai = w["drb"].to_numpy(float)
    ours = w["zsds_drb"].to_numpy(float)
    real = braai >= 0.5

    def frac(mask: np.ndarray) -> float:
        return float(mask.mean()) if mask.size else math.nan

    return {
        "n_alerts": len(t), "n_with_drb": len(w),
        "n_braai_real": int(real.sum()), "n_braai_bogus": int((~real).sum()),
        "agree_real_0p5": frac(ours[real] >= 0.5),
        "agree_real_threshold": frac(ours[real] >= model.threshold),
        "agree_bogus_0p5": frac(ours[~real] < 0.5),
        "spearman": float(spearmanr(braai, ours).statistic) if len(w) > 2 else math.nan,
        "median_drb": float(np.median(s)) if len(s) else math.nan,
        "scores": t[["candid", "isdiffpos", "schemavsn", "rb", "drb", "zsds_drb"]]
        .to_dict(orient="records"),
    }
