"""MSD-VGG: the paper's five-layer CNN layout with weights trained on the
Million Song Dataset, read from the ``musicnn`` wheel's TF checkpoint.

Pons & Serra, "musicnn: pre-trained convolutional neural networks for music
audio tagging", ISMIR 2019 late-breaking demo (``MSD_vgg``: 50 MSD tags,
ROC-AUC 0.877), after Choi, Fazekas & Sandler, "Automatic tagging using deep
convolutional neural networks", ISMIR 2016.

Layout of this module's tensors: ``(batch, channels, mel, time)``, like the
rest of the project. The TF graph has time on the first spatial axis, so its
HWIO kernels are transposed to OI(mel)(time) and its poolings swapped.
Each conv block is conv 3×3 'same' → ReLU → batch norm (ε = 1e-3) → max
pool 'valid'. The pools are read from the checkpoint's own graph
(``MSD_vgg/.meta``), not from musicnn's ``models.py``, which differs:
(time × mel) 4×1, 1×4, 2×2, 2×2, 4×4, each with stride = kernel. Checked
against TensorFlow running that graph (README, "MSD-VGG port").
"""

from __future__ import annotations

import importlib.util
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.config import FeatureConfig
from core.errors import ArtifactError
from core.models.tf_checkpoint import read_checkpoint

# musicnn's front-end (musicnn/extractor.py): librosa.load(sr=16000),
# melspectrogram(n_fft=512, hop_length=256, n_mels=96), float16, log10(10000·x + 1).
# 1872 frames = 29.95 s; the shared clips are 30 s. The log-mel keeps the
# file's level (target_rms_db=None: the cache and the loudness facet read it);
# the models scale each clip's mean mel power to level_db before the network
# (core.audio.features.normalise_level). -3 dB is the median of the training
# clips, so the input batch norm, fitted to MSD previews, sees a typical level;
# read as recorded, a clip 20 dB quieter lost 0.26 of fused_trunks' test
# accuracy (artifacts/robustness.json before level_db).
MSD_LEVEL_DB = -3.0
MSD_FEATURES = FeatureConfig(sample_rate=16_000, n_fft=512, hop_length=256, n_mels=96,
                             n_frames=1872, chunk_frames=1872, window_hop_frames=1872,
                             target_rms_db=None, compression="log1p", log_c=10_000.0,
                             power_float16=True, level_db=MSD_LEVEL_DB)
PATCH_FRAMES = 187           # 3 s: the input length MSD_vgg was trained on
N_FILTERS = 128
TF_BN_EPS = 1e-3
MSD_TAGS = ["rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance",
            "00s", "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
            "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s",
            "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
            "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
            "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal",
            "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy"]
# (mel, time) kernel of each block's max pool; stride = kernel ('valid').
POOLS = ((1, 4), (4, 1), (2, 2), (2, 2), (4, 4))


def msd_checkpoint_prefix(name: str = "MSD_vgg") -> str:
    """``…/site-packages/musicnn/<name>/`` (the checkpoint prefix of one of the
    wheel's models: MSD_vgg, MSD_musicnn, MTT_musicnn, MTT_vgg), found without
    importing musicnn (its code needs TensorFlow 1)."""
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise ArtifactError("the musicnn wheel (MSD weights) is not installed — "
                            "run `make install` (pip install --no-deps musicnn==0.1.0)")
    # The files are named ".index" and ".data-…": the prefix is the folder plus "/".
    prefix = str(Path(next(iter(spec.submodule_search_locations))) / name) + "/"
    if not Path(prefix + ".index").is_file():
        raise ArtifactError(f"{name} checkpoint missing under {prefix}")
    return prefix


def conv_relu_bn(c_in: int, c_out: int) -> nn.Sequential:
    """musicnn's block order: conv (with bias) → ReLU → batch norm."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True),
                         nn.BatchNorm2d(c_out, eps=TF_BN_EPS))


class MSDTrunk(nn.Module):
    """Input batch norm and MSD-VGG conv blocks 1–4 with their pools:
    log-mel ``(B, 1, 96, T)`` → ``(B, 128, 6, T4)``, T4 ≈ T / 16.

    Fully convolutional, so it runs on a whole clip at once; the models that
    share it cut windows out of its output, not out of the log-mel."""

    def __init__(self):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=TF_BN_EPS)
        self.blocks = nn.ModuleList([conv_relu_bn(1 if i == 0 else N_FILTERS, N_FILTERS)
                                     for i in range(4)])
        self.pools = nn.ModuleList([nn.MaxPool2d(POOLS[i]) for i in range(4)])

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = self.input_bn(logmel)
        for block, pool in zip(self.blocks, self.pools):
            x = pool(block(x))
        return x


def trunk_steps(n_frames: int) -> int:
    """Time steps the trunk's pools leave of ``n_frames`` log-mel frames."""
    t = n_frames
    for k in POOLS[:4]:
        t //= k[1]
    return t


def trunk_digest(trunk: nn.Module) -> str:
    """SHA-256 (16 hex) of an :class:`MSDTrunk`'s weights (before any inference rewrite)."""
    import hashlib

    from core.models.base import hash_state
    return hash_state(hashlib.sha256(), trunk).hexdigest()[:16]


def msd_trunk_key(cfg: FeatureConfig, digest: str, bfloat16: bool) -> str:
    """Names the output of MSD-VGG's blocks 1–4 over a whole clip: feature
    config (with the model's level step), pool layout (weights alone do not
    fix the outputs), weights' digest and precision. Every model whose trunk pass has this key computes
    the same ``(B, 128, 6, T4)``, so one pass serves them all
    (:func:`core.models.inference.predict_all`)."""
    layout = "-".join(f"{a}x{b}" for a, b in POOLS[:4])
    return f"{cfg.input_key()}:{layout}:{digest}" + (":bf16" if bfloat16 else "")


class MSDVGG(nn.Module):
    """The full MSD_vgg tagger: 3 s patches ``(B, 1, 96, 187)`` → 50 MSD tag logits."""

    def __init__(self):
        super().__init__()
        self.trunk = MSDTrunk()
        self.block5 = conv_relu_bn(N_FILTERS, N_FILTERS)
        self.pool5 = nn.MaxPool2d(POOLS[4])
        self.dense = nn.Linear(2 * N_FILTERS, len(MSD_TAGS))

    embed_dim = 2 * N_FILTERS

    def embed(self, patch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch ``(B, 1, 96, 187)`` → (penultimate = pool 5 flattened ``(B, 256)``,
        logits ``(B, 50)``)."""
        x = self.pool5(self.block5(self.trunk(patch)))         # (B, 128, 1, 2)
        # TF flattens NHWC = (B, time, mel, C): time-major, channels fastest.
        flat = x.permute(0, 3, 2, 1).flatten(1)
        return flat, self.dense(flat)

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        return self.embed(patch)[1]


def _tf_conv(conv: nn.Conv2d, kernel: np.ndarray, bias: np.ndarray) -> None:
    # TF HWIO with H = time, W = mel → torch OIHW with H = mel, W = time.
    conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 1, 0).copy()))
    conv.bias.copy_(torch.from_numpy(bias))


def _tf_bn(bn: nn.Module, t: dict[str, np.ndarray], name: str) -> None:
    for attr, key in (("weight", "gamma"), ("bias", "beta"),
                      ("running_mean", "moving_mean"), ("running_var", "moving_variance")):
        getattr(bn, attr).copy_(torch.from_numpy(t[f"{name}/{key}"]))


@contextmanager
def checkpoint_errors(name: str):
    """Map a missing tensor or a shape mismatch while copying checkpoint
    ``name`` into a port to an :class:`ArtifactError` with the reason."""
    try:
        yield
    except KeyError as exc:
        raise ArtifactError(f"{name} checkpoint lacks tensor {exc.args[0]!r}") from None
    except RuntimeError as exc:   # shape mismatch in copy_
        raise ArtifactError(f"{name} checkpoint tensor has an unexpected shape ({exc})") from None


@torch.no_grad()
def load_msd_weights(model: MSDVGG, tensors: dict[str, np.ndarray] | None = None) -> MSDVGG:
    """Copy the MSD_vgg checkpoint (read from the musicnn wheel unless
    ``tensors`` are given) into ``model``; every tensor must be present."""
    t = tensors if tensors is not None else read_checkpoint(msd_checkpoint_prefix())
    with checkpoint_errors("MSD_vgg"):
        _tf_bn(model.trunk.input_bn, t, "batch_normalization")
        blocks = list(model.trunk.blocks) + [model.block5]
        for i, block in enumerate(blocks, start=1):
            _tf_conv(block[0], t[f"{i}CNN/kernel"], t[f"{i}CNN/bias"])
            _tf_bn(block[2], t, f"batch_normalization_{i}")
        model.dense.weight.copy_(torch.from_numpy(t["dense/kernel"].T.copy()))
        model.dense.bias.copy_(torch.from_numpy(t["dense/bias"]))
    return model.eval()


def pretrained_msd_vgg() -> MSDVGG:
    """MSD_vgg with the wheel's weights, in eval mode."""
    return load_msd_weights(MSDVGG())


def patches(logmel: torch.Tensor, length: int = PATCH_FRAMES, hop: int | None = None) -> torch.Tensor:
    """``(B, 1, M, T)`` → non-overlapping (or ``hop``-spaced) patches ``(B·P, 1, M, length)``,
    as musicnn's ``batch_data`` cuts them (the tail shorter than a patch is dropped)."""
    hop = hop or length
    t = logmel.shape[-1]
    starts = list(range(0, max(t - length, 0) + 1, hop))
    return torch.cat([logmel[..., s: s + length] for s in starts], dim=0) if t >= length else logmel
