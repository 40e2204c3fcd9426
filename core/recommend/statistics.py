"""Statistics of the offline evaluation (:mod:`core.recommend.evaluation`).

``paired_t`` is the paper's statistic: a paired t-test over the simulated
listeners, who are *not* independent (400 listeners reuse ~100 tracks as seeds
and as recommendations), so its p-values overstate the evidence.
Half-sampling makes the **track** (or the **artist**) the unit: the
delete-d jackknife with d = n/2 (Shao & Wu 1989); :func:`half_sample_units`
draws a half, the evaluation re-simulates on it and :func:`half_sampling_ci`
turns the halves into an interval and a p-value.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats


def mean_ci(x: np.ndarray) -> tuple[float, list[float]]:
    """Mean and 95 % t-interval of ``x`` (a point interval for fewer than two distinct values)."""
    x = np.asarray(x, float)
    if len(x) == 0:
        return float("nan"), [float("nan"), float("nan")]
    m = float(x.mean())
    if len(x) < 2 or x.std() == 0:
        return m, [m, m]
    h = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, [m - h, m + h]


def paired_t(a: np.ndarray, b: np.ndarray) -> dict:
    """Paired t-test of ``a`` vs ``b`` over the same listeners (t < 0: b higher)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    if len(d) < 2 or np.allclose(d, d[0]):
        return {"t": 0.0 if np.allclose(d, 0) else float("inf") * np.sign(d[0]),
                "p": 1.0 if np.allclose(d, 0) else 0.0, "mean_diff": float(d.mean()) if len(d) else 0.0,
                "n": int(len(d))}
    r = stats.ttest_rel(a, b)
    return {"t": float(r.statistic), "p": float(r.pvalue), "mean_diff": float(d.mean()), "n": int(len(d))}


def half_sample_units(units: Sequence[np.ndarray], rng: np.random.Generator,
                      strata: Sequence[str] | None = None) -> np.ndarray:
    """Catalog rows of a random half of the ``units`` (tracks or artists),
    drawn without replacement (within each stratum when ``strata`` is given;
    the evaluation does not stratify, so the genre mix varies between halves
    as it would between catalogs)."""
    by: dict[str, list[int]] = {}
    for u, g in enumerate(strata if strata is not None else [""] * len(units)):
        by.setdefault(str(g), []).append(u)
    keep = []
    for members in by.values():
        n = len(members)
        take = n // 2 + (rng.random() < 0.5 if n % 2 else 0)   # odd strata: round at random
        keep += [members[i] for i in rng.permutation(n)[:take]]
    return np.sort(np.concatenate([units[u] for u in keep])) if keep else np.zeros(0, int)


def half_sampling_ci(diff: float, halves: Sequence[float], n_units: int, unit: str) -> dict:
    """Delete-d jackknife with ``d = n/2`` (Shao & Wu 1989) from half-sample
    re-evaluations: ``SE² = (n-d)/d · mean_s (θ_s − θ̄)²``, a 95 % t-interval
    (``R − 1`` df for ``R`` half-samples) around the full-catalog ``diff``
    and a two-sided p-value."""
    h = np.asarray([x for x in halves if np.isfinite(x)], float)
    out = {"diff": float(diff), "unit": unit, "n_units": int(n_units), "n_halves": int(len(h)),
           "method": f"half-sampling over {unit}s (delete-half jackknife, re-simulated)"}
    if len(h) < 2:
        return {**out, "se": float("nan"), "ci95": [float("nan")] * 2, "p": float("nan")}
    kept = n_units // 2
    d = n_units - kept
    se = float(math.sqrt(kept / max(d, 1) * np.mean((h - h.mean()) ** 2)))
    if se <= 1e-12:
        return {**out, "se": 0.0, "ci95": [float(diff)] * 2, "p": 1.0 if abs(diff) < 1e-12 else 0.0}
    half = float(stats.t.ppf(0.975, len(h) - 1)) * se
    return {**out, "se": se, "ci95": [float(diff) - half, float(diff) + half],
            "p": float(2 * stats.t.sf(abs(diff) / se, len(h) - 1))}


def d_z(a: np.ndarray, b: np.ndarray) -> float:
    """Paired effect size: mean difference over its standard deviation."""
    d = np.asarray(a, float) - np.asarray(b, float)
    sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    return float(d.mean() / sd) if sd > 1e-12 else float("nan")
