"""A zero-shot genre prior from the trunks' genre-named tags (issue 16:
genre knowledge that the training sources did not shape).

The MSD and MagnaTagATune taggers of the ``musicnn`` wheel learnt their 50
tags from sources that no training set here is, and some tags are genre
names ("jazz", "hip-hop", "classical"). A genre is *covered* when a tag of a
served trunk has its name (case, spaces and hyphens ignored); its *tag
score* is the mean over those tags of the clip's tag probability, or of
its logit. Scores are z-scored with the training tracks' mean and standard
deviation and join the genre head's log-probabilities at weight ``β``:

- ``add``: ``log p + β·z`` (renormalised);
- ``grouped``: the uncovered genres keep the head's probabilities, and the
  covered ones share the head's covered mass by ``softmax(log p + β·z)``
  among themselves (so a genre no tag names loses nothing to the prior).

A calibration ``z' = z · scale + shift`` (:mod:`core.training.loso_calibration`)
follows the prior. Chosen leave-one-source-out with an in-source guard by
:mod:`core.training.tag_prior_choice`; measured in ``benchmarks.tag_prior_probe``.

Shapes: bank vectors ``(B, F)`` in the layout of
:meth:`~core.models.trunks.TrunkBank.vector` (per trunk, registry order: the
penultimate layer's mean and max, then its 50 tags); ``G`` genres.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import torch
from torch import nn

from core.models.trunks import resolve

EPS = 1e-4          # tag probabilities are clipped to [EPS, 1 − EPS] before a logit


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def genre_tag_matrix(trunks: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """``(G, F)``: row ``g`` averages the tag columns of the bank vector of
    ``trunks`` whose tag is named as genre ``labels[g]``; a zero row where no
    tag is (the genre is not covered)."""
    specs = resolve(trunks)
    out = np.zeros((len(labels), sum(s.feature_dim + len(s.tags) for s in specs)))
    offset = 0
    for spec in specs:
        offset += spec.feature_dim
        for j, tag in enumerate(spec.tags):
            for g, label in enumerate(labels):
                if _norm(tag) == _norm(label):
                    out[g, offset + j] = 1.0
        offset += len(spec.tags)
    return out / np.maximum(out.sum(1, keepdims=True), 1.0)


def tag_scores(vectors: torch.Tensor, matrix: torch.Tensor, logit: bool) -> torch.Tensor:
    """Bank vectors ``(B, F)`` → each genre's tag score ``(B, G)`` (0 where uncovered)."""
    if logit:
        q = vectors.clamp(EPS, 1 - EPS)
        vectors = torch.where(matrix.any(0), torch.log(q) - torch.log1p(-q), torch.zeros_like(q))
    return vectors @ matrix.T


def with_prior(log_prob: torch.Tensor, z: torch.Tensor, covered: torch.Tensor, beta: float,
               grouped: bool) -> torch.Tensor:
    """Head log-probabilities ``(B, G)`` and z-scored tag scores ``z`` ``(B, G)``
    → log-probabilities ``(B, G)`` with the prior at ``beta``. ``covered``: the
    covered genres' indices ``(K,)`` (:func:`covered_genres`)."""
    zc = z.index_select(1, covered)
    if not grouped:
        return torch.log_softmax(log_prob.index_add(1, covered, beta * zc), 1)
    cov = log_prob.index_select(1, covered)
    inner = torch.logsumexp(cov, 1, keepdim=True) + torch.log_softmax(cov + beta * zc, 1)
    return log_prob.index_copy(1, covered, inner)


def covered_genres(matrix: torch.Tensor) -> torch.Tensor:
    """The tag matrix ``(G, F)`` → indices ``(K,)`` of the genres a tag names."""
    return matrix.any(1).nonzero().flatten()


class TagPrior(nn.Module):
    """The prior and the calibration after it, as buffers (``beta`` 0: off,
    logits pass through). ``mean``, ``std``: the training tracks' tag-score
    statistics ``(G,)``; ``scale``, ``shift`` ``(G,)``: the calibration; the
    tag matrix (:func:`genre_tag_matrix`) is rebuilt from the trunks, not saved."""

    def __init__(self, trunks: Sequence[str], labels: Sequence[str]):
        super().__init__()
        g = len(labels)
        self.register_buffer("matrix", torch.tensor(genre_tag_matrix(trunks, labels), dtype=torch.float32),
                             persistent=False)
        # Indices, not a mask: indexing by them needs no host sync on a GPU.
        self.register_buffer("covered_idx", covered_genres(self.matrix), persistent=False)
        for name, value in (("beta", torch.zeros(())), ("logit", torch.zeros(())), ("grouped", torch.zeros(())),
                            ("mean", torch.zeros(g)), ("std", torch.ones(g)), ("scale", torch.ones(g)),
                            ("shift", torch.zeros(g))):
            self.register_buffer(name, value)
        self._flags: tuple[float, bool, bool] | None = None

    def flags(self) -> tuple[float, bool, bool]:
        """``(beta, logit, grouped)`` as Python values, read from the buffers once
        after each :meth:`set` or state load (not per call: no device sync)."""
        if self._flags is None:
            self._flags = (float(self.beta), bool(self.logit), bool(self.grouped))
        return self._flags

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._flags = None

    @property
    def on(self) -> bool:
        return self.flags()[0] > 0

    def set(self, beta: float, logit: bool, grouped: bool, mean: np.ndarray, std: np.ndarray,
            scale: np.ndarray, shift: np.ndarray) -> None:
        """Fill the buffers (arrays ``(G,)``)."""
        for name, value in (("beta", beta), ("logit", float(logit)), ("grouped", float(grouped)), ("mean", mean),
                            ("std", std), ("scale", scale), ("shift", shift)):
            getattr(self, name).copy_(torch.as_tensor(np.asarray(value, np.float32)))
        self._flags = None

    def forward(self, logits: torch.Tensor, vectors: torch.Tensor, scale: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Head logits ``(B, G)`` and bank vectors ``(B, F)`` → logits ``(B, G)``
        (``scale`` ``(G,)``: in place of the calibration, with no shift)."""
        beta, logit, grouped = self.flags()
        if not beta > 0:
            return logits
        dt = logits.dtype
        lp = apply_prior(logits, vectors.to(dt), self.matrix.to(dt), self.mean.to(dt), self.std.to(dt),
                         beta, logit, grouped, self.covered_idx)
        if scale is not None:
            return lp * scale.to(dt)
        return lp * self.scale.to(dt) + self.shift.to(dt)


def apply_prior(logits: torch.Tensor, vectors: torch.Tensor, matrix: torch.Tensor, mean: torch.Tensor,
                std: torch.Tensor, beta: float, logit: bool, grouped: bool,
                covered: torch.Tensor | None = None) -> torch.Tensor:
    """The prior's arithmetic (no calibration): head logits ``(N, G)``, bank
    vectors ``(N, F)``, the tag matrix ``(G, F)`` and the score statistics
    ``(G,)`` → log-probabilities ``(N, G)`` (``covered``: :func:`covered_genres`
    of the matrix, when already computed)."""
    z = (tag_scores(vectors, matrix, logit) - mean) / std
    covered = covered_genres(matrix) if covered is None else covered
    return with_prior(torch.log_softmax(logits, 1), z, covered, beta, grouped)


def prior_log_probs(logits: np.ndarray, vectors: np.ndarray, matrix: np.ndarray, mean: np.ndarray,
                    std: np.ndarray, beta: float, logit: bool, grouped: bool) -> np.ndarray:
    """:func:`apply_prior` on numpy arrays, in float64."""
    t = lambda a: torch.as_tensor(np.asarray(a, np.float64))  # noqa: E731
    return apply_prior(t(logits), t(vectors), t(matrix), t(mean), t(std), beta, logit, grouped).numpy()


def score_stats(vectors: np.ndarray, matrix: np.ndarray, logit: bool) -> tuple[np.ndarray, np.ndarray]:
    """The tag scores' mean and standard deviation ``(G,)`` over ``vectors`` ``(N, F)`` (std floored)."""
    s = tag_scores(torch.as_tensor(vectors, dtype=torch.float64), torch.as_tensor(matrix, dtype=torch.float64),
                   logit).numpy()
    return s.mean(0), np.maximum(s.std(0), 1e-6)


__all__ = ["TagPrior", "apply_prior", "covered_genres", "genre_tag_matrix", "prior_log_probs", "score_stats",
           "tag_scores", "with_prior"]
