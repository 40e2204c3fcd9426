"""Nearest-neighbour search: exact helpers and VectorIndex (exact and IVF)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.recommend.search import VectorIndex, cosine_scores, normalise, top_k


def clustered(n: int, dim: int, seed: int = 0, clusters: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    return centres[rng.integers(0, clusters, n)] + 0.7 * rng.standard_normal((n, dim)).astype(np.float32)


def brute_force(x: np.ndarray, q: np.ndarray, k: int, exclude=()) -> list[int]:
    s = cosine_scores(x, q).astype(np.float64)
    s[list(exclude)] = -np.inf
    return list(np.argsort(-s, kind="stable")[:k])


def test_normalise_and_top_k():
    x = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(x, [[0.6, 0.8], [0, 0]])
    assert top_k(np.array([0.1, 0.9, 0.5, 0.7]), 2).tolist() == [1, 3]
    assert top_k(np.array([0.1, 0.9, 0.5]), 2, exclude=np.array([1])).tolist() == [2, 0]


def test_exact_index_matches_brute_force_with_exclusions():
    x = clustered(500, 16)
    index = VectorIndex(x)
    assert index.method == "exact" and len(index) == 500
    q = x[7] + 0.1
    ids, scores = index.search(q, 10, exclude=np.array([7, 3]))
    assert ids.tolist() == brute_force(x, q, 10, exclude=[7, 3])
    assert np.all(np.diff(scores) <= 1e-6)  # best first
    assert np.allclose(scores, cosine_scores(x, q)[ids], atol=1e-5)


def test_batch_queries_give_one_row_each():
    x = clustered(300, 8)
    ids, scores = VectorIndex(x).search(x[:4], 3)
    assert ids.shape == (4, 3) and scores.shape == (4, 3)
    assert ids[:, 0].tolist() == [0, 1, 2, 3]  # each row is its own nearest neighbour


def test_k_larger_than_catalog_returns_what_there_is():
    x = clustered(5, 4)
    ids, _ = VectorIndex(x).search(x[0], 10, exclude=[0, 1])
    assert sorted(ids.tolist()) == [2, 3, 4]


def test_similar_to_ranks_by_mean_cosine():
    x = clustered(400, 12, seed=1)
    seeds = np.array([3, 50, 120])
    ids, _ = VectorIndex(x).similar_to(x[seeds], 5, exclude=seeds)
    mean_cos = np.mean([cosine_scores(x, x[s]) for s in seeds], axis=0)
    mean_cos[seeds] = -np.inf
    assert ids.tolist() == list(np.argsort(-mean_cos)[:5])


def test_auto_switches_to_ivf_above_threshold_and_keeps_recall():
    x = clustered(6000, 16, seed=2)
    index = VectorIndex(x, exact_max=5000, target_recall=0.99)
    assert index.method == "ivf"
    assert 1 <= index.nprobe and index.calibrated_recall >= 0.99
    rng = np.random.default_rng(5)
    hits = []
    for _ in range(50):
        seeds = rng.choice(len(x), 5, replace=False)
        got, _ = index.similar_to(x[seeds], 5, exclude=seeds)
        q = normalise(x[seeds]).mean(axis=0)
        hits.append(len(set(got.tolist()) & set(brute_force(x, q, 5, exclude=seeds))) / 5)
    assert np.mean(hits) >= 0.95  # held-out queries, not the calibration ones


def test_ivf_never_returns_excluded_ids_and_fills_k():
    x = clustered(3000, 8, seed=3)
    index = VectorIndex(x, method="ivf")
    exclude = np.arange(0, 3000, 2)
    ids, scores = index.search(x[1], 20, exclude=exclude)
    assert len(ids) == 20 and not set(ids.tolist()) & set(exclude.tolist())
    assert np.all(np.isfinite(scores))


def test_small_catalogs_stay_exact_even_if_ivf_asked():
    assert VectorIndex(clustered(200, 4), method="ivf").method == "exact"


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="matrix"):
        VectorIndex(np.zeros(5))
    with pytest.raises(ValueError, match="unknown search method"):
        VectorIndex(np.ones((3, 2)), method="lsh")


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 60), dim=st.integers(1, 6), k=st.integers(1, 8), seed=st.integers(0, 1000))
def test_exact_search_agrees_with_sorting(n, dim, k, seed):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    q = np.random.default_rng(seed + 1).standard_normal(dim).astype(np.float32)
    ids, scores = VectorIndex(x).search(q, k)
    ref = cosine_scores(x, q)
    assert len(ids) == min(k, n) and len(set(ids.tolist())) == len(ids)
    # Same scores as the k best (ties may be ordered either way).
    assert np.allclose(np.sort(scores)[::-1], np.sort(ref)[::-1][: len(ids)], atol=1e-5)
