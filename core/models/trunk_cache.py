"""Trunk features of a whole data set, computed once and kept on disk.

:func:`write_trunk_features` runs :class:`~core.models.trunks.TrunkBank` on
every track (one decode and one log-mel per clip, through the same load and
front-end code as inference) and writes one ``<trunk>.npz`` per trunk:
``track_id`` (N,), ``features`` (N, 2·D), ``tags`` (N, 50), plus ``genre``,
``split`` and ``source`` of each track and the bank's ``key``. Each clip's
vector is also kept under ``<out>/clips/<bank key>/<sha256>.npy``, so an
interrupted run, or a later one with more tracks, recomputes nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from core.audio.cache import atomic_save_npy, content_hash
from core.datasets.track import Track
from core.files import atomic_write
from core.models.trunks import TrunkBank, clip_logmel
from core.types import Progress


def _clip_dir(out: Path, bank: TrunkBank) -> Path:
    return out / "clips" / hashlib.sha256(bank.key().encode()).hexdigest()[:16]


def trunk_vectors(tracks: Sequence[Track], bank: TrunkBank, clip_dir: Path | None = None,
                  progress: Progress | None = None) -> np.ndarray:
    """``(N, bank.dim)`` float32 vectors of ``tracks`` (cached per clip in ``clip_dir``)."""
    vecs = []
    for i, t in enumerate(tracks):
        p = clip_dir / f"{content_hash(t.path)}.npy" if clip_dir else None
        v = np.load(p, allow_pickle=False) if p is not None and p.is_file() else None
        if v is None or v.shape != (bank.dim,):
            with torch.inference_mode():
                v = bank.vector(clip_logmel(t.path)[None])[0].numpy().astype(np.float32)
            if p is not None:
                atomic_save_npy(p, v)
        vecs.append(v)
        if progress:
            progress(i + 1, len(tracks))
    return np.stack(vecs) if vecs else np.zeros((0, bank.dim), np.float32)


def write_trunk_features(tracks: Sequence[Track], out: str | Path, bank: TrunkBank | None = None,
                         progress: Progress | None = None) -> dict[str, Path]:
    """Write ``<out>/<trunk>.npz`` for every trunk of ``bank`` (default: all); returns the paths."""
    out = Path(out)
    bank = bank or TrunkBank()
    split = bank.split(trunk_vectors(tracks, bank, _clip_dir(out, bank), progress))
    meta = {"track_id": np.array([t.track_id for t in tracks]), "genre": np.array([t.genre for t in tracks]),
            "split": np.array([t.split for t in tracks]), "source": np.array([t.source for t in tracks])}
    paths = {}
    for name, o in split.items():
        paths[name] = out / f"{name}.npz"
        atomic_write(paths[name], lambda f, o=o: np.savez(f, features=o.features, tags=o.tags,
                                                         key=np.array(bank.key()), **meta))
    return paths
