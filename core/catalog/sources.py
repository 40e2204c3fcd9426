"""Which music the app knows about: the configured data folders plus the
upload library.

The folder list comes from a settings field (in the app) that starts out as
``$GENRE_DATA`` (``os.pathsep``-separated; an empty value means "no data
folders") or, without it, the folders under ``../shared/data``. Uploaded
tracks live in one library folder (``$GENRE_LIBRARY``, default ``./library``).
No Streamlit here: the app and the tests call these functions directly.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from core.audio.load import is_supported_name
from core.config import Paths, shared_data_dirs
from core.datasets import Track, read_dataset
from core.datasets.tags import read_tags

LIBRARY_SOURCE = "library"
DATA_ENV = "GENRE_DATA"


def default_data_setting(env: Mapping[str, str] | None = None) -> str:
    """Initial text of the data-folders settings field.

    ``$GENRE_DATA`` when set (even to "" — that explicitly means no folders,
    which the stock :func:`core.config.shared_data_dirs` cannot express),
    otherwise the ``../shared/data`` sets that exist.
    """
    env = os.environ if env is None else env
    if DATA_ENV in env:
        return env[DATA_ENV]
    return os.pathsep.join(str(p) for p in shared_data_dirs())


def parse_data_setting(text: str | None) -> list[Path]:
    """Folders named in a settings string: separated by ``os.pathsep``,
    newlines or commas; blanks dropped, ``~`` expanded, order kept, no duplicates."""
    out: list[Path] = []
    for part in re.split(rf"[\n,{re.escape(os.pathsep)}]", text or ""):
        part = part.strip().strip('"').strip("'")
        if not part:
            continue
        p = Path(part).expanduser()
        if p not in out:
            out.append(p)
    return out


@dataclass(frozen=True)
class Catalog:
    """Tracks of the configured folders plus the library, and what went wrong.
    Immutable (tuples), so the app shares one object between every session."""

    data_dirs: tuple[Path, ...]
    library_dir: Path
    tracks: tuple[Track, ...] = ()      # from the data folders
    library: tuple[Track, ...] = ()     # uploaded files
    problems: tuple[str, ...] = ()      # one line per unusable folder
    signature: tuple = ()   # catalog_signature of the folders when they were read

    def __post_init__(self):
        for name in ("data_dirs", "tracks", "library", "problems"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def all_tracks(self) -> list[Track]:
        return list(self.tracks + self.library)

    def __len__(self) -> int:
        return len(self.tracks) + len(self.library)


def library_tracks(library_dir: str | Path) -> list[Track]:
    """Every supported audio file in the library folder (genre unknown: "")."""
    root = Path(library_dir)
    if not root.is_dir():
        return []
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_supported_name(p.name)
                   and not p.name.startswith("."))
    out = []
    for p in files:
        tags = read_tags(p)
        out.append(Track(track_id=f"{LIBRARY_SOURCE}/{p.relative_to(root).as_posix()}", path=p.resolve(),
                         genre="", split="library", title=tags.title or p.stem.replace("_", " "),
                         artist=tags.artist, album=tags.album, source=LIBRARY_SOURCE,
                         tag_genre=tags.genre, year=tags.year, track_no=tags.track_no,
                         duration=tags.duration))
    return out


def read_catalog(data_dirs: Iterable[str | Path], library_dir: str | Path | None = None,
                 layout: str = "auto") -> Catalog:
    """Read every data folder as ``layout`` (``auto``: detected per folder, see
    :mod:`core.datasets.layout`), skipping unusable ones with a message, and
    the library. A music library's tracks are unlabelled (``genre == ""``).

    Track ids stay unique: a repeat id from a later folder is dropped, as in
    :func:`core.datasets.read_datasets`.
    """
    dirs = [Path(d) for d in data_dirs]
    lib = Path(library_dir) if library_dir is not None else Paths().library
    # Taken before reading, so a change made while reading shows as a new signature.
    signature = catalog_signature(dirs, lib) + (layout,)
    tracks: list[Track] = []
    problems: list[str] = []
    seen: set[str] = set()
    for d in dirs:
        try:
            found = read_dataset(d, layout)
        except (ValueError, OSError) as exc:     # not found, a file, no audio, a layout that does not fit…
            msg = " ".join(str(exc).split())
            problems.append(msg if msg.startswith(str(d)) else f"{d}: {msg}")
            continue
        if not found:
            problems.append(f"{d}: no audio files found")
        for t in found:
            if t.track_id not in seen:
                seen.add(t.track_id)
                tracks.append(t)
    return Catalog(data_dirs=tuple(dirs), library_dir=lib, tracks=tuple(tracks), library=tuple(library_tracks(lib)),
                   problems=tuple(problems), signature=signature)


def catalog_signature(data_dirs: Iterable[str | Path], library_dir: str | Path) -> tuple:
    """Cheap fingerprint that changes when a folder's metadata or the library
    changes (modification times), so cached catalog reads know to refresh."""
    def stamp(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:
            return -1.0

    def below(d: Path, depth: int) -> tuple:
        """Modification times of the folders ``depth`` levels below ``d`` (a
        music library's Artist/Album folders change when a track is added)."""
        if depth == 0 or (d / "metadata.csv").exists():
            return ()
        try:
            subs = sorted(e.path for e in os.scandir(d) if e.is_dir() and not e.name.startswith("."))
        except OSError:
            return ()
        return tuple((p, stamp(Path(p)), below(Path(p), depth - 1)) for p in subs)

    parts = []
    for d in data_dirs:
        d = Path(d)
        parts.append((str(d), stamp(d), stamp(d / "metadata.csv"), below(d, 2)))
    lib = Path(library_dir)
    lib_files = sorted((p.name, stamp(p)) for p in lib.iterdir()) if lib.is_dir() else []
    parts.append((str(lib), tuple(lib_files)))
    return tuple(parts)


@dataclass
class IndexPlan:
    """What the index lacks compared with the catalog (nothing is done yet)."""

    new_tracks: list[Track]          # data-folder tracks not in the index
    stale_ids: list[str]             # indexed folder tracks no longer in any folder
    new_library: list[Path]          # uploads not in the index
    models_changed: bool = False     # index vectors come from other model weights

    @property
    def up_to_date(self) -> bool:
        return not (self.new_tracks or self.stale_ids or self.new_library or self.models_changed)

    def summary(self) -> str:
        parts = []
        if self.models_changed:
            parts.append("the models changed since it was built")
        if self.new_tracks:
            parts.append(f"{len(self.new_tracks)} new track(s)")
        if self.new_library:
            parts.append(f"{len(self.new_library)} new upload(s)")
        if self.stale_ids:
            parts.append(f"{len(self.stale_ids)} track(s) no longer in the folders")
        return ", ".join(parts) or "up to date"


def plan_index(catalog: Catalog, table, models_changed: bool = False) -> IndexPlan:
    """Compare the catalog with an index table (``CatalogIndex.table()``)."""
    ids = set(table["track_id"]) if len(table) else set()
    lib_mask = (table["source"] == LIBRARY_SOURCE) if len(table) else []
    lib_paths = {str(Path(p)) for p in table.loc[lib_mask, "path"]} if len(table) else set()
    folder_ids = {t.track_id for t in catalog.tracks}
    stale = [] if not len(table) else [
        t for t, s in zip(table["track_id"], table["source"])
        if s != LIBRARY_SOURCE and t not in folder_ids]
    return IndexPlan(new_tracks=[t for t in catalog.tracks if t.track_id not in ids],
                     stale_ids=stale,
                     new_library=[t.path for t in catalog.library if str(t.path) not in lib_paths],
                     models_changed=models_changed)


def sync_index(catalog: Catalog, index, models: dict, progress=None, checkpoint: int = 256) -> dict:
    """Bring ``index`` (a :class:`core.catalog.index.CatalogIndex`) in line with the
    catalog: embed new folder tracks, drop vanished ones, add new uploads.

    Returns ``{"embedded", "removed", "failed": [one-line errors], ...}``.
    ``progress(done, total)`` is called during each of the (up to two) passes;
    every ``checkpoint`` embedded tracks are committed (readers see them).
    """
    stats = dict(index.update(catalog.tracks, models, progress=progress, checkpoint=checkpoint))
    # Uploads go through add_files so their ids follow the content (one track per file).
    known = {str(Path(p)) for p, s in zip(index.table()["path"], index.table()["source"])
             if s == LIBRARY_SOURCE} if len(index) else set()
    todo = [str(t.path) for t in catalog.library if str(t.path) not in known]
    if todo:
        lib = index.add_files(todo, models, source=LIBRARY_SOURCE, progress=progress,
                              titles=[Path(p).stem.replace("_", " ") for p in todo])
        for k in ("added", "updated", "unchanged", "removed", "embedded"):
            stats[k] = stats.get(k, 0) + lib.get(k, 0)
        stats["failed"] = list(stats.get("failed", [])) + list(lib.get("failed", []))
    return stats
