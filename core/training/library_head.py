"""The default model's genre head adapted to a music library without a label
of it: self-training (:mod:`core.training.self_train`) with the training rows
replaced by a per-genre Gaussian replay of them, so a served head can adapt
where the training data is not at hand (README, "Adapting the genre head to
your library").

:class:`GenreReplay` keeps, per genre, the mean of its training patch rows,
their top principal directions and the variance left over; :meth:`~GenreReplay.sample`
draws as many rows per genre as there were. A head refitted on a draw
reproduces the one fitted on the rows, leave-one-source-out, within noise
(``python -m benchmarks.self_train_probe --method replay``). Aggregates only:
no track can be read back from it. It ships as ``<artifacts>/fused_trunks_replay.safetensors``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from core.config import AdaptConfig
from core.errors import ArtifactError, GenreError
from core.training.linear_head import LinearHead, fit_linear_head
from core.training.self_train import Refit, self_train

REPLAY_FILE = "fused_trunks_replay.safetensors"


class LibraryError(GenreError, ValueError):
    """The library cannot be adapted to."""


@dataclass(frozen=True)
class GenreReplay:
    """Per-genre Gaussians of a head's training patch rows, on ``columns`` of the clip vectors.

    ``mean`` ``(G, W)``; ``components`` ``(G, K, W)``: the top-``K`` principal
    directions scaled by their standard deviations; ``residual`` ``(G, W)``: the
    standard deviation left per column; ``count`` ``(G,)``: training rows per
    genre (0: a genre never seen); ``columns`` ``(W,)``; ``patches``: rows per
    clip; ``c``: the head's L2 C; ``logit_scale`` ``(G,)``: the calibration an
    adapted head gets (fitted leave-one-source-out on adapted heads)."""

    mean: np.ndarray
    components: np.ndarray
    residual: np.ndarray
    count: np.ndarray
    columns: np.ndarray
    patches: int
    c: float
    logit_scale: np.ndarray

    def sample(self, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """A draw of ``count[g]`` rows per genre → (rows ``(Σ count, W)``, genres ``(Σ count,)``)."""
        rng = np.random.default_rng(seed)
        rows, genres = [np.zeros((0, self.mean.shape[1]))], [np.zeros(0, np.int64)]
        for g in np.flatnonzero(self.count):
            n, k = int(self.count[g]), self.components.shape[1]
            noise = rng.standard_normal((n, k)) @ self.components[g]
            rows.append(self.mean[g] + noise + rng.standard_normal((n, self.mean.shape[1])) * self.residual[g])
            genres.append(np.full(n, g))
        return np.concatenate(rows), np.concatenate(genres)


def fit_replay(rows: np.ndarray, y: np.ndarray, n_genres: int, columns: np.ndarray, patches: int, c: float,
               rank: int = AdaptConfig.rank, logit_scale: np.ndarray | None = None) -> GenreReplay:
    """The :class:`GenreReplay` of patch rows ``(M, W)`` labelled ``y`` ``(M,)``."""
    rows = np.asarray(rows, np.float64)
    w = rows.shape[1]
    mean, resid = np.zeros((n_genres, w)), np.zeros((n_genres, w))
    comps, count = np.zeros((n_genres, rank, w)), np.zeros(n_genres, np.int64)
    for g in np.unique(y):
        r = rows[y == g]
        d = r - r.mean(0)
        _, s, vt = np.linalg.svd(d / np.sqrt(max(len(r) - 1, 1)), full_matrices=False)
        k = min(rank, len(s))
        comps[g, :k] = vt[:k] * s[:k, None]
        mean[g], count[g] = r.mean(0), len(r)
        resid[g] = np.sqrt(np.maximum(d.var(0, ddof=1 if len(r) > 1 else 0) - (comps[g] ** 2).sum(0), 1e-10))
    scale = np.ones(n_genres) if logit_scale is None else np.asarray(logit_scale, np.float64)
    return GenreReplay(mean, comps, resid, count, np.asarray(columns, np.int64), int(patches), float(c), scale)


def replay_refit(replay: GenreReplay, rows: np.ndarray, genres: np.ndarray, width: int, seed: int = 0) -> LinearHead:
    """A head on a replay draw plus new rows ``(k, W)`` labelled ``genres``
    ``(k,)``, genres balanced over both, returned on clip vectors of ``width``
    (weight 0 off :attr:`GenreReplay.columns`); uncalibrated."""
    syn, sy = replay.sample(seed)
    head = fit_linear_head(np.concatenate([syn, rows]), np.concatenate([sy, genres]), len(replay.count), c=replay.c)
    cols = replay.columns
    mean, scale, weight = np.zeros(width), np.ones(width), np.zeros((len(replay.count), width))
    mean[cols], scale[cols], weight[:, cols] = head.mean, head.scale, head.weight
    return LinearHead(mean=mean, scale=scale, weight=weight, bias=head.bias)


def library_refit(replay: GenreReplay, clips: np.ndarray, seed: int = 0) -> Refit:
    """The refit of :func:`~core.training.self_train.self_train` on a library's
    clip vectors ``clips`` ``(N, F)``: each pseudo-labelled clip joins a replay
    draw as its patch-mean columns, weighted as its ``patches`` patches."""
    new = np.asarray(clips, np.float64)[:, replay.columns]

    def refit(rows: np.ndarray, genres: np.ndarray) -> LinearHead:
        return replay_refit(replay, np.repeat(new[rows], replay.patches, 0), np.repeat(genres, replay.patches),
                            clips.shape[1], seed)
    return refit


def adapt_head(head: LinearHead, replay: GenreReplay, clips: np.ndarray, cfg: AdaptConfig = AdaptConfig(),
               calibrate: bool = True) -> LinearHead:
    """``head`` self-trained on a library's clip vectors ``clips`` ``(N, F)``
    (:func:`~core.training.self_train.self_train`; each pseudo-labelled clip
    joins as its patch-mean columns, weighted as its ``patches`` patches),
    with ``replay``'s calibration folded in when ``calibrate``."""
    clips = np.asarray(clips, np.float64)
    if len(clips) < cfg.min_tracks:
        raise LibraryError(f"adapting needs at least {cfg.min_tracks} tracks, the library has {len(clips)}")
    last = self_train(head, clips, library_refit(replay, clips, cfg.seed), cfg.frac, cfg.rounds)[-1]
    if not calibrate:
        return last
    s = replay.logit_scale
    return LinearHead(mean=last.mean, scale=last.scale, weight=last.weight * s[:, None], bias=last.bias * s)


def save_replay(replay: GenreReplay, path: str | Path, meta: dict) -> Path:
    """Write ``replay`` as safetensors (no pickle), ``meta`` (str → JSON-able) in its header."""
    from safetensors.numpy import save_file

    tensors = {"mean": replay.mean.astype(np.float32), "components": replay.components.astype(np.float32),
               "residual": replay.residual.astype(np.float32), "count": replay.count.astype(np.int64),
               "columns": replay.columns.astype(np.int64), "logit_scale": replay.logit_scale.astype(np.float32)}
    header = {"patches": str(replay.patches), "c": repr(replay.c), "meta": json.dumps(meta, sort_keys=True)}
    save_file(tensors, str(path), metadata=header)
    return Path(path)


def load_replay(path: str | Path, trunks: Sequence[str] | None = None) -> GenreReplay:
    """Read :func:`save_replay`'s file; with ``trunks``, refuse one made for another trunk set."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
            t = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(header.get("meta", "{}"))
        replay = GenreReplay(t["mean"].astype(np.float64), t["components"].astype(np.float64),
                             t["residual"].astype(np.float64), t["count"], t["columns"], int(header["patches"]),
                             float(header["c"]), t["logit_scale"].astype(np.float64))
    except (OSError, KeyError, ValueError, SafetensorError) as e:
        raise ArtifactError(f"{path}: not a genre replay file ({e})") from e
    if trunks is not None and list(meta.get("trunks", [])) != list(trunks):
        raise ArtifactError(f"{path} was made for trunks {meta.get('trunks')}, not {list(trunks)}")
    return replay
