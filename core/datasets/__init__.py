"""Data-set readers. Every layout becomes a list of :class:`Track`."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from core.datasets.fma import PAPER_GENRES, is_fma_folder, read_fma
from core.datasets.folder import is_metadata_folder, read_metadata_folder
from core.datasets.gtzan import is_genre_folder, read_genre_folders
from core.datasets.track import Track, assign_splits


def read_dataset(root: str | Path) -> list[Track]:
    """Read one data folder, detecting its layout (metadata.csv, FMA, genre folders)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    if is_metadata_folder(root):
        return read_metadata_folder(root)
    if is_fma_folder(root):
        return read_fma(root)
    if is_genre_folder(root):
        return read_genre_folders(root)
    raise ValueError(f"{root}: no metadata.csv, fma_metadata/tracks.csv or genre sub-folders found")


def read_datasets(roots: Iterable[str | Path]) -> list[Track]:
    """Read and combine several data folders; track ids must stay unique."""
    tracks: list[Track] = []
    seen: set[str] = set()
    for r in roots:
        for t in read_dataset(r):
            if t.track_id in seen:
                continue
            seen.add(t.track_id)
            tracks.append(t)
    return tracks


def genres_of(tracks: Iterable[Track]) -> list[str]:
    """Sorted genre labels present in ``tracks`` (the model's label list)."""
    return sorted({t.genre for t in tracks})


__all__ = ["PAPER_GENRES", "Track", "assign_splits", "genres_of", "read_dataset",
           "read_datasets", "read_fma", "read_genre_folders", "read_metadata_folder"]
