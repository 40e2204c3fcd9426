"""Spectrograms page: catalog track or upload → waveform, log-mel, probabilities, heat strips."""

from __future__ import annotations

import numpy as np
from conftest import no_exceptions, open_page, plotly_specs, synth, texts, values, write_audio


def _panels(spec: dict) -> list[str]:
    """Titles of a figure: its own title or its subplot titles."""
    title = spec["layout"].get("title", {}).get("text")
    return [title] if title else [a["text"] for a in spec["layout"].get("annotations", [])]


def _heatmap(spec: dict) -> dict:
    return next(t for t in spec["data"] if t["type"] == "heatmap")


def test_catalog_track_draws_all_charts_with_real_axes(app):
    open_page(app, "spectrograms")
    no_exceptions(app)
    specs = plotly_specs(app)
    assert [_panels(s) for s in specs] == [
        ["Waveform", "Log-mel spectrogram (what the models see)"], ["Genre probabilities"],
        ["CRNN: genre over time"]]   # the picked model (default: best on validation)
    layout = specs[0]["layout"]
    assert layout["xaxis2"]["title"]["text"] == "time (s)"
    assert "Hz" in layout["yaxis2"]["title"]["text"]
    assert layout["xaxis"]["matches"] == "x2" or layout["xaxis2"].get("matches") == "x"  # shared time axis
    mel = _heatmap(specs[0])
    z = np.array(values(mel["z"]))
    assert z.shape == (96, 683)  # 1366 frames, averaged in pairs for drawing
    # Evenly spaced cells: time from 0 in steps of two frames, mel bands from 0 mel.
    assert mel["x0"] == 0 and abs(mel["dx"] - 2 * 256 / 12000) < 1e-9
    assert mel["y0"] == 0 and mel["dy"] > 0
    ticks = layout["yaxis2"]
    assert "1k" in ticks["ticktext"] and len(ticks["tickvals"]) == len(ticks["ticktext"])
    strip = np.array(values(specs[2]["data"][0]["z"]))
    assert strip.shape[0] == 3 and strip.min() >= 0 and strip.max() <= 1
    assert len(app.get("audio")) == 1
    labels = [m.label for m in app.metric]
    assert labels == ["CRNN hears", "Models agree?"]
    # Confidence is a plain percentage, not a metric's delta arrow.
    assert all(not m.proto.delta for m in app.metric)
    assert "probability **" in texts(app) and "Other models: CNN" in texts(app)


def test_pooling_keeps_the_time_axis_and_averages_frames():
    from ui import charts as charts

    z = np.arange(12, dtype=float).reshape(2, 6)
    pooled, t = charts.pool_time(z, np.arange(6) * 0.5, max_cols=3)
    assert pooled.tolist() == [[0.5, 2.5, 4.5], [6.5, 8.5, 10.5]] and t.tolist() == [0, 1, 2]
    same, t2 = charts.pool_time(z, np.arange(6) * 0.5, max_cols=10)
    assert same is z and len(t2) == 6


def test_picking_another_track_changes_the_analysis(app):
    open_page(app, "spectrograms")
    first = np.array(values(_heatmap(plotly_specs(app)[0])["z"]))
    app.selectbox(key="spec_track").set_value("noise_03").run()
    no_exceptions(app)
    second = np.array(values(_heatmap(plotly_specs(app)[0])["z"]))
    assert not np.allclose(first, second)
    assert "Noise piece 3" in app.subheader[0].value


def test_uploaded_file_is_analysed_and_a_bad_one_gives_one_line(app, tmp_path):
    open_page(app, "spectrograms")
    app.radio(key="spec_source").set_value("Upload a file").run()
    mp3 = write_audio(tmp_path / "chirp.mp3", synth("chirp", 3.0))
    app.file_uploader(key="spec_upload").set_value(("chirp.mp3", mp3.read_bytes(), "audio/mpeg")).run()
    no_exceptions(app)
    assert app.subheader[0].value == "chirp.mp3"
    assert len(plotly_specs(app)) == 3
    # 3 s, under the models' ~29 s window: the page says the window repeated it.
    assert [c.value for c in app.caption if "heard it repeated" in c.value][0].startswith(
        ":material/warning: 3.0 s of audio, shorter than the models'")
    app.file_uploader(key="spec_upload").set_value(("empty.wav", b"", "audio/wav")).run()
    no_exceptions(app)
    assert len(app.error) == 1 and app.error[0].value.startswith("empty.wav:")
    assert "\n" not in app.error[0].value
    assert plotly_specs(app) == []


def test_what_it_hears_beyond_genre_matches_the_analysis(app):
    """The facet table shows the same tempo core's analysis computes, with an honest note."""
    from core.catalog.index import CatalogIndex
    from core.models.artifacts import load_models
    from core.models.inference import analyse

    open_page(app, "spectrograms")
    no_exceptions(app)
    assert "What it hears beyond genre" in texts(app)
    table = next(t.value for t in app.table if "facet" in t.value.columns)
    shown = dict(zip(table["facet"], table["value"]))
    tid = app.selectbox(key="spec_track").value
    path = CatalogIndex.open(app.env["GENRE_INDEX"]).table().set_index("track_id").loc[tid, "path"]
    facets = analyse(path, load_models(app.env["GENRE_ARTIFACTS"])).facets
    assert shown["Tempo"].startswith(f"{facets['tempo_bpm']:.0f} BPM")
    # No shipped measurements in the test artifacts: the page says so instead of a figure.
    assert set(table["measured"]) <= {"not measured yet (python -m core facets-eval)"}
    # The test models have no MSD trunk: no tags and no mood scores are invented.
    assert "Vocals" not in shown and "No tags" in texts(app)
