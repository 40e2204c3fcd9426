"""What the Spectrograms and Classify pages draw for one track: every model's
analysis of a catalog file or an upload, cached, one error line per bad file."""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np
import streamlit as st

from core.audio.cache import content_hash
from core.audio.features import frame_times, mel_frequencies
from core.config import FeatureConfig
from core.errors import GenreError
from core.models.inference import Analysis, analyse
from core.models.verdict import Verdict, verdict
from core.serve import analysis_slot
from ui.models import baseline, models_key
from ui.uploads import check_upload


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

    spectrograms: dict[str, Spectrogram]     # model → its front-end's view (shared per config); {} when not asked
    probs: dict[str, dict[str, float]]       # model → genre → p
    window_probs: dict[str, np.ndarray]      # model → (windows, genres)
    window_starts_s: dict[str, list[float]]  # model → window start times
    labels: dict[str, list[str]]
    embedding: dict[str, np.ndarray]         # model → window-averaged embedding (uploaded seeds)
    baseline: dict[str, float] | None = None  # the MFCC baseline's genre → p (Classify)
    digest: str = ""                         # SHA-256 of an upload's bytes (the index's track key)
    facets: dict[str, float] | None = None   # core.facets columns: tempo, energy, tags… (beyond genre)
    repeated: tuple[float, float] | None = None   # (seconds of audio, model window) when the window repeated it

    def top(self, model: str) -> tuple[str, float]:
        p = self.probs[model]
        g = max(p, key=p.get)
        return g, p[g]

    def agree(self) -> bool:
        return len({self.top(m)[0] for m in self.probs}) <= 1

    def verdict(self, model: str) -> Verdict:
        """What to say about ``model``'s genres (one genre only when likely enough)."""
        return verdict(self.probs[model])



def repeated_caption(view: TrackView, name: str = "") -> None:
    """One caption (naming ``name`` when given) when the track was shorter
    than the models' window, so they heard it repeated; nothing otherwise."""
    if not view.repeated:
        return
    heard, window = view.repeated
    line = (f"{name + ': ' if name else ''}{heard:.1f} s of audio, shorter than the models' "
            f"{window:.0f} s: they heard it repeated.")
    st.caption(f":material/warning: {line} Answers on so little music are less reliable."
               if heard < window / 2 else line)


def named_bytes(name: str, data: bytes) -> io.BytesIO:
    """In-memory file whose errors name the upload (core.audio.load reads ``.name``)."""
    buf = io.BytesIO(data)
    buf.name = name
    return buf


def _spectrogram(a: Analysis, name: str, cfg: FeatureConfig) -> Spectrogram:
    """Model ``name``'s excerpt and log-mel, from the analysis (no second decode)."""
    logmel = a.logmels[name]
    return Spectrogram(wave=a.waves[name], sample_rate=cfg.sample_rate, logmel=logmel.astype(np.float16),
                       times=frame_times(cfg, logmel.shape[1]), freqs=mel_frequencies(cfg))


def _view(source, models: dict, base=None, spectrograms: bool = True) -> TrackView:
    """The analysis of ``source`` for the pages; without ``spectrograms`` it
    keeps no excerpt or log-mel (a few kB instead of ~4 MB for six models on a
    30 s clip: what Classify and the Recommender's uploaded seeds need)."""
    with analysis_slot():     # analyses take turns (core.serve): the cores and the memory are shared
        a = analyse(source, models, baseline=base)
    specs: dict[str, Spectrogram] = {}
    by_cfg: dict[str, Spectrogram] = {}
    for name, m in (models.items() if spectrograms else ()):   # models may differ in sample rate, mels, hop…
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
        baseline=a.baseline, facets=dict(a.facets),
        repeated=(a.heard_s, window) if (window := a.short_of_window()) else None)


# The caches below grow with what users pick and upload: bounded in entries
# and kept an hour at most. An entry with spectrograms is ~4 MB (six models,
# 30 s), one without a few kB; Streamlit keeps each pickled and unpickles a
# copy on every hit.
CACHE_TTL_S = 3600


@st.cache_data(show_spinner="Listening to the track…", max_entries=8, ttl=CACHE_TTL_S)
def analyse_path(path: str, stamp: float, models_id: str, _models: dict) -> TrackView:
    """Cached analysis of a file on disk, with spectrograms (``stamp``/``models_id`` key the cache)."""
    return _view(path, _models)


def analyse_upload(name: str, data: bytes, models_id: str, models: dict, baseline=None,
                   spectrograms: bool = False) -> TrackView:
    """Cached analysis of uploaded bytes, with their digest (``spectrograms``:
    also every model's excerpt and log-mel, for the Spectrograms page); raises
    :class:`AudioError` for bad audio. The bytes are hashed once, here: the
    digest keys the cache (Streamlit would otherwise hash the bytes again)
    and is the one the catalog index keys tracks by."""
    fn = _analyse_upload_spectrograms if spectrograms else _analyse_upload
    return fn(name, content_hash(data), models_id, baseline is not None, data, models, baseline)


@st.cache_data(show_spinner="Listening to the track…", max_entries=64, ttl=CACHE_TTL_S)
def _analyse_upload(name: str, digest: str, models_id: str, with_baseline: bool, _data: bytes, _models: dict,
                    _baseline=None) -> TrackView:
    return replace(_view(named_bytes(name, _data), _models, _baseline, spectrograms=False), digest=digest)


@st.cache_data(show_spinner="Listening to the track…", max_entries=8, ttl=CACHE_TTL_S)
def _analyse_upload_spectrograms(name: str, digest: str, models_id: str, with_baseline: bool, _data: bytes,
                                 _models: dict, _baseline=None) -> TrackView:
    return replace(_view(named_bytes(name, _data), _models, _baseline), digest=digest)


# What analysing one file may raise: the project's own errors (bad audio and
# the like), and the operating system's (unreadable, out of memory).
ANALYSIS_ERRORS = (GenreError, OSError, MemoryError)


def audio_error_line(exc: Exception, name: str) -> str:
    """The one line a user sees for a file that cannot be analysed."""
    if isinstance(exc, GenreError):
        return f"{name}: {exc.reason}"
    return f"{name}: could not be analysed ({type(exc).__name__})"


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
