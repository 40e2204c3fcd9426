"""The record every data-set reader produces."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Track:
    """One audio file: labelled (``genre`` from the data set's metadata or
    folder) or, in an ordinary music library, unlabelled (``genre == ""``).

    ``tag_genre`` is the file's own genre tag: shown beside the models'
    prediction, never used as a label. ``year`` and ``track_no`` are text as
    tagged (``""`` when absent); ``duration`` is in seconds (0 when unknown).
    """

    track_id: str
    path: Path
    genre: str
    split: str = "train"      # train | val | test
    artist: str = ""
    title: str = ""
    album: str = ""
    source: str = ""          # collection the track comes from (per-source metrics)
    tag_genre: str = ""       # the file's genre tag (never a training label)
    year: str = ""
    track_no: str = ""
    duration: float = 0.0

    @property
    def labelled(self) -> bool:
        """Whether the track has a true genre label (metrics need one)."""
        return bool(self.genre)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def assign_splits(keys: list[str], groups: list[str], genres: list[str],
                  ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
                  seed: int = 0) -> list[str]:
    """Deterministic 8:1:1 split, group-aware (an artist never straddles splits)
    and stratified by genre as far as the groups allow."""
    import numpy as np

    rng = np.random.default_rng(seed)
    by_genre: dict[str, list[str]] = {}
    group_genre: dict[str, str] = {}
    for g, genre in zip(groups, genres):
        if g not in group_genre:
            group_genre[g] = genre
            by_genre.setdefault(genre, []).append(g)
    split_of: dict[str, str] = {}
    for genre in sorted(by_genre):
        gs = sorted(by_genre[genre])
        rng.shuffle(gs)
        n = len(gs)
        n_test = max(1, round(n * ratios[2])) if n >= 3 else 0
        n_val = max(1, round(n * ratios[1])) if n >= 3 else 0
        for i, g in enumerate(gs):
            split_of[g] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return [split_of[g] for g in groups]
