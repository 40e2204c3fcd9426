"""The catalogs the offline evaluation runs on, and its entry point
:func:`recommend_eval` (``python -m core recommend-eval``): an in-memory index
of one split's tracks, from the shipped models on cached log-mels or from an
on-disk catalog index, plus the ``mfcc`` baseline's features.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from core.audio.cache import LogMelCache, content_hash
from core.catalog.index import CatalogIndex
from core.config import FeatureConfig
from core.datasets import Track, read_datasets
from core.datasets.folder import metadata_column
from core.errors import GenreError
from core.models.artifacts import load_models
from core.recommend.evaluation import MFCC, EvalConfig, SelectConfig, evaluate_index, select_on
from core.recommend.relevance import relevance_report
from core.recommend.request import ensemble_parts, resolve_model
from core.training.baseline import handcrafted_features
from core.training.evaluate import select_split
from core.training.train import load_labelled, predict_mels
from core.types import Progress

# The usual splits, for help texts; any split value in the metadata is accepted.
SPLITS = ("train", "val", "test", "all")


def build_eval_index(tracks: Sequence[Track], models: dict, cache: LogMelCache,
                     with_mfcc: bool = True) -> tuple[CatalogIndex, list[str]]:
    """An in-memory catalog of ``tracks`` (those with a genre the models know):
    embeddings from the shipped models on cached log-mels (models with
    different feature settings each get their own log-mels, from a cache
    beside ``cache``), plus standardised MFCC features (of the first model's
    log-mels) as pseudo-model ``mfcc``. Returns it and the skip reasons."""
    first = next(iter(models.values()))
    labels = first.labels
    groups: dict[str, list[str]] = {}
    for name, m in models.items():
        groups.setdefault(m.cfg.key(), []).append(name)
    data = {}
    for key, names in groups.items():
        cfg = models[names[0]].cfg
        c = cache if cfg.key() == cache.cfg.key() else LogMelCache(cfg, cache.root.parent)
        data[key] = load_labelled(list(tracks), labels, c, desc="log-mels")
    skipped = sorted({r for d in data.values() for r in d.skipped}) + [
        f"{t.track_id}: genre {t.genre!r} not in the model labels" for t in tracks if t.genre not in labels]
    common = set.intersection(*({t.track_id for t in d.tracks} for d in data.values()))
    ref = data[first.cfg.key()]
    order = [t for t in ref.tracks if t.track_id in common]
    emb, probs = {}, {}
    for key, names in groups.items():
        d = data[key]
        pos = {t.track_id: i for i, t in enumerate(d.tracks)}
        mels = d.mels[[pos[t.track_id] for t in order]]
        for name in names:
            probs[name], emb[name] = predict_mels(models[name], mels)
    if with_mfcc:
        pos = {t.track_id: i for i, t in enumerate(ref.tracks)}
        f = handcrafted_features(ref.mels[[pos[t.track_id] for t in order]], first.cfg)
        emb[MFCC] = f = _standardise(f)
        probs[MFCC] = np.full((len(f), len(labels)), 1.0 / len(labels))
    rows = [{**t.to_dict(), "digest": content_hash(t.path)} for t in order]
    lab = {n: list(m.labels) for n, m in models.items()}
    lab[MFCC] = list(labels)
    idx = CatalogIndex.from_arrays(rows, emb, probs, lab)
    return idx, skipped


def _standardise(f: np.ndarray) -> np.ndarray:
    """Features z-scored over the catalog itself: an unsupervised step any indexer could run."""
    return (f - f.mean(0)) / np.maximum(f.std(0), 1e-8)


def _mfcc_features(tracks: Sequence[Track], cache: LogMelCache, labels: list[str], cfg) -> tuple[
        list[Track], np.ndarray, list[str]]:
    """Standardised MFCC + spectral statistics of ``tracks`` from the log-mel cache."""
    data = load_labelled(list(tracks), labels, cache, desc="log-mels")
    f = handcrafted_features(data.mels, cfg)
    return list(data.tracks), _standardise(f), list(data.skipped)


def index_subset(index: CatalogIndex, split: str = "all", mfcc: tuple | None = None,
                 track_ids: set | None = None) -> CatalogIndex:
    """An in-memory copy of the rows of ``split`` (``"all"``: every row with a
    genre) of an on-disk index, optionally only those in ``track_ids``;
    ``mfcc``: ``(track_ids, features)`` to add as the ``mfcc`` pseudo-model
    (rows without features are dropped)."""
    table = index.table()
    keep = table["genre"].astype(str).str.len().to_numpy() > 0
    if split != "all":
        keep &= (table["split"] == split).to_numpy()
    if track_ids is not None:
        keep &= table["track_id"].isin(track_ids).to_numpy()
    if mfcc is not None:
        keep &= table["track_id"].isin(mfcc[0]).to_numpy()
    rows = np.flatnonzero(keep)
    if mfcc is None:
        return index.subset(rows)
    sub = table.iloc[rows].reset_index(drop=True)
    emb = {m: index.embeddings(m)[rows] for m in index.models}
    probs = {m: index.probs(m)[rows] for m in index.models}
    labels = {m: index.model_labels(m) for m in index.models}
    pos = {t: i for i, t in enumerate(mfcc[0])}
    emb[MFCC] = np.asarray(mfcc[1])[[pos[t] for t in sub["track_id"]]]
    first = labels[next(iter(labels))]
    probs[MFCC] = np.full((len(sub), len(first)), 1.0 / len(first), np.float32)
    labels[MFCC] = list(first)
    return CatalogIndex.from_arrays(sub, emb, probs, labels)


def recommend_eval(data_dirs: Sequence[str | Path], split: str = "test",
                   artifacts_dir: str | Path | None = None, cache: LogMelCache | None = None,
                   cfg: EvalConfig = EvalConfig(), models: dict | None = None,
                   progress: Progress | None = None, index_dir: str | Path | None = None,
                   select: SelectConfig | None = None, with_mfcc: bool = True,
                   relevance: bool = True) -> dict:
    """Evaluate the recommender on ``split`` (``"all"``: every track) of
    ``data_dirs``. Vectors come from the shipped models run on cached log-mels,
    or, with ``index_dir``, from a catalog index built by ``python -m core
    index`` (its ``genre`` and ``split`` columns; MFCC still from the log-mel
    cache). ``select``: run :func:`select_on` with that grid instead.
    ``relevance``: also run the mood and artist listeners
    (:mod:`core.recommend.relevance`) into ``out["relevance"]``."""
    tracks = select_split(read_datasets(data_dirs, labelled_only=True), split)   # any split in the metadata, or "all"
    if index_dir is not None:
        disk = CatalogIndex.open(index_dir)
        if not len(disk):
            raise FileNotFoundError(f"no index in {index_dir} — build one with `python -m core index`")
        feats, skipped = None, []
        if with_mfcc:
            fcfg = FeatureConfig()
            if models is None:
                try:
                    models = load_models(artifacts_dir)
                except (GenreError, OSError):   # the index alone is enough without MFCC
                    models = {}
            if models:
                fcfg = next(iter(models.values())).cfg
            wanted = set(disk.column("track_id"))
            kept, f, skipped = _mfcc_features([t for t in tracks if t.track_id in wanted],
                                              cache or LogMelCache(fcfg), disk.labels, fcfg)
            feats = ([t.track_id for t in kept], f)
        index = index_subset(disk, split, feats, track_ids={t.track_id for t in tracks})
    else:
        models = models if models is not None else load_models(artifacts_dir)
        if not models:
            raise FileNotFoundError("no trained models in the artifacts folder — run `make artifacts`")
        cache = cache or LogMelCache(next(iter(models.values())).cfg)
        index, skipped = build_eval_index(tracks, models, cache, with_mfcc=with_mfcc)
    model = resolve_model(index, cfg.model)
    if any(m not in index.models for m in ensemble_parts(index, model)):
        cfg = EvalConfig(**{**asdict(cfg), "model": resolve_model(index, None)})
    out = select_on(index, cfg, select, progress) if select is not None else \
        evaluate_index(index, cfg, progress=progress)
    if relevance and select is None:
        quadrants = metadata_column(data_dirs, "emotion_quadrant")
        out["relevance"] = relevance_report(index, quadrants, out, cfg.model, cfg.genre_weight, cfg.seed,
                                            cfg.n_halves if cfg.resample else 0)
    out["split"] = split
    out["data"] = [str(d) for d in data_dirs]
    out["vectors"] = str(index_dir) if index_dir is not None else "models on cached log-mels"
    out["skipped"] = skipped
    return out
