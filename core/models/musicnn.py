"""musicnn and the MagnaTagATune VGG, ported from the ``musicnn`` wheel's TF checkpoints.

* :class:`Musicnn` — Pons & Serra, "musicnn: pre-trained convolutional neural
  networks for music audio tagging", ISMIR 2019 late-breaking demo; the
  musically motivated front end of Pons et al., "Timbre analysis of music
  audio signals with convolutional neural networks", EUSIPCO 2017. Two
  checkpoints share it: ``MSD_musicnn`` (50 Million Song Dataset tags,
  ROC-AUC 0.880) and ``MTT_musicnn`` (50 MagnaTagATune tags, 0.907).
* :class:`MTTVGG` — the VGG-like baseline of Pons et al., "End-to-end learning
  for music audio tagging at scale", ISMIR 2018, trained on MagnaTagATune
  (``MTT_vgg``, ROC-AUC 0.903). Same blocks as :class:`~core.models.msd.MSDVGG`,
  different pools.

Both take a 3 s log-mel patch ``(B, 1, 96, 187)`` of
:data:`~core.models.msd.MSD_FEATURES` and return 50 tag logits. The layout is
read from each checkpoint's own graph (``<name>/.meta``; print it with
``python -m core.models.tf_graph …/musicnn/MSD_musicnn/``), not from
musicnn's ``models.py``. The graph's tensors are NHWC with H = time,
W = mel; here they are ``(B, C, mel, time)`` like the rest of the project.

musicnn, as its graph computes it (B = batch, T = 187 frames):

1. input batch norm (1 channel, ε = 1e-3);
2. front end, five branches, each conv (with bias) → ReLU → batch norm →
   max over every mel row left: *timbral* 38×7 and 67×7 (mel × time),
   204 filters, time zero-padded by 3 each side and mel 'valid' (59 and 30
   rows left); *temporal* 1×128, 1×64, 1×32, 51 filters, TF 'SAME'
   (zero padding (k−1)//2 before, the rest after), 96 rows. Concatenated:
   204 + 204 + 3·51 = 561 channels per frame;
3. mid end: three 1-D convs over time (kernel 7, time zero-padded by 3,
   64 filters), each conv → ReLU → batch norm, the second and third with a
   residual connection (``m2 = c2 + m1``, ``m3 = c3 + m2``);
4. back end: ``[front (561), m1, m2, m3]`` = 753 channels, max and mean over
   time, interleaved per channel ``[max₀, mean₀, max₁, …]`` (TF concatenates
   them on a last axis of 2 and flattens) = 1506; batch norm → dense 200 →
   ReLU → batch norm (the *penultimate* layer, 200) → dense 50 (logits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ArtifactError
from core.models.msd import (
    MSDVGG,
    TF_BN_EPS,
    _tf_bn,
    _tf_conv,
    checkpoint_errors,
    load_msd_weights,
    msd_checkpoint_prefix,
)
from core.models.tf_checkpoint import read_checkpoint

MTT_TAGS = ["guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
            "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
            "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
            "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
            "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
            "weird", "country", "metal", "female voice", "choral"]

N_MELS = 96
TIMBRAL_MEL = (38, 67)        # int(0.4·96), int(0.7·96) mel bands
TIMBRAL_TIME = 7
TIMBRAL_FILTERS = 204         # int(1.6·128)
TEMPORAL_TIME = (128, 64, 32)
TEMPORAL_FILTERS = 51         # int(1.6·32)
FRONT_CHANNELS = len(TIMBRAL_MEL) * TIMBRAL_FILTERS + len(TEMPORAL_TIME) * TEMPORAL_FILTERS   # 561
MID_FILTERS = 64
MID_TIME = 7
MID_LAYERS = 3
BACK_CHANNELS = FRONT_CHANNELS + MID_LAYERS * MID_FILTERS                                     # 753
BACK_UNITS = 200
N_TAGS = 50


def same_pad(k: int) -> tuple[int, int]:
    """TF 'SAME' zero padding of a stride-1 kernel of length ``k``: (before, after)."""
    return (k - 1) // 2, (k - 1) - (k - 1) // 2


class ConvBN(nn.Module):
    """conv (with bias) → ReLU → batch norm (ε = 1e-3), musicnn's order."""

    def __init__(self, conv: nn.Module, channels: int):
        super().__init__()
        self.conv = conv
        self.bn = (nn.BatchNorm2d if isinstance(conv, nn.Conv2d) else nn.BatchNorm1d)(channels, eps=TF_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class Musicnn(nn.Module):
    """musicnn tagger: patch ``(B, 1, 96, T)`` → logits ``(B, 50)``;
    :meth:`embed` also gives the penultimate layer ``(B, 200)``.

    Fully convolutional up to the time pooling, so any ``T ≥ 1`` works; the
    checkpoints were trained and are used on ``T = 187`` (3 s)."""

    embed_dim = BACK_UNITS

    def __init__(self, n_tags: int = N_TAGS):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=TF_BN_EPS)
        self.timbral = nn.ModuleList(
            ConvBN(nn.Conv2d(1, TIMBRAL_FILTERS, (m, TIMBRAL_TIME), padding=(0, TIMBRAL_TIME // 2)),
                   TIMBRAL_FILTERS) for m in TIMBRAL_MEL)
        self.temporal = nn.ModuleList(
            ConvBN(nn.Conv2d(1, TEMPORAL_FILTERS, (1, k)), TEMPORAL_FILTERS) for k in TEMPORAL_TIME)
        self.mid = nn.ModuleList(
            ConvBN(nn.Conv1d(FRONT_CHANNELS if i == 0 else MID_FILTERS, MID_FILTERS, MID_TIME,
                             padding=MID_TIME // 2), MID_FILTERS) for i in range(MID_LAYERS))
        self.pool_bn = nn.BatchNorm1d(2 * BACK_CHANNELS, eps=TF_BN_EPS)
        self.dense = nn.Linear(2 * BACK_CHANNELS, BACK_UNITS)
        self.dense_bn = nn.BatchNorm1d(BACK_UNITS, eps=TF_BN_EPS)
        self.out = nn.Linear(BACK_UNITS, n_tags)

    def front(self, patch: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 96, T)`` → front-end features ``(B, 561, T)``."""
        x = self.input_bn(patch)
        feats = [block(x).amax(2) for block in self.timbral]
        for block, k in zip(self.temporal, TEMPORAL_TIME):
            feats.append(block(F.pad(x, same_pad(k))).amax(2))
        return torch.cat(feats, 1)

    def pooled(self, front: torch.Tensor) -> torch.Tensor:
        """Front-end features ``(B, 561, T)`` → mid end → pooled ``(B, 1506)``
        (max and mean over time, interleaved per channel as TF flattens them)."""
        m = self.mid[0](front)
        layers = [front, m]
        for block in self.mid[1:]:
            m = block(m) + m
            layers.append(m)
        h = torch.cat(layers, 1)
        return torch.stack([h.amax(2), h.mean(2)], 2).flatten(1)

    def mid_end(self, patch: torch.Tensor) -> torch.Tensor:
        """Patch ``(B, 1, 96, T)`` → the pooled mid end after its batch norm
        ``(B, 1506)``, the dense layer's input."""
        return self.pool_bn(self.pooled(self.front(patch)))

    def embed(self, patch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch ``(B, 1, 96, T)`` → (penultimate ``(B, 200)``, logits ``(B, 50)``)."""
        pen = self.dense_bn(F.relu(self.dense(self.mid_end(patch))))
        return pen, self.out(pen)

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        return self.embed(patch)[1]


@torch.no_grad()
def load_musicnn_weights(model: Musicnn, checkpoint: str = "MSD_musicnn",
                         tensors: dict | None = None) -> Musicnn:
    """Copy a musicnn checkpoint of the wheel (``MSD_musicnn`` / ``MTT_musicnn``,
    or ``tensors`` already read) into ``model``. TF names, in graph order:
    ``batch_normalization`` (input), ``conv2d``/``_1`` timbral 38×7, 67×7,
    ``conv2d_2..4`` temporal 128, 64, 32, ``conv2d_5..7`` mid end, their batch
    norms ``batch_normalization_1..8``, ``batch_normalization_9`` (pooled),
    ``dense``, ``batch_normalization_10``, ``dense_1``."""
    t = tensors if tensors is not None else read_checkpoint(msd_checkpoint_prefix(checkpoint))
    with checkpoint_errors(checkpoint):
        _tf_bn(model.input_bn, t, "batch_normalization")
        for i, block in enumerate(list(model.timbral) + list(model.temporal)):
            name = "conv2d" + (f"_{i}" if i else "")                   # HWIO, H = time, W = mel
            _tf_conv(block.conv, t[f"{name}/kernel"], t[f"{name}/bias"])
            _tf_bn(block.bn, t, f"batch_normalization_{i + 1}")
        for j, block in enumerate(model.mid):
            i = 5 + j
            k = t[f"conv2d_{i}/kernel"][:, :, 0, :]                      # (time, C_in, C_out)
            block.conv.weight.copy_(torch.from_numpy(k.transpose(2, 1, 0).copy()))
            block.conv.bias.copy_(torch.from_numpy(t[f"conv2d_{i}/bias"]))
            _tf_bn(block.bn, t, f"batch_normalization_{i + 1}")
        _tf_bn(model.pool_bn, t, "batch_normalization_9")
        model.dense.weight.copy_(torch.from_numpy(t["dense/kernel"].T.copy()))
        model.dense.bias.copy_(torch.from_numpy(t["dense/bias"]))
        _tf_bn(model.dense_bn, t, "batch_normalization_10")
        model.out.weight.copy_(torch.from_numpy(t["dense_1/kernel"].T.copy()))
        model.out.bias.copy_(torch.from_numpy(t["dense_1/bias"]))
    return model.eval()


# (mel, time) kernel and stride of MTT_vgg's five max pools, from its graph
# (MSD_vgg's are (1, 4), (4, 1), (2, 2), (2, 2), (4, 4) with stride = kernel).
MTT_VGG_POOLS = (((1, 4), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))


class MTTVGG(MSDVGG):
    """MTT_vgg (Pons et al. 2018's VGG baseline on MagnaTagATune): MSD_vgg's
    blocks (input batch norm, five conv 3×3 'same' → ReLU → batch norm → max
    pool, dense 256 → 50) with the pools of its own graph. The first pool is
    4 × 1 (time × mel) with stride 2 × 2, so it overlaps in time and skips
    every other mel row. A 187-frame patch leaves (mel × time) 48×92, 24×46,
    12×23, 6×11, then 1×2: 2 · 128 = 256 inputs to the dense layer, as in
    MSD_vgg."""

    def __init__(self):
        super().__init__()
        pools = [nn.MaxPool2d(k, s) for k, s in MTT_VGG_POOLS]
        self.trunk.pools = nn.ModuleList(pools[:4])
        self.pool5 = pools[4]


def pretrained(name: str) -> nn.Module:
    """The wheel's checkpoint ``name`` in its ported class, eval mode."""
    if name in ("MSD_musicnn", "MTT_musicnn"):
        return load_musicnn_weights(Musicnn(), name)
    if name == "MTT_vgg":
        return load_msd_weights(MTTVGG(), read_checkpoint(msd_checkpoint_prefix("MTT_vgg")))
    if name == "MSD_vgg":
        return load_msd_weights(MSDVGG())
    raise ArtifactError(f"no port of checkpoint {name!r}")
