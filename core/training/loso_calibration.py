"""Calibration maps chosen and checked leave-one-source-out.

Every method maps logits ``(N, G)`` to calibrated logits with an affine
map per genre, ``z' = z · a + b`` (``a``, ``b`` ``(G,)``), so whatever is
chosen folds into a linear head (:func:`fold_into_head`) and the served
model keeps ``softmax(z')`` with temperature 1:

* ``temperature``: ``a = 1/T`` for every genre, ``b = 0`` (Guo et al. 2017);
* ``bias``: one temperature plus a bias per genre (corrects a source's genre
  prior);
* ``vector``: vector scaling, a scale and a bias per genre (Guo et al. 2017).

``bias`` and ``vector`` are fitted with an L2 pull towards the plain
temperature map (``REG`` per held-out track), so a genre with few or no
fitting examples keeps ``a = 1/T``, ``b = 0``.

Checked LOSO: fold *k* is scored with the map fitted on the other folds'
held-out logits of seen genres (cross-fitted); the shipped map is fitted on
every fold's (pooled). :func:`compare_methods` reports per-fold ECE of each,
the floor no temperature can beat on each source
(:func:`oracle_temperature_ece`, fitted on the source's own labels: a bound, never shipped),
and the ECE that sampling alone gives a perfectly calibrated model with the
same confidences on as many tracks
(:func:`~core.training.calibration.ece_sampling_floor`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax

from core.training.calibration import ece_sampling_floor, expected_calibration_error, fit_temperature, log_loss
from core.training.loso_eval import FoldLogits
from core.training.metrics import macro_auc

METHODS = ("temperature", "bias", "vector")
REG = 0.01      # L2 weight (per fitting track) pulling a, b towards the temperature map


@dataclass(frozen=True)
class CalibrationMap:
    """``z' = z · scale + shift``; ``scale``, ``shift`` ``(G,)``."""

    method: str
    scale: np.ndarray
    shift: np.ndarray

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """``(N, G)`` → calibrated logits ``(N, G)``."""
        return np.asarray(logits, np.float64) * self.scale + self.shift

    def probs(self, logits: np.ndarray) -> np.ndarray:
        return np.exp(log_softmax(self.apply(logits), axis=1))

    def to_dict(self) -> dict:
        return {"method": self.method, "scale": self.scale.tolist(), "shift": self.shift.tolist()}


def fit_map(method: str, logits: np.ndarray, y: np.ndarray, reg: float = REG) -> CalibrationMap:
    """Fit ``method`` (one of :data:`METHODS`) on ``(logits (N, G), y (N,))`` by log-loss."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {METHODS}")
    z = np.asarray(logits, np.float64)
    y = np.asarray(y, np.int64)
    g = z.shape[1]
    t = fit_temperature(z, y)
    base = CalibrationMap("temperature", np.full(g, 1.0 / t), np.zeros(g))
    if method == "temperature" or not len(y):
        return base
    onehot = np.eye(g)[y]
    n = len(y)

    def unpack(p):
        a = np.full(g, p[0]) if method == "bias" else p[:g]
        return a, p[-g:]

    def loss(p):
        a, b = unpack(p)
        ls = log_softmax(z * a + b, axis=1)
        q = np.exp(ls)
        val = -(ls[np.arange(n), y]).mean() + reg * (((a - base.scale) ** 2).sum() + (b ** 2).sum())
        d = (q - onehot) / n                               # dL/dz' (N, G)
        ga, gb = (d * z).sum(0) + 2 * reg * (a - base.scale), d.sum(0) + 2 * reg * b
        grad_a = np.array([ga.sum()]) if method == "bias" else ga     # one shared scale
        return val, np.concatenate([grad_a, gb])

    p0 = np.concatenate([[1.0 / t] if method == "bias" else base.scale, np.zeros(g)])
    res = minimize(loss, p0, jac=True, method="L-BFGS-B")
    a, b = unpack(res.x)
    return CalibrationMap(method, a, b)


def _fit_on_seen(method: str, folds: Sequence[FoldLogits]) -> CalibrationMap:
    z = np.concatenate([f.logits[f.seen_mask()] for f in folds])
    y = np.concatenate([f.y[f.seen_mask()] for f in folds])
    return fit_map(method, z, y)


def cross_fitted(method: str, folds: Sequence[FoldLogits]) -> list[CalibrationMap]:
    """Per fold, ``method`` fitted on the other folds' held-out tracks of seen genres."""
    return [_fit_on_seen(method, [f for j, f in enumerate(folds) if j != k]) for k in range(len(folds))]


def compare_methods(folds: Sequence[FoldLogits], methods: Sequence[str] = METHODS) -> dict:
    """Per method: per-fold ECE / log-loss (all held-out tracks, and seen genres)
    with the cross-fitted map, their mean and worst fold, and the pooled map
    (what ships). ``best``: lowest mean ECE, then mean log-loss."""
    out, maps = {}, {m: cross_fitted(m, folds) for m in methods}
    for m in methods:
        per = {}
        for f, cmap in zip(folds, maps[m]):
            p, s = cmap.probs(f.logits), f.seen_mask()
            per[f.held_out] = {"ece": expected_calibration_error(p, f.y), "log_loss": log_loss(p, f.y),
                               "ece_seen": expected_calibration_error(p[s], f.y[s]),
                               "accuracy": float((p.argmax(1) == f.y).mean()), "macro_auc": macro_auc(f.y, p)}
        out[m] = {"folds": per, "mean_ece": float(np.mean([v["ece"] for v in per.values()])),
                  "worst_ece": float(np.max([v["ece"] for v in per.values()])),
                  "mean_log_loss": float(np.mean([v["log_loss"] for v in per.values()])),
                  "pooled": _fit_on_seen(m, folds).to_dict()}
    best = min(out, key=lambda m: (out[m]["mean_ece"], out[m]["mean_log_loss"]))
    floor = {f.held_out: ece_sampling_floor(cmap.probs(f.logits)) for f, cmap in zip(folds, maps[best])}
    return {"criterion": "LOSO mean ECE of the cross-fitted map (then mean log-loss)", "methods": out,
            "best": best, "oracle_temperature": {f.held_out: oracle_temperature_ece(f.logits, f.y) for f in folds},
            # What a perfectly calibrated model with the best map's confidences would show on each source.
            "sampling_floor": floor}


def oracle_temperature_ece(logits: np.ndarray, y: np.ndarray) -> dict:
    """Not a method: the ECE of the temperature that minimises ECE on the fold's own
    labels (bounded search over :data:`~core.training.calibration.T_BOUNDS`), a floor
    for what any temperature fitted elsewhere can reach on that source."""
    from scipy.optimize import minimize_scalar

    from core.training.calibration import T_BOUNDS, softmax_t

    res = minimize_scalar(lambda lt: expected_calibration_error(softmax_t(logits, float(np.exp(lt))), y),
                          bounds=tuple(np.log(T_BOUNDS)), method="bounded")
    p = softmax_t(logits, float(np.exp(res.x)))
    return {"temperature": float(np.exp(res.x)), "ece": expected_calibration_error(p, y),
            "accuracy": float((p.argmax(1) == y).mean()), "mean_confidence": float(p.max(1).mean())}


def fold_into_head(weight: np.ndarray, bias: np.ndarray, cmap: CalibrationMap) -> tuple[np.ndarray, np.ndarray]:
    """A linear head ``(weight (G, D), bias (G,))`` followed by ``cmap`` as one
    linear head: ``(W · a[:, None], bias · a + b)``."""
    a, b = np.asarray(cmap.scale), np.asarray(cmap.shift)
    return np.asarray(weight) * a[:, None], np.asarray(bias) * a + b


__all__ = ["METHODS", "CalibrationMap", "compare_methods", "cross_fitted", "fit_map", "fold_into_head"]
