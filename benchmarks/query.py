"""Recommendation query latency and recall@k of exact and approximate search
on synthetic catalogs of 10k–1M embeddings."""

from __future__ import annotations

import time

import numpy as np

from benchmarks.config import BenchConfig, Log


def _ms(seconds: list[float]) -> dict[str, float]:
    a = np.asarray(seconds) * 1000
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "mean": round(float(a.mean()), 3)}


def synthetic_catalog(n: int, dim: int, seed: int = 0, n_clusters: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` embeddings shaped like a music catalog: a mixture of Gaussian
    clusters (styles), the spread inside a cluster as large as between
    cluster centres, so neighbourhoods overlap and search is not trivially
    easy. Returns (vectors float32, cluster id per row)."""
    rng = np.random.default_rng(seed)
    c = n_clusters or max(10, int(np.sqrt(n)))
    centres = rng.standard_normal((c, dim), dtype=np.float32)
    labels = rng.integers(0, c, n)
    x = np.empty((n, dim), np.float32)
    for s in range(0, n, 262_144):  # in blocks: no n×dim float64 temporaries
        e = min(n, s + 262_144)
        x[s:e] = centres[labels[s:e]] + rng.standard_normal((e - s, dim), dtype=np.float32)
    return x, labels


def _seed_sets(labels: np.ndarray, n_queries: int, per_query: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Seed tracks of each query: a random track plus others of its style
    (what a listener picks), falling back to random tracks."""
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(labels.max() + 2))
    out = []
    for _ in range(n_queries):
        first = int(rng.integers(len(labels)))
        c = labels[first]
        members = order[starts[c]: starts[c + 1]]
        if len(members) >= per_query:
            rest = rng.choice(members[members != first], per_query - 1, replace=False)
        else:
            rest = rng.choice(len(labels), per_query - 1, replace=False)
        out.append(np.concatenate([[first], rest]).astype(np.int64))
    return out


def bench_query(n: int, dim: int, cfg: BenchConfig, log: Log) -> dict:
    """Exact and approximate :class:`VectorIndex` on a synthetic catalog:
    latency of a 5-seed recommendation query and recall@k of the approximate
    index against exact search, on queries not used for its calibration."""
    from core.recommend.search import EXACT_MAX, VectorIndex

    x, labels = synthetic_catalog(n, dim, seed=cfg.seed + n + dim)
    rng = np.random.default_rng(cfg.seed + 1)
    seeds = _seed_sets(labels, cfg.queries, cfg.seeds_per_query, rng)

    def run(index: VectorIndex) -> tuple[dict, list[np.ndarray]]:
        index.similar_to(x[seeds[0]], cfg.k, exclude=seeds[0])  # warm-up
        times, hits = [], []
        for s in seeds:
            t0 = time.perf_counter()
            ids, _ = index.similar_to(x[s], cfg.k, exclude=s)
            times.append(time.perf_counter() - t0)
            hits.append(ids)
        return _ms(times), hits

    out: dict = {"n": n, "dim": dim}
    t0 = time.perf_counter()
    exact = VectorIndex(x, method="exact")
    exact_stats, truth = run(exact)
    out["exact"] = {**exact_stats, "build_s": round(time.perf_counter() - t0, 2), "recall_at_5": 1.0}
    del exact
    t0 = time.perf_counter()
    approx = VectorIndex(x, method="ivf", seed=cfg.seed)
    build = time.perf_counter() - t0
    approx_stats, got = run(approx)
    recall = float(np.mean([len(set(g.tolist()) & set(t.tolist())) / cfg.k for g, t in zip(got, truth)]))
    out["approx"] = {**approx_stats, "build_s": round(build, 2), "recall_at_5": round(recall, 4),
                     "method": approx.method, "nprobe": approx.nprobe,
                     "calibrated_recall_at_10": round(approx.calibrated_recall, 4)}
    del approx
    chosen = "exact" if n <= EXACT_MAX else "approx"
    out["method"] = "exact" if chosen == "exact" else "ivf"
    out.update({k: out[chosen][k] for k in ("p50", "p95", "recall_at_5")})
    log(f"query n={n} d={dim}: exact p50 {out['exact']['p50']} ms; ivf p50 {out['approx']['p50']} ms "
        f"recall@5 {out['approx']['recall_at_5']} (nprobe {out['approx']['nprobe']}, build "
        f"{out['approx']['build_s']} s); default: {out['method']}")
    return out
