"""The index on disk: snapshot folders, the ``CURRENT`` pointer, crash-safe
commits and the writers' lock.

Store (one folder, ``INDEX_DIR``)::

    CURRENT              one line: the name of the live snapshot, e.g. "v000007"
    v000007/tracks.sqlite  table ``tracks`` (one row per track, in matrix order:
                           metadata, content digest, file size/mtime, top
                           predicted genre per model, the core.facets columns
                           — tempo, energy, mood scores, tags — as REAL,
                           NULL where not computed) and table ``meta``
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
swept by the next writer. Writers serialise on an ``flock`` of
``INDEX_DIR/.lock`` (released by the kernel if a writer dies).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from core.catalog.snapshot import (
    EXTRA_COLUMNS,
    FACET_COLUMNS,
    NUMBER_COLUMNS,
    TABLE_COLUMNS,
    TAG_COLUMNS,
    TEXT_COLUMNS,
    CatalogError,
    IndexSnapshot,
    empty_rows,
)
from core.files import fsync_dir

FORMAT = 1
CURRENT = "CURRENT"
DB_NAME = "tracks.sqlite"


def current_name(index_dir: Path) -> str | None:
    """Name of the live snapshot folder, or ``None`` when nothing was committed."""
    try:
        name = (index_dir / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise CatalogError(f"{index_dir} is not a folder") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise CatalogError(f"{index_dir}: its {CURRENT} file is damaged ({type(exc).__name__})") from None
    return name or None


def indexed_tracks(index_dir: Path) -> int:
    """Tracks in the live snapshot of ``index_dir`` (0 before the first commit)."""
    name = current_name(index_dir)
    if name is None:
        return 0
    try:
        con = sqlite3.connect(f"file:{index_dir / name / DB_NAME}?mode=ro", uri=True)
        try:
            return int(con.execute("SELECT COUNT(*) FROM tracks").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def live_version(index_dir: Path) -> int:
    """Version number of the live snapshot (0 when there is none or it is unreadable)."""
    try:
        name = (index_dir / CURRENT).read_text().strip()
        return int(name.lstrip("v")) if name else 0
    except (OSError, ValueError):
        return 0


def load_live(index_dir: Path) -> IndexSnapshot:
    """Read the live snapshot (retrying if a writer swaps it mid-read); an
    empty snapshot when the folder holds none."""
    name = None
    for attempt in range(5):
        name = current_name(index_dir)
        if name is None:
            return IndexSnapshot.empty(index_dir)
        try:
            return read_snapshot(index_dir, index_dir / name, int(name.lstrip("v")))
        except FileNotFoundError:
            time.sleep(0.05 * (attempt + 1))   # the snapshot was swept under us: re-read CURRENT
    raise CatalogError(f"{index_dir}: index snapshot {name} is missing")


def read_snapshot(index_dir: Path, snap: Path, version: int) -> IndexSnapshot:
    """One snapshot folder as an :class:`IndexSnapshot` (``FileNotFoundError``
    when it has gone: the caller re-reads ``CURRENT``)."""
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
    df = empty_rows()
    for c in df.columns:
        if c in rows:
            df[c] = rows[c].fillna("") if c in TEXT_COLUMNS else rows[c]
    df = df.reset_index(drop=True)
    for c in TEXT_COLUMNS:        # an older index has no tag columns: empty text
        df[c] = df[c].fillna("").astype(object) if len(df) else df[c].astype(object)
    for c in NUMBER_COLUMNS:
        df[c] = pd.to_numeric(df[c], errors="coerce").fillna(0.0).astype("float64")
    return IndexSnapshot(index_dir, version, df, emb, probs, models)


@contextlib.contextmanager
def write_lock(index_dir: Path | None) -> Iterator[None]:
    """Hold the writers' ``flock`` of ``index_dir`` (nothing for an in-memory index)."""
    if index_dir is None:
        yield
        return
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "a+") as fh:
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


def commit(index_dir: Path, snap: IndexSnapshot) -> IndexSnapshot:
    """Write ``snap`` as the next version and make it live atomically; the
    committed snapshot (a new object with that version). Hold
    :func:`write_lock` around the read-modify-commit."""
    index_dir.mkdir(parents=True, exist_ok=True)
    current = current_name(index_dir)
    version = max(snap.version, int(current.lstrip("v")) if current else 0) + 1
    name = f"v{version:06d}"
    tmp = index_dir / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write_snapshot(tmp, snap)
        final = index_dir / name
        shutil.rmtree(final, ignore_errors=True)   # an unreferenced leftover of a crash
        os.rename(tmp, final)
        fsync_dir(index_dir)
        ptr = index_dir / f".{CURRENT}.{os.getpid()}.tmp"
        with open(ptr, "w") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(ptr, index_dir / CURRENT)        # the commit point
        fsync_dir(index_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sweep(index_dir, keep={name, current})
    return snap.with_version(version)


def write_snapshot(folder: Path, state: IndexSnapshot) -> None:
    """Write every file of ``state`` into ``folder`` and fsync them."""
    rows = state.frame.copy()
    for n in state.models:
        rows[f"pred_{n}"] = state.predicted(n)
    con = sqlite3.connect(folder / DB_NAME)
    try:
        pred_cols = "".join(f", pred_{n} TEXT" for n in state.models) + \
            "".join(f", {c} REAL" for c in FACET_COLUMNS)
        tag_cols = "".join(f", {c} {'REAL' if c in NUMBER_COLUMNS else 'TEXT'}"
                           for c in TAG_COLUMNS + NUMBER_COLUMNS)
        con.execute(
            "CREATE TABLE tracks (row INTEGER PRIMARY KEY, track_id TEXT UNIQUE NOT NULL, "
            "path TEXT, genre TEXT, split TEXT, artist TEXT, title TEXT, album TEXT, source TEXT, "
            "digest TEXT, origin TEXT, size INTEGER, mtime_ns INTEGER, indexed_at REAL"
            f"{tag_cols}{pred_cols})")
        cols = list(dict.fromkeys(["track_id", "path", "genre", "split", "artist", "title", "album",
                                   "source", "digest"] + EXTRA_COLUMNS + TAG_COLUMNS + NUMBER_COLUMNS
                                  + TABLE_COLUMNS + [f"pred_{n}" for n in state.models] + FACET_COLUMNS))
        data = [(i, *(_sql(v) for v in vals)) for i, vals in
                enumerate(rows[cols].itertuples(index=False, name=None))]
        con.executemany(f"INSERT INTO tracks (row, {', '.join(cols)}) VALUES "
                        f"({', '.join('?' * (len(cols) + 1))})", data)
        con.execute("CREATE INDEX tracks_digest ON tracks(digest)")
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        meta = {"format": FORMAT, "models": state.model_meta, "n_tracks": len(rows),
                "written_at": time.time()}
        con.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        con.commit()
    finally:
        con.close()
    with open(folder / DB_NAME, "rb+") as f:
        os.fsync(f.fileno())
    for n in state.models:
        _write_npy(folder / f"{n}.emb.npy", state.embeddings(n))
        _write_npy(folder / f"{n}.probs.npy", state.probs(n))
    fsync_dir(folder)


def sweep(index_dir: Path, keep: set) -> None:
    """Delete snapshots other than the live and previous one (a reader that
    read CURRENT just before the swap can still open the previous) and
    temporary folders of dead writers (the caller holds the lock)."""
    for p in index_dir.iterdir():
        if p.is_dir() and (p.name.startswith(".tmp-") or
                           (p.name.startswith("v") and p.name[1:].isdigit() and p.name not in keep)):
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(f".{CURRENT}.") and p.name.endswith(".tmp"):
            p.unlink(missing_ok=True)


def _write_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(array, dtype=np.float32))
        f.flush()
        os.fsync(f.fileno())


def _sql(v):
    """numpy scalars → Python values sqlite3 accepts (NaN → NULL)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    return v
