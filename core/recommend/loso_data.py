"""The per-fold catalogs of ``recommend-eval --loso`` (:mod:`core.recommend.loso`).

For each leave-one-source-out fold the fold model's head
(:mod:`core.training.linear_head` on its frozen features, its ``C``) is
fitted on the two training sources' non-test tracks; the held-out source's
non-test tracks get its calibrated genre probabilities (cross-fold
temperature), its embedding (the frozen features standardised with the
training sources' statistics, what the shipped model's embedding is) and
MFCC features.

The fold model is a parameter (:class:`FoldModel`, ``recommend-eval
--loso-model NAME``): by default the shipped ``fused`` model; any entry of
``loso.json`` that names its ``features`` and ``C`` can take its place.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from core.files import atomic_write_text
from core.recommend.loso import FUSED, FoldCatalog, LosoGrid, fold_catalog
from core.training.calibration import softmax_t
from core.training.loso import loso_folds
from core.training.loso_data import MSD_VGG, SourceData
from core.training.loso_eval import FoldLogits, cross_fold_temperatures, fit_head, seen_genres
from core.types import Progress

DEFAULT_C = 0.01


@dataclass(frozen=True)
class FoldModel:
    """The genre model whose LOSO fold heads method 2 is chosen with: a
    standardised linear head with inverse regularisation ``c`` on the frozen
    ``features`` (names of :class:`~core.training.loso_data.SourceData` feature
    sets), its name the embedding's model name in the fold catalogs;
    ``patches``: the trunk features pooled over that many of each clip's
    3 s patches, as the shipped model runs them (None: all); ``copies``:
    augmented copies of each training track among its rows, as the shipped
    head was fitted (``loso.json`` ``"augment"``); ``head``: the head's form
    (:data:`~core.training.loso_eval.HEADS`, ``loso.json`` ``"head"``);
    ``adapt``: (frac, rounds) of self-training each fold's head on its
    held-out source's tracks (:mod:`core.training.self_train`, transductive)
    for the genre terms; the embedding stays the unadapted head's (None: no
    self-training); ``prior``: the shipped tag prior after the head as
    (β, logit, grouped) (:mod:`core.models.tag_prior`; ``loso.json``
    ``"prior"``; its statistics from each fold's training tracks; None: none)."""

    name: str = FUSED
    features: tuple[str, ...] = (MSD_VGG,)
    c: float = DEFAULT_C
    patches: int | None = None
    copies: int = 0
    head: str = "clip"
    adapt: tuple[float, int] | None = None
    prior: tuple[float, bool, bool] | None = None


def fold_model(loso_json: str | Path | None, name: str = FUSED) -> FoldModel:
    """``name``'s fold model as ``loso.json`` (``python -m core loso``) records it
    (``features``, ``C``, ``patches``, ``augment``, ``head``); a missing file or entry gives the defaults."""
    entry: dict = {}
    if loso_json:
        try:
            entry = json.loads(Path(loso_json).read_text()).get(name) or {}
        except (OSError, ValueError, AttributeError):
            entry = {}
    patches, prior = entry.get("patches"), entry.get("prior") or {}
    return FoldModel(name, tuple(entry.get("features") or (MSD_VGG,)), float(entry.get("C", DEFAULT_C)),
                     None if patches is None else int(patches), int(entry.get("augment") or 0),
                     str(entry.get("head") or "clip"),
                     prior=(float(prior["beta"]), bool(prior["logit"]), bool(prior["grouped"]))
                     if prior.get("beta") else None)


def mfcc_features(data: SourceData, cache_root: str | Path, workers: int = 2) -> np.ndarray:
    """MFCC + spectral statistics ``(N, F)`` of ``data.tracks`` from the project's
    12 kHz log-mels (cached under ``cache_root/logmel``), as the baseline uses."""
    from core.audio.cache import LogMelCache
    from core.config import FeatureConfig
    from core.training.baseline import handcrafted_features
    from core.training.train import load_labelled

    cfg = FeatureConfig()
    got = load_labelled(data.tracks, data.labels, LogMelCache(cfg, Path(cache_root) / "logmel"),
                        workers=workers, desc="MFCC log-mels")
    pos = {t.track_id: i for i, t in enumerate(got.tracks)}
    if len(pos) != len(data.tracks):
        raise ValueError(f"{len(data.tracks) - len(pos)} track(s) unreadable for MFCC")
    return handcrafted_features(got.mels[[pos[t.track_id] for t in data.tracks]], cfg)


def fold_catalogs(data: SourceData, c: float = DEFAULT_C, mfcc: np.ndarray | None = None,
                  features: Sequence[str] = (MSD_VGG,), name: str = FUSED, copies: int = 0,
                  head_form: str = "clip", adapt: tuple[float, int] | None = None,
                  prior: tuple[float, bool, bool] | None = None) -> list[FoldCatalog]:
    """One :class:`FoldCatalog` per source, model name ``name`` (its head, of
    form ``head_form``, fitted with ``copies`` augmented copies of each
    training track, as shipped; with ``adapt`` (frac, rounds) the genre
    probabilities come from that head self-trained on the held-out tracks;
    with ``prior`` (:class:`FoldModel`), the tag prior follows the head)."""
    from core.training.self_train import refit_head, self_train
    from core.training.tag_prior_choice import PriorSetting, with_setting

    if adapt and copies:
        raise ValueError("self-training refits without augmented copies; the fold model has some")
    folds = loso_folds(data.tracks)
    x = data.stacked(features)
    heads, logits = [], []
    for f in folds:
        head = fit_head(data, features, f.train, c, copies, head_form)
        heads.append(head)
        genre = head if not adapt else self_train(
            head, x[f.val], lambda rows, g: refit_head(data, features, head_form, c, f.train, f.val[rows], g),
            adapt[0], adapt[1])[-1]
        z = genre.logits(x[f.val])
        if prior:
            z = with_setting(z, x[f.val], x[f.train], data.labels, PriorSetting(tuple(features), *prior))
        logits.append(FoldLogits(f.held_out, z, data.y[f.val], seen_genres(data.y[f.train], data.y[f.val])))
    temps = cross_fold_temperatures(logits)
    out = []
    for f, head, lg, t in zip(folds, heads, logits, temps):
        rows = [data.tracks[i].to_dict() for i in f.val]
        emb = (x[f.val] - head.mean) / head.scale
        idx = fold_catalog(rows, {name: emb}, {name: softmax_t(lg.logits, t)}, data.labels,
                           None if mfcc is None else mfcc[f.val])
        out.append(FoldCatalog(f.held_out, idx))
    return out


def record_key(settings: list, x: np.ndarray) -> str:
    """The cache key of a ``"loso"`` record: its JSON-able ``settings`` and every
    value of the fold model's features ``x`` ``(N, F)`` (a trunk's features change
    with its inference copy; a key on the first 2 KB, the first track's MSD_vgg
    values, once kept a stale record)."""
    features = hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
    return hashlib.sha256(json.dumps([*settings, features], default=str).encode()).hexdigest()[:12]


def recommend_loso(dirs: Sequence[str | Path], cache_root: str | Path, cfg=None, c: float | None = None,
                   progress: Progress | None = None, model: FoldModel | None = None,
                   extra_features: str | Path | None = None, grid: LosoGrid | None = None) -> dict:
    """The ``"loso"`` record: folds from ``dirs`` (features cached under
    ``cache_root``; other trunks' feature files from ``extra_features``) with
    ``model``'s fold heads (default :class:`FoldModel`; ``c`` overrides its ``C``)."""
    from core.recommend.evaluation import EvalConfig
    from core.recommend.loso import loso_recommend
    from core.training.loso_data import load_source_data

    cfg = cfg or EvalConfig()
    model = model or FoldModel()
    if c is not None:
        model = replace(model, c=c)
    grid = grid or LosoGrid()
    data = load_source_data(dirs, cache_root, extra_features).with_patches(model.patches)
    data.trunk = None
    x = data.stacked(model.features)
    # Minutes of simulation: cached by everything the record depends on.
    sim = {k: v for k, v in asdict(cfg).items() if k in ("seed", "k", "n_seeds", "mixed_fraction", "artists")}
    key = record_key([sim, asdict(grid), asdict(model), [t.track_id for t in data.tracks]], x)
    path = Path(cache_root) / f"loso_recommend_{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    cats = fold_catalogs(data, model.c, mfcc_features(data, cache_root), model.features, model.name, model.copies,
                         model.head, model.adapt, model.prior)
    rec = loso_recommend(cats, cfg, model=model.name, grid=grid, progress=progress)
    rec["head"] = {"model": model.name, "C": model.c, "features": list(model.features),
                   "patches": model.patches, "augment": model.copies, "head_form": model.head,
                   "self_train": None if model.adapt is None else {"frac": model.adapt[0], "rounds": model.adapt[1]},
                   "tag_prior": None if model.prior is None else dict(zip(("beta", "logit", "grouped"), model.prior)),
                   "temperature": "cross-fold (fitted on the other folds' held-out tracks of seen genres)"}
    atomic_write_text(path, json.dumps(rec, default=float))
    return rec
