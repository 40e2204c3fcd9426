"""Offline evaluation when relevance is not genre: simulated listeners whose
taste is a mood or an artist.

The genre listeners of :mod:`core.recommend.evaluation` count a hit when a
recommendation's genre label matches, and method 2 ranks by predicted genre,
so part of its advantage is built into that metric. Here the hit is
something neither method sees:

* **mood** listeners — 5 seeds from one AllMusic emotion quadrant
  (``emotion_quadrant`` Q1–Q4, arousal × valence; catalog: the tracks that
  have one); hit = same quadrant. Tracks by a seed's artist are never
  recommended (otherwise same-artist retrieval would be counted as mood).
* **artist** listeners — 2 seeds by one artist; hit = a track by that artist
  or from a seed's album (the seeds themselves are never candidates).

Methods: method 1 (``cosine``), method 2 in both variants (``genre_soft``,
``genre_centre``), the ``mfcc`` baseline (when the index has it) and random
(its expected precision over the eligible tracks). Each figure carries a
95 % interval from track-level half-sampling (the delete-half jackknife of
:mod:`core.recommend.statistics`: a random half of the catalog's tracks, new
listeners on it, every method re-run), as do the differences of method 2
and the baselines from method 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.catalog.index import CatalogIndex
from core.recommend.evaluation import EvalConfig, eligible_rows
from core.recommend.listeners import group_listeners, label_rows
from core.recommend.methods import recommend
from core.recommend.request import VARIANTS, resolve_model
from core.recommend.statistics import half_sample_units, half_sampling_ci

MFCC = "mfcc"


_E = EvalConfig()


@dataclass(frozen=True)
class RelevanceConfig:
    """Mood and artist listeners; list length, seeds and resampling default to
    the genre listeners' settings (:class:`~core.recommend.evaluation.EvalConfig`)."""

    n_listeners: int = 200
    mood_seeds: int = _E.n_seeds
    artist_seeds: int = 2
    k: int = _E.k
    seed: int = _E.seed
    n_halves: int = _E.n_halves


def _norm(x) -> str:
    return " ".join(str(x).casefold().split())


def mood_listeners(quadrants: np.ndarray, n: int, n_seeds: int, rng) -> list[tuple[list[int], str]]:
    """Listeners of one emotion quadrant: ``(seed rows, quadrant)``."""
    return group_listeners(label_rows(quadrants, skip_empty=True), n, n_seeds, rng)


def artist_listeners(artists: np.ndarray, n: int, n_seeds: int, rng) -> list[tuple[list[int], str]]:
    """Listeners of one artist (names compared case- and space-insensitively): ``(seed rows, artist)``."""
    return group_listeners(label_rows([_norm(a) for a in artists], skip_empty=True), n, n_seeds, rng)


def method_settings(index: CatalogIndex, model: str | None, genre_weight: float) -> dict[str, dict]:
    """Method 1, method 2 in each variant and the MFCC baseline."""
    model = resolve_model(index.snapshot(), model)
    out = {"cosine": dict(method="cosine", model=model)}
    for v in VARIANTS:
        out[f"genre_{v}"] = dict(method="genre", model=model, genre_weight=genre_weight, variant=v)
    if MFCC in index.models:
        out[MFCC] = dict(method="cosine", model=MFCC)
    return out


def _hits_fn(kind: str, index: CatalogIndex, labels: np.ndarray):
    """``hit(seed rows, target, candidate rows) -> bool array`` for one kind of listener."""
    if kind == "mood":
        return lambda seeds, target, rows: labels[rows] == target
    artists = np.array([_norm(a) for a in index.column("artist")], dtype=object)
    albums = np.array([_norm(a) for a in index.column("album")], dtype=object)

    def hit(seeds, target, rows):
        seed_albums = {albums[s] for s in seeds} - {""}
        return (artists[rows] == target) | np.isin(albums[rows], list(seed_albums))
    return hit


def simulate(index: CatalogIndex, kind: str, labels: np.ndarray, settings: dict[str, dict],
             cfg: RelevanceConfig, seed: int) -> dict[str, np.ndarray]:
    """Per-listener precision@k of every method and ``random`` (expected) on ``index``."""
    rng = np.random.default_rng(seed)
    snap = index.snapshot()
    if kind == "mood":
        listeners = mood_listeners(labels, cfg.n_listeners, cfg.mood_seeds, rng)
    else:
        listeners = artist_listeners(snap.column("artist"), cfg.n_listeners, cfg.artist_seeds, rng)
    if not listeners:
        raise ValueError(f"no {kind} has enough tracks to simulate listeners")
    hit = _hits_fn(kind, index, labels)
    ids, artists = snap.column("track_id"), snap.column("artist")
    out = {name: np.zeros(len(listeners)) for name in [*settings, "random"]}
    for i, (seeds, target) in enumerate(listeners):
        excl = sorted({str(artists[s]) for s in seeds} - {""}) if kind == "mood" else ()
        seed_ids = [str(ids[s]) for s in seeds]
        for name, kw in settings.items():
            recs = recommend(snap, seed_ids, k=cfg.k, exclude_artists=excl, **kw)
            rows = snap.rows_of([r.track_id for r in recs])
            out[name][i] = hit(seeds, target, rows).sum() / cfg.k
        elig = eligible_rows(snap, seeds, excl)
        out["random"][i] = hit(seeds, target, elig).mean() if len(elig) else 0.0
    return out


PAIRS = (("genre_soft_minus_cosine", "genre_soft", "cosine"), ("genre_centre_minus_cosine", "genre_centre", "cosine"),
         ("cosine_minus_mfcc", "cosine", MFCC), ("cosine_minus_random", "cosine", "random"))


def relevance_eval(index: CatalogIndex, kind: str, labels: np.ndarray | None = None,
                   model: str | None = None, genre_weight: float = 0.9,
                   cfg: RelevanceConfig = RelevanceConfig()) -> dict:
    """One kind of listener (``"mood"``: ``labels`` holds each row's quadrant,
    ``""`` for none, and the catalog is cut to the rows that have one;
    ``"artist"``) on ``index``: each method's precision@k with its
    track-level half-sampling 95 % interval, and the paired differences."""
    if kind not in ("mood", "artist"):
        raise ValueError(f"unknown listener kind {kind!r}")
    labels = np.asarray(labels if labels is not None else [""] * len(index), dtype=object)
    if kind == "mood":
        keep = np.flatnonzero(labels != "")
        index, labels = index.subset(keep), labels[keep]
    settings = method_settings(index, model, genre_weight)
    full = simulate(index, kind, labels, settings, cfg, cfg.seed)
    names = list(full)
    pairs = [(n, a, b) for n, a, b in PAIRS if a in full and b in full]
    units = [np.array([i]) for i in range(len(index))]
    rng = np.random.default_rng([cfg.seed, 18])
    halves = {n: [] for n in names + [p[0] for p in pairs]}
    for r in range(cfg.n_halves):
        rows = half_sample_units(units, rng)
        try:
            sub = simulate(index.subset(rows), kind, labels[rows], settings, cfg, cfg.seed + 1000 * (r + 1))
        except ValueError:
            sub = None
        for n in names:
            halves[n].append(float(sub[n].mean()) if sub else float("nan"))
        for n, a, b in pairs:
            halves[n].append(float(sub[a].mean() - sub[b].mean()) if sub else float("nan"))
    methods = {}
    for n in names:
        ci = half_sampling_ci(float(full[n].mean()), halves[n], len(units), "track")
        methods[n] = {"precision": ci["diff"], "ci95": ci["ci95"], "se": ci["se"],
                      "settings": settings.get(n, {"method": "random", "note": "expected over eligible tracks"})}
    diffs = {n: half_sampling_ci(float(full[a].mean() - full[b].mean()), halves[n], len(units), "track")
             for n, a, b in pairs}
    groups = labels if kind == "mood" else index.column("artist")
    return {"methods": methods, "differences": diffs, "n_listeners": len(full["cosine"]), "k": cfg.k,
            "n_seeds": cfg.mood_seeds if kind == "mood" else cfg.artist_seeds,
            "catalog": {"n_tracks": len(index), "n_groups": len({_norm(g) for g in groups} - {""})},
            "hit": "same emotion quadrant (seed artists never recommended)" if kind == "mood"
            else "same artist, or an album of a seed (seed tracks never recommended)",
            "verdict": verdict(methods, diffs)}


# A difference this small is float rounding of equal precisions (the shipped
# artist verdict once read "loses: -0.000 [-0.000, -0.000]" for diff -5.6e-17).
SAME = 1e-9


def verdict(methods: dict, diffs: dict) -> str:
    """One plain sentence: does method 2 beat method 1 here?"""
    parts = []
    for v in VARIANTS:
        d = diffs.get(f"genre_{v}_minus_cosine")
        if d is None or not np.all(np.isfinite(d["ci95"])):
            continue
        lo, hi = d["ci95"]
        if max(abs(lo), abs(hi), abs(d["diff"])) < SAME:
            parts.append(f"method 2 ({v}) ties (the same hits as method 1 for every listener)")
            continue
        word = "wins" if lo > 0 else "loses" if hi < 0 else "ties (interval spans 0)"
        # Four decimals where three would print a nonzero difference as ±0.000.
        places = 3 if max(abs(lo), abs(hi)) >= 0.0005 else 4
        parts.append(f"method 2 ({v}) {word}: {d['diff']:+.{places}f} [{lo:+.{places}f}, {hi:+.{places}f}]")
    return "; ".join(parts) or "not enough listeners for a verdict"


def relevance_report(index: CatalogIndex, quadrants: dict[str, str], genre_out: dict,
                     model: str | None, genre_weight: float, seed: int = _E.seed,
                     n_halves: int = _E.n_halves) -> dict:
    """``{"genre": …, "mood": …, "artist": …}`` for ``recommend-eval``'s JSON:
    ``genre`` summarises the genre listeners already run (``genre_out``); each
    other kind gets half as many listeners as the genre run had."""
    run_cfg = genre_out.get("config", {})
    cfg = RelevanceConfig(seed=seed, n_halves=n_halves, k=int(run_cfg.get("k", _E.k)),
                          n_listeners=max(20, int(run_cfg.get("n_listeners", 400)) // 2))
    res = genre_out.get("resampled", {})
    genre = {"methods": {n: {"precision": m["precision"], "ci95": m["ci95"]}
                         for n, m in genre_out.get("methods", {}).items()},
             "differences": {n: res[n] for n in ("genre_minus_cosine", "cosine_minus_mfcc") if n in res},
             "hit": "same genre label as a seed (method 2 ranks by predicted genre: partly circular)"}
    out = {"genre": genre}
    labels = np.array([quadrants.get(str(t), "") for t in index.column("track_id")], dtype=object)
    for kind, lab in (("mood", labels), ("artist", None)):
        try:
            out[kind] = relevance_eval(index, kind, lab, model, genre_weight, cfg)
        except ValueError as exc:
            out[kind] = {"error": str(exc)}
    return out

