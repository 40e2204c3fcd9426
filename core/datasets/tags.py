"""A music file's own tags (artist, album, title, track number, year,
duration, genre tag) through mutagen: ID3v2/ID3v1 (MP3, WAV, AIFF), Vorbis
comments (FLAC, OGG, Opus), MP4 atoms (M4A/AAC/ALAC) and ASF (WMA).

:func:`read_tags` never raises: a file with broken, hostile or no tags gives
empty fields (the caller falls back to the file name), and a tag's text is
cleaned to one short printable line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_TAG_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")

# Per field, the keys each tag format uses (ID3 frame ids, Vorbis names, MP4 atoms, ASF names).
_KEYS = {
    "artist": ("TPE1", "TPE2", "artist", "albumartist", "\xa9ART", "aART", "Author", "WM/AlbumArtist"),
    "album": ("TALB", "album", "\xa9alb", "WM/AlbumTitle"),
    "title": ("TIT2", "title", "\xa9nam", "Title"),
    "genre": ("TCON", "genre", "\xa9gen", "WM/Genre"),
    "year": ("TDRC", "TYER", "date", "year", "\xa9day", "WM/Year"),
    "track_no": ("TRCK", "tracknumber", "trkn", "WM/TrackNumber"),
}


@dataclass(frozen=True)
class Tags:
    """What a file says about itself; ``""`` / ``0.0`` where it says nothing.

    ``duration`` in seconds (from the stream header, 0 when unknown);
    ``year`` the first four-digit year; ``track_no`` the number before any "/".
    """

    artist: str = ""
    album: str = ""
    title: str = ""
    genre: str = ""
    year: str = ""
    track_no: str = ""
    duration: float = 0.0
    error: str = ""          # why the tags could not be read ("" when they could, or there were none)


def clean_text(value: object) -> str:
    """One printable line of at most :data:`MAX_TAG_CHARS` characters."""
    text = _CONTROL.sub(" ", str(value))
    return " ".join(text.split())[:MAX_TAG_CHARS]


def _text_of(value: object) -> str:
    """The first text of a tag value (ID3 frame, list, MP4 tuple, ASF attribute)."""
    if value is None:
        return ""
    genres = getattr(value, "genres", None)          # ID3 TCON: "(8)" → "Jazz"
    if genres:
        return clean_text(genres[0])
    text = getattr(value, "text", None)
    if text is not None:
        value = text
    if isinstance(value, (list, tuple)):
        if not value:
            return ""
        first = value[0]
        if isinstance(first, tuple) and first and isinstance(first[0], int):   # MP4 trkn (n, of)
            return str(first[0]) if first[0] else ""
        value = first
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return clean_text(value)


def _field(tags, keys: tuple[str, ...]) -> str:
    for k in keys:
        try:
            v = tags.get(k)
        except Exception:  # noqa: BLE001 — a hostile tag must never escape
            v = None
        t = _text_of(v)
        if t:
            return t
    return ""


def _year(text: str) -> str:
    m = re.search(r"(1[0-9]{3}|20[0-9]{2})", text)
    return m.group(1) if m else ""


def _track_no(text: str) -> str:
    m = re.match(r"\s*0*(\d{1,4})", text)
    return m.group(1) if m else ""


def read_tags(path) -> Tags:
    """The tags of one file: a path, or an open binary file object such as an
    upload's ``io.BytesIO`` (never raises; see the module docstring)."""
    try:
        import mutagen

        f = mutagen.File(path if hasattr(path, "read") else str(path))
    except Exception as exc:  # noqa: BLE001 — mutagen raises many types on hostile input
        return Tags(error=clean_text(f"{type(exc).__name__}: {exc}")[:120])
    if f is None:
        return Tags()
    try:
        duration = float(getattr(f.info, "length", 0.0) or 0.0)
    except Exception:  # noqa: BLE001
        duration = 0.0
    if not (duration == duration and 0 <= duration < 1e6):   # NaN or absurd
        duration = 0.0
    tags = getattr(f, "tags", None)
    if not tags:
        return Tags(duration=round(duration, 3))
    values = {name: _field(tags, keys) for name, keys in _KEYS.items()}
    return Tags(artist=values["artist"], album=values["album"], title=values["title"],
                genre=values["genre"], year=_year(values["year"]),
                track_no=_track_no(values["track_no"]), duration=round(duration, 3))


_LEADING_NUMBER = re.compile(r"^\s*(\d{1,3})\s*[-._ ]+\s*(?=\S)")


def title_from_name(stem: str) -> tuple[str, str]:
    """``("03", "Title")`` from a file name such as ``"03 - Title"``; the
    number is ``""`` when the name has none."""
    m = _LEADING_NUMBER.match(stem)
    if m:
        return str(int(m.group(1))), clean_text(stem[m.end():].replace("_", " "))
    return "", clean_text(stem.replace("_", " "))
