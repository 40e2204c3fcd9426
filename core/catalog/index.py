"""Catalog index: every track's embedding and genre probabilities from each
model, with its metadata, kept on disk so a catalog is decoded only once.

Store (one folder, ``INDEX_DIR``)::

    CURRENT              one line: the name of the live snapshot, e.g. "v000007"
    v000007/tracks.sqlite  table ``tracks`` (one row per track, in matrix order:
                           metadata, content digest, file size/mtime, top
                           predicted genre per model) and table ``meta``
                           (JSON: models, labels, model fingerprints)
    v000007/<model>.emb.npy    (N, D) float32 penultimate-layer embeddings
    v000007/<model>.probs.npy  (N, G) float32 genre probabilities

Why this store: the metadata is relational — a user can open ``tracks.sqlite``
in any SQLite client and ask "which Jazz tracks came from my uploads?" — while
embeddings are dense matrices that numpy (and faiss) read in one call
(``np.load``, mmap-able); storing them as SQLite BLOB rows would mean
re-assembling the matrix on every load, and Parquet would add pyarrow as a
dependency for no gain at this size.

Crash safety: a snapshot is written complete into a fresh temporary folder,
fsynced and renamed, and only then is ``CURRENT`` swapped with
``os.replace`` — the single atomic step. A crash at any moment leaves
``CURRENT`` naming the previous complete snapshot; half-written folders are
swept by the next writer. Long runs commit every ``checkpoint`` embedded
tracks, so a crash loses at most that much work. Writers serialise on an
``flock`` of ``INDEX_DIR/.lock`` (released by the kernel if a writer dies).

Incremental: rows are keyed by track id and content hash
(:func:`core.audio.cache.content_hash`). A file whose path, size and mtime are
unchanged is not even re-hashed; a file whose bytes are already in the index
(moved, or a duplicate) reuses the stored vectors; only new or changed content
is decoded (via :func:`core.catalog.pipeline.embed_paths`). Tracks missing from a new
scan drop out. Embeddings from different model weights are never mixed: each
model's fingerprint (hash of its weights, labels and feature settings) is
stored, and a change re-embeds every track.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from core.audio.cache import content_hash
from core.datasets import Track
from core.errors import GenreError

Progress = Callable[[int, int], None]

FORMAT = 1
CURRENT = "CURRENT"
DB_NAME = "tracks.sqlite"
# Columns every consumer of :meth:`CatalogIndex.table` can rely on (plus pred_<model>).
TABLE_COLUMNS = ["track_id", "path", "genre", "split", "artist", "title", "album", "source", "digest"]
# Bookkeeping columns kept in the store but not shown by ``table()``.
_EXTRA_COLUMNS = ["origin", "size", "mtime_ns", "indexed_at"]
_TEXT_COLUMNS = TABLE_COLUMNS + ["origin"]
ORIGIN_SCAN = "scan"     # rows owned by update(): a data-folder scan
ORIGIN_ADDED = "added"   # rows from add_files(): kept until removed or their file vanishes


class CatalogError(GenreError, ValueError):
    """An unusable index or request; ``str(err)`` is one readable line."""


def model_fingerprint(model) -> str:
    """The model's :meth:`~core.models.GenreModel.fingerprint`: vectors from
    different fingerprints must never be compared."""
    return model.fingerprint()


@dataclass
class _Entry:
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

    @classmethod
    def from_track(cls, t: Track) -> "_Entry":
        return cls(track_id=str(t.track_id), path=str(t.path), genre=t.genre or "", split=t.split or "",
                   artist=t.artist or "", title=t.title or "", album=t.album or "",
                   source=t.source or "", origin=ORIGIN_SCAN)

    def meta(self) -> dict:
        return {k: getattr(self, k) for k in ("track_id", "path", "genre", "split", "artist",
                                               "title", "album", "source", "origin")}


def _empty_rows() -> pd.DataFrame:
    cols = {c: pd.Series(dtype=object) for c in TABLE_COLUMNS + ["origin"]}
    cols.update(size=pd.Series(dtype="int64"), mtime_ns=pd.Series(dtype="int64"),
                indexed_at=pd.Series(dtype="float64"))
    return pd.DataFrame(cols)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(array, dtype=np.float32))
        f.flush()
        os.fsync(f.fileno())


class IndexSnapshot:
    """One committed state of the index: tracks, per-model vectors and
    metadata. Never changed after construction (writers build a new one and
    swap it in), so any number of threads may read it while the index is
    being updated, and every answer computed from one snapshot is consistent.

    Derived arrays (top genres, row positions, what :meth:`cached` memoises)
    are computed on first use; that memo is the only thing that changes, and
    it only ever adds values computed from the snapshot's own data.
    """

    def __init__(self, index_dir: Path | None, version: int, rows: pd.DataFrame,
                 emb: dict[str, np.ndarray], probs: dict[str, np.ndarray], model_meta: dict[str, dict]):
        self.dir = index_dir
        self.version = version
        self._rows = rows
        self._emb = emb
        self._probs = probs
        self._model_meta = model_meta            # name -> labels, fingerprint, embedding_dim
        self._derived: dict = {}
        self._lock = threading.Lock()

    @classmethod
    def empty(cls, index_dir: Path | None = None) -> "IndexSnapshot":
        return cls(index_dir, 0, _empty_rows(), {}, {}, {})

    def with_version(self, version: int) -> "IndexSnapshot":
        """The same data under another version number (a new object)."""
        return IndexSnapshot(self.dir, version, self._rows, self._emb, self._probs, self._model_meta)

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

    def table(self) -> pd.DataFrame:
        """One row per track, in matrix order: TABLE_COLUMNS plus ``pred_<model>`` (a copy)."""
        df = self._rows[TABLE_COLUMNS].copy()
        for name in self.models:
            df[f"pred_{name}"] = self.predicted(name)
        return df

    def predicted(self, model: str) -> np.ndarray:
        """Top predicted genre of every track (object array)."""
        def make():
            labels = np.array(self.model_labels(model), dtype=object)
            p = self.probs(model)
            return labels[p.argmax(1)] if len(p) else np.zeros(0, dtype=object)
        return self.cached(("pred", model), make)

    def column(self, name: str) -> np.ndarray:
        """One metadata column as an array (no DataFrame copy; for hot loops)."""
        return self.cached(("col", name), lambda: self._rows[name].to_numpy())

    def embeddings(self, model: str) -> np.ndarray:
        """``(N, D)`` float32 embeddings aligned with :meth:`table`."""
        self._meta_of(model)
        return self._emb[model]

    def probs(self, model: str) -> np.ndarray:
        """``(N, G)`` float32 genre probabilities aligned with :meth:`table`."""
        self._meta_of(model)
        return self._probs[model]

    def cached(self, key, make: Callable[[], object]):
        """Memoise a value derived from this snapshot (e.g. normalised embeddings).
        Thread-safe: concurrent first calls may both compute, one result is kept."""
        try:
            return self._derived[key]
        except KeyError:
            pass
        value = make()                      # outside the lock: ``make`` may call cached()
        with self._lock:
            return self._derived.setdefault(key, value)

    def _positions(self) -> dict:
        return self.cached("pos", lambda: {t: i for i, t in enumerate(self.column("track_id"))})

    def rows_of(self, track_ids: Iterable[str]) -> np.ndarray:
        """Matrix rows of ``track_ids``; an unknown id is a :class:`CatalogError`."""
        pos = self._positions()
        out = []
        for t in track_ids:
            try:
                out.append(pos[str(t)])
            except KeyError:
                raise CatalogError(f"track {t!r} is not in the catalog") from None
        return np.array(out, dtype=int)

    def __contains__(self, track_id: object) -> bool:
        return str(track_id) in self._positions()

    def snapshot(self) -> "IndexSnapshot":
        return self


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

    @property
    def _rows(self) -> pd.DataFrame:
        return self._snap._rows

    @property
    def _emb(self) -> dict[str, np.ndarray]:
        return self._snap._emb

    @property
    def _probs(self) -> dict[str, np.ndarray]:
        return self._snap._probs

    @property
    def _model_meta(self) -> dict[str, dict]:
        return self._snap._model_meta

    # ----------------------------------------------------------------- reading
    @classmethod
    def open(cls, index_dir: str | Path) -> "CatalogIndex":
        """The index stored in ``index_dir`` (empty when the folder has none)."""
        idx = cls(index_dir)
        idx._load()
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
        data = {c: [str(r.get(c, "") or "") for r in records] for c in _TEXT_COLUMNS}
        if records and not any(r.get("digest") for r in records):
            data["digest"] = [f"row{i}" for i in range(len(records))]
        data["origin"] = [r.get("origin") or ORIGIN_SCAN for r in records]
        df = pd.DataFrame({**{c: pd.Series(data[c], dtype=object) for c in _TEXT_COLUMNS},
                           "size": np.zeros(len(records), np.int64),
                           "mtime_ns": np.zeros(len(records), np.int64),
                           "indexed_at": np.zeros(len(records))})
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

    def _current_name(self) -> str | None:
        try:
            name = (self.dir / CURRENT).read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def _load(self) -> None:
        """Read the live snapshot (retrying if a writer swaps it mid-read)."""
        assert self.dir is not None
        for attempt in range(5):
            name = self._current_name()
            if name is None:
                self._snap = IndexSnapshot.empty(self.dir)
                return
            try:
                self._snap = self._load_snapshot(self.dir / name, int(name.lstrip("v")))
                return
            except FileNotFoundError:
                time.sleep(0.05 * (attempt + 1))   # the snapshot was swept under us: re-read CURRENT
        raise CatalogError(f"{self.dir}: index snapshot {name} is missing")

    def _load_snapshot(self, snap: Path, version: int) -> IndexSnapshot:
        db = snap / DB_NAME
        if not db.is_file():
            raise FileNotFoundError(db)
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            rows = pd.read_sql_query("SELECT * FROM tracks ORDER BY row", con)
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"{db}: unreadable index database ({exc})") from None
        finally:
            con.close()
        if int(json.loads(meta.get("format", "0"))) > FORMAT:
            raise CatalogError(f"{db}: index format is newer than this code")
        models = json.loads(meta.get("models", "{}"))
        emb, probs = {}, {}
        for name in models:
            emb[name] = np.load(snap / f"{name}.emb.npy", allow_pickle=False)
            probs[name] = np.load(snap / f"{name}.probs.npy", allow_pickle=False)
            if len(emb[name]) != len(rows) or len(probs[name]) != len(rows):
                raise CatalogError(f"{snap}: {name} matrices do not match {len(rows)} tracks (damaged)")
        df = _empty_rows()
        for c in df.columns:
            if c in rows:
                df[c] = rows[c].fillna("") if c in _TEXT_COLUMNS else rows[c]
        df = df.reset_index(drop=True)
        for c in _TEXT_COLUMNS:
            df[c] = df[c].astype(object)
        return IndexSnapshot(self.dir, version, df, emb, probs, models)

    def reload(self) -> "CatalogIndex":
        """Pick up what another process committed since this one was opened."""
        if self.dir is not None:
            self._load()
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

    def cached(self, key, make: Callable[[], object]):
        return self._snap.cached(key, make)

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
        entries = [_Entry.from_track(t) for t in tracks]
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
            entries.append(_Entry(track_id=tid, path=str(Path(p).resolve()), genre=genre or "",
                                  source=source, origin=ORIGIN_ADDED,
                                  title=(titles[i] if titles else Path(p).stem),
                                  artist=(artists[i] if artists else "")))
        failed = [ids[i] for i, e in enumerate(entries) if e is None]
        stats = self._sync([e for e in entries if e is not None], models, progress, prune=None)
        stats["failed"] = failed + stats["failed"]
        stats["track_ids"] = [e.track_id if e is not None and e.track_id in self else None
                              for e in entries]
        return stats

    def remove(self, track_ids: Iterable[str]) -> int:
        """Drop tracks by id; returns how many were removed."""
        with self._write_lock():
            self._load_if_persistent()
            drop = set(map(str, track_ids))
            keep = ~self._rows["track_id"].isin(drop).to_numpy()
            n = int((~keep).sum())
            if n:
                self._commit(self._replace(self._rows[keep], {m: e[keep] for m, e in self._emb.items()},
                                           {m: p[keep] for m, p in self._probs.items()}, self._model_meta))
            return n

    def _load_if_persistent(self) -> None:
        if self.dir is not None:
            self._load()

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        if self.dir is None:
            yield
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a+") as fh:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - Windows: single writer assumed
                yield
                return
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _sync(self, entries: list[_Entry], models: dict, progress: Progress | None,
              prune: str | None, checkpoint: int = 256, batch_size: int | None = None) -> dict:
        """The one write path of update() and add_files()."""
        from core.catalog.pipeline import embed_paths

        if not models:
            raise CatalogError("no models loaded — run `make artifacts` first")
        start = time.time()
        stats = {"added": 0, "updated": 0, "unchanged": 0, "removed": 0, "embedded": 0, "failed": []}
        with self._write_lock():
            self._load_if_persistent()
            model_meta = {n: {"labels": list(m.labels), "fingerprint": model_fingerprint(m),
                              "embedding_dim": int(m.embedding_dim),
                              "feature_config": m.cfg.to_dict()} for n, m in models.items()}
            compatible = (set(model_meta) == set(self._model_meta) and all(
                model_meta[n]["fingerprint"] == self._model_meta[n].get("fingerprint")
                for n in model_meta))
            old = self._rows
            old_ids = old["track_id"].tolist()
            pos = {t: i for i, t in enumerate(old_ids)}
            wanted: dict[str, _Entry] = {}
            for e in entries:
                wanted.setdefault(e.track_id, e)        # first listing of an id wins
            # Rows not mentioned: dropped if this sync owns them, else kept as they are
            # (re-embedded from their file when the models changed).
            carried = []
            for i, tid in enumerate(old_ids):
                if tid in wanted:
                    continue
                if prune is not None and old.at[i, "origin"] == prune:
                    stats["removed"] += 1
                elif not os.path.exists(old.at[i, "path"]):     # an upload whose file is gone
                    stats["removed"] += 1
                elif not compatible:
                    r = old.iloc[i]
                    wanted[tid] = _Entry(**{k: str(r[k]) for k in ("track_id", "path", "genre", "split",
                                                                    "artist", "title", "album",
                                                                    "source", "origin")})
                else:
                    carried.append(i)
            digest_row = {d: i for i, d in enumerate(old["digest"].tolist())} if compatible else {}

            keep_rows: list[int] = list(carried)        # old rows reused as they are
            keep_meta: list[dict] = [None] * len(carried)  # type: ignore[list-item]
            todo: list[tuple[_Entry, int, int, bool]] = []  # entry, size, mtime_ns, existed
            for e in wanted.values():
                existed = e.track_id in pos
                try:
                    st = os.stat(e.path)
                except OSError:
                    stats["failed"].append(f"{e.path}: file not found")
                    stats["removed"] += existed
                    continue
                i = pos.get(e.track_id)
                if compatible and i is not None and old.at[i, "path"] == e.path and \
                        int(old.at[i, "size"]) == st.st_size and int(old.at[i, "mtime_ns"]) == st.st_mtime_ns:
                    keep_rows.append(i)
                    keep_meta.append({**e.meta(), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
                    stats["unchanged"] += 1
                    continue
                try:
                    digest = content_hash(e.path)
                except OSError as exc:
                    stats["failed"].append(f"{e.path}: cannot read ({exc.strerror or exc})")
                    stats["removed"] += existed
                    continue
                j = digest_row.get(digest)
                if j is not None:                      # same bytes already embedded: reuse
                    keep_rows.append(j)
                    keep_meta.append({**e.meta(), "digest": digest, "size": st.st_size,
                                      "mtime_ns": st.st_mtime_ns})
                    same = existed and old.at[pos[e.track_id], "digest"] == digest
                    stats["unchanged" if same else ("updated" if existed else "added")] += 1
                    continue
                todo.append((e, st.st_size, st.st_mtime_ns, existed))

            # Base of the new state: reused rows with refreshed metadata.
            base = old.iloc[keep_rows].reset_index(drop=True).copy() if keep_rows else _empty_rows()
            for r, m in enumerate(keep_meta):
                if m is not None:
                    for k, v in m.items():
                        base.at[r, k] = v
            if keep_rows and compatible:
                k = np.array(keep_rows, dtype=int)
                emb = {n: [self._emb[n][k]] for n in model_meta}
                prb = {n: [self._probs[n][k]] for n in model_meta}
            else:
                emb = {n: [np.zeros((0, model_meta[n]["embedding_dim"]), np.float32)] for n in model_meta}
                prb = {n: [np.zeros((0, len(model_meta[n]["labels"])), np.float32)] for n in model_meta}
                if keep_rows:  # cannot happen: reuse requires compatible models
                    raise AssertionError("reused rows without compatible models")
            new_rows: list[dict] = []

            def commit() -> None:
                rows = pd.concat([base, pd.DataFrame(new_rows, columns=base.columns)],
                                 ignore_index=True) if new_rows else base
                self._commit(self._replace(rows, {n: np.concatenate(v) for n, v in emb.items()},
                                           {n: np.concatenate(v) for n, v in prb.items()}, model_meta))

            if progress:
                progress(0, len(todo))
            since = 0
            by_path = {}
            for e, size, mtime, existed in todo:
                by_path.setdefault(e.path, []).append((e, size, mtime, existed))
            opts = {"batch_size": batch_size} if batch_size else {}   # else the pipeline's default
            for r in embed_paths([t[0].path for t in todo], models, progress=progress, **opts):
                e, size, mtime, existed = by_path[r.path].pop(0)
                if r.error is not None:
                    stats["failed"].append(" ".join(str(r.error).split()))
                    stats["removed"] += existed
                    continue
                new_rows.append({**e.meta(), "digest": r.digest, "size": size, "mtime_ns": mtime,
                                 "indexed_at": time.time()})
                for n in model_meta:
                    emb[n].append(np.asarray(r.embedding[n], np.float32)[None])
                    prb[n].append(np.asarray(r.probs[n], np.float32)[None])
                stats["embedded"] += 1
                stats["updated" if existed else "added"] += 1
                since += 1
                if self.dir is not None and checkpoint and since >= checkpoint:
                    commit()
                    since = 0
            changed = (since or stats["removed"] or stats["added"] or stats["updated"]
                       or not compatible or self._current_name_safe() is None
                       or any(m is not None and any(old.at[i, k] != v for k, v in m.items())
                              for i, m in zip(keep_rows, keep_meta)))
            if changed or self.dir is None:
                commit()
        stats["seconds"] = round(time.time() - start, 3)
        return stats

    def _current_name_safe(self) -> str | None:
        return self._current_name() if self.dir is not None else None

    def _replace(self, rows: pd.DataFrame, emb: dict, probs: dict, model_meta: dict) -> IndexSnapshot:
        """A new snapshot of this state (not live until :meth:`_commit`)."""
        return IndexSnapshot(self.dir, self.version, rows.reset_index(drop=True), emb, probs, model_meta)

    def _commit(self, snap: IndexSnapshot) -> None:
        """Write ``snap`` to disk as the next version, make it live atomically,
        then swap it in as this index's state (readers holding the previous
        snapshot keep a consistent view)."""
        if self.dir is None:
            self._snap = snap
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        current = self._current_name()
        version = max(self.version, int(current.lstrip("v")) if current else 0) + 1
        name = f"v{version:06d}"
        tmp = self.dir / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            self._write_snapshot(tmp, snap)
            final = self.dir / name
            shutil.rmtree(final, ignore_errors=True)   # an unreferenced leftover of a crash
            os.rename(tmp, final)
            _fsync_dir(self.dir)
            ptr = self.dir / f".{CURRENT}.{os.getpid()}.tmp"
            with open(ptr, "w") as f:
                f.write(name + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(ptr, self.dir / CURRENT)        # the commit point
            _fsync_dir(self.dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._snap = snap.with_version(version)
        self._sweep(keep={name, current})

    def _write_snapshot(self, folder: Path, state: IndexSnapshot) -> None:
        snap = folder
        rows = state._rows.copy()
        for n in state.models:
            rows[f"pred_{n}"] = state.predicted(n)
        con = sqlite3.connect(snap / DB_NAME)
        try:
            pred_cols = "".join(f", pred_{n} TEXT" for n in state.models)
            con.execute(
                "CREATE TABLE tracks (row INTEGER PRIMARY KEY, track_id TEXT UNIQUE NOT NULL, "
                "path TEXT, genre TEXT, split TEXT, artist TEXT, title TEXT, album TEXT, source TEXT, "
                "digest TEXT, origin TEXT, size INTEGER, mtime_ns INTEGER, indexed_at REAL"
                f"{pred_cols})")
            cols = TABLE_COLUMNS + _EXTRA_COLUMNS + [f"pred_{n}" for n in state.models]
            data = [(i, *(_sql(v) for v in vals)) for i, vals in
                    enumerate(rows[cols].itertuples(index=False, name=None))]
            con.executemany(f"INSERT INTO tracks (row, {', '.join(cols)}) VALUES "
                            f"({', '.join('?' * (len(cols) + 1))})", data)
            con.execute("CREATE INDEX tracks_digest ON tracks(digest)")
            con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            meta = {"format": FORMAT, "models": state._model_meta, "n_tracks": len(rows),
                    "written_at": time.time()}
            con.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
            con.commit()
        finally:
            con.close()
        with open(snap / DB_NAME, "rb+") as f:
            os.fsync(f.fileno())
        for n in state.models:
            _write_npy(snap / f"{n}.emb.npy", state._emb[n])
            _write_npy(snap / f"{n}.probs.npy", state._probs[n])
        _fsync_dir(snap)

    def _sweep(self, keep: set) -> None:
        """Delete snapshots other than the live and previous one (a reader that
        read CURRENT just before the swap can still open the previous) and
        temporary folders of dead writers (we hold the lock)."""
        for p in self.dir.iterdir():
            if p.is_dir() and (p.name.startswith(".tmp-") or
                               (p.name.startswith("v") and p.name[1:].isdigit() and p.name not in keep)):
                shutil.rmtree(p, ignore_errors=True)
            elif p.name.startswith(f".{CURRENT}.") and p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)


def _sql(v):
    """numpy scalars → Python values sqlite3 accepts."""
    if isinstance(v, np.generic):
        return v.item()
    return v
