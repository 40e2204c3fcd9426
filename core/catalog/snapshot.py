"""One committed state of the catalog index, immutable: the read API.

An :class:`IndexSnapshot` holds one row per track (metadata and the
:mod:`core.facets` columns in a DataFrame; :meth:`IndexSnapshot.facets`)
and, per model, the ``(N, D)`` embeddings and ``(N, G)`` genre probabilities
in the same row order. Writers (:mod:`core.catalog.sync`) never change one:
they build a new snapshot and swap it in, so any number of threads may read a
snapshot while the index is being updated, and every answer computed from one
snapshot is consistent. What readers derive from it (the recommender's
scoring spaces, search indices, centre points) lives in
:class:`core.recommend.views.RecommendViews`, which the recommender owns.
"""

from __future__ import annotations

import copy
import threading
from typing import Iterable

import numpy as np
import pandas as pd

from core.errors import GenreError
from core.facets import facet_columns

# Columns every consumer of :meth:`IndexSnapshot.table` can rely on (plus pred_<model>).
TABLE_COLUMNS = ["track_id", "path", "genre", "split", "artist", "title", "album", "source", "digest"]
# The file's own tags (core.datasets.tags): text as tagged, duration in seconds.
# ``tag_genre`` is shown beside the models' prediction, never used as a label.
TAG_COLUMNS = ["tag_genre", "year", "track_no"]
NUMBER_COLUMNS = ["duration"]
TABLE_COLUMNS += TAG_COLUMNS + NUMBER_COLUMNS
# Bookkeeping columns kept in the store but not shown by ``table()``.
EXTRA_COLUMNS = ["origin", "size", "mtime_ns", "indexed_at"]
TEXT_COLUMNS = [c for c in TABLE_COLUMNS if c not in NUMBER_COLUMNS] + ["origin"]
ORIGIN_SCAN = "scan"     # rows owned by update(): a data-folder scan
ORIGIN_ADDED = "added"   # rows from add_files(): kept until removed or their file vanishes
# Per-track facets (core.facets: tempo, energy, tags…), float columns; NaN = not computed.
FACET_COLUMNS = facet_columns()


class CatalogError(GenreError, ValueError):
    """An unusable index or request; ``str(err)`` is one readable line."""


def model_fingerprint(model) -> str:
    """The model's :meth:`~core.models.GenreModel.fingerprint`: vectors from
    different fingerprints must never be compared."""
    return model.fingerprint()


def empty_rows() -> pd.DataFrame:
    """The row table of an empty index (every stored column, typed)."""
    cols = {c: pd.Series(dtype=object) for c in TEXT_COLUMNS}
    cols.update(size=pd.Series(dtype="int64"), mtime_ns=pd.Series(dtype="int64"),
                indexed_at=pd.Series(dtype="float64"))
    cols.update({c: pd.Series(dtype="float64") for c in NUMBER_COLUMNS})
    cols.update({c: pd.Series(dtype="float64") for c in FACET_COLUMNS})
    return pd.DataFrame(cols)


class IndexSnapshot:
    """One committed state of the index: tracks, per-model vectors and
    metadata. Never changed after construction; hand this, not the
    :class:`~core.catalog.index.CatalogIndex`, to readers that run while the
    index may be written.

    The metadata columns and each model's top predicted genre are taken out
    at construction; the track-id → row map, which costs a dict over every
    track, is built on first use under a lock.
    """

    def __init__(self, index_dir, version: int, rows: pd.DataFrame, emb: dict[str, np.ndarray],
                 probs: dict[str, np.ndarray], model_meta: dict[str, dict]):
        self.dir = index_dir
        self.version = version
        self._rows = rows
        self._emb = emb
        self._probs = probs
        self._model_meta = model_meta            # name -> labels, fingerprint, embedding_dim
        self._columns = {c: rows[c].to_numpy() for c in rows.columns}
        self._predicted = {m: self._top_genres(m) for m in model_meta}
        self._positions: dict[str, int] | None = None
        self._positions_lock = threading.Lock()

    @classmethod
    def empty(cls, index_dir=None) -> "IndexSnapshot":
        return cls(index_dir, 0, empty_rows(), {}, {}, {})

    def with_version(self, version: int) -> "IndexSnapshot":
        """The same data under another version number (a new object that
        shares the derived columns and predictions instead of rebuilding them)."""
        new = copy.copy(self)
        new.version = version
        new._positions_lock = threading.Lock()
        return new

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def models(self) -> list[str]:
        """Names of the models whose vectors the index holds."""
        return list(self._model_meta)

    @property
    def labels(self) -> list[str]:
        """Genre labels of the first model (the models share them in practice)."""
        if not self._model_meta:
            return []
        return list(next(iter(self._model_meta.values()))["labels"])

    @property
    def frame(self) -> pd.DataFrame:
        """Every stored column, bookkeeping included (the store's and the
        writer's view; the caller must not modify it — use :meth:`table`)."""
        return self._rows

    @property
    def model_meta(self) -> dict[str, dict]:
        """Per model: labels, fingerprint, embedding_dim (and feature settings)."""
        return {n: dict(m) for n, m in self._model_meta.items()}

    def model_labels(self, model: str) -> list[str]:
        return list(self._meta_of(model)["labels"])

    def fingerprints(self) -> dict[str, str]:
        return {n: m.get("fingerprint", "") for n, m in self._model_meta.items()}

    def is_current(self, models: dict) -> bool:
        """Whether the stored vectors came from exactly these ``models``."""
        return bool(models) and self.fingerprints() == {n: model_fingerprint(m) for n, m in models.items()}

    def _meta_of(self, model: str) -> dict:
        try:
            return self._model_meta[model]
        except KeyError:
            have = ", ".join(self.models) or "none — the index is empty"
            raise CatalogError(f"model {model!r} is not in the index (have: {have})") from None

    def _top_genres(self, model: str) -> np.ndarray:
        labels = np.array(self.model_labels(model), dtype=object)
        p = self._probs[model]
        return labels[p.argmax(1)] if len(p) else np.zeros(0, dtype=object)

    def table(self) -> pd.DataFrame:
        """One row per track, in matrix order: TABLE_COLUMNS plus ``pred_<model>`` (a copy)."""
        df = self._rows[TABLE_COLUMNS].copy()
        for name in self.models:
            df[f"pred_{name}"] = self.predicted(name)
        return df

    def facets(self) -> pd.DataFrame:
        """One row per track, in matrix order: ``track_id`` and every facet
        column of :mod:`core.facets` (NaN where not computed; a copy)."""
        return self._rows[["track_id"] + FACET_COLUMNS].copy()

    def has_facets(self) -> bool:
        """Whether the rows carry facets (an index written before they existed has none)."""
        return len(self._rows) == 0 or bool(pd.to_numeric(self._rows["tempo_bpm"], errors="coerce").notna().any())

    def predicted(self, model: str) -> np.ndarray:
        """Top predicted genre of every track (object array)."""
        self._meta_of(model)
        return self._predicted[model]

    def column(self, name: str) -> np.ndarray:
        """One metadata column as an array (no DataFrame copy; for hot loops)."""
        return self._columns[name]

    def embeddings(self, model: str) -> np.ndarray:
        """``(N, D)`` float32 embeddings aligned with :meth:`table`."""
        self._meta_of(model)
        return self._emb[model]

    def probs(self, model: str) -> np.ndarray:
        """``(N, G)`` float32 genre probabilities aligned with :meth:`table`."""
        self._meta_of(model)
        return self._probs[model]

    def _positions_map(self) -> dict[str, int]:
        if self._positions is None:
            with self._positions_lock:
                if self._positions is None:
                    self._positions = {t: i for i, t in enumerate(self.column("track_id"))}
        return self._positions

    def rows_of(self, track_ids: Iterable[str]) -> np.ndarray:
        """Matrix rows of ``track_ids``; an unknown id is a :class:`CatalogError`."""
        pos = self._positions_map()
        out = []
        for t in track_ids:
            try:
                out.append(pos[str(t)])
            except KeyError:
                raise CatalogError(f"track {t!r} is not in the catalog") from None
        return np.array(out, dtype=int)

    def __contains__(self, track_id: object) -> bool:
        return str(track_id) in self._positions_map()

    def snapshot(self) -> "IndexSnapshot":
        return self
