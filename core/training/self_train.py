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

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.special import softmax

from core.training.linear_head import ABSENT_BIAS, HeadError, LinearHead, fit_linear_head, fit_patch_head
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


# ---------------------------------------------------------------------------------------------------------------
# Self-training without the training rows: a Kronecker-factored Laplace anchor (Martens & Grosse 2015, K-FAC;
# Ritter et al. 2018) stands in for the training rows' loss, so a served head can adapt on a user's library.

@dataclass(frozen=True)
class Anchor:
    """The training rows' cross-entropy near a per-patch head, to second order.

    With ``Δ = [W − W₀, b − b₀]`` ``(G, W + 1)`` on the head's standardised
    patch columns, the rows' weighted loss is about ``const + ½ rows ·
    tr(genre Δ feature Δᵀ)`` (the gradient term is the L2 penalty's, which the
    adapted objective keeps exactly). ``genre`` ``(G, G)``: the rows' weighted
    mean of ``diag p − p pᵀ``; ``feature`` ``(W + 1, W + 1)``: their weighted
    mean of ``z̃ z̃ᵀ`` (``z`` standardised, a 1 appended); ``rows`` ``()``: their
    summed weight (genres balanced, as the head was fitted); ``columns`` ``(W,)``:
    where the patch columns sit in the clip vectors; ``c``: the head's L2 C.
    Aggregates only: no training row can be read back from it."""

    genre: np.ndarray
    feature: np.ndarray
    rows: float
    columns: np.ndarray
    c: float


def _standardised(head: LinearHead, columns: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Patch rows ``(M, W)`` on ``columns`` → ``(M, W)`` in the head's clip standardisation."""
    return (np.asarray(rows, np.float64) - head.mean[columns]) / head.scale[columns]


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """``(M,)`` row weights ``M / (genres present · rows of the genre)`` (sklearn's "balanced")."""
    _, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    return len(y) / (len(counts) * counts[inv])


def anchor_of(head: LinearHead, columns: np.ndarray, rows: np.ndarray, y: np.ndarray, c: float) -> Anchor:
    """The :class:`Anchor` of ``head`` (uncalibrated, fitted per patch at ``c``)
    on its training patch rows ``(M, W)`` (values on ``columns``) labelled ``y`` ``(M,)``."""
    z = _standardised(head, columns, rows)
    p = softmax(z @ head.weight[:, columns].T + head.bias, axis=1)
    s = balanced_weights(y)
    w = s / s.sum()
    genre = np.diag(w @ p) - (p * w[:, None]).T @ p
    zt = np.concatenate([z, np.ones((len(z), 1))], axis=1)
    feature = (zt * w[:, None]).T @ zt
    return Anchor(genre=genre, feature=feature, rows=float(s.sum()), columns=np.asarray(columns, np.int64), c=c)


def adapt_head(head: LinearHead, anchor: Anchor, rows: np.ndarray, y: np.ndarray, max_iter: int = 200) -> LinearHead:
    """``head`` (uncalibrated) refitted on new patch rows ``(K, W)`` with
    pseudo-genres ``y`` ``(K,)`` (balanced among themselves) beside its
    training rows as :class:`Anchor` summarises them: minimises the new rows'
    cross-entropy + ``‖W − W₀‖² / 2C`` + the anchor's quadratic, by L-BFGS.
    Genres the head never saw keep their weights; the standardisation stays."""
    import torch

    cols = anchor.columns
    present = torch.as_tensor(head.bias > ABSENT_BIAS / 2)
    w0 = torch.as_tensor(head.weight[:, cols], dtype=torch.float64)
    b0 = torch.as_tensor(head.bias, dtype=torch.float64)
    z = torch.as_tensor(_standardised(head, cols, rows))
    target = torch.as_tensor(np.asarray(y, np.int64))
    s = torch.as_tensor(balanced_weights(y))
    genre, feature = torch.as_tensor(anchor.genre), torch.as_tensor(anchor.feature)
    delta = torch.zeros(len(b0), len(cols) + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([delta], max_iter=max_iter, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        d = delta * present[:, None]
        logits = z @ (w0 + d[:, :-1]).T + b0 + d[:, -1]
        ce = (torch.nn.functional.cross_entropy(logits, target, reduction="none") * s).sum()
        out = ce + (d[:, :-1] ** 2).sum() / (2 * anchor.c) + 0.5 * anchor.rows * torch.trace(genre @ d @ feature @ d.T)
        out.backward()
        return out

    opt.step(loss)
    d = (delta * present[:, None]).detach().numpy()
    weight = head.weight.copy()
    weight[:, cols] += d[:, :-1]
    return LinearHead(mean=head.mean, scale=head.scale, weight=weight, bias=head.bias + d[:, -1])
