"""Spectrograms page: catalog track or upload → waveform, log-mel, probabilities, heat strips."""

from __future__ import annotations

import numpy as np

from conftest import synth, write_audio
from test_app import app, app_env, no_exceptions, open_page, plotly_specs, values  # noqa: F401


def test_catalog_track_draws_all_charts_with_real_axes(app):
    open_page(app, "spectrograms")
    no_exceptions(app)
    specs = plotly_specs(app)
    titles = [s["layout"]["title"]["text"] for s in specs]
    assert titles[:3] == ["Waveform", "Log-mel spectrogram (what the models see)", "Genre probabilities"]
    assert titles[3:] == ["CNN: genre over time", "CRNN: genre over time"]
    mel = specs[1]
    assert mel["layout"]["xaxis"]["title"]["text"] == "time (s)"
    assert "Hz" in mel["layout"]["yaxis"]["title"]["text"]
    z = np.array(values(mel["data"][0]["z"]))
    assert z.shape == (96, 1366)
    times = values(mel["data"][0]["x"])
    assert abs(times[-1] - 1365 * 256 / 12000) < 0.01
    assert mel["data"][0]["y"][0].endswith("Hz")
    strip = np.array(values(specs[3]["data"][0]["z"]))
    assert strip.shape[0] == 3 and strip.min() >= 0 and strip.max() <= 1
    assert len(app.get("audio")) == 1
    labels = [m.label for m in app.metric]
    assert labels == ["CNN hears", "CRNN hears", "Models agree?"]


def test_picking_another_track_changes_the_analysis(app):
    open_page(app, "spectrograms")
    first = np.array(values(plotly_specs(app)[1]["data"][0]["z"]))
    app.selectbox(key="spec_track").set_value("noise_03").run()
    no_exceptions(app)
    second = np.array(values(plotly_specs(app)[1]["data"][0]["z"]))
    assert not np.allclose(first, second)
    assert "Noise piece 3" in app.subheader[0].value


def test_uploaded_file_is_analysed_and_a_bad_one_gives_one_line(app, tmp_path):
    open_page(app, "spectrograms")
    app.radio(key="spec_source").set_value("Upload a file").run()
    mp3 = write_audio(tmp_path / "chirp.mp3", synth("chirp", 3.0))
    app.file_uploader(key="spec_upload").set_value(("chirp.mp3", mp3.read_bytes(), "audio/mpeg")).run()
    no_exceptions(app)
    assert app.subheader[0].value == "chirp.mp3"
    assert len(plotly_specs(app)) == 5
    app.file_uploader(key="spec_upload").set_value(("empty.wav", b"", "audio/wav")).run()
    no_exceptions(app)
    assert len(app.error) == 1 and app.error[0].value.startswith("empty.wav:")
    assert "\n" not in app.error[0].value
    assert plotly_specs(app) == []
