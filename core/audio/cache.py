"""On-disk log-mel cache keyed by file content hash + feature config.

Re-runs and repeated epochs never decode the same audio twice. Entries are
``.npy`` float16 files written atomically (temp file + rename).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from core.audio.features import LogMelFrontEnd
from core.audio.load import AudioError, AudioSource, load
from core.config import FeatureConfig, Paths
from core.procs import exit_with_parent

Progress = Callable[[int, int], None]


def content_hash(source: str | os.PathLike | bytes) -> str:
    """SHA-256 of the file's bytes (streamed, so large files are fine)."""
    h = hashlib.sha256()
    if isinstance(source, (bytes, bytearray)):
        h.update(source)
    else:
        with open(source, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LogMelCache:
    """Content-addressed store of log-mel spectrograms for one feature config."""

    def __init__(self, cfg: FeatureConfig, root: str | Path | None = None):
        self.cfg = cfg
        self.root = Path(root or Paths().cache) / cfg.key()
        self._frontend: LogMelFrontEnd | None = None

    @property
    def frontend(self) -> LogMelFrontEnd:
        if self._frontend is None:
            self._frontend = LogMelFrontEnd(self.cfg)
        return self._frontend

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
        atomic_save_npy(self.path_for(digest), logmel.astype(np.float16))

    def compute(self, source: AudioSource) -> np.ndarray:
        """Decode + log-mel without touching the cache, ``(n_mels, n_frames)``."""
        wave = load(source, self.cfg)
        with torch.inference_mode():
            return self.frontend(torch.from_numpy(wave))[0, 0].numpy()

    def logmel(self, path: str | os.PathLike) -> np.ndarray:
        """Cached log-mel of the file at ``path`` (computed on a miss)."""
        digest = content_hash(path)
        hit = self.get(digest)
        if hit is not None:
            return hit.astype(np.float32)
        lm = self.compute(path)
        self.put(digest, lm)
        return lm

    def logmels(self, paths: Sequence[str | os.PathLike], progress: Progress | None = None,
                workers: int = 0) -> tuple[np.ndarray, list[str | None]]:
        """Log-mels of many files, ``(N, n_mels, n_frames)`` float16, plus one error
        message per file (``None`` when it loaded). Misses are decoded in
        ``workers`` processes (0: in this process)."""
        out = np.zeros((len(paths), self.cfg.n_mels, self.cfg.n_frames), np.float16)
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
                pool = ProcessPoolExecutor(max_workers=workers, initializer=exit_with_parent)
                results = zip(todo, pool.map(_compute_safe, [(self.cfg, paths[i]) for i in todo],
                                             chunksize=4))
            else:
                results = ((i, _compute_safe((self.cfg, paths[i]), self)) for i in todo)
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


def _compute_safe(args: tuple[FeatureConfig, str | os.PathLike],
                  cache: LogMelCache | None = None) -> np.ndarray | str:
    cfg, path = args
    cache = cache or LogMelCache(cfg, root=tempfile.gettempdir())
    torch.set_num_threads(1)
    try:
        return cache.compute(path).astype(np.float16)
    except AudioError as exc:
        return str(exc)
