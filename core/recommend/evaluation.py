"""Offline evaluation of the recommender with simulated listeners (the paper
had only a 30-person listening test).

A listener is built only from one split (or ``split="all"``: the whole
catalog): it draws 5 seed tracks of one genre (``single``) or 3 + 2 from two
genres (``mixed``), gets ``k`` recommendations from the rest of the split per
method, and likes a recommendation when its ground-truth genre is one of the
seeds' genres. Per method: mean precision@k with a 95 % t-interval over
listeners, per-genre precision, artist hit-rate (share of recommendations by
a seed's artist), intra-list diversity (mean pairwise cosine distance of the
list in one fixed embedding for every method) and catalog coverage.

Leave-artist-out (``EvalConfig.artists``): ``"exclude"`` never recommends a
track by a seed's artist (every method and the random baseline draw from the
same reduced pool); ``"no-credit"`` keeps them in the lists but counts them as
misses. ``"keep"`` is the paper's setting (same-artist retrieval counts).

Statistics. ``paired_t`` / ``paired_tests`` are the paper's statistic: a
paired t-test over the simulated listeners, who are *not* independent (400
listeners reuse ~100 tracks as seeds and as recommendations), so its p-values
overstate the evidence. ``resampled`` makes the **track** the unit, by
half-sampling (the delete-d jackknife with d = n/2, Shao & Wu 1989): ``R``
times (``EvalConfig.n_halves``) a random half of the catalog's tracks is kept
(not stratified: the genre mix varies as between catalogs), new listeners are simulated on that half and every
method re-run; with ``θ_s`` the difference of mean precision on half ``s``,
``SE² = (n−d)/d · mean_s (θ_s − θ̄)²`` (= the variance of the halves),
the 95 % interval is ``diff ± t_{R−1} · SE`` around the full-catalog
difference and the p-value two-sided from the same t. The same with whole
**artists** kept or dropped is ``resampled.<pair>.artist`` (unit
``"artist"``). Why this and not a plain bootstrap: each listener touches five
seed tracks and the whole candidate pool (a crossed design), and precision@k
is not smooth in the catalog, so neither a bootstrap of listeners nor the
delete-one jackknife is valid (the latter came out 2.4–3× too wide on random
100-track catalogs drawn from the shared data); half-sampling re-runs the
whole simulation, so it carries both the seed and the candidate variation.
The extras (``variants``) carry the paired t only: they are exploratory.

Baselines: ``random`` (k uniformly drawn eligible tracks) and ``mfcc``
(method 1 on standardised MFCC + spectral statistics, from the same cached
log-mels). ``ceiling`` is the best achievable precision given how many
same-genre tracks remain.

:func:`select_on` grid-searches method 2's embedding, variant and genre weight
on one split (validation) and returns the choice; ``recommend-eval --choice``
then reports that choice on the test split.

Where the parts live: listeners and their per-method figures in
:mod:`core.recommend.listeners`, the statistics in
:mod:`core.recommend.statistics`, the catalogs and the ``recommend-eval``
entry point in :mod:`core.recommend.eval_data`; this module runs the
simulation.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from core.catalog.index import CatalogIndex
from core.recommend.listeners import Scorer, simulate_listeners
from core.recommend.methods import recommend
from core.recommend.request import (
    DEFAULTS,
    ENSEMBLE,
    ENSEMBLE_SEP,
    PSEUDO_MODELS,
    VARIANTS,
    ensemble_parts,
    resolve_model,
)
from core.recommend.scoring import artist_exclusions, seed_exclusions
from core.recommend.statistics import d_z, half_sample_units, half_sampling_ci, mean_ci, paired_t
from core.recommend.views import views_of
from core.types import Progress

MFCC = "mfcc"
ARTIST_MODES = ("keep", "exclude", "no-credit")


@dataclass
class EvalConfig:
    """Simulation settings (the CLI's flags read these defaults)."""

    n_listeners: int = 400        # half single-genre, half mixed (two genres)
    n_seeds: int = 5
    k: int = 5
    seed: int = 0
    model: str | None = DEFAULTS.model   # embedding of methods 1 and 2 (None: recommend's default)
    genre_weight: float = DEFAULTS.genre_weight   # method 2's w
    variant: str = DEFAULTS.variant               # method 2's variant
    confidence: str = DEFAULTS.confidence         # method 2's weight × classifier confidence
    mixed_fraction: float = 0.5
    extras: bool = True           # also evaluate the beyond-the-paper variants
    artists: str = "keep"         # "keep" | "exclude" | "no-credit" (leave-artist-out)
    resample: bool = True         # track / artist half-sampling of every main difference
    n_halves: int = 40            # half-samples per unit (track, artist)


@dataclass
class SelectConfig:
    """The grid :func:`select_on` searches (validation data only)."""

    weights: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    variants: tuple[str, ...] = VARIANTS
    models: tuple[str, ...] | None = None   # None: every learned model, each pair, "ensemble"


def eligible_rows(index, seeds: list[int], artists: Sequence[str] = ()) -> np.ndarray:
    """Rows a recommender may return for these seeds (same rule as recommend());
    ``index``: a :class:`CatalogIndex` or one of its snapshots."""
    excluded = seed_exclusions(index, seeds)
    if len(artists):
        excluded |= artist_exclusions(index, artists)
    return np.flatnonzero(~excluded)


# --------------------------------------------------------------------------- resampling


def _units(index: CatalogIndex) -> dict[str, list[np.ndarray]]:
    """Resampling units: every track, and every artist's tracks (a track
    without an artist name is its own artist)."""
    tracks = [np.array([i]) for i in range(len(index))]
    by_artist: dict[str, list[int]] = {}
    for i, a in enumerate(index.column("artist")):
        key = " ".join(str(a).casefold().split()) or f"\x00{i}"
        by_artist.setdefault(key, []).append(i)
    return {"track": tracks, "artist": [np.array(v) for v in by_artist.values()]}


def resample_pairs(index: CatalogIndex, cfg: EvalConfig, settings: dict[str, dict],
                   pairs: Sequence[tuple[str, str, str]], full: dict[str, float],
                   progress: Progress | None = None) -> dict:
    """Every pair's difference with its half-sampling interval over tracks
    (``unit: "track"``) and over artists (under ``"artist"``): ``cfg.n_halves``
    times, a random half of the units is kept, listeners are
    drawn afresh from it and the methods re-run on it."""
    units = _units(index)
    draws: dict[str, dict[str, list[float]]] = {u: {name: [] for name, _, _ in pairs} for u in units}
    sub_cfg = EvalConfig(**{**asdict(cfg), "resample": False, "extras": False})
    total, done = len(units) * cfg.n_halves, 0
    for u, members in units.items():
        rng = np.random.default_rng([cfg.seed, 7, len(u)])
        for r in range(cfg.n_halves):
            rows = half_sample_units(members, rng)
            try:
                sub = index.subset(rows)
                prec = _simulate(sub, EvalConfig(**{**asdict(sub_cfg), "seed": cfg.seed + 1000 * (r + 1)}),
                                 settings)
            except ValueError:          # a half too small to simulate listeners
                prec = None
            for name, a, b in pairs:
                draws[u][name].append(float(prec[a].mean() - prec[b].mean()) if prec else float("nan"))
            done += 1
            if progress:
                progress(done, total)
    out = {}
    for name, a, b in pairs:
        res = half_sampling_ci(full[name], draws["track"][name], len(units["track"]), "track")
        res["artist"] = half_sampling_ci(full[name], draws["artist"][name], len(units["artist"]), "artist")
        out[name] = res
    return out


# --------------------------------------------------------------------------- simulation


class _Run:
    """One simulation: listeners, their seed matrix and per-setting scorers."""

    def __init__(self, index: CatalogIndex, cfg: EvalConfig):
        if cfg.artists not in ARTIST_MODES:
            raise ValueError(f"unknown artists mode {cfg.artists!r}; choose one of {', '.join(ARTIST_MODES)}")
        # One snapshot for the whole run; its views serve every listener's requests.
        self.index, self.cfg, self.k = index.snapshot(), cfg, cfg.k
        genres = index.column("genre")
        n_mixed = int(round(cfg.n_listeners * cfg.mixed_fraction))
        self.listeners = simulate_listeners(genres, cfg.n_listeners - n_mixed, n_mixed, cfg.n_seeds,
                                            cfg.seed)
        if not self.listeners:
            raise ValueError(f"no genre has {cfg.n_seeds + 1} tracks in this catalog — "
                             "cannot simulate listeners")
        self.seeds = np.array([lis.seeds for lis in self.listeners], dtype=np.int64)
        self.ids = index.column("track_id")
        artists = index.column("artist")
        self.seed_artists = [sorted({str(artists[s]) for s in lis.seeds} - {""}) for lis in self.listeners]
        self.fetch = cfg.k
        ref_model = resolve_model(index, cfg.model)
        ref_model = ensemble_parts(index, ref_model)[0] if ref_model not in index.models else ref_model
        self.ref = views_of(self.index).space(ref_model, "cosine")   # unit rows of one model
        self.exclude = cfg.artists == "exclude"

    def scorer(self) -> Scorer:
        return Scorer(self.index, self.listeners, self.k, self.ref, self.fetch,
                       no_credit=self.cfg.artists == "no-credit")

    def run(self, settings: dict[str, dict], progress: Progress | None = None,
            done: int = 0, total: int | None = None) -> dict[str, Scorer]:
        """Every setting's lists for every listener (``recommend`` itself)."""
        out = {name: self.scorer() for name in settings}
        total = total or len(self.listeners)
        for i, lis in enumerate(self.listeners):
            seeds = [str(self.ids[s]) for s in lis.seeds]
            excl = self.seed_artists[i] if self.exclude else ()
            for name, kw in settings.items():
                recs = recommend(self.index, seeds, k=self.fetch, exclude_artists=excl, **kw)
                out[name].add(i, self.index.rows_of([r.track_id for r in recs]))
            if progress:
                progress(done + i + 1, total)
        return out


def _random_lists(run: "_Run", scorer: Scorer, rng: np.random.Generator) -> np.ndarray:
    """The random baseline's lists; returns each listener's expected random precision."""
    index, genres = run.index, run.index.column("genre")
    expected = np.zeros(len(run.listeners))
    for i, lis in enumerate(run.listeners):
        excl = run.seed_artists[i] if run.exclude else ()
        elig = eligible_rows(index, lis.seeds, excl)
        good = np.isin(genres[elig], lis.genres)
        if run.cfg.artists == "no-credit":
            good &= ~np.isin(index.column("artist")[elig], run.seed_artists[i])
        expected[i] = good.sum() / len(elig) if len(elig) else 0.0
        scorer.add(i, rng.choice(elig, min(run.fetch, len(elig)), replace=False))
    return expected


def _simulate(index: CatalogIndex, cfg: EvalConfig, settings: dict[str, dict]) -> dict[str, np.ndarray]:
    """Per-listener precision of ``settings`` and ``random`` on ``index``."""
    run = _Run(index, cfg)
    scorers = run.run(settings)
    scorers["random"] = run.scorer()
    _random_lists(run, scorers["random"], np.random.default_rng(cfg.seed + 1))
    return {name: s.precision for name, s in scorers.items()}


simulate_settings = _simulate   # public name: core.recommend.loso runs its own grids


def _learned(index: CatalogIndex) -> list[str]:
    return [m for m in index.models if m not in PSEUDO_MODELS]


def _method_settings(index: CatalogIndex, cfg: EvalConfig) -> tuple[dict, dict]:
    """The paper's methods (+ mfcc) and the extras to evaluate."""
    model = resolve_model(index, cfg.model)
    methods: dict[str, dict] = {
        "cosine": dict(method="cosine", model=model),
        "genre": dict(method="genre", model=model, genre_weight=cfg.genre_weight, variant=cfg.variant,
                      confidence=cfg.confidence),
    }
    if MFCC in index.models:
        methods[MFCC] = dict(method="cosine", model=MFCC)
    variants: dict[str, dict] = {}
    if not cfg.extras:
        return methods, variants
    other_variant = next(v for v in VARIANTS if v != cfg.variant)
    variants[f"genre_{other_variant}"] = dict(method="genre", model=model, genre_weight=cfg.genre_weight,
                                              variant=other_variant)
    for other in _learned(index):
        if other != model:
            variants[f"cosine_{other}"] = dict(method="cosine", model=other)
            variants[f"genre_{other}"] = dict(method="genre", model=other, genre_weight=cfg.genre_weight,
                                              variant=cfg.variant)
    if len(_learned(index)) >= 2 and model != ENSEMBLE:
        variants["cosine_ensemble"] = dict(method="cosine", model=ENSEMBLE)
        variants["genre_ensemble"] = dict(method="genre", model=ENSEMBLE, genre_weight=cfg.genre_weight,
                                          variant=cfg.variant)
    g = dict(method="genre", model=model, genre_weight=cfg.genre_weight, variant=cfg.variant,
             confidence=cfg.confidence)
    variants["cosine_max"] = dict(method="cosine", model=model, aggregate="max")
    variants["genre_max"] = {**g, "aggregate": "max"}
    variants["cosine_euclidean"] = dict(method="cosine", model=model, distance="euclidean")
    variants["cosine_pnorm3"] = dict(method="cosine", model=model, distance="pnorm", p=3)
    for w in (0.25, 0.75, 1.0):
        if w != cfg.genre_weight:
            variants[f"genre_w{w:g}"] = {**g, "genre_weight": w}
    variants["cosine_zscore"] = dict(method="cosine", model=model, standardise=True)
    variants["genre_zscore"] = {**g, "standardise": True}
    variants["cosine_mmr0.3"] = dict(method="cosine", model=model, diversity=0.3)
    variants["genre_mmr0.3"] = {**g, "diversity": 0.3}
    return methods, variants


# (JSON name, method A, method B): A minus B, reported with track and artist jackknife.
RESAMPLED_PAIRS = (("genre_minus_cosine", "genre", "cosine"), ("cosine_minus_mfcc", "cosine", MFCC),
                   ("cosine_minus_random", "cosine", "random"), ("genre_minus_mfcc", "genre", MFCC),
                   ("mfcc_minus_random", MFCC, "random"))


def evaluate_index(index: CatalogIndex, cfg: EvalConfig = EvalConfig(),
                   progress: Progress | None = None) -> dict:
    """Run the simulated listeners over an index whose ``genre`` column holds
    ground truth: methods 1 and 2 on ``cfg.model``, the ``mfcc`` pseudo-model
    when the index has it, random, and (``cfg.extras``) the other models,
    the ensemble and the options beyond the paper."""
    start = time.time()
    run = _Run(index, cfg)
    listeners, k = run.listeners, cfg.k
    genres = index.column("genre")
    methods, variants = _method_settings(index, cfg)
    scorers = run.run({**methods, **variants}, progress)
    scorers["random"] = run.scorer()
    feedback = run.scorer() if cfg.extras else None
    no_feedback = run.scorer() if cfg.extras else None
    random_expected = _random_lists(run, scorers["random"], np.random.default_rng(cfg.seed + 1))
    ceiling = np.zeros(len(listeners))
    model = methods["cosine"]["model"]
    for i, lis in enumerate(listeners):
        excl = run.seed_artists[i] if run.exclude else ()
        elig = eligible_rows(index, lis.seeds, excl)
        good = np.isin(genres[elig], lis.genres)
        if cfg.artists == "no-credit":
            good &= ~np.isin(index.column("artist")[elig], run.seed_artists[i])
        ceiling[i] = min(k, int(good.sum())) / k
        if feedback is not None:
            # Round 2 after the listener marks round 1 (liked = in their genres):
            # Rocchio feedback vs simply the next k of method 1.
            seeds = [str(run.ids[s]) for s in lis.seeds]
            first = recommend(index, seeds, k=2 * k, method="cosine", model=model, exclude_artists=excl)
            r1, r2 = first[:k], first[k:]
            liked = [r.track_id for r in r1 if r.genre in lis.genres]
            disliked = [r.track_id for r in r1 if r.genre not in lis.genres]
            fb = recommend(index, seeds, k=k, method="cosine", model=model, liked=liked,
                           disliked=disliked, exclude_artists=excl)
            feedback.add(i, index.rows_of([r.track_id for r in fb]))
            no_feedback.add(i, index.rows_of([r.track_id for r in r2]))

    names = ["cosine", "genre", "random"] + ([MFCC] if MFCC in methods else [])
    out_methods = {name: scorers[name].report() for name in names}
    for name in out_methods:
        out_methods[name]["settings"] = methods.get(name, {"method": "random"})
    kinds = np.array([lis.kind for lis in listeners])
    out_methods["random"]["expected"] = float(random_expected.mean())
    for kind in ("single", "mixed"):
        if kind in out_methods["random"]:
            out_methods["random"][kind]["expected"] = float(random_expected[kinds == kind].mean())
    p = {name: scorers[name].precision for name in scorers}
    tests = {"genre_vs_cosine": paired_t(p["cosine"], p["genre"])}
    if MFCC in p:
        tests["cosine_vs_mfcc"] = paired_t(p[MFCC], p["cosine"])
        tests["mfcc_vs_random"] = paired_t(p["random"], p[MFCC])
    tests["cosine_vs_random"] = paired_t(p["random"], p["cosine"])
    for t in tests.values():
        t["statistic"] = "paired t over simulated listeners (the paper's; listeners share tracks)"

    pairs = [(n, a, b) for n, a, b in RESAMPLED_PAIRS if a in scorers and b in scorers]
    out_resampled = {}
    if cfg.resample:
        full = {n: float(p[a].mean() - p[b].mean()) for n, a, b in pairs}
        out_resampled = resample_pairs(index, cfg, methods, pairs, full)
        for n, a, b in pairs:
            out_resampled[n]["d_z"] = d_z(p[a], p[b])
    out_variants = {}
    for name, kw in variants.items():
        rep = scorers[name].report()
        rep["settings"] = kw
        rep["vs_cosine"] = paired_t(p["cosine"], p[name])
        out_variants[name] = rep
    if feedback is not None:
        out_variants["cosine_round2_feedback"] = {
            **feedback.report(), "vs_round2_without_feedback": paired_t(no_feedback.precision,
                                                                        feedback.precision),
            "settings": {"method": "cosine", "model": model, "liked/disliked": "round 1 by genre"}}
        out_variants["cosine_round2_without_feedback"] = {**no_feedback.report(),
                                                          "settings": {"ranks": f"{k + 1}-{2 * k}"}}
    cm, cci = mean_ci(ceiling)
    return {
        "methods": out_methods,
        "paired_t": {k_: v for k_, v in tests["genre_vs_cosine"].items() if k_ in ("t", "p")},
        "paired_t_note": "the paper's statistic: a paired t-test over simulated listeners, who share "
                         "tracks, so its p-value overstates the evidence; see 'resampled'",
        "resampled": out_resampled,
        "n_listeners": len(listeners),
        "paired_tests": tests,
        "ceiling": {f"precision_at_{k}": cm, "ci95": cci},
        "variants": out_variants,
        "catalog": {"n_tracks": len(index), "genres": {g: int((genres == g).sum())
                                                       for g in sorted(set(genres.tolist()))},
                    "n_artists": len(_units(index)["artist"]),
                    "n_single": sum(lis.kind == "single" for lis in listeners),
                    "n_mixed": sum(lis.kind == "mixed" for lis in listeners)},
        "config": asdict(cfg),
        "seconds": round(time.time() - start, 2),
    }


# --------------------------------------------------------------------------- selection


def embedding_candidates(index: CatalogIndex, models: Sequence[str] | None = None) -> list[str]:
    """Embeddings the selection tries: each learned model, each pair of them
    (``"a+b"``) and ``"ensemble"`` (all of them) when there are more than two."""
    if models:
        return list(models)
    learned = _learned(index)
    out = list(learned) + [ENSEMBLE_SEP.join(pair) for pair in itertools.combinations(learned, 2)]
    if len(learned) > 2:
        out.append(ENSEMBLE)
    return out


def select_on(index: CatalogIndex, cfg: EvalConfig = EvalConfig(), grid: SelectConfig = SelectConfig(),
              progress: Progress | None = None) -> dict:
    """Grid search on one split (validation): the embedding with the best
    method 1 precision, then method 2's variant and genre weight with the best
    precision on that embedding (ties: the earlier in grid order). Returns the
    choice and every grid point's precision@k."""
    start = time.time()
    run = _Run(index, EvalConfig(**{**asdict(cfg), "resample": False}))
    embeddings = embedding_candidates(index, grid.models)
    settings: dict[str, dict] = {}
    for e in embeddings:
        settings[f"cosine|{e}"] = dict(method="cosine", model=e)
        for v in grid.variants:
            for w in grid.weights:
                settings[f"genre|{e}|{v}|{w:g}"] = dict(method="genre", model=e, variant=v, genre_weight=w)
    scorers = run.run(settings, progress)
    prec = {name: float(s.precision.mean()) for name, s in scorers.items()}
    table = [{**settings[name], "precision_at_%d" % cfg.k: prec[name]} for name in settings]
    best_e = max(embeddings, key=lambda e: (prec[f"cosine|{e}"], -embeddings.index(e)))
    m2 = [n for n in settings if n.startswith(f"genre|{best_e}|")]
    best = max(m2, key=lambda n: (prec[n], -m2.index(n)))
    kw = settings[best]
    return {
        "choice": {"model": best_e, "variant": kw["variant"], "genre_weight": kw["genre_weight"]},
        "precision": {"cosine": prec[f"cosine|{best_e}"], "genre": prec[best]},
        "best_per_embedding": {e: {"cosine": prec[f"cosine|{e}"], "genre": max(
            prec[n] for n in settings if n.startswith(f"genre|{e}|"))} for e in embeddings},
        "grid": table,
        "rule": "embedding = argmax method 1 precision; then (variant, w) = argmax method 2 "
                "precision on that embedding; ties → earlier grid point",
        "n_listeners": len(run.listeners),
        "catalog": {"n_tracks": len(index)},
        "config": {**asdict(cfg), "grid": asdict(grid)},
        "seconds": round(time.time() - start, 2),
    }


def apply_choice(cfg: EvalConfig, choice: dict) -> EvalConfig:
    """``cfg`` with a selection's ``choice`` (model, variant, genre_weight)."""
    c = choice.get("choice", choice)
    keys = ("model", "variant", "genre_weight", "confidence")
    return EvalConfig(**{**asdict(cfg), **{k: c[k] for k in keys if k in c}})
