"""The one inference path: audio → each model's probabilities and embedding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .audio import AudioSource, load, load_windows
from .models import GenreModel, Prediction


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
    first = next(iter(models.values()))
    with torch.inference_mode():
        mel = first.frontend(torch.from_numpy(waves))
    preds: dict[str, Prediction] = {}
    for name, m in models.items():
        if m.cfg != cfg:
            mel_m = m.frontend(torch.from_numpy(waves))
        else:
            mel_m = mel
        p = m.predict_logmel(mel_m)
        preds[name] = Prediction(probs=p.probs.mean(0, keepdims=True),
                                 embedding=p.embedding.mean(0, keepdims=True),
                                 window_probs=p.window_probs.reshape(1, -1, p.window_probs.shape[-1]),
                                 window_starts=p.window_starts)
    return Analysis(logmel=mel[0, 0].numpy(), predictions=preds,
                    model_labels={n: m.labels for n, m in models.items()})
