"""The data every leave-one-source-out experiment reads, computed once.

One decode and one MSD log-mel per clip (:class:`~core.audio.cache.LogMelCache`),
one pass of the frozen MSD-VGG trunk (blocks 1–4) as served
(:func:`core.training.train.trunk_features` with ``served=True``) and, from it, the frozen
MSD-VGG features of the whole clip: pool-5 mean and max over time and the
50 MSD tags averaged over 3 s (the 306-d ``CNNMSD`` embedding with its
pretrained conv 5 and tag layer, nothing trained here). Other trunks'
precomputed features (``<dir>/<trunk>.npz`` with ``track_id``, ``features``,
``tags``) join by track id, and augmented copies of the training tracks
(``<dir>/augmented/<trunk>.npz``, :func:`core.models.trunk_cache.write_augmented_features`)
become optional extra training rows (:meth:`SourceData.augmented_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from core.audio.cache import LogMelCache
from core.datasets import Track, genres_of, read_datasets
from core.errors import GenreError

MSD_VGG = "MSD_vgg"


class FeatureSetError(GenreError, ValueError):
    """A feature set does not cover the tracks asked for."""


@dataclass
class SourceData:
    """Every non-skipped track of the data folders with its label and features.

    ``trunk``: frozen MSD-VGG blocks 1–4 output ``(N, 128, 6, T4)`` float16
    (for retraining ``cnn_msd``'s head); ``features``: name → ``(N, D)``
    float32 pooled features of each trunk (``MSD_vgg`` always);
    ``patches``: name → per-patch (penultimate ``(N, P, D)``, tags ``(N, P, 50)``)
    of the trunks whose feature files carry them (:meth:`with_patches`);
    ``augmented``: name → per-patch outputs of ``K`` augmented copies of each
    track (penultimate ``(N, K, P, D)``, tags ``(N, K, P, 50)``; NaN for a
    track without copies, as every test track is); ``keep``: the patches per
    clip that ``features`` are pooled over (None: all).
    """

    tracks: list[Track]
    labels: list[str]
    y: np.ndarray                       # (N,) int64
    trunk: np.ndarray | None = None     # (N, 128, 6, T4) float16
    features: dict[str, np.ndarray] = field(default_factory=dict)
    patches: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    augmented: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    keep: int | None = None

    def subset(self, idx: np.ndarray) -> "SourceData":
        idx = np.asarray(idx, dtype=np.int64)
        return SourceData(tracks=[self.tracks[i] for i in idx], labels=self.labels, y=self.y[idx],
                          trunk=None if self.trunk is None else self.trunk[idx],
                          features={k: v[idx] for k, v in self.features.items()},
                          patches={k: (a[idx], b[idx]) for k, (a, b) in self.patches.items()},
                          augmented={k: (a[idx], b[idx]) for k, (a, b) in self.augmented.items()}, keep=self.keep)

    def with_patches(self, keep: int | None) -> "SourceData":
        """The same tracks with every per-patch trunk's features pooled over
        ``keep`` of each clip's patches (:func:`~core.models.trunks.patch_choice`),
        as a bank with ``patches=keep`` computes them."""
        from core.models.trunks import pool_clips

        feats = dict(self.features)
        for name, (pen, tags) in self.patches.items():
            f, t = pool_clips(pen, tags, keep)
            feats[name] = np.concatenate([f, t], axis=1).astype(np.float32)
        return SourceData(tracks=self.tracks, labels=self.labels, y=self.y, trunk=self.trunk,
                          features=feats, patches=self.patches, augmented=self.augmented, keep=keep)

    def augmented_copies(self, names: Sequence[str]) -> int:
        """How many augmented copies every trunk of ``names`` has (0: none)."""
        return min((self.augmented[n][0].shape[1] if n in self.augmented else 0 for n in names), default=0)

    def augmented_rows(self, names: Sequence[str], idx: np.ndarray, copies: int) -> tuple[np.ndarray, np.ndarray]:
        """Extra training rows: the first ``copies`` augmented copies of tracks
        ``idx`` that have them, ``names``' features pooled over the same patches
        as :attr:`features` → (``(M, ΣD)`` float32, labels ``(M,)``)."""
        from core.models.trunks import pool_clips

        idx = np.asarray(idx, dtype=np.int64)
        if copies <= 0 or len(idx) == 0:
            return np.zeros((0, self.stacked(names).shape[1]), np.float32), np.zeros(0, np.int64)
        if self.augmented_copies(names) < copies:
            raise FeatureSetError(f"{copies} augmented copies asked for, {self.augmented_copies(names)} at hand")
        has = np.logical_and.reduce([~np.isnan(self.augmented[n][0][idx, :copies, 0, 0]).any(1) for n in names])
        idx = idx[has]
        parts = []
        for n in names:
            pen, tags = (a[idx, :copies].reshape(-1, *a.shape[2:]) for a in self.augmented[n])   # (M·K, P, ·)
            f, t = pool_clips(pen, tags, self.keep)
            parts.append(np.concatenate([f, t], axis=1))
        return np.concatenate(parts, axis=1).astype(np.float32), np.repeat(self.y[idx], copies)

    def patch_rows(self, names: Sequence[str], idx: np.ndarray, copies: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Per-patch rows of tracks ``idx`` and of their first ``copies``
        augmented copies (those :meth:`augmented_rows` takes): per trunk of
        ``names``, the penultimate layer and the tags of each kept patch side
        by side → (``(M, P, W)`` float32, labels ``(M,)``), the row order of
        :meth:`stacked` ``[idx]`` then :meth:`augmented_rows`."""
        from core.models.trunks import patch_choice

        idx = np.asarray(idx, dtype=np.int64)
        missing = [n for n in names if n not in self.patches]
        if missing:
            raise FeatureSetError(f"no per-patch features for {', '.join(missing)}")
        sel = patch_choice(self.patches[names[0]][0].shape[1], self.keep)
        own = np.concatenate([np.concatenate([pen[idx][:, sel], tags[idx][:, sel]], axis=2)
                              for pen, tags in (self.patches[n] for n in names)], axis=2)
        rows, y = [own], [self.y[idx]]
        if copies > 0 and len(idx):
            if self.augmented_copies(names) < copies:
                raise FeatureSetError(f"{copies} augmented copies asked for, {self.augmented_copies(names)} at hand")
            has = np.logical_and.reduce([~np.isnan(self.augmented[n][0][idx, :copies, 0, 0]).any(1) for n in names])
            aug = idx[has]
            rows.append(np.concatenate([np.concatenate([a[aug, :copies][:, :, sel].reshape(-1, len(sel), a.shape[-1])
                                                        for a in self.augmented[n]], axis=2) for n in names], axis=2))
            y.append(np.repeat(self.y[aug], copies))
        return np.concatenate(rows).astype(np.float32), np.concatenate(y)

    def patch_columns(self, names: Sequence[str]) -> np.ndarray:
        """``(W,)``: the column of :meth:`stacked` that holds the patch mean of
        each per-patch column of :meth:`patch_rows` (per trunk: the pooled
        features are [mean, max] of the penultimate layer, then the mean tags)."""
        cols, off = [], 0
        for n in names:
            d, t = self.patches[n][0].shape[2], self.patches[n][1].shape[2]
            if self.features[n].shape[1] != 2 * d + t:
                raise FeatureSetError(f"{n}: pooled width {self.features[n].shape[1]} is not 2·{d} + {t}")
            cols += [off + np.arange(d), off + 2 * d + np.arange(t)]
            off += self.features[n].shape[1]
        return np.concatenate(cols)

    def stacked(self, names: Sequence[str]) -> np.ndarray:
        """Features of ``names`` side by side, ``(N, ΣD)``."""
        missing = [n for n in names if n not in self.features]
        if missing:
            raise FeatureSetError(f"no features for {', '.join(missing)}")
        return np.concatenate([self.features[n] for n in names], axis=1)


def frozen_msd_features(trunk: np.ndarray, labels: list[str], batch: int = 32) -> np.ndarray:
    """Trunk outputs ``(N, 128, 6, T4)`` → frozen MSD-VGG clip features ``(N, 306)``
    (pool-5 mean, pool-5 max, mean of the 50 MSD tags), pretrained weights only."""
    from core.models.transfer import CNNMSD

    m = CNNMSD(labels).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(trunk), batch):
            out.append(m.embed_trunk(torch.from_numpy(trunk[i: i + batch].astype(np.float32))).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, m.embedding_dim), np.float32)


def read_trunk_file(path: str | Path, track_ids: Sequence[str]
                    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """One read of a trunk's feature file (an ``.npz`` with ``track_id``,
    ``features`` ``(N, D)``, ``tags`` ``(N, 50)`` and, from ``trunk-features``,
    ``patch_features`` ``(N, P, D)``, ``patch_tags`` ``(N, P, 50)``), in the order
    of ``track_ids``: (``features`` ‖ ``tags`` ``(n, D + 50)``, the per-patch pair
    or None). A file written with another level step is refused (:func:`check_level`)."""
    with np.load(path, allow_pickle=False) as z:
        check_level(z, path)
        pos = {str(t): i for i, t in enumerate(z["track_id"])}
        missing = [t for t in track_ids if t not in pos]
        if missing:
            raise FeatureSetError(f"{Path(path).name} lacks {len(missing)} track(s), e.g. {missing[0]}")
        rows = [pos[t] for t in track_ids]
        feats = np.concatenate([z["features"], z["tags"]], axis=1)[rows].astype(np.float32)
        per_patch = ((z["patch_features"][rows].astype(np.float32), z["patch_tags"][rows].astype(np.float32))
                     if "patch_features" in z.files and "patch_tags" in z.files else None)
    return feats, per_patch


def check_level(z, path: str | Path) -> None:
    """Refuse a feature file whose bank applied another level step than
    MSD_FEATURES' (its ``key``; :func:`~core.models.trunks.key_level`): its
    vectors are not what the served models compute now."""
    from core.models.msd import MSD_FEATURES
    from core.models.trunks import key_level
    if "key" in z.files and key_level(str(z["key"])) != MSD_FEATURES.level_db:
        raise FeatureSetError(f"{Path(path).name} was written with another level step "
                              f"({z['key']}); run `python -m core trunk-features` again")


def read_trunk_files(feature_dir: str | Path, names: Sequence[str], track_ids: Sequence[str],
                     need_patches: bool = False) -> tuple[dict[str, np.ndarray], dict[str, tuple]]:
    """Each trunk of ``names``' file ``<feature_dir>/<name>.npz`` (``python -m
    core trunk-features``) read once (:func:`read_trunk_file`) → (name →
    ``features`` ‖ ``tags`` ``(n, D + 50)``, name → per-patch pair for the
    files that have one). A missing file, or with ``need_patches`` a file
    without per-patch features, raises :class:`FeatureSetError`."""
    features, patches = {}, {}
    for n in names:
        path = Path(feature_dir) / f"{n}.npz"
        if not path.is_file():
            raise FeatureSetError(f"no trunk features at {path}; run `python -m core trunk-features "
                                  f"--out {feature_dir}`")
        features[n], pp = read_trunk_file(path, track_ids)
        if pp is not None:
            patches[n] = pp
        elif need_patches:
            raise FeatureSetError(f"{n}.npz in {feature_dir} has no per-patch features; run `python -m core "
                                  "trunk-features` again")
    return features, patches


def read_feature_file(path: str | Path, track_ids: Sequence[str]) -> np.ndarray:
    """``features`` ‖ ``tags`` of ``path`` in the order of ``track_ids`` (:func:`read_trunk_file`)."""
    return read_trunk_file(path, track_ids)[0]


def read_patch_file(path: str | Path, track_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """The per-patch pair of ``path`` (:func:`read_trunk_file`), or None when the file has none."""
    return read_trunk_file(path, track_ids)[1]


def load_source_data(dirs: Sequence[str | Path], cache_root: str | Path,
                     extra_features: str | Path | None = None, workers: int = 2) -> SourceData:
    """Read the folders, their MSD log-mels and trunk outputs (cached under
    ``cache_root``), the frozen MSD-VGG features and every ``*.npz`` in
    ``extra_features`` (when given and present). Labels: the train split's genres."""
    from core.models.msd import MSD_FEATURES
    from core.models.transfer import CNNMSD
    from core.training.train import load_labelled, trunk_features

    tracks = read_datasets(dirs)
    labels = genres_of([t for t in tracks if t.split == "train"])
    cache = LogMelCache(MSD_FEATURES, Path(cache_root) / "logmel")
    data = load_labelled(tracks, labels, cache, workers=workers, desc="MSD log-mels")
    trunk = trunk_features(CNNMSD(labels), data, Path(cache_root) / "logmel", served=True)
    del data.mels
    ids = [t.track_id for t in data.tracks]
    feats = {MSD_VGG: frozen_msd_features(trunk, labels)}
    per_patch, augmented = {}, {}
    if extra_features and Path(extra_features).is_dir():
        for p in sorted(Path(extra_features).glob("*.npz")):
            if p.stem != MSD_VGG:
                try:
                    feats[p.stem], pp = read_trunk_file(p, ids)
                except (FeatureSetError, KeyError, OSError, ValueError):
                    continue
                if pp is not None:
                    per_patch[p.stem] = pp
        for p in sorted((Path(extra_features) / "augmented").glob("*.npz")):
            if p.stem in feats:
                try:
                    augmented[p.stem] = read_augmented_file(p, ids)
                except (KeyError, OSError, ValueError):     # unreadable: its copies are not offered
                    continue
    return SourceData(tracks=data.tracks, labels=labels, y=data.y, trunk=trunk, features=feats,
                      patches=per_patch, augmented=augmented)


def read_augmented_file(path: str | Path, track_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """An augmented-copies file (:func:`core.models.trunk_cache.write_augmented_features`)
    in the order of ``track_ids``: (penultimate ``(n, K, P, D)``, tags
    ``(n, K, P, 50)``) float32, NaN for the tracks it has no copies of
    (refused when written with another level step: :func:`check_level`)."""
    with np.load(path, allow_pickle=False) as z:
        check_level(z, path)
        pos = {str(t): i for i, t in enumerate(z["track_id"])}
        pen, tags = z["patch_features"], z["patch_tags"]
        out = tuple(np.full((len(track_ids),) + a.shape[1:], np.nan, np.float32) for a in (pen, tags))
        for j, t in enumerate(track_ids):
            if t in pos:
                out[0][j], out[1][j] = pen[pos[t]], tags[pos[t]]
    return out
