"""Background indexing for the app: one writer thread per index folder, and
immutable snapshots for every reader.

The app shares one :class:`BackgroundIndexer` between all browser sessions.
It owns the only writing :class:`~core.catalog.index.CatalogIndex` of its folder in
this process. A run (:meth:`BackgroundIndexer.start`) loads the models if
needed and brings the index in line with the catalog in a daemon thread,
committing every ``checkpoint`` tracks; each commit swaps in a new
:class:`~core.catalog.index.IndexSnapshot`, so pages see the index grow while it is
built. Readers call :meth:`snapshot` once per page run and use that object
throughout: it never changes, so a recommendation computed from it is never
torn by a concurrent write. No Streamlit here.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from core.catalog import store
from core.catalog.index import CatalogIndex, IndexSnapshot
from core.catalog.sources import Catalog, sync_index
from core.files import write_problem
from core.procs import worker_niceness
from core.serve import freeze_long_lived

ModelsSource = Callable[[], dict] | dict


class IndexingCancelled(Exception):
    """Raised inside a run when :meth:`BackgroundIndexer.stop` was called."""


@dataclass(frozen=True)
class IndexStatus:
    """Where the background run stands (a new object on every change)."""

    state: str = "idle"          # idle | loading models | indexing | done | failed | cancelled
    done: int = 0
    total: int = 0
    message: str = ""
    started: float | None = None
    finished: float | None = None
    stats: dict = field(default_factory=dict)
    pass_started: float | None = None   # when the current pass (``total`` files) began

    def rate(self, now: float | None = None) -> tuple[float, float] | None:
        """``(tracks per second, seconds left)`` of the current pass, once measurable."""
        if not (self.pass_started and self.done and self.total):
            return None
        elapsed = (now or time.time()) - self.pass_started
        if elapsed <= 0:
            return None
        per_s = self.done / elapsed
        return per_s, max(self.total - self.done, 0) / per_s

    @property
    def running(self) -> bool:
        return self.state in ("loading models", "indexing")

    def line(self) -> str:
        """One line for the sidebar."""
        if self.state == "loading models":
            return "Index: loading the models…"
        if self.state == "indexing" and not self.total:
            # Before the pass knows its files (comparing the folders with the index), not "0 / 0".
            return "Index: checking the music folders for changes…"
        if self.state == "indexing":
            line = f"Indexing in the background: {self.done:,} / {self.total:,} tracks"
            r = self.rate()
            if r is not None:
                left = r[1]
                left_text = f"{left:.0f} s" if left < 90 else f"{left / 60:.0f} min" if left < 5400 \
                    else f"{left / 3600:.1f} h"
                line += f" · {r[0]:.1f} tracks/s · about {left_text} left"
            return line
        if self.state == "failed":
            return f"Indexing failed: {self.message}"
        if self.state == "cancelled":
            return "Indexing was stopped."
        return self.message


class BackgroundIndexer:
    """The writer of one index folder, run in a background thread."""

    def __init__(self, index_dir: str | Path, checkpoint: int = 32, worker_nice: int = 10):
        self.dir = Path(index_dir)
        self.checkpoint = checkpoint
        # The run's worker processes are this much nicer than the server: while
        # users click, the pages get the CPU and the indexing what is left.
        self.worker_nice = worker_nice
        self._writer = CatalogIndex.open(self.dir)
        self._latest: IndexSnapshot = self._writer.snapshot()
        self._status = IndexStatus()
        self._lock = threading.Lock()          # guards _latest/_status/_thread swaps
        self._write = threading.Lock()         # one write at a time (background run or a page)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.attempted: set = set()            # catalog identities already started (no retry loops)
        # A run of an earlier server that never finished (killed mid-run): the
        # tracks its last commit saved, shown while the next run resumes.
        self.interrupted_at: int | None = len(self._latest) if _interrupted(self.dir) else None

    # ----------------------------------------------------------------- reading
    def snapshot(self) -> IndexSnapshot:
        """The newest committed snapshot (also one that another process, e.g.
        ``python -m core index``, committed since)."""
        with self._lock:
            snap = self._latest
        if not self._write.locked() and store.live_version(self.dir) > snap.version:
            fresh = CatalogIndex.open(self.dir).snapshot()
            with self._lock:
                if fresh.version > self._latest.version:
                    self._latest = fresh
                snap = self._latest
        return snap

    def status(self) -> IndexStatus:
        with self._lock:
            return self._status

    def _set(self, **kw) -> None:
        with self._lock:
            self._status = replace(self._status, **kw)
            self._latest = self._writer.snapshot() if self._writer.version >= self._latest.version \
                else self._latest

    # ----------------------------------------------------------------- writing
    def start(self, catalog: Catalog, models: ModelsSource, key: object = None) -> bool:
        """Index ``catalog`` in the background; ``models`` is the model dict or
        a function returning it (called in the thread, so loading does not
        block the caller). False if a run is already going."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            if key is not None:
                self.attempted.add(key)
            self._stop.clear()
            self._status = IndexStatus(state="loading models", started=time.time())
            self._thread = threading.Thread(target=self._run, args=(catalog, models), daemon=True,
                                            name=f"index-{self.dir.name}")
            self._thread.start()
        return True

    def _run(self, catalog: Catalog, models: ModelsSource) -> None:
        try:
            mods = models() if callable(models) else models
            if not mods:
                raise RuntimeError("no models loaded")
            self._set(state="indexing")

            def progress(done: int, total: int) -> None:
                if self._stop.is_set():
                    raise IndexingCancelled
                status = self.status()
                if done == 0 or total != status.total or status.pass_started is None:
                    self._set(done=done, total=total, pass_started=time.time())
                else:
                    self._set(done=done, total=total)

            with self._write, _running_marker(self.dir), worker_niceness(self.worker_nice):
                stats = sync_index(catalog, self._writer, mods, progress=progress,
                                   checkpoint=self.checkpoint)
            n = len(self._writer)
            self.interrupted_at = None
            self._set(state="done", finished=time.time(), stats=stats,
                      message=f"Index ready: {n:,} tracks." + (
                          f" {len(stats.get('failed', []))} file(s) could not be read."
                          if stats.get("failed") else ""))
        except IndexingCancelled:
            self._set(state="cancelled", finished=time.time())
        except Exception as exc:  # noqa: BLE001 — shown as one line; the snapshot stays usable
            self._set(state="failed", finished=time.time(), message=self.failure_line(exc))

    def failure_line(self, exc: BaseException) -> str:
        """What a failed write means for the user, in one line: a full or
        read-only disk is named as such, with the snapshot that stays in use."""
        problem = write_problem(exc, self.dir)
        if problem is None:
            return " ".join(str(exc).split()) or type(exc).__name__
        n = len(self.snapshot())
        return (f"{problem}. The index keeps its last complete snapshot ({n:,} tracks), which stays "
                "usable; free some space, then restart the app to go on indexing.")

    def run_now(self, fn: Callable[[CatalogIndex], dict]) -> dict:
        """Run one write (``fn(writer_index)``) in the caller's thread, after
        any background run; the result is swapped in as the new snapshot."""
        with self._write:
            out = fn(self._writer)
        self._set()
        return out

    def running(self) -> bool:
        return self.status().running

    def wait(self, timeout: float | None = None) -> IndexStatus:
        """Block until the current run ends (or ``timeout``); its final status."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return self.status()

    def stop(self, timeout: float | None = 30) -> IndexStatus:
        """Ask the run to stop after the current batch (what was committed stays)."""
        self._stop.set()
        return self.wait(timeout)


RUNNING = ".indexing"     # in the index folder while a background run writes (its process id)


def _interrupted(index_dir: Path) -> bool:
    """Whether a background run of a process that is gone left its marker."""
    import os

    import psutil

    try:
        pid = int((index_dir / RUNNING).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return pid != os.getpid() and not psutil.pid_exists(pid)


@contextlib.contextmanager
def _running_marker(index_dir: Path) -> Iterator[None]:
    """The marker of a running background run, removed when it ends in any
    way but a killed process (best effort: a full disk must not stop the run)."""
    import os

    marker = index_dir / RUNNING
    with contextlib.suppress(OSError):
        index_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{os.getpid()} {time.time():.0f}\n")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            marker.unlink(missing_ok=True)


class ModelLoader:
    """Loads the models once, in a background thread started at construction,
    so the first page can be drawn while they load."""

    def __init__(self, load: Callable[[], dict]):
        self._models: dict | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(load,), daemon=True, name="load-models")
        self._thread.start()

    def _run(self, load: Callable[[], dict]) -> None:
        try:
            self._models = load()
        except BaseException as exc:  # noqa: BLE001 — re-raised to whoever asks for the models
            self._error = exc
            return
        freeze_long_lived()     # the models live as long as the server: out of the collector's walks

    def ready(self) -> bool:
        return not self._thread.is_alive()

    def get(self, timeout: float | None = None) -> dict:
        """The models (waits for the load); re-raises the load's error."""
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        return self._models or {}
