"""On-disk log-mel cache keyed by file content hash + feature config.

Re-runs and repeated epochs never decode the same audio twice. Entries are
``.npy`` files at :data:`~core.audio.features.LOGMEL_DTYPE`, the precision
:func:`~core.audio.features.logmels` rounds to, so a hit returns exactly
what a miss computes; they are written atomically (temp file + rename).
The key is the file's SHA-256 and ``FeatureConfig.key()``, which covers every
setting that changes the values (decoding, excerpt, resampling rate,
loudness, STFT, mel bands, compression).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from core.audio.features import LOGMEL_DTYPE, logmels
from core.audio.load import AudioError, AudioSource, load
from core.config import FeatureConfig, Paths
from core.files import atomic_write, sha256_of
from core.procs import exit_with_parent
from core.types import Progress


def content_hash(source: str | os.PathLike | bytes) -> str:
    """SHA-256 of the file's bytes (streamed, so large files are fine): the cache key."""
    return sha256_of(source)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` so readers never see a partial file."""
    atomic_write(path, lambda f: np.save(f, array))


def compute_logmel(source: AudioSource, cfg: FeatureConfig) -> np.ndarray:
    """Decode + log-mel of ``source``, ``(n_mels, n_frames)`` float32 holding
    :data:`~core.audio.features.LOGMEL_DTYPE` values (no cache involved)."""
    return logmels(load(source, cfg), cfg)[0, 0].numpy()


class LogMelCache:
    """Content-addressed store of log-mel spectrograms for one feature config."""

    def __init__(self, cfg: FeatureConfig, root: str | Path | None = None):
        self.cfg = cfg
        self.root = Path(root or Paths().cache) / cfg.key()

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.npy"

    def get(self, digest: str) -> np.ndarray | None:
        p = self.path_for(digest)
        if not p.is_file():
            return None
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError):
            p.unlink(missing_ok=True)  # a damaged entry is recomputed, not trusted
            return None
        return arr if arr.shape == (self.cfg.n_mels, self.cfg.n_frames) else None

    def put(self, digest: str, logmel: np.ndarray) -> None:
        """Store a log-mel of :func:`~core.audio.features.logmels` (exact at
        the storage precision, so nothing is lost)."""
        atomic_save_npy(self.path_for(digest), logmel.astype(LOGMEL_DTYPE))

    def compute(self, source: AudioSource) -> np.ndarray:
        """Decode + log-mel without touching the cache, ``(n_mels, n_frames)``."""
        return compute_logmel(source, self.cfg)

    def logmel(self, path: str | os.PathLike) -> np.ndarray:
        """Cached log-mel of the file at ``path`` (computed on a miss),
        ``(n_mels, n_frames)`` float32: the same bits on a hit and a miss."""
        digest = content_hash(path)
        hit = self.get(digest)
        if hit is not None:
            return hit.astype(np.float32)
        lm = self.compute(path)
        self.put(digest, lm)
        return lm

    def logmels(self, paths: Sequence[str | os.PathLike], progress: Progress | None = None,
                workers: int = 0) -> tuple[np.ndarray, list[str | None]]:
        """Log-mels of many files, ``(N, n_mels, n_frames)`` at ``LOGMEL_DTYPE``, plus one error
        message per file (``None`` when it loaded). Misses are decoded in
        ``workers`` processes (0: in this process)."""
        out = np.zeros((len(paths), self.cfg.n_mels, self.cfg.n_frames), LOGMEL_DTYPE)
        errors: list[str | None] = [None] * len(paths)
        digests = [content_hash(p) for p in paths]
        todo = []
        for i, d in enumerate(digests):
            hit = self.get(d)
            if hit is None:
                todo.append(i)
            else:
                out[i] = hit
        done = len(paths) - len(todo)
        if progress:
            progress(done, len(paths))
        results: Iterable[tuple[int, np.ndarray | str]]
        pool = None
        try:
            if workers and len(todo) > 1:
                pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init)
                results = zip(todo, pool.map(_compute_safe, [(self.cfg, paths[i]) for i in todo],
                                             chunksize=4))
            else:
                results = ((i, _compute_safe((self.cfg, paths[i]))) for i in todo)
            for i, res in results:
                if isinstance(res, str):
                    errors[i] = res
                else:
                    out[i] = res
                    self.put(digests[i], res)
                done += 1
                if progress:
                    progress(done, len(paths))
        finally:
            if pool:   # on every path (errors, interrupts): queued work is dropped
                pool.shutdown(wait=True, cancel_futures=True)
        return out, errors


def _worker_init() -> None:
    """Each decode worker: one torch thread (the pool supplies the parallelism),
    and gone with its parent."""
    exit_with_parent()
    torch.set_num_threads(1)


def _compute_safe(args: tuple[FeatureConfig, str | os.PathLike]) -> np.ndarray | str:
    cfg, path = args
    try:
        lm = compute_logmel(path, cfg)
        return lm.astype(LOGMEL_DTYPE)
    except AudioError as exc:
        return str(exc)
