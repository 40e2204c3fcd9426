"""Recommend catalog tracks from 1–5 seed tracks (Adiyansjah et al. 2019).

Method 1, ``method="cosine"`` (the paper's): each track is its model
embedding (window-averaged penultimate-layer features). With
``aggregate="mean"`` the query is the mean of the seeds' L2-normalised
embeddings and a candidate's similarity is its cosine to that query; with
``aggregate="max"`` it is the largest cosine to any one seed (suits a listener
whose five songs span two tastes). ``score = similarity``.

Method 2, ``method="genre"``: method 1 steered by the genre classifier. With
``w = genre_weight`` (0–1) and ``variant`` one of:

* ``variant="soft"`` (ours)::

      score = (1 - w) * similarity + w * genre_match

  where ``genre_match`` is the cosine between the candidate's predicted genre
  probability vector and the seeds' mean predicted genre probability vector
  (with ``aggregate="max"``: the largest such cosine over the seeds). Genre
  probabilities are non-negative, so ``genre_match`` lies in [0, 1]: 1 for a
  candidate the model hears as exactly the seeds' genre mix. Handles
  mixed-genre seeds without a representative song.

* ``variant="centre"`` (the paper's, made precise)::

      score = (1 - w) * similarity + w * centre_match
      centre_match = sum_g pi_g * sim(candidate, c_g)

  ``pi_g`` is the share of seeds whose top predicted genre is ``g`` and
  ``c_g`` the embedding of genre ``g``'s *centre-point song* (with
  ``aggregate="max"``: the largest ``sim(candidate, c_g)`` over the seeds'
  genres). ``sim`` is the same similarity as method 1's (cosine, or the
  mapped distance). The centre point of genre ``g`` (:func:`genre_centres`):
  among catalog tracks the classifier predicts as ``g`` (top genre), the
  *confident* ones are those whose ``p_g`` is at or above the
  ``CENTRE_QUANTILE`` quantile (median) of ``p_g`` within that group (when
  fewer than ``CENTRE_MIN_TRACKS`` tracks are predicted ``g``: the
  ``CENTRE_MIN_TRACKS`` tracks with the highest ``p_g``); the centre point is
  the confident track nearest to the confident tracks' mean embedding (in
  the search space: unit vectors for cosine). ``w = 1`` ranks by closeness
  to the seeds' genre centre point(s) alone.

``w = 0`` is method 1 for either variant. The default variant and weight
(:data:`DEFAULTS`) are the ones chosen on validation data by
``python -m core recommend-eval --select-on val``.

Options beyond the paper, each selectable:

* ``distance="euclidean"|"pnorm"`` (Minkowski, order ``p``) on the raw
  embeddings instead of cosine; a distance ``d`` becomes the similarity
  ``1 / (1 + d / median_d)`` (``median_d``: median distance from the query to
  the catalog), so 0.5 means "as far as the typical track" and method 2's
  weighting stays meaningful.
* ``model="ensemble"`` (every learned model in the index, i.e. all but the
  ``mfcc`` baseline) or ``model="a+b"`` (the named models): each model's
  embedding L2-normalised, then concatenated (and scaled so the result has
  unit norm); genre probabilities are the mean of the parts' (aligned by
  genre name).
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
:class:`core.recommend.search.VectorIndex` (approximate) and score those exactly.

Never recommended: the seeds, liked or disliked tracks, anything with the
same content hash or the same normalised artist + title as a seed (the same
song indexed twice), a second copy of a track already in the list, and
(``exclude_artists``) any track by the given artists (leave-artist-out).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from core.catalog.index import CatalogError, CatalogIndex
from core.recommend import search

METHODS = ("cosine", "genre")
VARIANTS = ("soft", "centre")
AGGREGATES = ("mean", "max")
DISTANCES = ("cosine", "euclidean", "pnorm")
ENSEMBLE = "ensemble"
ENSEMBLE_SEP = "+"
# Index "models" that are baselines, not genre classifiers: never part of "ensemble".
PSEUDO_MODELS = ("mfcc",)
# The model used when none is named, if the index has it (else the first indexed one).
# The embedding chosen on val (recommend-eval --select-on val, artifacts/recommend_choice.json):
# every learned model's L2-normalised embedding, concatenated.
PREFERRED_MODEL = "ensemble"
MAX_SEEDS = 5
# The artifact the app reads the offline figures of both methods from
# (``python -m core recommend-eval --split test --json artifacts/recommend_eval.json``).
EVAL_ARTIFACT = "recommend_eval.json"
# Above this many tracks cosine candidates come from the approximate
# core.recommend.search.VectorIndex (IVF, calibrated recall); below it every track is
# scored exactly. CANDIDATES: how many it returns per query.
APPROX_ABOVE = search.EXACT_MAX
CANDIDATES = 1000
# Rocchio weights (Manning, Raghavan & Schütze, IR book §9.1.1 defaults).
ROCCHIO_BETA = 0.75
ROCCHIO_GAMMA = 0.25
# Centre points: a track predicted as genre g is "confident" when its p_g is at
# or above this quantile of p_g among the tracks predicted g; a genre with fewer
# predicted tracks takes the CENTRE_MIN_TRACKS tracks with the highest p_g.
CENTRE_QUANTILE = 0.5
CENTRE_MIN_TRACKS = 3


@dataclass(frozen=True)
class RecommendConfig:
    """Settings of one recommendation request. The function defaults of
    :func:`recommend`, the CLI flags and the app's widgets all read
    :data:`DEFAULTS`.

    ``variant`` and ``genre_weight`` are method 2's; their defaults are meant
    to be the winners of ``python -m core recommend-eval --select-on val``
    (update them here after a selection run; the choice JSON records them).
    """

    method: str = "cosine"
    k: int = 5
    model: str | None = None         # None: PREFERRED_MODEL if indexed, else the first model
    aggregate: str = "mean"
    distance: str = "cosine"
    p: float = 3.0
    # Chosen on val with the shipped v3 artifacts (recommend-eval --select-on val
    # --weights 0.1,…,0.9: ensemble, soft, 0.9; w = 1 would drop the cosine term,
    # so it is not offered); re-run the selection when the models change.
    genre_weight: float = 0.9
    variant: str = "soft"
    diversity: float = 0.0
    standardise: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULTS = RecommendConfig()


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
        """From :func:`core.models.inference.analyse` output."""
        return cls(embedding={m: np.asarray(p.embedding[0], np.float32)
                              for m, p in analysis.predictions.items()},
                   probs={m: np.asarray(p.probs[0], np.float32) for m, p in analysis.predictions.items()},
                   name=name, title=name, digest=digest)

    @classmethod
    def from_embedded(cls, track, name: str | None = None) -> "SeedVector":
        """From a :class:`core.catalog.pipeline.EmbeddedTrack` (raises its error)."""
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
    centre_match: float | None = None   # method 2 "centre": similarity to the seeds' centre point(s)

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


def _norm_artists(index: CatalogIndex) -> np.ndarray:
    return index.cached("norm_artists", lambda: np.array(
        [_norm_text(a) for a in index.column("artist")], dtype=object))


def artist_exclusions(index: CatalogIndex, artists: Sequence[str]) -> np.ndarray:
    """Boolean mask of catalog rows by any of ``artists`` (normalised names;
    empty names match nothing)."""
    wanted = {_norm_text(a) for a in artists} - {""}
    if not wanted:
        return np.zeros(len(index), bool)
    names = _norm_artists(index)
    return np.fromiter((n in wanted for n in names), bool, len(index))


# --------------------------------------------------------------------------- spaces


def resolve_model(index: CatalogIndex, model: str | None) -> str:
    """``None`` → :data:`PREFERRED_MODEL` when indexed, else the first indexed model."""
    if model:
        return model
    learned = [m for m in index.models if m not in PSEUDO_MODELS]
    if PREFERRED_MODEL in index.models or (PREFERRED_MODEL == ENSEMBLE and len(learned) >= 2):
        return PREFERRED_MODEL
    return (learned or index.models or [PREFERRED_MODEL])[0]


def ensemble_parts(index: CatalogIndex, model: str) -> tuple[str, ...]:
    """The indexed models a model spec stands for: itself, the parts of
    ``"a+b"``, or for ``"ensemble"`` every indexed model but :data:`PSEUDO_MODELS`."""
    if model == ENSEMBLE:
        return tuple(m for m in index.models if m not in PSEUDO_MODELS)
    if ENSEMBLE_SEP in model:
        return tuple(dict.fromkeys(m.strip() for m in model.split(ENSEMBLE_SEP) if m.strip()))
    return (model,)


def model_choices(index: CatalogIndex) -> list[str]:
    """Model specs a user can pick for this index: each model, then the ensemble."""
    learned = [m for m in index.models if m not in PSEUDO_MODELS]
    return list(index.models) + ([ENSEMBLE] if len(learned) >= 2 else [])


def _is_ensemble(index: CatalogIndex, model: str) -> bool:
    return model == ENSEMBLE or ENSEMBLE_SEP in model


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
        if _is_ensemble(index, model):
            v = np.hstack([_space(index, m, distance, standardise) for m in ensemble_parts(index, model)])
            return search.normalise(v) if distance == "cosine" else v
        return _part(index, model, distance, standardise, index.embeddings(model))
    return index.cached(("space", model, distance, standardise), make)


def _seed_in_space(index: CatalogIndex, sv: SeedVector, model: str, distance: str,
                   standardise: bool = False) -> np.ndarray:
    """An uploaded seed transformed exactly like the catalog rows of :func:`_space`."""
    if _is_ensemble(index, model):
        v = np.hstack([_seed_in_space(index, sv, m, distance, standardise)
                       for m in ensemble_parts(index, model)])
        return search.normalise(v[None])[0] if distance == "cosine" else v
    try:
        e = np.asarray(sv.embedding[model], np.float32)
    except KeyError:
        raise RecommendError(f"uploaded seed {sv.name!r} has no {model} embedding") from None
    if e.shape[-1] != index.embeddings(model).shape[1]:
        raise RecommendError(f"uploaded seed {sv.name!r}: {model} embedding size {e.shape[-1]} "
                             f"does not match the index ({index.embeddings(model).shape[1]})")
    return _part(index, model, distance, standardise, e[None])[0]


def _labels(index: CatalogIndex, model: str) -> list[str]:
    return index.model_labels(ensemble_parts(index, model)[0])


def _align(index: CatalogIndex, part: str, labels: list[str], probs: np.ndarray) -> np.ndarray:
    """Columns of ``part``'s probabilities reordered to ``labels``."""
    own = index.model_labels(part)
    if own == labels:
        return probs
    try:
        return probs[..., [own.index(g) for g in labels]]
    except ValueError:
        raise RecommendError(f"{part} does not predict the same genres as "
                             f"{ensemble_parts(index, ENSEMBLE)[0]}; cannot ensemble them") from None


def _genre_probs(index: CatalogIndex, model: str) -> np.ndarray:
    if _is_ensemble(index, model):
        labels = _labels(index, model)
        return index.cached(("probs", model), lambda: np.mean(
            [_align(index, m, labels, index.probs(m)) for m in ensemble_parts(index, model)],
            axis=0).astype(np.float32))
    return index.probs(model)


def _seed_probs(index: CatalogIndex, sv: SeedVector, model: str) -> np.ndarray:
    if _is_ensemble(index, model):
        labels = _labels(index, model)
        return np.mean([_align(index, m, labels, _seed_probs(index, sv, m))
                        for m in ensemble_parts(index, model)], axis=0)
    try:
        return np.asarray(sv.probs[model], np.float32)
    except KeyError:
        raise RecommendError(f"uploaded seed {sv.name!r} has no {model} probabilities") from None


def _minkowski(matrix: np.ndarray, query: np.ndarray, p: float) -> np.ndarray:
    # core.recommend.search has no distance helper yet; one vectorised line here.
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
    """Large catalogs: candidates from the approximate :class:`core.recommend.search.VectorIndex`
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


# --------------------------------------------------------------------------- centre points


@dataclass(frozen=True)
class CentrePoint:
    """The centre-point song of one genre (see :func:`genre_centres`)."""

    genre: str
    row: int                 # catalog row of the centre-point track
    track_id: str
    n_predicted: int         # catalog tracks whose top predicted genre is this one
    n_confident: int         # of those, the confident ones the mean is taken over
    threshold: float         # p_genre a track needed to count as confident


def centre_rows(probs: np.ndarray, space: np.ndarray, distance: str = "cosine", p: float = 3.0,
                quantile: float = CENTRE_QUANTILE, min_tracks: int = CENTRE_MIN_TRACKS
                ) -> list[tuple[int, int, int, float]]:
    """Per genre column of ``probs``: ``(centre row, n predicted, n confident,
    threshold)``; pure numpy (see the module docstring for the rule)."""
    top = probs.argmax(1) if len(probs) else np.zeros(0, int)
    out = []
    for g in range(probs.shape[1]):
        pg = probs[:, g]
        members = np.flatnonzero(top == g)
        if len(members) >= min_tracks:
            thr = float(np.quantile(pg[members], quantile))
            conf = members[pg[members] >= thr]
        else:
            conf = np.argsort(-pg, kind="stable")[:min_tracks]
            thr = float(pg[conf].min()) if len(conf) else float("nan")
        if not len(conf):
            out.append((-1, len(members), 0, thr))
            continue
        v = space[conf]
        mean = v.mean(0)
        if distance == "cosine":
            near = int(np.argmax(search.normalise(v) @ search.normalise(mean[None])[0]))
        else:
            near = int(np.argmin(_minkowski(v, mean, 2.0 if distance == "euclidean" else p)))
        out.append((int(conf[near]), len(members), len(conf), thr))
    return out


def genre_centres(index: CatalogIndex, model: str | None = None, distance: str = "cosine",
                  standardise: bool = False, p: float = 3.0) -> dict[str, CentrePoint]:
    """Each genre's centre-point song in ``model``'s space: among the tracks
    the classifier predicts as that genre, the confident half (``p_g`` at or
    above the group's median; a genre predicted for fewer than
    :data:`CENTRE_MIN_TRACKS` tracks takes the :data:`CENTRE_MIN_TRACKS` with
    the highest ``p_g``), the track nearest to their mean embedding."""
    model = resolve_model(index, model)

    def make() -> dict[str, CentrePoint]:
        X = _space(index, model, distance, standardise)
        P = _genre_probs(index, model)
        ids = index.column("track_id")
        out = {}
        for g, (row, n_pred, n_conf, thr) in zip(_labels(index, model),
                                                  centre_rows(P, X, distance, p)):
            if row >= 0:
                out[g] = CentrePoint(g, row, str(ids[row]), n_pred, n_conf, thr)
        return out
    return index.cached(("centres", model, distance, standardise, float(p)), make)


def _centre_match(index: CatalogIndex, model: str, distance: str, standardise: bool, p: float,
                  X: np.ndarray, SP: np.ndarray, aggregate: str) -> tuple[np.ndarray, dict[str, float]]:
    """``centre_match`` of every row and the seed-genre shares ``pi_g``."""
    labels = _labels(index, model)
    centres = genre_centres(index, model, distance, standardise, p)
    seed_genres = [labels[int(i)] for i in SP.argmax(1)]
    shares = {g: seed_genres.count(g) / len(seed_genres) for g in dict.fromkeys(seed_genres)}
    sims = {g: _similarities(X, X[centres[g].row], distance, p) for g in shares if g in centres}
    if not sims:
        return np.zeros(len(X), np.float32), shares
    if aggregate == "max":
        return np.max(list(sims.values()), axis=0), shares
    total = sum(shares[g] for g in sims)
    return sum(shares[g] / total * s for g, s in sims.items()), shares


# --------------------------------------------------------------------------- scoring


def _check(method: str, model: str, aggregate: str, distance: str, k: int, genre_weight: float,
           diversity: float, p: float, index: CatalogIndex, variant: str = "soft") -> None:
    if method not in METHODS:
        raise RecommendError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if variant not in VARIANTS:
        raise RecommendError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
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
    needed = ensemble_parts(index, model)
    missing = [m for m in needed if m not in index.models]
    if missing:
        raise RecommendError(f"model {', '.join(missing)} is not in the index "
                             f"(have: {', '.join(index.models) or 'none'})")
    if _is_ensemble(index, model) and len(needed) < 2:
        raise RecommendError(f"an ensemble needs at least two models in the index "
                             f"(have: {', '.join(index.models)})")


@dataclass
class _Scored:
    """Everything one request computes before picking the list."""

    score: np.ndarray
    sim: np.ndarray
    match: np.ndarray
    centre: np.ndarray | None
    shares: dict
    excluded: np.ndarray
    seed_rows: np.ndarray
    uploads: list
    X: np.ndarray
    S: np.ndarray
    SP: np.ndarray
    model: str
    w: float
    standardise: bool = False


def _score(index: CatalogIndex, seeds: Sequence[str], method: str, k: int, model: str | None,
           aggregate: str, distance: str, p: float, genre_weight: float, diversity: float,
           liked: Sequence[str], disliked: Sequence[str], seed_vectors, standardise: bool,
           variant: str, exclude_artists: Sequence[str]) -> _Scored:
    model = resolve_model(index, model)
    _check(method, model, aggregate, distance, k, genre_weight, diversity, p, index, variant)
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
    if len(exclude_artists):
        excluded |= artist_exclusions(index, exclude_artists)

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
        SP = np.vstack([SP] + [_seed_probs(index, sv, model)[None] for sv in uploads])
    match = _query_scores(P, SP, P[liked_rows], P[disliked_rows], aggregate, "cosine", p, clip=True)
    w = genre_weight if method == "genre" else 0.0
    centre, shares = None, {}
    if method == "genre" and variant == "centre":
        centre, shares = _centre_match(index, model, distance, standardise, p, X, SP, aggregate)
        score = (1.0 - w) * sim + w * centre
    else:
        score = (1.0 - w) * sim + w * match
    return _Scored(score, sim, match, centre, shares, excluded, seed_rows, uploads, X, S, SP, model, w,
                   standardise)


def recommend(index: CatalogIndex, seeds: Sequence[str], method: str = DEFAULTS.method,
              k: int = DEFAULTS.k, model: str | None = DEFAULTS.model,
              aggregate: str = DEFAULTS.aggregate, distance: str = DEFAULTS.distance,
              p: float = DEFAULTS.p, genre_weight: float = DEFAULTS.genre_weight,
              diversity: float = DEFAULTS.diversity, liked: Sequence[str] = (),
              disliked: Sequence[str] = (), seed_vectors: Sequence[SeedVector] | None = None,
              standardise: bool = DEFAULTS.standardise, variant: str = DEFAULTS.variant,
              exclude_artists: Sequence[str] = ()) -> list[Recommendation]:
    """Top-``k`` catalog tracks for 1–5 seeds (catalog ids and/or uploaded
    :class:`SeedVector`); see the module docstring for the exact scoring.
    ``exclude_artists``: never recommend tracks by these artists."""
    sc = _score(index, seeds, method, k, model, aggregate, distance, p, genre_weight, diversity,
                liked, disliked, seed_vectors, standardise, variant, exclude_artists)
    keys, digests = _song_keys(index), index.column("digest")
    score = sc.score
    pool = max(50, 10 * k) if diversity > 0 else k
    fetch = pool
    while True:
        # A few extra candidates in case some are copies of each other.
        order = search.top_k(score, fetch, exclude=np.flatnonzero(sc.excluded))
        chosen = _distinct(order, keys, digests, pool)
        if len(chosen) >= pool or len(order) < fetch:
            break
        fetch *= 2
    if diversity > 0 and len(chosen) > 1:
        chosen = _mmr(chosen, score, _space(index, sc.model, "cosine", standardise), diversity, k)
    chosen = chosen[:k]
    return _explain(index, chosen, sc, method, aggregate, distance, variant, p)


def rank_of(index: CatalogIndex, seeds: Sequence[str], track_ids: Sequence[str],
            **kwargs) -> dict[str, dict]:
    """Where ``track_ids`` stand under one request (same keyword arguments as
    :func:`recommend`): ``rank`` among every recommendable track (1 = first;
    ``None`` when excluded), ``score``, ``similarity``, ``genre_match``,
    ``centre_match``. Ignores copy removal and diversity re-ranking."""
    kw = {**DEFAULTS.to_dict(), **kwargs}
    args = {name: kw.get(name, default) for name, default in (
        ("liked", ()), ("disliked", ()), ("seed_vectors", None), ("exclude_artists", ()))}
    sc = _score(index, seeds, kw["method"], kw["k"], kw["model"], kw["aggregate"], kw["distance"],
                kw["p"], kw["genre_weight"], kw["diversity"], args["liked"], args["disliked"],
                args["seed_vectors"], kw["standardise"], kw["variant"], args["exclude_artists"])
    allowed = sc.score[~sc.excluded]
    out = {}
    for tid, row in zip(track_ids, index.rows_of(track_ids)):
        s = float(sc.score[row])
        out[str(tid)] = {
            "rank": None if sc.excluded[row] else int(np.sum(allowed > s)) + 1, "score": s,
            "similarity": float(sc.sim[row]), "genre_match": float(sc.match[row]),
            "centre_match": None if sc.centre is None else float(sc.centre[row])}
    return out


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


def _explain(index: CatalogIndex, rows: list[int], sc: _Scored, method: str, aggregate: str,
             distance: str, variant: str, p: float = 3) -> list[Recommendation]:
    model, score, sim, match, w = sc.model, sc.score, sc.sim, sc.match, sc.w
    labels = _labels(index, model)
    P = _genre_probs(index, model)
    seed_genre = labels[int(np.argmax(sc.SP.mean(0)))]
    names = [str(index.column("title")[r]) or str(index.column("track_id")[r]) for r in sc.seed_rows]
    names += [sv.name for sv in sc.uploads]
    X = sc.X[rows]
    if distance == "cosine":
        nearest = np.argmax(search.normalise(sc.S) @ X.T, axis=0) if len(rows) else []
    else:
        pp = 2.0 if distance == "euclidean" else float(p)
        nearest = np.argmin([_minkowski(X, s, pp) for s in sc.S], axis=0) if len(rows) else []
    centres = genre_centres(index, model, distance, sc.standardise, p) if sc.centre is not None else {}
    titles = index.column("title")
    centre_text = ", ".join(
        f"{g} {sc.shares[g]:.0%} → {titles[centres[g].row] or centres[g].track_id}"
        for g in sc.shares if g in centres)
    out = []
    for rank, (i, near_j) in enumerate(zip(rows, nearest), 1):
        pred = labels[int(np.argmax(P[i]))]
        near = names[int(near_j)]
        parts = [f"{distance} similarity {sim[i]:.2f} to the seeds ({model}, {aggregate} over seeds)",
                 f"closest seed: {near}",
                 (f"predicted {pred} like the seeds" if pred == seed_genre
                  else f"predicted {pred} (seeds: {seed_genre})") + f", genre match {match[i]:.2f}"]
        if method == "genre" and sc.centre is not None:
            parts.append(f"centre match {sc.centre[i]:.2f} (seed genres → centre points: {centre_text})")
            parts.append(f"score = {1 - w:.2f}*{sim[i]:.2f} + {w:.2f}*{sc.centre[i]:.2f}")
        elif method == "genre":
            parts.append(f"score = {1 - w:.2f}*{sim[i]:.2f} + {w:.2f}*{match[i]:.2f}")
        out.append(Recommendation(
            track_id=str(index.column("track_id")[i]), rank=rank, score=float(score[i]),
            similarity=float(sim[i]), genre_match=float(match[i]),
            genre=str(index.column("genre")[i]), predicted_genre=pred, reason="; ".join(parts),
            artist=str(index.column("artist")[i]), title=str(titles[i]),
            centre_match=None if sc.centre is None else float(sc.centre[i])))
    return out


# --------------------------------------------------------------------------- two lists


@dataclass
class ListDifference:
    """How two recommendation lists for the same seeds differ."""

    shared: list[str]                    # track ids in both lists (in list A's order)
    only: dict[str, list[dict]]          # "a" / "b" → per track: track_id, title, artist,
    #                                      rank (here), other_rank, why

    @property
    def n_shared(self) -> int:
        return len(self.shared)


def _component(r: dict, kw: dict) -> tuple[str, float]:
    """The term method 2 adds for a request (name, value)."""
    if kw.get("method") != "genre":
        return "", float("nan")
    if kw.get("variant", DEFAULTS.variant) == "centre" and r.get("centre_match") is not None:
        return "centre match", float(r["centre_match"])
    return "genre match", float(r["genre_match"])


def list_differences(index: CatalogIndex, seeds: Sequence[str], list_a: Sequence[Recommendation],
                     list_b: Sequence[Recommendation], kw_a: dict, kw_b: dict,
                     names: tuple[str, str] = ("method 1", "method 2")) -> ListDifference:
    """Which tracks only one list has and why: where the other request ranks
    them (:func:`rank_of`) and which score component separates them from the
    other list's last track."""
    ids_a, ids_b = [r.track_id for r in list_a], [r.track_id for r in list_b]
    shared = [t for t in ids_a if t in set(ids_b)]
    only: dict[str, list[dict]] = {"a": [], "b": []}
    for side, here, there, kw_here, kw_other, (me, other) in (
            ("a", list_a, list_b, kw_a, kw_b, names), ("b", list_b, list_a, kw_b, kw_a, names[::-1])):
        mine = [r for r in here if r.track_id not in set(shared)]
        if not mine:
            continue
        ranks = rank_of(index, seeds, [r.track_id for r in mine], **kw_other)
        last = there[-1] if there else None
        for r in mine:
            o = ranks[r.track_id]
            name_o, val_o = _component(o, kw_other)
            name_h, val_h = _component(o, kw_here)
            if o["rank"] is None:
                why = f"{other} may not recommend it"
            else:
                why = f"{other} ranks it #{o['rank']} (score {o['score']:.2f}"
                why += f" vs {last.score:.2f} for its #{last.rank})" if last else ")"
                if name_o:              # the other list is method 2: its genre term held it back
                    last_val = (last.centre_match if name_o == "centre match" else last.genre_match) \
                        if last else float("nan")
                    why += (f": {name_o} {val_o:.2f}" + (f" vs {last_val:.2f}" if last_val == last_val else "")
                            + f" (model hears {r.predicted_genre})")
                elif name_h:            # this list is method 2: the genre term lifted it
                    why += (f": sound similarity {o['similarity']:.2f}"
                            + (f" vs {last.similarity:.2f}" if last else "")
                            + f"; {me} lifts it with {name_h} {val_h:.2f}")
                else:
                    why += f": similarity {o['similarity']:.2f}"
            only[side].append({"track_id": r.track_id, "title": r.title, "artist": r.artist,
                               "rank": r.rank, "other_rank": o["rank"], "why": why})
    return ListDifference(shared, only)
