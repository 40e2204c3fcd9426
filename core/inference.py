"""The one inference path: audio → each model's probabilities and embedding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .audio import AudioSource, load, load_windows
from .config import FeatureConfig
from .models import GenreModel, Prediction
from .pipeline import torch_threads


@dataclass
class Analysis:
    """What the models hear in one track."""

    logmel: np.ndarray                   # (n_mels, frames) of the first excerpt
    predictions: dict[str, Prediction]   # per model, averaged over excerpts & windows
    model_labels: dict[str, list[str]]   # label list of each model

    def probabilities(self, model: str) -> dict[str, float]:
        return dict(zip(self.labels(model), self.predictions[model].probs[0].tolist()))

    def labels(self, model: str) -> list[str]:
        return self.model_labels[model]

    def top(self, model: str) -> tuple[str, float]:
        probs = self.probabilities(model)
        g = max(probs, key=probs.get)
        return g, probs[g]


def analyse(source: AudioSource, models: dict[str, GenreModel], n_excerpts: int = 1) -> Analysis:
    """Decode ``source`` once and run every model on it.

    ``n_excerpts > 1`` averages over evenly spaced excerpts of a long track
    (each excerpt is itself averaged over sliding windows).
    """
    if not models:
        raise ValueError("no models loaded")
    cfg = next(iter(models.values())).cfg
    if n_excerpts > 1:
        waves = load_windows(source, cfg, n_excerpts)
    else:
        waves = load(source, cfg)[None]
    # One torch thread: a single track's ~10 windows are too small a batch for
    # two threads to pay off, and on a busy machine the second thread's
    # spin-waits cost more than it saves (measured in core.bench).
    with torch_threads(1):
        return _analyse(waves, models)


def _analyse(waves: np.ndarray, models: dict[str, GenreModel]) -> Analysis:
    mels: dict[FeatureConfig, torch.Tensor] = {}
    with torch.inference_mode():
        for m in models.values():
            if m.cfg not in mels:   # models sharing a feature config share one log-mel
                mels[m.cfg] = m.frontend(torch.from_numpy(waves))
    preds: dict[str, Prediction] = {}
    for name, m in models.items():
        p = m.predict_logmel(mels[m.cfg])
        preds[name] = Prediction(probs=p.probs.mean(0, keepdims=True),
                                 embedding=p.embedding.mean(0, keepdims=True),
                                 window_probs=p.window_probs.reshape(1, -1, p.window_probs.shape[-1]),
                                 window_starts=p.window_starts)
    first = next(iter(mels.values()))
    return Analysis(logmel=first[0, 0].numpy(), predictions=preds,
                    model_labels={n: m.labels for n, m in models.items()})
