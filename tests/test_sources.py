"""core.catalog.sources: the configured data folders + upload library, and syncing the index."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import synth, write_audio

from core.catalog import sources as catalog


def test_default_setting_comes_from_env_and_empty_env_means_none(tmp_path):
    assert catalog.default_data_setting({"GENRE_DATA": f"{tmp_path}/a{os.pathsep}{tmp_path}/b"}) == \
        f"{tmp_path}/a{os.pathsep}{tmp_path}/b"
    assert catalog.default_data_setting({"GENRE_DATA": ""}) == ""


def test_parse_setting_splits_on_pathsep_newlines_and_commas(tmp_path):
    text = f" {tmp_path}/a{os.pathsep}{tmp_path}/b\n\n'{tmp_path}/c' , {tmp_path}/a\n"
    assert catalog.parse_data_setting(text) == [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    assert catalog.parse_data_setting("") == []
    assert catalog.parse_data_setting(None) == []


def test_read_catalog_reads_folders_and_library_and_reports_bad_folders(tiny_dataset, tmp_path):
    lib = tmp_path / "library"
    write_audio(lib / "my_song.wav", synth("tone", 2.0))
    (lib / "notes.txt").parent.mkdir(exist_ok=True)
    (lib / "notes.txt").write_text("not audio")
    empty = tmp_path / "empty"
    empty.mkdir()
    song = next(p for p in Path(tiny_dataset).rglob("*") if p.is_file() and p.suffix != ".csv")   # a file, not a folder
    cat = catalog.read_catalog([tiny_dataset, tmp_path / "missing", empty, song], lib)
    assert len(cat.tracks) == 18
    assert {t.genre for t in cat.tracks} == {"Tones", "Noise", "Clicks"}
    assert [t.title for t in cat.library] == ["my song"]
    assert cat.library[0].source == catalog.LIBRARY_SOURCE and cat.library[0].genre == ""
    assert len(cat) == 19 and len(cat.all_tracks) == 19
    assert len(cat.problems) == 3
    assert any("missing: folder not found" in p for p in cat.problems)
    assert f"{song}: is a file, not a folder" in cat.problems
    assert any(str(empty) in p for p in cat.problems)


def test_duplicate_track_ids_across_folders_are_kept_once(tiny_dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    cat = catalog.read_catalog([tiny_dataset, copy], tmp_path / "lib")
    assert len(cat.tracks) == 18
    assert all(str(t.path).startswith(str(tiny_dataset)) for t in cat.tracks)


def test_signature_changes_when_the_library_changes(tiny_dataset, tmp_path):
    lib = tmp_path / "lib"
    before = catalog.catalog_signature([tiny_dataset], lib)
    write_audio(lib / "new.wav", synth("noise", 2.0))
    assert catalog.catalog_signature([tiny_dataset], lib) != before


def test_plan_and_sync_index(tiny_dataset, tiny_artifacts, tmp_path):
    from core.catalog.index import CatalogIndex
    from core.models.artifacts import load_models

    models = load_models(tiny_artifacts)
    lib = tmp_path / "lib"
    write_audio(lib / "upload_one.wav", synth("clicks", 2.0, seed=3))
    cat = catalog.read_catalog([tiny_dataset], lib)
    idx = CatalogIndex.open(tmp_path / "index")
    plan = catalog.plan_index(cat, idx.table())
    assert len(plan.new_tracks) == 18 and len(plan.new_library) == 1 and not plan.up_to_date
    assert "18 new track(s)" in plan.summary() and "1 new upload(s)" in plan.summary()

    calls = []
    stats = catalog.sync_index(cat, idx, models, progress=lambda d, t: calls.append((d, t)))
    assert stats["embedded"] == 19 and stats["failed"] == []
    assert calls and calls[-1][0] == calls[-1][1]
    table = idx.table()
    assert (table["source"] == catalog.LIBRARY_SOURCE).sum() == 1
    assert catalog.plan_index(cat, table).up_to_date

    # A folder track that disappears from the catalog is stale until the next sync.
    smaller = catalog.Catalog(cat.data_dirs, lib, tracks=cat.tracks[1:], library=cat.library)
    plan = catalog.plan_index(smaller, table)
    assert plan.stale_ids == [cat.tracks[0].track_id] and not plan.new_tracks
    catalog.sync_index(smaller, idx, models)
    assert len(idx) == 18 and cat.tracks[0].track_id not in idx
    # Syncing again embeds nothing (uploads are not re-added).
    assert catalog.sync_index(smaller, idx, models)["embedded"] == 0


@pytest.mark.parametrize("changed", [True, False])
def test_plan_reports_changed_models(tiny_dataset, tmp_path, changed):
    import pandas as pd

    cat = catalog.read_catalog([tiny_dataset], tmp_path / "lib")
    empty = pd.DataFrame(columns=["track_id", "path", "source"])
    plan = catalog.plan_index(cat, empty, models_changed=changed)
    assert ("models changed" in plan.summary()) is changed
