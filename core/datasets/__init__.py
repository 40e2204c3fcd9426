"""Data-set readers. Every layout becomes a list of :class:`Track`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from core.datasets.fma import PAPER_GENRES, is_fma_folder, read_fma
from core.datasets.folder import is_metadata_folder, read_metadata_folder
from core.datasets.gtzan import read_genre_folders
from core.datasets.layout import LAYOUTS, LayoutError, check_layout, detect_layout, model_genres
from core.datasets.library import read_library
from core.datasets.track import Track, assign_splits


def read_dataset(root: str | Path, layout: str = "auto",
                 known_genres: Iterable[str] | None = None) -> list[Track]:
    """Read one folder as ``layout`` (one of :data:`LAYOUTS`; ``auto`` detects
    it, see :mod:`core.datasets.layout`). A ``library`` gives unlabelled
    tracks (``genre == ""``) with their tags; a folder with no audio at all
    is a :class:`LayoutError`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: is a file, not a folder" if root.is_file() else f"{root}: folder not found")
    layout = check_layout(layout)
    if layout == "auto":
        layout = detect_layout(root, known_genres)
    if layout == "metadata":
        if not is_metadata_folder(root):
            raise LayoutError(f"{root}: no metadata.csv")
        return read_metadata_folder(root)
    if layout == "fma":
        if not is_fma_folder(root):
            raise LayoutError(f"{root}: no fma_metadata/tracks.csv")
        return read_fma(root)
    if layout == "genres":     # as told: every sub-folder is a genre, its files anywhere below it
        tracks = read_genre_folders(root)
        if not tracks:
            raise LayoutError(f"{root}: no sub-folder with audio files")
        return tracks
    tracks = read_library(root)
    if not tracks:
        raise LayoutError(f"{root}: no audio files found (no metadata.csv, FMA layout or music files)")
    return tracks


def read_datasets(roots: Iterable[str | Path], layout: str = "auto",
                  labelled_only: bool = False) -> list[Track]:
    """Read and combine several data folders; track ids must stay unique.
    ``labelled_only``: drop unlabelled tracks (what metrics and training need;
    :func:`labelled` splits a list the same way and counts)."""
    tracks: list[Track] = []
    seen: set[str] = set()
    left_out = 0
    for r in roots:
        for t in read_dataset(r, layout):
            if t.track_id in seen:
                continue
            if labelled_only and not t.labelled:
                left_out += 1
                continue
            seen.add(t.track_id)
            tracks.append(t)
    if left_out:   # said once, on stderr through logging (the CLI prints it)
        logging.getLogger("core.datasets").warning(
            "%d unlabelled track(s) left out: metrics, evaluation and training use labelled tracks only",
            left_out)
    return tracks


def labelled(tracks: Iterable[Track]) -> tuple[list[Track], int]:
    """The tracks with a true genre label, and how many had none (left out of
    anything that needs a label: metrics, offline evaluation, training)."""
    tracks = list(tracks)
    keep = [t for t in tracks if t.labelled]
    return keep, len(tracks) - len(keep)


def genres_of(tracks: Iterable[Track]) -> list[str]:
    """Sorted genre labels present in ``tracks`` (the model's label list;
    unlabelled tracks add none)."""
    return sorted({t.genre for t in tracks if t.genre})


__all__ = ["LAYOUTS", "PAPER_GENRES", "LayoutError", "Track", "assign_splits", "detect_layout",
           "genres_of", "labelled", "model_genres", "read_dataset", "read_datasets", "read_fma",
           "read_genre_folders", "read_library", "read_metadata_folder"]
