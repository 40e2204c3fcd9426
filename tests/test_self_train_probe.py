"""benchmarks.self_train_probe: the nested choice never looks at the fold it scores."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_library_sizes_draws_seeded_subsets_and_takes_a_small_source_whole_once():
    from benchmarks.self_train_probe import library_sizes
    from core.training.loso import Fold
    from core.training.loso_data import SourceData

    rng = np.random.default_rng(0)
    n, p, d = 60, 2, 3
    y = np.repeat([0, 1], n // 2)
    pen = (rng.normal(size=(n, p, d)) + 2.0 * y[:, None, None]).astype(np.float32)
    tags = rng.random((n, p, 2)).astype(np.float32)
    pooled = np.concatenate([pen.mean(1), pen.max(1), tags.mean(1)], 1)
    data = SourceData(tracks=[], labels=["a", "b"], y=y, features={"t": pooled}, patches={"t": (pen, tags)})
    folds = [Fold("s0", np.arange(0, 60, 2), np.arange(1, 60, 2))]        # 30 held-out tracks
    out = library_sizes(data, folds, ["t"], 1.0, [10, 50], draws=3)
    assert out["10"]["libraries"] == 3 and out["10"]["tracks"] == 30        # three draws of 10
    assert out["50"]["libraries"] == 1 and out["50"]["tracks"] == 30        # the whole source, once
    for r in out.values():
        assert 0 <= r["before"] <= 1 and r["delta_accuracy"] == pytest.approx(r["after"] - r["before"])
    assert library_sizes(data, folds, ["t"], 1.0, [10], draws=3) == {"10": out["10"]}   # seeded
