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
* :func:`freeze_long_lived`: once the models are loaded, everything alive is
  moved out of the collector's sight (``gc.freeze``): a full collection of
  the server, which walked every object of torch, pandas and the models,
  held the GIL for about a second on a busy machine (py-spy).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import threading
from dataclasses import dataclass
from typing import Iterator

from core.procs import available_cpus


@dataclass(frozen=True)
class ServeConfig:
    """Settings of the app server's shared resources."""

    analyses_at_once: int = 0       # 0: half the CPUs this process may use, at least one
    trim_every_s: float = 30.0      # MemoryTrimmer's period

    def slots(self) -> int:
        if self.analyses_at_once > 0:
            return self.analyses_at_once
        return max(1, available_cpus() // 2)


_SLOTS = threading.BoundedSemaphore(ServeConfig().slots())


@contextlib.contextmanager
def analysis_slot() -> Iterator[None]:
    """Hold one of the process's analysis slots for the block (waits in line)."""
    with _SLOTS:
        yield


def _malloc_trim():
    """glibc's ``malloc_trim`` (``None`` on another C library)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):
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


def freeze_long_lived() -> None:
    """Collect once, then exempt every surviving object from later collections
    (call it when the long-lived state, e.g. the loaded models, is in place)."""
    gc.collect()
    gc.freeze()


class MemoryTrimmer:
    """Calls :func:`trim_memory` every ``every_s`` seconds in a daemon thread
    until :meth:`stop` (thread-safe: it touches no shared state)."""

    def __init__(self, every_s: float = ServeConfig().trim_every_s):
        self.every_s = every_s
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="memory-trimmer")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            trim_memory()
            self.runs += 1

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
