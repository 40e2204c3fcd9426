"""Inference-ready copies of the genre models: the same outputs, less CPU.

Used by every consumer that runs a model (batch indexing, the app's
analysis, the CLI, evaluation), so what is measured is what is served.
bfloat16 is switched by :class:`~core.config.InferenceConfig` (default
``auto``: on where the CPU has native bfloat16, i.e. AVX512-BF16 or AMX;
``GENRE_BFLOAT16=off`` or ``python -m core --precision float32`` turns it
off) or per call with ``optimise_for_inference(model, bfloat16=False)``.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

from core.config import InferenceConfig
from core.models.msd_fast import FastMSDTrunk, max_pool, pair

if TYPE_CHECKING:  # pragma: no cover
    from core.models import GenreModel


def cpu_has_bfloat16() -> bool:
    """Whether this CPU runs bfloat16 matrix products natively (AVX512-BF16 or
    AMX); elsewhere bfloat16 is emulated and slower than float32."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:   # pragma: no cover - torch without the probes
        return False


def use_bfloat16(cfg: InferenceConfig | None = None) -> bool:
    """``cfg.bfloat16`` resolved: ``on`` / ``off``, or ``auto`` = :func:`cpu_has_bfloat16`."""
    mode = (cfg or InferenceConfig()).bfloat16
    return cpu_has_bfloat16() if mode == "auto" else mode == "on"


def cpu_prefers_int8() -> bool:
    """Whether this CPU has int8 dot products (VNNI) and no AMX: there the
    int8 products ran at ~2× bfloat16's rate (AMX's bfloat16 tiles were not
    measured against them, so AMX CPUs keep bfloat16)."""
    try:
        return bool(torch.cpu._is_vnni_supported() and not torch.cpu._is_amx_tile_supported())
    except AttributeError:   # pragma: no cover - torch without the probes
        return False


def use_int8(cfg: InferenceConfig | None = None) -> bool:
    """``cfg.int8`` resolved: ``on`` / ``off``, or ``auto`` = :func:`cpu_prefers_int8`.

    What it costs (the musicnn trunks' front end in int8,
    :class:`~core.models.trunks_fast.FastMusicnn`), measured on the project's
    AVX512-VNNI EPYC against the bfloat16 copy, 746 clips: MSD_musicnn clip
    features' cosine ≥ 0.998 (median 0.9997), max |Δ tag probability| 0.030;
    the shipped ``fused_trunks`` head refitted per leave-one-source-out fold
    on either: mean accuracy 0.408 both, macro AUC 0.8070 → 0.8069, ECE
    0.144 → 0.138; 5 of 646 held-out argmax genres change."""
    mode = (cfg or InferenceConfig()).int8
    return cpu_prefers_int8() if mode == "auto" else mode == "on"


def optimise_for_inference(model: "GenreModel", bfloat16: bool | None = None) -> "GenreModel":
    """A copy of ``model`` that computes the same outputs faster on CPU.

    * Batch norm after each convolution is folded into the convolution's
      weights and bias (eval mode: it is an affine map per channel).
    * ReLU moves after max-pooling (they commute: ReLU is monotonic), so it
      touches a quarter of the values, and pooling whose window tiles the
      input exactly is a maximum of strided slices (2× faster than
      ``max_pool2d``, which also computes argmax indices).
    * Activations are kept channels-last, the layout oneDNN's CPU
      convolutions are fastest in.
    * The MSD models' frozen trunk is replaced by
      :class:`~core.models.msd_fast.FastMSDTrunk` (the same function
      reordered: ReLU and batch norm after the pools, block 1 without its
      92 MB activation); float32 247 → 120 CPU ms per 30 s clip, equal to
      ~1e-6 relative.
    * ``bfloat16`` (default :func:`use_bfloat16`): the trunk's conv 2–4 and
      the CNN's / CRNN's conv stack run under bfloat16 autocast. Trunk
      120 → 47 ms per clip, CNN 38 → 20, CRNN 15 → 9 (1 thread, this
      project's AMX Xeon). Measured on the val split (96 clips) against
      the plain float32 models: macro ROC-AUC cnn 0.9042 → 0.9042, crnn
      0.8905 → 0.8903, cnn_msd 0.9336 → 0.9341, crnn_msd 0.9048 → 0.9047;
      macro F1 (0.3902, 0.3320, 0.5907, 0.4869) and every val track's top
      genre unchanged; max abs probability difference 0.011 (cnn 0.004,
      crnn 0.002); embedding cosine to float32 ≥ 0.99997 for every track. The copy
      keeps its source's fingerprint: vectors that close are the same model
      for an index.

    Measured on the project's CNN / CRNN (float32): ~2.5× less CPU time per
    window, outputs equal to ~1e-6. Layers that do not match the pattern are
    left as they are, so any :class:`GenreModel` is accepted.
    """
    if getattr(model, "_optimised", False):
        return model                           # already an inference copy
    bf16 = use_bfloat16() if bfloat16 is None else bool(bfloat16)
    m = copy.deepcopy(model).eval()
    m._optimised = True
    m._bfloat16 = bf16
    if hasattr(model, "fingerprint"):
        m._fingerprint = model.fingerprint()   # same vectors, so the same identity
    trunk = getattr(m, "trunk", None)
    if isinstance(trunk, nn.Module):
        try:
            m.trunk = FastMSDTrunk(trunk, bfloat16=bf16)
        except (AttributeError, IndexError, TypeError, ValueError):
            # Not MSD-VGG's layout: channels-last alone halves a conv trunk's CPU time.
            trunk.register_forward_pre_hook(_to_channels_last)
        return m.to(memory_format=torch.channels_last)
    convs = getattr(m, "convs", None)
    if not isinstance(convs, nn.Sequential):
        return m
    with torch.no_grad():
        for block in convs:
            if isinstance(block, nn.Sequential):
                _optimise_block(block)
        convs.register_forward_pre_hook(_to_channels_last)
    m = m.to(memory_format=torch.channels_last)
    if bf16:
        m.convs = BFloat16(m.convs)
    return m


class BFloat16(nn.Module):
    """Runs ``inner`` under CPU bfloat16 autocast and returns float32."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.inner(x).float()


def _optimise_block(block: nn.Sequential) -> None:
    """Fold Conv2d→BatchNorm2d and reorder ReLU→MaxPool2d, in place."""
    layers = list(block)
    out: list = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d) and nxt.track_running_stats:
            out.append(_fold(layer, nxt))
            i += 2
            continue
        if isinstance(layer, nn.ReLU) and isinstance(nxt, nn.MaxPool2d):
            out += [TiledMaxPool(nxt), nn.ReLU(inplace=True)]
            i += 2
            continue
        if isinstance(layer, nn.MaxPool2d):
            layer = TiledMaxPool(layer)
        out.append(layer)
        i += 1
    block._modules.clear()
    for j, layer in enumerate(out):
        block.add_module(str(j), layer)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = copy.deepcopy(conv)
    fused.weight = torch.nn.Parameter(conv.weight * scale[:, None, None, None])
    fused.bias = torch.nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return fused


class TiledMaxPool(nn.Module):
    """``pool`` computed as a maximum of strided slices when its window tiles
    the input exactly (kernel = stride, no padding, sizes divisible);
    otherwise ``pool`` itself. Same values either way."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        self.pool = pool
        k, st = pair(pool.kernel_size), pair(pool.stride or pool.kernel_size)
        self.kernel = k if (k == st and pair(pool.padding) == (0, 0)
                            and pair(pool.dilation) == (1, 1)) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel is None or x.shape[-2] % self.kernel[0] or x.shape[-1] % self.kernel[1]:
            return self.pool(x)
        return max_pool(x, self.kernel)


def _to_channels_last(module, args):
    """Forward pre-hook: re-lay the input channels-last (copies only if needed)."""
    return (args[0].contiguous(memory_format=torch.channels_last),) + tuple(args[1:])


@contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch intra-op threads, then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
