"""The Streamlit app as a whole (AppTest): navigation, every page renders,
the sidebar, and the messages a user without music or models sees.

The app fixtures (``app_env``, ``app``) and helpers live in tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PAGES, ROOT, no_exceptions, open_page, texts, wait_for_index

# ----------------------------------------------------------------- app-level tests

@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(app, page):
    open_page(app, page)
    no_exceptions(app)
    assert app.title, f"{page} has no title"


def test_navigation_registers_every_page_script_and_each_renders(app, navigation):
    """What the running app hands to st.navigation: every script in pages/
    (and nothing else), the default one first, and each page, opened through
    the navigation, renders with a title and no exception."""
    app.run()
    no_exceptions(app)
    files = [Path(ROOT, p._page) for p in navigation]
    assert all(f.is_file() for f in files)
    assert sorted(f.resolve() for f in files) == sorted(p.resolve() for p in (ROOT / "pages").glob("*.py"))
    assert [f.stem for f in files] == PAGES           # what the page tests read from app.py
    assert len({p.url_path for p in navigation}) == len(navigation)
    default_title = app.title[0].value                # the first run shows the default page
    titles = {}
    for f in files:
        app.switch_page(f"pages/{f.name}").run()
        no_exceptions(app)
        assert app.title, f"{f.stem} has no title"
        titles[f.stem] = app.title[0].value
    assert titles[files[0].stem] == default_title
    assert len(set(titles.values())) == len(files)   # each page is its own script


def test_sidebar_shows_catalog_and_ready_index(app):
    open_page(app, "overview")
    side = "\n".join(str(c.value) for c in app.sidebar.caption)
    assert "18 tracks in 1 folder" in side
    assert "18 tracks" in side            # usable at once, while the background check runs
    assert "Index ready: 18 tracks" in wait_for_index(app)


def test_settings_field_starts_from_env_and_changes_the_catalog(app, tmp_path):
    open_page(app, "overview")
    field = app.text_area(key="data_folders")
    assert field.value.strip() == app.env["GENRE_DATA"]
    field.set_value(str(tmp_path / "nowhere")).run()
    no_exceptions(app)
    # (AppTest drops the sidebar on reruns under st.navigation; the page repeats the warning.)
    assert "nowhere: folder not found" in texts(app)
    assert "No music is configured yet" in texts(app)


def test_no_music_configured_explains_how_to_add_it(app, monkeypatch):
    monkeypatch.setenv("GENRE_DATA", "")
    open_page(app, "overview")
    no_exceptions(app)
    t = texts(app)
    assert "How to add music" in t and "GENRE_DATA=" in t
    # The shipped metrics still show.
    assert any("ROC-AUC" in str(c) for df in app.dataframe for c in df.value.columns)


def test_missing_artifacts_give_a_message_not_a_traceback(app, monkeypatch, tmp_path):
    empty = tmp_path / "no_artifacts"
    empty.mkdir()
    monkeypatch.setenv("GENRE_ARTIFACTS", str(empty))
    for page in PAGES:
        open_page(app, page)
        no_exceptions(app)
    open_page(app, "model_comparison")
    assert "metrics.json is not available" in texts(app)
    open_page(app, "classify")
    assert "No trained models" in texts(app)


def test_pages_needing_audio_explain_how_to_add_music(app, monkeypatch, tmp_path):
    monkeypatch.setenv("GENRE_DATA", "")
    monkeypatch.setenv("GENRE_INDEX", str(tmp_path / "empty_index"))
    for page in ("embedding_map", "recommender", "listening_study"):
        open_page(app, page)
        no_exceptions(app)
        assert "How to add music" in texts(app), page
    open_page(app, "spectrograms")
    no_exceptions(app)
    assert app.radio(key="spec_source").value == "Upload a file"
    assert len(app.file_uploader) == 1
    # Classification and the shipped metrics need no catalog.
    open_page(app, "classify")
    assert len(app.file_uploader) == 1 and not app.error
    open_page(app, "model_comparison")
    assert app.dataframe and not app.error
