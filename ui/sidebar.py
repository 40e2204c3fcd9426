"""The sidebar of every page: the Music folders setting, the catalog and the
index status (the background indexing starts from here by itself)."""

from __future__ import annotations

import streamlit as st

from core.catalog import sources as catalog_mod
from ui.catalog import auto_index, catalog, indexer
from ui.settings import SETTING_KEY, data_setting, paths


def sidebar() -> None:
    """Music-folder settings and catalog status, shown on every page."""
    data_setting()
    with st.sidebar:
        cat = catalog()
        with st.expander(":material/folder_open: Music folders", expanded=not len(cat)):
            st.text_area("Data folders, one per line", key=SETTING_KEY, height=110,
                         help="Folders with a metadata.csv, genre sub-folders or the FMA layout. "
                              "Starts as $GENRE_DATA (':'-separated) or ../shared/data.")
            st.caption(f"Uploads are kept in `{paths().library}` ($GENRE_LIBRARY).")
        if len(cat):
            st.caption(f":material/library_music: {len(cat.tracks):,} tracks in {len(cat.data_dirs)} folder(s)"
                       + (f" · {len(cat.library)} upload(s)" if cat.library else ""))
        else:
            st.caption(":material/library_music: No music configured yet.")
        for problem in cat.problems:
            st.caption(f":material/warning: {problem}")
        index_sidebar(cat)


def index_sidebar(cat: catalog_mod.Catalog) -> None:
    """Index status; starts the background indexing of the catalog by itself
    (once per catalog and model version in this server process)."""
    if not len(cat):
        return
    svc = indexer(quiet=True)
    if svc is None:
        return
    auto_index(cat, svc)
    _index_status()


@st.fragment(run_every=2.0)
def _index_status() -> None:
    """Progress of the background run (redrawn every 2 s on its own)."""
    svc = indexer(quiet=True)
    if svc is None:
        return
    status = svc.status()
    snap = svc.snapshot()
    if status.running and not status.total:
        st.caption(f":material/database: Index: {len(snap):,} tracks — checking for new music…")
    elif status.running:
        st.progress(min(status.done / status.total, 1.0), text=status.line())
        st.caption(f":material/database: {len(snap):,} tracks usable so far.")
    elif status.state == "failed":
        st.caption(f":material/error: {status.line()}")
    else:
        st.caption(f":material/database: Index ready: {len(snap):,} tracks.")
        if status.stats.get("failed"):
            st.caption(f":material/warning: {len(status.stats['failed'])} file(s) could not be read.")
