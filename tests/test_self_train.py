"""core.training.self_train: pseudo-labels keep each predicted genre's
surest share, each round labels with the head of the round before, and a
refit takes the pseudo-labels as labels in both head forms."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import GenreError
from core.training.linear_head import LinearHead
from core.training.loso_data import SourceData
from core.training.self_train import pseudo_labels, refit_head, self_train


def test_pseudo_labels_keep_the_surest_share_of_every_predicted_genre():
    logits = np.log(np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8], [0.45, 0.55], [0.5, 0.5]]))
    rows, guess = pseudo_labels(logits, 0.5)
    # genre 0 is predicted for rows 0, 1, 2, 5 (a tie goes to the first genre): its surest two are 0 and 2;
    # genre 1 for rows 3 and 4: its surest one is 3
    assert rows.tolist() == [0, 2, 3] and guess.tolist() == [0, 0, 1]
    rows, _ = pseudo_labels(logits, 0.01)                 # at least one per predicted genre
    assert rows.tolist() == [0, 3]
    assert pseudo_labels(logits, 1.0)[0].tolist() == list(range(6))
    for bad in (0.0, 1.5):
        with pytest.raises(GenreError, match="share"):
            pseudo_labels(logits, bad)


def _head(w: float) -> LinearHead:
    """Two genres on one feature: genre 1 wins where ``x > 0`` when ``w > 0``."""
    return LinearHead(mean=np.zeros(1), scale=np.ones(1), weight=np.array([[0.0], [w]]), bias=np.zeros(2))


def test_each_round_labels_with_the_last_head():
    x = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    seen = []

    def refit(rows: np.ndarray, genres: np.ndarray) -> LinearHead:
        seen.append((rows.tolist(), genres.tolist()))
        return _head(-1.0 if len(seen) == 1 else 1.0)      # the first refit flips the decision

    heads = self_train(_head(1.0), x, refit, frac=1.0, rounds=2)
    assert len(heads) == 2 and heads[-1].weight[1, 0] == 1.0
    assert seen == [([0, 1, 2, 3], [0, 0, 1, 1]),          # labelled by the starting head
                    ([0, 1, 2, 3], [1, 1, 0, 0])]          # then by the flipped one
    assert self_train(_head(1.0), x, refit, frac=1.0, rounds=0) == []


def test_refit_learns_the_pseudo_labels_in_both_head_forms():
    rng = np.random.default_rng(0)
    n, p, d = 40, 3, 4
    pen = rng.normal(size=(n, p, d)).astype(np.float32)
    tags = rng.random((n, p, 2)).astype(np.float32)
    y = (pen.mean(1)[:, 0] > 0).astype(np.int64)
    pooled = np.concatenate([pen.mean(1), pen.max(1), tags.mean(1)], 1)
    data = SourceData(tracks=[], labels=["a", "b"], y=y, features={"t": pooled}, patches={"t": (pen, tags)})
    train, extra = np.arange(20), np.arange(20, 40)
    flipped = 1 - y[extra]                                # pseudo-labels that contradict the truth
    for form in ("clip", "patch"):
        honest = refit_head(data, ["t"], form, 1.0, train, extra, y[extra])
        fooled = refit_head(data, ["t"], form, 1.0, np.array([], np.int64), extra, flipped)
        honest, fooled = (h.logits(pooled[extra]).argmax(1) for h in (honest, fooled))
        assert (honest == y[extra]).mean() >= 0.9 and (fooled == flipped).mean() >= 0.9

