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
(:data:`~core.recommend.request.DEFAULTS`, a
:class:`~core.recommend.request.RecommendConfig`) are the ones chosen on
validation data by ``python -m core recommend-eval --select-on val``.

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
* ``liked`` / ``disliked``: relevance feedback (Rocchio 1971,
  :mod:`core.recommend.feedback`) moves the query:
  ``q = mean(seeds) + 0.75·mean(liked) − 0.25·mean(disliked)`` (for both the
  embedding and the genre query, the latter clipped at 0); with
  ``aggregate="max"`` liked tracks join the seeds and ``0.25·`` the largest
  similarity to a disliked track is subtracted.

Catalogs above :data:`core.recommend.scoring.APPROX_ABOVE` tracks (200k) take cosine candidates from
:class:`core.recommend.search.VectorIndex` (approximate) and score those exactly.

Where the parts live: the request's settings, seeds and checks in
:mod:`core.recommend.request`; scoring spaces and every other value derived
from one index snapshot in :mod:`core.recommend.views`; the scores in
:mod:`core.recommend.scoring`; centre points in :mod:`core.recommend.centres`;
copies and diversity in :mod:`core.recommend.dedupe`. This module is the
public face: :func:`recommend`, :func:`rank_of`, :func:`list_differences`.

Never recommended: the seeds, liked or disliked tracks, anything with the
same content hash or the same normalised artist + title as a seed (the same
song indexed twice), a second copy of a track already in the list, and
(``exclude_artists``) any track by the given artists (leave-artist-out).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Sequence

import numpy as np

from core.catalog.index import CatalogIndex
from core.catalog.snapshot import IndexSnapshot
from core.recommend import search
from core.recommend.centres import CentrePoint
from core.recommend.dedupe import distinct, mmr, song_key
from core.recommend.feedback import order_of
from core.recommend.request import (
    AGGREGATES,
    DEFAULTS,
    DISTANCES,
    ENSEMBLE,
    EVAL_ARTIFACT,
    MAX_SEEDS,
    METHODS,
    PREFERRED_MODEL,
    VARIANTS,
    RecommendConfig,
    RecommendError,
    SeedVector,
    model_choices,
    resolve_model,
)
from core.recommend.scoring import Scored, artist_exclusions, score, seed_exclusions
from core.recommend.views import views_of

# The recommender's public names (pages and the CLI import them from here).
__all__ = ["AGGREGATES", "DEFAULTS", "DISTANCES", "ENSEMBLE", "EVAL_ARTIFACT", "MAX_SEEDS",
           "METHODS", "PREFERRED_MODEL", "VARIANTS", "CentrePoint", "ListDifference", "Recommendation",
           "RecommendConfig", "RecommendError", "SeedVector", "artist_exclusions", "genre_centres",
           "list_differences", "model_choices", "rank_of", "recommend", "resolve_model", "seed_exclusions",
           "song_key"]
_CONFIG_FIELDS = tuple(f.name for f in fields(RecommendConfig))


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


def genre_centres(index: CatalogIndex | IndexSnapshot, model: str | None = None, distance: str = "cosine",
                  standardise: bool = False, p: float = 3.0) -> dict[str, CentrePoint]:
    """Each genre's centre-point song in ``model``'s space: among the tracks
    the classifier predicts as that genre, the confident half (``p_g`` at or
    above the group's median; a genre predicted for fewer than
    ``CENTRE_MIN_TRACKS`` tracks takes the ``CENTRE_MIN_TRACKS`` with
    the highest ``p_g``), the track nearest to their mean embedding."""
    snap = index.snapshot()
    return views_of(snap).centres(resolve_model(snap, model), distance, standardise, p)


def _config(snap: IndexSnapshot, **settings) -> RecommendConfig:
    """The request's settings (other keys ignored) with the model resolved."""
    given = {k: v for k, v in settings.items() if k in _CONFIG_FIELDS}
    given["model"] = resolve_model(snap, given.get("model", DEFAULTS.model))
    return RecommendConfig(**given)


def scored(index: CatalogIndex | IndexSnapshot, seeds: Sequence[str], **kwargs) -> Scored:
    """Every row's scores for one request (keyword arguments as :func:`recommend`)."""
    snap = index.snapshot()
    return score(snap, _config(snap, **kwargs), seeds, kwargs.get("liked", ()), kwargs.get("disliked", ()),
                 kwargs.get("seed_vectors"), kwargs.get("exclude_artists", ()))


def recommend(index: CatalogIndex | IndexSnapshot, seeds: Sequence[str], method: str = DEFAULTS.method,
              k: int = DEFAULTS.k, model: str | None = DEFAULTS.model,
              aggregate: str = DEFAULTS.aggregate, distance: str = DEFAULTS.distance,
              p: float = DEFAULTS.p, genre_weight: float = DEFAULTS.genre_weight,
              diversity: float = DEFAULTS.diversity, liked: Sequence[str] = (),
              disliked: Sequence[str] = (), seed_vectors: Sequence[SeedVector] | None = None,
              standardise: bool = DEFAULTS.standardise, variant: str = DEFAULTS.variant,
              exclude_artists: Sequence[str] = (), confidence: str = DEFAULTS.confidence) -> list[Recommendation]:
    """Top-``k`` catalog tracks for 1–5 seeds (catalog ids and/or uploaded
    :class:`SeedVector`); see the module docstring for the exact scoring.
    ``exclude_artists``: never recommend tracks by these artists. Every row
    of the answer comes from one snapshot of ``index``, taken once here."""
    snap = index.snapshot()
    sc = scored(snap, seeds, method=method, k=k, model=model, aggregate=aggregate, distance=distance, p=p,
                genre_weight=genre_weight, diversity=diversity, liked=liked, disliked=disliked,
                seed_vectors=seed_vectors, standardise=standardise, variant=variant,
                exclude_artists=exclude_artists, confidence=confidence)
    keys, digests = sc.views.song_keys(), snap.column("digest")
    pool = max(50, 10 * k) if diversity > 0 else k
    fetch = pool
    while True:
        # A few extra candidates in case some are copies of each other.
        order = search.top_k(sc.score, fetch, exclude=np.flatnonzero(sc.excluded))
        chosen = distinct(order, keys, digests, pool)
        if len(chosen) >= pool or len(order) < fetch:
            break
        fetch *= 2
    if diversity > 0 and len(chosen) > 1:
        chosen = mmr(chosen, sc.score, sc.views.space(sc.cfg.model, "cosine", standardise), diversity, k)
    return explain(snap, chosen[:k], sc)


def rank_of(index: CatalogIndex | IndexSnapshot, seeds: Sequence[str], track_ids: Sequence[str],
            **kwargs) -> dict[str, dict]:
    """Where ``track_ids`` stand under one request (same keyword arguments as
    :func:`recommend`): ``rank`` among every recommendable track (1 = first;
    ``None`` when excluded), ``score``, ``similarity``, ``genre_match``,
    ``centre_match``. Ignores copy removal and diversity re-ranking."""
    snap = index.snapshot()
    sc = scored(snap, seeds, **kwargs)
    allowed = sc.score[~sc.excluded]
    out = {}
    for tid, row in zip(track_ids, snap.rows_of(track_ids)):
        s = float(sc.score[row])
        out[str(tid)] = {
            "rank": None if sc.excluded[row] else int(np.sum(allowed > s)) + 1, "score": s,
            "similarity": float(sc.sim[row]), "genre_match": float(sc.match[row]),
            "centre_match": None if sc.centre is None else float(sc.centre[row])}
    return out


def explain(snap: IndexSnapshot, rows: Sequence[int], sc: Scored) -> list[Recommendation]:
    """One :class:`Recommendation` per row of ``rows`` (ranked 1, 2, … in that
    order) with its scores from ``sc`` and the reason in words."""
    cfg, views = sc.cfg, sc.views
    model, sim, match, w = cfg.model, sc.sim, sc.match, sc.w
    labels = views.labels(model)
    P = views.genre_probs(model)
    seed_genre = labels[int(np.argmax(sc.SP.mean(0)))]
    titles, ids = snap.column("title"), snap.column("track_id")
    names = [str(titles[r]) or str(ids[r]) for r in sc.seed_rows] + [sv.name for sv in sc.uploads]
    X = sc.X[rows]
    if cfg.distance == "cosine":
        nearest = np.argmax(search.normalise(sc.S) @ X.T, axis=0) if len(rows) else []
    else:
        pp = order_of(cfg.distance, cfg.p)
        nearest = np.argmin([search.minkowski(X, s, pp) for s in sc.S], axis=0) if len(rows) else []
    centres = views.centres(model, cfg.distance, cfg.standardise, cfg.p) if sc.centre is not None else {}
    centre_text = ", ".join(
        f"{g} {sc.shares[g]:.0%} → {titles[centres[g].row] or centres[g].track_id}"
        for g in sc.shares if g in centres)
    out = []
    for rank, (i, near_j) in enumerate(zip(rows, nearest), 1):
        pred = labels[int(np.argmax(P[i]))]
        parts = [f"{cfg.distance} similarity {sim[i]:.2f} to the seeds ({model}, {cfg.aggregate} over seeds)",
                 f"closest seed: {names[int(near_j)]}",
                 (f"predicted {pred} like the seeds" if pred == seed_genre
                  else f"predicted {pred} (seeds: {seed_genre})") + f", genre match {match[i]:.2f}"]
        sure = "" if sc.q is None else f"*{sc.q[i]:.2f} (how sure of its genre)"
        if cfg.method == "genre" and sc.centre is not None:
            parts.append(f"centre match {sc.centre[i]:.2f} (seed genres → centre points: {centre_text})")
            parts.append(f"score = {1 - w:.2f}*{sim[i]:.2f} + {w:.2f}*{sc.centre[i]:.2f}{sure}")
        elif cfg.method == "genre":
            parts.append(f"score = {1 - w:.2f}*{sim[i]:.2f} + {w:.2f}*{match[i]:.2f}{sure}")
        out.append(Recommendation(
            track_id=str(ids[i]), rank=rank, score=float(sc.score[i]),
            similarity=float(sim[i]), genre_match=float(match[i]),
            genre=str(snap.column("genre")[i]), predicted_genre=pred, reason="; ".join(parts),
            artist=str(snap.column("artist")[i]), title=str(titles[i]),
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


def list_differences(index: CatalogIndex | IndexSnapshot, seeds: Sequence[str], list_a: Sequence[Recommendation],
                     list_b: Sequence[Recommendation], kw_a: dict, kw_b: dict,
                     names: tuple[str, str] = ("method 1", "method 2")) -> ListDifference:
    """Which tracks only one list has and why: where the other request ranks
    them (:func:`rank_of`) and which score component separates them from the
    other list's last track."""
    snap = index.snapshot()            # both rankings on one snapshot
    ids_a, ids_b = [r.track_id for r in list_a], [r.track_id for r in list_b]
    shared = [t for t in ids_a if t in set(ids_b)]
    only: dict[str, list[dict]] = {"a": [], "b": []}
    for side, here, there, kw_here, kw_other, (me, other) in (
            ("a", list_a, list_b, kw_a, kw_b, names), ("b", list_b, list_a, kw_b, kw_a, names[::-1])):
        mine = [r for r in here if r.track_id not in set(shared)]
        if not mine:
            continue
        ranks = rank_of(snap, seeds, [r.track_id for r in mine], **kw_other)
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
