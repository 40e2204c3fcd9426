"""Background indexing and snapshots: readers never see a torn index while a
writer adds tracks, and the shared object is never changed in place."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
from conftest import synth, write_audio

from core.catalog.index import CatalogIndex, IndexSnapshot
from core.catalog.indexer import BackgroundIndexer
from core.catalog.sources import read_catalog
from core.datasets import Track, read_dataset
from core.models.artifacts import load_models


def _more_tracks(root, n: int) -> list[Track]:
    out = []
    for i in range(n):
        kind = ("tone", "noise", "clicks")[i % 3]
        p = write_audio(root / f"extra_{i:02d}.wav", synth(kind, 2.0, seed=10 + i))
        out.append(Track(track_id=f"extra_{i:02d}", path=p, genre=("Tones", "Noise", "Clicks")[i % 3],
                         split="train", title=f"extra {i}"))
    return out


def _consistent(snap: IndexSnapshot) -> None:
    n = len(snap)
    table = snap.table()
    assert len(table) == n and len(set(table["track_id"])) == n
    for m in snap.models:
        assert snap.embeddings(m).shape[0] == n and snap.probs(m).shape[0] == n
        assert len(snap.predicted(m)) == n


def _from_snapshot(snap: IndexSnapshot, recs) -> None:
    """Every row of a result is the snapshot's own row (no torn read)."""
    rows = snap.rows_of([r.track_id for r in recs])
    for r, i in zip(recs, rows):
        assert (r.title, r.genre, r.artist) == (snap.column("title")[i], snap.column("genre")[i],
                                                snap.column("artist")[i])


def test_recommendations_in_a_loop_while_another_thread_indexes(tiny_artifacts, tiny_dataset, tmp_path):
    from core.recommend.methods import genre_centres, recommend
    from core.recommend.views import views_of

    models = load_models(tiny_artifacts)
    seeds_ok = read_dataset(tiny_dataset)
    base = CatalogIndex.open(tmp_path / "index")
    base.update(seeds_ok, models)
    seeds = [t.track_id for t in seeds_ok[:3]]
    extra = _more_tracks(tmp_path / "extra", 10)

    errors, seen_sizes, stop = [], set(), threading.Event()
    seen_views: dict[int, tuple] = {}

    def reader() -> None:
        while not stop.is_set():
            try:
                snap = service.snapshot()
                _consistent(snap)
                for model in snap.models:
                    first = recommend(snap, seeds, k=5, model=model)
                    again = recommend(snap, seeds, k=5, model=model)
                    ids = [r.track_id for r in first]
                    assert ids == [r.track_id for r in again]     # same snapshot, same answer
                    assert len(ids) == 5 and all(t in snap for t in ids) and not set(ids) & set(seeds)
                    _from_snapshot(snap, first)
                    centre = recommend(snap, seeds, k=5, model=model, method="genre", variant="centre")
                    _from_snapshot(snap, centre)
                    assert all(c.row < len(snap) and c.track_id in snap for c in genre_centres(snap, model).values())
                # One set of views per snapshot, built from that snapshot only.
                views = views_of(snap)
                assert views is views_of(snap) and views.snapshot is snap
                assert len(views.song_keys()) == len(snap)
                seen_views[id(views)] = (views, snap)
                seen_sizes.add(len(snap))
            except Exception as exc:  # noqa: BLE001 — collected, asserted below
                errors.append(repr(exc))
                return

    service = BackgroundIndexer(tmp_path / "index", checkpoint=2)
    before = service.snapshot()
    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    catalog = read_catalog([tiny_dataset], tmp_path / "library")
    catalog = dataclasses.replace(catalog, tracks=catalog.tracks + tuple(extra))   # a Catalog is immutable
    assert service.start(catalog, lambda: models)
    status = service.wait(240)
    deadline = time.monotonic() + 60     # let the readers reach the finished index too
    while 28 not in seen_sizes and not errors and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(60)
    assert status.state == "done", status
    assert not errors, errors[:3]
    after = service.snapshot()
    assert len(after) == 18 + 10 and after is not before
    # The snapshot handed out before the run is untouched by it.
    assert len(before) == 18 and before.version < after.version
    _consistent(before)
    assert max(seen_sizes) <= 28 and min(seen_sizes) >= 18
    # Readers saw several snapshots while the index grew, each with views of its own.
    snaps = [snap for _, snap in seen_views.values()]
    assert len(seen_views) >= 2 and len({id(s) for s in snaps}) == len(snaps)
    assert views_of(after) is not views_of(before)


def test_snapshot_is_never_mutated_by_writes(tiny_artifacts, tiny_dataset, tmp_path):
    models = load_models(tiny_artifacts)
    tracks = read_dataset(tiny_dataset)
    idx = CatalogIndex.open(tmp_path / "index")
    idx.update(tracks[:6], models)
    snap = idx.snapshot()
    emb = snap.embeddings("cnn").copy()
    idx.update(tracks, models)
    idx.remove([tracks[0].track_id])
    assert len(snap) == 6 and np.array_equal(snap.embeddings("cnn"), emb)
    assert len(idx) == 17 and idx.snapshot() is not snap


def test_background_run_grows_the_index_and_can_be_stopped(tiny_artifacts, tiny_dataset, tmp_path):
    models = load_models(tiny_artifacts)
    service = BackgroundIndexer(tmp_path / "index", checkpoint=4)
    sizes = []
    catalog = read_catalog([tiny_dataset], tmp_path / "library")

    def slow_models():
        return models

    assert service.start(catalog, slow_models)
    assert not service.start(catalog, slow_models)       # one run at a time
    while service.running():
        sizes.append(len(service.snapshot()))
        service.wait(0.05)
    assert service.status().state == "done" and len(service.snapshot()) == 18
    assert service.status().line().startswith("Index ready: 18 tracks")
    # A stopped run keeps what it committed, and another process's commit is picked up.
    other = CatalogIndex.open(tmp_path / "index")
    other.remove(["tones_00"])
    assert len(service.snapshot()) == 17


def test_a_pass_that_has_not_counted_its_files_says_what_it_does():
    """IndexStatus.line (sidebar and page captions): before the pass knows
    how many files changed it said "Indexing in the background (0 / 0)"."""
    from core.catalog.indexer import IndexStatus

    assert IndexStatus(state="indexing").line() == "Index: checking the music folders for changes…"
    assert IndexStatus(state="indexing", done=3, total=10).line().startswith(
        "Indexing in the background: 3 / 10 tracks")
    assert IndexStatus(state="loading models").line() == "Index: loading the models…"
