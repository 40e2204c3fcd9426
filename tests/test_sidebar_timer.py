"""ui.sidebar: the index status redraws on a timer only while an indexing run
is going on (or on a fresh server); otherwise it is drawn once per page run."""

from __future__ import annotations

import pytest

import ui.sidebar as sidebar


class _Svc:
    def __init__(self, running_after_start: bool):
        self.started, self.after = False, running_after_start

    def running(self):
        return self.started and self.after


@pytest.mark.parametrize("heavy, svc_runs, drawn", [
    (False, True, "first"),          # fresh server: the 2 s timer that brings the index modules in
    (True, True, "timed"),           # a run is going on (auto_index started it): progress every 10 s
    (True, False, "once"),           # ready (or failed): no timer
    (True, None, "once"),            # the index cannot be opened: no timer
])
def test_which_status_is_drawn(monkeypatch, heavy, svc_runs, drawn):
    svc = None if svc_runs is None else _Svc(svc_runs)
    seen = []

    def start(cat, s):
        s.started = True

    monkeypatch.setattr(sidebar, "_status_modules_imported", lambda: heavy)
    monkeypatch.setattr(sidebar, "indexer", lambda quiet=False: svc)
    monkeypatch.setattr(sidebar, "auto_index", start)
    monkeypatch.setattr(sidebar, "_first_index_status", lambda cat: seen.append("first"))
    monkeypatch.setattr(sidebar, "_index_status", lambda cat: seen.append("timed"))
    monkeypatch.setattr(sidebar, "_draw_index_status", lambda cat: seen.append("once"))
    sidebar.index_sidebar(["a track"])
    assert seen == [drawn]
    sidebar.index_sidebar([])                 # no music: no status at all
    assert seen == [drawn]


def test_the_status_modules_are_what_the_status_imports():
    """Drawing the status imports the models' loader and the indexer, not the
    model picker's selection (a server whose users only saw the Overview kept
    the fresh server's 2 s timer for good)."""
    import sys

    from ui.models import HEAVY_MODULES

    assert "core.models.selection" not in sidebar.STATUS_MODULES
    assert set(sidebar.STATUS_MODULES) < set(HEAVY_MODULES)
    assert sidebar._status_modules_imported() == all(m in sys.modules for m in sidebar.STATUS_MODULES)
