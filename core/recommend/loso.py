"""Method 2 chosen and checked leave-one-source-out (``recommend-eval --loso``).

Per fold (one source held out, :func:`core.training.loso.loso_folds`), the
genre classifier is trained on the other sources only and the recommender
runs on a catalog of the held-out source's non-test tracks: its genre
probabilities are that fold model's (calibrated with the cross-fold
temperature of :mod:`core.training.loso_eval`), its embeddings the frozen
features (standardised with the training sources' statistics) and the MFCC
baseline. Simulated listeners (:mod:`core.recommend.evaluation`) score
method 1, method 2, MFCC and random.

Choice: method 2's genre weight, variant and confidence weighting
(:mod:`core.recommend.confidence`) maximise the worst fold's method 2 −
method 1 precision, then the mean method 2 precision. The choice is also
made *nested* (on the other folds only) and scored on each fold, which is
the honest estimate of how the rule does on a source it did not see.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np

from core.catalog.index import CatalogIndex
from core.recommend.confidence import CONFIDENCE_MODES, genre_confidence
from core.recommend.evaluation import MFCC, EvalConfig, simulate_settings
from core.recommend.listeners import simulate_listeners
from core.recommend.request import VARIANTS
from core.recommend.statistics import half_sample_units, half_sampling_ci
from core.recommend.views import views_of
from core.types import Progress

FUSED = "fused"


@dataclass(frozen=True)
class LosoGrid:
    """Method 2 settings tried on every fold, and the simulation's size per fold
    (smaller than the test split's: three catalogs × every grid point)."""

    # Small weights too: on a new source the genre term may only be worth a nudge.
    weights: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.6, 0.9)
    variants: tuple[str, ...] = VARIANTS
    confidences: tuple[str, ...] = CONFIDENCE_MODES
    n_listeners: int = 200
    n_halves: int = 20


@dataclass
class FoldCatalog:
    """The held-out source's catalog of one fold."""

    held_out: str
    index: CatalogIndex


def fold_catalog(rows: Sequence[dict], embeddings: dict[str, np.ndarray], probs: dict[str, np.ndarray],
                 labels: list[str], mfcc: np.ndarray | None = None) -> CatalogIndex:
    """An in-memory index of one fold's held-out tracks: ``embeddings`` /
    ``probs`` per model ``(n, D)`` / ``(n, G)``; ``mfcc`` ``(n, F)`` (standardised
    over these tracks, as :mod:`core.recommend.eval_data` does) as pseudo-model ``mfcc``."""
    emb, prb = dict(embeddings), dict(probs)
    if mfcc is not None:
        f = np.asarray(mfcc, np.float64)
        emb[MFCC] = (f - f.mean(0)) / np.maximum(f.std(0), 1e-8)
        prb[MFCC] = np.full((len(f), len(labels)), 1.0 / len(labels))
    return CatalogIndex.from_arrays(list(rows), emb, prb, labels)


def _settings(model: str, grid: LosoGrid) -> dict[str, dict]:
    out: dict[str, dict] = {"cosine": dict(method="cosine", model=model)}
    for v, w, c in itertools.product(grid.variants, grid.weights, grid.confidences):
        out[f"genre|{v}|{w:g}|{c}"] = dict(method="genre", model=model, variant=v, genre_weight=w, confidence=c)
    return out


def grid_precisions(folds: Sequence[FoldCatalog], model: str, cfg: EvalConfig, grid: LosoGrid,
                    progress: Progress | None = None) -> dict[str, dict[str, float]]:
    """Fold → setting name → mean precision@k (the same listeners for every setting)."""
    settings = _settings(model, grid)
    out = {}
    for i, f in enumerate(folds):
        prec = simulate_settings(f.index, replace(cfg, resample=False, extras=False), settings)
        out[f.held_out] = {n: float(p.mean()) for n, p in prec.items()}
        if progress:
            progress(i + 1, len(folds))
    return out


def choose(prec: dict[str, dict[str, float]], names: Sequence[str] | None = None) -> str:
    """The method 2 setting with the best worst-fold (m2 − m1), then best mean m2,
    over the folds in ``names`` (default: all)."""
    folds = list(names or prec)
    cands = [n for n in prec[folds[0]] if n.startswith("genre|")]

    def key(n: str):
        gaps = [prec[f][n] - prec[f]["cosine"] for f in folds]
        return (round(min(gaps), 6), round(float(np.mean([prec[f][n] for f in folds])), 6), -cands.index(n))
    return max(cands, key=key)


def parse_setting(name: str) -> dict:
    """``"genre|soft|0.5|top"`` → ``{"variant": "soft", "genre_weight": 0.5, "confidence": "top"}``."""
    _, v, w, c = name.split("|")
    return {"variant": v, "genre_weight": float(w), "confidence": c}


def track_intervals(index: CatalogIndex, cfg: EvalConfig, settings: dict[str, dict],
                    pairs: Sequence[tuple[str, str, str]], full: dict[str, float]) -> dict:
    """Each pair's difference with its track-level half-sampling interval
    (:func:`~core.recommend.statistics.half_sampling_ci`; the track unit of
    :func:`~core.recommend.evaluation.resample_pairs`, without its artist unit)."""
    units = [np.array([i]) for i in range(len(index))]
    rng = np.random.default_rng([cfg.seed, 7, len("track")])
    draws: dict[str, list[float]] = {n: [] for n, _, _ in pairs}
    sub_cfg = replace(cfg, resample=False, extras=False)
    for r in range(cfg.n_halves):
        try:
            prec = simulate_settings(index.subset(half_sample_units(units, rng)),
                                     replace(sub_cfg, seed=cfg.seed + 1000 * (r + 1)), settings)
        except ValueError:          # a half too small to simulate listeners
            prec = None
        for n, a, b in pairs:
            draws[n].append(float(prec[a].mean() - prec[b].mean()) if prec else float("nan"))
    return {n: half_sampling_ci(full[n], draws[n], len(units), "track") for n, _, _ in pairs}


def genre_term_use(index: CatalogIndex, cfg: EvalConfig) -> dict:
    """How much method 2's genre term (``cfg``'s weight and confidence) counted
    for the simulated listeners of ``index``: the share of listeners whose
    seed confidence ``c`` is above 0 and the mean effective weight ``w · c``
    (before any per-candidate factor)."""
    n_mixed = int(round(cfg.n_listeners * cfg.mixed_fraction))
    listeners = simulate_listeners(index.column("genre"), cfg.n_listeners - n_mixed, n_mixed, cfg.n_seeds, cfg.seed)
    P = views_of(index.snapshot()).genre_probs(cfg.model)
    c = np.array([genre_confidence(P[lis.seeds], cfg.confidence) for lis in listeners])
    return {"listeners": len(c), "open_share": float((c > 0).mean()) if len(c) else 0.0,
            "mean_weight": float(cfg.genre_weight * c.mean()) if len(c) else 0.0}


def fold_report(fold: FoldCatalog, cfg: EvalConfig) -> dict:
    """Method 1, method 2 (``cfg``'s setting), MFCC and random precision@k on one
    fold, with track-level half-sampling intervals of m2 − m1 and m1 − MFCC."""
    settings = {"cosine": dict(method="cosine", model=cfg.model),
                "genre": dict(method="genre", model=cfg.model, genre_weight=cfg.genre_weight,
                              variant=cfg.variant, confidence=cfg.confidence)}
    if MFCC in fold.index.models:
        settings[MFCC] = dict(method="cosine", model=MFCC)
    prec = simulate_settings(fold.index, replace(cfg, resample=False, extras=False), settings)
    mean = {n: float(p.mean()) for n, p in prec.items()}
    pairs = [("genre_minus_cosine", "genre", "cosine")]
    if MFCC in mean:
        pairs.append(("cosine_minus_mfcc", "cosine", MFCC))
    full = {n: mean[a] - mean[b] for n, a, b in pairs}
    rs = track_intervals(fold.index, cfg, settings, pairs, full) if cfg.resample else {}
    k = cfg.k
    return {"n_tracks": len(fold.index), f"method1_precision_at_{k}": mean["cosine"],
            f"method2_precision_at_{k}": mean["genre"], f"mfcc_precision_at_{k}": mean.get(MFCC),
            f"random_precision_at_{k}": mean["random"], "m2_minus_m1": rs.get("genre_minus_cosine",
                                                                               {"diff": full["genre_minus_cosine"]}),
            "m1_minus_mfcc": rs.get("cosine_minus_mfcc"), "genre_term": genre_term_use(fold.index, cfg)}


def nested_report(fold: FoldCatalog, prec: dict[str, dict[str, float]], cfg: EvalConfig,
                  others: Sequence[str], known: dict[tuple, dict] | None = None) -> dict:
    """The rule applied to the ``others`` folds only, scored on ``fold`` (which it
    did not see): the setting it picks and that setting's m2 − m1 on ``fold``
    with its track-level interval (``cfg.resample``). ``known``: fold reports
    already made, by (held-out source, setting) — the report is a function of
    both, so one the full rule already made is not simulated again."""
    pick = parse_setting(choose(prec, others))
    key = (fold.held_out, tuple(sorted(pick.items())))
    rep = (known or {}).get(key) or fold_report(fold, replace(cfg, **pick))
    k = cfg.k
    return {"chosen_on_other_folds": pick, "chosen_on": list(others),
            f"method1_precision_at_{k}": rep[f"method1_precision_at_{k}"],
            f"method2_precision_at_{k}": rep[f"method2_precision_at_{k}"], "m2_minus_m1": rep["m2_minus_m1"],
            "genre_term": rep["genre_term"]}


def loso_recommend(folds: Sequence[FoldCatalog], cfg: EvalConfig = EvalConfig(), model: str = FUSED,
                   grid: LosoGrid = LosoGrid(), progress: Progress | None = None) -> dict:
    """The ``"loso"`` record of ``recommend-eval``: the grid per fold, the choice,
    per-fold figures of the chosen setting (with intervals) and the nested check."""
    cfg = replace(cfg, model=model, n_listeners=grid.n_listeners, n_halves=grid.n_halves)
    prec = grid_precisions(folds, model, cfg, grid, progress)
    best = choose(prec)
    chosen = parse_setting(best)
    per_fold = {f.held_out: fold_report(f, replace(cfg, **chosen)) for f in folds}
    known = {(h, tuple(sorted(chosen.items()))): r for h, r in per_fold.items()}
    nested = {f.held_out: nested_report(f, prec, cfg, [g.held_out for g in folds if g.held_out != f.held_out],
                                        known)
              for f in folds}
    return {"protocol": "train the genre head on two sources, recommend within the held-out source's "
                        "non-test tracks (simulated listeners)",
            "embedding": model, "choice": {"model": model, **chosen},
            "rule": "argmax over (variant, w, confidence) of the worst fold's m2 − m1, then mean m2",
            "folds": per_fold, "nested": nested,
            "grid": {h: {n: round(v, 4) for n, v in p.items()} for h, p in prec.items()},
            "config": {**asdict(cfg), "grid": asdict(grid)}}
