"""Self-training of a linear genre head on a new source: transductive
adaptation without a label of it (measured leave-one-source-out by
``benchmarks.self_train_probe``; README, "Self-training on the new source").

The head labels the new source's tracks; the share of them it is surest of
within each predicted genre joins its training rows with that genre, and it
is fitted again; each further round relabels from the last head. The refit
(which rows, per clip or per patch) is a parameter; :func:`refit_head` is
the one for a leave-one-source-out fold's head of either form.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy.special import softmax

from core.training.linear_head import HeadError, LinearHead, fit_linear_head, fit_patch_head
from core.training.loso_data import SourceData

# (rows of the new source (k,), their pseudo-genres (k,)) → the head refitted on the training rows and those
Refit = Callable[[np.ndarray, np.ndarray], LinearHead]


def pseudo_labels(logits: np.ndarray, frac: float) -> tuple[np.ndarray, np.ndarray]:
    """New-source logits ``(n, G)`` → (rows ``(k,)`` sorted, their argmax
    genres ``(k,)``): within each predicted genre, the ``frac`` (0 < frac ≤ 1)
    of its tracks with the highest top probability, at least one, so every
    predicted genre keeps its share."""
    if not 0.0 < frac <= 1.0:
        raise HeadError(f"self-training keeps a share in (0, 1] of each predicted genre, not {frac}")
    prob = softmax(np.asarray(logits, np.float64), axis=1)
    guess, sure = prob.argmax(1), prob.max(1)
    keep = [np.zeros(0, np.int64)]
    for g in np.unique(guess):
        idx = np.flatnonzero(guess == g)
        keep.append(idx[np.argsort(-sure[idx], kind="stable")[: max(1, int(round(frac * len(idx))))]])
    rows = np.sort(np.concatenate(keep))
    return rows, guess[rows]


def self_train(head: LinearHead, new_clips: np.ndarray, refit: Refit, frac: float, rounds: int
               ) -> list[LinearHead]:
    """The heads after rounds 1 … ``rounds``: each round labels the new
    source's clip vectors ``new_clips`` ``(n, D)`` with the last head
    (:func:`pseudo_labels`) and ``refit`` fits the next head."""
    heads = []
    for _ in range(rounds):
        rows, genres = pseudo_labels(head.logits(new_clips), frac)
        head = refit(rows, genres)
        heads.append(head)
    return heads


def refit_head(data: SourceData, names: Sequence[str], form: str, c: float, train: np.ndarray,
               extra: np.ndarray, extra_y: np.ndarray) -> LinearHead:
    """The head of ``form`` (``clip`` or ``patch``, as
    :func:`~core.training.loso_eval.fit_head` fits it without augmented
    copies) on ``names``' features of tracks ``train`` (their labels) and
    ``extra`` (labelled ``extra_y``), genres balanced over all of them."""
    x = data.stacked(names)
    clips = np.concatenate([x[train], x[extra]])
    if form == "clip":
        return fit_linear_head(clips, np.concatenate([data.y[train], extra_y]), len(data.labels), c=c)
    own, own_y = data.patch_rows(names, train)
    new, _ = data.patch_rows(names, extra)
    return fit_patch_head(np.concatenate([own, new]), np.concatenate([own_y, extra_y]), clips,
                          data.patch_columns(names), len(data.labels), c=c)

