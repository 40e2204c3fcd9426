"""Leave-one-source-out folds (core.training.loso) on a fixture and on the real data."""

from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_DATA, real_data

from core.datasets.track import Track
from core.training.loso import LOSOError, loso_folds


def _tracks() -> list[Track]:
    spec = [("a", "train"), ("a", "val"), ("a", "test"), ("b", "train"), ("b", "train"),
            ("b", "test"), ("c", "val"), ("c", "train")]
    return [Track(track_id=f"t{i}", path=Path(f"/x/{i}.mp3"), genre="G", split=sp, source=src)
            for i, (src, sp) in enumerate(spec)]


def test_folds_hold_out_each_source_and_never_touch_test():
    tracks = _tracks()
    folds = loso_folds(tracks)
    assert [f.held_out for f in folds] == ["a", "b", "c"]
    by = {f.held_out: f for f in folds}
    assert by["a"].val.tolist() == [0, 1]
    assert by["a"].train.tolist() == [3, 4, 6, 7]
    assert by["b"].val.tolist() == [3, 4]
    assert by["c"].train.tolist() == [0, 1, 3, 4]
    test_idx = {i for i, t in enumerate(tracks) if t.split == "test"}
    for f in folds:
        assert not test_idx & set(f.train.tolist()) and not test_idx & set(f.val.tolist())
        assert not set(f.train.tolist()) & set(f.val.tolist())
        assert {tracks[i].source for i in f.val} == {f.held_out}
        assert f.held_out not in {tracks[i].source for i in f.train}
    # every non-test track is validated exactly once
    vals = np.concatenate([f.val for f in folds])
    assert sorted(vals.tolist()) == sorted(set(range(len(tracks))) - test_idx)


def test_too_few_sources_or_missing_source_raise():
    one = [t for t in _tracks() if t.source == "a"]
    with pytest.raises(LOSOError, match="sources"):
        loso_folds(one)
    bad = _tracks() + [Track(track_id="x", path=Path("/x/x.mp3"), genre="G", split="train")]
    with pytest.raises(LOSOError, match="no source"):
        loso_folds(bad)


@real_data
def test_real_data_has_three_folds():
    from core.datasets import read_dataset

    tracks = [t for d in REAL_DATA for t in read_dataset(d)]
    folds = loso_folds(tracks)
    assert len(folds) == 3
    assert sum(len(f.val) for f in folds) == sum(t.split != "test" for t in tracks)
