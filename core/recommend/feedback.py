"""Similarity of every catalog row to the seeds, with relevance feedback.

``liked`` / ``disliked`` tracks move the query (Rocchio 1971):
``q = mean(seeds) + 0.75·mean(liked) − 0.25·mean(disliked)`` (for both the
embedding and the genre query, the latter clipped at 0); with
``aggregate="max"`` liked tracks join the seeds and ``0.25·`` the largest
similarity to a disliked track is subtracted. A distance ``d`` becomes the
similarity ``1 / (1 + d / median_d)`` (``median_d``: median distance from the
query to the catalog), so 0.5 means "as far as the typical track".
"""

from __future__ import annotations

import numpy as np

from core.recommend import search

# Rocchio weights (Manning, Raghavan & Schütze, IR book §9.1.1 defaults).
ROCCHIO_BETA = 0.75
ROCCHIO_GAMMA = 0.25


def order_of(distance: str, p: float) -> float:
    """The Minkowski order of a distance setting (Euclidean: 2)."""
    return 2.0 if distance == "euclidean" else float(p)


def similarities(matrix: np.ndarray, query: np.ndarray, distance: str, p: float) -> np.ndarray:
    """Similarity ``(N,)`` of every row of ``matrix`` ``(N, D)`` to one query
    ``(D,)``: cosine, or the mapped distance."""
    if distance == "cosine":
        return search.cosine_scores(matrix, query)
    d = search.minkowski(matrix, query, order_of(distance, p))
    scale = float(np.median(d)) if len(d) else 1.0
    return 1.0 / (1.0 + d / max(scale, 1e-12))


def rocchio_query(seeds: np.ndarray, liked: np.ndarray, disliked: np.ndarray, unit: bool = True) -> np.ndarray:
    """The mean query moved towards ``liked`` and away from ``disliked`` rows
    (each set's rows L2-normalised first when ``unit``)."""
    prep = search.normalise if unit else (lambda x: np.asarray(x, np.float32))
    q = prep(seeds).mean(0)
    if len(liked):
        q = q + ROCCHIO_BETA * prep(liked).mean(0)
    if len(disliked):
        q = q - ROCCHIO_GAMMA * prep(disliked).mean(0)
    return q


def query_scores(matrix: np.ndarray, seeds: np.ndarray, liked: np.ndarray, disliked: np.ndarray,
                 aggregate: str, distance: str, p: float, clip: bool = False) -> np.ndarray:
    """Similarity ``(N,)`` of every catalog row to the seeds (with Rocchio feedback)."""
    if aggregate == "mean":
        q = rocchio_query(seeds, liked, disliked, unit=distance == "cosine")
        if clip:
            q = np.maximum(q, 0)
        return similarities(matrix, q, distance, p)
    positives = np.vstack([seeds, liked]) if len(liked) else seeds
    s = np.max([similarities(matrix, v, distance, p) for v in positives], axis=0)
    if len(disliked):
        s = s - ROCCHIO_GAMMA * np.max([similarities(matrix, v, distance, p) for v in disliked], axis=0)
    return s
