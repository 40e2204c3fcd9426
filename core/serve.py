"""Sharing one server process between many sessions (no Streamlit here).

* :func:`analysis_slot`: analysing an upload runs every model on it (one
  torch thread); each analysis allocates a few hundred MB of activations for
  a moment. Twelve sessions analysing at once oversubscribed the cores and
  spread the freed memory over many allocator arenas, so analyses take
  turns: at most :attr:`ServeConfig.analyses_at_once` run together (half the
  CPUs: one on two cores), the others wait in line (bounded by the number of
  sessions). One per CPU was measured too: no faster at N = 12, and each of
  those runs had a Classify step time out.
* :class:`MemoryTrimmer`: a daemon thread that, every
  :attr:`ServeConfig.trim_every_s` seconds, collects reference cycles (the
  objects of closed sessions) and hands freed heap pages back to the
  operating system (glibc ``malloc_trim``), so the server's resident memory
  returns towards where it started once sessions close. One full collection
  every half minute replaces Streamlit's collection after every script run
  (``runner.postScriptGC = false`` in ``.streamlit/config.toml``).
* :data:`SERVER_ENV`: the environment the server is started with (``make
  run``, the benchmark's server). glibc gives every new thread its own
  malloc arena, up to eight per core; Streamlit runs each session's script
  in its own thread, beside its web threads, so memory freed after a burst
  of sessions stayed scattered over a dozen arenas, mostly free but held
  (``heap_stats``: 458 MB free of a 660 MB heap after four users, RSS +41 %).
  Two arenas keep it together; it must be set before the process starts
  (a ``mallopt`` at the first page run came too late: the web threads had
  their arenas already).
* :func:`freeze_long_lived`: once the models are loaded, everything alive is
  moved out of the collector's sight (``gc.freeze``): a full collection of
  the server, which walked every object of torch, pandas and the models,
  held the GIL for about a second on a busy machine (py-spy).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from core.errors import GenreError
from core.procs import available_cpus

SERVER_ENV = {"MALLOC_ARENA_MAX": "2"}


class ServeError(GenreError, ValueError):
    """A bad server setting (an environment variable)."""


def _trim_period() -> float:
    """``GENRE_SERVE_TRIM_EVERY_S`` (seconds, > 0), 30 when unset."""
    raw = os.environ.get("GENRE_SERVE_TRIM_EVERY_S", "30")
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ServeError(f"GENRE_SERVE_TRIM_EVERY_S must be a number of seconds above 0, not {raw!r}")
    return value


@dataclass(frozen=True)
class ServeConfig:
    """Settings of the app server's shared resources."""

    analyses_at_once: int = 0       # 0: half the CPUs this process may use, at least one
    trim_every_s: float = field(default_factory=_trim_period)   # MemoryTrimmer's period
    # A file the trimmer appends a memory_report() line to after each run ("": none);
    # the load run (benchmarks/load.py) sets it to see what the server's memory is made of.
    probe_path: str = field(default_factory=lambda: os.environ.get("GENRE_SERVE_PROBE", ""))

    def slots(self) -> int:
        return analysis_slots(self.analyses_at_once)


def analysis_slots(at_once: int = 0) -> int:
    """Analyses that may run together: ``at_once`` when above 0, else half the
    CPUs this process may use, at least one."""
    return at_once if at_once > 0 else max(1, available_cpus() // 2)


# Not ServeConfig().slots(): that would read the trimmer's settings too, and a bad
# GENRE_SERVE_TRIM_EVERY_S would fail every import of this module (the app, the
# indexer) instead of being the one line housekeeping() shows on the page.
_SLOTS = threading.BoundedSemaphore(analysis_slots())


@contextlib.contextmanager
def analysis_slot() -> Iterator[None]:
    """Hold one of the process's analysis slots for the block (waits in line)."""
    with _SLOTS:
        yield


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, looked up once (``find_library`` runs ``ldconfig``); ``None`` when it cannot be loaded."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _malloc_trim():
    """glibc's ``malloc_trim`` (``None`` on another C library)."""
    try:
        fn = _libc().malloc_trim
    except AttributeError:      # no C library (None), or not glibc
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def trim_memory() -> int:
    """Collect reference cycles, then give free heap pages back to the OS;
    the number of objects the collection freed."""
    freed = gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    return freed


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_stats() -> dict[str, float] | None:
    """glibc's malloc totals over all its arenas, in MB (``None`` on another C
    library): ``heap`` (obtained from the OS, not counting ``mmapped`` large
    blocks), ``in_use`` (of it, allocated), ``free`` (held but free: memory
    a trim could return only where whole pages are free), ``mmapped``."""
    try:
        fn = _libc().mallinfo2
    except AttributeError:      # no C library (None), or not glibc (or older than 2.33)
        return None
    fn.argtypes, fn.restype = [], _MallInfo2
    m = fn()
    mb = 2 ** 20
    return {"heap": round(m.arena / mb, 1), "in_use": round(m.uordblks / mb, 1),
            "free": round(m.fordblks / mb, 1), "mmapped": round(m.hblkhd / mb, 1)}


def memory_report() -> dict:
    """What this process's memory is made of now: resident MB, glibc's heap
    (:func:`heap_stats`), objects the collector tracks, threads."""
    import psutil

    return {"t": round(time.time(), 1), "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
            "malloc_mb": heap_stats(), "gc_objects": len(gc.get_objects()), "gc_frozen": gc.get_freeze_count(),
            "threads": threading.active_count()}


def freeze_long_lived() -> None:
    """Collect once, then exempt every surviving object from later collections
    (call it when the long-lived state, e.g. the loaded models, is in place)."""
    gc.collect()
    gc.freeze()


class MemoryTrimmer:
    """Calls :func:`trim_memory` every ``every_s`` seconds in a daemon thread
    until :meth:`stop` (thread-safe: it touches no shared state); with a
    ``probe`` path, appends a :func:`memory_report` JSON line there after each run."""

    def __init__(self, every_s: float | None = None, probe: str = "",
                 before: Callable[[], object] | None = None, report: Callable[[], dict] | None = None):
        self.every_s = ServeConfig().trim_every_s if every_s is None else every_s
        self.probe = probe
        self.before = before        # called first in each run (the app: shut down expired sessions)
        self.report = report        # more for the probe line (the app: its session counts)
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="memory-trimmer")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            if self.before is not None:
                try:
                    self.before()
                except Exception:  # noqa: BLE001 — housekeeping that failed once must not stop the trimming
                    pass
            freed = trim_memory()
            self.runs += 1
            if self.probe:
                try:
                    extra = self.report() if self.report is not None else {}
                    with open(self.probe, "a") as f:
                        f.write(json.dumps({**memory_report(), "gc_freed": freed, **extra}) + "\n")
                except OSError:
                    pass        # a probe that cannot be written changes nothing the server does

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
