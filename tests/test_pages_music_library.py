"""The Music folders setting with an ordinary music library (AppTest): the
folder is read as a library (artists are not genres), its tags show on the
pages beside the models' prediction, and the Recommender exports playlists."""

from __future__ import annotations

import pytest
from conftest import no_exceptions, open_page, texts, wait_for_index

from benchmarks.library_gen import music, write_tags, write_track
from core.datasets.tags import Tags
from ui.models import HEAVY_MODULES

SR = 22_050


@pytest.fixture
def library_app(app, monkeypatch, tmp_path):
    """The app pointed at ``Music/<Artist>/<Album>/<NN Title>`` (tagged, mixed formats)."""
    root = tmp_path / "Music"
    for i, ext in enumerate(("mp3", "m4a", "flac", "ogg", "mp3", "m4a")):
        artist = f"Artist {i % 3}"
        p = write_track(root / artist / "Album" / f"{i + 1:02d} Song {i}.{ext}", music(2.0, SR, i), SR, ext)
        write_tags(p, Tags(artist=artist, album="Album", title=f"Song {i}", genre="Jazz", track_no=str(i + 1)))
    for k, v in {"GENRE_DATA": str(root), "GENRE_INDEX": str(tmp_path / "index")}.items():
        monkeypatch.setenv(k, v)
        app.env[k] = v
    return app


def test_music_folders_setting_reads_a_library(library_app):
    import importlib

    for name in HEAVY_MODULES:     # as after any page that used the models: the sidebar indexes at once
        importlib.import_module(name)
    app = library_app
    open_page(app, "overview")
    no_exceptions(app)
    assert app.text_area(key="data_folders").value.strip() == app.env["GENRE_DATA"]
    assert app.selectbox(key="data_layout").value == "auto"
    side = "\n".join(str(c.value) for c in app.sidebar.caption)
    assert "6 tracks in 1 folder(s) (6 unlabelled)" in side
    assert "Index ready: 6 tracks" in wait_for_index(app)

    open_page(app, "recommender")
    options = app.multiselect(key="rec_seeds_w").options
    assert any("Song 0 — Artist 0 (Album) · tagged Jazz" in o for o in options)
    app.multiselect(key="rec_seeds_w").set_value(["Music/Artist 0/Album/01 Song 0.mp3"]).run()
    no_exceptions(app)
    cards = texts(app)
    assert "unlabelled · tagged Jazz · the models hear" in cards
    downloads = app.get("download_button")
    assert len(downloads) == 4                      # M3U8 + CSV for each list


def test_layout_choice_overrides_detection(library_app):
    app = library_app
    open_page(app, "overview")
    app.selectbox(key="data_layout").set_value("metadata").run()
    no_exceptions(app)
    assert "no metadata.csv" in texts(app)          # read as the user said, not as detected
    from core.catalog.sources import read_catalog

    cat = read_catalog([app.env["GENRE_DATA"]], app.env["GENRE_LIBRARY"], "genres")
    assert {t.genre for t in cat.tracks} == {"Artist 0", "Artist 1", "Artist 2"}   # as the user said
    assert {t.genre for t in read_catalog([app.env["GENRE_DATA"]], app.env["GENRE_LIBRARY"]).tracks} == {""}
