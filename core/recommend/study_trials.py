"""Listening study design: the blind, shuffled trial list of one participant.

Adiyansjah et al. (2019) asked listeners to rate recommendations only, so
every song they heard was "a recommendation" and liking was inflated. Here a
participant picks seed songs, then hears one shuffled list that mixes
method 1 picks (cosine only), method 2 picks (cosine + genre) and random
decoys from the catalog, without being told which is which. This module
builds that list (pure: nothing stored); :mod:`core.recommend.study` keeps it
and the answers, :mod:`core.recommend.study_stats` tests them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from core.errors import GenreError
from core.recommend.request import DEFAULTS, MAX_SEEDS

METHOD1, METHOD2, DECOY = "method1", "method2", "decoy"
METHODS = (METHOD1, METHOD2, DECOY)
METHOD_LABELS = {METHOD1: "Method 1 (cosine)", METHOD2: "Method 2 (cosine + genre)",
                 DECOY: "Random decoy"}
# The paper's protocol: five seed songs (the recommender's limit), five songs per list.
N_SEEDS = MAX_SEEDS
K_PER_METHOD = DEFAULTS.k


class StudyError(GenreError, ValueError):
    """Bad study input or an unusable database; ``str(err)`` is one line."""


# --------------------------------------------------------------------------- trials


@dataclass(frozen=True)
class Trial:
    """One track of a participant's list, with where it came from (never shown)."""

    participant: str
    position: int                    # order in the shuffled list, from 0
    track_id: str
    ranks: dict[str, int]            # method → rank in that method's list (from 1)

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(m for m in METHODS if m in self.ranks)


@dataclass(frozen=True)
class BlindTrial:
    """What the app may show: the track and the current answer, not the method."""

    position: int
    track_id: str
    liked: bool | None = None        # None until answered


def build_trials(participant: str, seeds: Sequence[str], method1_ids: Sequence[str],
                 method2_ids: Sequence[str], decoy_ids: Sequence[str],
                 rng: np.random.Generator | int | None = None,
                 n_decoys: int | None = None) -> list[Trial]:
    """The blind, shuffled trial list of one participant (pure; nothing stored).

    Seeds are dropped from every list and duplicates within a list keep their
    first rank. A track both methods recommend is one trial counted for both.
    ``n_decoys`` (default: the longer recommendation list's length) decoys are
    drawn at random from ``decoy_ids`` after removing seeds and recommended
    tracks; fewer if not enough remain.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    seed_set = {str(s) for s in seeds}
    ranks: dict[str, dict[str, int]] = {}
    for method, ids in ((METHOD1, method1_ids), (METHOD2, method2_ids)):
        rank = 0
        for tid in map(str, ids):
            if tid in seed_set or method in ranks.get(tid, {}):
                continue
            rank += 1
            ranks.setdefault(tid, {})[method] = rank
        if rank == 0:
            raise StudyError(f"{METHOD_LABELS[method]} gave no tracks besides the seeds")
    pool = list(dict.fromkeys(str(t) for t in decoy_ids if str(t) not in seed_set
                              and str(t) not in ranks))
    want = n_decoys if n_decoys is not None else max(
        sum(METHOD1 in r for r in ranks.values()), sum(METHOD2 in r for r in ranks.values()))
    if want < 0:
        raise StudyError(f"n_decoys must be >= 0, not {want}")
    chosen = [pool[i] for i in rng.permutation(len(pool))[:want]] if pool else []
    for k, tid in enumerate(chosen, start=1):
        ranks[tid] = {DECOY: k}
    order = list(ranks)
    shuffled = [order[i] for i in rng.permutation(len(order))]
    return [Trial(participant, pos, tid, dict(ranks[tid])) for pos, tid in enumerate(shuffled)]

