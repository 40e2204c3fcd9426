"""core.training.self_train: pseudo-labels keep each predicted genre's
surest share, each round labels with the head of the round before, and a
refit takes the pseudo-labels as labels in both head forms."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import GenreError
from core.training.linear_head import ABSENT_BIAS, LinearHead
from core.training.loso_data import SourceData
from core.training.self_train import adapt_head, anchor_of, balanced_weights, pseudo_labels, refit_head, self_train


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


def test_the_anchor_is_the_training_loss_to_second_order_where_kfac_is_exact():
    # With a zero head every row has p uniform, so the rows' Hessian is exactly genre ⊗ feature.
    rng = np.random.default_rng(1)
    g, w, m = 3, 4, 60
    rows, y = rng.normal(size=(m, w)), rng.integers(0, g, m)
    head = LinearHead(mean=np.zeros(w), scale=np.ones(w), weight=np.zeros((g, w)), bias=np.zeros(g))
    cols = np.arange(w)
    a = anchor_of(head, cols, rows, y, c=1.0)
    assert a.rows == pytest.approx(m)                          # balanced weights sum to the rows
    assert np.allclose(a.genre.sum(1), 0) and np.allclose(a.genre, a.genre.T)
    assert np.linalg.eigvalsh(a.genre).min() > -1e-12 and np.linalg.eigvalsh(a.feature).min() > -1e-12
    assert a.feature[-1, -1] == pytest.approx(1.0)

    s = balanced_weights(y)
    zt = np.concatenate([rows, np.ones((m, 1))], 1)

    def loss(d):
        logits = zt @ d.T
        return float((s * (np.log(np.exp(logits).sum(1)) - logits[np.arange(m), y])).sum())

    d = 1e-3 * rng.normal(size=(g, w + 1))
    grad = ((np.full((m, g), 1 / g) - np.eye(g)[y]) * s[:, None]).T @ zt
    second = loss(d) - loss(0 * d) - (grad * d).sum()
    assert second == pytest.approx(0.5 * a.rows * np.trace(a.genre @ d @ a.feature @ d.T), rel=1e-2)


def test_adapting_moves_the_head_toward_the_pseudo_labels_and_leaves_unseen_genres():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(-1, 1, (50, 2)), rng.normal(1, 1, (50, 2))])
    y = np.repeat([0, 1], 50)
    # genre 2 never seen: weight 0 and the absent bias
    head = LinearHead(mean=np.zeros(2), scale=np.ones(2), weight=np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]),
                      bias=np.array([0.0, 0.0, ABSENT_BIAS]))
    anchor = anchor_of(head, np.arange(2), x, y, c=0.1)
    genres = np.repeat([0, 1], 100)                                # a new source up the second axis,
    new = rng.normal(0, 0.3, (200, 2)) + np.array([0.0, 2.0]) + 2.0 * genres[:, None] * [0, 1]   # split along it
    adapted = adapt_head(head, anchor, new, genres)
    assert (adapted.logits(new).argmax(1) == genres).mean() > (head.logits(new).argmax(1) == genres).mean() + 0.2
    assert np.array_equal(adapted.weight[2], head.weight[2]) and adapted.bias[2] == ABSENT_BIAS
    assert np.array_equal(adapted.mean, head.mean) and np.array_equal(adapted.scale, head.scale)
    # the anchor holds the training data: the old split along the first axis survives
    assert (adapted.logits(x).argmax(1) == y).mean() > 0.8
    again = adapt_head(head, anchor, new, genres)
    assert np.array_equal(again.weight, adapted.weight)              # deterministic
