"""A standardised multinomial logistic regression over frozen clip features,
as plain arrays (the served model copies them into torch tensors).

Genres without a training example (a leave-one-source-out fold can lack
some) get the weight 0 and the bias :data:`ABSENT_BIAS`: probability ≈ 0,
never the argmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import GenreError

ABSENT_BIAS = -50.0


class HeadError(GenreError, ValueError):
    """The linear head cannot be fitted on this data."""


@dataclass(frozen=True)
class LinearHead:
    """``logits = ((x − mean) / scale) @ weight.T + bias``.

    Shapes: ``mean``, ``scale`` ``(D,)``; ``weight`` ``(G, D)``; ``bias`` ``(G,)``.
    """

    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: np.ndarray

    def logits(self, x: np.ndarray) -> np.ndarray:
        """``(N, D)`` features → ``(N, G)`` logits."""
        z = (np.asarray(x, np.float64) - self.mean) / self.scale
        return z @ self.weight.T + self.bias


def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, scale)`` ``(D,)`` of ``x`` ``(N, D)``: a constant column gets scale 1."""
    scale = x.std(0)
    return x.mean(0), np.where(scale > 1e-8, scale, 1.0)


def fit_linear_head(x: np.ndarray, y: np.ndarray, n_classes: int, c: float = 0.1,
                    seed: int = 0, max_iter: int = 3000, sample_weight: np.ndarray | None = None
                    ) -> LinearHead:
    """Standardise ``x`` ``(N, D)`` on itself and fit an L2 multinomial logistic
    regression (inverse strength ``c``) to ``y`` ``(N,)`` in ``[0, n_classes)``;
    classes are weighted as balanced, unless ``sample_weight`` ``(N,)`` weights
    the rows instead. Needs ≥ 2 classes present."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.int64)
    present = np.unique(y)
    if len(present) < 2:
        raise HeadError(f"a linear head needs at least 2 genres, got {len(present)}")
    if x.ndim != 2 or len(x) != len(y):
        raise HeadError(f"features {x.shape} do not match {len(y)} labels")
    mean, scale = standardiser(x)
    clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed,
                             class_weight="balanced" if sample_weight is None else None)
    clf.fit((x - mean) / scale, y, sample_weight=sample_weight)
    weight = np.zeros((n_classes, x.shape[1]))
    bias = np.full(n_classes, ABSENT_BIAS)
    if len(clf.classes_) == 2:   # sklearn keeps one row: the log-odds of the second class
        weight[clf.classes_[0]], bias[clf.classes_[0]] = 0.0, 0.0
        weight[clf.classes_[1]], bias[clf.classes_[1]] = clf.coef_[0], clf.intercept_[0]
    else:
        weight[clf.classes_] = clf.coef_
        bias[clf.classes_] = clf.intercept_
    return LinearHead(mean=mean, scale=scale, weight=weight, bias=bias)


def fit_patch_head(patches: np.ndarray, y: np.ndarray, clips: np.ndarray, columns: np.ndarray,
                   n_classes: int, c: float = 0.1, seed: int = 0) -> LinearHead:
    """A per-patch head served on clip vectors. :func:`fit_linear_head` on every
    patch as a row (``patches`` ``(N, P, W)``, each labelled with its clip's
    ``y`` ``(N,)``); a clip's logits are the mean of its patches' logits, which by
    linearity is a head on the patch mean of each column. Returned in the
    layout of the clip vectors ``clips`` ``(N', F)`` (the same tracks' pooled
    features; ``columns`` ``(W,)``: where each per-patch column's patch mean
    sits in them): standardised with ``clips``' own statistics, as a head
    fitted on them is, weight 0 on the other columns (the max over patches)."""
    n, p, w = patches.shape
    if len(columns) != w:
        raise HeadError(f"{len(columns)} columns for per-patch rows of width {w}")
    head = fit_linear_head(patches.reshape(-1, w), np.repeat(y, p), n_classes, c=c, seed=seed)
    mean, scale = standardiser(np.asarray(clips, np.float64))
    weight = np.zeros((n_classes, clips.shape[1]))
    weight[:, columns] = head.weight * (scale[columns] / head.scale)
    bias = head.bias + head.weight @ ((mean[columns] - head.mean) / head.scale)
    return LinearHead(mean=mean, scale=scale, weight=weight, bias=bias)
