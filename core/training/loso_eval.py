"""Measuring and choosing under leave-one-source-out (LOSO).

Every function here takes the folds of :func:`core.training.loso.loso_folds`
over a :class:`~core.training.loso_data.SourceData` and returns, per fold,
the logits of the held-out source's tracks from a model that never saw that
source. Metrics per fold: accuracy, macro ROC-AUC (genres with positives in
the held-out source), ECE of the calibrated distribution.

Calibration across folds ("cross-fold temperature"): fold *k*'s temperature
is fitted on the held-out logits of the *other* folds (each from a model
that did not see its own source), so no label of source *k* shapes the
temperature that fold *k* is scored with.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from core.config import TrainConfig
from core.files import atomic_write_text
from core.training.calibration import expected_calibration_error, fit_temperature, log_loss, softmax_t
from core.training.linear_head import LinearHead, fit_linear_head, fit_patch_head
from core.training.loso import Fold
from core.training.loso_data import SourceData
from core.training.metrics import macro_auc

Log = Callable[[str], None]


@dataclass
class FoldLogits:
    """Held-out logits ``(n, G)`` of one fold with the true labels ``(n,)``;
    ``seen`` ``(n,)``: the track's genre has training examples in the fold
    (a source's genres that the other sources lack can never be right)."""

    held_out: str
    logits: np.ndarray
    y: np.ndarray
    seen: np.ndarray | None = None

    def seen_mask(self) -> np.ndarray:
        return np.ones(len(self.y), bool) if self.seen is None else self.seen


def seen_genres(y_train: np.ndarray, y_val: np.ndarray) -> np.ndarray:
    """``(n_val,)`` bool: the held-out track's genre occurs in ``y_train``."""
    return np.isin(y_val, np.unique(y_train))


def fold_metrics(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0,
                 seen: np.ndarray | None = None) -> dict:
    """Accuracy, macro ROC-AUC, ECE and log-loss of ``softmax(logits / T)``;
    with ``seen``, also accuracy and ECE over the tracks of seen genres."""
    p = softmax_t(logits, temperature)
    out = {"n": int(len(y)), "accuracy": float((p.argmax(1) == y).mean()) if len(y) else float("nan"),
           "macro_auc": macro_auc(y, p), "ece": expected_calibration_error(p, y),
           "log_loss": log_loss(p, y), "temperature": float(temperature)}
    if seen is not None:
        out.update(n_seen=int(seen.sum()), accuracy_seen=float((p[seen].argmax(1) == y[seen]).mean())
                   if seen.any() else float("nan"), ece_seen=expected_calibration_error(p[seen], y[seen]))
    return out


def _fit_on_seen(folds: Sequence[FoldLogits]) -> float:
    return fit_temperature(np.concatenate([f.logits[f.seen_mask()] for f in folds]),
                           np.concatenate([f.y[f.seen_mask()] for f in folds]))


def cross_fold_temperatures(folds: Sequence[FoldLogits]) -> list[float]:
    """Per fold, the temperature fitted on the other folds' held-out tracks of
    seen genres (a genre without training examples is an open-set miss that no
    temperature can make honest; the shipped model knows every genre)."""
    return [_fit_on_seen([f for j, f in enumerate(folds) if j != k]) for k in range(len(folds))]


def fold_accuracy(report: dict) -> dict[str, float]:
    """Held-out source → its accuracy (calibrated) in a :func:`loso_report`."""
    return {s: v["calibrated"]["accuracy"] for s, v in report["folds"].items()}


def loso_report(folds: Sequence[FoldLogits]) -> dict:
    """Per fold (uncalibrated and with the cross-fold temperature) and the
    mean over folds; ``pooled_temperature``: fitted on every fold's held-out
    tracks of seen genres (what a model trained on all sources ships with)."""
    temps = cross_fold_temperatures(folds)
    per = {}
    for f, t in zip(folds, temps):
        per[f.held_out] = {"uncalibrated": fold_metrics(f.logits, f.y, 1.0, f.seen),
                           "calibrated": fold_metrics(f.logits, f.y, t, f.seen)}
    keys = ("accuracy", "macro_auc", "ece", "log_loss") + (("accuracy_seen", "ece_seen")
                                                         if all(f.seen is not None for f in folds) else ())
    mean = {k: float(np.mean([per[s]["calibrated"][k] for s in per])) for k in keys}
    return {"folds": per, "mean": mean, "pooled_temperature": _fit_on_seen(folds)}


def with_augmented(data: SourceData, names: Sequence[str], idx: np.ndarray,
                   copies: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Training rows of tracks ``idx``: their features ``(n, ΣD)`` and, with
    ``copies`` > 0, their augmented copies' (:meth:`SourceData.augmented_rows`),
    with the labels ``(n + M,)``."""
    x, y = data.stacked(names)[idx], data.y[idx]
    xa, ya = data.augmented_rows(names, idx, copies)
    return np.concatenate([x, xa]), np.concatenate([y, ya])


# The head's form: ``clip`` fits the clip vectors (pooled over patches), ``patch``
# fits every 3 s patch as a row (:func:`~core.training.linear_head.fit_patch_head`).
HEADS = ("clip", "patch")
HEAD_NAMES = {"clip": "clip-pooled logistic", "patch": "per-patch logistic"}
# The per-patch head's C grid (step 1d of core.training.fused_trunks_train, and the head variants' rows):
# ten rows per clip weaken a given C, so it sits a step lower than the clip-pooled grid.
PATCH_HEAD_CS = (0.00001, 0.00003, 0.0001)


def fit_head(data: SourceData, names: Sequence[str], idx: np.ndarray, c: float,
             copies: int = 0, head: str = "clip") -> LinearHead:
    """The standardised logistic head on ``names``' features, fitted on tracks
    ``idx`` (and ``copies`` augmented copies of each, :func:`with_augmented`),
    in the clip vectors' layout either way (``head``: one of :data:`HEADS`)."""
    x, y = with_augmented(data, names, idx, copies)
    if head == "clip":
        return fit_linear_head(x, y, len(data.labels), c=c)
    if head != "patch":
        raise ValueError(f"head {head!r} is not one of {HEADS}")
    xp, yp = data.patch_rows(names, idx, copies)
    return fit_patch_head(xp, yp, x, data.patch_columns(names), len(data.labels), c=c)


def linear_fold_logits(data: SourceData, folds: Sequence[Fold], names: Sequence[str],
                       c: float, copies: int = 0, head: str = "clip") -> list[FoldLogits]:
    """A standardised logistic regression on ``names``' features per fold
    (:func:`fit_head`), trained on the fold's tracks and, with ``copies``, on as
    many augmented copies of each of them (never of the held-out source's)."""
    x = data.stacked(names)
    out = []
    for f in folds:
        lh = fit_head(data, names, f.train, c, copies, head)
        out.append(FoldLogits(f.held_out, lh.logits(x[f.val]), data.y[f.val],
                              seen_genres(data.y[f.train], data.y[f.val])))
    return out


def _row_key(data: SourceData, folds: Sequence[Fold], names: Sequence[str], c: float) -> str:
    """Identifies a grid row's inputs: features (values too), ``C``, fold membership, labels."""
    h = hashlib.sha256(json.dumps([list(names), float(c), [[data.tracks[i].track_id for i in f.train]
                                                            for f in folds]]).encode())
    h.update(np.ascontiguousarray(data.stacked(names), np.float32).tobytes())
    h.update(np.asarray(data.y, np.int64).tobytes())
    return h.hexdigest()[:16]


def choose_linear(data: SourceData, folds: Sequence[Fold], feature_sets: Sequence[Sequence[str]],
                  cs: Sequence[float], log: Log = print, cache_dir: str | Path | None = None,
                  name: str = "") -> dict:
    """Grid over feature sets × ``C``; the choice maximises LOSO mean accuracy
    (then mean macro AUC). Returns ``{"grid": [...], "best": {...}}``. With
    ``cache_dir``, each row is kept there as JSON keyed by its inputs
    (a row costs seconds to minutes of logistic regressions)."""
    grid = []
    for names in feature_sets:
        for c in cs:
            path = Path(cache_dir) / f"{_row_key(data, folds, names, c)}.json" if cache_dir else None
            row = json.loads(path.read_text()) if path is not None and path.is_file() else None
            if row is None:
                rep = loso_report(linear_fold_logits(data, folds, names, c))
                row = {"features": list(names), "C": float(c), "mean": rep["mean"],
                       "folds": {s: v["calibrated"] for s, v in rep["folds"].items()},
                       "pooled_temperature": rep["pooled_temperature"]}
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_text(path, json.dumps(row))
            grid.append(row)
            log(f"LOSO {name + ' ' if name else ''}{'+'.join(names)} C={c:g}: accuracy "
                f"{row['mean']['accuracy']:.3f} AUC {row['mean']['macro_auc']:.3f} ECE {row['mean']['ece']:.3f}")
    best = max(grid, key=lambda r: (r["mean"]["accuracy"], r["mean"]["macro_auc"]))
    return {"criterion": "LOSO mean accuracy (then mean macro AUC)", "grid": grid, "best": best}


def per_genre_recall(y: np.ndarray, pred: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Recall of each genre with examples in ``y`` ``(n,)`` given predictions ``pred`` ``(n,)``."""
    return {g: float((pred[y == i] == i).mean()) for i, g in enumerate(labels) if (y == i).any()}


def cnn_msd_fold_logits(data: SourceData, folds: Sequence[Fold], cfg: TrainConfig,
                        log: Log = print) -> tuple[list[FoldLogits], list[dict]]:
    """``cnn_msd`` with its head (conv 5, tag layer, genre layer) retrained per
    fold by :func:`~core.training.train.train_transfer` on the cached frozen
    trunk, early-stopped as shipped: on the val split of the fold's training
    sources (never on the held-out source)."""
    import torch

    from core.training.train import LabelledMels, train_transfer

    if data.trunk is None:
        raise ValueError("cnn_msd folds need the trunk outputs")
    out, hist = [], []
    for f in folds:
        tr = f.train[[data.tracks[i].split != "val" for i in f.train]]
        va = f.train[[data.tracks[i].split == "val" for i in f.train]]
        empty = np.zeros((0,), np.float16)
        train = LabelledMels([data.tracks[i] for i in tr], empty, data.y[tr])
        val = LabelledMels([data.tracks[i] for i in va], empty, data.y[va])
        model, h = train_transfer("cnn_msd", train, val, data.labels, cfg, log=log, show_progress=False,
                                  feats=(data.trunk[tr], data.trunk[va]))
        pred = model.predict_trunk(torch.from_numpy(data.trunk[f.val].astype(np.float32)))
        out.append(FoldLogits(f.held_out, pred.logits.astype(np.float64), data.y[f.val],
                              seen_genres(data.y[f.train], data.y[f.val])))
        hist.append({"held_out": f.held_out, "n_train": int(len(tr)), "n_early_stop": int(len(va)),
                     "best_epoch": h["best_epoch"], "train_seconds": h["train_seconds"]})
    return out, hist
