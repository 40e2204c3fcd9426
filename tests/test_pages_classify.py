"""Classify page: uploads → both models' probabilities; bad files get one line; add to library."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    APP,
    GENRES,
    TIMEOUT,
    no_exceptions,
    open_page,
    plotly_specs,
    synth,
    texts,
    values,
    wait_for_index,
    write_audio,
)
from hostile import OK
from streamlit.testing.v1 import AppTest

from core.models.verdict import verdict


@pytest.fixture
def uploads(tmp_path):
    good = write_audio(tmp_path / "my tone.mp3", synth("tone", 3.0, seed=1)).read_bytes()
    noise = write_audio(tmp_path / "noise.wav", synth("noise", 2.0)).read_bytes()
    return [("my tone.mp3", good, "audio/mpeg"), ("broken.mp3", b"ID3" + b"\x00garbage" * 100, "audio/mpeg"),
            ("noise.wav", noise, "audio/wav")]


def _classify_with(art, app_env, upload, monkeypatch, tmp_path) -> AppTest:
    """Classify page on the artifacts folder ``art`` (manifest refreshed) after one upload."""
    from core.models.artifacts import update_manifest

    update_manifest(art)
    env = dict(app_env, GENRE_ARTIFACTS=str(art), GENRE_STUDY_DB=str(tmp_path / "s.sqlite"),
               GENRE_LIBRARY=str(tmp_path / "lib"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    open_page(at, "classify")
    at.file_uploader(key="classify_files").set_value([upload]).run()
    no_exceptions(at)
    return at


def test_generated_mp3_gets_both_models_probabilities(app, uploads, tmp_path):
    from core.models.artifacts import load_models
    from core.models.inference import analyse

    open_page(app, "classify")
    app.file_uploader(key="classify_files").set_value([uploads[0]]).run()
    no_exceptions(app)
    assert app.subheader[0].value == "my tone.mp3"
    bars = plotly_specs(app)[0]
    assert [t["name"] for t in bars["data"]] == ["CNN", "CRNN"]
    expected = analyse(tmp_path / "my tone.mp3", load_models(app.env["GENRE_ARTIFACTS"]))
    for trace, model in zip(bars["data"], ("cnn", "crnn")):
        shown = dict(zip(trace["y"], values(trace["x"])))
        want = expected.probabilities(model)
        assert set(shown) == set(want)
        assert all(abs(shown[g] - want[g]) < 1e-4 for g in want)
        said = verdict(expected.probabilities(model)).text
        assert f"**{'CNN' if model == 'cnn' else 'CRNN'}**: {said}" in texts(app)
    agree = expected.top("cnn")[0] == expected.top("crnn")[0]
    sure = all(verdict(expected.probabilities(m)).confident for m in ("cnn", "crnn"))
    assert ("Both models say" in texts(app)) is (agree and sure)
    assert ("The models disagree" in texts(app)) is not agree
    # Beyond genre: the tempo core computed for this file, beside the genre bars.
    assert "What it hears beyond genre" in texts(app)
    table = next(t.value for t in app.table if "facet" in t.value.columns)
    tempo = dict(zip(table["facet"], table["value"]))["Tempo"]
    assert tempo.startswith(f"{expected.facets['tempo_bpm']:.0f} BPM")


def test_a_flat_distribution_is_said_to_be_between_two_genres(app_env, uploads, monkeypatch, tmp_path):
    """Models whose genre layer is zero give every genre 1/3: the page names no
    single genre with a number, it says "between A and B"."""
    import torch
    from safetensors.torch import load_file, save_file


    art = tmp_path / "art"
    shutil.copytree(app_env["GENRE_ARTIFACTS"], art)
    for name in ("cnn", "crnn"):
        path = art / f"{name}.safetensors"
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        state = load_file(str(path))
        state["head.weight"] = torch.zeros_like(state["head.weight"])
        state["head.bias"] = torch.zeros_like(state["head.bias"])
        save_file(state, str(path), metadata=meta)
    at = _classify_with(art, app_env, uploads[0], monkeypatch, tmp_path)
    first, second = list(GENRES)[:2]
    for shown in ("CNN", "CRNN"):
        assert f"**{shown}**: between {first} and {second}" in texts(at)
    assert "33%" not in texts(at)
    assert "Both models say" not in texts(at)
    assert any("no genre is likely enough" in i.value for i in at.info)


def test_a_track_shorter_than_the_models_window_is_said_to_be_heard_repeated(app, tmp_path):
    from core.models.artifacts import load_models

    window = max(m.cfg.window_seconds for m in load_models(app.env["GENRE_ARTIFACTS"]).values())
    short = write_audio(tmp_path / "short.wav", synth("tone", window / 3, seed=2)).read_bytes()
    full = write_audio(tmp_path / "full.wav", synth("tone", window + 2, seed=2)).read_bytes()
    open_page(app, "classify")
    app.file_uploader(key="classify_files").set_value(
        [("short.wav", short, "audio/wav"), ("full.wav", full, "audio/wav")]).run()
    no_exceptions(app)
    assert [s.value for s in app.subheader] == ["short.wav", "full.wav"]
    notes = [c.value for c in app.caption if "heard it repeated" in c.value]
    assert len(notes) == 1, notes                     # the full-length file gets none
    assert notes[0] == (f":material/warning: {window / 3:.1f} s of audio, shorter than the models' {window:.0f} s: "
                        "they heard it repeated. Answers on so little music are less reliable.")


def test_a_bad_file_gets_one_error_line_and_the_others_still_get_results(app, uploads):
    open_page(app, "classify")
    app.file_uploader(key="classify_files").set_value(uploads).run()
    no_exceptions(app)
    assert len(app.error) == 1
    assert app.error[0].value.startswith("broken.mp3:") and "\n" not in app.error[0].value
    assert [s.value for s in app.subheader] == ["my tone.mp3", "noise.wav"]
    summary = app.dataframe[0].value
    assert list(summary["file"]) == ["my tone.mp3", "noise.wav"]
    assert len(plotly_specs(app)) == 2


def test_too_large_upload_is_refused_before_decoding(app, monkeypatch):
    import core.catalog.library

    monkeypatch.setattr(core.catalog.library, "MAX_UPLOAD_BYTES", 1000)
    open_page(app, "classify")
    app.file_uploader(key="classify_files").set_value(("big.wav", b"\x00" * 5000, "audio/wav")).run()
    assert len(app.error) == 1 and "too large" in app.error[0].value


def test_add_to_library_saves_a_sanitised_copy_and_indexes_it(app, uploads, tmp_path, monkeypatch):
    from core.catalog.index import CatalogIndex

    index_copy = tmp_path / "index_copy"
    shutil.copytree(app.env["GENRE_INDEX"], index_copy)
    monkeypatch.setenv("GENRE_INDEX", str(index_copy))
    open_page(app, "classify")
    weird = ("../../etc/My Song?.mp3", uploads[0][1], "audio/mpeg")
    app.file_uploader(key="classify_files").set_value([weird, uploads[1]]).run()
    app.button(key="classify_add").click().run()
    no_exceptions(app)
    lib = Path(app.env["GENRE_LIBRARY"])
    saved = sorted(p.name for p in lib.iterdir() if not p.name.startswith("."))
    assert saved == ["My_Song.mp3"]
    assert any("Added 1 track(s) to your library" in s.value for s in app.success)
    idx = CatalogIndex.open(index_copy)
    table = idx.table()
    lib_rows = table[table["source"] == "library"]
    assert len(idx) == 19 and len(lib_rows) == 1
    assert Path(lib_rows["path"].iloc[0]).name == "My_Song.mp3"
    assert np.isfinite(idx.embeddings("crnn")[table.index[table["source"] == "library"][0]]).all()
    # The index stays current for the app: no "models changed" re-embedding.
    fresh = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert "Index ready: 19 tracks" in wait_for_index(fresh)


def test_shipped_baseline_is_shown_beside_the_networks(app_env, uploads, monkeypatch, tmp_path):
    """With a baseline in the artifacts, Classify names its genre and draws its bars."""
    from core.config import FeatureConfig
    from core.models.artifacts import write_json
    from core.training.baseline import BASELINE_FILE, BaselineClassifier

    art = tmp_path / "art"
    shutil.copytree(app_env["GENRE_ARTIFACTS"], art)
    g = len(GENRES)
    # A baseline that always says the second genre (its bias dominates).
    base = BaselineClassifier(list(GENRES), list(range(g)), np.zeros(90), np.ones(90),
                              np.zeros((g, 90)), np.array([0.0, 9.0, 0.0]), FeatureConfig())
    write_json(art / BASELINE_FILE, base.to_dict())
    at = _classify_with(art, app_env, uploads[0], monkeypatch, tmp_path)
    second = list(GENRES)[1]
    assert f"MFCC baseline: {second} — 100%" in texts(at)
    assert [t["name"] for t in plotly_specs(at)[0]["data"]][-1] == "MFCC baseline"


def test_every_case_through_the_app_upload(corpus, app):
    """The whole hostile corpus uploaded at once on the Classify page: each bad
    file is one error line naming it, every good file still gets its result,
    and the app raises nothing. (The one-hour file is over the upload limit.)"""
    small = [c for c in corpus if c.name != "one_hour.wav"]
    files = [(c.path.name, c.path.read_bytes(), "application/octet-stream") for c in small]
    open_page(app, "classify")
    app.file_uploader(key="classify_files").set_value(files).run()
    no_exceptions(app)
    errors = [e.value for e in app.error]
    assert all("\n" not in e for e in errors)
    shown = {s.value for s in app.subheader}
    for c in small:
        named = [e for e in errors if e.startswith(c.path.name + ":")]
        if c.expect is OK:
            assert c.path.name in shown and not named, (c.name, named)
        elif c.expect != "either":
            assert len(named) == 1 and c.path.name not in shown, (c.name, errors)
            assert c.expect in named[0], (c.name, named)     # the reason, as the loader gives it for a path
    # Nothing else broke: the next page still renders.
    app.switch_page("pages/overview.py").run()
    no_exceptions(app)
