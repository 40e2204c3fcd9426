"""Offline evaluation of the recommender with simulated listeners (the paper
had only a 30-person listening test).

A listener is built only from one split: it draws 5 seed tracks of one genre
(``single``) or 3 + 2 from two genres (``mixed``), gets ``k`` recommendations
from the rest of the split per method, and likes a recommendation when its
ground-truth genre is one of the seeds' genres. Per method: mean
precision@k with a 95 % t-interval over listeners, per-genre precision,
artist hit-rate (share of recommendations by a seed's artist), intra-list
diversity (mean pairwise cosine distance of the list in the CRNN embedding —
one fixed space for every method) and catalog coverage (share of the split
recommended to at least one listener). Methods are compared with paired
t-tests over the same listeners, as in the paper (t < 0: the second method
scores higher).

Baselines: ``random`` (k uniformly drawn eligible tracks) and ``mfcc``
(method 1 on standardised MFCC + spectral statistics, from the same cached
log-mels). Caveat: listeners drawn from a ~100-track split reuse the same
tracks, so they are not independent samples and the p-values overstate the
evidence; compare the effect sizes with the ``ceiling`` (best achievable
precision given how many same-genre tracks remain).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy import stats

from .baseline import handcrafted_features
from .cache import LogMelCache, content_hash
from .datasets import Track, read_datasets
from .index import CatalogIndex
from .recommend import ENSEMBLE, recommend, seed_exclusions
from .search import normalise

MFCC = "mfcc"
Progress = Callable[[int, int], None]


@dataclass
class EvalConfig:
    """Simulation settings."""

    n_listeners: int = 400        # half single-genre, half mixed (two genres)
    n_seeds: int = 5
    k: int = 5
    seed: int = 0
    model: str = "crnn"           # embedding of methods 1 and 2
    genre_weight: float = 0.5     # method 2's w
    mixed_fraction: float = 0.5
    extras: bool = True           # also evaluate the beyond-the-paper variants


@dataclass
class Listener:
    kind: str            # "single" | "mixed"
    seeds: list[int]     # catalog rows
    genres: list[str]    # genres whose tracks this listener likes


def simulate_listeners(genres: Sequence[str], n_single: int, n_mixed: int, n_seeds: int = 5,
                       seed: int = 0) -> list[Listener]:
    """Listeners over a catalog whose ground-truth genres are ``genres``.

    A genre can seed a single-genre listener when it has at least
    ``n_seeds + 1`` tracks (so one same-genre track is left to find); genres
    are used round-robin so every genre counts about equally.
    """
    rng = np.random.default_rng(seed)
    g = np.asarray(genres, dtype=object)
    rows = {x: np.flatnonzero(g == x) for x in sorted(set(g.tolist()))}
    out: list[Listener] = []
    single = [x for x, r in rows.items() if len(r) >= n_seeds + 1]
    order = list(single)
    for i in range(n_single if single else 0):
        if i % len(order) == 0:
            rng.shuffle(order)
        x = order[i % len(order)]
        out.append(Listener("single", rng.choice(rows[x], n_seeds, replace=False).tolist(), [x]))
    a, b = math.ceil(n_seeds / 2), n_seeds // 2
    pairs = [(x, y) for x in rows for y in rows if x != y and len(rows[x]) >= a + 1 and len(rows[y]) >= b + 1]
    for _ in range(n_mixed if pairs and b else 0):
        x, y = pairs[rng.integers(len(pairs))]
        s = rng.choice(rows[x], a, replace=False).tolist() + rng.choice(rows[y], b, replace=False).tolist()
        out.append(Listener("mixed", s, [x, y]))
    return out


def _mean_ci(x: np.ndarray) -> tuple[float, list[float]]:
    x = np.asarray(x, float)
    if len(x) == 0:
        return float("nan"), [float("nan"), float("nan")]
    m = float(x.mean())
    if len(x) < 2 or x.std() == 0:
        return m, [m, m]
    h = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, [m - h, m + h]


def paired_t(a: np.ndarray, b: np.ndarray) -> dict:
    """Paired t-test of ``a`` vs ``b`` over the same listeners (t < 0: b higher)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    if len(d) < 2 or np.allclose(d, d[0]):
        return {"t": 0.0 if np.allclose(d, 0) else float("inf") * np.sign(d[0]),
                "p": 1.0 if np.allclose(d, 0) else 0.0, "mean_diff": float(d.mean()) if len(d) else 0.0,
                "n": int(len(d))}
    r = stats.ttest_rel(a, b)
    return {"t": float(r.statistic), "p": float(r.pvalue), "mean_diff": float(d.mean()), "n": int(len(d))}


def _eligible(index: CatalogIndex, seeds: list[int]) -> np.ndarray:
    """Rows a recommender may return for these seeds (same rule as recommend())."""
    return np.flatnonzero(~seed_exclusions(index, seeds))


class _Scorer:
    """Collects per-listener outcomes of one method."""

    def __init__(self, index: CatalogIndex, listeners: list[Listener], k: int, ref: np.ndarray):
        self.index, self.listeners, self.k, self.ref = index, listeners, k, ref
        self.genres = index.column("genre")
        self.artists = index.column("artist")
        self.precision = np.zeros(len(listeners))
        self.artist_hits = np.zeros(len(listeners))
        self.ild = np.full(len(listeners), np.nan)
        self.n_genres = np.zeros(len(listeners))
        self.recommended: set[int] = set()

    def add(self, i: int, rows: Sequence[int]) -> None:
        lis = self.listeners[i]
        rows = [int(r) for r in rows]
        liked = [self.genres[r] in lis.genres for r in rows]
        self.precision[i] = sum(liked) / self.k
        seed_artists = {self.artists[s] for s in lis.seeds} - {""}
        self.artist_hits[i] = sum(self.artists[r] in seed_artists for r in rows) / max(len(rows), 1)
        if len(rows) > 1:
            v = self.ref[rows]
            sim = v @ v.T
            iu = np.triu_indices(len(rows), 1)
            self.ild[i] = float(np.mean(1 - sim[iu]))
        self.n_genres[i] = len({self.genres[r] for r in rows})
        self.recommended.update(rows)

    def report(self) -> dict:
        kinds = np.array([lis.kind for lis in self.listeners])
        m, ci = _mean_ci(self.precision)
        out = {f"precision_at_{self.k}": m, "precision": m, "ci95": ci,
               "std": float(np.std(self.precision, ddof=1)) if len(self.precision) > 1 else 0.0,
               "n": len(self.precision)}
        for kind in ("single", "mixed"):
            sel = kinds == kind
            if sel.any():
                km, kci = _mean_ci(self.precision[sel])
                out[kind] = {"precision": km, "ci95": kci, "n": int(sel.sum())}
        per_genre = {}
        for g in sorted({lis.genres[0] for lis in self.listeners if lis.kind == "single"}):
            sel = np.array([lis.kind == "single" and lis.genres[0] == g for lis in self.listeners])
            per_genre[g] = float(self.precision[sel].mean())
        out["per_genre"] = per_genre
        out["artist_hit_rate"] = float(self.artist_hits.mean()) if len(self.artist_hits) else float("nan")
        out["intra_list_diversity"] = float(np.nanmean(self.ild)) if np.isfinite(self.ild).any() else float("nan")
        out["distinct_genres_per_list"] = float(self.n_genres.mean()) if len(self.n_genres) else float("nan")
        out["catalog_coverage"] = len(self.recommended) / max(len(self.index), 1)
        return out


def evaluate_index(index: CatalogIndex, cfg: EvalConfig = EvalConfig(),
                   progress: Progress | None = None) -> dict:
    """Run the simulated listeners over an index whose ``genre`` column holds
    ground truth. Uses ``cfg.model`` (and ``cnn``/``ensemble`` in the extras)
    plus the ``mfcc`` pseudo-model when the index has it."""
    start = time.time()
    genres = index.column("genre")
    n_mixed = int(round(cfg.n_listeners * cfg.mixed_fraction))
    listeners = simulate_listeners(genres, cfg.n_listeners - n_mixed, n_mixed, cfg.n_seeds, cfg.seed)
    if not listeners:
        raise ValueError(f"no genre has {cfg.n_seeds + 1} tracks in this catalog — cannot simulate listeners")
    ref_model = cfg.model if cfg.model in index.models else index.models[0]
    ref = index.cached(("eval_ref", ref_model), lambda: normalise(index.embeddings(ref_model)))
    k = cfg.k
    ids = index.column("track_id")

    methods: dict[str, dict] = {
        "cosine": dict(method="cosine", model=cfg.model),
        "genre": dict(method="genre", model=cfg.model, genre_weight=cfg.genre_weight),
    }
    if MFCC in index.models:
        methods["mfcc"] = dict(method="cosine", model=MFCC)
    variants: dict[str, dict] = {}
    if cfg.extras:
        have_ens = all(m in index.models for m in ("cnn", "crnn"))
        other = "cnn" if cfg.model == "crnn" else "crnn"
        if other in index.models:
            variants[f"cosine_{other}"] = dict(method="cosine", model=other)
            variants[f"genre_{other}"] = dict(method="genre", model=other, genre_weight=cfg.genre_weight)
        if have_ens:
            variants["cosine_ensemble"] = dict(method="cosine", model=ENSEMBLE)
            variants["genre_ensemble"] = dict(method="genre", model=ENSEMBLE, genre_weight=cfg.genre_weight)
        variants["cosine_max"] = dict(method="cosine", model=cfg.model, aggregate="max")
        variants["genre_max"] = dict(method="genre", model=cfg.model, aggregate="max",
                                     genre_weight=cfg.genre_weight)
        variants["cosine_euclidean"] = dict(method="cosine", model=cfg.model, distance="euclidean")
        variants["cosine_pnorm3"] = dict(method="cosine", model=cfg.model, distance="pnorm", p=3)
        for w in (0.25, 0.75, 1.0):
            variants[f"genre_w{w:g}"] = dict(method="genre", model=cfg.model, genre_weight=w)
        variants["cosine_zscore"] = dict(method="cosine", model=cfg.model, standardise=True)
        variants["genre_zscore"] = dict(method="genre", model=cfg.model, standardise=True,
                                        genre_weight=cfg.genre_weight)
        variants["cosine_mmr0.3"] = dict(method="cosine", model=cfg.model, diversity=0.3)
        variants["genre_mmr0.3"] = dict(method="genre", model=cfg.model, diversity=0.3,
                                        genre_weight=cfg.genre_weight)

    scorers = {name: _Scorer(index, listeners, k, ref)
               for name in list(methods) + ["random"] + list(variants)}
    feedback = _Scorer(index, listeners, k, ref) if cfg.extras else None
    no_feedback = _Scorer(index, listeners, k, ref) if cfg.extras else None
    rng = np.random.default_rng(cfg.seed + 1)
    ceiling = np.zeros(len(listeners))
    random_expected = np.zeros(len(listeners))
    for i, lis in enumerate(listeners):
        seeds = [str(ids[s]) for s in lis.seeds]
        elig = _eligible(index, lis.seeds)
        n_good = int(np.isin(genres[elig], lis.genres).sum())
        ceiling[i] = min(k, n_good) / k
        random_expected[i] = n_good / len(elig) if len(elig) else 0.0
        scorers["random"].add(i, rng.choice(elig, min(k, len(elig)), replace=False))
        for name, kw in {**methods, **variants}.items():
            recs = recommend(index, seeds, k=k, **kw)
            scorers[name].add(i, index.rows_of([r.track_id for r in recs]))
        if feedback is not None:
            # Round 2 after the listener marks round 1 (liked = in their genres):
            # Rocchio feedback vs simply the next k of method 1.
            first = recommend(index, seeds, k=2 * k, method="cosine", model=cfg.model)
            r1, r2 = first[:k], first[k:]
            liked = [r.track_id for r in r1 if r.genre in lis.genres]
            disliked = [r.track_id for r in r1 if r.genre not in lis.genres]
            fb = recommend(index, seeds, k=k, method="cosine", model=cfg.model, liked=liked,
                           disliked=disliked)
            feedback.add(i, index.rows_of([r.track_id for r in fb]))
            no_feedback.add(i, index.rows_of([r.track_id for r in r2]))
        if progress:
            progress(i + 1, len(listeners))

    out_methods = {name: scorers[name].report()
                   for name in ["cosine", "genre", "random"] + ([MFCC] if MFCC in methods else [])}
    for name in out_methods:
        out_methods[name]["settings"] = methods.get(name, {"method": "random"})
    kinds = np.array([lis.kind for lis in listeners])
    out_methods["random"]["expected"] = float(random_expected.mean())
    for kind in ("single", "mixed"):
        if kind in out_methods["random"]:
            out_methods["random"][kind]["expected"] = float(random_expected[kinds == kind].mean())
    p = {name: scorers[name].precision for name in scorers}
    tests = {"genre_vs_cosine": paired_t(p["cosine"], p["genre"])}
    if MFCC in p:
        tests["cosine_vs_mfcc"] = paired_t(p[MFCC], p["cosine"])
        tests["mfcc_vs_random"] = paired_t(p["random"], p[MFCC])
    tests["cosine_vs_random"] = paired_t(p["random"], p["cosine"])
    out_variants = {}
    for name, kw in variants.items():
        rep = scorers[name].report()
        rep["settings"] = kw
        rep["vs_cosine"] = paired_t(p["cosine"], p[name])
        out_variants[name] = rep
    if feedback is not None:
        out_variants["cosine_round2_feedback"] = {
            **feedback.report(), "vs_round2_without_feedback": paired_t(no_feedback.precision,
                                                                        feedback.precision),
            "settings": {"method": "cosine", "model": cfg.model, "liked/disliked": "round 1 by genre"}}
        out_variants["cosine_round2_without_feedback"] = {**no_feedback.report(),
                                                          "settings": {"ranks": f"{k + 1}-{2 * k}"}}
    cm, cci = _mean_ci(ceiling)
    return {
        "methods": out_methods,
        "paired_t": {k_: v for k_, v in tests["genre_vs_cosine"].items() if k_ in ("t", "p")},
        "n_listeners": len(listeners),
        "paired_tests": tests,
        "ceiling": {f"precision_at_{k}": cm, "ci95": cci},
        "variants": out_variants,
        "catalog": {"n_tracks": len(index), "genres": {g: int((genres == g).sum())
                                                       for g in sorted(set(genres.tolist()))},
                    "n_single": sum(lis.kind == "single" for lis in listeners),
                    "n_mixed": sum(lis.kind == "mixed" for lis in listeners)},
        "config": asdict(cfg),
        "seconds": round(time.time() - start, 2),
    }


def build_eval_index(tracks: Sequence[Track], models: dict, cache: LogMelCache,
                     with_mfcc: bool = True) -> tuple[CatalogIndex, list[str]]:
    """An in-memory catalog of ``tracks`` (those with a genre the models know):
    embeddings from the shipped models on cached log-mels, plus standardised
    MFCC features as pseudo-model ``mfcc``. Returns it and the skip reasons."""
    from .train import load_labelled, predict_mels

    first = next(iter(models.values()))
    labels = first.labels
    data = load_labelled(list(tracks), labels, cache, desc="log-mels")
    skipped = list(data.skipped) + [f"{t.track_id}: genre {t.genre!r} not in the model labels"
                                    for t in tracks if t.genre not in labels]
    emb, probs = {}, {}
    for name, m in models.items():
        probs[name], emb[name] = predict_mels(m, data.mels)
    if with_mfcc:
        f = handcrafted_features(data.mels, first.cfg)
        # Standardised over the catalog itself: an unsupervised step any indexer could run.
        f = (f - f.mean(0)) / np.maximum(f.std(0), 1e-8)
        emb[MFCC] = f
        probs[MFCC] = np.full((len(f), len(labels)), 1.0 / len(labels))
    rows = [{**t.to_dict(), "digest": content_hash(t.path)} for t in data.tracks]
    lab = {n: list(m.labels) for n, m in models.items()}
    lab[MFCC] = list(labels)
    idx = CatalogIndex.from_arrays(rows, emb, probs, lab)
    return idx, skipped


def recommend_eval(data_dirs: Sequence[str | Path], split: str = "test",
                   artifacts_dir: str | Path | None = None, cache: LogMelCache | None = None,
                   cfg: EvalConfig = EvalConfig(), models: dict | None = None,
                   progress: Progress | None = None) -> dict:
    """Evaluate the recommender on ``split`` of ``data_dirs`` with the shipped models."""
    from .artifacts import load_models

    models = models if models is not None else load_models(artifacts_dir)
    if not models:
        raise FileNotFoundError("no trained models in the artifacts folder — run `make artifacts`")
    if cfg.model not in models and not (cfg.model == ENSEMBLE and {"cnn", "crnn"} <= set(models)):
        cfg = EvalConfig(**{**asdict(cfg), "model": next(iter(models))})
    tracks = [t for t in read_datasets(data_dirs) if t.split == split]
    if not tracks:
        raise ValueError(f"no tracks in split {split!r}")
    cache = cache or LogMelCache(next(iter(models.values())).cfg)
    index, skipped = build_eval_index(tracks, models, cache)
    out = evaluate_index(index, cfg, progress=progress)
    out["split"] = split
    out["data"] = [str(d) for d in data_dirs]
    out["skipped"] = skipped
    return out
