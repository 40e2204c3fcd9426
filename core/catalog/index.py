"""Catalog index: every track's embedding and genre probabilities from each
model, with its metadata, kept on disk so a catalog is decoded only once.

:class:`CatalogIndex` is the face of the index: ``open`` a folder (or build an
in-memory one with :meth:`~CatalogIndex.from_arrays`), read it, and write it
with :meth:`~CatalogIndex.update`, :meth:`~CatalogIndex.add_files` and
:meth:`~CatalogIndex.remove`. Its state is always one immutable
:class:`~core.catalog.snapshot.IndexSnapshot`; a write builds a new one and
swaps it in, so readers holding :meth:`~CatalogIndex.snapshot` keep a
consistent view. The pieces:

* :mod:`core.catalog.snapshot` — ``IndexSnapshot``, the read API;
* :mod:`core.catalog.store` — the on-disk format, crash-safe commits, the writers' lock;
* :mod:`core.catalog.sync` — the incremental write path (what to keep, reuse or embed).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from core.audio.cache import content_hash
from core.catalog import store
from core.catalog.snapshot import (
    FACET_COLUMNS,
    ORIGIN_ADDED,
    ORIGIN_SCAN,
    TABLE_COLUMNS,
    TEXT_COLUMNS,
    CatalogError,
    IndexSnapshot,
)
from core.catalog.sync import Entry, SyncRun
from core.datasets import Track
from core.datasets.tags import read_tags
from core.types import Progress

# Re-exported: the catalog's public names, importable from the index module.
__all__ = ["CatalogError", "CatalogIndex", "IndexSnapshot", "TABLE_COLUMNS"]


class CatalogIndex:
    """Tracks with per-model embeddings and genre probabilities.

    ``open`` a folder (an empty index if there is none yet), then
    :meth:`update` from data-folder tracks and :meth:`add_files` for uploads.
    :meth:`from_arrays` builds an in-memory index (evaluation, tests).
    """

    def __init__(self, index_dir: str | Path | None = None):
        self.dir = Path(index_dir) if index_dir is not None else None
        # The live state: an immutable snapshot, replaced (never changed) by writes.
        self._snap = IndexSnapshot.empty(self.dir)

    def snapshot(self) -> IndexSnapshot:
        """The current state as an immutable :class:`IndexSnapshot`: hand this,
        not the index, to readers that run while the index may be written."""
        return self._snap

    @property
    def version(self) -> int:
        return self._snap.version

    # ----------------------------------------------------------------- reading
    @classmethod
    def open(cls, index_dir: str | Path) -> "CatalogIndex":
        """The index stored in ``index_dir`` (empty when the folder has none)."""
        idx = cls(index_dir)
        idx.reload()
        return idx

    @classmethod
    def from_arrays(cls, rows: pd.DataFrame | Sequence[Track] | Sequence[dict],
                    embeddings: dict[str, np.ndarray], probs: dict[str, np.ndarray],
                    labels: list[str] | dict[str, list[str]]) -> "CatalogIndex":
        """An in-memory index over given vectors (nothing is written)."""
        if isinstance(rows, pd.DataFrame):
            records = rows.to_dict("records")
        else:
            records = [r.to_dict() if isinstance(r, Track) else dict(r) for r in rows]
        data = {c: [str(r.get(c, "") or "") for r in records] for c in TEXT_COLUMNS}
        if records and not any(r.get("digest") for r in records):
            data["digest"] = [f"row{i}" for i in range(len(records))]
        data["origin"] = [r.get("origin") or ORIGIN_SCAN for r in records]
        df = pd.DataFrame({**{c: pd.Series(data[c], dtype=object) for c in TEXT_COLUMNS},
                           "duration": np.array([float(r.get("duration") or 0.0) for r in records]),
                           "size": np.zeros(len(records), np.int64),
                           "mtime_ns": np.zeros(len(records), np.int64),
                           "indexed_at": np.zeros(len(records)),
                           **{c: np.array([_float(r.get(c)) for r in records], float) for c in FACET_COLUMNS}})
        idx = cls(None)
        emb, prb, meta = {}, {}, {}
        for name in embeddings:
            e = np.asarray(embeddings[name], np.float32)
            p = np.asarray(probs[name], np.float32)
            if len(e) != len(df) or len(p) != len(df):
                raise CatalogError(f"{name}: {len(e)} embeddings / {len(p)} probs for {len(df)} tracks")
            lab = labels[name] if isinstance(labels, dict) else labels
            emb[name], prb[name] = e, p
            meta[name] = {"labels": list(lab), "fingerprint": "", "embedding_dim": e.shape[1]}
        idx._snap = IndexSnapshot(None, 0, df, emb, prb, meta)
        return idx

    def subset(self, rows: Sequence[int] | np.ndarray) -> "CatalogIndex":
        """An in-memory index of these rows of the current snapshot, in this order."""
        snap = self._snap
        return CatalogIndex.from_arrays(
            snap.frame.iloc[rows].reset_index(drop=True), {m: snap.embeddings(m)[rows] for m in snap.models},
            {m: snap.probs(m)[rows] for m in snap.models}, {m: snap.model_labels(m) for m in snap.models})

    def reload(self) -> "CatalogIndex":
        """Pick up what another process committed since this one was opened."""
        if self.dir is not None:
            self._snap = store.load_live(self.dir)
        return self

    # Reads go to the current snapshot (see IndexSnapshot for what each returns).
    def __len__(self) -> int:
        return len(self._snap)

    @property
    def models(self) -> list[str]:
        return self._snap.models

    @property
    def labels(self) -> list[str]:
        return self._snap.labels

    def model_labels(self, model: str) -> list[str]:
        return self._snap.model_labels(model)

    def fingerprints(self) -> dict[str, str]:
        return self._snap.fingerprints()

    def is_current(self, models: dict) -> bool:
        return self._snap.is_current(models)

    def table(self) -> pd.DataFrame:
        return self._snap.table()

    def predicted(self, model: str) -> np.ndarray:
        return self._snap.predicted(model)

    def column(self, name: str) -> np.ndarray:
        return self._snap.column(name)

    def embeddings(self, model: str) -> np.ndarray:
        return self._snap.embeddings(model)

    def probs(self, model: str) -> np.ndarray:
        return self._snap.probs(model)

    def rows_of(self, track_ids: Iterable[str]) -> np.ndarray:
        return self._snap.rows_of(track_ids)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._snap

    # ----------------------------------------------------------------- writing
    def update(self, tracks: Sequence[Track], models: dict, progress: Progress | None = None,
               checkpoint: int = 256, batch_size: int | None = None) -> dict:
        """Make the scanned part of the catalog equal ``tracks``: embed new or
        changed files, keep unchanged ones, drop tracks no longer listed.
        Files added with :meth:`add_files` stay (unless their file is gone).

        Returns ``{"added", "updated", "unchanged", "removed", "embedded",
        "failed": [one-line errors], "seconds"}``.
        """
        entries = [Entry.from_track(t) for t in tracks]
        return self._sync(entries, models, progress, prune=ORIGIN_SCAN, checkpoint=checkpoint,
                          batch_size=batch_size)

    def add_files(self, paths: Sequence[str | os.PathLike], models: dict, genre: str | None = None,
                  source: str = "library", progress: Progress | None = None,
                  titles: Sequence[str] | None = None, artists: Sequence[str] | None = None) -> dict:
        """Add user files (uploads) to the catalog. Track ids are
        ``<source>_<first 12 hex of the content hash>``, so adding the same
        bytes twice gives one track. Returns the :meth:`update` stats plus
        ``track_ids`` (``None`` where a file failed)."""
        entries, ids = [], []
        for i, p in enumerate(paths):
            try:
                digest = content_hash(p)
            except OSError as exc:
                entries.append(None)
                ids.append(f"{Path(p).name}: cannot read ({exc.strerror or exc})")
                continue
            tid = f"{source}_{digest[:12]}"
            ids.append(tid)
            tags = read_tags(p)          # never raises: broken tags leave the name
            entries.append(Entry(track_id=tid, path=str(Path(p).resolve()), genre=genre or "",
                                 source=source, origin=ORIGIN_ADDED,
                                 title=tags.title or (titles[i] if titles else Path(p).stem),
                                 artist=tags.artist or (artists[i] if artists else ""),
                                 album=tags.album, tag_genre=tags.genre, year=tags.year,
                                 track_no=tags.track_no, duration=tags.duration))
        failed = [ids[i] for i, e in enumerate(entries) if e is None]
        stats = self._sync([e for e in entries if e is not None], models, progress, prune=None)
        stats["failed"] = failed + stats["failed"]
        stats["track_ids"] = [e.track_id if e is not None and e.track_id in self else None
                              for e in entries]
        return stats

    def remove(self, track_ids: Iterable[str]) -> int:
        """Drop tracks by id; returns how many were removed."""
        with store.write_lock(self.dir):
            self.reload()
            snap = self._snap
            drop = set(map(str, track_ids))
            keep = ~snap.frame["track_id"].isin(drop).to_numpy()
            n = int((~keep).sum())
            if n:
                self._commit(snap.frame[keep], {m: snap.embeddings(m)[keep] for m in snap.models},
                             {m: snap.probs(m)[keep] for m in snap.models}, snap.model_meta)
            return n

    def _sync(self, entries: list[Entry], models: dict, progress: Progress | None,
              prune: str | None, checkpoint: int = 256, batch_size: int | None = None) -> dict:
        """The one write path of update() and add_files() (see core.catalog.sync)."""
        if not models:
            raise CatalogError("no models loaded — run `make artifacts` first")
        start = time.time()
        with store.write_lock(self.dir):
            self.reload()
            run = SyncRun(self._snap, models, prune)
            run.plan(entries)
            # In memory there is nothing to lose in a crash: one commit at the end.
            run.embed(progress, batch_size, checkpoint if self.dir is not None else 0, self._commit)
            first = self.dir is not None and store.current_name(self.dir) is None
            if run.changed() or first or self.dir is None:
                run.commit(self._commit)
        stats = run.stats
        stats["seconds"] = round(time.time() - start, 3)
        return stats

    def _commit(self, rows: pd.DataFrame, emb: dict, probs: dict, model_meta: dict) -> None:
        """Make this state the next version (on disk first, atomically, when
        the index has a folder), then swap it in as this index's snapshot
        (readers holding the previous snapshot keep a consistent view)."""
        snap = IndexSnapshot(self.dir, self.version, rows.reset_index(drop=True), emb, probs, model_meta)
        self._snap = store.commit(self.dir, snap) if self.dir is not None else snap


def _float(v) -> float:
    """A facet value of a row (``None`` / missing → NaN)."""
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")
