"""The fine-tuning loop of the MSD_musicnn probes, in torch and numpy alone
(so it runs on a bare GPU machine): :class:`Tail` (the checkpoint after its
front end, or the whole of it, plus a new genre layer), :func:`trainable`
(which pretrained layers a mode trains) and :func:`train_fold` (one fold's
training, held-out logits per epoch, penultimate layer at chosen epochs).

``benchmarks.finetune_probe`` runs it on the CPU over cached front-end
outputs; ``benchmarks.front_probe`` on a GPU over log-mel patches, front
end included.
"""

from __future__ import annotations

import copy
import time
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MODES = ("head", "back", "mid+back", "all")
PEN = 200                    # MSD_musicnn's penultimate layer

# (clip rows (n,), patch indices (n,)) → the inputs of those patches, a float32 tensor on the training device
Batch = Callable[[np.ndarray, np.ndarray], torch.Tensor]


class Tail(nn.Module):
    """MSD_musicnn with a new genre layer → (penultimate ``(B, 200)``, genre
    logits ``(B, G)``). ``from_input`` False: it starts after the front end
    (input ``(B, 561, T)``; mid end, pooled batch norm, dense, its batch norm
    from the checkpoint); True: at the log-mel patch ``(B, 1, 96, T)``, front
    end included."""

    def __init__(self, net: nn.Module, n_genres: int, dropout: float = 0.5, from_input: bool = False):
        super().__init__()
        self.net = copy.deepcopy(net)
        self.genre = nn.Linear(PEN, n_genres)
        self.dropout = dropout
        self.from_input = from_input

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        front = self.net.front(x) if self.from_input else x
        pen = self.net.dense_bn(F.relu(self.net.dense(self.net.pool_bn(self.net.pooled(front)))))
        return pen, self.genre(F.dropout(pen, self.dropout, self.training))

    def train(self, mode: bool = True) -> "Tail":
        super().train(mode)
        for m in self.modules():                # the checkpoint's statistics stay
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self


def trainable(tail: Tail, mode: str) -> list[nn.Parameter]:
    """The pretrained parameters ``mode`` trains, and only those require a
    gradient (the genre layer always trains; batch norms never do). ``all``
    adds the front end's convolutions and needs a ``from_input`` tail."""
    if mode == "all" and not tail.from_input:
        raise ValueError("mode 'all' trains the front end: the tail must start at the log-mel patch")
    net = tail.net
    mid = [block.conv for block in net.mid]
    front = [block.conv for block in (*net.timbral, *net.temporal)]
    layers = {"head": [], "back": [net.dense], "mid+back": [net.dense, *mid],
              "all": [net.dense, *mid, *front]}[mode]
    for q in net.parameters():
        q.requires_grad_(False)
    params = [q for layer in layers for q in layer.parameters()]
    for q in params:
        q.requires_grad_(True)
    return params


def balanced_weight(y: np.ndarray, n_genres: int) -> torch.Tensor:
    """``(G,)`` class weights that give every genre of ``y`` the same total (0 for absent ones)."""
    counts = np.bincount(y, minlength=n_genres).astype(np.float64)
    return torch.tensor(np.where(counts > 0, len(y) / (n_genres * np.maximum(counts, 1)), 0.0),
                        dtype=torch.float32)


@torch.no_grad()
def clip_outputs(tail: Tail, batch_of: Batch, rows: np.ndarray, patches: int, batch: int = 20
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Clips ``rows`` → (penultimate layer per patch ``(n, P, 200)``, mean
    genre logits over patches ``(n, G)`` float64)."""
    tail.eval()
    pens, logits = [], []
    for s in range(0, len(rows), batch):
        r = rows[s: s + batch]
        pen, lg = tail(batch_of(np.repeat(r, patches), np.tile(np.arange(patches), len(r))))
        pens.append(pen.view(len(r), patches, -1).float().cpu().numpy())
        logits.append(lg.view(len(r), patches, -1).mean(1).float().cpu().numpy())
    return np.concatenate(pens), np.concatenate(logits).astype(np.float64)


def train_fold(net: nn.Module, n_genres: int, mode: str, batch_of: Batch, patches: int,
               train_rows: np.ndarray, y_train: np.ndarray, val_rows: np.ndarray, all_rows: np.ndarray,
               epochs: int, lr: float, combine: Sequence[int] = (), *, from_input: bool = False,
               device: str | torch.device = "cpu", seed: int = 0, batch: int = 64,
               log: Callable[[int, np.ndarray, float, float], None] | None = None) -> dict:
    """A :class:`Tail` of ``net`` (its genre layer seeded by ``seed``) trained
    on ``device`` on every patch of clips ``train_rows`` (labels ``y_train``):
    genre-balanced cross-entropy, Adam (1e-3 for the genre layer, ``lr`` for
    what ``mode`` trains, weight decay 1e-4).

    Returns ``{"logits": [per epoch: held-out mean logits (len(val_rows), G)],
    "features": {epoch: penultimate layer of ``all_rows`` (n, P, 200)}}`` (at
    the ``combine`` epochs); ``log(epoch, logits, wall s, CPU s)`` after each epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tail = Tail(net, n_genres, from_input=from_input).to(device)
    params = trainable(tail, mode)
    groups = [{"params": tail.genre.parameters(), "lr": 1e-3}] + ([{"params": params, "lr": lr}] if params else [])
    opt = torch.optim.Adam(groups, weight_decay=1e-4)
    weight = balanced_weight(y_train, n_genres).to(device)
    out: dict = {"logits": [], "features": {}}
    for ep in range(1, epochs + 1):
        t0, c0 = time.time(), time.process_time()
        tail.train()
        order = rng.permutation(len(train_rows) * patches)
        for s in range(0, len(order), batch):
            b = order[s: s + batch]
            x = batch_of(train_rows[b // patches], b % patches)
            loss = F.cross_entropy(tail(x)[1], torch.from_numpy(y_train[b // patches]).to(device), weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        _, logits = clip_outputs(tail, batch_of, val_rows, patches)
        out["logits"].append(logits)
        if log:
            log(ep, logits, time.time() - t0, time.process_time() - c0)
        if ep in combine:
            out["features"][ep] = clip_outputs(tail, batch_of, all_rows, patches)[0]
    return out
