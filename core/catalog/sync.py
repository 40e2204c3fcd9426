"""Bringing an index state in line with a list of wanted files: the one write
path of :meth:`CatalogIndex.update <core.catalog.index.CatalogIndex.update>`
and :meth:`~core.catalog.index.CatalogIndex.add_files`.

Incremental: rows are keyed by track id and content hash
(:func:`core.audio.cache.content_hash`). A file whose path, size and mtime are
unchanged is not even re-hashed; a file whose bytes are already in the index
(moved, or a duplicate) reuses the stored vectors; only new or changed content
is decoded (via :func:`core.catalog.pipeline.embed_paths`). Tracks missing from a new
scan drop out. Embeddings from different model weights are never mixed: each
model's fingerprint (hash of its weights, labels and feature settings) is
stored, and a change re-embeds every track. Long runs commit every
``checkpoint`` embedded tracks, so a crash loses at most that much work.

A :class:`SyncRun` works in named steps on the old (immutable) snapshot:
:meth:`~SyncRun.plan` (which old rows stay as they are, which are reused with
new metadata, which files must be embedded), :meth:`~SyncRun.embed` (the new
rows, committing every ``checkpoint``) and :meth:`~SyncRun.changed` (whether
the final state differs from the old one). Each commit hands complete parts
to the caller, which writes them as a new snapshot.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from core.audio.cache import content_hash
from core.catalog.pipeline import embed_paths
from core.catalog.snapshot import ORIGIN_SCAN, IndexSnapshot, empty_rows, model_fingerprint
from core.datasets import Track
from core.types import Progress

# commit(rows, embeddings, probs, model_meta): make this state the index's next snapshot.
Commit = Callable[[pd.DataFrame, dict, dict, dict], None]
_META_KEYS = ("track_id", "path", "genre", "split", "artist", "title", "album", "source", "origin",
              "tag_genre", "year", "track_no", "duration")


@dataclass
class Entry:
    """A file the caller wants in the index, with its metadata."""

    track_id: str
    path: str
    genre: str = ""
    split: str = ""
    artist: str = ""
    title: str = ""
    album: str = ""
    source: str = ""
    origin: str = ORIGIN_SCAN
    tag_genre: str = ""           # the file's own tags (core.datasets.tags)
    year: str = ""
    track_no: str = ""
    duration: float = 0.0

    @classmethod
    def from_track(cls, t: Track) -> "Entry":
        return cls(track_id=str(t.track_id), path=str(t.path), genre=t.genre or "", split=t.split or "",
                   artist=t.artist or "", title=t.title or "", album=t.album or "",
                   source=t.source or "", origin=ORIGIN_SCAN, tag_genre=t.tag_genre or "",
                   year=t.year or "", track_no=t.track_no or "", duration=float(t.duration or 0.0))

    @classmethod
    def from_row(cls, row: pd.Series) -> "Entry":
        """The entry of a stored row (to re-embed it from its file)."""
        return cls(**{k: (float(row.get(k, 0.0) or 0.0) if k == "duration" else str(row.get(k, "") or ""))
                      for k in _META_KEYS})

    def meta(self) -> dict:
        return {k: getattr(self, k) for k in _META_KEYS}


@dataclass
class _Todo:
    """A file to decode and embed."""

    entry: Entry
    size: int
    mtime_ns: int
    existed: bool          # its track id was in the old state


def model_meta(models: dict) -> dict[str, dict]:
    """What the index stores about each model (labels, fingerprint, sizes, features)."""
    return {n: {"labels": list(m.labels), "fingerprint": model_fingerprint(m),
                "embedding_dim": int(m.embedding_dim), "feature_config": m.cfg.to_dict()}
            for n, m in models.items()}


class SyncRun:
    """One sync of ``old`` towards the wanted entries, for ``models``.
    ``prune``: the origin whose rows this sync owns (rows of it that are not
    wanted drop out); ``None`` keeps every row not mentioned."""

    def __init__(self, old: IndexSnapshot, models: dict, prune: str | None):
        self.old = old
        self.old_rows = old.frame
        self.models = models
        self.prune = prune
        self.model_meta = model_meta(models)
        have = old.model_meta
        self.compatible = set(self.model_meta) == set(have) and all(
            self.model_meta[n]["fingerprint"] == have[n].get("fingerprint") for n in self.model_meta) \
            and old.has_facets()   # an index from before the facets is re-embedded once
        self.stats = {"added": 0, "updated": 0, "unchanged": 0, "removed": 0, "embedded": 0, "failed": []}
        self.keep_rows: list[int] = []            # old rows reused, in the new order
        self.keep_meta: list[dict | None] = []    # their refreshed metadata (None: as stored)
        self.todo: list[_Todo] = []
        self.new_rows: list[dict] = []
        self.since_commit = 0
        # The state being built: rows, and per model the list of matrix blocks to stack.
        self._state: tuple[pd.DataFrame, dict[str, list], dict[str, list]] | None = None

    # ------------------------------------------------------------------ plan
    def plan(self, entries: list[Entry]) -> None:
        """Sort every wanted entry and every old row into kept, reused or to embed."""
        wanted: dict[str, Entry] = {}
        for e in entries:
            wanted.setdefault(e.track_id, e)        # first listing of an id wins
        self._carry_unmentioned(wanted)
        self._match_files(wanted)
        self._state = self._base()

    def _carry_unmentioned(self, wanted: dict[str, Entry]) -> None:
        """Rows not mentioned: dropped if this sync owns them (or their file is
        gone), re-embedded from their file when the models changed, else kept
        as they are (they go first, in their old order)."""
        old = self.old_rows
        for i, tid in enumerate(self.old.column("track_id")):
            if tid in wanted:
                continue
            if self.prune is not None and old.at[i, "origin"] == self.prune:
                self.stats["removed"] += 1
            elif not os.path.exists(old.at[i, "path"]):     # an upload whose file is gone
                self.stats["removed"] += 1
            elif not self.compatible:
                wanted[tid] = Entry.from_row(old.iloc[i])
            else:
                self.keep_rows.append(i)
                self.keep_meta.append(None)

    def _match_files(self, wanted: dict[str, Entry]) -> None:
        """Per wanted entry: unchanged file (same path, size, mtime) → keep its
        row; bytes already embedded (same digest) → reuse that row; else embed."""
        old = self.old_rows
        pos = {t: i for i, t in enumerate(self.old.column("track_id"))}
        digest_row = {d: i for i, d in enumerate(self.old.column("digest"))} if self.compatible else {}
        for e in wanted.values():
            existed = e.track_id in pos
            try:
                st = os.stat(e.path)
            except OSError:
                self.stats["failed"].append(f"{e.path}: file not found")
                self.stats["removed"] += existed
                continue
            i = pos.get(e.track_id)
            if self.compatible and i is not None and old.at[i, "path"] == e.path and \
                    int(old.at[i, "size"]) == st.st_size and int(old.at[i, "mtime_ns"]) == st.st_mtime_ns:
                self.keep_rows.append(i)
                self.keep_meta.append({**e.meta(), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
                self.stats["unchanged"] += 1
                continue
            try:
                digest = content_hash(e.path)
            except OSError as exc:
                self.stats["failed"].append(f"{e.path}: cannot read ({exc.strerror or exc})")
                self.stats["removed"] += existed
                continue
            j = digest_row.get(digest)
            if j is not None:                      # same bytes already embedded: reuse
                self.keep_rows.append(j)
                self.keep_meta.append({**e.meta(), "digest": digest, "size": st.st_size,
                                       "mtime_ns": st.st_mtime_ns})
                same = existed and old.at[pos[e.track_id], "digest"] == digest
                self.stats["unchanged" if same else ("updated" if existed else "added")] += 1
                continue
            self.todo.append(_Todo(e, st.st_size, st.st_mtime_ns, existed))

    # ------------------------------------------------------------------ state
    def _base(self) -> tuple[pd.DataFrame, dict[str, list], dict[str, list]]:
        """The reused rows with refreshed metadata and their vectors."""
        base = self.old_rows.iloc[self.keep_rows].reset_index(drop=True).copy() if self.keep_rows \
            else empty_rows()
        for r, m in enumerate(self.keep_meta):
            if m is not None:
                for k, v in m.items():
                    base.at[r, k] = v
        if self.keep_rows:
            k = np.array(self.keep_rows, dtype=int)
            emb = {n: [self.old.embeddings(n)[k]] for n in self.model_meta}
            prb = {n: [self.old.probs(n)[k]] for n in self.model_meta}
        else:
            emb = {n: [np.zeros((0, m["embedding_dim"]), np.float32)] for n, m in self.model_meta.items()}
            prb = {n: [np.zeros((0, len(m["labels"])), np.float32)] for n, m in self.model_meta.items()}
        return base, emb, prb

    def embed(self, progress: Progress | None, batch_size: int | None, checkpoint: int,
              commit: Commit) -> None:
        """Embed the planned files in one pipeline run; ``commit`` the state
        every ``checkpoint`` embedded tracks (0: never here)."""
        assert self._state is not None, "plan() first"
        if progress:
            progress(0, len(self.todo))
        by_path: dict[str, list[_Todo]] = {}
        for t in self.todo:
            by_path.setdefault(t.entry.path, []).append(t)
        _, emb, prb = self._state
        opts = {"batch_size": batch_size} if batch_size else {}   # else the pipeline's default
        for r in embed_paths([t.entry.path for t in self.todo], self.models, progress=progress, **opts):
            t = by_path[r.path].pop(0)
            if r.error is not None:
                self.stats["failed"].append(" ".join(str(r.error).split()))
                self.stats["removed"] += t.existed
                continue
            self.new_rows.append({**t.entry.meta(), "digest": r.digest, "size": t.size, "mtime_ns": t.mtime_ns,
                                  "indexed_at": time.time(), **r.facets})
            for n in self.model_meta:
                emb[n].append(np.asarray(r.embedding[n], np.float32)[None])
                prb[n].append(np.asarray(r.probs[n], np.float32)[None])
            self.stats["embedded"] += 1
            self.stats["updated" if t.existed else "added"] += 1
            self.since_commit += 1
            if checkpoint and self.since_commit >= checkpoint:
                self.commit(commit)

    def commit(self, commit: Commit) -> None:
        """Hand the state so far (reused rows, then the new ones) to ``commit``."""
        assert self._state is not None, "plan() first"
        base, emb, prb = self._state
        rows = pd.concat([base, pd.DataFrame(self.new_rows, columns=base.columns)],
                         ignore_index=True) if self.new_rows else base
        commit(rows, {n: np.concatenate(v) for n, v in emb.items()},
               {n: np.concatenate(v) for n, v in prb.items()}, self.model_meta)
        self.since_commit = 0

    def changed(self) -> bool:
        """Whether the state differs from the old snapshot (uncommitted rows,
        removals, additions, new models or refreshed metadata)."""
        s, old = self.stats, self.old_rows
        return bool(self.since_commit or s["removed"] or s["added"] or s["updated"] or not self.compatible
                    or any(m is not None and any(not _same(old.at[i, k], v) for k, v in m.items())
                           for i, m in zip(self.keep_rows, self.keep_meta)))


def _same(stored, value) -> bool:
    """Whether a stored cell equals a wanted value (numbers compared as
    numbers: an older index stores no duration, read as empty or 0)."""
    if isinstance(value, float):
        try:
            return float(stored or 0.0) == value
        except (TypeError, ValueError):
            return False
    return stored == value
