"""Training loop: random chunks of cached log-mels, Adam + BCE, early
stopping on validation macro ROC-AUC, best checkpoint kept."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from core.audio.cache import LogMelCache, atomic_save_npy, content_hash
from core.audio.features import random_chunks
from core.config import FeatureConfig, Paths, TrainConfig
from core.datasets import Track
from core.models import GenreModel, build_model
from core.models.optimise import optimise_for_inference
from core.training.metrics import macro_auc, one_hot
from core.training.wave_augment import mix_batch

Log = Callable[[str], None]


@dataclass
class LabelledMels:
    """Cached log-mels of a list of tracks with their label indices."""

    tracks: list[Track]
    mels: np.ndarray            # (N, n_mels, n_frames) float16
    y: np.ndarray               # (N,) int64 label indices
    skipped: list[str] = field(default_factory=list)   # one-line reasons

    def __len__(self) -> int:
        return len(self.tracks)


def load_labelled(tracks: Sequence[Track], labels: list[str], cache: LogMelCache,
                  workers: int = 2, desc: str = "log-mel") -> LabelledMels:
    """Log-mels (from the cache, decoding misses) for tracks whose genre is in
    ``labels``; unreadable files are skipped with their reason."""
    index = {g: i for i, g in enumerate(labels)}
    keep = [t for t in tracks if t.genre in index]
    bar = tqdm(total=len(keep), desc=desc, unit="track", leave=False, disable=None)

    def progress(done: int, total: int) -> None:
        bar.n = done
        bar.refresh()

    mels, errors = cache.logmels([t.path for t in keep], progress=progress, workers=workers)
    bar.close()
    ok = [i for i, e in enumerate(errors) if e is None]
    return LabelledMels(tracks=[keep[i] for i in ok], mels=mels[ok],
                        y=np.array([index[keep[i].genre] for i in ok], dtype=np.int64),
                        skipped=[e for e in errors if e])


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Label-preserving log-mel augmentation that also blurs recording source:
    random gain, random spectral tilt (an EQ slope), one frequency mask and one
    time mask (SpecAugment, Park et al. 2019)."""
    b, _, m, t = x.shape
    u = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    gain = (u(b, 1, 1, 1) - 0.5) * 0.3                      # ±6 dB in scaled units
    tilt = (u(b, 1, 1, 1) - 0.5) * 0.3 * torch.linspace(-1, 1, m).view(1, 1, m, 1)
    x = x + gain + tilt
    for i in range(b):
        f = int(u(1) * 12)
        f0 = int(u(1) * (m - f))
        x[i, :, f0: f0 + f, :] = x[i].mean()
        w = int(u(1) * t * 0.125)
        t0 = int(u(1) * (t - w))
        x[i, :, :, t0: t0 + w] = x[i].mean()
    return x


def predict_mels(model: GenreModel, mels: np.ndarray, batch: int = 8,
                 hop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Window-averaged probabilities and embeddings of cached log-mels
    ``(N, n_mels, n_frames)``, from the copy of ``model`` that is served
    (:func:`~core.models.optimise.optimise_for_inference`): validation and
    the recommender's evaluation measure what the app and the index compute."""
    model = optimise_for_inference(model)   # a copy; ``model`` itself is untouched
    probs, embs = [], []
    for i in range(0, len(mels), batch):
        x = torch.from_numpy(mels[i: i + batch].astype(np.float32)).unsqueeze(1)
        p = model.predict_logmel(x, hop=hop)
        probs.append(p.probs)
        embs.append(p.embedding)
    if not probs:
        return np.zeros((0, len(model.labels))), np.zeros((0, model.embedding_dim))
    return np.concatenate(probs), np.concatenate(embs)


def _epoch_batches(y: np.ndarray, cfg: TrainConfig, rng: np.random.Generator):
    """One epoch of genre-balanced index batches (``chunks_per_track`` draws per track)."""
    idx = _balanced_indices(y, len(y) * cfg.chunks_per_track, rng)
    for i in range(0, len(idx), cfg.batch_size):
        yield idx[i: i + cfg.batch_size]


def _balanced_indices(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` indices so every genre is equally likely (rare genres repeat)."""
    classes = np.unique(y)
    per = {c: np.flatnonzero(y == c) for c in classes}
    cls = rng.choice(classes, size=n)
    return np.array([rng.choice(per[c]) for c in cls])


class _Progress:
    """History, best-on-validation checkpoint and stopping rules shared by
    both training loops."""

    def __init__(self, name: str, cfg: TrainConfig, log: Log):
        self.name, self.cfg, self.log = name, cfg, log
        self.history: dict[str, list] = {"epoch": [], "train_loss": [], "val_loss": [], "val_auc": [],
                                         "val_accuracy": [], "lr": [], "seconds": []}
        self.best_auc, self.best_state, self.best_epoch, self.stale = -math.inf, None, 0, 0
        self.start = time.time()

    def end_epoch(self, model: GenreModel, epoch: int, losses: list[float], val_loss: float,
                  auc: float, acc: float, lr: float) -> bool:
        """Record one epoch; True when training should stop."""
        elapsed = time.time() - self.start
        for k, v in (("epoch", epoch), ("train_loss", float(np.mean(losses))), ("val_loss", val_loss),
                     ("val_auc", auc), ("val_accuracy", acc), ("lr", lr), ("seconds", elapsed)):
            self.history[k].append(v)
        if auc > self.best_auc:
            self.best_auc, self.best_epoch, self.stale = auc, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.stale += 1
        self.log(f"{self.name} epoch {epoch}: loss {np.mean(losses):.4f} val_loss {val_loss:.4f} "
                 f"val_auc {auc:.4f} val_acc {acc:.3f} ({elapsed:.0f} s)")
        if self.stale >= self.cfg.patience:
            self.log(f"{self.name}: early stop at epoch {epoch} (best {self.best_epoch})")
            return True
        if self.cfg.max_minutes and elapsed > self.cfg.max_minutes * 60:
            self.log(f"{self.name}: time budget of {self.cfg.max_minutes} min reached at epoch {epoch}")
            return True
        return False

    def finish(self, model: GenreModel) -> dict:
        """Restore the best checkpoint (on the CPU, eval mode); the history."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        model.cpu().eval()
        self.history.update(best_epoch=self.best_epoch, best_val_auc=self.best_auc,
                            train_seconds=time.time() - self.start, n_parameters=model.n_parameters())
        return self.history


def _loop(name: str, train: LabelledMels, labels: list[str], cfg: TrainConfig, log, show_progress: bool):
    """What both training loops start from: the loss (sigmoid output + binary
    cross-entropy, computed stably on logits), the seeded torch and numpy
    generators, one-hot targets, the progress / early-stopping tracker and
    the epoch bar."""
    epochs = tqdm(range(1, cfg.epochs + 1), desc=f"train {name}", unit="epoch",
                  disable=None if show_progress else True)
    return (nn.BCEWithLogitsLoss(), torch.Generator().manual_seed(cfg.seed), np.random.default_rng(cfg.seed),
            torch.from_numpy(one_hot(train.y, len(labels))), _Progress(name, cfg, log), epochs)


def train_model(name: str, train: LabelledMels, val: LabelledMels, labels: list[str],
                feat: FeatureConfig, cfg: TrainConfig, log: Log = print,
                show_progress: bool = True,
                aug_bank: np.ndarray | None = None) -> tuple[GenreModel, dict]:
    """Train one model; returns the best-on-validation model and its history.
    ``aug_bank`` ``(N, copies, n_mels, n_frames)``: waveform-augmented log-mels
    of ``train`` (:func:`core.training.wave_augment.augmented_bank`), swapped
    in with probability ``cfg.wave_augment_p``."""
    seed_everything(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    dev = resolve_device(cfg.device)
    model = build_model(name, labels, feat)
    if cfg.init_from:
        from safetensors.torch import load_file

        model.load_saved_state(load_file(cfg.init_from))
        log(f"{name}: continuing from {cfg.init_from}")
    model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas),
                           weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=4)
    loss_fn, gen, rng, targets, track, epochs = _loop(name, train, labels, cfg, log, show_progress)
    for epoch in epochs:
        model.train()
        losses = []
        for bi in _epoch_batches(train.y, cfg, rng):
            mels = train.mels[bi] if aug_bank is None else mix_batch(
                train.mels, aug_bank, bi, cfg.wave_augment_p, rng)
            x = torch.from_numpy(mels.astype(np.float32)).unsqueeze(1)
            x = random_chunks(x, feat.chunk_frames, gen)
            if cfg.augment:
                x = augment(x, gen)
            loss = loss_fn(model(x.to(dev)), targets[bi].to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        # Sparse windows (4 per clip): validation only selects the checkpoint, so a
        # third of the inference cost buys nearly the same ranking.
        probs, _ = predict_mels(model, val.mels, hop=2 * feat.chunk_frames)
        val_t = torch.from_numpy(one_hot(val.y, len(labels)))
        val_loss = float(nn.functional.binary_cross_entropy(
            torch.from_numpy(probs).float().clamp(1e-6, 1 - 1e-6), val_t))
        auc = macro_auc(val.y, probs)
        acc = float((probs.argmax(1) == val.y).mean())
        sched.step(auc)
        epochs.set_postfix(loss=f"{np.mean(losses):.3f}", val_auc=f"{auc:.3f}", val_acc=f"{acc:.2f}")
        if track.end_epoch(model, epoch, losses, val_loss, auc, acc, opt.param_groups[0]["lr"]):
            break
    return model, track.finish(model)


# -- transfer learning: heads on a frozen MSD-VGG trunk ---------------------

def trunk_features(model: GenreModel, data: LabelledMels, cache_root: str | Path | None = None,
                   batch: int = 4, desc: str = "MSD trunk", served: bool = False) -> np.ndarray:
    """Frozen-trunk outputs ``(N, 128, 6, T4)`` float16 of ``data``'s log-mels,
    computed once per track and trunk (cached on disk by content hash and
    :meth:`trunk_key`), so every epoch and every head reuses them.
    ``served``: from the served copy (bfloat16 where the CPU has it, what the
    app and the index compute), cached apart under ``trunk_served``."""
    # float32 unless served: the cache (keyed by trunk_key) holds the exact trunk outputs.
    fast = optimise_for_inference(model, bfloat16=None if served else False)
    key = model.trunk_key().replace(":", "_")
    if served:
        key += "-bf16" if fast._bfloat16 else "-fp32"
    root = Path(cache_root or Paths().cache).parent / ("trunk_served" if served else "trunk") / key
    out: list[np.ndarray | None] = []
    todo: list[int] = []
    digests = [content_hash(t.path) for t in data.tracks]
    for i, d in enumerate(digests):
        p = root / f"{d}.npy"
        try:
            out.append(np.load(p, allow_pickle=False) if p.is_file() else None)
        except (OSError, ValueError):
            out.append(None)
        if out[-1] is None:
            todo.append(i)
    for s in tqdm(range(0, len(todo), batch), desc=desc, unit="batch", leave=False, disable=None):
        idx = todo[s: s + batch]
        x = torch.from_numpy(data.mels[idx].astype(np.float32)).unsqueeze(1)
        with torch.inference_mode():
            f = fast.trunk_features(x).float().numpy().astype(np.float16)
        for j, i in enumerate(idx):
            out[i] = f[j]
            atomic_save_npy(root / f"{digests[i]}.npy", f[j])
    return np.stack(out) if out else np.zeros((0,), np.float16)


def train_transfer(name: str, train: LabelledMels, val: LabelledMels, labels: list[str],
                   cfg: TrainConfig, log: Log = print, cache_root: str | Path | None = None,
                   show_progress: bool = True, model_kwargs: dict | None = None,
                   feats: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[GenreModel, dict]:
    """Train the head of an MSD-VGG model (``cnn_msd`` / ``crnn_msd``) on
    cached trunk features: random ``train_steps`` crops, feature dropout,
    balanced genres, Adam + BCE (the paper's loss), early stopping on val
    macro ROC-AUC. Pretrained layers outside the trunk (conv 5) learn at
    ``cfg.lr · cfg.pretrained_lr_scale``."""
    seed_everything(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    dev = resolve_device(cfg.device)
    model = build_model(name, labels, **(model_kwargs or {}))
    if feats is None:
        feats = (trunk_features(model, train, cache_root, desc="train trunk"),
                 trunk_features(model, val, cache_root, desc="val trunk"))
    ftr, fva = feats
    model.to(dev)
    log(f"{name}: trunk features {ftr.shape} train, {fva.shape} val")
    pre = tuple(model.pretrained_prefixes) or ("\0",)
    pretrained = [p for n, p in model.named_parameters() if n.startswith(pre) and p.requires_grad]
    fresh = [p for n, p in model.named_parameters()
             if not n.startswith(pre + ("trunk",)) and p.requires_grad]
    groups = [{"params": fresh, "lr": cfg.lr}]
    if pretrained and cfg.pretrained_lr_scale > 0:
        groups.append({"params": pretrained, "lr": cfg.lr * cfg.pretrained_lr_scale})
    elif pretrained:
        for p in pretrained:
            p.requires_grad_(False)
    opt = torch.optim.Adam(groups, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    loss_fn, gen, rng, targets, track, epochs = _loop(name, train, labels, cfg, log, show_progress)
    val_feats = torch.from_numpy(fva.astype(np.float32))
    steps, t4 = model.train_steps, ftr.shape[-1]
    for epoch in epochs:
        model.train()
        losses = []
        for bi in _epoch_batches(train.y, cfg, rng):
            s0 = torch.randint(0, max(t4 - steps, 0) + 1, (len(bi),), generator=gen).tolist()
            x = torch.stack([torch.from_numpy(ftr[b, ..., s: s + steps].astype(np.float32))
                             for b, s in zip(bi, s0)])
            x = x.to(dev)
            if cfg.augment:
                x = nn.functional.dropout(x, cfg.feature_dropout, training=True)
            loss = loss_fn(model.classify_embedding(model.embed_trunk(x)), targets[bi].to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        pred = model.predict_trunk(val_feats)
        val_t = torch.from_numpy(one_hot(val.y, len(labels)))
        val_loss = float(nn.functional.binary_cross_entropy(
            torch.from_numpy(pred.sigmoid).float().clamp(1e-6, 1 - 1e-6), val_t))
        auc = macro_auc(val.y, pred.probs)
        acc = float((pred.probs.argmax(1) == val.y).mean())
        epochs.set_postfix(loss=f"{np.mean(losses):.3f}", val_auc=f"{auc:.3f}", val_acc=f"{acc:.2f}")
        if track.end_epoch(model, epoch, losses, val_loss, auc, acc, opt.param_groups[0]["lr"]):
            break
    history = track.finish(model)
    history["n_trained_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, history
