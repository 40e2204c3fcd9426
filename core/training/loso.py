"""Leave-one-source-out (LOSO) folds: generalisation to an unseen source is
what choices are made on.

The shared data has several sources (one per data folder, ``Track.source``)
and genre and source are partly confounded, so the in-source val split
flatters whatever learns the source. A LOSO fold trains on the non-test
tracks of every source but one and validates on the held-out source's
non-test tracks. The test split is never part of any fold: no choice made on
folds sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.datasets.track import Track
from core.errors import GenreError

TEST_SPLIT = "test"


class LOSOError(GenreError, ValueError):
    """The tracks cannot make leave-one-source-out folds."""


@dataclass(frozen=True)
class Fold:
    """One fold: indices into the track list it was made from.

    ``train``: non-test tracks of every source except ``held_out``;
    ``val``: non-test tracks of ``held_out``. Both are sorted int arrays.
    """

    held_out: str
    train: np.ndarray
    val: np.ndarray

    def to_dict(self) -> dict:
        return {"held_out": self.held_out, "n_train": int(len(self.train)), "n_val": int(len(self.val))}


def track_source(track: Track) -> str:
    """The source a track belongs to (its data folder's name; ``""`` if unknown)."""
    return track.source


def loso_folds(tracks: Sequence[Track], test_split: str = TEST_SPLIT,
               min_sources: int = 2) -> list[Fold]:
    """One :class:`Fold` per source (sorted by name) over ``tracks``.

    Tracks whose ``split`` is ``test_split`` are in no fold. Raises
    :class:`LOSOError` with fewer than ``min_sources`` sources among the
    non-test tracks, or when a track has no source.
    """
    sources = np.array([track_source(t) for t in tracks], dtype=object)
    usable = np.array([t.split != test_split for t in tracks], dtype=bool)
    if (sources[usable] == "").any():
        raise LOSOError("a track has no source; LOSO needs every track's source")
    names = sorted(set(sources[usable].tolist()))
    if len(names) < min_sources:
        raise LOSOError(f"leave-one-source-out needs ≥ {min_sources} sources, got {len(names)}")
    folds = []
    for s in names:
        val = np.flatnonzero(usable & (sources == s))
        train = np.flatnonzero(usable & (sources != s))
        folds.append(Fold(held_out=s, train=train, val=val))
    return folds
