"""Model comparison page: everything read from metrics.json and the training histories."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from conftest import no_exceptions, open_page, plotly_specs, texts, values

from ui import charts


def open_tab(app, label: str) -> None:
    """Open one of the page's lazy tabs (only the open tab's content runs)."""
    app.session_state["cmp_tab"] = label
    app.run()
    no_exceptions(app)


def _metrics(app) -> dict:
    return json.loads((Path(app.env["GENRE_ARTIFACTS"]) / "metrics.json").read_text())


def test_tables_roc_confusion_and_curves_match_the_artifacts(app):
    open_page(app, "model_comparison")
    no_exceptions(app)
    m = _metrics(app)
    labels = m["comparison"]["labels"]
    overall = app.dataframe[0].value
    assert list(overall["model"]) == ["CNN", "CRNN"]
    f1 = m["models"]["crnn"]["macro"]["f1"]
    assert overall["F1"].iloc[1].startswith(f"{f1:.3f}")
    specs = plotly_specs(app)  # the ROC tab is open first; other tabs run only when opened
    assert len(specs) == 2
    assert specs[0]["layout"]["title"]["text"] == "All genres (macro average)"
    grid = specs[1]
    panels = [a["text"] for a in grid["layout"]["annotations"]]
    assert panels == [g for g in labels if g in m["models"]["cnn"]["roc"]]
    curves = [t for t in grid["data"] if t.get("name") in ("CNN", "CRNN")]
    assert len(curves) == 2 * len(panels)
    first_cnn = next(t for t in curves if t["name"] == "CNN")
    assert values(first_cnn["y"]) == m["models"]["cnn"]["roc"][panels[0]]["tpr"]
    open_tab(app, "Confusion matrices")
    assert [s["layout"]["title"]["text"] for s in plotly_specs(app)] == ["CNN", "CRNN"]
    open_tab(app, "Training curves")
    assert [a["text"] for a in plotly_specs(app)[0]["layout"]["annotations"]] == [
        "Validation ROC-AUC", "Validation accuracy", "Training loss", "Validation loss"]
    open_tab(app, "Per genre")
    per_genre = app.dataframe[-1].value
    assert len(per_genre) == 2 * len(labels)
    row = per_genre[(per_genre["genre"] == labels[0]) & (per_genre["model"] == "CNN")].iloc[0]
    pg = m["models"]["cnn"]["per_genre"][labels[0]]
    assert row["AUC [95% CI]"].startswith(f"{pg['roc_auc']:.3f}")
    assert row["test tracks"] == pg["support"]
    pair = m["comparison"]["crnn_vs_cnn"]
    open_tab(app, "Per source")
    src = app.dataframe[-1].value
    assert set(src["model"]) == {"CNN", "CRNN"} and len(src) == 2
    shown = {x.label: x.value for x in app.metric}
    assert shown["AUC difference (CRNN − CNN)"] == f"{pair['auc_diff']:.3f}"
    assert shown["McNemar p-value (accuracy)"] == f"{pair['mcnemar']['p']:.3f}"
    # The sentence gives the size and the direction ("0.016 lower", never "-0.016 lower").
    d = pair["auc_diff"]
    said = f"macro AUC is {abs(d):.3f} {'higher' if d >= 0 else 'lower'};"
    assert said in texts(app) and "macro AUC is -" not in texts(app)


def test_confusion_toggle_switches_counts_and_fractions(app):
    open_page(app, "model_comparison")
    open_tab(app, "Confusion matrices")
    conf = _metrics(app)["models"]["cnn"]["confusion"]
    cnn = next(s for s in plotly_specs(app) if s["layout"].get("title", {}).get("text") == "CNN")
    assert np.allclose(np.array(values(cnn["data"][0]["z"])).sum(1)[np.array(conf["matrix"]).sum(1) > 0], 1)
    app.toggle(key="cmp_norm").set_value(False).run()
    cnn = next(s for s in plotly_specs(app) if s["layout"].get("title", {}).get("text") == "CNN")
    assert np.array(values(cnn["data"][0]["z"])).tolist() == conf["matrix"]


def test_missing_metrics_is_a_message_and_training_curves_still_show(app, tmp_path, monkeypatch):
    import shutil

    from core.models.artifacts import update_manifest

    art = tmp_path / "art"
    shutil.copytree(app.env["GENRE_ARTIFACTS"], art)
    os.remove(art / "metrics.json")
    update_manifest(art)
    monkeypatch.setenv("GENRE_ARTIFACTS", str(art))
    open_page(app, "model_comparison")
    no_exceptions(app)
    assert "metrics.json is not available: artifact missing" in texts(app)
    specs = plotly_specs(app)
    assert len(specs) == 1 and specs[0]["layout"]["annotations"][0]["text"] == "Validation ROC-AUC"


def test_tampered_metrics_is_a_message_not_a_traceback(app, tmp_path, monkeypatch):
    import shutil

    art = tmp_path / "art"
    shutil.copytree(app.env["GENRE_ARTIFACTS"], art)
    (art / "metrics.json").write_text("{}")
    monkeypatch.setenv("GENRE_ARTIFACTS", str(art))
    open_page(app, "model_comparison")
    no_exceptions(app)
    assert "checksum mismatch" in texts(app)


def test_macro_roc_is_the_mean_tpr_over_genres():
    roc = {"a": {"fpr": [0, 1], "tpr": [0, 1]}, "b": {"fpr": [0, 0, 1], "tpr": [0, 1, 1]}}
    macro = charts.macro_roc(roc)
    assert macro["fpr"][0] == 0 and macro["fpr"][-1] == 1
    assert abs(macro["tpr"][50] - (0.5 + 1.0) / 2) < 1e-6
    assert charts.macro_roc({}) == {"fpr": [], "tpr": []}


def test_degraded_audio_tab_draws_the_robustness_record_or_says_it_is_missing(app, tmp_path, monkeypatch):
    """The tab reads robustness.json (the real record of core.training.robustness on
    the tiny data): one heatmap row per degradation, one column per model, cells
    the record's accuracies; without the file, one line saying how to make it;
    a file that does not verify is named, not drawn."""
    import shutil

    from core.models.artifacts import update_manifest, write_json
    from core.training.robustness import robustness

    open_page(app, "model_comparison")
    open_tab(app, "Degraded audio")
    assert "No robustness results for these models yet" in texts(app) and not plotly_specs(app)
    art = tmp_path / "art"
    shutil.copytree(app.env["GENRE_ARTIFACTS"], art)
    rec = robustness([app.env["GENRE_DATA"]], "test", art, n_boot=20)
    write_json(art / "robustness.json", rec)
    update_manifest(art)
    monkeypatch.setenv("GENRE_ARTIFACTS", str(art))
    open_page(app, "model_comparison")
    open_tab(app, "Degraded audio")
    (fig,) = plotly_specs(app)
    heat = fig["data"][0]
    assert values(heat["y"]) == rec["degradations"] and values(heat["x"]) == ["CNN", "CRNN"]
    assert np.allclose(values(heat["z"]), [[rec["models"][m][d]["accuracy"] for m in ("cnn", "crnn")]
                                           for d in rec["degradations"]])
    (art / "robustness.json").write_text("{}")
    app.run()
    no_exceptions(app)
    assert "The shipped robustness.json is not shown" in texts(app)
