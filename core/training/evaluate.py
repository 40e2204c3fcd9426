"""Evaluate every shipped model (and the classic baseline) on one split.

Models are measured exactly as the app and CLI serve them: the optimised
inference copies (:func:`core.models.optimise.optimise_for_inference`), their
calibrated genre distribution (``Prediction.probs``), and the same
load → log-mel → model path (log-mels come from the cache, which holds
exactly what :func:`core.audio.features.logmels` computes, hit or miss).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy.special import expit

from core.audio.cache import LogMelCache
from core.config import FeatureConfig, Paths
from core.datasets import Track, read_datasets
from core.models import GenreModel, Prediction
from core.models.artifacts import load_models
from core.models.inference import distinct_configs, predict_all
from core.models.optimise import optimise_for_inference
from core.training.baseline import BaselineClassifier, handcrafted_features, train_baseline
from core.training.calibration import calibration_report, softmax_t
from core.training.metrics import classification_report, paired_comparison
from core.training.train import LabelledMels, load_labelled

BASELINE = "baseline_mfcc"
ALL_SPLITS = "all"
# The comparisons that matter: CRNN vs CNN within each family, pretrained vs
# from scratch (B − A: the second name minus the first).
ADAPTED_OF, ADAPTED = "fused_trunks", "fused_trunks_adapted"   # evaluate(adapt=True)
PAIRS = (("cnn", "crnn"), ("cnn_msd", "crnn_msd"), ("cnn", "cnn_msd"), ("crnn", "crnn_msd"))


def select_split(tracks: Sequence[Track], split: str) -> list[Track]:
    """Tracks of ``split`` (any value of the metadata's split column, or
    ``"all"``); a split that no track has raises ``ValueError`` naming the
    splits there are."""
    if split == ALL_SPLITS:
        return list(tracks)
    out = [t for t in tracks if t.split == split]
    if not out:
        have = sorted({t.split for t in tracks})
        raise ValueError(f"no tracks in split {split!r}; the data has: {', '.join(have)} (or 'all')")
    return out


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


def predict_data(models: dict[str, GenreModel], data: dict[str, LabelledMels],
                 batch: int = 4) -> dict[str, Prediction]:
    """Every model on the cached log-mels of its feature config
    (``data[cfg.key()]``), in batches, trunks shared; one Prediction per
    model with a row per track."""
    keys = list(data)
    n = len(data[keys[0]])
    parts: dict[str, list[Prediction]] = {name: [] for name in models}
    for i in range(0, n, batch):
        mels = {k: torch.from_numpy(d.mels[i: i + batch].astype(np.float32)).unsqueeze(1)
                for k, d in data.items()}
        for name, p in predict_all(mels, models).items():
            parts[name].append(p)
    out = {}
    for name, ps in parts.items():
        if not ps:
            g = len(models[name].labels)
            z = np.zeros((0, g))
            out[name] = Prediction(probs=z, embedding=np.zeros((0, models[name].embedding_dim)),
                                   window_probs=np.zeros((0, 1, g)), window_starts=[], sigmoid=z, logits=z)
            continue
        out[name] = Prediction(probs=np.concatenate([p.probs for p in ps]),
                               embedding=np.concatenate([p.embedding for p in ps]),
                               window_probs=np.concatenate([p.window_probs for p in ps]),
                               window_starts=ps[0].window_starts,
                               sigmoid=np.concatenate([p.sigmoid for p in ps]),
                               logits=np.concatenate([p.logits for p in ps]))
    return out


def labelled_per_config(models: dict[str, GenreModel], tracks: Sequence[Track], labels: list[str],
                        cache_root: str | Path | None = None, desc: str = "log-mels",
                        extra: Sequence[FeatureConfig] = ()) -> dict[str, LabelledMels]:
    """Cached log-mels of ``tracks`` for every distinct feature config of
    ``models`` (plus ``extra`` configs), restricted to the tracks every
    config could read, in the same order."""
    cfgs = distinct_configs(models) + [c for c in extra if c.key() not in
                                        {m.cfg.key() for m in models.values()}]
    data = {c.key(): load_labelled(tracks, labels, LogMelCache(c, cache_root), desc=desc) for c in cfgs}
    common = set.intersection(*({t.track_id for t in d.tracks} for d in data.values()))
    out = {}
    for k, d in data.items():
        keep = [i for i, t in enumerate(d.tracks) if t.track_id in common]
        out[k] = LabelledMels(tracks=[d.tracks[i] for i in keep], mels=d.mels[keep], y=d.y[keep],
                              skipped=d.skipped)
    return out


def evaluate(data_dirs: Sequence[str | Path], split: str = "test", artifacts_dir: str | Path | None = None,
             cache: LogMelCache | None = None, n_boot: int = 1000, with_baseline: bool = True,
             tracks: list[Track] | None = None, adapt: bool = False) -> dict:
    """Metrics of each model in ``artifacts_dir`` on ``split`` of ``data_dirs``.

    Returns ``{"models": {name: {"macro", "per_genre", "roc", "confusion",
    "per_source", "calibration"}}, "comparison": {...}}``; the MFCC baseline
    (trained on the train split) is reported as model ``baseline_mfcc``.
    ``split`` is any split value in the metadata, or ``"all"``. ``adapt``:
    also ``fused_trunks_adapted``, the default model self-trained on the
    split's tracks without their labels (:mod:`core.training.library_head`;
    transductive, as the app adapts to a library), compared with it paired.
    """
    models = load_models(artifacts_dir, optimise=True)
    if not models:
        raise FileNotFoundError("no trained models in the artifacts folder — run `make artifacts`")
    tracks = tracks if tracks is not None else read_datasets(data_dirs, labelled_only=True)
    labels = next(iter(models.values())).labels
    cache_root = cache.root.parent if cache is not None else None
    eval_tracks = select_split(tracks, split)
    skipped = sorted({t.genre for t in eval_tracks} - set(labels))
    base_cfg = FeatureConfig()
    data = labelled_per_config(models, eval_tracks, labels, cache_root, f"{split} log-mels", [base_cfg])
    ref = next(iter(data.values()))
    out: dict = {"models": {}, "comparison": {}}
    probs_by_model = {}
    for name, pred in predict_data(models, data).items():
        probs_by_model[name] = pred.probs
        rep = _report_with_sources(ref, pred.probs, labels, n_boot)
        rep["calibration"] = calibration_report(pred.logits, pred.sigmoid, ref.y,
                                                float(models[name].temperature))
        rep["embedding_dim"] = int(models[name].embedding_dim)
        out["models"][name] = rep
        if adapt and name == ADAPTED_OF:
            from core.training.library_head import adapt_served

            logits = adapt_served(models[name], pred.embedding, artifacts_dir or Paths().artifacts)[1]
            probs_by_model[ADAPTED] = softmax_t(logits, 1.0)
            out["models"][ADAPTED] = _report_with_sources(ref, probs_by_model[ADAPTED], labels, n_boot)
            # Its sigmoid outputs, as the served models report theirs (core.models.base), not the softmax.
            out["models"][ADAPTED]["calibration"] = calibration_report(logits, expit(logits), ref.y, 1.0)
            out["comparison"][f"{ADAPTED}_vs_{ADAPTED_OF}"] = paired_comparison(
                ref.y, probs_by_model[ADAPTED_OF], probs_by_model[ADAPTED], n_boot=n_boot)
    if with_baseline:
        clf = _train_baseline([t for t in tracks if t.split == "train"], labels, base_cfg, cache_root)
        if clf is not None:
            probs = clf.predict_logmel(data[base_cfg.key()].mels)
            probs_by_model[BASELINE] = probs
            out["models"][BASELINE] = _report_with_sources(ref, probs, labels, n_boot)
    for a, b in PAIRS:
        if a in probs_by_model and b in probs_by_model:
            out["comparison"][f"{b}_vs_{a}"] = paired_comparison(
                ref.y, probs_by_model[a], probs_by_model[b], n_boot=n_boot)
    if BASELINE in probs_by_model:
        for name in [n for n in probs_by_model if n != BASELINE]:
            out["comparison"][f"{name}_vs_{BASELINE}"] = paired_comparison(
                ref.y, probs_by_model[BASELINE], probs_by_model[name], n_boot=n_boot)
    out["comparison"]["split"] = split
    out["comparison"]["n_tracks"] = len(ref)
    out["comparison"]["labels"] = labels
    out["comparison"]["skipped_genres"] = skipped
    out["comparison"]["unreadable"] = sorted({s for d in data.values() for s in d.skipped})
    return out


def _train_baseline(train_tracks: Sequence[Track], labels: list[str], cfg: FeatureConfig,
                    cache_root: str | Path | None) -> BaselineClassifier | None:
    """The MFCC baseline fitted on ``train_tracks``' cached log-mels (``None``
    when none is readable): the one recipe behind the shipped baseline and
    the one :func:`evaluate` measures."""
    train = load_labelled(train_tracks, labels, LogMelCache(cfg, cache_root), desc="train log-mels")
    if not len(train):
        return None
    clf = train_baseline(handcrafted_features(train.mels, cfg), train.y)
    return BaselineClassifier.from_sklearn(clf, labels, cfg)


def fit_baseline(data_dirs: Sequence[str | Path], artifacts_dir: str | Path,
                 cache_root: str | Path | None = None) -> BaselineClassifier:
    """Train the MFCC baseline on the train split (as :func:`evaluate` does)
    and write it to the artifacts folder as plain JSON numbers, so the app can
    show it beside the networks."""
    from core.datasets import genres_of
    from core.models.artifacts import update_manifest, write_json
    from core.training.baseline import BASELINE_FILE

    train_tracks = [t for t in read_datasets(data_dirs, labelled_only=True) if t.split == "train"]
    model = _train_baseline(train_tracks, genres_of(train_tracks), FeatureConfig(), cache_root)
    if model is None:
        raise FileNotFoundError("no readable training tracks for the MFCC baseline")
    write_json(Path(artifacts_dir) / BASELINE_FILE, model.to_dict())
    update_manifest(artifacts_dir)
    return model


def calibrate(data_dirs: Sequence[str | Path], artifacts_dir: str | Path, split: str = "val",
              cache_root: str | Path | None = None) -> dict:
    """Fit each shipped model's temperature on ``split`` (val), store it in
    its weights file, and pick the app's default
    (:func:`~core.training.default_choice.choose_default`: leave-one-source-out
    mean accuracy among the models ``loso.json`` measured, else macro ROC-AUC
    on ``split``). Returns the selection record written to ``selection.json``."""
    from core.models.artifacts import model_extra, save_model, update_manifest, write_json
    from core.training.calibration import fit_temperature
    from core.training.default_choice import choose_default
    from core.training.metrics import macro_auc

    plain = load_models(artifacts_dir)
    if not plain:
        raise FileNotFoundError("no trained models in the artifacts folder — run `make artifacts`")
    tracks = select_split(read_datasets(data_dirs, labelled_only=True), split)
    labels = next(iter(plain.values())).labels
    data = labelled_per_config(plain, tracks, labels, cache_root, f"{split} log-mels")
    y = next(iter(data.values())).y
    scores: dict[str, dict] = {}
    # Fitted on the logits of the copies that are served (the temperature is
    # then stored with the plain weights they are made from).
    served = {n: optimise_for_inference(m) for n, m in plain.items()}
    for name, pred in predict_data(served, data).items():
        m = plain[name]
        # A model calibrated leave-one-source-out (``python -m core loso``) keeps its temperature.
        t = float(m.temperature) if getattr(m, "fixed_temperature", False) else fit_temperature(pred.logits, y)
        with torch.no_grad():
            m.temperature.fill_(t)
        save_model(m, artifacts_dir, extra=model_extra(name, artifacts_dir))
        scores[name] = {"roc_auc": macro_auc(y, pred.probs),
                        "accuracy": float((pred.probs.argmax(1) == y).mean()), "temperature": t}
    choice = choose_default(scores, _read_loso(artifacts_dir), split)
    record = {"best_model": choice["best_model"], "criterion": choice["criterion"],
              "split": split, "n_tracks": int(len(y)),
              "val": {n: s["roc_auc"] for n, s in scores.items()}, "scores": scores, "loso": choice["loso"]}
    write_json(Path(artifacts_dir) / "selection.json", record)
    update_manifest(artifacts_dir)
    return record


def _read_loso(artifacts_dir: str | Path) -> dict | None:
    """The artifacts' ``loso.json`` (``python -m core loso``), or ``None``."""
    from core.files import read_json_or_none
    from core.training.fused_train import LOSO_FILE

    return read_json_or_none(Path(artifacts_dir) / LOSO_FILE)
