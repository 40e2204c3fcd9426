"""Simulated listeners and what they make of a recommendation list.

A listener is built only from one split (or the whole catalog): it draws 5
seed tracks of one genre (``single``) or 3 + 2 from two genres (``mixed``) and
likes a recommendation when its ground-truth genre is one of the seeds'
genres. A :class:`Scorer` collects one method's lists for every listener:
precision@k, per-genre precision, artist hit-rate (share of recommendations
by a seed's artist), intra-list diversity (mean pairwise cosine distance of
the list in one fixed embedding for every method) and catalog coverage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from core.catalog.index import CatalogIndex
from core.recommend.statistics import mean_ci


@dataclass
class Listener:
    """One simulated listener: seed rows and the genres it likes."""

    kind: str            # "single" | "mixed"
    seeds: list[int]     # catalog rows
    genres: list[str]    # genres whose tracks this listener likes


def label_rows(labels: Sequence[str], skip_empty: bool = False) -> dict[str, np.ndarray]:
    """Each label's rows, labels in sorted order (``skip_empty``: ``""`` means no label)."""
    g = np.asarray(labels, dtype=object)
    return {x: np.flatnonzero(g == x) for x in sorted(set(g.tolist())) if x or not skip_empty}


def group_listeners(rows: dict[str, np.ndarray], n: int, n_seeds: int, rng) -> list[tuple[list[int], str]]:
    """``(seed rows, label)`` for ``n`` listeners of one label each (``rows``:
    :func:`label_rows`). Labels with at least ``n_seeds + 1`` rows (so one
    same-label track is left to find) are used round-robin, reshuffled every
    round, so every label counts about equally."""
    usable = [x for x, r in rows.items() if len(r) >= n_seeds + 1]
    out = []
    for i in range(n if usable else 0):
        if i % len(usable) == 0:
            rng.shuffle(usable)
        x = usable[i % len(usable)]
        out.append((rng.choice(rows[x], n_seeds, replace=False).tolist(), x))
    return out


def simulate_listeners(genres: Sequence[str], n_single: int, n_mixed: int, n_seeds: int = 5,
                       seed: int = 0) -> list[Listener]:
    """Listeners over a catalog whose ground-truth genres are ``genres``:
    ``n_single`` of one genre (:func:`group_listeners`), then ``n_mixed`` of
    two genres (⌈n_seeds/2⌉ + ⌊n_seeds/2⌋ seeds, a random ordered pair)."""
    rng = np.random.default_rng(seed)
    rows = label_rows(genres)
    out = [Listener("single", s, [x]) for s, x in group_listeners(rows, n_single, n_seeds, rng)]
    a, b = math.ceil(n_seeds / 2), n_seeds // 2
    pairs = [(x, y) for x in rows for y in rows if x != y and len(rows[x]) >= a + 1 and len(rows[y]) >= b + 1]
    for _ in range(n_mixed if pairs and b else 0):
        x, y = pairs[rng.integers(len(pairs))]
        s = rng.choice(rows[x], a, replace=False).tolist() + rng.choice(rows[y], b, replace=False).tolist()
        out.append(Listener("mixed", s, [x, y]))
    return out


class Scorer:
    """Collects per-listener outcomes of one method (its lists and hits too)."""

    def __init__(self, index: CatalogIndex, listeners: list[Listener], k: int, ref: np.ndarray,
                 fetch: int, no_credit: bool = False):
        """``ref`` ``(N, D)``: the unit embeddings diversity is measured in;
        ``fetch``: list length kept per listener; ``no_credit``: a seed's
        artist counts as a miss."""
        self.index, self.listeners, self.k, self.ref = index, listeners, k, ref
        self.genres = index.column("genre")
        self.artists = index.column("artist")
        self.no_credit = no_credit
        self.lists = np.full((len(listeners), fetch), -1, dtype=np.int64)
        self.hits = np.zeros((len(listeners), fetch), bool)
        self.precision = np.zeros(len(listeners))
        self.artist_hits = np.zeros(len(listeners))
        self.ild = np.full(len(listeners), np.nan)
        self.n_genres = np.zeros(len(listeners))
        self.recommended: set[int] = set()

    def add(self, i: int, rows: Sequence[int]) -> None:
        """Record listener ``i``'s list (catalog rows, best first)."""
        lis = self.listeners[i]
        rows = [int(r) for r in rows][: self.lists.shape[1]]
        seed_artists = {self.artists[s] for s in lis.seeds} - {""}
        by_seed_artist = [self.artists[r] in seed_artists for r in rows]
        liked = [self.genres[r] in lis.genres and not (self.no_credit and same)
                 for r, same in zip(rows, by_seed_artist)]
        self.lists[i, : len(rows)] = rows
        self.hits[i, : len(rows)] = liked
        top = rows[: self.k]
        self.precision[i] = sum(liked[: self.k]) / self.k
        self.artist_hits[i] = sum(by_seed_artist[: self.k]) / max(len(top), 1)
        if len(top) > 1:
            v = self.ref[top]
            sim = v @ v.T
            iu = np.triu_indices(len(top), 1)
            self.ild[i] = float(np.mean(1 - sim[iu]))
        self.n_genres[i] = len({self.genres[r] for r in top})
        self.recommended.update(top)

    def report(self) -> dict:
        """The method's figures over every listener (JSON-ready)."""
        kinds = np.array([lis.kind for lis in self.listeners])
        m, ci = mean_ci(self.precision)
        out = {f"precision_at_{self.k}": m, "precision": m, "ci95": ci,
               "std": float(np.std(self.precision, ddof=1)) if len(self.precision) > 1 else 0.0,
               "n": len(self.precision)}
        for kind in ("single", "mixed"):
            sel = kinds == kind
            if sel.any():
                km, kci = mean_ci(self.precision[sel])
                out[kind] = {"precision": km, "ci95": kci, "n": int(sel.sum())}
        per_genre = {}
        for g in sorted({lis.genres[0] for lis in self.listeners if lis.kind == "single"}):
            sel = np.array([lis.kind == "single" and lis.genres[0] == g for lis in self.listeners])
            per_genre[g] = float(self.precision[sel].mean())
        out["per_genre"] = per_genre
        out["artist_hit_rate"] = float(self.artist_hits.mean()) if len(self.artist_hits) else float("nan")
        out["intra_list_diversity"] = float(np.nanmean(self.ild)) if np.isfinite(self.ild).any() else float("nan")
        out["distinct_genres_per_list"] = float(self.n_genres.mean()) if len(self.n_genres) else float("nan")
        out["catalog_coverage"] = len(self.recommended) / max(len(self.index), 1)
        return out
