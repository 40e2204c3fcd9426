"""Second stage of the CRNN's training: its recurrent part on frozen conv features.

End-to-end training on the paper's 1366-frame window is slow on a CPU (one
epoch passes every clip through four conv layers at full resolution) and
stops, within its budget, with a GRU that is still far from done: on val the
GRU and genre layer retrained alone raise macro AUC by about 0.035. The conv
stack's output of each clip is a short sequence (``(C, T')``: 64 channels, 15
steps for 1366 frames), so it is computed once, by the copy that is served
(:func:`core.models.optimise.optimise_for_inference`), and the GRU layers and
the genre layer then train for many epochs on random crops of ``min_steps``
to ``T'`` steps of it (the GRU keeps seeing at least ``min_steps`` steps) in
seconds per epoch. Validation scores the full window exactly as served.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.config import TrainConfig
from core.models import GenreModel
from core.models.optimise import optimise_for_inference
from core.training.metrics import macro_auc, one_hot
from core.training.train import LabelledMels, Log, _epoch_batches, _loop, seed_everything
from core.training.wave_augment import mix_batch


def conv_sequences(model: GenreModel, mels: np.ndarray, batch: int = 16,
                   fast: GenreModel | None = None) -> np.ndarray:
    """Log-mels ``(N, n_mels, n_frames)`` → the served copy's conv-stack output
    ``(N, T', C)`` float32, the sequence the CRNN's GRU reads (``fast``: that
    served copy when the caller already made it)."""
    fast = fast if fast is not None else optimise_for_inference(model)
    out = []
    with torch.inference_mode():
        for i in range(0, len(mels), batch):
            x = torch.from_numpy(mels[i: i + batch].astype(np.float32)).unsqueeze(1)
            out.append(fast.conv_sequence(x).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0, 0), np.float32)


def _recurrent_logits(model: GenreModel, seq: torch.Tensor) -> torch.Tensor:
    return model.classify_embedding(model.embed_sequence(seq))


def train_recurrent(model: GenreModel, train: LabelledMels, val: LabelledMels, labels: list[str],
                    cfg: TrainConfig, log: Log = print, min_steps: int = 12,
                    show_progress: bool = True,
                    aug_bank: np.ndarray | None = None) -> tuple[GenreModel, dict]:
    """Train ``model``'s GRU layers and genre layer (its conv stack and input
    norm frozen) on random crops of the conv sequences of ``train``; early
    stopping on val macro ROC-AUC of the full window. Returns the best model
    (CPU, eval mode) and its history (``stage2_*`` keys describe the stage).
    ``aug_bank`` ``(N, copies, n_mels, n_frames)``: waveform-augmented log-mels
    of ``train`` (:mod:`core.training.wave_augment`); a training item is read
    from one of its copies' sequences with probability ``cfg.wave_augment_p``."""
    if not hasattr(model, "gru"):
        raise ValueError(f"{model.name} has no recurrent layers to train")
    seed_everything(cfg.seed)
    # Batches of (16, ≤15, 64) are too small to share between threads: on a busy
    # 2-core machine two threads made an epoch ~100× slower than one.
    torch.set_num_threads(cfg.num_threads or 1)
    model.cpu().eval()
    with torch.no_grad():
        model.temperature.fill_(1.0)   # the head changes: calibration is refitted afterwards
    fast = optimise_for_inference(model)      # the frozen conv stack, served once for every sequence
    seq_tr = conv_sequences(model, train.mels, fast=fast)
    seq_va = torch.from_numpy(conv_sequences(model, val.mels, fast=fast))
    seq_aug = None
    if aug_bank is not None:
        n, c = aug_bank.shape[:2]
        seq_aug = conv_sequences(model, aug_bank.reshape(n * c, *aug_bank.shape[2:]), fast=fast)
        seq_aug = seq_aug.reshape(n, c, *seq_aug.shape[1:])
    del fast
    steps = seq_tr.shape[1]
    if steps < min_steps:
        raise ValueError(f"the conv stack gives {steps} steps, fewer than min_steps={min_steps}")
    log(f"{model.name}: conv sequences {tuple(seq_tr.shape)} train, {tuple(seq_va.shape)} val")
    params = list(model.gru.parameters()) + list(model.head.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    loss_fn, gen, rng, targets, track, epochs = _loop(model.name, train, labels, cfg, log, show_progress)
    val_t = torch.from_numpy(one_hot(val.y, len(labels)))
    for epoch in epochs:
        model.train()
        model.convs.eval()
        model.input_bn.eval()
        losses = []
        for bi in _epoch_batches(train.y, cfg, rng):
            n = int(rng.integers(min_steps, steps + 1))
            s0 = rng.integers(0, steps - n + 1, len(bi))
            src = (seq_tr[bi] if seq_aug is None
                   else mix_batch(seq_tr, seq_aug, np.asarray(bi), cfg.wave_augment_p, rng))
            x = torch.from_numpy(np.stack([q[s: s + n] for q, s in zip(src, s0)]))
            if cfg.augment:
                x = nn.functional.dropout(x, cfg.feature_dropout, training=True)
            loss = loss_fn(_recurrent_logits(model, x), targets[bi])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            logits = _recurrent_logits(model, seq_va)
        probs = torch.softmax(logits, -1).numpy()
        val_loss = float(nn.functional.binary_cross_entropy_with_logits(logits, val_t))
        auc = macro_auc(val.y, probs)
        acc = float((probs.argmax(1) == val.y).mean())
        if track.end_epoch(model, epoch, losses, val_loss, auc, acc, opt.param_groups[0]["lr"]):
            break
    history = track.finish(model)
    history.update(stage="recurrent", stage2_min_steps=min_steps, stage2_steps=steps,
                   n_trained_parameters=sum(p.numel() for p in params))
    return model, history
