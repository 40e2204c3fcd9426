"""Which shipped model the app starts on, chosen leave-one-source-out.

The in-source val split flatters a model that learns the source (genre and
source are partly confounded in the shared data), so the default is the
model with the best leave-one-source-out (LOSO) mean accuracy, then LOSO
mean macro AUC, then in-source val macro AUC — among the shipped models that
have LOSO figures in ``loso.json`` (``python -m core loso``). Without any,
the choice falls back to in-source val macro AUC (then accuracy).

The record is what ``selection.json`` holds (read by
:mod:`core.models.selection`)::

    {"best_model": name, "criterion": "...", "split": "val", "n_tracks": n,
     "val": {name: val macro AUC}, "scores": {...},
     "loso": {name: {"accuracy": …, "macro_auc": …, "ece": …}}}
"""

from __future__ import annotations

import math

LOSO_CRITERION = "leave-one-source-out mean accuracy (then LOSO mean macro AUC, then val macro roc_auc)"


def loso_means(loso: dict | None, names) -> dict[str, dict]:
    """``{name: LOSO mean figures}`` for the models of ``names`` that ``loso`` (the
    parsed ``loso.json``) measured with a finite mean accuracy."""
    out = {}
    for n in names:
        rec = (loso or {}).get(n)
        m = rec.get("mean") if isinstance(rec, dict) else None
        if isinstance(m, dict) and isinstance(m.get("accuracy"), (int, float)) and math.isfinite(m["accuracy"]):
            out[n] = {k: float(m[k]) for k in ("accuracy", "macro_auc", "ece") if isinstance(m.get(k), (int, float))}
    return out


def choose_default(scores: dict[str, dict], loso: dict | None, split: str = "val") -> dict:
    """``scores``: ``{name: {"roc_auc": …, "accuracy": …}}`` on the in-source
    ``split``; ``loso``: parsed ``loso.json`` or ``None``. Returns the
    selection record's choice fields: ``best_model``, ``criterion``, ``loso``."""
    if not scores:
        raise ValueError("no model scores to choose from")
    means = loso_means(loso, scores)
    if means:
        best = max(means, key=lambda n: (means[n]["accuracy"], means[n].get("macro_auc", -math.inf),
                                         scores[n]["roc_auc"]))
        return {"best_model": best, "criterion": LOSO_CRITERION, "loso": means}
    best = max(scores, key=lambda n: (scores[n]["roc_auc"], scores[n]["accuracy"]))
    return {"best_model": best, "criterion": f"{split} macro roc_auc (then accuracy)", "loso": {}}


__all__ = ["LOSO_CRITERION", "choose_default", "loso_means"]
