"""Which shipped model is the default: the one ``selection.json`` names.

``artifacts/selection.json`` is written by ``python -m core calibrate``
(:func:`core.training.default_choice.choose_default`: best leave-one-source-out
mean accuracy, then LOSO macro AUC, then val macro AUC, among the models
``loso.json`` measured; val macro AUC when there are none). Its shape::

    {"best_model": "<name>", "criterion": "<how it was chosen>", "val": {"<name>": score, ...},
     "loso": {"<name>": {"accuracy": …, "macro_auc": …, "ece": …}, ...}}

The app's model pickers start on ``best_model``. Nothing here knows any model
by name: without a valid file, or when its best model is not among the names
offered, the first offered name is the default.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from core.config import Paths

SELECTION_FILE = "selection.json"


def read_selection(artifacts_dir: str | os.PathLike | None = None) -> dict | None:
    """The parsed ``selection.json`` if it exists and has the documented shape, else ``None``."""
    root = Path(artifacts_dir) if artifacts_dir is not None else Paths().artifacts
    try:
        data = json.loads((root / SELECTION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("best_model"), str):
        return None
    val = data.get("val", {})
    if not isinstance(val, dict):
        return None
    return data


def best_model(names: list[str], artifacts_dir: str | os.PathLike | None = None) -> str:
    """The default model among ``names``: ``selection.json``'s ``best_model`` if
    it is one of them; else the name with the highest finite ``val`` score;
    else ``names[0]``. ``names`` must not be empty."""
    if not names:
        raise ValueError("no model names to choose from")
    sel = read_selection(artifacts_dir)
    if sel is None:
        return names[0]
    if sel["best_model"] in names:
        return sel["best_model"]
    scores = {n: s for n, s in sel.get("val", {}).items()
              if n in names and isinstance(s, (int, float)) and math.isfinite(s)}
    return max(scores, key=scores.get) if scores else names[0]
