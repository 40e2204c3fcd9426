"""Embedding map page: 2-D projection of the index, hover data, selection → play / seed."""

from __future__ import annotations

from conftest import no_exceptions, open_page, plotly_specs, texts, values

from ui import catalog as ui_catalog
from ui import seeds as ui


def _points(app) -> dict:
    fig = plotly_specs(app)[0]
    out = {}
    for trace in fig["data"]:
        ids = [c[0] if isinstance(c, list) else c for c in trace["customdata"]]
        out[trace["name"]] = ids
    return out


def test_map_has_one_point_per_indexed_track_coloured_by_genre(app):
    open_page(app, "embedding_map")
    no_exceptions(app)
    pts = _points(app)
    assert sorted(pts) == ["Clicks", "Noise", "Tones"]
    assert sum(len(v) for v in pts.values()) == 18
    assert all(t.startswith("tones") for t in pts["Tones"])
    fig = plotly_specs(app)[0]
    assert "title=" in fig["data"][0]["hovertemplate"] and "artist=" in fig["data"][0]["hovertemplate"]


def test_tsne_other_model_and_predicted_colours(app):
    open_page(app, "embedding_map")
    app.radio(key="map_method").set_value("t-SNE").run()
    app.selectbox(key="map_model").set_value("cnn").run()
    app.selectbox(key="map_colour").set_value("pred_cnn").run()
    no_exceptions(app)
    fig = plotly_specs(app)[0]
    assert "CNN · t-SNE" in fig["layout"]["title"]["text"]
    assert sum(len(v) for v in _points(app).values()) == 18
    assert len(values(fig["data"][0]["x"])) == len(fig["data"][0]["customdata"])


def test_map_colours_by_a_facet(app, monkeypatch):
    from core.catalog.index import CatalogIndex
    from core.catalog.snapshot import IndexSnapshot

    copies = []
    real = IndexSnapshot.facets
    monkeypatch.setattr(IndexSnapshot, "facets", lambda self: copies.append(1) or real(self))
    open_page(app, "embedding_map")
    assert "Tempo" in app.selectbox(key="map_colour").options
    app.selectbox(key="map_colour").set_value("tempo_bpm").run()
    no_exceptions(app)
    assert copies == []             # every rerun reads the facet columns in place, never a copy of the table
    fig = plotly_specs(app)[0]
    assert "Tempo" in fig["layout"]["title"]["text"]
    # One continuous trace whose colours are the index's tempo facet, row for row.
    snap = CatalogIndex.open(app.env["GENRE_INDEX"]).snapshot()
    bpm = dict(zip(snap.column("track_id"), snap.facets()["tempo_bpm"]))
    trace = fig["data"][0]
    ids = [c[0] if isinstance(c, list) else c for c in trace["customdata"]]
    assert len(ids) == 18
    assert values(trace["marker"]["color"]) == [bpm[t] for t in ids]


def test_found_track_plays_and_becomes_a_seed(app):
    open_page(app, "embedding_map")
    app.selectbox(key="map_find").set_value("clicks_03").run()
    no_exceptions(app)
    assert "Clicks piece 3" in texts(app)
    assert len(app.get("audio")) == 1
    app.button(key="map_seed_clicks_03").click().run()
    assert app.session_state[ui.SEEDS_KEY] == ["clicks_03"]


def test_selected_track_ids_reads_plotly_selection_events():
    event = {"selection": {"points": [{"customdata": ["a"], "x": 1}, {"customdata": ["b"]},
                                      {"customdata": ["a"]}, {"x": 3}]}}
    assert ui.selected_track_ids(event) == ["a", "b"]
    assert ui.selected_track_ids({"selection": {"points": []}}) == []
    assert ui.selected_track_ids(None) == []


def test_empty_index_is_built_in_the_background_and_the_map_grows(app, tmp_path, monkeypatch):

    monkeypatch.setenv("GENRE_INDEX", str(tmp_path / "new_index"))
    open_page(app, "embedding_map")       # the first run starts indexing by itself
    no_exceptions(app)
    first = sum(len(v) for v in _points(app).values())
    assert 1 <= first <= 18               # drawn from the tracks indexed so far
    svc = ui_catalog._indexer(str(tmp_path / "new_index"))
    assert svc.wait(180).state == "done"
    app.run()
    no_exceptions(app)
    assert sum(len(v) for v in _points(app).values()) == 18

