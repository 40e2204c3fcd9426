"""Model pickers: Spectrograms and Embedding map start on the best classifier
on validation (artifacts/selection.json); the Recommender starts on the
embedding its own validation run chose (core.recommend.methods.PREFERRED_MODEL, from
artifacts/recommend_choice.json); all follow the user's choice."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import no_exceptions, open_page, plotly_specs

PICKERS = {"spectrograms": "spec_model", "embedding_map": "map_model", "recommender": "rec_model"}


def _expected(page: str, best: str) -> str:
    import core.recommend.methods as rec

    return rec.PREFERRED_MODEL if page == "recommender" else best


def _open(app, page: str):
    open_page(app, page)
    if page == "recommender":   # the picker sits in the options, shown once there are seeds
        app.multiselect(key="rec_seeds_w").set_value(["tones_00"]).run()
    return app


def _with_selection(app, monkeypatch, tmp_path, best: str | None):
    """Point the app at a copy of the artifacts whose selection.json names ``best`` (None: no file)."""
    art = tmp_path / "artifacts"
    shutil.copytree(app.env["GENRE_ARTIFACTS"], art)
    if best is None:
        (art / "selection.json").unlink()
    else:
        (art / "selection.json").write_text(json.dumps(
            {"best_model": best, "criterion": "val macro roc_auc", "val": {best: 0.9}}))
    monkeypatch.setenv("GENRE_ARTIFACTS", str(art))


@pytest.mark.parametrize("page", list(PICKERS))
def test_picker_starts_on_the_best_model_on_validation(app, page):
    _open(app, page)
    no_exceptions(app)
    box = app.selectbox(key=PICKERS[page])
    assert box.value == _expected(page, "crnn")   # the fixture's selection.json; "cnn" comes first
    assert "cnn" in box.options[0].lower() and len(box.options) >= 2


@pytest.mark.parametrize("page", list(PICKERS))
def test_picker_follows_another_selection_and_defaults_to_the_first_without_one(
        app, page, monkeypatch, tmp_path):
    _with_selection(app, monkeypatch, tmp_path, "cnn")
    _open(app, page)
    no_exceptions(app)
    assert app.selectbox(key=PICKERS[page]).value == _expected(page, "cnn")


def test_without_a_selection_file_the_first_model_is_the_default(app, monkeypatch, tmp_path):
    _with_selection(app, monkeypatch, tmp_path, None)
    _open(app, "embedding_map")
    no_exceptions(app)
    assert app.selectbox(key="map_model").value == app.selectbox(key="map_model").options[0].lower()


def test_spectrogram_follows_the_picked_model(app):
    open_page(app, "spectrograms")
    app.selectbox(key="spec_model").set_value("cnn").run()
    no_exceptions(app)
    titles = [a["text"] for a in plotly_specs(app)[2]["layout"]["annotations"]]
    assert titles == ["CNN: genre over time"]
    assert [m.label for m in app.metric][0] == "CNN hears"


def test_map_offers_umap_beside_pca_and_tsne(app):
    open_page(app, "embedding_map")
    assert list(app.radio(key="map_method").options) == ["PCA", "t-SNE", "UMAP"]
    app.radio(key="map_method").set_value("UMAP").run()
    no_exceptions(app)
    fig = plotly_specs(app)[0]
    assert "UMAP" in fig["layout"]["title"]["text"]
    assert sum(len(t["customdata"]) for t in fig["data"]) == 18
