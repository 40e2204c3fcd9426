"""Trunk features of a whole data set, computed once and kept on disk.

:func:`write_trunk_features` runs :class:`~core.models.trunks.TrunkBank` on
every track (one decode and one log-mel per clip, through the same load and
front-end code as inference) and writes one ``<trunk>.npz`` per trunk:
``track_id`` (N,), ``features`` (N, 2·D), ``tags`` (N, 50) pooled over the
bank's patches (:attr:`~core.models.trunks.TrunkBank.patches`), the per-patch
outputs ``patch_features`` (N, P, D) and ``patch_tags`` (N, P, 50) of all P
patches (so any patch count can be judged without running a trunk again),
plus ``genre``, ``split`` and ``source`` of each track and the bank's ``key``.
Each clip's per-patch outputs ``(P, Σ(D + 50))`` are also kept under
``<out>/clips/<bank key>/<sha256>.npy``, so an interrupted run, or a later one
with more tracks, recomputes nothing.
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
from core.models.trunks import TrunkBank, clip_logmel, patch_choice, pool_patches
from core.types import Progress


def _clip_dir(out: Path, bank: TrunkBank) -> Path:
    # Every patch is kept, so the folder is named by the per-patch outputs' key.
    return out / "clips" / hashlib.sha256(f"{bank.patch_key()}:per-patch".encode()).hexdigest()[:16]


def _patch_width(bank: TrunkBank) -> int:
    return sum(s.embed_dim + len(s.tags) for s in bank.specs)


def patch_arrays(tracks: Sequence[Track], bank: TrunkBank, clip_dir: Path | None = None,
                 progress: Progress | None = None) -> np.ndarray:
    """``(N, P, Σ(D + 50))`` float32 per-patch outputs of every trunk of ``bank``
    (per trunk in order: penultimate, tags) on all P patches of each clip,
    cached per clip in ``clip_dir``."""
    width, arrs = _patch_width(bank), []
    for i, t in enumerate(tracks):
        p = clip_dir / f"{content_hash(t.path)}.npy" if clip_dir else None
        a = np.load(p, allow_pickle=False) if p is not None and p.is_file() else None
        if a is None or a.ndim != 2 or a.shape[1] != width:
            out = bank.patch_outputs(clip_logmel(t.path)[None])
            a = torch.cat([torch.cat([pen[:, 0], tags[:, 0]], 1) for pen, tags in out.values()], 1)
            a = a.numpy().astype(np.float32)
            if p is not None:
                atomic_save_npy(p, a)
        arrs.append(a)
        if progress:
            progress(i + 1, len(tracks))
    return np.stack(arrs) if arrs else np.zeros((0, 1, width), np.float32)


def write_trunk_features(tracks: Sequence[Track], out: str | Path, bank: TrunkBank | None = None,
                         progress: Progress | None = None) -> dict[str, Path]:
    """Write ``<out>/<trunk>.npz`` for every trunk of ``bank`` (default: all); returns the paths."""
    out = Path(out)
    bank = bank or TrunkBank()
    arrs = patch_arrays(tracks, bank, _clip_dir(out, bank), progress)
    keep = patch_choice(arrs.shape[1], bank.patches)
    meta = {"track_id": np.array([t.track_id for t in tracks]), "genre": np.array([t.genre for t in tracks]),
            "split": np.array([t.split for t in tracks]), "source": np.array([t.source for t in tracks])}
    paths, i = {}, 0
    for s in bank.specs:
        pen, tags = arrs[:, :, i: i + s.embed_dim], arrs[:, :, i + s.embed_dim: i + s.embed_dim + len(s.tags)]
        i += s.embed_dim + len(s.tags)
        feats, mean_tags = pool_patches(pen[:, keep].transpose(1, 0, 2), tags[:, keep].transpose(1, 0, 2))
        paths[s.name] = out / f"{s.name}.npz"
        atomic_write(paths[s.name], lambda f, a=(feats, mean_tags, pen, tags): np.savez(
            f, features=a[0], tags=a[1], patch_features=a[2], patch_tags=a[3], key=np.array(bank.key()), **meta))
    return paths
