"""benchmarks.self_train_probe: the nested choice never looks at the fold it scores."""

from __future__ import annotations

import numpy as np

from benchmarks.self_train_probe import nested
from core.training.loso_eval import FoldLogits


def _folds(accs: list[float], n: int = 10) -> list[FoldLogits]:
    out = []
    for i, a in enumerate(accs):
        y = np.zeros(n, np.int64)
        logits = np.zeros((n, 2))
        logits[: int(round(a * n)), 0] = 1.0               # right on the first a·n tracks
        logits[int(round(a * n)):, 1] = 1.0
        out.append(FoldLogits(f"s{i}", logits, y))
    return out


def test_nested_choice_is_made_on_the_other_folds_only():
    runs = {(0.0, 0): _folds([0.5, 0.5, 0.5]),
            (0.4, 1): _folds([1.0, 0.3, 0.3]),             # carried by fold 0: chosen where fold 0 only votes
            (0.7, 1): _folds([0.2, 0.6, 0.6])}
    picked, keys = nested(runs)
    assert keys == [(0.7, 1), (0.4, 1), (0.4, 1)]
    assert [float((f.logits.argmax(1) == f.y).mean()) for f in picked] == [0.2, 0.3, 0.3]
    _, keys = nested({(0.0, 0): _folds([0.5, 0.5, 0.5]), (0.4, 1): _folds([0.5, 0.5, 0.5])})
    assert keys == [(0.0, 0)] * 3                          # a tie keeps the head alone
