"""Worker processes that never outlive their owner.

Every process pool of the project (:class:`core.catalog.pipeline._Runner`,
:meth:`core.audio.cache.LogMelCache.logmels`) is shut down in a ``finally``; this
module covers the paths a ``finally`` cannot: an owner killed by a signal
(SIGTERM/SIGKILL run no Python code), or a crash. A pool worker blocks
reading its task queue, and because it holds a copy of that queue's write
end it never sees end-of-file when its owner dies, so it would wait forever
(and keep multiprocessing's resource tracker alive with it).
:func:`exit_with_parent`, run as the pool's ``initializer``, starts a daemon
thread that ends the worker as soon as its owner process is gone.

The indexer's pools start their workers from a forkserver that has imported
torch once (:func:`pool_context`); :func:`adopt_environment` gives such a
worker its owner's environment of now, not the server's of its start.

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
from typing import Callable, Iterable, Iterator

POLL_S = 0.5
# multiprocessing's per-owner helper processes, as their command lines name them.
_OWNER_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _watch(owner, parent: int, poll_s: float) -> None:
    while True:
        time.sleep(poll_s)
        gone = not owner.is_alive() if owner is not None else os.getppid() != parent
        if gone:
            os._exit(0)


def exit_with_parent(poll_s: float = POLL_S) -> None:
    """Pool ``initializer``: end this process within ``poll_s`` seconds of its owner's death."""
    # The owner as multiprocessing recorded it (its sentinel: a pipe the owner
    # holds open), not os.getppid(): a worker whose owner was killed while it
    # was still starting up is already re-parented here, and a worker forked by
    # the forkserver (pool_context) has the server, not its owner, as parent.
    owner = multiprocessing.parent_process()
    threading.Thread(target=_watch, args=(owner, os.getppid(), poll_s), daemon=True,
                     name="exit-with-parent").start()


def pool_context(preload: tuple[str, ...] = ()) -> multiprocessing.context.BaseContext:
    """The start method of the indexer's worker pools: ``forkserver`` where the
    platform has it, with ``preload`` imported once in the server, else ``spawn``.

    Never plain ``fork``: forking a process that already runs torch / OpenMP
    threads (or Streamlit's server threads) can deadlock. The server is a fresh
    interpreter that has imported ``preload`` (torch: ~0.9 CPU-s) and run no
    torch op, so each worker forked from it starts without importing torch
    again; spawn paid that import in every worker of every pool. The server
    lives as long as its owner (one per owner, like the resource tracker).
    ``preload`` counts only before the first server starts."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    return ctx


def start_pool_server(preload: tuple[str, ...] = ()) -> None:
    """Start the pool server of :func:`pool_context` now instead of at the
    first pool's first worker (it imports ``preload`` once: ~1–1.4 CPU-s with
    torch). The bench does this before it times the indexer, so a one-time
    process cost, like importing torch, is not charged to 48 tracks; nothing
    to do under ``spawn``. Returns once the server has imported ``preload``
    (a no-op process is forked through it and joined)."""
    ctx = pool_context(preload)
    if ctx.get_start_method() == "forkserver":
        probe = ctx.Process(target=int, daemon=True)
        probe.start()
        probe.join()


def adopt_environment(env: dict[str, str]) -> None:
    """Pool ``initializer`` part: this worker's environment becomes ``env``, its
    owner's at pool creation. A forkserver's worker inherits the server's,
    which is as it was when the server started (multiprocessing carries the
    owner's working folder over, not its environment)."""
    if dict(os.environ) != env:
        os.environ.clear()
        os.environ.update(env)


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


def _owner_helper(proc) -> bool:
    """Whether ``proc`` is one of multiprocessing's per-owner helpers (not a
    worker the forkserver forked: those share its command line)."""
    cmd = " ".join(proc.cmdline())
    if not any(h in cmd for h in _OWNER_HELPERS):
        return False
    parent = proc.parent()
    return parent is None or " ".join(parent.cmdline()) != cmd


def child_processes(pid: int | None = None, tracker: bool = False) -> list:
    """Live (non-zombie) descendants of ``pid`` (default: this process), as
    psutil processes. multiprocessing's resource tracker and forkserver
    (:func:`pool_context`) are left out unless ``tracker``: one of each per
    owner, they live as long as the owner and exit with it (the tracker once
    no worker holds its pipe)."""
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
            if not tracker and _owner_helper(k):
                continue
            out.append(k)
        except psutil.Error:
            continue
    return out


def tree_cpu_seconds(pid: int | None = None, reaped: bool = True) -> float:
    """CPU seconds (user + system) of ``pid`` (default: this process) and of
    its live descendants (:func:`child_processes`, helpers included). With
    ``reaped``, also what each of them has reaped: the CPU of descendants that
    have exited, such as the indexer's workers, which are children of a
    forkserver that lives on, so ``os.times()`` of this process never sees
    them. Without it, only what the living have used themselves."""
    import psutil

    try:
        procs = [psutil.Process(pid), *child_processes(pid, tracker=True)]
    except psutil.Error:              # pid is gone
        return 0.0
    return cpu_seconds_of(procs, reaped)


def cpu_seconds_of(procs: Iterable, reaped: bool = False) -> float:
    """CPU seconds (user + system) of the psutil processes ``procs``, skipping
    any that exited meanwhile; with ``reaped``, also what each has reaped."""
    import psutil

    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + (t.children_user + t.children_system if reaped else 0.0)
    return total


def available_cpus() -> int:
    """CPUs this process may run on (respects taskset / container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
