"""How a track is named on the pages: title — artist (album), its label if
it has one, the file's own genre tag beside the models' prediction
("tagged Jazz · the models hear Classical"; a tag is never a label), and
the playlist downloads (M3U8 + CSV) of a recommendation list."""

from __future__ import annotations

import streamlit as st

from core.recommend import playlist


def track_name(title: str, artist: str, album: str, track_id: str) -> str:
    """'Title — Artist (Album)', falling back to the id when there is no title."""
    name = str(title or track_id)
    if artist:
        name += f" — {artist}"
    return name + (f" ({album})" if album else "")


def genre_note(genre: str, tag_genre: str, predicted: str) -> str:
    """'Jazz · tagged Jazz · the models hear Classical' (parts that are known)."""
    parts = [str(genre) if genre else "unlabelled"]
    if tag_genre:
        parts.append(f"tagged {tag_genre}")
    if predicted:
        parts.append(f"the models hear {predicted}")
    return " · ".join(parts)


def upload_tag_line(data: bytes, digest: str) -> str:
    """'Artist — Title (Album) · tagged Jazz' from an upload's own tags ("" without
    tags); read once per file content (``digest``: the bytes' SHA-256, the cache key)."""
    return _upload_tag_line(digest, data)


@st.cache_data(show_spinner=False, max_entries=64)
def _upload_tag_line(digest: str, _data: bytes) -> str:
    import io

    from core.datasets.tags import read_tags

    t = read_tags(io.BytesIO(_data))
    if not (t.title or t.artist):
        return ""
    line = track_name(t.title, t.artist, t.album, "")
    return line + (f" · tagged {t.genre} (the file's own tag, not used by the models)" if t.genre else "")


def playlist_downloads(idx, recs, name: str, key: str) -> None:
    """Two download buttons: the list as M3U8 (absolute paths: the browser
    saves it anywhere) and as CSV."""
    if not recs:
        return
    try:
        items = playlist.playlist_items(idx, recs)
    except Exception as exc:  # noqa: BLE001 — a CatalogError after a concurrent re-index
        st.caption(f"Playlist unavailable: {exc}")
        return
    c1, c2 = st.columns(2)
    c1.download_button("M3U8 playlist", playlist.to_m3u8(items), file_name=f"{name}.m3u8",
                       mime="audio/x-mpegurl", icon=":material/queue_music:", key=f"{key}_m3u")
    c2.download_button("CSV", playlist.to_csv(items), file_name=f"{name}.csv", mime="text/csv",
                       icon=":material/table:", key=f"{key}_csv")
