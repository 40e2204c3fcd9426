"""Deep links always go through ``app.py``, the router.

Streamlit keeps its older multipage mode ("MPA v1") for apps with a
``pages/`` folder next to the main script: until some session has called
``st.navigation``, a request for ``/listening_study`` runs
``pages/listening_study.py`` on its own. ``app.py`` never runs, so the page
has no sidebar (Music folders, index status) and the navigation lists the
file names. It lasts until someone opens ``/``: whether the first participant
after a restart sees the real app depends on who came first.

Every page script calls :func:`through_app` first. In that legacy mode, before ``app.py`` ever ran in this
process, it switches the server to ``st.navigation`` routing for good (what
calling ``st.navigation`` does, for every session) and reruns: the rerun executes
``app.py`` for the same URL, which draws the real navigation and sidebar and
then the page. Run by ``app.py`` (or a page alone in ``AppTest``) it does
nothing. ``tests/test_browser.py`` opens every page URL as the first request
of a fresh server.
"""

from __future__ import annotations

import streamlit as st

_router_ran = False   # app.py's router has run in this process (set by router_ran())


def router_ran() -> None:
    """Called by ``app.py`` after ``st.navigation``: from then on the server
    routes every request itself (AppTest, which resets Streamlit's legacy flag
    before each run, keeps its own page routing)."""
    global _router_ran
    _router_ran = True


def legacy_pages_mode() -> bool:
    """Whether this server still runs ``pages/*.py`` without the router
    (Streamlit's ``PagesManager.uses_pages_directory``, set until the first
    ``st.navigation`` call; ``False`` if a later Streamlit drops it)."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - a Streamlit without the legacy mode
        return False
    return bool(getattr(PagesManager, "uses_pages_directory", False))


def through_app() -> None:
    """First call of every page script: in the legacy mode, switch the server
    to the router and rerun this URL through ``app.py`` (no-op otherwise)."""
    if _router_ran or not legacy_pages_mode():
        return
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False    # what st.navigation sets, for every session
    st.rerun()
