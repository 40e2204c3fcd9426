"""An ordinary music library, as players and rippers leave it
(``Music/<Artist>/<Album>/<NN Title>.mp3``, or any nesting): every audio file
under the folder, unlabelled (``genre == ""``), with its own tags.

Artist, album and title come from the file's tags; where a file has none
(or broken ones), from its place in the tree: the first folder below the
root is the artist, the second the album, and the file name gives the track
number and title. The file's genre tag is kept as ``tag_genre`` (shown beside
the models' prediction), never as a label.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from core.audio.load import is_supported_name
from core.datasets.tags import read_tags, title_from_name
from core.datasets.track import Track

LIBRARY_SPLIT = "library"     # the split of unlabelled tracks (never train / val / test)


def audio_files(root: str | Path) -> Iterator[Path]:
    """Every supported audio file under ``root`` in sorted order; follows
    symbolic links (a linked ``audio`` folder counts) but never a loop;
    hidden files and folders are skipped."""
    root = Path(root)
    seen: set[str] = set()

    def walk(d: Path) -> Iterator[Path]:
        try:
            real = os.path.realpath(d)
        except OSError:
            return
        if real in seen:
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir():                 # follows symlinks
                    yield from walk(Path(e.path))
                elif e.is_file() and is_supported_name(e.name):
                    yield Path(e.path)
            except OSError:
                continue

    yield from walk(root)


def library_track(path: Path, root: Path, source: str) -> Track:
    """One file as an unlabelled :class:`Track` (tags, else its place in the tree)."""
    rel = path.relative_to(root)
    tags = read_tags(path)
    number, name_title = title_from_name(path.stem)
    parents = rel.parts[:-1]
    return Track(track_id=f"{source}/{rel.as_posix()}", path=path.absolute(), genre="",
                 split=LIBRARY_SPLIT,
                 artist=tags.artist or (parents[0] if parents else ""),
                 title=tags.title or name_title,
                 album=tags.album or (parents[1] if len(parents) > 1 else ""),
                 source=source, tag_genre=tags.genre, year=tags.year,
                 track_no=tags.track_no or number, duration=tags.duration)


def read_library(root: str | Path) -> list[Track]:
    """Every audio file under ``root`` as an unlabelled track (see the module docstring)."""
    root = Path(root)
    return [library_track(p, root, root.name) for p in audio_files(root)]
