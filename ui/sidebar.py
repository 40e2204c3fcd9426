"""The sidebar of every page: the Music folders setting, the catalog and the
index status (the background indexing starts from here by itself).

The index status never makes a fresh server's first page wait for torch:
its first drawing in a session skips the index while the modules it needs
are not imported yet (:data:`STATUS_MODULES`; the page itself imports them
once its cheap parts are drawn), and its redraw 2 s later opens the index and
starts the indexing. Once they are in, the status redraws
every :data:`STATUS_EVERY_S` seconds while an indexing run is going on: each
redraw is a script run of every open session (and a redraw in every
browser), which with a dozen sessions every 2 s was a steady load on the
server and the browsers alike. When no run is going on (the index is ready,
or the run failed) the status is drawn once per page run, with no timer:
nothing changes until the next one, and a timed fragment rerun that lands
just as a page's own run finishes could lose that run's output (Streamlit
1.67 drops the events of a script runner it replaced, ``AppSession``): the
load run's "lost rerun", now prevented by :func:`ui.serve.keep_finishing_runs`
(``benchmarks/fragment_race.py`` shows the loss and the fix).
"""

from __future__ import annotations

import sys

import streamlit as st

from core.catalog import sources as catalog_mod
from core.datasets.layout import LAYOUTS
from ui.catalog import auto_index, catalog, indexer
from ui.settings import LAYOUT_KEY, SETTING_KEY, data_layout, data_setting, paths

LAYOUT_NAMES = {"auto": "Auto-detect", "library": "My music library (unlabelled, tags)",
                "metadata": "Labelled: metadata.csv", "genres": "Labelled: one sub-folder per genre",
                "fma": "Labelled: FMA"}

DRAWN_KEY = "sidebar_index_drawn"   # session state: the index status was drawn once
# What drawing the index status imports (the models' loader, the indexer). Not
# ui.models.HEAVY_MODULES: core.models.selection is imported only by the pages
# with a model picker, so a server whose users only saw the Overview kept the
# 2 s timer of a fresh server for good.
STATUS_MODULES = ("core.models.artifacts", "core.catalog.indexer")
FIRST_STATUS_EVERY_S = 2.0           # status redraws on a fresh server (index modules not in yet)
STATUS_EVERY_S = 10.0                # afterwards


def sidebar() -> None:
    """Music-folder settings and catalog status, shown on every page."""
    data_setting()
    data_layout()
    with st.sidebar:
        cat = catalog()
        with st.expander(":material/folder_open: Music folders", expanded=not len(cat)):
            st.text_area("Data folders, one per line", key=SETTING_KEY, height=110,
                         help="Any folder of music: your own library (Artist/Album/track, tags are "
                              "read), or a labelled set (metadata.csv, genre sub-folders, FMA). "
                              "Starts as $GENRE_DATA (':'-separated) or ../shared/data.")
            st.selectbox("Layout", LAYOUTS, key=LAYOUT_KEY, format_func=LAYOUT_NAMES.__getitem__,
                         help="How to read the folders. Auto: metadata.csv or FMA when present; "
                              "genre sub-folders only when named as genres the models know; "
                              "otherwise a music library (unlabelled, tags read).")
            st.caption(f"Uploads are kept in `{paths().library}` ($GENRE_LIBRARY).")
        if len(cat):
            n_unlab = sum(not t.genre for t in cat.tracks)
            st.caption(f":material/library_music: {len(cat.tracks):,} tracks in {len(cat.data_dirs)} folder(s)"
                       + (f" ({n_unlab:,} unlabelled)" if n_unlab else "")
                       + (f" · {len(cat.library)} upload(s)" if cat.library else ""))
        else:
            st.caption(":material/library_music: No music configured yet.")
        for problem in cat.problems:
            st.caption(f":material/warning: {problem}")
        index_sidebar(cat)


def index_sidebar(cat: catalog_mod.Catalog) -> None:
    """Index status; starts the background indexing of the catalog by itself
    (once per catalog and model version in this server process). Redrawn on
    a timer only while a run is going on (or on a fresh server)."""
    if not len(cat):
        return
    if not _status_modules_imported():
        _first_index_status(cat)
    elif _indexing(cat):
        _index_status(cat)
    else:
        _draw_index_status(cat)


def _status_modules_imported() -> bool:
    """Whether drawing the index status imports nothing (:data:`STATUS_MODULES` are in)."""
    return all(name in sys.modules for name in STATUS_MODULES)


def _indexing(cat: catalog_mod.Catalog) -> bool:
    """Whether an indexing run is going on (after starting one if the catalog needs it)."""
    svc = indexer(quiet=True)
    if svc is None:
        return False
    auto_index(cat, svc)
    return svc.running()


@st.fragment(run_every=FIRST_STATUS_EVERY_S)
def _first_index_status(cat: catalog_mod.Catalog) -> None:
    """:func:`_index_status` on a fresh server's first page (redrawn every 2 s)."""
    _draw_index_status(cat)


@st.fragment(run_every=STATUS_EVERY_S)
def _index_status(cat: catalog_mod.Catalog) -> None:
    """Progress of the background run (redrawn on its own)."""
    _draw_index_status(cat)


def _draw_index_status(cat: catalog_mod.Catalog) -> None:
    first, st.session_state[DRAWN_KEY] = not st.session_state.get(DRAWN_KEY), True
    if first and not _status_modules_imported():
        st.caption(":material/database: Index: starting…")
        return
    svc = indexer(quiet=True)
    if svc is None:
        return
    auto_index(cat, svc)
    status = svc.status()
    snap = svc.snapshot()
    if svc.interrupted_at is not None and status.state != "failed":
        st.caption(f":material/restore: The last indexing run was interrupted (the server stopped); its "
                   f"{svc.interrupted_at:,} saved tracks are kept and the indexing resumes from there.")
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
