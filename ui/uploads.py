"""Uploads: the checks before decoding, and adding files to the library
(saved under a safe name, then indexed with a progress bar)."""

from __future__ import annotations

import sqlite3

import streamlit as st

from core.audio.load import SUPPORTED_EXTENSIONS, is_supported_name
from core.catalog import library
from core.catalog import sources as catalog_mod
from ui.catalog import indexer
from ui.models import shipped_models
from ui.settings import paths

UPLOAD_TYPES = sorted({e.lstrip(".") for e in SUPPORTED_EXTENSIONS})


def max_upload_bytes() -> int:
    """The upload limit (core.catalog.library's, read at call time so tests can lower it)."""
    return int(library.MAX_UPLOAD_BYTES)


def check_upload(name: str, data: bytes) -> str | None:
    """One-line reason an upload is refused before decoding, or ``None``."""
    limit = max_upload_bytes()
    if len(data) > limit:
        return f"{name}: too large ({len(data) / 2**20:.1f} MB; the limit is {limit / 2**20:.0f} MB)"
    if not is_supported_name(name):
        return f"{name}: not a supported audio type (use {', '.join(UPLOAD_TYPES)})"
    return None


def add_to_library(files: list[tuple[str, bytes]]) -> list[str]:
    """Save uploads into the library (sanitised names, size limit) and index
    them with a progress bar. Returns the new track ids; bad files get one
    ``st.error`` line each and the rest still go through."""
    saved = []
    for name, data in files:
        try:
            saved.append(library.save_upload(name, data, paths().library))
        except library.LibraryError as exc:
            st.error(str(exc))
    if not saved:
        return []
    svc = indexer(quiet=True)
    mods = shipped_models(quiet=True)
    if svc is None or not mods:
        st.success(f"Saved {len(saved)} file(s) to the library; index them from the sidebar.")
        return []
    bar = st.progress(0.0, text="Adding to the catalog…" + (
        " (after the background indexing)" if svc.running() else ""))

    def progress(done: int, total: int) -> None:
        bar.progress(min(done / total, 1.0) if total else 1.0, text=f"Indexing: {done} / {total}")

    try:
        stats = svc.run_now(lambda w: w.add_files(
            [str(s.path) for s in saved], mods, source=catalog_mod.LIBRARY_SOURCE, progress=progress,
            titles=[s.path.stem.replace("_", " ") for s in saved]))
    except (OSError, sqlite3.Error) as exc:   # a full or read-only index disk: one line, the index stays
        bar.empty()
        st.error(f"Saved {len(saved)} file(s) to the library, but the index could not be updated: "
                 f"{svc.failure_line(exc)}")
        return []
    bar.progress(1.0, text="Done.")
    for line in stats.get("failed", []):
        st.error(line)
    ids = [t for t in stats.get("track_ids", []) if t]
    if ids:
        st.success(f"Added {len(ids)} track(s) to your library — they now appear on the Embedding "
                   "map and in the Recommender.")
    return ids
