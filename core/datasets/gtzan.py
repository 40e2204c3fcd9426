"""GTZAN-style folders: ``<root>/<genre>/<file>`` (also ``genres_original/``)."""

from __future__ import annotations

from pathlib import Path

from core.audio.load import is_supported_name
from core.datasets.track import Track, assign_splits


def _genre_root(root: Path) -> Path:
    for sub in ("genres_original", "genres"):
        if (root / sub).is_dir():
            return root / sub
    return root


def genre_subfolders(root: Path) -> list[Path]:
    """The sub-folders (of ``root`` or its ``genres_original/``) that hold audio files directly."""
    base = _genre_root(Path(root))
    out = []
    for d in sorted(base.iterdir()):
        if d.name.startswith(".") or not d.is_dir():
            continue
        try:
            if any(is_supported_name(f.name) for f in d.iterdir()):
                out.append(d)
        except OSError:
            continue
    return out


def is_genre_folder(root: Path) -> bool:
    return bool(genre_subfolders(root))


def read_genre_folders(root: str | Path, seed: int = 0) -> list[Track]:
    """Every audio file under a genre-named sub-folder; 8:1:1 split by file."""
    root = Path(root)
    base = _genre_root(root)
    items = []
    for d in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(d.rglob("*")):
            if f.is_file() and is_supported_name(f.name):
                items.append((f"{d.name}/{f.stem}", f.resolve(), d.name))
    splits = assign_splits([i[0] for i in items], [i[0] for i in items],
                           [i[2] for i in items], seed=seed)
    return [Track(track_id=tid, path=p, genre=g, split=s, title=p.stem, source=root.name)
            for (tid, p, g), s in zip(items, splits)]
