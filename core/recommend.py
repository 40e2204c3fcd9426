"""Recommend catalog tracks from 1–5 seed tracks (Adiyansjah et al. 2019).

Method 1, ``method="cosine"`` (the paper's): each track is its model
embedding (window-averaged penultimate-layer features). With
``aggregate="mean"`` the query is the mean of the seeds' L2-normalised
embeddings and a candidate's similarity is its cosine to that query; with
``aggregate="max"`` it is the largest cosine to any one seed (suits a listener
whose five songs span two tastes). ``score = similarity``.

Method 2, ``method="genre"``: method 1 combined with the classifier's genre
output. With ``w = genre_weight`` (0–1, default 0.5)::

    score = (1 - w) * similarity + w * genre_match

where ``genre_match`` is the cosine between the candidate's predicted genre
probability vector and the seeds' mean predicted genre probability vector
(with ``aggregate="max"``: the largest such cosine over the seeds). Genre
probabilities are non-negative, so ``genre_match`` lies in [0, 1]: 1 for a
candidate the model hears as exactly the seeds' genre mix. This is a soft
version of the paper's "recommend within the seeds' genre": ``w = 1`` ranks
purely by genre agreement, ``w = 0`` is method 1. (The paper's per-genre
"centre point" song is the catalog track nearest a genre's centroid; the
distribution affinity needs no such representative and handles mixed-genre
seeds.)

Options beyond the paper, each selectable:

* ``distance="euclidean"|"pnorm"`` (Minkowski, order ``p``) on the raw
  embeddings instead of cosine; a distance ``d`` becomes the similarity
  ``1 / (1 + d / median_d)`` (``median_d``: median distance from the query to
  the catalog), so 0.5 means "as far as the typical track" and method 2's
  weighting stays meaningful.
* ``model="ensemble"``: the CNN and CRNN embeddings, each L2-normalised, then
  concatenated (and scaled so the result has unit norm); genre probabilities
  are the mean of both models'.
* ``diversity`` in [0, 1]: maximal-marginal-relevance re-ranking (Carbonell &
  Goldstein 1998): pick ``argmax (1-λ)·score − λ·max cos(candidate, picked)``
  with ``λ = diversity`` over the best ``max(50, 10k)`` candidates, so five
  near-copies of one album are not the answer.
* ``standardise=True``: z-score every embedding dimension with the catalog's
  mean and standard deviation before the similarity, so no single
  high-variance (or constant-offset) dimension dominates the cosine.
* ``liked`` / ``disliked``: relevance feedback (Rocchio 1971) moves the query:
  ``q = mean(seeds) + 0.75·mean(liked) − 0.25·mean(disliked)`` (for both the
  embedding and the genre query, the latter clipped at 0); with
  ``aggregate="max"`` liked tracks join the seeds and ``0.25·`` the largest
  similarity to a disliked track is subtracted.

Catalogs above ``APPROX_ABOVE`` tracks (200k) take cosine candidates from
:class:`core.search.VectorIndex` (approximate) and score those exactly.

Never recommended: the seeds, liked or disliked tracks, anything with the
same content hash or the same normalised artist + title as a seed (the same
song indexed twice), and a second copy of a track already in the list.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from . import search
from .index import CatalogError, CatalogIndex

METHODS = ("cosine", "genre")
AGGREGATES = ("mean", "max")
DISTANCES = ("cosine", "euclidean", "pnorm")
ENSEMBLE = "ensemble"
ENSEMBLE_PARTS = ("cnn", "crnn")
MAX_SEEDS = 5
# Above this many tracks cosine candidates come from the approximate
# core.search.VectorIndex (IVF, calibrated recall); below it every track is
# scored exactly. CANDIDATES: how many it returns per query.
APPROX_ABOVE = search.EXACT_MAX
CANDIDATES = 1000
# Rocchio weights (Manning, Raghavan & Schütze, IR book §9.1.1 defaults).
ROCCHIO_BETA = 0.75
ROCCHIO_GAMMA = 0.25


class RecommendError(CatalogError):
    """A request the recommender cannot serve; ``str(err)`` is one line."""


@dataclass
class SeedVector:
    """A seed that is not in the catalog (an uploaded file): its embedding and
    genre probabilities per model, plus what is known to exclude copies of it."""

    embedding: dict[str, np.ndarray]
    probs: dict[str, np.ndarray]
    name: str = "uploaded track"
    artist: str = ""
    title: str = ""
    digest: str = ""

    @classmethod
    def from_analysis(cls, analysis, name: str = "uploaded track", digest: str = "") -> "SeedVector":
        """From :func:`core.inference.analyse` output."""
        return cls(embedding={m: np.asarray(p.embedding[0], np.float32)
                              for m, p in analysis.predictions.items()},
                   probs={m: np.asarray(p.probs[0], np.float32) for m, p in analysis.predictions.items()},
                   name=name, title=name, digest=digest)

    @classmethod
    def from_embedded(cls, track, name: str | None = None) -> "SeedVector":
        """From a :class:`core.pipeline.EmbeddedTrack` (raises its error)."""
        if track.error:
            raise RecommendError(track.error)
        from pathlib import Path

        label = name or Path(track.path).stem
        return cls(embedding=dict(track.embedding), probs=dict(track.probs), name=label,
                   title=label, digest=track.digest or "")


@dataclass
class Recommendation:
    """One recommended track and why."""

    track_id: str
    rank: int
    score: float             # what the list is ranked by (before diversity re-ranking)
    similarity: float        # embedding similarity to the seeds (method 1's score)
    genre_match: float       # cosine of predicted genre distributions, 0–1
    genre: str               # the catalog's genre label (ground truth, "" if unknown)
    predicted_genre: str     # the model's top genre for this track
    reason: str
    artist: str = ""
    title: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _norm_text(s: str) -> str:
    s = unicodedata.normalize("NFKD", str(s or ""))
    s = "".join(c for c in s if not unicodedata.combining(c)).casefold()
    s = re.sub(r"[\(\[\{].*?[\)\]\}]", " ", s)                 # (live), [remastered 2011]
    s = re.sub(r"\s(-|–)\s.*(remaster|version|edit|mix|live|mono|stereo).*$", " ", s)
    s = re.sub(r"\b(feat|ft|featuring)\b\.?.*$", " ", s)
    s = re.sub(r"[^0-9a-z]+", " ", s)
    return " ".join(s.split())


def song_key(artist: str, title: str) -> str | None:
    """Normalised artist + title identifying one song across copies, or ``None``
    when the title is unknown (then only the content hash identifies it)."""
    t = _norm_text(title)
    return f"{_norm_text(artist)}\x1f{t}" if t else None


def _song_keys(index: CatalogIndex) -> np.ndarray:
    return index.cached("song_keys", lambda: np.array(
        [song_key(a, t) for a, t in zip(index.column("artist"), index.column("title"))], dtype=object))


def seed_exclusions(index: CatalogIndex, seed_rows: Sequence[int],
                    uploads: Sequence[SeedVector] = ()) -> np.ndarray:
    """Boolean mask of catalog rows never to recommend for these seeds: the
    seeds and copies of them (same content hash or same normalised artist + title)."""
    keys, digests = _song_keys(index), index.column("digest")
    seed_keys = {keys[r] for r in seed_rows} | {song_key(sv.artist, sv.title) for sv in uploads}
    seed_keys.discard(None)
    seed_digests = {digests[r] for r in seed_rows} | {sv.digest for sv in uploads}
    seed_digests.discard("")
    excluded = np.zeros(len(index), bool)
    excluded[np.asarray(seed_rows, dtype=int)] = True
    excluded |= np.fromiter((d in seed_digests for d in digests), bool, len(index))
    if seed_keys:
        excluded |= np.fromiter((k in seed_keys for k in keys), bool, len(index))
    return excluded


def _zscore(index: CatalogIndex, model: str, standardise: bool, e: np.ndarray) -> np.ndarray:
    e = np.asarray(e, np.float32)
    if not standardise:
        return e
    mu, sd = index.cached(("zstats", model), lambda: (
        index.embeddings(model).mean(0), np.maximum(index.embeddings(model).std(0), 1e-6)))
    return (e - mu) / sd


def _part(index: CatalogIndex, model: str, distance: str, standardise: bool, e: np.ndarray) -> np.ndarray:
    """Raw embeddings ``(n, D)`` of one model → the search space: optionally
    z-scored per dimension with the catalog's statistics, then unit-norm rows
    (cosine) or scaled to the catalog's unit mean norm (distances, so both
    halves of an ensemble count equally)."""
    e = _zscore(index, model, standardise, e)
    if distance == "cosine":
        return search.normalise(e)
    scale = index.cached(("mean_norm", model, standardise), lambda: max(float(np.linalg.norm(
        _zscore(index, model, standardise, index.embeddings(model)), axis=1).mean()), 1e-12))
    return e / scale


def _space(index: CatalogIndex, model: str, distance: str, standardise: bool = False) -> np.ndarray:
    """Catalog matrix in the space the similarity is computed in."""
    def make() -> np.ndarray:
        if model == ENSEMBLE:
            v = np.hstack([_space(index, m, distance, standardise) for m in ENSEMBLE_PARTS])
            return search.normalise(v) if distance == "cosine" else v
        return _part(index, model, distance, standardise, index.embeddings(model))
    return index.cached(("space", model, distance, standardise), make)


def _seed_in_space(index: CatalogIndex, sv: SeedVector, model: str, distance: str,
                   standardise: bool = False) -> np.ndarray:
    """An uploaded seed transformed exactly like the catalog rows of :func:`_space`."""
    if model == ENSEMBLE:
        v = np.hstack([_seed_in_space(index, sv, m, distance, standardise) for m in ENSEMBLE_PARTS])
        return search.normalise(v[None])[0] if distance == "cosine" else v
    try:
        e = np.asarray(sv.embedding[model], np.float32)
    except KeyError:
        raise RecommendError(f"uploaded seed {sv.name!r} has no {model} embedding") from None
    if e.shape[-1] != index.embeddings(model).shape[1]:
        raise RecommendError(f"uploaded seed {sv.name!r}: {model} embedding size {e.shape[-1]} "
                             f"does not match the index ({index.embeddings(model).shape[1]})")
    return _part(index, model, distance, standardise, e[None])[0]


def _genre_probs(index: CatalogIndex, model: str) -> np.ndarray:
    if model == ENSEMBLE:
        return index.cached(("probs", ENSEMBLE), lambda: np.mean(
            [index.probs(m) for m in ENSEMBLE_PARTS], axis=0).astype(np.float32))
    return index.probs(model)


def _seed_probs(sv: SeedVector, model: str) -> np.ndarray:
    if model == ENSEMBLE:
        return np.mean([_seed_probs(sv, m) for m in ENSEMBLE_PARTS], axis=0)
    try:
        return np.asarray(sv.probs[model], np.float32)
    except KeyError:
        raise RecommendError(f"uploaded seed {sv.name!r} has no {model} probabilities") from None


def _labels(index: CatalogIndex, model: str) -> list[str]:
    return index.model_labels("crnn" if model == ENSEMBLE else model)


def _minkowski(matrix: np.ndarray, query: np.ndarray, p: float) -> np.ndarray:
    # core.search has no distance helper yet; one vectorised line here.
    return np.linalg.norm(matrix - query[None], ord=p, axis=1)


def _similarities(matrix: np.ndarray, query: np.ndarray, distance: str, p: float) -> np.ndarray:
    """Similarity of every row to one query (cosine, or mapped distance)."""
    if distance == "cosine":
        return search.cosine_scores(matrix, query)
    d = _minkowski(matrix, query, 2.0 if distance == "euclidean" else float(p))
    scale = float(np.median(d)) if len(d) else 1.0
    return 1.0 / (1.0 + d / max(scale, 1e-12))


def _query_scores(matrix: np.ndarray, seeds: np.ndarray, liked: np.ndarray, disliked: np.ndarray,
                  aggregate: str, distance: str, p: float, clip: bool = False) -> np.ndarray:
    """Similarity of every catalog row to the seeds (with Rocchio feedback)."""
    if aggregate == "mean":
        prep = search.normalise if distance == "cosine" else (lambda x: np.asarray(x, np.float32))
        q = prep(seeds).mean(0)
        if len(liked):
            q = q + ROCCHIO_BETA * prep(liked).mean(0)
        if len(disliked):
            q = q - ROCCHIO_GAMMA * prep(disliked).mean(0)
        if clip:
            q = np.maximum(q, 0)
        return _similarities(matrix, q, distance, p)
    positives = np.vstack([seeds, liked]) if len(liked) else seeds
    s = np.max([_similarities(matrix, v, distance, p) for v in positives], axis=0)
    if len(disliked):
        s = s - ROCCHIO_GAMMA * np.max([_similarities(matrix, v, distance, p) for v in disliked], axis=0)
    return s


def _approx_similarity(index: CatalogIndex, X: np.ndarray, S: np.ndarray, L: np.ndarray,
                       D: np.ndarray, aggregate: str, key: tuple, excluded: np.ndarray,
                       n_cand: int) -> np.ndarray:
    """Large catalogs: candidates from the approximate :class:`core.search.VectorIndex`
    (the query's — or, for "max", each seed's — nearest ``n_cand``), scored
    exactly; every other track gets ``-inf`` (so method 2 re-ranks only the
    cosine neighbourhood)."""
    vi = index.cached(("vindex",) + key, lambda: search.VectorIndex(X, exact_max=APPROX_ABOVE))
    if aggregate == "mean":
        q = search.normalise(S).mean(0)
        if len(L):
            q = q + ROCCHIO_BETA * search.normalise(L).mean(0)
        if len(D):
            q = q - ROCCHIO_GAMMA * search.normalise(D).mean(0)
        queries = q[None]
    else:
        queries = np.vstack([S, L]) if len(L) else S
    ids, _ = vi.search(queries, n_cand, exclude=np.flatnonzero(excluded))
    cand = np.unique(ids.ravel())
    sim = np.full(len(index), -np.inf, np.float32)
    sim[cand] = _query_scores(X[cand], S, L, D, aggregate, "cosine", 3)
    return sim


def _check(method: str, model: str, aggregate: str, distance: str, k: int, genre_weight: float,
           diversity: float, p: float, index: CatalogIndex) -> None:
    if method not in METHODS:
        raise RecommendError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if aggregate not in AGGREGATES:
        raise RecommendError(f"unknown aggregate {aggregate!r}; choose mean or max")
    if distance not in DISTANCES:
        raise RecommendError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")
    if k < 1:
        raise RecommendError("k must be at least 1")
    if not 0.0 <= genre_weight <= 1.0:
        raise RecommendError("genre_weight must be between 0 and 1")
    if not 0.0 <= diversity <= 1.0:
        raise RecommendError("diversity must be between 0 and 1")
    if distance == "pnorm" and p < 1:
        raise RecommendError("p must be at least 1 for the p-norm")
    if not len(index):
        raise RecommendError("the catalog index is empty — index some music first")
    needed = ENSEMBLE_PARTS if model == ENSEMBLE else (model,)
    missing = [m for m in needed if m not in index.models]
    if missing:
        raise RecommendError(f"model {', '.join(missing)} is not in the index "
                             f"(have: {', '.join(index.models) or 'none'})")


def recommend(index: CatalogIndex, seeds: Sequence[str], method: str = "cosine", k: int = 5,
              model: str = "crnn", aggregate: str = "mean", distance: str = "cosine", p: float = 3,
              genre_weight: float = 0.5, diversity: float = 0.0, liked: Sequence[str] = (),
              disliked: Sequence[str] = (), seed_vectors: Sequence[SeedVector] | None = None,
              standardise: bool = False) -> list[Recommendation]:
    """Top-``k`` catalog tracks for 1–5 seeds (catalog ids and/or uploaded
    :class:`SeedVector`); see the module docstring for the exact scoring."""
    _check(method, model, aggregate, distance, k, genre_weight, diversity, p, index)
    seeds = [str(s) for s in seeds]
    uploads = list(seed_vectors or [])
    n_seeds = len(seeds) + len(uploads)
    if not 1 <= n_seeds <= MAX_SEEDS:
        raise RecommendError(f"give 1 to {MAX_SEEDS} seed tracks (got {n_seeds})")
    if len(set(seeds)) != len(seeds):
        raise RecommendError("the same seed track is listed twice")
    try:
        seed_rows = index.rows_of(seeds)
        liked_rows = index.rows_of([str(t) for t in liked])
        disliked_rows = index.rows_of([str(t) for t in disliked])
    except CatalogError as exc:
        raise RecommendError(str(exc)) from None

    excluded = seed_exclusions(index, seed_rows, uploads)
    excluded[np.concatenate([liked_rows, disliked_rows]).astype(int)] = True

    X = _space(index, model, distance, standardise)
    S = X[seed_rows]
    if uploads:
        S = np.vstack([S] + [_seed_in_space(index, sv, model, distance, standardise)[None]
                             for sv in uploads])
    L, D = X[liked_rows], X[disliked_rows]
    if len(index) > APPROX_ABOVE and distance == "cosine":
        sim = _approx_similarity(index, X, S, L, D, aggregate, (model, standardise), excluded,
                                 max(CANDIDATES, 20 * k))
    else:
        sim = _query_scores(X, S, L, D, aggregate, distance, p)

    P = _genre_probs(index, model)
    SP = P[seed_rows]
    if uploads:
        SP = np.vstack([SP] + [_seed_probs(sv, model)[None] for sv in uploads])
    match = _query_scores(P, SP, P[liked_rows], P[disliked_rows], aggregate, "cosine", p, clip=True)
    w = genre_weight if method == "genre" else 0.0
    score = (1.0 - w) * sim + w * match

    keys, digests = _song_keys(index), index.column("digest")

    pool = max(50, 10 * k) if diversity > 0 else k
    fetch = pool
    while True:
        # A few extra candidates in case some are copies of each other.
        order = search.top_k(score, fetch, exclude=np.flatnonzero(excluded))
        chosen = _distinct(order, keys, digests, pool)
        if len(chosen) >= pool or len(order) < fetch:
            break
        fetch *= 2
    if diversity > 0 and len(chosen) > 1:
        chosen = _mmr(chosen, score, _space(index, model, "cosine", standardise), diversity, k)
    chosen = chosen[:k]
    return _explain(index, chosen, score, sim, match, method, model, aggregate, distance, w,
                    seed_rows, uploads, S, X[chosen], SP, p)


def _distinct(order: np.ndarray, keys: np.ndarray, digests: np.ndarray, n: int) -> list[int]:
    """The first ``n`` rows of ``order`` that are not copies (same content hash
    or same normalised artist + title) of an earlier one."""
    out: list[int] = []
    seen_keys: set = set()
    seen_digests: set = set()
    for i in map(int, order):
        if (digests[i] and digests[i] in seen_digests) or (keys[i] is not None and keys[i] in seen_keys):
            continue
        out.append(i)
        seen_digests.add(digests[i])
        if keys[i] is not None:
            seen_keys.add(keys[i])
        if len(out) >= n:
            break
    return out


def _mmr(cands: list[int], score: np.ndarray, unit: np.ndarray, diversity: float, k: int) -> list[int]:
    """Maximal marginal relevance over ``cands`` (rows of unit-norm ``unit``)."""
    c = np.array(cands)
    rel = score[c].astype(np.float64)
    V = unit[c]
    pair = V @ V.T
    picked = [0]                                    # the most relevant goes first
    best_sim = pair[0].copy()
    left = np.ones(len(c), bool)
    left[0] = False
    while len(picked) < min(k, len(c)):
        mmr = (1 - diversity) * rel - diversity * best_sim
        mmr[~left] = -np.inf
        j = int(np.argmax(mmr))
        picked.append(j)
        left[j] = False
        best_sim = np.maximum(best_sim, pair[j])
    return [int(c[j]) for j in picked]


def _explain(index: CatalogIndex, rows: list[int], score, sim, match, method, model, aggregate,
             distance, w, seed_rows, uploads, S, X, SP, p: float = 3) -> list[Recommendation]:
    labels = _labels(index, model)
    P = _genre_probs(index, model)
    seed_genre = labels[int(np.argmax(SP.mean(0)))]
    names = [str(index.column("title")[r]) or str(index.column("track_id")[r]) for r in seed_rows]
    names += [sv.name for sv in uploads]
    if distance == "cosine":
        nearest = np.argmax(search.normalise(S) @ X.T, axis=0) if len(rows) else []
    else:
        pp = 2.0 if distance == "euclidean" else float(p)
        nearest = np.argmin([_minkowski(X, s, pp) for s in S], axis=0) if len(rows) else []
    out = []
    for rank, (i, near_j) in enumerate(zip(rows, nearest), 1):
        pred = labels[int(np.argmax(P[i]))]
        near = names[int(near_j)]
        parts = [f"{distance} similarity {sim[i]:.2f} to the seeds ({model}, {aggregate} over seeds)",
                 f"closest seed: {near}",
                 (f"predicted {pred} like the seeds" if pred == seed_genre
                  else f"predicted {pred} (seeds: {seed_genre})") + f", genre match {match[i]:.2f}"]
        if method == "genre":
            parts.append(f"score = {1 - w:.2f}*{sim[i]:.2f} + {w:.2f}*{match[i]:.2f}")
        out.append(Recommendation(
            track_id=str(index.column("track_id")[i]), rank=rank, score=float(score[i]),
            similarity=float(sim[i]), genre_match=float(match[i]),
            genre=str(index.column("genre")[i]), predicted_genre=pred, reason="; ".join(parts),
            artist=str(index.column("artist")[i]), title=str(index.column("title")[i])))
    return out
