"""The page scripts' settings: the configured folders (``core.config.Paths``,
read from the environment on every run) and the Music folders field."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from core.catalog import sources as catalog_mod
from core.config import Paths

SETTING_KEY = "data_folders"
LAYOUT_KEY = "data_layout"     # how the folders are read: auto | metadata | fma | genres | library

HOW_TO_ADD_MUSIC = """
**How to add music**

* In the sidebar, open **Music folders** and enter one folder per line. Any folder of music
  works: your own library (`~/Music`, `Artist/Album/01 Song.m4a`, tags are read), or a
  labelled set: a `metadata.csv` (columns `track_id, path, genre`, …), one sub-folder per
  genre (`Rock/song.mp3`), or the FMA layout.
* Or start the app with the environment variable, several folders separated by `:`
  ```
  GENRE_DATA=/music/rock_and_jazz:/music/more make run
  ```
* Or upload tracks on the **Classify** page and press **Add to my library**
  (they are kept in `{library}`).
"""


def paths() -> Paths:
    """Current folders (environment variables are read on every run)."""
    return Paths()


def file_stamp(path: Path) -> float:
    """Modification time of ``path`` for cache keys (-1 when it is missing)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


def data_setting() -> str:
    """Text of the Music folders settings field (starts as $GENRE_DATA / ../shared/data)."""
    if SETTING_KEY not in st.session_state:
        st.session_state[SETTING_KEY] = catalog_mod.default_data_setting().replace(os.pathsep, "\n")
    return st.session_state[SETTING_KEY]


def data_layout() -> str:
    """The layout chosen in the Music folders setting (``auto`` detects it per folder)."""
    st.session_state.setdefault(LAYOUT_KEY, "auto")
    return st.session_state[LAYOUT_KEY]


def data_dirs() -> list[Path]:
    """The folders of the Music folders field."""
    return catalog_mod.parse_data_setting(data_setting())


def show_how_to_add_music(reason: str = "No music is configured yet.") -> None:
    st.info(reason)
    st.markdown(HOW_TO_ADD_MUSIC.format(library=paths().library))
