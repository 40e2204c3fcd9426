"""Nearest-neighbour search over embedding matrices.

Exact search is one matrix product; larger catalogs may use an approximate
index (see :class:`VectorIndex`).
"""

from __future__ import annotations

import numpy as np


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def cosine_scores(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine similarity of ``query`` (D,) to every row of ``matrix`` (N, D)."""
    return normalise(matrix) @ normalise(query[None])[0]


def minkowski(matrix: np.ndarray, query: np.ndarray, p: float) -> np.ndarray:
    """Minkowski distance of order ``p`` from ``query`` (D,) to every row of ``matrix`` (N, D)."""
    return np.linalg.norm(matrix - query[None], ord=p, axis=1)


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first, skipping ``exclude``."""
    s = np.asarray(scores, dtype=np.float64).copy()
    if exclude is not None and len(exclude):
        s[np.asarray(exclude, dtype=int)] = -np.inf
    k = min(k, int(np.isfinite(s).sum()))
    if k <= 0:
        return np.zeros(0, dtype=int)
    idx = np.argpartition(-s, k - 1)[:k]
    return idx[np.argsort(-s[idx], kind="stable")]


# Up to this many vectors a query is one exact matrix product: at 200k × 128
# float32 that is a 100 MB scan, a few milliseconds on a laptop core, and it
# needs no build step. Above it an IVF index answers in well under a
# millisecond (figures in README.md (Performance)).
EXACT_MAX = 200_000


class VectorIndex:
    """Cosine nearest-neighbour search over the rows of an embedding matrix.

    Small catalogs (``<= exact_max`` rows) are searched exactly. Larger ones
    use a faiss inverted-file index (IVF-Flat on unit vectors, so inner
    product = cosine): k-means cells, and a query scans the ``nprobe`` cells
    nearest to it with exact distances. ``nprobe`` is not guessed: after the
    build it is raised until recall@10 against exact search on held-out
    sample queries reaches ``target_recall``.

    faiss IVF was chosen over HNSW (faiss, hnswlib, usearch) by measurement
    on 2 cores (README.md (Performance)): at 100k vectors it builds 3–25× faster;
    HNSW answers faster (0.06–0.2 ms vs ~0.3 ms) but both are far inside a
    20 ms budget, IVF's recall is calibrated rather than hoped for, and faiss
    is already a dependency.
    """

    def __init__(self, vectors: np.ndarray, method: str = "auto", exact_max: int = EXACT_MAX,
                 target_recall: float = 0.995, seed: int = 0):
        x = np.ascontiguousarray(normalise(vectors))
        if x.ndim != 2 or x.shape[1] == 0:
            raise ValueError(f"expected a (n, dim) matrix, got shape {x.shape}")
        if method not in ("auto", "exact", "ivf"):
            raise ValueError(f"unknown search method {method!r}; use 'auto', 'exact' or 'ivf'")
        self.n, self.dim = x.shape
        # IVF needs enough points to train its cells; tiny catalogs stay exact.
        if method == "exact" or (method == "auto" and self.n <= exact_max) or self.n < 1_000:
            self.method = "exact"
        else:
            self.method = "ivf"
        self.nprobe = 0
        self.calibrated_recall = 1.0
        self._matrix: np.ndarray | None = None
        self._ivf = None
        if self.method == "exact":
            self._matrix = x
        else:
            self._build_ivf(x, target_recall, np.random.default_rng(seed))

    def __len__(self) -> int:
        return self.n

    # -- building -----------------------------------------------------------
    def _build_ivf(self, x: np.ndarray, target_recall: float, rng: np.random.Generator) -> None:
        import faiss

        # ~2·√n cells of ~√n/2 vectors; the k-means sample (40 per cell,
        # faiss warns below 39) and 10 iterations keep a 1M build to seconds.
        # Cell quality matters little: nprobe is calibrated below.
        nlist = int(min(max(2 * np.sqrt(self.n), 16), self.n // 40))
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        n_train = min(self.n, 40 * nlist)
        train = x[np.sort(rng.choice(self.n, n_train, replace=False))]
        ivf.cp.seed = int(rng.integers(1 << 30))
        ivf.cp.niter = 10
        ivf.train(train)
        ivf.add(x)
        self._ivf = ivf
        self.nprobe, self.calibrated_recall = self._calibrate(x, target_recall, rng)

    def _calibrate(self, x: np.ndarray, target: float, rng: np.random.Generator,
                   n_queries: int = 200, k: int = 10) -> tuple[int, float]:
        """Smallest nprobe whose recall@k against exact search reaches ``target``
        on sample queries: half are catalog rows, half blends of 5 random rows
        (what a multi-seed recommendation query looks like)."""
        rows = rng.choice(self.n, n_queries // 2, replace=False)
        blends = normalise(x[rng.choice(self.n, (n_queries - len(rows), 5))].mean(axis=1))
        q = np.ascontiguousarray(np.vstack([x[rows], blends]))
        import faiss

        truth = _exact_topk(x, q, k)
        nlist = self._ivf.nlist
        nprobe, recall = 1, 0.0
        for nprobe in _doubling(max(1, nlist // 256), nlist):
            _, got = self._ivf.search(q, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
            recall = float(np.mean([len(set(g) & set(t)) / k for g, t in zip(got, truth)]))
            if recall >= target:
                break
        return nprobe, recall

    # -- querying -----------------------------------------------------------
    def search(self, queries: np.ndarray, k: int,
               exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ids and cosine scores of the ``k`` rows most similar to each query,
        best first, never returning an id in ``exclude``. A ``(dim,)`` query
        gives 1-D results, ``(q, dim)`` gives ``(q, ≤k)``."""
        q = np.asarray(queries, dtype=np.float32)
        single = q.ndim == 1
        q = np.ascontiguousarray(normalise(q.reshape(-1, self.dim)))
        excl = np.unique(np.asarray(exclude if exclude is not None else [], dtype=np.int64))
        excl = excl[(excl >= 0) & (excl < self.n)]
        k = max(0, min(int(k), self.n - len(excl)))
        if k == 0:
            empty = (np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32))
            return (empty[0][0], empty[1][0]) if single else empty
        if self.method == "exact":
            ids, scores = self._search_exact(q, k, excl)
        else:
            ids, scores = self._search_ivf(q, k, excl)
        return (ids[0], scores[0]) if single else (ids, scores)

    def similar_to(self, seeds: np.ndarray, k: int,
                   exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows ranked by mean cosine similarity to several seed vectors.

        The mean of cosines to unit seeds is the inner product with the mean
        unit seed, so a multi-seed query costs one search.
        """
        s = normalise(np.asarray(seeds, dtype=np.float32).reshape(-1, self.dim))
        return self.search(s.mean(axis=0), k, exclude)

    def _search_exact(self, q: np.ndarray, k: int, excl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # One BLAS thread: a matrix-vector product is memory-bound, a second
        # thread gains little when idle and, when the other core is busy
        # (indexing, the app), waiting for it made a 100k query 40× slower.
        with _one_blas_thread():
            scores = q @ self._matrix.T
        if len(excl):
            scores[:, excl] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        return (np.take_along_axis(part, order, axis=1).astype(np.int64),
                np.take_along_axis(part_scores, order, axis=1))

    def _search_ivf(self, q: np.ndarray, k: int, excl: np.ndarray,
                    nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        # Over-fetch by the number of exclusions, then drop them; faiss pads
        # missing results with id -1.
        params = faiss.SearchParametersIVF(nprobe=nprobe or self.nprobe)
        scores, ids = self._ivf.search(q, k + len(excl), params=params)
        out_ids = np.full((len(q), k), -1, np.int64)
        out_scores = np.full((len(q), k), -np.inf, np.float32)
        for i in range(len(q)):
            keep = ids[i] >= 0
            if len(excl):
                keep &= ~np.isin(ids[i], excl)
            kept_ids, kept_scores = ids[i][keep][:k], scores[i][keep][:k]
            out_ids[i, :len(kept_ids)] = kept_ids
            out_scores[i, :len(kept_ids)] = kept_scores
        if (out_ids < 0).any() and nprobe != self._ivf.nlist:
            # Too few candidates in the probed cells (rare: tiny cells or
            # many exclusions); probing every cell is an exact scan.
            return self._search_ivf(q, k, excl, nprobe=self._ivf.nlist)
        return out_ids, out_scores


_BLAS = None


def _one_blas_thread():
    """Context manager limiting numpy's BLAS to one thread (controller built once)."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def _doubling(start: int, stop: int) -> list[int]:
    """``start, 2·start, 4·start, …`` capped at and ending with ``stop``."""
    out, v = [], max(1, start)
    while v < stop:
        out.append(v)
        v *= 2
    return out + [stop]


def _exact_topk(x: np.ndarray, q: np.ndarray, k: int, block: int = 131_072) -> np.ndarray:
    """Exact top-``k`` ids of each query, scanning ``x`` in blocks so the
    score matrix never holds more than ``len(q) × block`` floats."""
    best_ids = np.zeros((len(q), 0), np.int64)
    best_scores = np.zeros((len(q), 0), np.float32)
    for start in range(0, len(x), block):
        s = q @ x[start: start + block].T  # many queries: a real matrix product, all threads
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        best_ids = np.hstack([best_ids, part + start])
        best_scores = np.hstack([best_scores, np.take_along_axis(s, part, axis=1)])
        keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best_ids = np.take_along_axis(best_ids, keep, axis=1)
        best_scores = np.take_along_axis(best_scores, keep, axis=1)
    return best_ids
