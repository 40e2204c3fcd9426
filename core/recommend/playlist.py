"""Playlists out: a recommendation list as extended M3U (UTF-8, ``.m3u8``)
and as CSV, for the Recommender page and ``python -m core recommend --m3u
FILE --csv FILE``.

M3U8: ``#EXTM3U``, then per track ``#EXTINF:<seconds>,<artist> – <title>``
and its path, relative to the playlist's folder when the track lies below
that folder's parent tree (a playlist saved in the music folder keeps
working when the folder moves), else absolute. :func:`parse_m3u8` reads one
back (the tests check every path resolves).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from core.errors import GenreError

CSV_COLUMNS = ("rank", "track_id", "artist", "title", "album", "genre", "tag_genre", "predicted_genre",
               "score", "duration", "path")


class PlaylistError(GenreError, ValueError):
    """A playlist that cannot be written or read."""


@dataclass(frozen=True)
class PlaylistItem:
    """One playlist line: the file and what a player shows for it."""

    path: str
    artist: str = ""
    title: str = ""
    duration: float = 0.0        # seconds; 0: unknown (written as -1)
    album: str = ""
    track_id: str = ""
    genre: str = ""
    tag_genre: str = ""
    predicted_genre: str = ""
    score: float = float("nan")
    rank: int = 0

    @property
    def label(self) -> str:
        name = self.title or Path(self.path).stem
        return f"{self.artist} – {name}" if self.artist else name


def playlist_items(snapshot, recs: Iterable) -> list[PlaylistItem]:
    """The playlist of a recommendation list (``Recommendation`` objects or
    their dicts) over an index snapshot (paths, albums, tags, durations)."""
    recs = [r if isinstance(r, dict) else r.to_dict() for r in recs]
    rows = snapshot.rows_of([r["track_id"] for r in recs]) if recs else np.zeros(0, int)
    col = snapshot.column
    out = []
    for r, i in zip(recs, rows):
        duration = col("duration")[i] if "duration" in snapshot.frame else 0.0
        get = (lambda c: str(col(c)[i] or "") if c in snapshot.frame else "")  # noqa: E731
        out.append(PlaylistItem(path=str(col("path")[i]), artist=str(r.get("artist") or get("artist")),
                                title=str(r.get("title") or get("title")), duration=float(duration or 0.0),
                                album=get("album"), track_id=str(r["track_id"]), genre=str(r.get("genre", "")),
                                tag_genre=get("tag_genre"), predicted_genre=str(r.get("predicted_genre", "")),
                                score=float(r.get("score", float("nan"))), rank=int(r.get("rank", 0))))
    return out


def _entry_path(track: str, base: Path | None) -> str:
    p = Path(track).absolute()
    if base is None:
        return str(p)
    try:
        rel = os.path.relpath(p, base)
    except ValueError:           # another drive (Windows)
        return str(p)
    # Relative only when the two share more than the file-system root.
    common = os.path.commonpath([str(p), str(base)])
    return Path(rel).as_posix() if common != os.path.sep and common else str(p)


def to_m3u8(items: Sequence[PlaylistItem], playlist_path: str | Path | None = None) -> str:
    """The extended M3U text; paths relative to ``playlist_path``'s folder where possible."""
    base = Path(playlist_path).absolute().parent if playlist_path is not None else None
    lines = ["#EXTM3U"]
    for it in items:
        seconds = int(round(it.duration)) if it.duration and it.duration > 0 else -1
        lines.append(f"#EXTINF:{seconds},{' '.join(it.label.split())}")
        lines.append(_entry_path(it.path, base))
    return "\n".join(lines) + "\n"


def to_csv(items: Sequence[PlaylistItem]) -> str:
    """CSV with :data:`CSV_COLUMNS` (one row per track, in list order)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for it in items:
        w.writerow([it.rank, it.track_id, it.artist, it.title, it.album, it.genre, it.tag_genre,
                    it.predicted_genre, "" if it.score != it.score else f"{it.score:.4f}",
                    f"{it.duration:.1f}" if it.duration else "", it.path])
    return buf.getvalue()


def parse_m3u8(text: str, playlist_path: str | Path | None = None) -> list[tuple[float, str, Path]]:
    """``(seconds, label, absolute path)`` per entry of an extended M3U
    (relative paths resolved against the playlist's folder)."""
    base = Path(playlist_path).absolute().parent if playlist_path is not None else Path.cwd()
    lines = [ln.strip() for ln in text.lstrip("\ufeff").splitlines() if ln.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise PlaylistError("not an extended M3U playlist (no #EXTM3U header)")
    out, info = [], None
    for ln in lines[1:]:
        if ln.startswith("#EXTINF:"):
            secs, _, label = ln[len("#EXTINF:"):].partition(",")
            info = (float(secs), label)
        elif not ln.startswith("#"):
            p = Path(ln)
            secs, label = info or (-1.0, p.stem)
            out.append((secs, label, p if p.is_absolute() else (base / p)))
            info = None
    return out


def write_playlists(items: Sequence[PlaylistItem], m3u: str | Path | None = None,
                    csv_path: str | Path | None = None) -> None:
    """Write the M3U8 and/or CSV files (atomically)."""
    from core.files import atomic_write_text

    try:
        if m3u is not None:
            atomic_write_text(Path(m3u), to_m3u8(items, m3u))
        if csv_path is not None:
            atomic_write_text(Path(csv_path), to_csv(items))
    except OSError as exc:
        raise PlaylistError(f"cannot write the playlist ({exc.strerror or exc})") from None
