"""Overview page: shipped models, headline metrics, catalog, links to the other pages."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import no_exceptions, open_page, texts


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


def test_links_to_every_other_page(app, navigation):
    """Each link opens another registered page, labelled with that page's
    navigation title, in the navigation's order; each opens and renders."""
    open_page(app, "overview")
    no_exceptions(app)
    links = [e.proto for e in app.get("page_link")]
    assert len(links) == 6
    others = [p for p in navigation if Path(p._page).stem != "overview"]
    assert [(link.page_script_hash, link.page, link.label) for link in links] == [
        (p._script_hash, p.url_path, p.title) for p in others]
    for p in others:
        app.switch_page(str(Path("pages") / Path(p._page).name)).run()
        no_exceptions(app)
        assert app.title
