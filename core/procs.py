"""Worker processes that never outlive their owner.

Every process pool of the project (:class:`core.catalog.pipeline._Runner`,
:meth:`core.audio.cache.LogMelCache.logmels`) is shut down in a ``finally``; this
module covers the paths a ``finally`` cannot: an owner killed by a signal
(SIGTERM/SIGKILL run no Python code), or a crash. A pool worker blocks
reading its task queue, and because it holds a copy of that queue's write
end it never sees end-of-file when its owner dies, so it would wait forever
(and keep multiprocessing's resource tracker alive with it).
:func:`exit_with_parent`, run as the pool's ``initializer``, starts a daemon
thread that ends the worker as soon as its parent process is gone.

Workers started on behalf of a server (the app's background indexing) yield
the CPU to it: :func:`worker_niceness` sets, for the calling thread's context,
the niceness its pools' workers take (:func:`lower_priority` in their
initializer), so user requests are served first and the indexing uses what
is left.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from contextvars import ContextVar
from typing import Callable, Iterator

POLL_S = 0.5


def _watch(parent: int, poll_s: float) -> None:
    while True:
        time.sleep(poll_s)
        if os.getppid() != parent:     # re-parented: the owner is gone
            os._exit(0)


def exit_with_parent(poll_s: float = POLL_S) -> None:
    """Pool ``initializer``: end this process within ``poll_s`` seconds of its parent's death."""
    # The owner's pid as multiprocessing recorded it, not os.getppid(): a worker
    # whose owner was killed while it was still starting up is already
    # re-parented here, and would otherwise watch its new parent for ever.
    owner = multiprocessing.parent_process()
    threading.Thread(target=_watch, args=(owner.pid if owner else os.getppid(), poll_s), daemon=True,
                     name="exit-with-parent").start()


_NICE: ContextVar[int] = ContextVar("worker_nice", default=0)


@contextlib.contextmanager
def worker_niceness(nice: int) -> Iterator[None]:
    """Pools created in this block (this thread's context) start their workers
    ``nice`` steps nicer (0–19; see :func:`lower_priority`)."""
    token = _NICE.set(max(0, min(19, int(nice))))
    try:
        yield
    finally:
        _NICE.reset(token)


def worker_nice() -> int:
    """The niceness increment for workers started now (0 outside :func:`worker_niceness`)."""
    return _NICE.get()


def lower_priority(nice: int) -> None:
    """Pool ``initializer`` part: make this process ``nice`` steps nicer (best effort)."""
    if nice > 0:
        with contextlib.suppress(OSError):
            os.nice(nice)


def wait_until_none(find: Callable[[], list], seconds: float, interval: float = 0.2) -> list:
    """Call ``find`` until it returns nothing or ``seconds`` pass; its last answer
    (stragglers get that long to exit)."""
    deadline = time.time() + seconds
    left = find()
    while left and time.time() < deadline:
        time.sleep(interval)
        left = find()
    return left


def child_processes(pid: int | None = None, tracker: bool = False) -> list:
    """Live (non-zombie) descendants of ``pid`` (default: this process), as
    psutil processes. multiprocessing's resource tracker is left out unless
    ``tracker``: one per owner, it lives as long as the owner and exits with
    it (once no worker holds its pipe)."""
    import psutil

    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for k in kids:
        try:
            if k.status() == psutil.STATUS_ZOMBIE:
                continue
            if not tracker and "resource_tracker" in " ".join(k.cmdline()):
                continue
            out.append(k)
        except psutil.Error:
            continue
    return out


def available_cpus() -> int:
    """CPUs this process may run on (respects taskset / container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
