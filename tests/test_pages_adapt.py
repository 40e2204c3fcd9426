"""Embedding map page, "Adapt … to this library": with the default model in
the index and its replay shipped, the toggle shows how many tracks change
genre, the genre counts before and after, the changed tracks and a CSV; a
library too small is told so in one line. The trunks are stubs (no wheel)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import APP, TIMEOUT, build_app_env, no_exceptions, open_page, plotly_specs, texts
from test_fused_trunks import stub_bank  # noqa: F401  (the fixture)

from core.config import AdaptConfig


@pytest.fixture
def adapt_app(stub_bank, tmp_path, tiny_dataset, tiny_artifacts, monkeypatch):  # noqa: F811
    from streamlit.testing.v1 import AppTest

    from core.models.artifacts import load_model, save_model, update_manifest
    from core.models.fused_trunks import FusedTrunks
    from core.training.library_head import REPLAY_FILE, fit_replay, save_replay

    art = tmp_path / "arts"
    shutil.copytree(tiny_artifacts, art)
    labels = load_model("cnn", art).labels
    m = FusedTrunks(labels, trunks=["msd_vgg", "msd_musicnn"])
    rng = np.random.default_rng(0)
    d = m.input_dim
    m.set_head(np.zeros(d), np.ones(d), rng.normal(size=(len(labels), d)) * 0.05, np.zeros(len(labels)), 1.0)
    save_model(m.eval(), art, extra={"C": 1.0, "trunks": m.trunks})
    cols = np.arange(8)
    replay = fit_replay(rng.normal(size=(90, 8)), np.repeat(np.arange(len(labels)), 30), len(labels), cols, 1, 1.0,
                        rank=2)
    save_replay(replay, art / REPLAY_FILE, {"trunks": m.trunks, "plain": {"mean": {"accuracy": 0.4}},
                                            "adapted": {"mean": {"accuracy": 0.45}}, "delta_accuracy": 0.05,
                                            "delta_ci95": [0.01, 0.09], "tracks": 100})
    update_manifest(art)
    env = build_app_env(tmp_path / "world", tiny_dataset, art)
    env = dict(env, GENRE_STUDY_DB=str(tmp_path / "study.sqlite"), GENRE_LIBRARY=str(tmp_path / "library"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.env = env
    return at


def test_a_library_too_small_is_told_so(adapt_app):
    open_page(adapt_app, "embedding_map")
    no_exceptions(adapt_app)
    assert "Adapting needs at least 20 indexed tracks; this library has 18." in texts(adapt_app)
    assert not [t for t in adapt_app.toggle if t.key == "adapt_on"]


def test_adapting_shows_what_changes(adapt_app, monkeypatch):
    import ui.adapt
    monkeypatch.setattr(ui.adapt, "CONFIG", AdaptConfig(min_tracks=5))
    open_page(adapt_app, "embedding_map")
    assert "from 0.400 to 0.450 over 100 tracks (+0.050, 95 % interval +0.010 to +0.090)" in texts(adapt_app)
    adapt_app.toggle(key="adapt_on").set_value(True).run()
    no_exceptions(adapt_app)
    metric = [m for m in adapt_app.metric if m.label == "Tracks whose top genre changes"]
    assert len(metric) == 1 and metric[0].value.endswith("of 18")
    bars = [f for f in plotly_specs(adapt_app) if f["layout"]["title"]["text"] == "Tracks per predicted genre"]
    assert len(bars) == 1 and [t["name"] for t in bars[0]["data"]] == ["as shipped", "adapted to this library"]
    assert sum(sum(t["y"]) for t in bars[0]["data"]) == 2 * 18
    changed = int(metric[0].value.split(" of ")[0])
    frames = adapt_app.dataframe
    assert (changed == 0 and not frames) or len(frames[-1].value) == changed
