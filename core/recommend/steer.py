"""Steering a recommendation list by what the music feels like.

:func:`steered` re-ranks either method's list (method 1 or 2, any option of
:func:`~core.recommend.methods.recommend`) by the index's facets
(:mod:`core.facets`):

* ``mood="like"`` — closer in (arousal, valence) to the seeds' mean;
* ``mood="calmer"`` / ``"energetic"`` — lower / higher arousal than the seeds;
* ``tempo=(lo, hi)`` — only tracks whose tempo (BPM) is in the range (a
  track whose tempo was not measured is left out).

The new score is ``score + weight · facet term`` (the terms are in [−1, 1]);
the base ranking covers the whole catalog (one vectorised pass), so steering
can bring up tracks that were not in the unsteered top k. Copies of a song are
removed in the unsteered order (as :func:`~core.recommend.methods.recommend`
does), lazily: only as far down as the steered top k reaches; only the ``k``
tracks of the answer are explained.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from core.catalog.index import CatalogIndex, IndexSnapshot
from core.recommend import search
from core.recommend.dedupe import kept_flags
from core.recommend.methods import Recommendation, explain, recommend, scored
from core.recommend.request import RecommendError

MOODS = ("like", "calmer", "energetic")


@dataclass(frozen=True)
class Steer:
    """How to steer a list: a mood direction, a tempo range, and the weight of the mood term."""

    mood: str | None = None
    tempo: tuple[float, float] | None = None
    weight: float = 0.5

    def __post_init__(self):
        if self.mood is not None and self.mood not in MOODS:
            raise RecommendError(f"unknown mood {self.mood!r}; choose one of {', '.join(MOODS)}")
        if self.tempo is not None and not (0 <= self.tempo[0] <= self.tempo[1]):
            raise RecommendError(f"tempo range must be MIN:MAX with 0 ≤ MIN ≤ MAX, not {self.tempo}")

    @property
    def active(self) -> bool:
        return self.mood is not None or self.tempo is not None


def parse_tempo(text: str) -> tuple[float, float]:
    """``"90:120"`` → ``(90.0, 120.0)``; anything else is a :class:`RecommendError`."""
    try:
        lo, hi = (float(x) for x in text.split(":"))
    except ValueError:
        raise RecommendError(f"tempo must be MIN:MAX in BPM (e.g. 90:120), not {text!r}") from None
    Steer(tempo=(lo, hi))
    return lo, hi


def mood_terms(arousal: np.ndarray, valence: np.ndarray, seed_rows: Sequence[int], mood: str) -> np.ndarray:
    """Per catalog row, the mood term in [−1, 1] for ``mood`` relative to the
    seeds' mean arousal / valence (NaN facets give 0: no push either way)."""
    a0, v0 = np.nanmean(arousal[list(seed_rows)]), np.nanmean(valence[list(seed_rows)])
    if mood == "like":
        t = 1.0 - np.hypot(arousal - a0, valence - v0) / np.sqrt(2.0)
    elif mood == "calmer":
        t = a0 - arousal
    else:
        t = arousal - a0
    return np.nan_to_num(np.clip(t, -1.0, 1.0), nan=0.0)


def steered(index: CatalogIndex | IndexSnapshot, seeds: Sequence[str], steer: Steer, k: int = 5,
            **kw) -> list[Recommendation]:
    """``recommend(index, seeds, k=k, **kw)`` re-ranked by ``steer`` (unchanged when it is inactive)."""
    snap = index.snapshot()
    if not steer.active:
        return recommend(snap, seeds, k=k, **kw)
    if not len(seeds):
        raise RecommendError("steering needs catalog seeds (their mood is the reference)")
    sc = scored(snap, seeds, **{**kw, "k": len(snap), "diversity": 0.0})
    # Every recommendable row, best first by the unsteered score (ties: as recommend(k=len(snap)) orders them).
    order = search.top_k(sc.score, len(snap), exclude=np.flatnonzero(sc.excluded))
    score = sc.score[order].astype(float)
    ok = np.ones(len(order), bool)
    if steer.tempo is not None:
        bpm = snap.column("tempo_bpm").astype(float)[order]
        ok &= (bpm >= steer.tempo[0]) & (bpm <= steer.tempo[1])
    if steer.mood is not None:
        arousal, valence = snap.column("arousal").astype(float), snap.column("valence").astype(float)
        if not np.isfinite(arousal).any():
            raise RecommendError("this index has no mood facets (re-index with the MSD models)")
        score = score + steer.weight * mood_terms(arousal, valence, snap.rows_of(seeds), steer.mood)[order]
    cand = np.flatnonzero(ok)
    cand = cand[np.argsort(-score[cand], kind="stable")]          # ties keep the unsteered order
    # Copies are removed in the unsteered order (the first copy stays), only as far as the answer needs.
    flags, kept, picked = kept_flags(order, sc.views.song_keys(), snap.column("digest")), [], []
    for pos in cand:
        while len(kept) <= pos:
            kept.append(next(flags))
        if kept[pos]:
            picked.append(int(pos))
            if len(picked) == k:
                break
    why = []
    if steer.mood:
        why.append(f"{steer.mood} mood")
    if steer.tempo:
        why.append(f"tempo {steer.tempo[0]:g}–{steer.tempo[1]:g} BPM")
    return [replace(rec, rank=r + 1, score=float(score[pos]), reason=f"{rec.reason}; steered: {', '.join(why)}")
            for r, (pos, rec) in enumerate(zip(picked, explain(snap, order[picked].tolist(), sc)))]
