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

from core.audio.augment import AUGMENT_RATE, AugmentConfig, per_copy
from core.audio.cache import atomic_save_npy, content_hash
from core.audio.features import LOGMEL_DTYPE
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
        digest = content_hash(t.path)

        def cached(c: int) -> np.ndarray | None:
            try:
                return np.load(root / f"{digest}-{c}.npy", allow_pickle=False)
            except (OSError, ValueError):
                return None

        def make(c: int, mel: np.ndarray) -> np.ndarray:
            mel = mel.astype(LOGMEL_DTYPE)
            atomic_save_npy(root / f"{digest}-{c}.npy", mel)
            return mel

        out[i] = per_copy(t.path, digest, copies, feat, aug, seed, cached, make)
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
