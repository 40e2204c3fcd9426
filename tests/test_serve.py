"""core.serve: analyses take turns, the memory trimmer frees cycles; the shared
Catalog is immutable; the study store's revision keys its cached results."""

from __future__ import annotations

import dataclasses
import gc
import json
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core import serve
from core.catalog.sources import Catalog
from core.datasets import Track
from core.recommend import study


def test_analyses_take_turns():
    """No more analyses run at once than the process has slots."""
    inside, most, lock = 0, 0, threading.Lock()

    def work():
        nonlocal inside, most
        with serve.analysis_slot():
            with lock:
                inside += 1
                most = max(most, inside)
            time.sleep(0.05)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert most == serve.ServeConfig().slots() and inside == 0


def test_trim_period_setting(monkeypatch):
    monkeypatch.setenv("GENRE_SERVE_TRIM_EVERY_S", "2.5")
    assert serve.ServeConfig().trim_every_s == 2.5
    for bad in ("soon", "0", "-1", "nan"):
        monkeypatch.setenv("GENRE_SERVE_TRIM_EVERY_S", bad)
        with pytest.raises(serve.ServeError, match="GENRE_SERVE_TRIM_EVERY_S"):
            serve.ServeConfig()
    monkeypatch.delenv("GENRE_SERVE_TRIM_EVERY_S")
    assert serve.ServeConfig().trim_every_s == 30.0


def test_slots_follow_the_setting():
    assert serve.ServeConfig(analyses_at_once=3).slots() == 3
    assert serve.ServeConfig().slots() >= 1


class _Node:
    def __init__(self):
        self.other = self       # a reference cycle: only the collector frees it


def test_trimmer_collects_cycles_and_stops():
    was = gc.isenabled()
    gc.disable()                # only the trimmer may collect here
    try:
        ref = weakref.ref(_Node())
        assert ref() is not None
        trimmer = serve.MemoryTrimmer(every_s=0.05)
        deadline = time.monotonic() + 30
        while (ref() is not None or trimmer.runs < 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ref() is None and trimmer.runs >= 1
        trimmer.stop()
        assert not trimmer.alive()
    finally:
        if was:
            gc.enable()


def test_catalog_is_immutable(tmp_path):
    t = Track(track_id="a", path=tmp_path / "a.mp3", genre="Pop")
    cat = Catalog(data_dirs=[tmp_path], library_dir=tmp_path, tracks=[t])
    assert cat.tracks == (t,) and isinstance(cat.data_dirs, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cat.tracks = ()
    assert cat.all_tracks == [t] and len(cat) == 1


def test_study_revision_changes_with_every_write(tmp_path):
    store = study.StudyStore(tmp_path / "s.sqlite")
    r0 = store.revision()
    ids = [f"t{i}" for i in range(20)]
    pid = store.enroll(ids[:5], ids[5:8], ids[8:11], ids, rng=np.random.default_rng(0))
    r1 = store.revision()
    store.answer(pid, store.trials(pid)[0].track_id, True)
    r2 = store.revision()
    store.answer(pid, store.trials(pid)[0].track_id, False)     # a change of mind is a write too
    assert len({r0, r1, r2, store.revision()}) == 4


def test_heap_stats_see_a_large_block():
    before = serve.heap_stats()
    if before is None:
        pytest.skip("not glibc")
    block = bytearray(64 * 2**20)
    held = serve.heap_stats()
    # Above glibc's mmap threshold, so usually a block of its own ("mmapped").
    # But when earlier work left a free chunk of ≥ 64 MB inside the heap, malloc
    # serves it from there ("in_use"): the full suite did that once.
    grown = (held["mmapped"] + held["in_use"]) - (before["mmapped"] + before["in_use"])
    assert grown >= 60
    assert set(held) == {"heap", "in_use", "free", "mmapped"}
    del block


HEAP_HOLE = """
import json
from core import serve
blocks = [bytearray(100_000) for _ in range(700)]   # 70 MB of heap, each below the mmap threshold
pin = bytearray(100_000)                             # above them: the heap cannot shrink past it
del blocks                                           # one free chunk of ~70 MB inside the heap
before = serve.heap_stats()
block = bytearray(64 * 2**20)                        # served from that chunk, not mmapped
print(json.dumps([before, serve.heap_stats()]))
"""


def test_heap_stats_see_a_large_block_taken_from_inside_the_heap():
    """In a fresh interpreter, so that the heap's layout is known."""
    if serve.heap_stats() is None:
        pytest.skip("not glibc")
    r = subprocess.run([sys.executable, "-c", HEAP_HOLE], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr
    before, held = json.loads(r.stdout)
    assert held["in_use"] - before["in_use"] >= 60 and held["free"] < before["free"] - 60
    assert held["mmapped"] == before["mmapped"]


def test_trimmer_runs_its_hook_and_writes_a_probe_line(tmp_path):
    probe, calls = tmp_path / "probe.jsonl", []
    trimmer = serve.MemoryTrimmer(every_s=0.05, probe=str(probe), before=lambda: calls.append(1),
                                  report=lambda: {"sessions": 3})
    deadline = time.monotonic() + 30
    while trimmer.runs < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    trimmer.stop()
    import json

    lines = [json.loads(x) for x in probe.read_text().splitlines()]
    assert len(calls) >= 2 and len(lines) >= 1
    assert lines[0]["rss_mb"] > 0 and lines[0]["sessions"] == 3 and lines[0]["gc_objects"] > 0


def test_a_failing_hook_does_not_stop_the_trimmer():
    def boom():
        raise RuntimeError("the server is stopping")

    trimmer = serve.MemoryTrimmer(every_s=0.05, before=boom)
    deadline = time.monotonic() + 30
    while trimmer.runs < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trimmer.runs >= 2 and trimmer.alive()
    trimmer.stop()


def test_make_run_and_the_bench_server_share_the_server_env(monkeypatch):
    from conftest import ROOT

    from benchmarks import browser

    make = (ROOT / "Makefile").read_text()
    run_recipe = make.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    for k, v in serve.SERVER_ENV.items():
        assert f"{k}={v} $(BIN)/streamlit run" in run_recipe
    seen = {}

    class Exited:
        returncode = 1

        def __init__(self, cmd, env, **kw):
            seen.update(env)

        def poll(self):
            return 1

        def wait(self, timeout=None):
            return 1

    monkeypatch.setattr(browser.subprocess, "Popen", Exited)
    with pytest.raises(RuntimeError, match="exited"):
        with browser.streamlit_server({"GENRE_X": "1"}, timeout=5):
            pass
    assert {k: seen[k] for k in serve.SERVER_ENV} == serve.SERVER_ENV and seen["GENRE_X"] == "1"


class _Session:
    def __init__(self, sid):
        self.id, self.shut = sid, 0

    def shutdown(self):
        self.shut += 1


class _Manager:
    """The part of Streamlit's session manager ui.serve uses, with a real session storage."""

    def __init__(self, ttl_s):
        from streamlit.runtime.memory_session_storage import MemorySessionStorage

        self._session_storage = MemorySessionStorage(ttl_seconds=ttl_s)
        self.active = set()

    def is_active_session(self, sid):
        return sid in self.active

    def store(self, session):
        from streamlit.runtime.session_manager import SessionInfo

        self._session_storage.save(SessionInfo(client=None, session=session))


def test_sessions_dropped_by_streamlit_are_shut_down_resumed_ones_kept():
    """Streamlit's session storage drops an expired session without shutting it down
    (its uploads and media stayed in memory); ui.serve makes it shut them down."""
    from ui.serve import release_dropped_sessions

    mgr = _Manager(ttl_s=0.2)
    a, b, c = _Session("a"), _Session("b"), _Session("c")
    mgr.store(a)
    time.sleep(0.3)
    mgr.store(b)                                   # Streamlit reaps the expired "a" here…
    assert a.shut == 0                             # …without shutting it down (its files leak)
    assert release_dropped_sessions(mgr) and release_dropped_sessions(mgr)   # installed once
    mgr.store(c)
    time.sleep(0.3)
    assert len(mgr._session_storage._cache.expire()) == 2     # what the trimmer's hook does
    assert (b.shut, c.shut) == (1, 1)
    d = _Session("d")
    mgr.store(d)
    mgr.active.add("d")                            # the browser reconnected: Streamlit resumes it…
    mgr._session_storage.delete("d")               # …and takes it out of the storage
    assert d.shut == 0


def test_release_needs_streamlits_storage():
    from ui.serve import close_expired_sessions, release_dropped_sessions

    assert not release_dropped_sessions(object())
    assert close_expired_sessions() is None        # no server in this process


def test_a_bad_trimmer_setting_is_one_line_on_the_page(app, monkeypatch):
    from conftest import no_exceptions, texts

    from ui import serve as ui_serve

    ui_serve._trimmer.clear()
    monkeypatch.setenv("GENRE_SERVE_TRIM_EVERY_S", "soon")
    try:
        app.run()
        no_exceptions(app)
        assert "GENRE_SERVE_TRIM_EVERY_S must be a number of seconds above 0, not 'soon'" in texts(app)
        assert app.title[0].value == "Genre-aware music recommender"      # the page still draws
    finally:
        ui_serve._trimmer.clear()


def test_a_bad_trimmer_setting_does_not_fail_the_import():
    """The analysis slots are sized at import without the trimmer's settings, so
    a bad GENRE_SERVE_TRIM_EVERY_S reaches housekeeping()'s one line instead of
    failing the app's (and the indexer's) import of core.serve."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "GENRE_SERVE_TRIM_EVERY_S": "soon"}
    r = subprocess.run([sys.executable, "-c", "import core.serve as s; print(s.analysis_slots())"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and int(r.stdout) >= 1, r.stderr
    assert serve.analysis_slots(3) == 3 and serve.analysis_slots() == serve.ServeConfig().slots()


def test_the_c_library_is_looked_up_once(monkeypatch):
    """trim_memory and heap_stats run every trimmer period: the C library is
    found once per process, not with an ``ldconfig`` run each time."""
    import ctypes.util

    serve._libc()
    calls = []
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: calls.append(name) or "libc.so.6")
    serve.trim_memory()
    serve.heap_stats()
    assert calls == []
    assert serve._libc() is serve._libc()


def test_a_fragment_timer_rerun_does_not_replace_a_finishing_run(monkeypatch):
    """keep_finishing_runs: a fragment's timer rerun that the session's
    finishing script runner refused is dropped (the finished run's page is
    still on its way); every other rerun starts a runner as before."""
    from streamlit.runtime.app_session import AppSession
    from streamlit.runtime.scriptrunner import RerunData

    from ui.serve import keep_finishing_runs

    started = []
    monkeypatch.setattr(AppSession, "_create_scriptrunner", lambda self, data: started.append(data))
    assert keep_finishing_runs() and keep_finishing_runs()          # installed once
    create = AppSession._create_scriptrunner
    finishing, idle = SimpleNamespace(_scriptrunner=object()), SimpleNamespace(_scriptrunner=None)
    timer = RerunData(fragment_id="status", is_auto_rerun=True)
    create(finishing, timer)
    assert started == []                                            # dropped: the old runner's page comes first
    create(idle, timer)                                             # no runner: the timer's rerun starts one
    click = RerunData(fragment_id="status")
    full = RerunData()
    create(finishing, click)                                        # a user's rerun is never dropped
    create(finishing, full)
    assert started == [timer, click, full]
