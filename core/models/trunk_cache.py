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

:func:`write_augmented_features` does the same for ``K`` augmented copies of
each training track (:func:`core.audio.augment.augmented_copy`: the waveform
chain toward other sources, then the same front-end), into
``<out>/augmented/<trunk>.npz``: ``track_id`` (M,), ``patch_features``
(M, K, P, D), ``patch_tags`` (M, K, P, 50), with ``copies``, ``seed`` and
``augment`` (the settings, JSON). Training reads them as extra rows
(:class:`core.training.loso_data.SourceData`); no copy of a test track is made.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from core.audio.augment import AUGMENT_RATE, AugmentConfig, per_copy
from core.audio.cache import atomic_save_npy, content_hash
from core.datasets.track import Track
from core.files import atomic_write
from core.models.trunks import TrunkBank, clip_logmel, pool_clips
from core.types import Progress


def _clip_dir(out: Path, bank: TrunkBank) -> Path:
    # Every patch is kept, so the folder is named by the per-patch outputs' key.
    return out / "clips" / hashlib.sha256(f"{bank.patch_key()}:per-patch".encode()).hexdigest()[:16]


def _patch_width(bank: TrunkBank) -> int:
    return sum(s.embed_dim + len(s.tags) for s in bank.specs)


def _patch_row(bank: TrunkBank, logmel: torch.Tensor) -> np.ndarray:
    """``(1, 96, T)`` log-mel → ``(P, Σ(D + 50))`` float32 per-patch outputs of every trunk."""
    out = bank.patch_outputs(logmel[None])
    return torch.cat([torch.cat([pen[:, 0], tags[:, 0]], 1) for pen, tags in out.values()], 1).numpy().astype(
        np.float32)


def _cached(path: Path | None, width: int) -> np.ndarray | None:
    a = np.load(path, allow_pickle=False) if path is not None and path.is_file() else None
    return a if a is not None and a.ndim == 2 and a.shape[1] == width else None


def _split(arrs: np.ndarray, bank: TrunkBank):
    """``(…, P, Σ(D + 50))`` → ``[(spec, penultimate (…, P, D), tags (…, P, 50))]`` per trunk."""
    out, i = [], 0
    for s in bank.specs:
        out.append((s, arrs[..., i: i + s.embed_dim], arrs[..., i + s.embed_dim: i + s.embed_dim + len(s.tags)]))
        i += s.embed_dim + len(s.tags)
    return out


def patch_arrays(tracks: Sequence[Track], bank: TrunkBank, clip_dir: Path | None = None,
                 progress: Progress | None = None) -> np.ndarray:
    """``(N, P, Σ(D + 50))`` float32 per-patch outputs of every trunk of ``bank``
    (per trunk in order: penultimate, tags) on all P patches of each clip,
    cached per clip in ``clip_dir``."""
    width, arrs = _patch_width(bank), []
    for i, t in enumerate(tracks):
        p = clip_dir / f"{content_hash(t.path)}.npy" if clip_dir else None
        a = _cached(p, width)
        if a is None:
            a = _patch_row(bank, clip_logmel(t.path))
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
    meta = {"track_id": np.array([t.track_id for t in tracks]), "genre": np.array([t.genre for t in tracks]),
            "split": np.array([t.split for t in tracks]), "source": np.array([t.source for t in tracks])}
    paths = {}
    for s, pen, tags in _split(arrs, bank):
        feats, mean_tags = pool_clips(pen, tags, bank.patches)
        paths[s.name] = out / f"{s.name}.npz"
        atomic_write(paths[s.name], lambda f, a=(feats, mean_tags, pen, tags): np.savez(
            f, features=a[0], tags=a[1], patch_features=a[2], patch_tags=a[3], key=np.array(bank.key()), **meta))
    return paths


def augmented_patch_arrays(tracks: Sequence[Track], bank: TrunkBank, copies: int, aug: AugmentConfig,
                           seed: int = 0, clip_dir: Path | None = None,
                           progress: Progress | None = None) -> np.ndarray:
    """``(N, copies, P, Σ(D + 50))`` float32: :func:`patch_arrays` of each
    track's augmented copies (copy ``c`` drawn by
    :func:`~core.audio.augment.copy_rng`; a track is decoded once, and only
    when one of its copies is not cached in ``clip_dir``)."""
    width, arrs = _patch_width(bank), []
    for i, t in enumerate(tracks):
        digest = content_hash(t.path)
        path = (lambda c: clip_dir / f"{digest}-{c}.npy") if clip_dir else (lambda c: None)

        def make(c: int, mel: np.ndarray) -> np.ndarray:
            a = _patch_row(bank, torch.from_numpy(mel)[None])
            if path(c) is not None:
                atomic_save_npy(path(c), a)
            return a

        arrs.append(np.stack(per_copy(t.path, digest, copies, bank.cfg, aug, seed,
                                      lambda c: _cached(path(c), width), make)))
        if progress:
            progress(i + 1, len(tracks))
    return np.stack(arrs) if arrs else np.zeros((0, copies, 1, width), np.float32)


def write_augmented_features(tracks: Sequence[Track], out: str | Path, bank: TrunkBank, copies: int,
                             aug: AugmentConfig | None = None, seed: int = 0,
                             progress: Progress | None = None) -> dict[str, Path]:
    """Write ``<out>/augmented/<trunk>.npz`` (module docstring) for ``copies``
    augmented copies of ``tracks`` (the caller passes training tracks only);
    returns the paths."""
    aug = aug or AugmentConfig()
    settings = json.dumps({"augment": aug.to_dict(), "seed": seed, "rate": AUGMENT_RATE}, sort_keys=True)
    base = _clip_dir(Path(out), bank)
    clip_dir = base.with_name(f"{base.name}-aug-{hashlib.sha256(settings.encode()).hexdigest()[:12]}")
    arrs = augmented_patch_arrays(tracks, bank, copies, aug, seed, clip_dir, progress)
    folder = Path(out) / "augmented"
    paths = {}
    for s, pen, tags in _split(arrs, bank):
        paths[s.name] = folder / f"{s.name}.npz"
        atomic_write(paths[s.name], lambda f, a=(pen, tags): np.savez(
            f, track_id=np.array([t.track_id for t in tracks]), patch_features=a[0], patch_tags=a[1],
            copies=np.array(copies), seed=np.array(seed), augment=np.array(settings), key=np.array(bank.key())))
    return paths
