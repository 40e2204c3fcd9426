"""core.files: atomic writes leave the old file or the new one, never part of either."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from core.files import atomic_write, atomic_write_text, fsync_dir, sha256_of


def test_sha256_of_file_equals_sha256_of_its_bytes(tmp_path):
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)   # spans several read blocks
    p = tmp_path / "x.bin"
    p.write_bytes(data)
    assert sha256_of(p) == sha256_of(data) == hashlib.sha256(data).hexdigest()


def test_atomic_write_text_replaces_whole_file(tmp_path):
    p = tmp_path / "sub" / "a.csv"
    atomic_write_text(p, "old\n")
    atomic_write_text(p, "new,ünïcode\n")
    assert p.read_text(encoding="utf-8") == "new,ünïcode\n"
    assert [q.name for q in p.parent.iterdir()] == ["a.csv"]   # no temporary file left


def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "m.npy"
    atomic_write(p, lambda f: np.save(f, np.arange(3)))

    def broken(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(p, broken)
    assert np.load(p).tolist() == [0, 1, 2]
    assert [q.name for q in tmp_path.iterdir()] == ["m.npy"]


def test_fsync_dir_ignores_a_missing_directory(tmp_path):
    fsync_dir(tmp_path)                  # a real directory: synced
    fsync_dir(tmp_path / "missing")      # one that is not there: no error


def test_atomic_write_gives_the_mode_a_plain_write_would(tmp_path):
    import os

    plain, atomic = tmp_path / "plain.txt", tmp_path / "atomic.txt"
    plain.write_text("x")
    atomic_write_text(atomic, "x")
    assert atomic.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o666 & ~_current_umask()
    os.chmod(atomic, 0o640)     # a file that exists keeps its own mode
    atomic_write_text(atomic, "y")
    assert atomic.stat().st_mode & 0o777 == 0o640


def _current_umask() -> int:
    import os

    old = os.umask(0)
    os.umask(old)
    return old


def test_safetensors_bytes_depend_only_on_tensors_and_metadata(tmp_path):
    import json
    import struct

    from safetensors import safe_open
    from safetensors.numpy import load_file, save

    from core.files import canonical_safetensors, write_safetensors

    tensors = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.arange(3, dtype=np.int64)}
    meta = {f"k{i}": str(i) for i in range(12)}
    datas = [save(tensors, metadata=meta) for _ in range(6)]
    assert len(set(datas)) > 1       # the writer's own key order changes from call to call
    canon = {canonical_safetensors(d) for d in datas}
    assert len(canon) == 1           # one byte string, whatever order the writer chose
    data = canon.pop()
    n = struct.unpack("<Q", data[:8])[0]
    assert n % 8 == 0 and list(json.loads(data[8:8 + n])["__metadata__"]) == sorted(meta)
    path = write_safetensors(tmp_path / "m.safetensors", datas[0])
    assert path.read_bytes() == data and canonical_safetensors(data) == data
    got = load_file(str(path))
    assert all(np.array_equal(got[k], v) for k, v in tensors.items())
    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata() == meta
    unicode = canonical_safetensors(save(tensors, metadata={"é": "ünï", "a": "1"}))
    with open(tmp_path / "u.safetensors", "wb") as f:
        f.write(unicode)
    with safe_open(str(tmp_path / "u.safetensors"), framework="numpy") as f:
        assert f.metadata() == {"é": "ünï", "a": "1"}
