"""Shared fixtures and helpers of the whole suite, imported one way
(``from conftest import synth``): small generated audio (tones, noise,
clicks), a tiny labelled data folder, untrained-but-valid model artifacts
(and a copy to tamper with), the hostile-file corpus (tests/hostile.py), and
the app world: ``app_env`` and ``app`` (a fresh AppTest) with the helpers the
page tests use (``open_page``, ``texts``, ``plotly_specs``, ...)."""

from __future__ import annotations

import ast
import csv
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import soundfile as sf

from core.config import FeatureConfig, shared_data_dirs

if TYPE_CHECKING:  # pragma: no cover
    from streamlit.testing.v1 import AppTest

# CPython 3.11.7 (this project's interpreter) keeps ast.parse's recursion
# depth in one global (gh-106905, fixed in 3.11.9): two threads parsing at
# once fail with "AST constructor recursion depth mismatch". The server
# compiles pages under one ScriptCache lock, but every AppTest has its own
# cache, and a page script still running past its test's timeout compiles
# in parallel with the next test's (CI stop 20). One lock for the process.
_parse, _parse_lock = ast.parse, threading.Lock()


def _locked_parse(*args, **kwargs):
    with _parse_lock:
        return _parse(*args, **kwargs)


ast.parse = _locked_parse

# Tests never write into the project's own log-mel cache.
os.environ.setdefault("GENRE_CACHE", tempfile.mkdtemp(prefix="genre-test-cache-"))

SR = 22_050


def synth(kind: str, seconds: float = 3.0, sr: int = SR, seed: int = 0,
          channels: int = 1) -> np.ndarray:
    """Generated test signal: 'tone' (harmonic), 'noise', 'clicks' or 'chirp'."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    if kind == "tone":
        f0 = 220 * (1 + seed % 5)
        y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5))
    elif kind == "noise":
        y = rng.standard_normal(t.size)
    elif kind == "clicks":
        y = np.zeros(t.size)
        y[:: sr // (4 + seed % 4)] = 1.0
        y = np.convolve(y, np.exp(-np.arange(200) / 20), mode="same")
    elif kind == "chirp":
        y = np.sin(2 * np.pi * (200 + 800 * t / seconds) * t)
    else:
        raise ValueError(kind)
    y = 0.3 * y / (np.abs(y).max() + 1e-9)
    y = y.astype(np.float32)
    return np.stack([y] * channels, axis=1) if channels > 1 else y


def write_audio(path: Path, y: np.ndarray, sr: int = SR, fmt: str | None = None) -> Path:
    """Write ``y`` as WAV/FLAC/OGG/MP3 (by extension) with libsndfile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, sr, format=fmt or path.suffix.lstrip(".").upper())
    return path


GENRES = {"Tones": "tone", "Noise": "noise", "Clicks": "clicks"}


def make_dataset(root: Path, per_genre: int = 6, seconds: float = 3.0, fmt: str = "mp3") -> Path:
    """A metadata.csv data folder: 3 genres of generated audio, 4:1:1 split."""
    rows = []
    for genre, kind in GENRES.items():
        for i in range(per_genre):
            rel = Path("audio") / genre / f"{genre.lower()}_{i:02d}.{fmt}"
            write_audio(root / rel, synth(kind, seconds, seed=i))
            split = "test" if i == 0 else "val" if i == 1 else "train"
            rows.append({"track_id": f"{genre.lower()}_{i:02d}", "path": str(rel), "genre": genre,
                         "split": split, "artist": f"{genre} artist {i % 3}",
                         "title": f"{genre} piece {i}"})
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tinydata"))


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory) -> Path:
    """Untrained CNN and CRNN saved like the shipped artifacts (with manifest)."""
    import torch

    from core.models import build_model
    from core.models.artifacts import save_model, update_manifest

    out = tmp_path_factory.mktemp("artifacts")
    torch.manual_seed(0)
    for name in ("cnn", "crnn"):
        save_model(build_model(name, list(GENRES), FeatureConfig()), out)
    update_manifest(out)
    return out


@pytest.fixture
def tone_wav(tmp_path) -> Path:
    return write_audio(tmp_path / "tone.wav", synth("tone", 3.0))


@pytest.fixture
def tone_mp3(tmp_path) -> Path:
    return write_audio(tmp_path / "tone.mp3", synth("tone", 3.0))


@pytest.fixture
def artifacts_copy(tiny_artifacts, tmp_path) -> Path:
    """A private copy of ``tiny_artifacts`` that a test may damage."""
    out = tmp_path / "artifacts"
    out.mkdir()
    for p in tiny_artifacts.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    return out


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """Every hostile file of tests/hostile.py, generated once per session."""
    from hostile import make_corpus

    return make_corpus(tmp_path_factory.mktemp("hostile"))


REAL_DATA = shared_data_dirs()
real_data = pytest.mark.skipif(not REAL_DATA, reason="../shared/data not available")


# ----------------------------------------------------------------- the app world

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
TIMEOUT = 180  # seconds per script run: the first run loads models and decodes audio


def app_pages() -> list[str]:
    """Stems of the page scripts app.py hands to ``st.navigation``, in its
    order, read from app.py itself (tests/test_app.py checks it against the
    running app)."""
    tree = ast.parse(Path(APP).read_text())
    return [Path(n.args[0].value).stem for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "attr", "") == "Page" and n.args and isinstance(n.args[0], ast.Constant)]


PAGES = app_pages()

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
    """The tiny world the app is pointed at through the environment variables
    of core.config.Paths: generated audio (tiny_dataset), untrained models with
    a real metrics.json and training histories, a built index, an empty library."""
    base = tmp_path_factory.getbasetemp() / "app_env"
    if str(base) not in _BUILT:
        base.mkdir(exist_ok=True)
    return build_app_env(base, tiny_dataset, tiny_artifacts)


@pytest.fixture
def app(app_env, monkeypatch, tmp_path) -> "AppTest":
    """A fresh AppTest on the tiny world (own study database and library)."""
    from streamlit.testing.v1 import AppTest

    env = dict(app_env, GENRE_STUDY_DB=str(tmp_path / "study.sqlite"),
               GENRE_LIBRARY=str(tmp_path / "library"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.env = env
    return at


@pytest.fixture
def navigation(monkeypatch) -> list:
    """Filled, once the app runs, with the pages (``StreamlitPage``) that
    app.py hands to ``st.navigation``: what the running app really offers."""
    import streamlit as st

    pages: list = []
    real = st.navigation

    def recording(given, *args, **kwargs):
        pages[:] = list(given)
        return real(given, *args, **kwargs)

    monkeypatch.setattr(st, "navigation", recording)
    return pages


def open_page(at: "AppTest", page: str) -> "AppTest":
    """Run the app, then switch to ``pages/<page>.py``."""
    at.run()
    if page != "overview":
        at.switch_page(f"pages/{page}.py").run()
    return at


def texts(at: "AppTest") -> str:
    """All markdown, captions, alerts and headings of the last run as one string."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error",
                 "success"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def plotly_specs(at: "AppTest") -> list[dict]:
    """The plotly figures (as dicts) that the last run drew."""
    import json

    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def values(arr) -> list:
    """A plotly array from a figure spec (plain list or base64 typed array) as a list."""
    import base64

    if isinstance(arr, dict) and "bdata" in arr:
        out = np.frombuffer(base64.b64decode(arr["bdata"]), dtype=np.dtype(arr["dtype"]))
        shape = arr.get("shape")
        if isinstance(shape, str):
            shape = [int(x) for x in shape.split(",")]
        return out.reshape(shape).tolist() if shape else out.tolist()
    return list(arr)


def no_exceptions(at: "AppTest") -> None:
    assert not at.exception, [e.value for e in at.exception]


def wait_for_index(at: "AppTest", timeout: float = 120) -> str:
    """Rerun until the background index check/run has finished; the sidebar's captions."""
    import time

    from streamlit.testing.v1 import AppTest

    from ui.sidebar import DRAWN_KEY as SIDEBAR_DRAWN_KEY

    deadline = time.time() + timeout
    while True:
        side = "\n".join(str(c.value) for c in at.sidebar.caption)
        if "Index ready" in side or time.time() > deadline:
            return side
        time.sleep(0.5)
        # A fresh run: AppTest drops the sidebar on reruns under st.navigation.
        # It stands for the sidebar's timed redraw of the same session (AppTest
        # does not run fragments' timers): its first draw is behind it, so a
        # process that has not imported the index modules yet imports them
        # now instead of saying "starting…" again (ui.sidebar).
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.session_state[SIDEBAR_DRAWN_KEY] = True
        at = at.run()


def pytest_sessionfinish(session, exitstatus):
    """No process of the project outlives the suite: fail the run if any child
    process of this pytest (pool workers, Ray daemons, servers) is still alive
    a few seconds after the last test."""
    from core.procs import child_processes, wait_until_none

    left = wait_until_none(child_processes, 10)
    if left:
        lines = []
        for p in left:
            try:
                lines.append(f"  pid {p.pid}: {' '.join(p.cmdline())[:200]}")
            except Exception:  # noqa: BLE001 — it may exit while we look
                lines.append(f"  pid {p.pid}")
        sys.stderr.write("\nprocesses left running after the test suite:\n" + "\n".join(lines) + "\n")
        session.exitstatus = 1
