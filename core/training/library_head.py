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
from core.files import write_safetensors
from core.training.linear_head import LinearHead, fit_linear_head
from core.training.loso_data import SourceData
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
    """Write ``replay`` as safetensors (no pickle), ``meta`` (str → JSON-able)
    in its header's one key; the same replay and ``meta`` give the same bytes
    (:func:`~core.files.write_safetensors`)."""
    from safetensors.numpy import save

    tensors = {"mean": replay.mean.astype(np.float32), "components": replay.components.astype(np.float32),
               "residual": replay.residual.astype(np.float32), "count": replay.count.astype(np.int64),
               "columns": replay.columns.astype(np.int64), "logit_scale": replay.logit_scale.astype(np.float32)}
    header = {"patches": replay.patches, "c": replay.c, "meta": meta}
    return write_safetensors(path, save(tensors, metadata={"replay": json.dumps(header, sort_keys=True)}))


def replay_record(path: str | Path) -> dict:
    """The leave-one-source-out record :func:`ship_replay` wrote into ``path``'s
    header (the header alone is read: the page shows it on every run)."""
    return _read(path, tensors=False)[1]


def load_replay(path: str | Path, trunks: Sequence[str] | None = None) -> GenreReplay:
    """Read :func:`save_replay`'s file; with ``trunks``, refuse one made for another trunk set."""
    replay, meta = _read(path)
    if trunks is not None and list(meta.get("trunks", [])) != list(trunks):
        raise ArtifactError(f"{path} was made for trunks {meta.get('trunks')}, not {list(trunks)}")
    return replay


def _read(path: str | Path, tensors: bool = True) -> tuple[GenreReplay | None, dict]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            header = json.loads((f.metadata() or {})["replay"])
            t = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
        meta = header["meta"]
        if not tensors:
            return None, meta
        return GenreReplay(t["mean"].astype(np.float64), t["components"].astype(np.float64),
                           t["residual"].astype(np.float64), t["count"], t["columns"], int(header["patches"]),
                           float(header["c"]), t["logit_scale"].astype(np.float64)), meta
    except (OSError, KeyError, ValueError, SafetensorError) as e:
        raise ArtifactError(f"{path}: not a genre replay file ({e})") from e


def training_replay(data: SourceData, names: Sequence[str], form: str, idx: np.ndarray, c: float,
                    rank: int = AdaptConfig.rank, logit_scale: np.ndarray | None = None) -> GenreReplay:
    """The replay of the rows a head of ``form`` (``patch`` or ``clip``) is
    fitted on: tracks ``idx``' patch rows, or their clip vectors as single rows."""
    x = data.stacked(names)
    if form == "patch":
        rows, y = data.patch_rows(names, idx)
        cols = data.patch_columns(names)
    else:
        rows, y, cols = x[idx][:, None], data.y[idx], np.arange(x.shape[1])
    return fit_replay(rows.reshape(-1, rows.shape[-1]), np.repeat(y, rows.shape[1]), len(data.labels), cols,
                      rows.shape[1], c, rank, logit_scale)


def features_data(dirs: Sequence[str | Path], feature_dir: str | Path, names: Sequence[str],
                  labels: Sequence[str]) -> SourceData:
    """Every track of ``dirs`` with a genre of ``labels``, with ``names``'
    pooled and per-patch features read from ``feature_dir`` (``python -m core
    trunk-features``): no audio is decoded."""
    from core.datasets import read_datasets
    from core.training.loso_data import read_trunk_files

    tracks = [t for t in read_datasets(dirs, labelled_only=True) if t.genre in labels]
    features, patches = read_trunk_files(feature_dir, names, [t.track_id for t in tracks], need_patches=True)
    return SourceData(tracks=tracks, labels=list(labels), y=np.array([labels.index(t.genre) for t in tracks]),
                      features=features, patches=patches)


def ship_replay(data: SourceData, names: Sequence[str], form: str, c: float, out_dir: str | Path,
                cfg: AdaptConfig = AdaptConfig(), log=print, prior=None) -> dict:
    """Measure library adaptation leave-one-source-out and ship its replay.

    Per fold, the head of ``form`` at ``c`` fitted on two sources adapts to
    the third (:func:`adapt_head` on its replay); the temperature pooled over
    the folds' adapted logits is the shipped ``logit_scale``. The replay of
    the train split (the rows the shipped head is fitted on) goes to
    ``out_dir``/:data:`REPLAY_FILE`. With ``prior`` (a
    :class:`~core.training.tag_prior_choice.PriorSetting`), the served tag
    prior follows both heads (its statistics from the fold's training tracks)
    before they are scored and the temperature is fitted. Returns the LOSO
    record (also in the file's header)."""
    from core.training.loso import loso_folds
    from core.training.loso_eval import FoldLogits, fit_head, loso_report, seen_genres
    from core.training.metrics import mean_diff_ci
    from core.training.tag_prior_choice import PriorSetting, with_setting

    x = data.stacked(names)
    prior = prior or PriorSetting(tuple(names))
    plain, adapted = [], []
    for f in loso_folds(data.tracks):
        seen = seen_genres(data.y[f.train], data.y[f.val])
        base = fit_head(data, names, f.train, c, head=form)
        head = adapt_head(base, training_replay(data, names, form, f.train, c, cfg.rank), x[f.val], cfg,
                          calibrate=False)
        for out, h in ((plain, base), (adapted, head)):
            logits = h.logits(x[f.val])
            if prior.beta:
                logits = with_setting(logits, x[f.val], x[f.train], data.labels, prior)
            out.append(FoldLogits(f.held_out, logits, data.y[f.val], seen))
        acc = [float((fl.logits.argmax(1) == fl.y).mean()) for fl in (plain[-1], adapted[-1])]
        log(f"library adaptation, {f.held_out} held out: accuracy {acc[0]:.3f} -> {acc[1]:.3f}")
    report = loso_report(adapted)
    temperature = report["pooled_temperature"]
    right = [np.concatenate([fl.logits.argmax(1) == fl.y for fl in folds]).astype(float) for folds in (plain, adapted)]
    delta, ci = mean_diff_ci(right[1] - right[0], 2000, 0)
    record = {"trunks": list(names), "C": c, "head": form, "prior": prior.to_dict(),
              "config": {k: getattr(cfg, k) for k in ("frac", "rounds", "rank", "min_tracks")},
              "temperature": temperature, "plain": loso_report(plain), "adapted": report,
              "delta_accuracy": delta, "delta_ci95": ci, "tracks": len(right[0])}
    tr = np.flatnonzero([t.split == "train" for t in data.tracks])
    replay = training_replay(data, names, form, tr, c, cfg.rank, np.full(len(data.labels), 1.0 / temperature))
    save_replay(replay, Path(out_dir) / REPLAY_FILE, record)
    return record


def served_head(model) -> LinearHead:
    """A loaded :class:`~core.models.fused_trunks.FusedTrunks`' head as arrays,
    its temperature divided in (what its probabilities are a softmax of)."""
    t = float(model.temperature)
    return LinearHead(mean=model.feat_mean.double().numpy(), scale=model.feat_scale.double().numpy(),
                      weight=model.head.weight.detach().double().numpy() / t,
                      bias=model.head.bias.detach().double().numpy() / t)


def adapt_served(model, embedding: np.ndarray, artifacts_dir: str | Path,
                 cfg: AdaptConfig = AdaptConfig()) -> tuple[np.ndarray, np.ndarray]:
    """The served default model adapted to a library whose tracks it embedded
    as ``embedding`` ``(N, F)`` (its standardised vectors, as an index keeps
    them) → (plain logits, adapted logits), both ``(N, G)`` and calibrated."""
    from core.models.artifacts import verify

    path = Path(artifacts_dir) / REPLAY_FILE
    if not path.exists():
        raise ArtifactError(f"{path} is missing: run `python -m core adapt --ship` (or `make artifacts`)")
    verify(path, Path(artifacts_dir))        # the manifest's SHA-256, as every model file is checked
    replay = load_replay(path, trunks=list(model.trunks))
    head = served_head(model)
    x = np.asarray(embedding, np.float64) * head.scale + head.mean
    if not model.prior.on:
        return head.logits(x), adapt_head(head, replay, x, cfg).logits(x)
    # The tag prior follows the head, then the calibration: the model's for the
    # plain head, the replay's (fitted on adapted heads with the prior) for the adapted one.
    import torch

    adapted = adapt_head(head, replay, x, cfg, calibrate=False)
    with torch.inference_mode():
        xt = torch.from_numpy(x)
        return (model.prior(torch.from_numpy(head.logits(x)), xt).numpy(),
                model.prior(torch.from_numpy(adapted.logits(x)), xt, torch.from_numpy(replay.logit_scale)).numpy())
