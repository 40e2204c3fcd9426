"""RecommendViews: one set of typed, bounded, thread-safe derived views per snapshot."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest

from core.catalog.index import CatalogIndex
from core.recommend import search
from core.recommend.methods import recommend
from core.recommend.views import BoundedMemo, RecommendViews, views_of

LABELS = ["A", "B"]


def _index(n: int = 30, seed: int = 0, dims: tuple[int, int] = (6, 4)) -> CatalogIndex:
    rng = np.random.default_rng(seed)
    rows = [{"track_id": f"t{i}", "genre": LABELS[i % 2], "artist": f"Artist {i % 5}",
             "title": f"Song {i}", "digest": f"d{i}"} for i in range(n)]
    emb = {"cnn": 3.0 + rng.standard_normal((n, dims[0])), "crnn": rng.standard_normal((n, dims[1]))}
    p = rng.dirichlet([1, 1], n).astype(np.float32)
    probs = {"cnn": p, "crnn": p[:, ::-1].copy()}
    return CatalogIndex.from_arrays(rows, emb, probs, {"cnn": LABELS, "crnn": LABELS[::-1]})


def test_one_set_of_views_per_snapshot():
    idx = _index()
    snap = idx.snapshot()
    views = views_of(idx)
    assert views is views_of(snap) and views.snapshot is snap
    other = _index(seed=1)
    assert views_of(other) is not views
    # A write swaps in a new snapshot, which gets new views; the old ones still serve the old rows.
    assert idx.remove([f"t{i}" for i in range(10, 30)]) == 20
    assert views_of(idx) is not views and len(views_of(idx).song_keys()) == 10
    assert len(views.song_keys()) == 30 and views.space("cnn", "cosine").shape == (30, 6)


def test_views_go_with_their_snapshot():
    idx = _index()
    ref = weakref.ref(views_of(idx))
    assert ref() is not None
    del idx
    gc.collect()
    assert ref() is None


def test_spaces_follow_their_definition():
    idx = _index()
    v = views_of(idx)
    e = idx.embeddings("cnn")
    np.testing.assert_allclose(v.space("cnn", "cosine"), search.normalise(e), rtol=1e-6)
    z = v.space("cnn", "cosine", standardise=True)
    np.testing.assert_allclose(z, search.normalise((e - e.mean(0)) / e.std(0)), rtol=1e-4, atol=1e-6)
    scaled = v.space("cnn", "euclidean")
    assert np.linalg.norm(scaled, axis=1).mean() == pytest.approx(1.0, rel=1e-5)
    assert v.space("cnn", "pnorm") is scaled                   # every distance shares one space
    ens = v.space("ensemble", "cosine")
    np.testing.assert_allclose(ens, search.normalise(np.hstack([v.space("cnn", "cosine"),
                                                                v.space("crnn", "cosine")])), rtol=1e-6)
    # crnn's labels run the other way: the ensemble aligns them by name before averaging.
    np.testing.assert_allclose(v.genre_probs("ensemble"), idx.probs("cnn"), rtol=1e-6)


def test_keyed_views_are_bounded():
    idx = _index()
    v = views_of(idx)
    first = v.space("cnn", "cosine")
    for model in ("cnn", "crnn", "ensemble", "cnn+crnn"):
        for distance in ("cosine", "euclidean"):
            for standardise in (False, True):
                v.space(model, distance, standardise)
    for p in np.linspace(1, 6, 2 * RecommendViews.MAX_CENTRES):
        v.centres("crnn", "pnorm", False, float(p))
    sizes = v.sizes()
    assert 0 < sizes["spaces"] <= RecommendViews.MAX_SPACES
    assert sizes["centres"] == RecommendViews.MAX_CENTRES
    # An evicted view is rebuilt with the same values.
    np.testing.assert_array_equal(v.space("cnn", "cosine"), first)


def test_bounded_memo_keeps_the_most_recently_used():
    memo: BoundedMemo[str, int] = BoundedMemo(2)
    assert memo.get("a", lambda: 1) == 1 and memo.get("b", lambda: 2) == 2
    assert memo.get("a", lambda: -1) == 1          # a hit refreshes "a"
    memo.get("c", lambda: 3)                       # evicts "b", the least recently used
    assert memo.peek("b") is None and memo.peek("a") == 1 and len(memo) == 2
    assert memo.get("b", lambda: 20) == 20 and memo.misses == 4


def test_a_failed_build_is_retried_and_leaves_nothing():
    memo: BoundedMemo[str, int] = BoundedMemo(2)

    def broken() -> int:
        raise ValueError("no")

    with pytest.raises(ValueError):
        memo.get("a", broken)
    assert memo.peek("a") is None and len(memo) == 0 and memo._building == {}
    assert memo.get("a", lambda: 1) == 1


def test_concurrent_first_requests_build_a_view_once():
    idx = _index(n=400, dims=(64, 32))
    v = views_of(idx)
    start = threading.Barrier(8)
    got, errors = [], []

    def ask() -> None:
        try:
            start.wait()
            got.append(v.space("ensemble", "cosine", True))
            recommend(idx, ["t0", "t1"], k=3, model="ensemble", standardise=True)
        except Exception as exc:  # noqa: BLE001 — collected, asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(got) == 8 and all(x is got[0] for x in got)
    assert v._spaces.misses == 1           # the ensemble only: its parts were not asked for directly


def test_recommend_answers_from_the_snapshot_it_was_given():
    idx = _index()
    before = [r.track_id for r in recommend(idx, ["t0", "t2"], k=5, model="cnn")]
    snap = idx.snapshot()
    assert idx.remove([before[0]]) == 1
    # The index answers from its new snapshot (its own views: the removed track is gone) ...
    assert [r.track_id for r in recommend(idx, ["t0", "t2"], k=5, model="cnn")][:4] == before[1:]
    # ... while the old snapshot still gives the old answer.
    assert [r.track_id for r in recommend(snap, ["t0", "t2"], k=5, model="cnn")] == before
