"""Overview page: shipped models, headline metrics, catalog, links."""

from __future__ import annotations

import json
from pathlib import Path

from test_app import app, app_env, no_exceptions, open_page, texts  # noqa: F401 — fixtures


def test_headline_metrics_come_from_metrics_json(app):
    open_page(app, "overview")
    no_exceptions(app)
    metrics = json.loads((Path(app.env["GENRE_ARTIFACTS"]) / "metrics.json").read_text())
    table = app.dataframe[0].value
    assert list(table["model"]) == ["CNN", "CRNN"]
    for name, shown_auc in zip(("cnn", "crnn"), table["ROC-AUC [95% CI]"]):
        mac = metrics["models"][name]["macro"]
        lo, hi = mac["roc_auc_ci95"]
        assert shown_auc == f"{mac['roc_auc']:.3f} [{lo:.3f}, {hi:.3f}]"
    shown = {m.label: m.value for m in app.metric}
    assert shown["Tracks in the catalog"] == "18"
    assert shown["Your uploads"] == "0"
    assert "Tones 6" in texts(app)


def test_model_cards_show_parameters_and_training_data(app):
    open_page(app, "overview")
    captions = "\n".join(c.value for c in app.caption)
    assert "3 genres: Tones, Noise, Clicks" in captions
    assert "Trained on 12 tracks" in captions


def test_links_to_every_other_page(app):
    open_page(app, "overview")
    links = [e.proto.page for e in app.get("page_link")]
    assert len(links) == 6
