"""The catalog for the pages: the tracks of the configured folders and the
library, and the shared catalog index (background indexing, snapshots).

The index modules import torch: they are imported on first use (see
:mod:`ui.models`), so the first page is drawn before they are in.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from core.catalog import sources as catalog_mod
from ui.models import model_loader, models_key
from ui.settings import data_dirs, data_layout, paths, show_how_to_add_music

if TYPE_CHECKING:
    from core.catalog.index import IndexSnapshot
    from core.catalog.indexer import BackgroundIndexer


@st.cache_resource(show_spinner="Reading the music folders…", max_entries=8)
def _read_catalog(dirs: tuple[str, ...], library: str, signature: tuple, layout: str) -> catalog_mod.Catalog:
    # One object for every session (cache_resource): a Catalog is immutable, and
    # cache_data would unpickle a copy of every track on each call (twice per page run).
    return catalog_mod.read_catalog(dirs, library, layout)


def catalog() -> catalog_mod.Catalog:
    """Tracks of the configured folders + the library, read as the chosen
    layout (cached until a folder changes)."""
    dirs = tuple(str(d) for d in data_dirs())
    lib = paths().library
    return _read_catalog(dirs, str(lib), catalog_mod.catalog_signature(dirs, lib), data_layout())


def play(path: str | Path, label: str = "Listen") -> None:
    """A **Listen** button that opens the audio player of a catalog file, or a
    short note when the file is gone. The player exists in the browser only
    once opened (a popover's body is drawn on opening): always-open players,
    ten per recommendation list and fifteen per study page, made every
    browser fetch and probe every file on every run, which with a dozen users
    on two cores was a steady share of the machine."""
    if Path(path).is_file():
        with st.popover(label, icon=":material/play_arrow:"):
            st.audio(str(path))
    else:
        st.caption(f"audio file not found: {Path(path).name}")


def track_label(title: str, artist: str, genre: str, track_id: str, album: str = "",
                tag_genre: str = "") -> str:
    """'Title — Artist (Album) · Genre' (falls back to the id when there is no
    title; an unlabelled track shows its genre tag as 'tagged …')."""
    from ui.tracks import track_name

    name = track_name(title, artist, album, track_id)
    if genre:
        return f"{name} · {genre}"
    return f"{name} · tagged {tag_genre}" if tag_genre else name


# ----------------------------------------------------------------- index

@st.cache_resource(show_spinner="Opening the catalog index…", max_entries=2)
def _indexer(index_dir: str) -> BackgroundIndexer:
    # The one object shared by every session: it is never changed in place
    # for readers; index() hands out its current immutable snapshot.
    from core.catalog.indexer import BackgroundIndexer

    return BackgroundIndexer(index_dir)


def indexer(quiet: bool = False) -> BackgroundIndexer | None:
    """The process-wide background indexer of the configured index folder."""
    from core.catalog.index import CatalogError

    d = paths().index
    try:
        return _indexer(str(d))
    except (CatalogError, OSError) as exc:
        if not quiet:
            st.error(f"The catalog index in `{d}` cannot be read: {exc} — delete the folder to "
                     "rebuild it.")
        return None


def index(quiet: bool = False) -> IndexSnapshot | None:
    """The current index snapshot (immutable: use it for the whole page run),
    or ``None`` with a message."""
    from core.catalog.index import CatalogError

    svc = indexer(quiet)
    if svc is None:
        return None
    try:
        return svc.snapshot()
    except (CatalogError, OSError) as exc:
        if not quiet:
            st.error(f"The catalog index in `{svc.dir}` cannot be read: {exc}")
        return None


@st.cache_data(show_spinner=False, max_entries=4)
def _index_table(index_dir: str, version: int, n: int, _idx):
    df = _idx.table()
    df["label"] = [track_label(t, a, g, i, al, tg) for t, a, g, i, al, tg in
                   zip(df["title"], df["artist"], df["genre"], df["track_id"], df["album"], df["tag_genre"])]
    return df


def index_table(idx):
    """``idx.table()`` plus a display ``label`` column (cached per index version)."""
    return _index_table(str(idx.dir), idx.version, len(idx), idx)


@st.cache_data(show_spinner=False, max_entries=4)
def _is_current(index_dir: str, version: int, models_id: str, _idx, _models) -> bool:
    return _idx.is_current(_models)


def index_plan(cat: catalog_mod.Catalog, idx, mods: dict) -> catalog_mod.IndexPlan:
    """What the index lacks; ``mods`` comes from ``models()``."""
    changed = len(idx) > 0 and not _is_current(str(idx.dir), idx.version, models_key(), idx, mods)
    return catalog_mod.plan_index(cat, index_table(idx), models_changed=changed)


def start_indexing(cat: catalog_mod.Catalog) -> bool:
    """Start (or restart) the background indexing of ``cat``; False if one runs."""
    svc = indexer()
    return svc is not None and svc.start(cat, model_loader().get)


def auto_index(cat: catalog_mod.Catalog, svc: BackgroundIndexer) -> None:
    """Start the background indexing of ``cat`` by itself, once per catalog and
    model version in this server process (no retry loop after a failure)."""
    key = (cat.signature, models_key())     # the folders as ``cat`` was read from them
    if not svc.running() and key not in svc.attempted:
        svc.start(cat, model_loader().get, key=key)


def index_or_help(mods: dict | None):
    """The index snapshot if it has tracks (while indexing runs: what is indexed
    so far); otherwise start the background indexing (if the sidebar has not
    yet) and wait for the first tracks, or explain how to add music."""
    svc = indexer()
    idx = index()
    if idx is None or svc is None:
        return None
    if len(idx):
        status = svc.status()
        if status.running:
            st.caption(f":material/hourglass_top: {status.line()} — this page uses the {len(idx):,} "
                       "tracks indexed so far; reload it to see more.")
        return idx
    cat = catalog()       # only needed when the index is still empty
    if not len(cat):
        show_how_to_add_music("This page needs music: the catalog is empty.")
        return None
    if not mods:
        return None
    auto_index(cat, svc)
    status = svc.status()
    if status.running:
        st.info(f"The catalog has {len(cat):,} tracks and they are being indexed in the background "
                f"(every model listens to each track once). {status.done:,} / {status.total:,} done; "
                "this page appears as soon as the first tracks are in.")
        _wait_for_first_tracks(svc)
        return None
    if status.state == "failed":
        st.error(status.line())
    st.info(f"The catalog has {len(cat):,} tracks, but they have not been indexed yet: every model "
            "needs to listen to each track once (a few minutes for ~1,000 tracks).")
    if st.button("Index the catalog now", key="main_index", type="primary"):
        start_indexing(cat)
        _wait_for_first_tracks(svc)
    return None


def _wait_for_first_tracks(svc: BackgroundIndexer, poll_s: float = 1.0) -> None:
    """Rerun the page once the index has its first tracks (or the run ended)."""
    while svc.running() and not len(svc.snapshot()):
        time.sleep(poll_s)
    st.rerun()
