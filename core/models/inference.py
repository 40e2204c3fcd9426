"""The one inference path: audio → each model's probabilities and embedding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.audio.features import logmels
from core.audio.load import AudioSource, load_multi_heard
from core.config import FeatureConfig
from core.facets import batch_facets
from core.models import GenreModel, Prediction, trunk_group
from core.models.optimise import torch_threads

if TYPE_CHECKING:  # pragma: no cover
    # Not imported at run time: it pulls in scikit-learn (~1 CPU-s), which
    # every indexing worker process would pay for at start.
    from core.training.baseline import BaselineClassifier


@dataclass
class Analysis:
    """What the models hear in one track."""

    logmel: np.ndarray                   # (n_mels, frames) of the first excerpt, first model
    predictions: dict[str, Prediction]   # per model, averaged over excerpts & windows
    model_labels: dict[str, list[str]]   # label list of each model
    model_configs: dict[str, FeatureConfig] = field(default_factory=dict)
    logmels: dict[str, np.ndarray] = field(default_factory=dict)   # per model, first excerpt
    waves: dict[str, np.ndarray] = field(default_factory=dict)     # per model, first excerpt (its rate)
    baseline: dict[str, float] | None = None   # the MFCC baseline's genre → p, when given one
    facets: dict[str, float] = field(default_factory=dict)   # core.facets columns (first excerpt)
    heard_s: float | None = None         # seconds of audio in the longest excerpt (≤ the longest window)

    def short_of_window(self) -> float | None:
        """The longest model window (s) when the track was over a second
        shorter, so the models heard it repeated; else ``None``."""
        window = max(c.window_seconds for c in self.model_configs.values()) if self.model_configs else 0.0
        return window if self.heard_s is not None and self.heard_s < window - 1.0 else None

    def probabilities(self, model: str) -> dict[str, float]:
        return dict(zip(self.labels(model), self.predictions[model].probs[0].tolist()))

    def labels(self, model: str) -> list[str]:
        return self.model_labels[model]

    def top(self, model: str) -> tuple[str, float]:
        probs = self.probabilities(model)
        g = max(probs, key=probs.get)
        return g, probs[g]


def analyse(source: AudioSource, models: dict[str, GenreModel], n_excerpts: int = 1,
            baseline: BaselineClassifier | None = None) -> Analysis:
    """Decode ``source`` once and run every model on it.

    ``n_excerpts > 1`` averages over evenly spaced excerpts of a long track
    (each excerpt is itself averaged over sliding windows). Models with
    different feature settings (sample rate, window) each get their own
    excerpt from the one decode. ``baseline``: also run the MFCC baseline
    (on the log-mel of its own settings).
    """
    if not models:
        raise ValueError("no models loaded")
    cfgs = distinct_configs(models)
    if baseline is not None and baseline.cfg.key() not in {c.key() for c in cfgs}:
        cfgs.append(baseline.cfg)
    waves, heard_s = load_multi_heard(source, cfgs, n_excerpts=n_excerpts)
    # One torch thread: a single track's ~10 windows are too small a batch for
    # two threads to pay off, and on a busy machine the second thread's
    # spin-waits cost more than it saves (measured by benchmarks.index.profile_stages).
    with torch_threads(1):
        return _analyse(cfgs, waves, models, baseline, heard_s)


TRUNK_BATCH = 2


def distinct_configs(models: dict[str, GenreModel]) -> list[FeatureConfig]:
    """One feature config per distinct log-mel (``cfg.key()``), in model order."""
    seen: dict[str, FeatureConfig] = {}
    for m in models.values():
        seen.setdefault(m.cfg.key(), m.cfg)
    return list(seen.values())


def predict_all(mels: dict[str, torch.Tensor], models: dict[str, GenreModel],
                batch_windows: int = 64, trunk_feats: dict | None = None) -> dict[str, Prediction]:
    """Every model on the log-mels of its config (``mels[cfg.key()]``,
    ``(B, 1, M, T)``); models that share a frozen trunk share one trunk pass,
    and a model whose ``shared_trunk_key()`` names another group's pass takes
    that pass instead of repeating it.
    ``trunk_feats``: a dict that receives each shared trunk's output
    ``(B, C, F, T')`` by ``trunk_key`` (for the facets' taggers)."""
    preds: dict[str, Prediction] = {}
    done: dict[str, torch.Tensor] = {} if trunk_feats is None else trunk_feats
    groups = list(trunk_group(models).values())
    # Trunk passes that another group can take (the bank's MSD_vgg takes the MSD
    # models' blocks 1–4) are made first.
    takes = {i: _shared_key(models[g[0]]) for i, g in enumerate(groups)}
    for i in sorted(range(len(groups)), key=lambda i: takes[i] is not None):
        names = groups[i]
        first = models[names[0]]
        lm = mels[first.cfg.key()]
        shared = done.get(takes[i]) if takes[i] else None
        # A few clips at a time: the first conv's output is ~90 MB per 30 s clip,
        # the trunk's output only ~0.4 MB, so memory stays flat for any batch.
        feats = torch.cat([first.trunk_features(lm[j: j + TRUNK_BATCH]) if shared is None else
                           first.trunk_features(lm[j: j + TRUNK_BATCH], shared[j: j + TRUNK_BATCH])
                           for j in range(0, lm.shape[0], TRUNK_BATCH)])
        done[first.trunk_key()] = feats
        for n in names:
            preds[n] = models[n].predict_trunk(feats)
    for name, m in models.items():
        if name not in preds:
            preds[name] = m.predict_logmel(mels[m.cfg.key()], batch_windows=batch_windows)
    return {n: preds[n] for n in models}


def _shared_key(model: GenreModel) -> str | None:
    fn = getattr(model, "shared_trunk_key", None)
    return fn() if callable(fn) else None


def _analyse(cfgs: list[FeatureConfig], waves: list[np.ndarray], models: dict[str, GenreModel],
             baseline: BaselineClassifier | None = None, heard_s: float | None = None) -> Analysis:
    # One log-mel per distinct config (``cfgs``: models sharing one share it),
    # the same bits the cache and the batch indexer use for this file.
    mels = {c.key(): logmels(w, c) for c, w in zip(cfgs, waves)}
    wave_of = {c.key(): w for c, w in zip(cfgs, waves)}
    feats: dict = {}
    with torch.inference_mode():
        raw = predict_all(mels, models, trunk_feats=feats)
        facets = batch_facets({k: m[:1, 0].numpy() for k, m in mels.items()}, cfgs,
                              {k: f[:1] for k, f in feats.items()}, models)[0]
    base_probs = None
    if baseline is not None:
        lm = mels[baseline.cfg.key()][:, 0].numpy()
        base_probs = dict(zip(baseline.labels, baseline.predict_logmel(lm).mean(0).tolist()))
    preds: dict[str, Prediction] = {}
    for name, p in raw.items():
        n_ex = p.probs.shape[0]
        # Average over the excerpts of a long track.
        preds[name] = Prediction(probs=p.probs.mean(0, keepdims=True),
                                 embedding=p.embedding.mean(0, keepdims=True),
                                 window_probs=p.window_probs.reshape(1, -1, p.window_probs.shape[-1]),
                                 window_starts=p.window_starts * n_ex,
                                 sigmoid=p.sigmoid.mean(0, keepdims=True),
                                 logits=p.logits.mean(0, keepdims=True))
    first = next(iter(models.values()))
    return Analysis(logmel=mels[first.cfg.key()][0, 0].numpy(), predictions=preds,
                    model_labels={n: m.labels for n, m in models.items()},
                    model_configs={n: m.cfg for n, m in models.items()},
                    logmels={n: mels[m.cfg.key()][0, 0].numpy() for n, m in models.items()},
                    waves={n: wave_of[m.cfg.key()][0] for n, m in models.items()}, baseline=base_probs,
                    facets=facets, heard_s=heard_s)
