"""Evaluate every shipped model (and the classic baseline) on one split."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .artifacts import load_models
from .baseline import baseline_probs, handcrafted_features, train_baseline
from .cache import LogMelCache
from .datasets import Track, read_datasets
from .metrics import classification_report, paired_comparison
from .train import LabelledMels, load_labelled, predict_mels

BASELINE = "baseline_mfcc"


def _report_with_sources(data: LabelledMels, probs: np.ndarray, labels: list[str],
                         n_boot: int) -> dict:
    rep = classification_report(data.y, probs, labels, n_boot=n_boot)
    per_source = {}
    sources = np.array([t.source for t in data.tracks])
    for s in sorted(set(sources)):
        m = sources == s
        sub = classification_report(data.y[m], probs[m], labels, n_boot=0)
        per_source[s] = {"macro": {k: sub["macro"][k] for k in ("roc_auc", "f1", "accuracy", "n_tracks")},
                         "genres": sorted({labels[i] for i in data.y[m]})}
    rep["per_source"] = per_source
    return rep


def evaluate(data_dirs: Sequence[str | Path], split: str = "test", artifacts_dir: str | Path | None = None,
             cache: LogMelCache | None = None, n_boot: int = 1000, with_baseline: bool = True,
             tracks: list[Track] | None = None) -> dict:
    """Metrics of each model in ``artifacts_dir`` on ``split`` of ``data_dirs``.

    Returns ``{"models": {name: {"macro", "per_genre", "roc", "confusion",
    "per_source"}}, "comparison": {...}}``; the MFCC baseline (trained on the
    train split) is reported as model ``baseline_mfcc``.
    """
    models = load_models(artifacts_dir)
    if not models:
        raise FileNotFoundError("no trained models in the artifacts folder — run `make artifacts`")
    tracks = tracks if tracks is not None else read_datasets(data_dirs)
    labels = next(iter(models.values())).labels
    cache = cache or LogMelCache(next(iter(models.values())).cfg)
    eval_tracks = [t for t in tracks if t.split == split]
    skipped = sorted({t.genre for t in eval_tracks} - set(labels))
    data = load_labelled(eval_tracks, labels, cache, desc=f"{split} log-mels")
    out: dict = {"models": {}, "comparison": {}}
    probs_by_model = {}
    for name, model in models.items():
        probs, _ = predict_mels(model, data.mels)
        probs_by_model[name] = probs
        out["models"][name] = _report_with_sources(data, probs, labels, n_boot)
    if with_baseline:
        train = load_labelled([t for t in tracks if t.split == "train"], labels, cache,
                              desc="train log-mels")
        if len(train):
            clf = train_baseline(handcrafted_features(train.mels), train.y)
            probs = baseline_probs(clf, handcrafted_features(data.mels), len(labels))
            probs_by_model[BASELINE] = probs
            out["models"][BASELINE] = _report_with_sources(data, probs, labels, n_boot)
    if "cnn" in probs_by_model and "crnn" in probs_by_model:
        out["comparison"]["crnn_vs_cnn"] = paired_comparison(
            data.y, probs_by_model["cnn"], probs_by_model["crnn"], n_boot=n_boot)
    if BASELINE in probs_by_model:
        for name in models:
            out["comparison"][f"{name}_vs_{BASELINE}"] = paired_comparison(
                data.y, probs_by_model[BASELINE], probs_by_model[name], n_boot=n_boot)
    out["comparison"]["split"] = split
    out["comparison"]["n_tracks"] = len(data)
    out["comparison"]["labels"] = labels
    out["comparison"]["skipped_genres"] = skipped
    out["comparison"]["unreadable"] = data.skipped
    return out
