"""core.recommend.study_trials: the blind, shuffled trial list."""

from __future__ import annotations

import numpy as np
import pytest

from core.recommend.study_trials import DECOY, METHOD1, METHOD2, StudyError, build_trials

CATALOG = [f"t{i:03d}" for i in range(200)]
SEEDS = CATALOG[:5]
M1 = CATALOG[10:20]
M2 = CATALOG[15:25]   # five tracks in common with M1


def test_build_trials_mixes_methods_and_decoys():
    trials = build_trials("p1", SEEDS, M1, M2, CATALOG, rng=0)
    by_track = {t.track_id: t for t in trials}
    assert [t.position for t in trials] == list(range(len(trials)))
    assert len(by_track) == len(trials)                      # each track once
    assert {t for t in by_track if METHOD1 in by_track[t].ranks} == set(M1)
    assert {t for t in by_track if METHOD2 in by_track[t].ranks} == set(M2)
    assert by_track["t015"].methods == (METHOD1, METHOD2)    # both recommend it: one trial
    assert by_track["t015"].ranks == {METHOD1: 6, METHOD2: 1}
    decoys = [t for t in trials if t.methods == (DECOY,)]
    assert len(decoys) == 10                                  # as many as the longer list
    assert not {t.track_id for t in decoys} & (set(M1) | set(M2) | set(SEEDS))
    assert sorted(t.ranks[DECOY] for t in decoys) == list(range(1, 11))
    assert len(trials) == 15 + 10


def test_build_trials_drops_seeds_and_duplicates():
    trials = build_trials("p", SEEDS, [SEEDS[0], "a", "a", "b"], ["b", SEEDS[1], "c"],
                          ["a", "x", "x", SEEDS[2]], rng=0, n_decoys=5)
    ranks = {t.track_id: t.ranks for t in trials}
    assert ranks == {"a": {METHOD1: 1}, "b": {METHOD1: 2, METHOD2: 1}, "c": {METHOD2: 2},
                     "x": {DECOY: 1}}


def test_build_trials_is_reproducible_and_shuffled():
    a = build_trials("p", SEEDS, M1, M2, CATALOG, rng=7)
    assert a == build_trials("p", SEEDS, M1, M2, CATALOG, rng=np.random.default_rng(7))
    assert [t.track_id for t in a] != [t.track_id for t in build_trials("p", SEEDS, M1, M2,
                                                                        CATALOG, rng=8)]
    # Over many participants, no method sits systematically earlier in the list.
    mean_pos = {m: [] for m in (METHOD1, METHOD2, DECOY)}
    for seed in range(300):
        trials = build_trials("p", SEEDS, M1, M2, CATALOG, rng=seed)
        for m in mean_pos:
            mean_pos[m].append(np.mean([t.position for t in trials if m in t.ranks]))
    centre = (len(trials) - 1) / 2
    for m, values in mean_pos.items():
        assert abs(np.mean(values) - centre) < 0.6, (m, np.mean(values))


def test_build_trials_refuses_an_empty_method():
    with pytest.raises(StudyError, match="Method 2 .* gave no tracks"):
        build_trials("p", SEEDS, M1, SEEDS[:3], CATALOG, rng=0)
