"""No process outlives its owner: pool workers end when their owner dies, even
by SIGKILL (no ``finally`` runs), and every pool is shut down on errors.
(tests/conftest.py also fails the session if any child process is left.)"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from core.procs import child_processes

ROOT = Path(__file__).resolve().parent.parent

OWNER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from core.config import FeatureConfig
    from core.catalog import pipeline

    if __name__ == "__main__":
        runner = pipeline._Runner(2, {{}}, [FeatureConfig()], 1)      # the indexer's pool (forkserver)
        assert runner.result(runner.submit([]), []) == []           # workers are up
        from concurrent.futures import ProcessPoolExecutor          # the log-mel cache's forked pool
        from core.procs import exit_with_parent
        forked = ProcessPoolExecutor(1, initializer=exit_with_parent)
        forked.submit(int).result()
        pids = [p.pid for p in list(runner.pool._processes.values()) + list(forked._processes.values())]
        print(" ".join(map(str, pids)), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)                        # no finally, no atexit
""")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_pool_workers_exit_when_their_owner_is_killed(tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(OWNER.format(root=str(ROOT)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == -9, proc.stderr
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) >= 2             # pools start workers on demand
    deadline = time.time() + 15
    while any(_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    left = [p for p in pids if _alive(p)]
    for p in left:                      # do not leave them behind even if the test fails
        os.kill(p, 9)
    assert not left, f"workers outlived their owner: {left}"


def test_cache_pool_is_shut_down_when_the_caller_fails(tiny_dataset, tmp_path):
    from core.audio.cache import LogMelCache
    from core.config import FeatureConfig

    paths = sorted(str(p) for p in (tiny_dataset / "audio").rglob("*.mp3"))[:4]
    calls = []

    def progress(done, total):
        calls.append(done)
        if len(calls) == 2:              # after the first file from the pool
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        LogMelCache(FeatureConfig(), root=tmp_path).logmels(paths, progress=progress, workers=2)
    deadline = time.time() + 10
    while child_processes() and time.time() < deadline:
        time.sleep(0.2)
    assert not child_processes()


def test_pipeline_pool_is_shut_down_when_the_consumer_fails(tiny_artifacts, tiny_dataset):
    from core.catalog.pipeline import embed_paths
    from core.models.artifacts import load_models

    models = load_models(tiny_artifacts)
    paths = sorted(str(p) for p in (tiny_dataset / "audio").rglob("*.mp3"))[:8]
    gen = embed_paths(paths, models, batch_size=2, workers=1, cache=False)
    with pytest.raises(RuntimeError):
        for _ in gen:
            raise RuntimeError("consumer failed")
    gen.close()                          # what a `with closing(...)` or the GC does
    deadline = time.time() + 10
    while child_processes() and time.time() < deadline:
        time.sleep(0.2)
    assert not child_processes()


LATE_OWNER = textwrap.dedent("""
    import multiprocessing, os, signal, sys, time
    sys.path.insert(0, {root!r})

    def late_worker():
        time.sleep(3)                       # still starting up when its owner is killed
        from core.procs import exit_with_parent
        exit_with_parent(poll_s=0.1)
        time.sleep(60)

    if __name__ == "__main__":
        child = multiprocessing.get_context("spawn").Process(target=late_worker)
        child.start()
        print(child.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_worker_whose_owner_died_during_its_start_up_still_exits(tmp_path):
    """The watcher must watch the owner multiprocessing recorded: by the time
    the initializer runs, such a worker is already re-parented, and watching
    os.getppid() then would keep it alive for ever."""
    script = tmp_path / "late_owner.py"
    script.write_text(LATE_OWNER.format(root=str(ROOT)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    pid = int(proc.stdout.split()[0])
    deadline = time.time() + 15
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.2)
    alive = _alive(pid)
    if alive:
        os.kill(pid, 9)
    assert not alive, "a worker outlived an owner that died while it started"


def test_forkserver_workers_take_the_owners_environment_of_now(monkeypatch):
    """The indexer's workers are forked by a server started once per owner
    (pool_context), so they inherit the environment of the server's start;
    the pool's initializer gives them the owner's of now (GENRE_* settings)."""
    from concurrent.futures import ProcessPoolExecutor

    from core.catalog.pipeline import WORKER_PRELOAD
    from core.procs import adopt_environment, pool_context

    ctx = pool_context(WORKER_PRELOAD)
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:       # the server is up
        pool.submit(int).result()
    monkeypatch.setenv("GENRE_TEST_PROBE", "set after the server started")
    with ProcessPoolExecutor(1, mp_context=ctx) as stale:
        assert stale.submit(os.getenv, "GENRE_TEST_PROBE").result() is None
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=adopt_environment,
                             initargs=(dict(os.environ),)) as pool:
        assert pool.submit(os.getenv, "GENRE_TEST_PROBE").result() == "set after the server started"


def test_live_forkserver_workers_are_children_and_the_server_is_not():
    from concurrent.futures import ProcessPoolExecutor

    from core.procs import pool_context

    with ProcessPoolExecutor(2, mp_context=pool_context()) as pool:
        workers = set(pool.submit(os.getpid).result() for _ in range(4)) | {p.pid for p in pool._processes.values()}
        server = {psutil.Process(w).ppid() for w in workers}
        found = {p.pid for p in child_processes()}
        assert len(server) == 1 and server.isdisjoint(workers | {os.getpid()})   # forked by one server
        assert workers <= found
        assert not server & found            # the server is left out, like the resource tracker
        assert server <= {p.pid for p in child_processes(tracker=True)}


def test_the_pool_server_starts_before_the_first_pool_with_its_preload(tmp_path):
    """core.procs.start_pool_server (the bench starts it before timing the
    indexer): a forkserver runs afterwards, has imported the preload, and the
    workers of a later pool are forked by it."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        import psutil
        from concurrent.futures import ProcessPoolExecutor
        from core.procs import child_processes, pool_context, start_pool_server

        def preloaded():
            return "wave" in sys.modules           # imported by the server, not by this worker

        if __name__ == "__main__":
            assert not child_processes(tracker=True)
            start_pool_server(("wave",))
            servers = [p.pid for p in child_processes(tracker=True) if "forkserver" in " ".join(p.cmdline())]
            assert len(servers) == 1, servers
            with ProcessPoolExecutor(1, mp_context=pool_context()) as pool:
                pid = pool.submit(os.getpid).result()
                assert psutil.Process(pid).ppid() == servers[0]
                assert pool.submit(preloaded).result()
            print("ok")
    """)
    path = tmp_path / "owner.py"        # a file, so the worker can import ``preloaded`` from it
    path.write_text(script)
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
