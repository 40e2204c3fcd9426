"""The default model's genres on an indexed library, adapted to it without a
label (:mod:`core.training.library_head`): what ``python -m core adapt
--index`` prints and the Embedding map page shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.special import softmax

from core.catalog.snapshot import CatalogError
from core.config import AdaptConfig
from core.training.library_head import adapt_served


def adapted_genres(index, model, artifacts_dir: str | Path, cfg: AdaptConfig = AdaptConfig()) -> dict:
    """Every track of ``index`` (a :class:`~core.catalog.index.CatalogIndex`
    with the default model's embeddings) with its top genre and probability
    before and after adapting ``model`` to it → ``{"summary", "tracks"}``."""
    if model.name not in index.models:
        raise CatalogError(f"the index holds no {model.name} embeddings; index the library with the default model")
    labels = index.model_labels(model.name)
    plain, adapted = (softmax(z, axis=1) for z in adapt_served(model, index.embeddings(model.name), artifacts_dir, cfg))
    ids = index.table()["track_id"].tolist()
    rows = [{"track_id": str(t), "before": labels[i], "p_before": float(p.max()),
             "after": labels[j], "p_after": float(a.max())}
            for t, i, p, j, a in zip(ids, plain.argmax(1), plain, adapted.argmax(1), adapted)]
    summary = {"tracks": len(rows), "changed": sum(r["before"] != r["after"] for r in rows),
               "before": _counts(plain.argmax(1), labels), "after": _counts(adapted.argmax(1), labels)}
    return {"summary": summary, "tracks": rows}


def _counts(idx, labels: list[str]) -> dict[str, int]:
    return {g: int(n) for g, n in zip(labels, np.bincount(idx, minlength=len(labels))) if n}
