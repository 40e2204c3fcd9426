"""Batch embedding: audio files → both models' probabilities and embeddings.

:func:`embed_batch` is a pure function over a batch of file paths (a dict of
columns in, a dict of columns out), so it plugs straight into Ray Data's
``map_batches`` or a Spark/Dask map; :func:`embed_paths` is the streaming
in-process version the index uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from .audio import AudioError, load
from .cache import content_hash
from .models import GenreModel

Progress = Callable[[int, int], None]


@dataclass
class EmbeddedTrack:
    """Result for one file: per-model probabilities and embeddings, or an error."""

    path: str
    digest: str | None
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    embedding: dict[str, np.ndarray] = field(default_factory=dict)
    error: str | None = None


def embed_paths(paths: Sequence[str], models: dict[str, GenreModel], batch_size: int = 8,
                progress: Progress | None = None) -> Iterator[EmbeddedTrack]:
    """Yield one :class:`EmbeddedTrack` per path, in order; memory is bounded by
    ``batch_size`` (files are decoded and inferred a batch at a time)."""
    if not models:
        raise ValueError("no models loaded")
    cfg = next(iter(models.values())).cfg
    frontend = next(iter(models.values())).frontend
    done = 0
    for i in range(0, len(paths), batch_size):
        batch = list(paths[i: i + batch_size])
        results, waves = [], []
        for p in batch:
            try:
                digest = content_hash(p)
            except OSError as exc:
                results.append(EmbeddedTrack(str(p), None, error=f"{p}: cannot read ({exc.strerror})"))
                continue
            try:
                waves.append(load(p, cfg))
                results.append(EmbeddedTrack(str(p), digest))
            except AudioError as exc:
                results.append(EmbeddedTrack(str(p), digest, error=str(exc)))
        ok = [r for r in results if r.error is None]
        if ok:
            with torch.inference_mode():
                mel = frontend(torch.from_numpy(np.stack(waves)))
            for name, m in models.items():
                pred = m.predict_logmel(mel)
                for j, r in enumerate(ok):
                    r.probs[name] = pred.probs[j]
                    r.embedding[name] = pred.embedding[j]
        for r in results:
            yield r
        done += len(batch)
        if progress:
            progress(done, len(paths))


_MODELS_BY_DIR: dict[str, dict[str, GenreModel]] = {}


def embed_batch(batch: dict[str, Sequence], artifacts_dir: str | None = None) -> dict[str, list]:
    """Pure batch function: ``{"path": [...]}`` → columns ``path, digest, error,
    <model>_probs, <model>_embedding``. Models load once per worker process."""
    from .artifacts import load_models

    key = str(artifacts_dir)
    if key not in _MODELS_BY_DIR:
        _MODELS_BY_DIR[key] = load_models(artifacts_dir)
    models = _MODELS_BY_DIR[key]
    out: dict[str, list] = {"path": [], "digest": [], "error": []}
    for name in models:
        out[f"{name}_probs"] = []
        out[f"{name}_embedding"] = []
    for r in embed_paths([str(p) for p in batch["path"]], models):
        out["path"].append(r.path)
        out["digest"].append(r.digest)
        out["error"].append(r.error)
        for name, m in models.items():
            out[f"{name}_probs"].append(r.probs.get(name, np.full(len(m.labels), np.nan)))
            out[f"{name}_embedding"].append(r.embedding.get(name, np.full(m.embedding_dim, np.nan)))
    return out
