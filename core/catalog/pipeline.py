"""Batch embedding: audio files → both models' probabilities and embeddings.

:func:`embed_paths` is the streaming indexer the catalog uses. It

1. hashes each file and looks its log-mel up in the on-disk
   :class:`~core.audio.cache.LogMelCache` (a re-index decodes nothing);
2. hands batches of files to worker processes — one per CPU, one torch
   thread each — that decode and resample the misses, compute the batch's
   log-mels in one torch STFT, and run each model on all windows of the
   batch at once through a copy prepared for inference
   (:func:`optimise_for_inference`);
3. stores the new log-mels in the cache and yields the results in order.

At most two batches per worker are in flight, so memory is bounded on any
library size. Profiling showed the networks are ~90 % of the work (decode
~10 %, resample and STFT a few % each), so the model copies are where most
of the speed-up comes from; figures are in README.md (Performance).

:func:`embed_batch` is the same work as a pure function over a batch of file
paths (a dict of columns in, a dict of columns out), so it plugs straight
into Ray Data's ``map_batches`` or a Dask / Spark map.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch

from core.audio.cache import LogMelCache, content_hash
from core.audio.features import LOGMEL_DTYPE, logmels
from core.audio.load import AudioError, load_multi
from core.config import FeatureConfig
from core.facets import batch_facets, facet_columns
from core.models.inference import distinct_configs, predict_all
from core.models.optimise import optimise_for_inference, torch_threads
from core.procs import (
    adopt_environment,
    available_cpus,
    exit_with_parent,
    lower_priority,
    pool_context,
    worker_nice,
)
from core.types import Progress

if TYPE_CHECKING:  # pragma: no cover
    from core.models import GenreModel


# Windows per forward pass: large enough for efficient convolutions, small
# enough that the first conv block's activations (32×96×256 floats, 3 MB per
# window) stay around 100 MB.
BATCH_WINDOWS = 32


@dataclass
class EmbeddedTrack:
    """Result for one file: per-model probabilities and embeddings, or an error."""

    path: str
    digest: str | None
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    embedding: dict[str, np.ndarray] = field(default_factory=dict)
    error: str | None = None
    facets: dict[str, float] = field(default_factory=dict)   # core.facets columns


def default_workers() -> int:
    """Worker processes: one per available CPU."""
    return available_cpus()


# -- the work of one batch (in a worker process or in this one) -----------

def _decode(path: str, cfgs: list[FeatureConfig]) -> list[np.ndarray] | str:
    """Each config's excerpt of ``path`` from one decode, or a one-line error."""
    try:
        return [w[0] for w in load_multi(path, cfgs)]
    except (AudioError, OSError, MemoryError) as exc:
        return _error_line(path, exc)


def _error_line(path: str, exc: BaseException) -> str:
    if isinstance(exc, AudioError):
        return str(exc)
    return f"{Path(path).name}: cannot read ({type(exc).__name__})"


@dataclass
class _Out:
    """What a batch job returns for one file."""

    error: str | None = None
    # Newly computed log-mels (LOGMEL_DTYPE) by feature-config key, for the cache.
    logmel: dict[str, np.ndarray] = field(default_factory=dict)
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    embedding: dict[str, np.ndarray] = field(default_factory=dict)
    facets: dict[str, float] = field(default_factory=dict)


Job = tuple[str, dict[str, "np.ndarray | None"]]   # path, cached log-mel per config key


def _run_batch(jobs: list[Job], nets: dict[str, "GenreModel"], cfgs: list[FeatureConfig]) -> list[_Out]:
    """Decode (once) the files that miss a cached log-mel, compute each
    distinct front-end once for the batch, then run every network on all
    windows of the batch (networks sharing a frozen trunk share its pass)."""
    outs = [_Out() for _ in jobs]
    mels: list[dict[str, np.ndarray | None]] = [dict(lms) for _, lms in jobs]
    fresh: dict[str, list[tuple[int, np.ndarray]]] = {c.key(): [] for c in cfgs}
    for i, (path, lms) in enumerate(jobs):
        missing = [c for c in cfgs if lms.get(c.key()) is None]
        if not missing:
            continue
        res = _decode(path, missing)
        if isinstance(res, str):
            outs[i].error = res
            continue
        for c, wave in zip(missing, res):
            fresh[c.key()].append((i, wave))
    by_key = {c.key(): c for c in cfgs}
    with torch.inference_mode():
        for key, items in fresh.items():
            if not items:
                continue
            new = logmels(np.stack([w for _, w in items]), by_key[key])[:, 0].numpy()
            for (i, _), lm in zip(items, new):
                # Exact at the cache's precision: a hit and a miss embed identically.
                mels[i][key] = outs[i].logmel[key] = lm.astype(LOGMEL_DTYPE)
        ok = [i for i, o in enumerate(outs) if o.error is None]
        if ok:
            x = {key: torch.from_numpy(np.stack([mels[i][key] for i in ok]).astype(np.float32))[:, None]
                 for key in by_key}
            feats: dict = {}
            for name, pred in predict_all(x, nets, batch_windows=BATCH_WINDOWS, trunk_feats=feats).items():
                for j, i in enumerate(ok):
                    outs[i].probs[name] = pred.probs[j]
                    outs[i].embedding[name] = pred.embedding[j]
            # Facets from the same log-mels and trunk pass (no second decode).
            for j, f in enumerate(batch_facets({k: v[:, 0].numpy() for k, v in x.items()}, cfgs, feats, nets)):
                outs[ok[j]].facets = f
    return outs


_WORKER_NETS: dict[str, "GenreModel"] = {}
# Imported once in the pool server, so a worker starts without importing torch.
WORKER_PRELOAD = (__name__,)


def _worker_init(nets: dict[str, "GenreModel"], env: dict[str, str], nice: int = 0) -> None:
    # One torch thread per process: with two threads per process, every
    # parallel op waits for both, and on a busy machine that wait (spinning)
    # doubled the CPU per track. Processes never wait for each other.
    torch.set_num_threads(1)
    adopt_environment(env)      # GENRE_* settings as the owner has them now
    lower_priority(nice)   # the app's background indexing yields the CPU to page requests
    exit_with_parent()   # never outlive the owner, even one killed by a signal
    _WORKER_NETS.update(nets)


def _worker_batch(jobs: list[Job], cfgs: list[FeatureConfig]) -> list[_Out]:
    return _run_batch(jobs, _WORKER_NETS, cfgs)


class _Runner:
    """Runs batch jobs in ``workers`` processes (0: in this one), forked by a
    server that has imported this module once (:func:`~core.procs.pool_context`)."""

    def __init__(self, workers: int, nets: dict[str, "GenreModel"], cfgs: list[FeatureConfig],
                 threads: int):
        self.nets, self.cfgs, self.threads = nets, cfgs, threads
        self.pool: ProcessPoolExecutor | None = None
        if workers > 0:
            self.pool = ProcessPoolExecutor(workers, mp_context=pool_context(WORKER_PRELOAD),
                                            initializer=_worker_init,
                                            initargs=(nets, dict(os.environ), worker_nice()))

    def submit(self, jobs: list[Job]) -> Future | list[_Out]:
        if self.pool is None:
            return self._inline(jobs)
        return self.pool.submit(_worker_batch, jobs, self.cfgs)

    def result(self, pending: Future | list[_Out], jobs: list[Job]) -> list[_Out]:
        if not isinstance(pending, Future):
            return pending
        try:
            return pending.result()
        except BrokenProcessPool:
            # A worker died (killed, out of memory, or a script without the
            # ``if __name__ == "__main__":`` guard that spawned processes
            # need): finish in this process rather than fail the whole run.
            self.close()
            return self._inline(jobs)

    def _inline(self, jobs: list[Job]) -> list[_Out]:
        with torch_threads(self.threads):
            return _run_batch(jobs, self.nets, self.cfgs)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


@dataclass
class _Item:
    result: EmbeddedTrack
    logmel: dict[str, "np.ndarray | None"] = field(default_factory=dict)   # from the caches


# -- the pipeline -----------------------------------------------------------

def embed_paths(paths: Sequence[str | os.PathLike], models: dict[str, "GenreModel"],
                batch_size: int = 8, progress: Progress | None = None, *,
                workers: int | None = None, threads: int = 1,
                cache: "LogMelCache | str | os.PathLike | bool | None" = None,
                optimise: bool = True) -> Iterator[EmbeddedTrack]:
    """Yield one :class:`EmbeddedTrack` per path, in order.

    Batches of up to ``batch_size`` files are decoded, turned into log-mels
    and run through every model in ``workers`` processes of one torch thread
    each (default :func:`default_workers`: one per CPU; 0, or fewer than two
    batches of files, runs in this process on ``threads`` threads). Workers
    are forked by a server that imported torch once per owner process
    (:func:`~core.procs.pool_context`): a pool of two costs 1–1.4 CPU-s on
    this process's first call (the server's start) and ~0.05 CPU-s on later
    ones (spawn cost 2.2–4 CPU-s every call, on two VMs); each worker's
    first batch also sets up its kernels (~0.25 CPU-s).
    ``cache``: a :class:`LogMelCache`, a folder for one, ``None`` for the
    project cache (``Paths().cache``) or ``False`` for none. Memory is
    bounded: at most two batches per worker are in flight.
    """
    if not models:
        raise ValueError("no models loaded")
    cfgs = distinct_configs(models)
    paths = [str(p) for p in paths]
    if not paths:
        return
    store = _resolve_caches(cache, cfgs)
    nets = {n: optimise_for_inference(m) for n, m in models.items()} if optimise else dict(models)
    batch_size = max(1, batch_size)
    n_workers = default_workers() if workers is None else max(0, workers)
    if len(paths) < 2 * batch_size:
        n_workers = 0  # starting processes (and their kernels) costs more than it saves
    if n_workers:
        # At least two batches per worker, so none idles while the last runs.
        batch_size = max(1, min(batch_size, -(-len(paths) // (2 * n_workers))))
    runner = _Runner(n_workers, nets, cfgs, threads)
    in_flight = 2 * max(1, n_workers)
    try:
        queue: deque = deque()
        done = 0
        for start in range(0, len(paths), batch_size):
            items = _prepare(paths[start: start + batch_size], store)
            jobs = [(it.result.path, it.logmel) for it in items if it.result.error is None]
            queue.append((items, jobs, runner.submit(jobs)))
            while len(queue) >= in_flight or (start + batch_size >= len(paths) and queue):
                items, jobs, pending = queue.popleft()
                yield from _finish(items, runner.result(pending, jobs), store)
                done += len(items)
                if progress:
                    progress(done, len(paths))
    finally:
        runner.close()


Stores = dict[str, "LogMelCache"]   # one log-mel cache per feature-config key


def _resolve_caches(cache, cfgs: list[FeatureConfig]) -> Stores:
    """One :class:`LogMelCache` per config: ``False`` none, ``None``/``True``
    the project cache, a folder, or a :class:`LogMelCache` whose folder holds
    the others (each config has its own sub-folder there)."""
    if cache is False:
        return {}
    if cache is None or cache is True:
        return {c.key(): LogMelCache(c) for c in cfgs}
    if isinstance(cache, LogMelCache):
        if cache.cfg.key() not in {c.key() for c in cfgs}:
            raise ValueError("the log-mel cache was made for other feature settings")
        root = cache.root.parent
        return {c.key(): cache if c.key() == cache.cfg.key() else LogMelCache(c, root) for c in cfgs}
    return {c.key(): LogMelCache(c, root=cache) for c in cfgs}


def _prepare(batch: list[str], stores: Stores) -> list[_Item]:
    """Hash each file and look its log-mels up in the caches."""
    items = []
    for p in batch:
        try:
            digest = content_hash(p)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            items.append(_Item(EmbeddedTrack(p, None, error=f"{Path(p).name}: cannot read ({reason})")))
            continue
        items.append(_Item(EmbeddedTrack(p, digest), {k: c.get(digest) for k, c in stores.items()}))
    return items


def _finish(items: list[_Item], outs: list[_Out], stores: Stores) -> list[EmbeddedTrack]:
    """Fill the results in, and cache the log-mels computed for this batch."""
    todo = iter(outs)
    for it in items:
        if it.result.error is not None:
            continue
        out = next(todo)
        it.result.error = out.error
        it.result.probs, it.result.embedding, it.result.facets = out.probs, out.embedding, out.facets
        for key, lm in out.logmel.items():
            if key in stores:
                stores[key].put(it.result.digest, lm)
    return [it.result for it in items]


# -- distributed engines ----------------------------------------------------

_MODELS_BY_DIR: dict[str, dict[str, "GenreModel"]] = {}


def embed_batch(batch: dict[str, Sequence], artifacts_dir: str | os.PathLike | None = None,
                threads: int = 1, cache_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Pure batch function for Ray Data ``map_batches`` / Dask / Spark.

    ``{"path": [...]}`` → columns ``path``, ``digest``, ``error`` (``""`` when
    the file embedded) and ``<model>_probs`` ``(n, G)``, ``<model>_embedding``
    ``(n, D)`` float32 arrays (NaN rows for failed files). Models load once
    per worker process. The engine supplies the parallelism, so this decodes
    in-process on ``threads`` torch threads (one per engine task by
    default) and writes no cache unless ``cache_dir`` is given.
    """
    # Imported here, not at the top: the artifacts module loads scikit-learn
    # (the MFCC baseline), which the indexer's worker processes never need.
    from core.models.artifacts import load_models

    key = str(artifacts_dir)
    if key not in _MODELS_BY_DIR:
        _MODELS_BY_DIR[key] = {n: optimise_for_inference(m)
                               for n, m in load_models(artifacts_dir).items()}
    models = _MODELS_BY_DIR[key]
    if not models:
        raise ValueError(f"no trained models in {artifacts_dir or 'artifacts/'}")
    paths = [str(p) for p in batch["path"]]
    results = list(embed_paths(paths, models, batch_size=max(1, len(paths)), workers=0,
                               threads=threads, cache=cache_dir if cache_dir else False,
                               optimise=False))
    out: dict[str, np.ndarray] = {
        "path": np.array([r.path for r in results], dtype=object),
        "digest": np.array([r.digest or "" for r in results], dtype=object),
        "error": np.array([r.error or "" for r in results], dtype=object),
    }
    for name, m in models.items():
        out[f"{name}_probs"] = np.stack([r.probs.get(name, np.full(len(m.labels), np.nan, np.float32))
                                         for r in results]).astype(np.float32)
        out[f"{name}_embedding"] = np.stack([r.embedding.get(name, np.full(m.embedding_dim, np.nan, np.float32))
                                             for r in results]).astype(np.float32)
    for c in facet_columns():
        out[c] = np.array([r.facets.get(c, np.nan) for r in results], dtype=np.float32)
    return out
