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
