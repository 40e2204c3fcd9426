"""benchmarks.invariance_probe: the nuisance directions and the neighbour
vote its two probes are built from."""

from __future__ import annotations

import numpy as np

from benchmarks.invariance_probe import neighbour_vote, nuisance_directions


def test_nuisance_directions_find_the_recording_chain_shared_by_genres():
    rng = np.random.default_rng(0)
    offset = np.array([0.0, 3.0, 0.0, 0.0])          # source "b" sits 3 up axis 1 in every genre
    genre_axis = np.eye(4)[[0, 2]] * 4               # genres apart along axes 0 and 2
    z, y, source = [], [], []
    for g in (0, 1):
        for s in ("a", "b"):
            z.append(rng.normal(size=(30, 4)) * 0.3 + genre_axis[g] + (offset if s == "b" else 0))
            y += [g] * 30
            source += [s] * 30
    z, y, source = np.concatenate(z), np.array(y), np.array(source)
    assert nuisance_directions(z, y, source, k=8).shape == (2, 4)   # one gap per genre: rank ≤ 2
    u = nuisance_directions(z, y, source, k=1)
    assert abs(u[0, 1]) > 0.99                        # the leading one is the offset's axis
    projected = z - (z @ u.T) @ u
    gap = projected[source == "b"].mean(0) - projected[source == "a"].mean(0)
    assert np.abs(gap).max() < 0.2                    # the chain is gone…
    assert projected[y == 1, 2].mean() - projected[y == 0, 2].mean() > 3.5   # …the genre is not


def test_nuisance_directions_need_two_sources_with_enough_tracks_in_a_genre():
    z = np.random.default_rng(1).normal(size=(12, 3))
    y = np.array([0] * 6 + [1] * 6)
    source = np.array(["a"] * 6 + ["a"] * 2 + ["b"] * 4)    # genre 1: "a" has only 2 tracks
    assert nuisance_directions(z, y, source, k=3).shape == (0, 3)
    assert nuisance_directions(z, y, source, k=3, min_cell=2).shape == (1, 3)


def test_neighbour_vote_counts_the_nearest_tracks_and_balances_genres():
    zt = np.array([[1.0, 0.0], [0.9, 0.1], [0.95, 0.05], [0.0, 1.0]])
    yt = np.array([0, 0, 0, 1])
    vote = np.exp(neighbour_vote(zt, yt, np.array([[1.0, 0.02], [0.1, 1.0]]), k=1, n_genres=3))
    assert np.allclose(vote.sum(1), 1.0)
    assert vote[0].argmax() == 0 and vote[1].argmax() == 1
    assert np.isclose(vote[0, 2], 0.02 / 3)                 # an unvoted genre keeps the floor
    both = np.exp(neighbour_vote(zt, yt, np.array([[0.7, 0.7]]), k=4, n_genres=2))
    assert np.allclose(both, 0.5)                           # 3 votes of 1/3 against 1 vote of 1
