"""CatalogIndex: round trip, incremental re-index, uploads, crash safety, CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_dataset, synth, write_audio

from core.catalog.index import CatalogIndex
from core.catalog.pipeline import embed_paths
from core.catalog.snapshot import TABLE_COLUMNS, CatalogError
from core.catalog.store import CURRENT
from core.datasets import read_dataset
from core.models.artifacts import load_models

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def models(tiny_artifacts):
    return load_models(tiny_artifacts)


@pytest.fixture(scope="module")
def built(tmp_path_factory, models):
    """A 6-track data folder and its index, built once (tests work on copies)."""
    base = tmp_path_factory.mktemp("idx")
    data = make_dataset(base / "data", per_genre=2)
    stats = CatalogIndex.open(base / "index").update(read_dataset(data), models)
    return base, stats


@pytest.fixture
def work(built, tmp_path):
    """Fresh copies of the built data folder and index."""
    base, _ = built
    shutil.copytree(base / "data", tmp_path / "data")
    shutil.copytree(base / "index", tmp_path / "index")
    return tmp_path / "data", tmp_path / "index"


def test_round_trip(built, models):
    base, stats = built
    assert stats["added"] == stats["embedded"] == 6 and stats["failed"] == []
    idx = CatalogIndex.open(base / "index")
    assert len(idx) == 6
    assert idx.models == ["cnn", "crnn"] and idx.labels == ["Tones", "Noise", "Clicks"]
    t = idx.table()
    assert list(t.columns) == TABLE_COLUMNS + ["pred_cnn", "pred_crnn"]
    assert sorted(t["genre"]) == sorted(["Tones", "Noise", "Clicks"] * 2)
    for m in ("cnn", "crnn"):
        e, p = idx.embeddings(m), idx.probs(m)
        assert e.dtype == np.float32 and e.shape == (6, models[m].embedding_dim)
        assert p.shape == (6, 3)
        assert list(t[f"pred_{m}"]) == [idx.labels[i] for i in p.argmax(1)]
    # Rows stay aligned with the vectors: re-embed one track directly and compare.
    row = t.index[t.track_id == "noise_01"][0]
    direct = next(embed_paths([t.path[row]], models))
    np.testing.assert_allclose(idx.embeddings("crnn")[row], direct.embedding["crnn"], rtol=1e-4, atol=1e-5)
    # The store is inspectable with plain SQLite.
    snap = base / "index" / (base / "index" / CURRENT).read_text().strip()
    con = sqlite3.connect(snap / "tracks.sqlite")
    n, = con.execute("SELECT COUNT(*) FROM tracks WHERE genre = 'Noise'").fetchone()
    con.close()
    assert n == 2
    assert np.load(snap / "crnn.emb.npy").shape == idx.embeddings("crnn").shape


def test_open_without_index_is_empty(tmp_path):
    idx = CatalogIndex.open(tmp_path / "nothing")
    assert len(idx) == 0 and idx.models == [] and list(idx.table().columns) == TABLE_COLUMNS
    assert not (tmp_path / "nothing").exists()     # opening never writes
    with pytest.raises(CatalogError, match="not in the index"):
        idx.embeddings("crnn")


def test_incremental_reindex(work, models):
    data, index = work
    tracks = read_dataset(data)
    calls = []
    # The copied files have new paths but known content: reused, not decoded.
    s = CatalogIndex.open(index).update(tracks, models, progress=lambda d, n: calls.append((d, n)))
    assert s["embedded"] == 0 and len(CatalogIndex.open(index)) == 6
    s = CatalogIndex.open(index).update(tracks, models)
    assert s["embedded"] == 0 and s["unchanged"] == 6 and s["added"] == s["removed"] == 0
    version = CatalogIndex.open(index).version
    assert CatalogIndex.open(index).update(tracks, models)["embedded"] == 0
    assert CatalogIndex.open(index).version == version     # nothing changed: nothing written

    # Change one file's content: only it is re-processed, and its vectors change.
    before = CatalogIndex.open(index)
    row = int(np.flatnonzero(before.table().track_id == "tones_01")[0])
    old = before.embeddings("crnn")[row].copy()
    write_audio(data / "audio" / "Tones" / "tones_01.mp3", synth("chirp", 3.0))
    calls.clear()
    s = CatalogIndex.open(index).update(tracks, models, progress=lambda d, n: calls.append((d, n)))
    assert s["embedded"] == 1 and s["updated"] == 1 and s["unchanged"] == 5
    assert calls[-1] == (1, 1)
    after = CatalogIndex.open(index)
    row = int(np.flatnonzero(after.table().track_id == "tones_01")[0])
    assert not np.allclose(after.embeddings("crnn")[row], old)

    # A touched but identical file is not re-embedded.
    os.utime(data / "audio" / "Noise" / "noise_00.mp3", (1, 1))
    assert CatalogIndex.open(index).update(tracks, models)["embedded"] == 0

    # Tracks no longer listed, or whose file vanished, drop out.
    (data / "audio" / "Clicks" / "clicks_00.mp3").unlink()
    s = CatalogIndex.open(index).update([t for t in tracks if t.track_id != "noise_01"], models)
    assert s["removed"] == 2 and len(s["failed"]) == 1 and "clicks_00.mp3" in s["failed"][0]
    assert set(CatalogIndex.open(index).table().track_id) == {"tones_00", "tones_01", "noise_00", "clicks_01"}


def test_new_model_weights_reembed_everything(work, tiny_artifacts, tmp_path):
    import torch

    from core.models import build_model
    from core.models.artifacts import save_model, update_manifest

    data, index = work
    torch.manual_seed(123)
    other = tmp_path / "arts"
    for name in ("cnn", "crnn"):
        save_model(build_model(name, ["Tones", "Noise", "Clicks"]), other)
    update_manifest(other)
    idx = CatalogIndex.open(index)
    assert idx.is_current(load_models(tiny_artifacts))
    new = load_models(other)
    assert not idx.is_current(new)
    s = idx.update(read_dataset(data), new)
    assert s["embedded"] == 6 and CatalogIndex.open(index).is_current(new)


def test_add_files(work, models, tmp_path):
    data, index = work
    up = write_audio(tmp_path / "my song.wav", synth("chirp", 3.0, seed=3))
    bad = tmp_path / "notes.mp3"
    bad.write_text("not audio")
    idx = CatalogIndex.open(index)
    s = idx.add_files([up, bad], models, genre="Tones")
    assert s["added"] == 1 and len(s["failed"]) == 1 and "\n" not in s["failed"][0]
    tid = s["track_ids"][0]
    assert tid.startswith("library_") and s["track_ids"][1] is None
    t = CatalogIndex.open(index).table().set_index("track_id")
    assert t.loc[tid, "source"] == "library" and t.loc[tid, "title"] == "my song"
    assert t.loc[tid, "genre"] == "Tones"
    # Same bytes again: one track; a later data-folder scan keeps the upload.
    assert CatalogIndex.open(index).add_files([up], models)["embedded"] == 0
    CatalogIndex.open(index).update(read_dataset(data), models)
    idx = CatalogIndex.open(index)
    assert len(idx) == 7 and tid in idx
    assert idx.remove([tid]) == 1 and tid not in CatalogIndex.open(index)
    # An upload whose file is deleted drops out at the next sync.
    tid2 = CatalogIndex.open(index).add_files([up], models)["track_ids"][0]
    up.unlink()
    s = CatalogIndex.open(index).update(read_dataset(data), models)
    assert s["removed"] == 1 and tid2 not in CatalogIndex.open(index)


_KILL_MID_WRITE = textwrap.dedent("""
    import sys, time
    import numpy as np
    import core.catalog.index as ci
    import core.catalog.store as store
    real = store._write_npy
    def slow(path, array):
        # Write half a file, tell the parent, then hang until killed.
        with open(path, "wb") as f:
            f.write(b"\\x93NUMPY" + b"x" * 100)
            f.flush()
        print("WRITING", flush=True)
        time.sleep(60)
    store._write_npy = slow
    idx = ci.CatalogIndex.open(sys.argv[1])
    idx.remove(["tones_00", "noise_00"])
""")


def _run_until(script: str, args: list[str], marker: str, timeout: float = 120) -> None:
    """Start a Python subprocess, wait for ``marker`` on its stdout, SIGKILL it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"subprocess ended early: {proc.stderr.read()[-2000:]}")
            if line.strip() == marker:
                break
        else:
            raise AssertionError("marker never seen")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


def test_crash_mid_write_keeps_previous_index(work, models):
    data, index = work
    before = CatalogIndex.open(index)
    _run_until(_KILL_MID_WRITE, [str(index)], "WRITING")
    assert any(p.name.startswith(".tmp-") for p in index.iterdir())   # the half-written snapshot
    after = CatalogIndex.open(index)
    assert len(after) == 6 and after.version == before.version
    pd_eq = after.table().equals(before.table())
    assert pd_eq
    np.testing.assert_array_equal(after.embeddings("crnn"), before.embeddings("crnn"))
    # The next writer works and sweeps the leftover.
    assert after.remove(["tones_00"]) == 1
    assert len(CatalogIndex.open(index)) == 5
    assert not any(p.name.startswith(".tmp-") for p in index.iterdir())


_KILL_MID_UPDATE = textwrap.dedent("""
    import sys
    from core.models.artifacts import load_models
    from core.datasets import read_dataset
    from core.catalog.index import CatalogIndex
    models = load_models(sys.argv[3])
    def progress(done, total):
        print(f"DONE {done}", flush=True)
    CatalogIndex.open(sys.argv[2]).update(read_dataset(sys.argv[1]), models, progress=progress,
                                          checkpoint=2, batch_size=1)
""")


def test_crash_mid_update_resumes(models, tiny_artifacts, tmp_path):
    data = make_dataset(tmp_path / "data", per_genre=2)
    index = tmp_path / "index"
    _run_until(_KILL_MID_UPDATE, [str(data), str(index), str(tiny_artifacts)], "DONE 3")
    partial = CatalogIndex.open(index)              # readable, holds the checkpointed tracks
    assert 2 <= len(partial) < 6
    s = CatalogIndex.open(index).update(read_dataset(data), models)
    assert s["embedded"] == 6 - len(partial) and s["unchanged"] == len(partial)
    assert len(CatalogIndex.open(index)) == 6


def test_cli_index_and_recommend(work, tiny_artifacts, capsys):
    from core.cli.main import main

    data, out = work
    assert main(["index", "--data", str(data), "--out", str(out), "--artifacts", str(tiny_artifacts)]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["tracks"] == 6 and first["failed"] == []
    assert main(["index", "--data", str(data), "--out", str(out), "--artifacts", str(tiny_artifacts)]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["embedded"] == 0 and again["unchanged"] == 6
    assert main(["recommend", "--index", str(out), "--seeds", "tones_00,tones_01", "--method", "genre",
                 "--k", "3"]) == 0
    res = json.loads(capsys.readouterr().out)
    ids = [r["track_id"] for r in res["recommendations"]]
    assert len(ids) == 3 and not {"tones_00", "tones_01"} & set(ids)
    assert {"score", "similarity", "genre_match", "reason", "predicted_genre"} <= set(res["recommendations"][0])
    assert main(["recommend", "--index", str(out), "--seeds", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: track 'nope' is not in the catalog"
