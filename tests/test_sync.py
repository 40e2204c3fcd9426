"""SyncRun's plan step on its own: which rows are kept, reused, dropped or embedded
(no decoding happens before embed(), so stand-in models suffice)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from conftest import synth, write_audio

from core.audio.cache import content_hash
from core.catalog.snapshot import ORIGIN_ADDED, ORIGIN_SCAN, IndexSnapshot, empty_rows
from core.catalog.sync import Entry, SyncRun, model_meta
from core.config import FeatureConfig


class _Model:
    """What the sync reads of a model before embedding anything."""

    labels = ["A", "B"]
    embedding_dim = 3
    cfg = FeatureConfig()

    def __init__(self, fingerprint: str = "f1"):
        self._fp = fingerprint

    def fingerprint(self) -> str:
        return self._fp


def _snapshot(files: dict[str, tuple], models: dict) -> IndexSnapshot:
    """An index state holding ``files``: track id → (path, origin)."""
    rows = []
    for tid, (path, origin) in files.items():
        st = os.stat(path)
        rows.append({"track_id": tid, "path": str(path), "digest": content_hash(path), "origin": origin,
                     "size": st.st_size, "mtime_ns": st.st_mtime_ns, "indexed_at": 0.0,
                     "tempo_bpm": 100.0})
    df = empty_rows()
    df = pd.concat([df, pd.DataFrame(rows)], ignore_index=True).fillna("")
    n = len(rows)
    emb = {"cnn": np.arange(n * 3, dtype=np.float32).reshape(n, 3)}
    probs = {"cnn": np.full((n, 2), 0.5, np.float32)}
    return IndexSnapshot(None, 1, df, emb, probs, model_meta(models))


def _files(tmp_path) -> dict:
    return {name: write_audio(tmp_path / f"{name}.wav", synth(kind, 0.5, seed=i))
            for i, (name, kind) in enumerate([("a", "tone"), ("b", "noise"), ("c", "clicks"),
                                              ("d", "tone"), ("e", "noise")])}


def test_plan_keeps_reuses_drops_and_embeds(tmp_path):
    f = _files(tmp_path)
    models = {"cnn": _Model()}
    old = _snapshot({"a": (f["a"], ORIGIN_SCAN), "b": (f["b"], ORIGIN_SCAN), "c": (f["c"], ORIGIN_SCAN),
                     "up": (f["d"], ORIGIN_ADDED)}, models)
    moved = tmp_path / "moved_b.wav"
    moved.write_bytes(f["b"].read_bytes())
    run = SyncRun(old, models, prune=ORIGIN_SCAN)
    run.plan([Entry("a", str(f["a"])), Entry("b", str(moved)), Entry("e", str(f["e"])),
              Entry("gone", str(tmp_path / "missing.wav"))])
    # The upload nobody mentioned stays first; a is unchanged; b's bytes moved and are reused.
    assert run.keep_rows == [3, 0, 1]
    assert run.keep_meta[0] is None and run.keep_meta[2]["path"] == str(moved)
    assert [t.entry.track_id for t in run.todo] == ["e"]
    assert run.stats["unchanged"] == 2 and run.stats["removed"] == 1          # c, owned by the scan
    assert run.stats["failed"] == [f"{tmp_path / 'missing.wav'}: file not found"]
    assert run.changed()


def test_plan_with_the_same_files_changes_nothing(tmp_path):
    f = _files(tmp_path)
    models = {"cnn": _Model()}
    old = _snapshot({"a": (f["a"], ORIGIN_SCAN), "up": (f["d"], ORIGIN_ADDED)}, models)
    run = SyncRun(old, models, prune=ORIGIN_SCAN)
    run.plan([Entry("a", str(f["a"]))])
    assert run.todo == [] and not run.changed()
    # Uploads are not the scan's: a sync that owns no origin keeps the scan's rows too.
    add = SyncRun(old, models, prune=None)
    add.plan([Entry("new", str(f["e"]), origin=ORIGIN_ADDED)])
    assert add.keep_rows == [0, 1] and [t.entry.track_id for t in add.todo] == ["new"]


def test_new_model_weights_plan_every_file_again(tmp_path):
    f = _files(tmp_path)
    old = _snapshot({"a": (f["a"], ORIGIN_SCAN), "up": (f["d"], ORIGIN_ADDED)}, {"cnn": _Model("f1")})
    run = SyncRun(old, {"cnn": _Model("f2")}, prune=ORIGIN_SCAN)
    run.plan([Entry("a", str(f["a"]))])
    assert not run.compatible and run.keep_rows == []
    assert sorted(t.entry.track_id for t in run.todo) == ["a", "up"]
    up = next(t for t in run.todo if t.entry.track_id == "up")
    assert up.existed and up.entry.origin == ORIGIN_ADDED       # re-embedded as it was stored
    assert run.changed()
