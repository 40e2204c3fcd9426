"""The server's housekeeping, started once per process by ``app.py``:
the :class:`core.serve.MemoryTrimmer` (see :mod:`core.serve`)."""

from __future__ import annotations

import streamlit as st

from core.serve import MemoryTrimmer


@st.cache_resource(show_spinner=False, max_entries=1)
def _trimmer() -> MemoryTrimmer:
    # Shared by every session: it holds no state a session reads or writes.
    return MemoryTrimmer()


def housekeeping() -> None:
    """Start the process's memory trimmer (once; later calls find it running)."""
    _trimmer()
