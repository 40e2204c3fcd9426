"""CLI hooks of the library work: ``index --json FILE`` (one row per
indexed track) and ``recommend --m3u FILE --csv FILE`` (playlists out)."""

from __future__ import annotations

import sys
from pathlib import Path


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def write_index_json(snapshot, path: str, artifacts: str, n_unreadable: int) -> bool:
    """``{"model", "tracks": n, "labelled", "unlabelled", "unreadable", "rows": [...]}``
    with one row per indexed track (:func:`core.catalog.export.track_rows`)."""
    from core.catalog.export import track_rows
    from core.models.artifacts import write_json
    from core.models.selection import best_model

    model = best_model(snapshot.models, artifacts) if snapshot.models else ""
    rows = track_rows(snapshot, model) if model else []
    n_lab = sum(bool(r["label"]) for r in rows)
    try:
        write_json(Path(path), {"model": model, "tracks": len(rows), "labelled": n_lab,
                                "unlabelled": len(rows) - n_lab, "unreadable": n_unreadable, "rows": rows})
    except OSError as exc:
        _err(f"cannot write {path}: {exc.strerror or exc}")
        return False
    return True


def write_recommendations(snapshot, recs, m3u: str | None, csv_path: str | None) -> bool:
    """Write the recommendation list as M3U8 and/or CSV."""
    from core.recommend.playlist import PlaylistError, playlist_items, write_playlists

    try:
        write_playlists(playlist_items(snapshot, recs), m3u, csv_path)
    except PlaylistError as exc:
        _err(str(exc))
        return False
    return True
