"""Waveform augmentation for training batches: banks of augmented log-mels.

Each training track gets ``copies`` versions of its excerpt passed through
:func:`core.audio.augment.augment_wave` *before* the log-mel (decoded at
:data:`~core.audio.augment.AUGMENT_RATE`, augmented, then read back through
the project's one load → log-mel path: :func:`core.audio.augment.augmented_copy`).
Copies are cached on disk by content hash, feature key, augmentation
settings, seed and copy index, so every epoch and every rerun reuses them; a
training batch swaps each clean log-mel for one of its copies with
probability ``p`` (:func:`mix_batch`). Validation and test never see them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from core.audio.augment import AUGMENT_RATE, AugmentConfig, augmented_copy, copy_rng
from core.audio.cache import atomic_save_npy, content_hash
from core.audio.features import LOGMEL_DTYPE
from core.audio.load import load_full
from core.config import FeatureConfig, Paths
from core.datasets import Track


def bank_key(feat: FeatureConfig, aug: AugmentConfig, seed: int) -> str:
    blob = json.dumps([feat.key(), aug.to_dict(), seed, AUGMENT_RATE], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def augmented_bank(tracks: Sequence[Track], feat: FeatureConfig, copies: int,
                   aug: AugmentConfig | None = None, seed: int = 0,
                   cache_root: str | Path | None = None, log=None) -> np.ndarray:
    """``(N, copies, n_mels, n_frames)`` :data:`LOGMEL_DTYPE` augmented log-mels
    of ``tracks``; copy ``c`` of a track is seeded by (seed, c, its content
    hash), so it is the same whatever the order or the other tracks."""
    aug = aug or AugmentConfig()
    root = Path(cache_root or Paths().cache).parent / "wave_augment" / bank_key(feat, aug, seed)
    out = np.zeros((len(tracks), copies, feat.n_mels, feat.n_frames), LOGMEL_DTYPE)
    for i, t in enumerate(tracks):
        digest, y = content_hash(t.path), None
        for c in range(copies):
            p = root / f"{digest}-{c}.npy"
            try:
                out[i, c] = np.load(p, allow_pickle=False)
                continue
            except (OSError, ValueError):
                pass
            rng = copy_rng(seed, c, digest)
            if y is None:       # decoded once per track, only when a copy is missing
                y = load_full(t.path, AUGMENT_RATE)
            out[i, c] = augmented_copy(y, feat, aug, rng).astype(LOGMEL_DTYPE)
            atomic_save_npy(p, out[i, c])
        if log and (i + 1) % 50 == 0:
            log(f"augmented log-mels: {i + 1}/{len(tracks)} tracks")
    return out


def mix_batch(clean: np.ndarray, bank: np.ndarray, idx: np.ndarray, p: float,
              rng: np.random.Generator) -> np.ndarray:
    """Log-mels ``(B, n_mels, n_frames)`` of tracks ``idx``: each one, with
    probability ``p``, replaced by a random augmented copy from ``bank``
    ``(N, copies, n_mels, n_frames)``."""
    x = clean[idx].copy()
    swap = rng.random(len(idx)) < p
    copy = rng.integers(0, bank.shape[1], len(idx))
    x[swap] = bank[idx[swap], copy[swap]]
    return x
