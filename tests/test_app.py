"""The Streamlit app as a whole (AppTest), plus the shared app fixtures.

The pages' own tests (tests/test_pages_*.py) import ``app_env`` and ``app``
from here. The app is pointed at a tiny world through the environment
variables of core.config.Paths: generated audio (tiny_dataset), untrained
models with a real metrics.json and training histories, a built index, an
empty library and a fresh study database.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
PAGES = ["overview", "spectrograms", "classify", "model_comparison", "embedding_map", "recommender",
         "listening_study"]
TIMEOUT = 180  # seconds per script run: the first run loads models and decodes audio

_BUILT: dict[str, dict] = {}


def fake_history(labels: list[str], data: Path) -> dict:
    return {"epoch": [1, 2, 3, 4], "train_loss": [0.69, 0.61, 0.55, 0.52],
            "val_loss": [0.68, 0.64, 0.63, 0.65], "val_auc": [0.55, 0.66, 0.71, 0.69],
            "val_accuracy": [0.33, 0.5, 0.67, 0.5], "lr": [1e-3] * 4, "seconds": [1, 2, 3, 4],
            "best_epoch": 3, "best_val_auc": 0.71, "n_train": 12, "n_val": 3, "labels": labels,
            "data": [str(data)]}


def build_app_env(base: Path, dataset: Path, artifacts: Path) -> dict:
    """Artifacts (copied, plus metrics.json and histories), an index of the
    tiny data set and empty library; built once per test process."""
    key = str(base)
    if key in _BUILT:
        return _BUILT[key]
    import numpy as np

    from core.catalog.index import CatalogIndex
    from core.datasets import read_dataset
    from core.models.artifacts import load_models, update_manifest, write_json
    from core.training.metrics import classification_report, paired_comparison

    art = base / "artifacts"
    shutil.copytree(artifacts, art)
    models = load_models(art)
    labels = next(iter(models.values())).labels
    tracks = read_dataset(dataset)
    index = CatalogIndex.open(base / "index")
    index.update(tracks, models)
    # metrics.json in the shape core.training.evaluate writes, from the index's probabilities
    # (evaluate() itself runs thousands of bootstrap AUCs: too slow for a fixture).
    table = index.table()
    test = (table["split"] == "test").to_numpy()
    y = np.array([labels.index(g) for g in table["genre"][test]])
    probs = {m: index.probs(m)[test] for m in models}
    reps = {}
    for m in models:
        rep = classification_report(y, probs[m], labels, n_boot=20)
        rep["per_source"] = {dataset.name: {"macro": {k: rep["macro"][k] for k in
                                                      ("roc_auc", "f1", "accuracy", "n_tracks")},
                                            "genres": labels}}
        reps[m] = rep
    comparison = {"crnn_vs_cnn": paired_comparison(y, probs["cnn"], probs["crnn"], n_boot=50),
                  "split": "test", "n_tracks": int(test.sum()), "labels": labels}
    write_json(art / "metrics.json", {"models": reps, "comparison": comparison})
    for name in models:
        write_json(art / f"{name}_history.json", fake_history(labels, dataset))
    # The model pickers' default (core.models.selection): not the first name, so tests see it is read.
    write_json(art / "selection.json", {"best_model": "crnn", "criterion": "val macro roc_auc",
                                        "val": {"cnn": 0.6, "crnn": 0.7}})
    update_manifest(art)
    env = {"GENRE_ARTIFACTS": str(art), "GENRE_DATA": str(dataset), "GENRE_INDEX": str(base / "index"),
           "GENRE_LIBRARY": str(base / "library"), "GENRE_CACHE": str(base / "cache")}
    _BUILT[key] = env
    return env


@pytest.fixture(scope="session")
def app_env(tmp_path_factory, tiny_dataset, tiny_artifacts) -> dict:
    base = tmp_path_factory.getbasetemp() / "app_env"
    if str(base) not in _BUILT:
        base.mkdir(exist_ok=True)
    return build_app_env(base, tiny_dataset, tiny_artifacts)


@pytest.fixture
def app(app_env, monkeypatch, tmp_path):
    """A fresh AppTest on the tiny world (own study database and library)."""
    env = dict(app_env, GENRE_STUDY_DB=str(tmp_path / "study.sqlite"),
               GENRE_LIBRARY=str(tmp_path / "library"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.env = env
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    """Run the app, then switch to ``pages/<page>.py``."""
    at.run()
    if page != "overview":
        at.switch_page(f"pages/{page}.py").run()
    return at


def texts(at: AppTest) -> str:
    """All markdown, captions, alerts and headings of the last run as one string."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error",
                 "success"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def plotly_specs(at: AppTest) -> list[dict]:
    """The plotly figures (as dicts) that the last run drew."""
    import json

    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def values(arr) -> list:
    """A plotly array from a figure spec (plain list or base64 typed array) as a list."""
    import base64

    import numpy as np

    if isinstance(arr, dict) and "bdata" in arr:
        out = np.frombuffer(base64.b64decode(arr["bdata"]), dtype=np.dtype(arr["dtype"]))
        shape = arr.get("shape")
        if isinstance(shape, str):
            shape = [int(x) for x in shape.split(",")]
        return out.reshape(shape).tolist() if shape else out.tolist()
    return list(arr)


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


# ----------------------------------------------------------------- app-level tests

@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(app, page):
    open_page(app, page)
    no_exceptions(app)
    assert app.title, f"{page} has no title"


def test_navigation_lists_all_seven_pages():
    import ast

    tree = ast.parse(Path(APP).read_text())
    files = [n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "attr", "") == "Page" and n.args]
    assert [Path(f).stem for f in files] == PAGES
    assert all((ROOT / f).is_file() for f in files)


def wait_for_index(at: AppTest, timeout: float = 120) -> str:
    """Rerun until the background index check/run has finished; the sidebar's captions."""
    import time

    deadline = time.time() + timeout
    while True:
        side = "\n".join(str(c.value) for c in at.sidebar.caption)
        if "Index ready" in side or time.time() > deadline:
            return side
        time.sleep(0.5)
        # A fresh run: AppTest drops the sidebar on reruns under st.navigation.
        at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()


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
