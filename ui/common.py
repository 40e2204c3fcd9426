"""Shared plumbing of the pages: cached loaders, the catalog settings and the
friendly messages. Not a page itself (app.py registers pages explicitly)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from core.audio.features import frame_times, mel_frequencies
from core.audio.load import SUPPORTED_EXTENSIONS
from core.catalog import library
from core.catalog import sources as catalog_mod
from core.catalog.index import CatalogError, IndexSnapshot
from core.catalog.indexer import BackgroundIndexer, ModelLoader
from core.config import FeatureConfig, Paths
from core.errors import GenreError
from core.models.artifacts import ArtifactError, load_baseline, load_models, read_json
from core.models.inference import Analysis, analyse
from core.models.selection import best_model
from ui.charts import model_name

SETTING_KEY = "data_folders"
UPLOAD_TYPES = sorted({e.lstrip(".") for e in SUPPORTED_EXTENSIONS})

HOW_TO_ADD_MUSIC = """
**How to add music**

* In the sidebar, open **Music folders** and enter one folder per line. A folder can hold a
  `metadata.csv` (columns `track_id, path, genre`, …), one sub-folder per genre
  (`Rock/song.mp3`), or the FMA layout.
* Or start the app with the environment variable, several folders separated by `:`
  ```
  GENRE_DATA=/music/rock_and_jazz:/music/more make run
  ```
* Or upload tracks on the **Classify** page and press **Add to my library**
  (they are kept in `{library}`).
"""


def paths() -> Paths:
    """Current folders (environment variables are read on every run)."""
    return Paths()


def _stamp(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


# ----------------------------------------------------------------- models & artifacts

@st.cache_resource(show_spinner=False, max_entries=2)
def _model_loader(artifacts: str, stamp: float) -> ModelLoader:
    # Loaded in a background thread, so the first page is drawn meanwhile.
    # Inference-only copies (batch norm folded; same outputs to ~1e-6, ~2.5x
    # less CPU). They keep the shipped weights' fingerprint, so the index
    # built by the CLI stays current for them.
    return ModelLoader(lambda: load_models(artifacts, optimise=True))


def model_loader() -> ModelLoader:
    """The process-wide loader of the current artifacts (started on first use)."""
    root = paths().artifacts
    return _model_loader(str(root), _stamp(root / "manifest.json"))


def _load_models(artifacts: str, stamp: float) -> dict:
    loader = _model_loader(artifacts, stamp)
    if not loader.ready():
        with st.spinner("Loading the models…"):
            return loader.get()
    return loader.get()


def models(quiet: bool = False) -> dict | None:
    """Every shipped model (loaded once per artifacts version), or ``None`` with a
    message on the page when they are missing or damaged.
    """
    root = paths().artifacts
    stamp = _stamp(root / "manifest.json")
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
    return load_baseline(root)


def baseline():
    """The shipped MFCC baseline (for Classify), or ``None`` when there is none
    or it cannot be read."""
    root = paths().artifacts
    try:
        return _load_baseline(str(root), _stamp(root / "manifest.json"))
    except ArtifactError:
        return None


def models_key() -> str:
    """Identity of the loaded models, so cached analyses refresh with new weights."""
    root = paths().artifacts
    return f"{root}@{_stamp(root / 'manifest.json')}"


def default_model(names: list[str]) -> str:
    """The best model on validation among ``names`` (``artifacts/selection.json``), else the first."""
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
    return read_json(name, artifacts)


def artifact_json(name: str, quiet: bool = False) -> dict | None:
    """A verified JSON artifact (``metrics.json``, ``cnn_history.json``…) or ``None``
    with a one-line note when it is missing or unreadable."""
    root = paths().artifacts
    try:
        return _read_json(name, str(root), _stamp(root / name), _stamp(root / "manifest.json"))
    except ArtifactError as exc:
        if not quiet:
            st.info(f"{name} is not available: {exc}")
    except (ValueError, OSError) as exc:
        if not quiet:
            st.error(f"{name} is unreadable ({type(exc).__name__}: {exc}) — "
                     "regenerate it with `make artifacts`.")
    return None


def artifact_key(name: str) -> str:
    """Identity of one artifact file (path + modification time) for cache keys."""
    root = paths().artifacts
    return f"{root / name}@{_stamp(root / name)}"


@st.cache_resource(show_spinner=False, max_entries=64)
def cached_figure(key: tuple, _build):
    """Build a plotly figure once per ``key`` and reuse the object.

    Building (validating) plotly figures is the slowest part of the chart
    pages; st.plotly_chart only reads the figure, so one shared object is safe.
    cache_resource (not cache_data) because unpickling a Figure re-validates it.
    """
    return _build()


# ----------------------------------------------------------------- catalog

def data_setting() -> str:
    """Text of the Music folders settings field (starts as $GENRE_DATA / ../shared/data)."""
    if SETTING_KEY not in st.session_state:
        st.session_state[SETTING_KEY] = catalog_mod.default_data_setting().replace(os.pathsep, "\n")
    return st.session_state[SETTING_KEY]


def data_dirs() -> list[Path]:
    return catalog_mod.parse_data_setting(data_setting())


@st.cache_data(show_spinner="Reading the music folders…", max_entries=8)
def _read_catalog(dirs: tuple[str, ...], library: str, signature: tuple) -> catalog_mod.Catalog:
    return catalog_mod.read_catalog(dirs, library)


def catalog() -> catalog_mod.Catalog:
    """Tracks of the configured folders + the library (cached until a folder changes)."""
    dirs = tuple(str(d) for d in data_dirs())
    lib = paths().library
    return _read_catalog(dirs, str(lib), catalog_mod.catalog_signature(dirs, lib))


def show_how_to_add_music(reason: str = "No music is configured yet.") -> None:
    st.info(reason)
    st.markdown(HOW_TO_ADD_MUSIC.format(library=paths().library))


def play(path: str | Path) -> None:
    """Audio player for a catalog file, or a short note when the file is gone."""
    if Path(path).is_file():
        st.audio(str(path))
    else:
        st.caption(f"audio file not found: {Path(path).name}")


def track_label(title: str, artist: str, genre: str, track_id: str) -> str:
    """'Title — Artist · Genre' (falls back to the id when there is no title)."""
    name = title or track_id
    if artist:
        name += f" — {artist}"
    return f"{name} · {genre}" if genre else name


# ----------------------------------------------------------------- uploads

def max_upload_bytes() -> int:
    """The upload limit (core.catalog.library's, read at call time so tests can lower it)."""
    return int(library.MAX_UPLOAD_BYTES)


def named_bytes(name: str, data: bytes) -> io.BytesIO:
    """In-memory file whose errors name the upload (core.audio.load reads ``.name``)."""
    buf = io.BytesIO(data)
    buf.name = name
    return buf


def check_upload(name: str, data: bytes) -> str | None:
    """One-line reason an upload is refused before decoding, or ``None``."""
    limit = max_upload_bytes()
    if len(data) > limit:
        return f"{name}: too large ({len(data) / 2**20:.1f} MB; the limit is {limit / 2**20:.0f} MB)"
    if not any(name.lower().endswith(e) for e in SUPPORTED_EXTENSIONS):
        return f"{name}: not a supported audio type (use {', '.join(UPLOAD_TYPES)})"
    return None


# ----------------------------------------------------------------- analysis

@dataclass
class Spectrogram:
    """What one model's front-end makes of a track (for drawing)."""

    wave: np.ndarray                         # the model-rate excerpt it heard
    sample_rate: int
    logmel: np.ndarray                       # (n_mels, frames), float16 to keep the cache small
    times: np.ndarray
    freqs: np.ndarray


@dataclass
class TrackView:
    """Everything the Spectrograms / Classify pages draw for one track."""

    spectrograms: dict[str, Spectrogram]     # model → its front-end's view (shared per config)
    probs: dict[str, dict[str, float]]       # model → genre → p
    window_probs: dict[str, np.ndarray]      # model → (windows, genres)
    window_starts_s: dict[str, list[float]]  # model → window start times
    labels: dict[str, list[str]]
    embedding: dict[str, np.ndarray]         # model → window-averaged embedding (uploaded seeds)
    baseline: dict[str, float] | None = None  # the MFCC baseline's genre → p (Classify)

    def top(self, model: str) -> tuple[str, float]:
        p = self.probs[model]
        g = max(p, key=p.get)
        return g, p[g]

    def agree(self) -> bool:
        return len({self.top(m)[0] for m in self.probs}) <= 1


def _spectrogram(a: Analysis, name: str, cfg: FeatureConfig) -> Spectrogram:
    """Model ``name``'s excerpt and log-mel, from the analysis (no second decode)."""
    logmel = a.logmels[name]
    return Spectrogram(wave=a.waves[name], sample_rate=cfg.sample_rate, logmel=logmel.astype(np.float16),
                       times=frame_times(cfg, logmel.shape[1]), freqs=mel_frequencies(cfg))


def _view(source, models: dict, base=None) -> TrackView:
    a = analyse(source, models, baseline=base)
    specs: dict[str, Spectrogram] = {}
    by_cfg: dict[str, Spectrogram] = {}
    for name, m in models.items():          # models may differ in sample rate, mels, hop…
        k = m.cfg.key()
        if k not in by_cfg:
            by_cfg[k] = _spectrogram(a, name, m.cfg)
        specs[name] = by_cfg[k]
    window_starts = {}
    for name, m in models.items():
        hop_s = m.cfg.hop_length / m.cfg.sample_rate
        window_starts[name] = [s * hop_s for s in a.predictions[name].window_starts]
    return TrackView(
        spectrograms=specs, probs={m: a.probabilities(m) for m in models},
        window_probs={m: a.predictions[m].window_probs[0] for m in models},
        window_starts_s=window_starts, labels={m: a.labels(m) for m in models},
        embedding={m: np.asarray(a.predictions[m].embedding[0], np.float32) for m in models},
        baseline=a.baseline)


@st.cache_data(show_spinner="Listening to the track…", max_entries=32)
def analyse_path(path: str, stamp: float, models_id: str, _models: dict) -> TrackView:
    """Cached analysis of a file on disk (``stamp``/``models_id`` key the cache)."""
    return _view(path, _models)


@st.cache_data(show_spinner="Listening to the track…", max_entries=32)
def analyse_upload(name: str, data: bytes, models_id: str, _models: dict, _baseline=None) -> TrackView:
    """Cached analysis of uploaded bytes; raises :class:`AudioError` for bad audio."""
    return _view(named_bytes(name, data), _models, _baseline)


# What analysing one file may raise: the project's own errors (bad audio and
# the like), and the operating system's (unreadable, out of memory).
ANALYSIS_ERRORS = (GenreError, OSError, MemoryError)


def audio_error_line(exc: Exception, name: str) -> str:
    """The one line a user sees for a file that cannot be analysed."""
    if isinstance(exc, GenreError):
        return f"{name}: {exc.reason}"
    return f"{name}: could not be analysed ({type(exc).__name__})"


# ----------------------------------------------------------------- sidebar

def sidebar() -> None:
    """Music-folder settings and catalog status, shown on every page."""
    data_setting()
    with st.sidebar:
        cat = catalog()
        with st.expander(":material/folder_open: Music folders", expanded=not len(cat)):
            st.text_area("Data folders, one per line", key=SETTING_KEY, height=110,
                         help="Folders with a metadata.csv, genre sub-folders or the FMA layout. "
                              "Starts as $GENRE_DATA (':'-separated) or ../shared/data.")
            st.caption(f"Uploads are kept in `{paths().library}` ($GENRE_LIBRARY).")
        if len(cat):
            st.caption(f":material/library_music: {len(cat.tracks):,} tracks in {len(cat.data_dirs)} folder(s)"
                       + (f" · {len(cat.library)} upload(s)" if cat.library else ""))
        else:
            st.caption(":material/library_music: No music configured yet.")
        for problem in cat.problems:
            st.caption(f":material/warning: {problem}")
        index_sidebar(cat)


def index_sidebar(cat: catalog_mod.Catalog) -> None:
    """Index status; starts the background indexing of the catalog by itself
    (once per catalog and model version in this server process)."""
    if not len(cat):
        return
    svc = indexer(quiet=True)
    if svc is None:
        return
    key = (catalog_mod.catalog_signature([str(d) for d in cat.data_dirs], cat.library_dir), models_key())
    if not svc.running() and key not in svc.attempted:
        svc.start(cat, model_loader().get, key=key)
    _index_status(svc.dir)


@st.fragment(run_every=2.0)
def _index_status(index_dir: Path) -> None:
    """Progress of the background run (redrawn every 2 s on its own)."""
    svc = _indexer(str(index_dir))
    status = svc.status()
    snap = svc.snapshot()
    if status.running and not status.total:
        st.caption(f":material/database: Index: {len(snap):,} tracks — checking for new music…")
    elif status.running:
        st.progress(min(status.done / status.total, 1.0), text=status.line())
        st.caption(f":material/database: {len(snap):,} tracks usable so far.")
    elif status.state == "failed":
        st.caption(f":material/error: {status.line()}")
    else:
        st.caption(f":material/database: Index ready: {len(snap):,} tracks.")
        if status.stats.get("failed"):
            st.caption(f":material/warning: {len(status.stats['failed'])} file(s) could not be read.")


# ----------------------------------------------------------------- index

@st.cache_resource(show_spinner="Opening the catalog index…", max_entries=2)
def _indexer(index_dir: str) -> BackgroundIndexer:
    # The one object shared by every session: it is never changed in place
    # for readers; index() hands out its current immutable snapshot.
    return BackgroundIndexer(index_dir)


def indexer(quiet: bool = False) -> BackgroundIndexer | None:
    """The process-wide background indexer of the configured index folder."""
    d = paths().index
    try:
        return _indexer(str(d))
    except (CatalogError, OSError) as exc:
        if not quiet:
            st.error(f"The catalog index in `{d}` cannot be read: {exc} — delete the folder to "
                     "rebuild it.")
        return None


def index(quiet: bool = False) -> IndexSnapshot | None:
    """The current index snapshot (immutable: use it for the whole page run),
    or ``None`` with a message."""
    svc = indexer(quiet)
    if svc is None:
        return None
    try:
        return svc.snapshot()
    except (CatalogError, OSError) as exc:
        if not quiet:
            st.error(f"The catalog index in `{svc.dir}` cannot be read: {exc}")
        return None


@st.cache_data(show_spinner=False, max_entries=4)
def _index_table(index_dir: str, version: int, n: int, _idx):
    df = _idx.table()
    df["label"] = [track_label(t, a, g, i) for t, a, g, i in
                   zip(df["title"], df["artist"], df["genre"], df["track_id"])]
    return df


def index_table(idx):
    """``idx.table()`` plus a display ``label`` column (cached per index version)."""
    return _index_table(str(idx.dir), idx.version, len(idx), idx)


@st.cache_data(show_spinner=False, max_entries=4)
def _is_current(index_dir: str, version: int, models_id: str, _idx, _models) -> bool:
    return _idx.is_current(_models)


def index_plan(cat: catalog_mod.Catalog, idx, mods: dict) -> catalog_mod.IndexPlan:
    """What the index lacks; ``mods`` comes from ``models()``."""
    changed = len(idx) > 0 and not _is_current(str(idx.dir), idx.version, models_key(), idx, mods)
    return catalog_mod.plan_index(cat, index_table(idx), models_changed=changed)


def start_indexing(cat: catalog_mod.Catalog) -> bool:
    """Start (or restart) the background indexing of ``cat``; False if one runs."""
    svc = indexer()
    return svc is not None and svc.start(cat, model_loader().get)


def index_or_help(mods: dict | None):
    """The index snapshot if it has tracks (while indexing runs: what is indexed
    so far); otherwise wait for the first tracks or explain how to add music."""
    cat = catalog()
    svc = indexer()
    idx = index()
    if idx is None or svc is None:
        return None
    if len(idx):
        status = svc.status()
        if status.running:
            st.caption(f":material/hourglass_top: Indexing in the background ({status.done:,} / "
                       f"{status.total:,}): this page uses the {len(idx):,} tracks indexed so far; "
                       "reload it to see more.")
        return idx
    if not len(cat):
        show_how_to_add_music("This page needs music: the catalog is empty.")
        return None
    if not mods:
        return None
    status = svc.status()
    if status.running:
        st.info(f"The catalog has {len(cat):,} tracks and they are being indexed in the background "
                f"(every model listens to each track once). {status.done:,} / {status.total:,} done; "
                "this page appears as soon as the first tracks are in.")
        _wait_for_first_tracks(svc)
        return None
    if status.state == "failed":
        st.error(status.line())
    st.info(f"The catalog has {len(cat):,} tracks, but they have not been indexed yet: every model "
            "needs to listen to each track once (a few minutes for ~1,000 tracks).")
    if st.button("Index the catalog now", key="main_index", type="primary"):
        start_indexing(cat)
        _wait_for_first_tracks(svc)
    return None


def _wait_for_first_tracks(svc: BackgroundIndexer, poll_s: float = 1.0) -> None:
    """Rerun the page once the index has its first tracks (or the run ended)."""
    import time

    while svc.running() and not len(svc.snapshot()):
        time.sleep(poll_s)
    st.rerun()


# ----------------------------------------------------------------- library

def add_to_library(files: list[tuple[str, bytes]]) -> list[str]:
    """Save uploads into the library (sanitised names, size limit) and index
    them with a progress bar. Returns the new track ids; bad files get one
    ``st.error`` line each and the rest still go through."""
    saved = []
    for name, data in files:
        try:
            saved.append(library.save_upload(name, data, paths().library))
        except library.LibraryError as exc:
            st.error(str(exc))
    if not saved:
        return []
    svc = indexer(quiet=True)
    mods = models(quiet=True)
    if svc is None or not mods:
        st.success(f"Saved {len(saved)} file(s) to the library; index them from the sidebar.")
        return []
    bar = st.progress(0.0, text="Adding to the catalog…" + (
        " (after the background indexing)" if svc.running() else ""))

    def progress(done: int, total: int) -> None:
        bar.progress(min(done / total, 1.0) if total else 1.0, text=f"Indexing: {done} / {total}")

    stats = svc.run_now(lambda w: w.add_files(
        [str(s.path) for s in saved], mods, source=catalog_mod.LIBRARY_SOURCE, progress=progress,
        titles=[s.path.stem.replace("_", " ") for s in saved]))
    bar.progress(1.0, text="Done.")
    for line in stats.get("failed", []):
        st.error(line)
    ids = [t for t in stats.get("track_ids", []) if t]
    if ids:
        st.success(f"Added {len(ids)} track(s) to your library — they now appear on the Embedding "
                   "map and in the Recommender.")
    return ids


@dataclass
class ClassifyResult:
    """One uploaded file: its analysis or the one-line reason it has none."""

    name: str
    data: bytes
    view: TrackView | None = None
    error: str | None = None


def classify_files(files: list[tuple[str, bytes]], models: dict) -> list[ClassifyResult]:
    """Analyse each upload independently, so one bad file never hides the others."""
    out = []
    for name, data in files:
        problem = check_upload(name, data)
        if problem:
            out.append(ClassifyResult(name, data, error=problem))
            continue
        try:
            out.append(ClassifyResult(name, data, view=analyse_upload(name, data, models_key(), models,
                                                                      baseline())))
        except ANALYSIS_ERRORS as exc:   # one line per bad file; the others still show
            out.append(ClassifyResult(name, data, error=audio_error_line(exc, name)))
    return out


# ----------------------------------------------------------------- embedding map & seeds

SEEDS_KEY = "seeds"          # the user's seed track ids, shared by the map and the recommender
from core.recommend.request import MAX_SEEDS  # noqa: E402  (one definition, in core)


def seeds() -> list[str]:
    return list(st.session_state.get(SEEDS_KEY, []))


def add_seed(track_id: str) -> bool:
    """Append a seed (max five); False if it was already there or the list is full."""
    cur = seeds()
    if track_id in cur or len(cur) >= MAX_SEEDS:
        return False
    st.session_state[SEEDS_KEY] = cur + [track_id]
    return True


PROJECTIONS = ("PCA", "t-SNE", "UMAP")


@st.cache_data(show_spinner="Drawing the map…", max_entries=16)
def projection(index_dir: str, version: int, n: int, model: str, method: str, _idx) -> np.ndarray:
    """2-D coordinates of every indexed track (PCA, t-SNE or UMAP of the
    embeddings), cached per index version, model and method."""
    from core.recommend.search import normalise

    x = normalise(_idx.embeddings(model))
    if len(x) < 3:
        return np.c_[np.arange(len(x), dtype=float), np.zeros(len(x))]
    if method == "t-SNE":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(x)
    if method == "UMAP" and len(x) >= 5:
        import umap  # imported on first use: it compiles numba code (~2 s warm, once per process)

        reducer = umap.UMAP(n_components=2, n_neighbors=int(min(15, len(x) - 1)), metric="euclidean",
                            init="spectral" if len(x) > 16 else "random", random_state=0, n_jobs=1)
        return np.asarray(reducer.fit_transform(x), dtype=float)
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=0).fit_transform(x)


def selected_track_ids(event) -> list[str]:
    """Track ids of the points picked in a ``st.plotly_chart(on_select="rerun")``
    event (the figure's ``custom_data`` holds the id)."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        points = getattr(getattr(event, "selection", None), "points", None) or []
    out = []
    for p in points:
        cd = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if cd is not None and str(cd) not in out:
            out.append(str(cd))
    return out
