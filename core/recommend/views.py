"""What the recommender derives from one index snapshot, computed once and
shared by every request on that snapshot.

:func:`views_of` gives the :class:`RecommendViews` of a snapshot: the same
object for the same snapshot, a new one for a new snapshot (an index update
swaps in a new snapshot, so stale views are never served). Each view has a
typed accessor and is built on first use under its own lock; keyed views
(scoring spaces, search indices, centre points, ensemble probabilities) are
LRUs with a stated maximum number of entries per snapshot. The views hold the
snapshot weakly and are dropped with it; the arrays they return must not be
modified.

Scoring spaces (method 1's similarity is computed in them): per model, the
raw embeddings, optionally z-scored per dimension with the catalog's mean
and standard deviation (``standardise``), then unit-norm rows for cosine or
scaled to the catalog's unit mean norm for the distances (so both halves of
an ensemble count equally). An ensemble (``"ensemble"``, ``"a+b"``) is its
parts' spaces side by side (re-normalised for cosine); its genre
probabilities are the mean of the parts' (aligned by genre name).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

import numpy as np

from core.catalog.index import CatalogIndex
from core.catalog.snapshot import IndexSnapshot
from core.recommend import search
from core.recommend.centres import CentrePoint, centre_rows
from core.recommend.dedupe import norm_text, song_key
from core.recommend.request import ENSEMBLE, RecommendError, SeedVector, ensemble_parts, is_ensemble

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMemo(Generic[K, V]):
    """A thread-safe LRU of at most ``max_entries`` values. Concurrent first
    calls for one key compute it once (a lock per key being built); ``make``
    may ask the memo for other keys."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._values: OrderedDict[K, V] = OrderedDict()
        self._building: dict[K, threading.Lock] = {}
        self._lock = threading.Lock()
        self.misses = 0

    def peek(self, key: K) -> V | None:
        """The value if it is held (without building it or refreshing its place)."""
        with self._lock:
            return self._values.get(key)

    def get(self, key: K, make: Callable[[], V]) -> V:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._lock:
                if key in self._values:           # built by the thread we waited for
                    self._values.move_to_end(key)
                    return self._values[key]
            try:
                value = make()
            except BaseException:
                with self._lock:              # a failed build leaves nothing behind
                    self._building.pop(key, None)
                raise
            with self._lock:
                self.misses += 1
                self._values[key] = value
                while len(self._values) > self.max_entries:
                    self._values.popitem(last=False)
                self._building.pop(key, None)
        return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)


class _Lazy(Generic[V]):
    """One value built on first use, under a lock."""

    def __init__(self, make: Callable[[], V]):
        self._make = make
        self._value: V | None = None
        self._lock = threading.Lock()

    def get(self) -> V:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._make()
        return self._value


class RecommendViews:
    """The derived views of one :class:`IndexSnapshot` (see the module docstring)."""

    # Per snapshot. The app asks for one to three spaces at a time; the
    # evaluation's variants use eight (an ensemble's parts are cached only
    # when asked for directly).
    MAX_SPACES = 12
    MAX_VECTOR_INDICES = 2     # each holds a copy of a space; only catalogs above APPROX_ABOVE build one
    MAX_CENTRES = 16           # one small dict per (model, distance, standardise, p)
    MAX_PROBS = 8              # ensemble genre probabilities, (N, G) each
    MAX_STATS = 32             # per-model z-score statistics and mean norms

    def __init__(self, snapshot: IndexSnapshot):
        self._snapshot = weakref.ref(snapshot)   # the registry holds views per snapshot, weakly
        self._song_keys = _Lazy(lambda: np.array(
            [song_key(a, t) for a, t in zip(self.snapshot.column("artist"), self.snapshot.column("title"))],
            dtype=object))
        self._norm_artists = _Lazy(lambda: np.array(
            [norm_text(a) for a in self.snapshot.column("artist")], dtype=object))
        self._zstats: BoundedMemo[str, tuple[np.ndarray, np.ndarray]] = BoundedMemo(self.MAX_STATS)
        self._mean_norms: BoundedMemo[tuple[str, bool], float] = BoundedMemo(self.MAX_STATS)
        self._spaces: BoundedMemo[tuple[str, str, bool], np.ndarray] = BoundedMemo(self.MAX_SPACES)
        self._probs: BoundedMemo[str, np.ndarray] = BoundedMemo(self.MAX_PROBS)
        self._indices: BoundedMemo[tuple[str, bool, int], search.VectorIndex] = \
            BoundedMemo(self.MAX_VECTOR_INDICES)
        self._centres: BoundedMemo[tuple[str, str, bool, float], dict[str, CentrePoint]] = \
            BoundedMemo(self.MAX_CENTRES)

    @property
    def snapshot(self) -> IndexSnapshot:
        snap = self._snapshot()
        if snap is None:   # only if a caller kept the views but dropped the snapshot
            raise RuntimeError("the snapshot of these views is gone; use views_of(snapshot)")
        return snap

    def sizes(self) -> dict[str, int]:
        """How many entries each keyed view holds now."""
        return {"spaces": len(self._spaces), "vector_indices": len(self._indices),
                "centres": len(self._centres), "probs": len(self._probs)}

    # ------------------------------------------------------------------ copies
    def song_keys(self) -> np.ndarray:
        """``(N,)`` normalised artist + title of every track (``None``: no title)."""
        return self._song_keys.get()

    def norm_artists(self) -> np.ndarray:
        """``(N,)`` normalised artist name of every track."""
        return self._norm_artists.get()

    # ------------------------------------------------------------------ spaces
    def zstats(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and standard deviation ``(D,)`` of one model's embeddings."""
        def make():
            e = self.snapshot.embeddings(model)
            return e.mean(0), np.maximum(e.std(0), 1e-6)
        return self._zstats.get(model, make)

    def _zscore(self, model: str, standardise: bool, e: np.ndarray) -> np.ndarray:
        e = np.asarray(e, np.float32)
        if not standardise:
            return e
        mu, sd = self.zstats(model)
        return (e - mu) / sd

    def mean_norm(self, model: str, standardise: bool) -> float:
        """Mean row norm of one model's (optionally z-scored) embeddings."""
        return self._mean_norms.get((model, standardise), lambda: max(float(np.linalg.norm(
            self._zscore(model, standardise, self.snapshot.embeddings(model)), axis=1).mean()), 1e-12))

    def _part(self, model: str, distance: str, standardise: bool, e: np.ndarray) -> np.ndarray:
        """Raw embeddings ``(n, D)`` of one model → its scoring space."""
        e = self._zscore(model, standardise, e)
        if distance == "cosine":
            return search.normalise(e)
        return e / self.mean_norm(model, standardise)

    def space(self, model: str, distance: str, standardise: bool = False) -> np.ndarray:
        """``(N, D')`` catalog matrix in the space the similarity is computed in."""
        kind = "cosine" if distance == "cosine" else "scaled"    # every distance shares one space
        return self._spaces.get((model, kind, standardise), lambda: self._build_space(model, kind, standardise))

    def _build_space(self, model: str, kind: str, standardise: bool) -> np.ndarray:
        if is_ensemble(model):
            parts = [self._spaces.peek((m, kind, standardise)) for m in ensemble_parts(self.snapshot, model)]
            v = np.hstack([p if p is not None else self._build_space(m, kind, standardise)
                           for m, p in zip(ensemble_parts(self.snapshot, model), parts)])
            return search.normalise(v) if kind == "cosine" else v
        return self._part(model, kind, standardise, self.snapshot.embeddings(model))

    def seed_in_space(self, sv: SeedVector, model: str, distance: str, standardise: bool = False) -> np.ndarray:
        """An uploaded seed ``(D',)`` transformed exactly like the catalog rows of :meth:`space`."""
        if is_ensemble(model):
            v = np.hstack([self.seed_in_space(sv, m, distance, standardise)
                           for m in ensemble_parts(self.snapshot, model)])
            return search.normalise(v[None])[0] if distance == "cosine" else v
        try:
            e = np.asarray(sv.embedding[model], np.float32)
        except KeyError:
            raise RecommendError(f"uploaded seed {sv.name!r} has no {model} embedding") from None
        have = self.snapshot.embeddings(model).shape[1]
        if e.shape[-1] != have:
            raise RecommendError(f"uploaded seed {sv.name!r}: {model} embedding size {e.shape[-1]} "
                                 f"does not match the index ({have})")
        return self._part(model, "cosine" if distance == "cosine" else "scaled", standardise, e[None])[0]

    def vector_index(self, model: str, standardise: bool, exact_max: int) -> search.VectorIndex:
        """The cosine :class:`~core.recommend.search.VectorIndex` over ``space(model, "cosine", standardise)``."""
        return self._indices.get((model, standardise, exact_max), lambda: search.VectorIndex(
            self.space(model, "cosine", standardise), exact_max=exact_max))

    # ------------------------------------------------------------------ genres
    def labels(self, model: str) -> list[str]:
        """Genre labels of a model spec (an ensemble's: its first part's)."""
        return self.snapshot.model_labels(ensemble_parts(self.snapshot, model)[0])

    def _align(self, part: str, labels: list[str], probs: np.ndarray) -> np.ndarray:
        """Columns of ``part``'s probabilities reordered to ``labels``."""
        own = self.snapshot.model_labels(part)
        if own == labels:
            return probs
        try:
            return probs[..., [own.index(g) for g in labels]]
        except ValueError:
            raise RecommendError(f"{part} does not predict the same genres as "
                                 f"{ensemble_parts(self.snapshot, ENSEMBLE)[0]}; cannot ensemble them") from None

    def genre_probs(self, model: str) -> np.ndarray:
        """``(N, G)`` genre probabilities of a model spec (an ensemble: the parts' mean)."""
        if not is_ensemble(model):
            return self.snapshot.probs(model)
        labels = self.labels(model)
        return self._probs.get(model, lambda: np.mean(
            [self._align(m, labels, self.snapshot.probs(m)) for m in ensemble_parts(self.snapshot, model)],
            axis=0).astype(np.float32))

    def seed_probs(self, sv: SeedVector, model: str) -> np.ndarray:
        """An uploaded seed's ``(G,)`` genre probabilities, like :meth:`genre_probs`."""
        if is_ensemble(model):
            labels = self.labels(model)
            return np.mean([self._align(m, labels, self.seed_probs(sv, m))
                            for m in ensemble_parts(self.snapshot, model)], axis=0)
        try:
            return np.asarray(sv.probs[model], np.float32)
        except KeyError:
            raise RecommendError(f"uploaded seed {sv.name!r} has no {model} probabilities") from None

    def centres(self, model: str, distance: str = "cosine", standardise: bool = False,
                p: float = 3.0) -> dict[str, CentrePoint]:
        """Each genre's centre-point song in ``model``'s space (:mod:`core.recommend.centres`)."""
        def make() -> dict[str, CentrePoint]:
            X = self.space(model, distance, standardise)
            ids = self.snapshot.column("track_id")
            out = {}
            for g, (row, n_pred, n_conf, thr) in zip(self.labels(model),
                                                      centre_rows(self.genre_probs(model), X, distance, p)):
                if row >= 0:
                    out[g] = CentrePoint(g, row, str(ids[row]), n_pred, n_conf, thr)
            return out
        return self._centres.get((model, distance, standardise, float(p)), make)


_VIEWS: weakref.WeakKeyDictionary[IndexSnapshot, RecommendViews] = weakref.WeakKeyDictionary()
_VIEWS_LOCK = threading.Lock()


def views_of(index: CatalogIndex | IndexSnapshot) -> RecommendViews:
    """The views of ``index``'s current snapshot (one object per snapshot,
    kept as long as the snapshot lives)."""
    snap = index.snapshot()
    with _VIEWS_LOCK:
        views = _VIEWS.get(snap)
        if views is None:
            views = _VIEWS[snap] = RecommendViews(snap)
    return views
