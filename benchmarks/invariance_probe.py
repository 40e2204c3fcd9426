"""Two more ideas for source shift, measured leave-one-source-out and not
adopted (issue 16, item 3).

    python -m benchmarks.invariance_probe [--features .cache/trunk_features] [--json out.json]

Both read what :mod:`benchmarks.shift_probes` reads (the shipped
``fused_trunks``' trunk set and the cached trunk features; no audio is
decoded) and are measured against the same reference, the clip-pooled head at
step 1c's ``C``: each row gives the LOSO mean and its accuracy minus the
reference's over every held-out track, with a paired bootstrap interval.

- **Nuisance attribute projection** (``projection``; Solomonoff, Campbell &
  Boardman, "Advances in channel compensation for SVM speaker recognition",
  ICASSP 2005). Within a genre, the gap between two sources' mean feature
  vectors is recording chain, not genre. Per fold, in the head's
  standardised space, the gaps of every genre that at least two training
  sources hold (each with ≥ ``MIN_CELL`` tracks) are collected, and their
  ``k`` leading directions are projected out of every track before the head
  is fitted. Labels of the held-out source are never read.
- **A nearest-neighbour vote** (``neighbours``): the ``k`` training tracks
  most similar (cosine, standardised space) to a held-out track vote for
  their genres, each vote divided by its genre's training count, and the
  vote's log mixes with the head's log-softmax at ``share``.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.special import log_softmax

from benchmarks.shift_probes import Fit, Probe, _row, fold_logits, linear, open_probe, probe_arguments, write_report
from core.training.linear_head import fit_linear_head, standardiser
from core.training.loso_eval import fold_accuracy, loso_report

MIN_CELL = 5
RANKS = (1, 2, 4, 8)
CS = (0.00003, 0.0001, 0.0003)
NEIGHBOURS = (10, 30)
SHARES = (0.2, 0.5, 1.0)


def nuisance_directions(z: np.ndarray, y: np.ndarray, source: np.ndarray, k: int,
                        min_cell: int = MIN_CELL) -> np.ndarray:
    """``(≤ k, D)`` orthonormal rows: the leading directions of the gaps
    between each source's mean of ``z`` ``(n, D)`` and the mean of those
    means, within every genre of ``y`` that ≥ 2 sources hold with ≥
    ``min_cell`` rows each. ``(0, D)`` when no genre qualifies."""
    gaps = []
    for g in np.unique(y):
        cells = [z[(y == g) & (source == s)] for s in np.unique(source[y == g])]
        means = [c.mean(0) for c in cells if len(c) >= min_cell]
        if len(means) >= 2:
            gaps.extend(np.stack(means) - np.mean(means, 0))
    if not gaps:
        return np.zeros((0, z.shape[1]))
    _, s, vt = np.linalg.svd(np.stack(gaps), full_matrices=False)
    return vt[:min(k, int((s > 1e-9 * s[0]).sum()))]


def projected(p: Probe, k: int, c: float) -> Fit:
    """The clip-pooled head at ``c`` on features with the fold's ``k``
    :func:`nuisance_directions` projected out (found on the training rows only)."""
    def fit(tr: np.ndarray, va: np.ndarray) -> np.ndarray:
        mean, scale = standardiser(p.x[tr])
        z = (p.x - mean) / scale
        u = nuisance_directions(z[tr], p.y[tr], p.source[tr], k)
        return linear(p, z - (z @ u.T) @ u, c)(tr, va)
    return fit


def neighbour_vote(zt: np.ndarray, yt: np.ndarray, zq: np.ndarray, k: int, n_genres: int) -> np.ndarray:
    """``(m, G)`` log of the genre-balanced vote of each row of ``zq``'s ``k``
    most cosine-similar rows of ``zt`` (genres ``yt``), floored at 2 % / G."""
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
    nearest = np.argsort(-(unit(zq) @ unit(zt).T), 1)[:, :k]
    weight = 1.0 / np.maximum(np.bincount(yt, minlength=n_genres), 1)
    votes = np.zeros((len(zq), n_genres))
    for j in range(nearest.shape[1]):
        g = yt[nearest[:, j]]
        np.add.at(votes, (np.arange(len(zq)), g), weight[g])
    votes /= votes.sum(1, keepdims=True)
    return np.log(0.98 * votes + 0.02 / n_genres)


def with_neighbours(p: Probe, k: int, share: float, c: float) -> Fit:
    """The clip-pooled head at ``c``, its log-softmax mixed with :func:`neighbour_vote` at ``share``."""
    def fit(tr: np.ndarray, va: np.ndarray) -> np.ndarray:
        head = fit_linear_head(p.x[tr], p.y[tr], len(p.labels), c=c)
        zt, zq = (p.x[tr] - head.mean) / head.scale, (p.x[va] - head.mean) / head.scale
        vote = neighbour_vote(zt, p.y[tr], zq, k, len(p.labels))
        return (1 - share) * log_softmax(head.logits(p.x[va]), 1) + share * vote
    return fit


def main(argv: list[str] | None = None) -> int:
    args = probe_arguments("python -m benchmarks.invariance_probe", __doc__).parse_args(argv)
    probe, extra, cs = open_probe(args)
    c = cs["clip"]
    ref = fold_logits(probe, linear(probe, probe.x, c))
    rows = {"projection": [], "neighbours": []}
    for k in RANKS:
        for cc in CS:
            fl = fold_logits(probe, projected(probe, k, cc))
            rows["projection"].append(_row(fl, ref, per_fold=True, k=k, C=cc))
            print(f"projection k={k} C={cc}: {rows['projection'][-1]['mean']['accuracy']:.3f}", file=sys.stderr)
    for k in NEIGHBOURS:
        for share in SHARES:
            fl = fold_logits(probe, with_neighbours(probe, k, share, c))
            rows["neighbours"].append(_row(fl, ref, per_fold=True, k=k, share=share))
    report = loso_report(ref)
    reference = report["mean"] | {"fold_accuracy": fold_accuracy(report)}
    write_report({"trunks": extra["trunks"], "C": c, "reference": reference, **rows}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
