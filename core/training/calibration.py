"""Probabilities that mean what they say: temperature scaling and its measures.

The networks keep the paper's sigmoid outputs and binary cross-entropy; what
the app and CLI show is ``softmax(logit / T)`` over genres, with one
temperature ``T`` per model fitted on the validation split by minimising
the multi-class log-loss (Guo et al., "On calibration of modern neural
networks", ICML 2017). ``T`` does not change the ranking of genres, so
accuracy and per-genre AUC are unchanged by it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

T_BOUNDS = (0.05, 20.0)


def softmax_t(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``(N, G)`` logits → rows of ``softmax(logits / T)``."""
    return np.exp(log_softmax(np.asarray(logits, np.float64) / temperature, axis=1))


def log_loss(probs: np.ndarray, y: np.ndarray, eps: float = 1e-12) -> float:
    """Mean negative log-probability of the true genre."""
    p = np.asarray(probs, np.float64)[np.arange(len(y)), y]
    return float(-np.log(np.clip(p, eps, 1.0)).mean()) if len(y) else float("nan")


def _bins(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each confidence: bin ``k`` holds ``(k/n, (k+1)/n]``, bin 0 also 0."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)


def _binned_ece(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> np.ndarray:
    """ECE of confidences ``(N,)`` against outcomes ``(..., N)`` (one ECE per leading row):
    Σ_bins |Σ correct − Σ confidence| / N, which is Σ_bins (n_b / N) · |accuracy_b − confidence_b|."""
    onehot = np.eye(n_bins)[_bins(conf, n_bins)]                  # (N, bins)
    return np.abs(correct @ onehot - conf @ onehot).sum(-1) / len(conf)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """ECE of the top genre: Σ_bins (n_b / N) · |accuracy_b − confidence_b|,
    equal-width confidence bins (Naeini et al. 2015)."""
    probs = np.asarray(probs, np.float64)
    if not len(y):
        return float("nan")
    return float(_binned_ece(probs.max(1), (probs.argmax(1) == np.asarray(y)).astype(float), n_bins))


def ece_sampling_floor(probs: np.ndarray, n_bins: int = 10, draws: int = 2000, seed: int = 0) -> dict:
    """The ECE a *perfectly calibrated* model with these top-genre confidences
    would still show on this many tracks (``probs`` ``(N, G)``): each track's
    top genre is right with probability equal to its confidence, ``draws``
    times; ``{"mean", "p05", "p95", "n"}`` of :func:`expected_calibration_error`
    over the draws. Sampling noise alone: a measured ECE near or below
    ``mean`` is within noise, and an ECE target below it cannot be checked on
    ``N`` tracks."""
    conf = np.asarray(probs, np.float64).max(1)
    if not len(conf):
        return {"mean": float("nan"), "p05": float("nan"), "p95": float("nan"), "n": 0}
    correct = (np.random.default_rng(seed).random((draws, len(conf))) < conf).astype(float)
    e = _binned_ece(conf, correct, n_bins)
    return {"mean": float(e.mean()), "p05": float(np.quantile(e, 0.05)), "p95": float(np.quantile(e, 0.95)),
            "n": int(len(conf))}


def reliability(probs: np.ndarray, y: np.ndarray, n_bins: int = 10) -> dict[str, list[float]]:
    """Per confidence bin: mean confidence, accuracy and count (for a reliability plot)."""
    probs = np.asarray(probs, np.float64)
    conf, correct = probs.max(1), (probs.argmax(1) == y).astype(float)
    bins = _bins(conf, n_bins)
    out: dict[str, list[float]] = {"confidence": [], "accuracy": [], "count": []}
    for k in np.unique(bins):                   # the non-empty bins, lowest first
        m = bins == k
        out["confidence"].append(float(conf[m].mean()))
        out["accuracy"].append(float(correct[m].mean()))
        out["count"].append(int(m.sum()))
    return out


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The ``T`` in :data:`T_BOUNDS` that minimises the log-loss of
    ``softmax(logits / T)`` on ``(logits, y)``; 1.0 for an empty set."""
    logits = np.asarray(logits, np.float64)
    if len(y) == 0:
        return 1.0
    res = minimize_scalar(lambda lt: log_loss(softmax_t(logits, float(np.exp(lt))), y),
                          bounds=tuple(np.log(T_BOUNDS)), method="bounded")
    return float(np.exp(res.x))


def calibration_report(logits: np.ndarray, sigmoid: np.ndarray, y: np.ndarray,
                       temperature: float) -> dict:
    """ECE and log-loss of the raw sigmoid outputs (normalised to sum to 1,
    as a distribution), of ``softmax(logits)`` and of the calibrated
    ``softmax(logits / T)``."""
    sig = np.asarray(sigmoid, np.float64)
    sig_dist = sig / np.clip(sig.sum(1, keepdims=True), 1e-12, None)
    raw, cal = softmax_t(logits, 1.0), softmax_t(logits, temperature)
    return {
        "temperature": float(temperature),
        "sigmoid": {"ece": expected_calibration_error(sig_dist, y), "log_loss": log_loss(sig_dist, y),
                    "ece_top_sigmoid": _ece_top_sigmoid(sig, y)},
        "uncalibrated_softmax": {"ece": expected_calibration_error(raw, y), "log_loss": log_loss(raw, y)},
        "calibrated": {"ece": expected_calibration_error(cal, y), "log_loss": log_loss(cal, y),
                       "ece_sampling_floor": ece_sampling_floor(cal)},
    }


def _ece_top_sigmoid(sig: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """ECE when the top genre's raw sigmoid value is read as its probability
    (what the app displayed before calibration)."""
    conf = sig.max(1)
    fake = np.zeros_like(sig)
    fake[np.arange(len(sig)), sig.argmax(1)] = conf
    return expected_calibration_error(fake, y, n_bins)
