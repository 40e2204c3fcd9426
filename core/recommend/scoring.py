"""Scoring one request: every catalog row's similarity to the seeds, genre
match, centre match and final score, plus what may never be recommended.
The formulas are in :mod:`core.recommend.methods`; the spaces come from
:class:`core.recommend.views.RecommendViews`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from core.catalog.index import CatalogIndex
from core.catalog.snapshot import CatalogError, IndexSnapshot
from core.recommend import search
from core.recommend.confidence import candidate_confidence, genre_confidence
from core.recommend.dedupe import artists_mask, copies_mask, song_key
from core.recommend.feedback import query_scores, rocchio_query, similarities
from core.recommend.request import MAX_SEEDS, RecommendConfig, RecommendError, SeedVector, check
from core.recommend.views import RecommendViews, views_of

# Above this many tracks cosine candidates come from the approximate
# core.recommend.search.VectorIndex (IVF, calibrated recall); below it every track is
# scored exactly. CANDIDATES: how many it returns per query.
APPROX_ABOVE = search.EXACT_MAX
CANDIDATES = 1000


def seed_exclusions(index: CatalogIndex | IndexSnapshot, seed_rows: Sequence[int],
                    uploads: Sequence[SeedVector] = ()) -> np.ndarray:
    """Boolean mask of catalog rows never to recommend for these seeds: the
    seeds and copies of them (same content hash or same normalised artist + title)."""
    views = views_of(index)
    return copies_mask(views.song_keys(), views.snapshot.column("digest"), seed_rows,
                       [song_key(sv.artist, sv.title) for sv in uploads], [sv.digest for sv in uploads])


def artist_exclusions(index: CatalogIndex | IndexSnapshot, artists: Sequence[str]) -> np.ndarray:
    """Boolean mask of catalog rows by any of ``artists`` (normalised names;
    empty names match nothing)."""
    return artists_mask(views_of(index).norm_artists(), artists)


@dataclass
class Scored:
    """Everything one request computes before picking the list (rows of one snapshot)."""

    views: RecommendViews
    cfg: RecommendConfig     # with the model resolved
    score: np.ndarray        # (N,) what the list is ranked by
    sim: np.ndarray          # (N,) similarity to the seeds (method 1's score)
    match: np.ndarray        # (N,) genre match, 0–1
    centre: np.ndarray | None   # (N,) centre match (method 2 "centre" only)
    shares: dict             # seed-genre shares pi_g (centre variant)
    excluded: np.ndarray     # (N,) bool: never recommended
    seed_rows: np.ndarray
    uploads: list
    X: np.ndarray            # (N, D') catalog in the scoring space
    S: np.ndarray            # (n_seeds, D') the seeds in it
    SP: np.ndarray           # (n_seeds, G) the seeds' genre probabilities
    w: float                 # the genre weight applied (0 for method 1)
    q: np.ndarray | None = None   # (N,) per-candidate confidence on the genre term (None: 1)


def score(snap: IndexSnapshot, cfg: RecommendConfig, seeds: Sequence[str], liked: Sequence[str] = (),
          disliked: Sequence[str] = (), seed_vectors: Sequence[SeedVector] | None = None,
          exclude_artists: Sequence[str] = ()) -> Scored:
    """Score every row of ``snap`` for one request (``cfg.model`` resolved)."""
    check(snap, cfg)
    views = views_of(snap)
    seeds = [str(s) for s in seeds]
    uploads = list(seed_vectors or [])
    n_seeds = len(seeds) + len(uploads)
    if not 1 <= n_seeds <= MAX_SEEDS:
        raise RecommendError(f"give 1 to {MAX_SEEDS} seed tracks (got {n_seeds})")
    if len(set(seeds)) != len(seeds):
        raise RecommendError("the same seed track is listed twice")
    try:
        seed_rows = snap.rows_of(seeds)
        liked_rows = snap.rows_of([str(t) for t in liked])
        disliked_rows = snap.rows_of([str(t) for t in disliked])
    except CatalogError as exc:
        raise RecommendError(str(exc)) from None

    excluded = seed_exclusions(snap, seed_rows, uploads)
    excluded[np.concatenate([liked_rows, disliked_rows]).astype(int)] = True
    if len(exclude_artists):
        excluded |= artist_exclusions(snap, exclude_artists)

    model, distance, p = cfg.model, cfg.distance, cfg.p
    X = views.space(model, distance, cfg.standardise)
    S = X[seed_rows]
    if uploads:
        S = np.vstack([S] + [views.seed_in_space(sv, model, distance, cfg.standardise)[None] for sv in uploads])
    L, D = X[liked_rows], X[disliked_rows]
    if len(snap) > APPROX_ABOVE and distance == "cosine":
        vi = views.vector_index(model, cfg.standardise, APPROX_ABOVE)
        sim = _approx_similarity(vi, X, S, L, D, cfg.aggregate, excluded, max(CANDIDATES, 20 * cfg.k))
    else:
        sim = query_scores(X, S, L, D, cfg.aggregate, distance, p)

    P = views.genre_probs(model)
    SP = P[seed_rows]
    if uploads:
        SP = np.vstack([SP] + [views.seed_probs(sv, model)[None] for sv in uploads])
    match = query_scores(P, SP, P[liked_rows], P[disliked_rows], cfg.aggregate, "cosine", p, clip=True)
    w = cfg.genre_weight * genre_confidence(SP, cfg.confidence) if cfg.method == "genre" else 0.0
    centre, shares = None, {}
    q = candidate_confidence(P, cfg.confidence) if cfg.method == "genre" else None
    if cfg.method == "genre" and cfg.variant == "centre":
        centre, shares = _centre_match(views, cfg, X, SP)
        term = centre
    else:
        term = match
    total = (1.0 - w) * sim + w * (term if q is None else term * q)
    return Scored(views, cfg, total, sim, match, centre, shares, excluded, seed_rows, uploads, X, S, SP, w, q)


def _approx_similarity(vi: search.VectorIndex, X: np.ndarray, S: np.ndarray, L: np.ndarray, D: np.ndarray,
                       aggregate: str, excluded: np.ndarray, n_cand: int) -> np.ndarray:
    """Large catalogs: candidates from the approximate index ``vi`` (the
    query's — or, for "max", each seed's — nearest ``n_cand``), scored
    exactly; every other track gets ``-inf`` (so method 2 re-ranks only the
    cosine neighbourhood)."""
    queries = rocchio_query(S, L, D)[None] if aggregate == "mean" else (np.vstack([S, L]) if len(L) else S)
    ids, _ = vi.search(queries, n_cand, exclude=np.flatnonzero(excluded))
    cand = np.unique(ids.ravel())
    sim = np.full(len(X), -np.inf, np.float32)
    sim[cand] = query_scores(X[cand], S, L, D, aggregate, "cosine", 3)
    return sim


def _centre_match(views: RecommendViews, cfg: RecommendConfig, X: np.ndarray,
                  SP: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """``centre_match`` ``(N,)`` of every row and the seed-genre shares ``pi_g``."""
    labels = views.labels(cfg.model)
    centres = views.centres(cfg.model, cfg.distance, cfg.standardise, cfg.p)
    seed_genres = [labels[int(i)] for i in SP.argmax(1)]
    shares = {g: seed_genres.count(g) / len(seed_genres) for g in dict.fromkeys(seed_genres)}
    sims = {g: similarities(X, X[centres[g].row], cfg.distance, cfg.p) for g in shares if g in centres}
    if not sims:
        return np.zeros(len(X), np.float32), shares
    if cfg.aggregate == "max":
        return np.max(list(sims.values()), axis=0), shares
    total = sum(shares[g] for g in sims)
    return sum(shares[g] / total * s for g, s in sims.items()), shares
