"""Classification metrics per genre and macro, with bootstrap intervals and
paired tests between two models evaluated on the same tracks."""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.stats import rankdata
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_curve


def one_hot(y: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(y), n), dtype=np.float32)
    out[np.arange(len(y)), y] = 1
    return out


def binary_auc(t: np.ndarray, s: np.ndarray) -> float:
    """ROC-AUC via the Mann–Whitney rank statistic (ties averaged) — equal to
    sklearn's ``roc_auc_score`` and ~30× faster, which matters inside the
    bootstrap loops. NaN when ``t`` has only one class."""
    t = np.asarray(t)
    n_pos = int(t.sum())
    n_neg = len(t) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[t == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auc(y: np.ndarray, probs: np.ndarray) -> float:
    """Mean one-vs-rest ROC-AUC over genres that have positives and negatives."""
    t = one_hot(y, probs.shape[1])
    aucs = [binary_auc(t[:, g], probs[:, g]) for g in range(probs.shape[1])]
    aucs = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(aucs)) if aucs else float("nan")


def _macro_f1(y: np.ndarray, pred: np.ndarray, n: int) -> float:
    present = np.unique(y)
    _, _, f1, _ = precision_recall_fscore_support(y, pred, labels=present, zero_division=0)
    return float(np.mean(f1))


def bootstrap_ci(y: np.ndarray, probs: np.ndarray, stat, n_boot: int = 1000,
                 seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(y, probs)`` over tracks."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        v = stat(y[idx], probs[idx])
        if not np.isnan(v):
            vals.append(v)
    if not vals:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (float(lo), float(hi))


def classification_report(y: np.ndarray, probs: np.ndarray, labels: list[str],
                          n_boot: int = 1000, seed: int = 0, roc_points: int = 101) -> dict:
    """Per-genre and macro metrics of one model on one set of tracks.

    ``y`` holds label indices into ``labels``; ``probs`` is ``(N, G)``. F1,
    precision and recall use argmax (single-label genres); the paper's
    threshold-0.5 variants are reported alongside.
    """
    n = len(labels)
    pred = probs.argmax(1)
    t = one_hot(y, n)
    thr = probs >= 0.5
    p, r, f1, sup = precision_recall_fscore_support(y, pred, labels=range(n), zero_division=0)
    per_genre, roc = {}, {}
    rng = np.random.default_rng(seed)
    boots = [rng.integers(0, len(y), len(y)) for _ in range(n_boot)]
    for g, name in enumerate(labels):
        auc = binary_auc(t[:, g], probs[:, g])
        tp = int((thr[:, g] & (t[:, g] == 1)).sum())
        p05 = tp / max(int(thr[:, g].sum()), 1)
        r05 = tp / max(int(t[:, g].sum()), 1)
        f05 = 2 * p05 * r05 / (p05 + r05) if p05 + r05 else 0.0
        auc_ci = _ci([binary_auc(t[b, g], probs[b, g]) for b in boots])
        f1_ci = _ci([_f1_for(y[b], pred[b], g) for b in boots]) if sup[g] else (float("nan"),) * 2
        per_genre[name] = {
            "precision": float(p[g]), "recall": float(r[g]), "f1": float(f1[g]),
            "roc_auc": auc, "support": int(sup[g]),
            "precision_at_0.5": p05, "recall_at_0.5": r05, "f1_at_0.5": f05,
            "roc_auc_ci95": list(auc_ci), "f1_ci95": list(f1_ci),
        }
        if 0 < t[:, g].sum() < len(y):
            fpr, tpr, _ = roc_curve(t[:, g], probs[:, g])
            grid = np.linspace(0, 1, roc_points)
            roc[name] = {"fpr": grid.round(4).tolist(),
                         "tpr": np.interp(grid, fpr, tpr).round(4).tolist()}
    present = [g for g in range(n) if sup[g]]
    macro = {
        "roc_auc": macro_auc(y, probs),
        "f1": float(np.mean(f1[present])) if present else float("nan"),
        "precision": float(np.mean(p[present])) if present else float("nan"),
        "recall": float(np.mean(r[present])) if present else float("nan"),
        "accuracy": float((pred == y).mean()),
        "f1_at_0.5": float(np.mean([per_genre[labels[g]]["f1_at_0.5"] for g in present])),
        "roc_auc_ci95": list(_ci([macro_auc(y[b], probs[b]) for b in boots])),
        "f1_ci95": list(_ci([_macro_f1(y[b], pred[b], n) for b in boots])),
        "accuracy_ci95": list(_ci([float((pred[b] == y[b]).mean()) for b in boots])),
        "n_tracks": int(len(y)),
    }
    cm = confusion_matrix(y, pred, labels=range(n))
    return {"macro": macro, "per_genre": per_genre, "roc": roc,
            "confusion": {"labels": labels, "matrix": cm.tolist()}}


def _f1_for(y: np.ndarray, pred: np.ndarray, g: int) -> float:
    tp = float(((pred == g) & (y == g)).sum())
    fp = float(((pred == g) & (y != g)).sum())
    fn = float(((pred != g) & (y == g)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")


def _ci(vals: list[float], alpha: float = 0.05) -> tuple[float, float]:
    v = np.asarray([x for x in vals if not np.isnan(x)])
    if v.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(v, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (float(lo), float(hi))


def mean_diff_ci(d: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, list[float]]:
    """Mean of per-item paired differences ``d`` ``(N,)`` and its percentile
    bootstrap 95 % interval over items (a point interval without resamples)."""
    d = np.asarray(d, np.float64)
    if not len(d):
        return float("nan"), [float("nan"), float("nan")]
    m = float(d.mean())
    if not n_boot:
        return m, [m, m]
    return m, list(_ci(np.random.default_rng(seed).choice(d, (n_boot, len(d))).mean(1).tolist()))


def paired_comparison(y: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray,
                      n_boot: int = 2000, seed: int = 0) -> dict:
    """Compare model A and B on the same tracks.

    * macro ROC-AUC difference (B − A) with a paired bootstrap 95 % interval
      and two-sided bootstrap p-value;
    * McNemar's exact test on argmax correctness (accuracy).
    """
    rng = np.random.default_rng(seed)
    diff = macro_auc(y, probs_b) - macro_auc(y, probs_a)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        d = macro_auc(y[idx], probs_b[idx]) - macro_auc(y[idx], probs_a[idx])
        if not np.isnan(d):
            boots.append(d)
    boots_arr = np.asarray(boots)
    p_boot = float(min(1.0, 2 * min((boots_arr <= 0).mean(), (boots_arr >= 0).mean()))) if boots else float("nan")
    ca = probs_a.argmax(1) == y
    cb = probs_b.argmax(1) == y
    b01 = int((ca & ~cb).sum())   # A right, B wrong
    b10 = int((~ca & cb).sum())   # B right, A wrong
    p_mc = float(stats.binomtest(min(b01, b10), b01 + b10, 0.5).pvalue) if b01 + b10 else 1.0
    return {
        "auc_diff": float(diff),
        "auc_diff_ci95": list(_ci(boots)),
        "auc_diff_p_bootstrap": p_boot,
        "accuracy_a": float(ca.mean()), "accuracy_b": float(cb.mean()),
        "mcnemar": {"a_only_correct": b01, "b_only_correct": b10, "p": p_mc},
    }
