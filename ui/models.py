"""Models and artifacts for the pages: the shared model loader, the MFCC
baseline, verified JSON artifacts, the model picker and the figure memo.

torch and the models' code take 1–2 s to import on two busy cores, so this
module and :mod:`ui.catalog` import them on first use (:data:`HEAVY_MODULES`):
the first page after ``streamlit run`` draws what needs no model before they
are in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from core.errors import ArtifactError
from ui.charts import model_name
from ui.settings import file_stamp, paths

if TYPE_CHECKING:
    from core.catalog.indexer import ModelLoader

HEAVY_MODULES = ("core.models.artifacts", "core.models.selection", "core.catalog.indexer")


@st.cache_resource(show_spinner=False, max_entries=2)
def _model_loader(artifacts: str, stamp: float) -> ModelLoader:
    # Loaded in a background thread, so the first page is drawn meanwhile.
    # The served inference copies (core.models.optimise: the ones the indexer,
    # the CLI and evaluation run too). They keep the shipped weights'
    # fingerprint, so the index built by the CLI stays current for them.
    from core.catalog.indexer import ModelLoader
    from core.models.artifacts import load_models

    return ModelLoader(lambda: load_models(artifacts, optimise=True))


def model_loader() -> ModelLoader:
    """The process-wide loader of the current artifacts (started on first use)."""
    root = paths().artifacts
    return _model_loader(str(root), file_stamp(root / "manifest.json"))


def _load_models(artifacts: str, stamp: float) -> dict:
    loader = _model_loader(artifacts, stamp)
    if not loader.ready():
        with st.spinner("Loading the models…"):
            return loader.get()
    return loader.get()


def shipped_models(quiet: bool = False) -> dict | None:
    """Every shipped model (loaded once per artifacts version), or ``None`` with a
    message on the page when they are missing or damaged.
    """
    root = paths().artifacts
    stamp = file_stamp(root / "manifest.json")
    try:
        loaded = _load_models(str(root), stamp)
    except ArtifactError as exc:
        if not quiet:
            st.error(f"The models could not be loaded: {exc}")
        return None
    if not loaded:
        if not quiet:
            st.warning(f"No trained models in `{root}` yet — run `make artifacts` "
                       "(or set `GENRE_ARTIFACTS` to a folder that has them).")
        return None
    return loaded


@st.cache_resource(show_spinner=False, max_entries=4)
def _load_baseline(root: str, stamp: float):
    # Immutable after loading (plain arrays, read only), so one copy serves every session.
    from core.models.artifacts import load_baseline

    return load_baseline(root)


def baseline():
    """The shipped MFCC baseline (for Classify), or ``None`` when there is none
    or it cannot be read."""
    root = paths().artifacts
    try:
        return _load_baseline(str(root), file_stamp(root / "manifest.json"))
    except ArtifactError:
        return None


def models_key() -> str:
    """Identity of the loaded models, so cached analyses refresh with new weights."""
    root = paths().artifacts
    return f"{root}@{file_stamp(root / 'manifest.json')}"


def default_model(names: list[str]) -> str:
    """The default model among ``names`` (``artifacts/selection.json``: chosen leave-one-source-out), else the first."""
    from core.models.selection import best_model

    return best_model(list(names), paths().artifacts)


def model_picker(names: list[str], key: str, label: str = "Model", container=None,
                 format_func=None, help: str | None = None) -> str:
    """A model selectbox that starts on :func:`default_model`; returns the chosen name."""
    names = list(names)
    box = container if container is not None else st
    return box.selectbox(label, names, index=names.index(default_model(names)), key=key,
                         format_func=format_func or model_name,
                         help=help or "Starts on the model that scored best on the validation split.")


@st.cache_data(show_spinner=False, max_entries=16)
def _read_json(name: str, artifacts: str, stamp: float, manifest_stamp: float) -> dict:
    from core.models.artifacts import read_json

    return read_json(name, artifacts)


def _verified_json(name: str) -> dict:
    """The artifact ``name`` read and verified against the manifest (cached
    until either file changes); raises ArtifactError, ValueError or OSError."""
    root = paths().artifacts
    return _read_json(name, str(root), file_stamp(root / name), file_stamp(root / "manifest.json"))


def artifact_json(name: str, quiet: bool = False) -> dict | None:
    """A verified JSON artifact (``metrics.json``, ``cnn_history.json``…) or ``None``
    with a one-line note when it is missing or unreadable."""
    try:
        return _verified_json(name)
    except ArtifactError as exc:
        if not quiet:
            st.info(f"{name} is not available: {exc}")
    except (ValueError, OSError) as exc:
        if not quiet:
            st.error(f"{name} is unreadable ({type(exc).__name__}: {exc}) — "
                     "regenerate it with `make artifacts`.")
    return None


def artifact_json_checked(name: str) -> tuple[dict | None, str | None]:
    """``(data, None)`` for a verified JSON artifact; ``(None, None)`` when it is
    simply not shipped; ``(None, line)`` with one line saying why when it is
    there but does not verify (edited without ``update_manifest``) or is unreadable."""
    if not (paths().artifacts / name).is_file():
        return None, None
    try:
        return _verified_json(name), None
    except (ArtifactError, ValueError, OSError) as exc:
        return None, f"The shipped {name} is not shown: {exc}"


def artifact_key(name: str) -> str:
    """Identity of one artifact file (path + modification time) for cache keys."""
    root = paths().artifacts
    return f"{root / name}@{file_stamp(root / name)}"


@st.cache_resource(show_spinner=False, max_entries=64)
def cached_figure(key: tuple, _build):
    """Build a plotly figure once per ``key`` and reuse the object.

    Building (validating) plotly figures is the slowest part of the chart
    pages; st.plotly_chart only reads the figure, so one shared object is safe.
    cache_resource (not cache_data) because unpickling a Figure re-validates it.
    """
    return _build()
