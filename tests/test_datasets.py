"""core.datasets: metadata folders, FMA and GTZAN layouts, splits."""

import csv
from pathlib import Path

import pytest
from conftest import REAL_DATA, make_dataset, real_data, synth, write_audio

from core.datasets import genres_of, read_dataset, read_datasets


def test_metadata_folder(tiny_dataset):
    tracks = read_dataset(tiny_dataset)
    assert len(tracks) == 18
    assert genres_of(tracks) == ["Clicks", "Noise", "Tones"]
    assert {t.split for t in tracks} == {"train", "val", "test"}
    assert all(t.path.is_file() for t in tracks)


def test_combined_folders_keep_ids_unique(tmp_path):
    a = make_dataset(tmp_path / "a", per_genre=3)
    tracks = read_datasets([a, a])
    assert len(tracks) == len({t.track_id for t in tracks}) == 9


def test_gtzan_layout(tmp_path):
    for g in ("blues", "jazz", "metal"):
        for i in range(10):
            write_audio(tmp_path / "genres_original" / g / f"{g}.{i:05d}.wav", synth("tone", 1.2, seed=i))
    tracks = read_dataset(tmp_path)
    assert genres_of(tracks) == ["blues", "jazz", "metal"]
    splits = [t.split for t in tracks]
    assert splits.count("train") == 24 and splits.count("test") == 3


def _write_fma(root: Path, rows):
    meta = root / "fma_metadata"
    meta.mkdir(parents=True)
    with open(meta / "tracks.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "album", "artist", "set", "track", "track", "track"])
        w.writerow(["", "title", "name", "split", "genre_top", "genres", "title"])
        w.writerow(["track_id", "", "", "", "", "", ""])
        for tid, artist, top, genres in rows:
            w.writerow([tid, "Album", artist, "training", top, genres, f"Song {tid}"])
    for tid, *_ in rows:
        s = f"{tid:06d}"
        write_audio(root / "fma_small" / s[:3] / f"{s}.mp3", synth("noise", 1.2, seed=tid))


def test_fma_layout_paper_selection(tmp_path):
    rows = []
    tid = 1
    for g in ("Rock", "Jazz", "Pop"):
        for i in range(6):
            rows.append((tid, f"{g}-artist-{i % 3}", g, "[12]"))
            tid += 1
    rows.append((tid, "x", "Rock", "[12, 25]"))      # multi-genre: excluded
    rows.append((tid + 1, "y", "", "[]"))            # no top genre: excluded
    _write_fma(tmp_path, rows)
    tracks = read_dataset(tmp_path)
    assert genres_of(tracks) == ["Jazz", "Rock"]     # Pop is not one of the paper's genres
    assert len(tracks) == 12
    by_artist = {}
    for t in tracks:
        by_artist.setdefault(t.artist, set()).add(t.split)
    assert all(len(s) == 1 for s in by_artist.values())   # artist-aware split
    from core.datasets import read_fma
    balanced = read_fma(tmp_path, genres=None, per_genre=4)
    assert sorted(genres_of(balanced)) == ["Jazz", "Pop", "Rock"] and len(balanced) == 12


def test_missing_folder_and_unknown_layout(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no metadata.csv"):
        read_dataset(tmp_path / "empty")


@real_data
def test_shared_data_splits_are_artist_disjoint():
    tracks = read_datasets(REAL_DATA)
    assert len(genres_of(tracks)) >= 5
    splits_of = {}
    for t in tracks:
        if t.artist:
            splits_of.setdefault(t.artist, set()).add(t.split)
    assert all(len(s) == 1 for s in splits_of.values())
