"""core.serve: analyses take turns, the memory trimmer frees cycles; the shared
Catalog is immutable; the study store's revision keys its cached results."""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
import weakref

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
