"""Inference copies of the wheel's taggers (:mod:`core.models.musicnn`):
same outputs, less CPU. Used by :class:`core.models.trunks.TrunkBank`.

* VGGs: :func:`core.models.optimise.optimise_for_inference` (both VGGs'
  conv 1–4 become :class:`~core.models.msd_fast.FastMSDTrunk`, MTT_vgg's
  overlapping first pool included). MTT_vgg, same code, one
  thread, 10 random patches, bfloat16: the autocast copy 186 → 101 CPU ms
  per clip, relative error of the penultimate layer against the float32
  port 0.0059 → 0.0039 (float32 copies: max |Δ| 1.1e-5).
* musicnn: :class:`FastMusicnn`.

Measured (``python -m benchmarks.trunks --clips 8``, one thread, load 21,
CPU s per 30 s clip, plain → fast float32 → fast bfloat16): MSD_vgg 0.470 →
0.158 → 0.100, MSD_musicnn 0.976 → 0.549 → 0.356, MTT_musicnn 0.992 → 0.505
→ 0.310, MTT_vgg 0.463 → 0.297 → 0.219. Clip-level max |Δ tag probability|
against the plain port: ≤ 6.4e-7 (float32), ≤ 0.0033 (bfloat16).

bfloat16 musicnn since (banded timbral and Toeplitz temporal products, see
:class:`_Timbral`, :class:`_Temporal`): MSD_musicnn 181 → 148 CPU ms per
10-patch clip on this project's AMD EPYC (AVX512-BF16, no AMX), one thread,
load ~13 (branches: timbral 70 + 50 → 52 + 40, temporal 20 + 12 + 8 → 11 + 9
+ 6); the same rounding as before, max |Δ tag probability| 0.0023 and max
|Δ logit| 0.037 against the float32 port on generated patches. The products
run near this CPU's bfloat16 matrix-product rate (200–370 GFLOP/s measured
for these shapes), so the remaining lever is fewer patches.

int8 musicnn front end (``int8=True``; :func:`core.models.optimise.use_int8`):
the same banded and Toeplitz products with int8 operands and int32 sums
(``torch._int_mm``, ~2× the bfloat16 rate on AVX512-VNNI: 390–420 against
200–215 GFLOP/s for these shapes, 1 thread). Each 3 s patch's input is
quantised on its own (affine, 255 levels over its range, so a clip's
features do not depend on what it is batched with), each kernel per output
channel (symmetric); the max over mel rows is taken on the int32 sums (the
scales are positive), and the zero point's share (``zero × Σ kernel``) and
the bias are added after it. See :meth:`_SignedBranch.output`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from core.models.msd_fast import _bn_affine
from core.models.musicnn import TEMPORAL_TIME, Musicnn, same_pad

# Mel rows per matrix product in the front end: bounds the live activation
# (rows × patches × 204 × 187 floats) to a few MB whatever the batch.
ROWS = 8
# Output mel rows per banded product of a timbral branch, output frames per
# Toeplitz product of a temporal one (fastest on this project's AVX512-BF16
# CPU, 1 thread; see the classes).
TIMBRAL_ROWS = 4
TEMPORAL_STEPS = 16
# Patches per front-end pass: keeps each product's output (rows × 816 values
# per patch and block) in cache. With 80 patches at once the int8 copy's int32
# sums (49 MB a product) cost more in page faults than int8 saves: 265 CPU ms
# per clip against 120 at 4 patches (bfloat16: 240 against 223).
FRONT_PATCHES = 4


def quantise_patches(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-patch affine int8: ``v`` ``(B, …)`` → (``q`` int8 in [−127, 127],
    same shape; ``scale`` ``(B,)``; ``zero`` ``(B,)``) with ``v ≈ q·scale + zero``.
    Each patch's range is widened to hold 0, so zero padding stays ≈ 0."""
    flat = v.reshape(len(v), -1)
    lo, hi = flat.amin(1).clamp(max=0), flat.amax(1).clamp(min=0)
    scale, zero = ((hi - lo) / 254).clamp(min=1e-12), (hi + lo) / 2
    shape = (-1,) + (1,) * (v.dim() - 1)
    q = torch.round((v - zero.view(shape)) / scale.view(shape)).clamp_(-127, 127)
    return q.to(torch.int8), scale, zero


def quantise_kernel(kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric int8: ``kernel`` ``(K, C)`` → (its levels,
    integer-valued float in [−127, 127], same shape; ``scale`` ``(C,)``) with
    ``kernel ≈ levels·scale``."""
    scale = kernel.abs().amax(0).clamp(min=1e-12) / 127
    return torch.round(kernel / scale), scale


class _SignedBranch(nn.Module):
    """One front-end branch, conv → ReLU → batch norm → max over mel,
    computed as conv(d·W) → max over mel → clamp to d's side → ``|s|·z + t``
    (exact: see :mod:`core.models.msd_fast`; ``d = sign(s)``), so ReLU and
    batch norm touch the pooled ``(B, C, T)`` only."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d):
        super().__init__()
        s, t = _bn_affine(bn)
        d = torch.where(s < 0, -1.0, 1.0)
        w = (conv.weight.detach() * d[:, None, None, None])[:, 0]          # (C, mel, time)
        self.register_buffer("bias", (conv.bias.detach() * d).contiguous(), persistent=False)
        self.register_buffer("s", s.abs()[None, :, None].contiguous(), persistent=False)
        self.register_buffer("t", t[None, :, None].contiguous(), persistent=False)
        inf, zero = torch.full_like(s, float("inf")), torch.zeros_like(s)
        self.register_buffer("lo", torch.where(d > 0, zero, -inf)[None, :, None].contiguous(), persistent=False)
        self.register_buffer("hi", torch.where(d > 0, inf, zero)[None, :, None].contiguous(), persistent=False)
        self.kmel, self.ktime = w.shape[1], w.shape[2]
        self.register_buffer("w", w.contiguous(), persistent=False)

    def side(self, z: torch.Tensor) -> torch.Tensor:
        """Max-pooled conv ``(B, C, T)`` → the branch's output (float32)."""
        return torch.addcmul(self.t, torch.clamp(z.float(), self.lo, self.hi), self.s)

    # Per mode, the names of the products' (bias, weight) buffers (bias None:
    # int8, whose bias is added after the max in :meth:`output`).
    WEIGHTS: dict[str, tuple[str | None, str]] = {}

    def operand(self, xp: torch.Tensor, mode: str) -> tuple[torch.Tensor, tuple | None]:
        """The padded input → the products' operand in ``mode`` and, in int8,
        its per-patch ``(scale, zero)`` (:func:`quantise_patches`)."""
        if mode == "int8":
            q, scale, zero = quantise_patches(xp)
            return q, (scale, zero)
        return xp.to(torch.bfloat16 if mode == "bfloat16" else torch.float32), None

    def product(self, a: torch.Tensor, mode: str) -> torch.Tensor:
        """One block's matrix product in ``mode`` (int8: int32 sums, no bias)."""
        bias, w = self.WEIGHTS[mode]
        w = getattr(self, w)
        return torch._int_mm(a, w) if bias is None else torch.addmm(getattr(self, bias), a, w)

    def output(self, z: torch.Tensor, quant: tuple | None) -> torch.Tensor:
        """Max-pooled products ``(B, T, C)`` → the branch's output ``(B, C, T)``.
        In int8 (``quant`` = the operand's ``(scale, zero)``): ``z·scale·wscale +
        zero·wsum + bias`` first (a positive per-patch, per-channel scale and a
        per-channel offset commute with the max)."""
        if quant is not None:
            scale, zero = quant
            z = z.float() * (scale[:, None, None] * self.wscale) + (zero[:, None, None] * self.wsum + self.bias)
        return self.side(z.transpose(1, 2))

    def int8_kernel(self, kernel: torch.Tensor) -> torch.Tensor:
        """The kernel as the products read it, ``(K, C)`` → its per-channel
        int8 levels (integer-valued float, same shape); keeps the scales
        ``(C,)`` and the dequantised kernel's sum per channel for :meth:`output`."""
        levels, scale = quantise_kernel(kernel)
        self.register_buffer("wscale", scale.contiguous(), persistent=False)
        self.register_buffer("wsum", (levels * scale).sum(0).contiguous(), persistent=False)
        return levels


class _Timbral(_SignedBranch):
    """Kernel (k mel × 7 time), mel 'valid', time padded 3, as banded matrix
    products: for a block of R = :data:`TIMBRAL_ROWS` output rows, the
    7 time shifts of the block's R + k − 1 mel bands ``(B·T, 7·(R+k−1))``
    times one banded weight ``(7·(R+k−1), R·C)`` that holds the kernel at
    each row's offset (the same for every block: the conv is shift-invariant
    in mel). One large product per block instead of a k-channel Conv1d; no
    im2col of every row's k × 7 window (only the 7 time shifts are copied).
    In float32 (no bfloat16 products) the k-channel Conv1d per block of
    :data:`ROWS` rows is kept: it measured as fast or faster there. In int8
    the same products read :func:`quantise_patches`' levels and ``wband8``."""

    WEIGHTS = {"bfloat16": ("bband16", "wband16"), "int8": (None, "wband8")}

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d):
        super().__init__(conv, bn)
        self.pad = conv.padding[1]
        kernel = self.w.permute(2, 1, 0)                                       # (7, k, C)
        self.register_buffer("wband16", self.banded(kernel).bfloat16().contiguous(), persistent=False)
        self.register_buffer("bband16", self.bias.repeat(TIMBRAL_ROWS).bfloat16().contiguous(), persistent=False)
        levels = self.int8_kernel(kernel.reshape(-1, kernel.shape[-1])).reshape(kernel.shape)
        self.register_buffer("wband8", self.banded(levels).to(torch.int8).contiguous(), persistent=False)

    @staticmethod
    def banded(kernel: torch.Tensor) -> torch.Tensor:
        """``(7, k, C)`` kernel → the banded weight ``(7·(R+k−1), R·C)``."""
        kt, k, c = kernel.shape
        band = TIMBRAL_ROWS + k - 1
        wb = torch.zeros(kt, band, TIMBRAL_ROWS, c)
        for q in range(TIMBRAL_ROWS):
            wb[:, q: q + k, q] = kernel
        return wb.reshape(kt * band, TIMBRAL_ROWS * c)

    def forward(self, x: torch.Tensor, mode: str) -> torch.Tensor:
        b, m, t = x.shape                                          # (B, 96, T)
        c, k, kt = self.w.shape
        rows, band = m - k + 1, TIMBRAL_ROWS + k - 1
        if rows < TIMBRAL_ROWS:
            raise ValueError(f"timbral branch needs ≥ {band} mel bands, got {m}")
        if mode == "float32":
            return self._conv1d(x)
        xp, quant = self.operand(F.pad(x, (self.pad, self.pad)), mode)
        # (B·T, 7, mel): the 7 time shifts of every frame, mel bands last.
        u = xp.unfold(2, kt, 1).permute(0, 2, 3, 1).reshape(b * t, kt, m)
        best = None
        for r in range(0, rows, TIMBRAL_ROWS):
            r0 = min(r, rows - TIMBRAL_ROWS)   # the last block may overlap the one before: max is idempotent
            y = self.product(u[:, :, r0: r0 + band].reshape(b * t, kt * band), mode)
            y = y.reshape(b * t, TIMBRAL_ROWS, c).amax(1)
            best = y if best is None else torch.maximum(best, y)
        return self.output(best.reshape(b, t, c), quant)

    def _conv1d(self, x: torch.Tensor) -> torch.Tensor:
        """Float32: per block of output rows, a Conv1d over time whose input
        channels are the k mel bands of each row."""
        b, m, t = x.shape
        unf = x.unfold(1, self.kmel, 1)                            # (B, rows, T, kmel) view
        rows, best = m - self.kmel + 1, None
        for r in range(0, rows, ROWS):
            n = min(ROWS, rows - r)
            chunk = unf[:, r: r + n].permute(0, 1, 3, 2).reshape(b * n, self.kmel, t)
            y = F.conv1d(chunk, self.w, self.bias, padding=self.pad).reshape(b, n, -1, t).amax(1)
            best = y if best is None else torch.maximum(best, y)
        return self.side(best)


class _Temporal(_SignedBranch):
    """Kernel (1 mel × k time), TF 'SAME' in time, as Toeplitz matrix
    products: every S = :data:`TEMPORAL_STEPS` output frames of a mel row read
    one window of S + k − 1 input frames (a strided view, 1 + (k−1)/S copies
    of the input instead of im2col's k), times one weight ``(S + k − 1, S·C)``
    holding the kernel at each of the S offsets; a running maximum over blocks
    of :data:`ROWS` mel rows. In float32, bfloat16 or int8 (``wtoep8``)."""

    WEIGHTS = {"float32": ("btoep", "wtoep"), "bfloat16": ("btoep16", "wtoep16"), "int8": (None, "wtoep8")}

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d):
        super().__init__(conv, bn)
        kernel = self.w[:, 0].t()                                              # (k, C)
        self.register_buffer("wtoep", self.toeplitz(kernel).contiguous(), persistent=False)
        self.register_buffer("btoep", self.bias.repeat(TEMPORAL_STEPS).contiguous(), persistent=False)
        self.register_buffer("wtoep16", self.wtoep.bfloat16(), persistent=False)
        self.register_buffer("btoep16", self.btoep.bfloat16(), persistent=False)
        self.register_buffer("wtoep8", self.toeplitz(self.int8_kernel(kernel)).to(torch.int8).contiguous(),
                             persistent=False)

    @staticmethod
    def toeplitz(kernel: torch.Tensor) -> torch.Tensor:
        """``(k, C)`` kernel → the Toeplitz weight ``(S+k−1, S·C)``."""
        k, c = kernel.shape
        wt = torch.zeros(TEMPORAL_STEPS + k - 1, TEMPORAL_STEPS, c)
        for q in range(TEMPORAL_STEPS):
            wt[q: q + k, q] = kernel
        return wt.reshape(-1, TEMPORAL_STEPS * c)

    def forward(self, x: torch.Tensor, mode: str) -> torch.Tensor:
        b, m, t = x.shape
        c, k, s = self.w.shape[0], self.ktime, TEMPORAL_STEPS
        blocks = -(-t // s)
        before = same_pad(k)[0]
        span = blocks * s + k - 1                       # zeros past TF's own padding only feed frames ≥ T
        xp, quant = self.operand(F.pad(x, (before, span - t - before)), mode)
        unf = xp.unfold(2, s + k - 1, s)                                          # (B, 96, blocks, S+k−1)
        best = None
        for r in range(0, m, ROWS):
            n = min(ROWS, m - r)
            y = self.product(unf[:, r: r + n].reshape(-1, s + k - 1), mode)         # (B·n·blocks, S·C)
            y = y.reshape(b, n, blocks * s, c).amax(1)
            best = y if best is None else torch.maximum(best, y)
        return self.output(best[:, :t], quant)


class FastMusicnn(nn.Module):
    """Inference-only :class:`~core.models.musicnn.Musicnn` with the same
    ``embed(patch)`` → (penultimate ``(B, 200)``, logits ``(B, 50)``).

    The front end (97 % of the CPU time) is rewritten: ReLU and batch norm
    after the mel max (exact), timbral convs as Conv1d over time with the
    mel bands as channels, temporal convs as one matrix product per block of
    rows, a running maximum over row blocks (no full-resolution activation);
    ``bfloat16``: these products in bfloat16; ``int8`` (wins over it): in
    int8 with int32 sums (:func:`quantise_patches`). Mid and back end are the
    original layers in float32."""

    def __init__(self, model: Musicnn, bfloat16: bool = False, int8: bool = False):
        super().__init__()
        self.mode = "int8" if int8 else "bfloat16" if bfloat16 else "float32"
        s, t = _bn_affine(model.input_bn)
        self.in_s, self.in_t = float(s), float(t)
        self.timbral = nn.ModuleList(_Timbral(b.conv, b.bn) for b in model.timbral)
        self.temporal = nn.ModuleList(_Temporal(b.conv, b.bn) for b in model.temporal)
        if [b.ktime for b in self.temporal] != list(TEMPORAL_TIME):
            raise ValueError("FastMusicnn needs musicnn's temporal kernels")
        back = copy.deepcopy(model).eval()
        self.mid, self.pool_bn, self.dense, self.dense_bn, self.out = (
            back.mid, back.pool_bn, back.dense, back.dense_bn, back.out)

    @property
    def int8(self) -> bool:
        return self.mode == "int8"

    def front(self, patch: torch.Tensor) -> torch.Tensor:
        """Patches ``(B, 1, 96, T)`` → the front end's ``(B, 561, T)``, :data:`FRONT_PATCHES` at a time."""
        x = patch.float()[:, 0] * self.in_s + self.in_t                  # (B, 96, T)
        branches = (*self.timbral, *self.temporal)
        return torch.cat([torch.cat([br(c, self.mode) for br in branches], 1)
                          for c in x.split(FRONT_PATCHES)], 0)

    # The mid and back end as Musicnn runs them, on this front end.
    pooled, mid_end, embed, forward = Musicnn.pooled, Musicnn.mid_end, Musicnn.embed, Musicnn.forward


def fast_tagger(model: nn.Module, bfloat16: bool | None = None, int8: bool | None = None) -> nn.Module:
    """An inference copy of a ported tagger (``embed(patch)`` → (penultimate,
    logits)); ``bfloat16`` / ``int8`` (musicnn's front end only) default to
    :func:`~core.models.optimise.use_bfloat16` / :func:`~core.models.optimise.use_int8`."""
    from core.models.optimise import optimise_for_inference, use_bfloat16, use_int8
    bf16 = use_bfloat16() if bfloat16 is None else bool(bfloat16)
    if isinstance(model, Musicnn):
        return FastMusicnn(model, bfloat16=bf16, int8=use_int8() if int8 is None else bool(int8)).eval()
    return optimise_for_inference(model, bfloat16=bf16)


class ClipVGG(nn.Module):
    """MSD_vgg's per-patch outputs from **one pass of its conv blocks 1–4 over
    the whole clip** — the pass the MSD transfer models (``cnn_msd``,
    ``crnn_msd``, ``fused``) already make, so a served bank takes theirs
    instead of running the blocks again (:func:`core.models.inference.predict_all`).

    The trunk's output ``(B, 128, 6, T4)`` (16 log-mel frames per step) is cut
    into one window of ⌊187 / 16⌋ = 11 steps per 3 s patch, patch k's starting
    at step ⌊187·k / 16⌋, and conv 5, pool 5 and the tag layer run on each
    window, as on a patch. This is not the checkpoint's own per-patch pass: at
    a patch border conv 1–4 see the neighbouring audio instead of zero
    padding, and a window may start up to 15 frames before its patch. Heads
    on this bank are fitted on exactly these outputs (``trunk-features``
    computes them here too) and judged leave-one-source-out.

    ``tagger``: an MSD_vgg port (or its inference copy) with ``trunk``,
    ``block5``, ``pool5`` and ``dense``; ``trunk_sha``: the digest of its
    blocks 1–4 before any rewrite (:func:`core.models.msd.trunk_digest`).
    """

    def __init__(self, tagger: nn.Module, trunk_sha: str):
        super().__init__()
        self.tagger, self.trunk_sha = tagger, trunk_sha

    @property
    def bfloat16(self) -> bool:
        return bool(getattr(self.tagger.trunk, "bfloat16", False))

    def trunk(self, logmel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(B, 1, 96, T)`` → blocks 1–4 over the whole clip ``(B, 128, 6, T4)``."""
        return self.tagger.trunk(logmel)

    def embed_clip(self, logmel: torch.Tensor, idx: list[int],
                   trunk: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The clip's patches ``idx`` → (penultimate ``(len(idx)·B, 256)``,
        logits ``(len(idx)·B, 50)``), patch-major like :func:`core.models.msd.patches`.
        ``trunk``: :meth:`trunk`'s output when another model has computed it."""
        from core.models.msd import PATCH_FRAMES, trunk_steps
        t = self.trunk(logmel) if trunk is None else trunk
        width = trunk_steps(PATCH_FRAMES)
        if t.shape[-1] < width:
            raise ValueError(f"MSD_vgg needs ≥ {width} trunk steps, got {t.shape[-1]}")
        # Patch k starts at frame 187·k: the trunk step its pools map that frame to.
        starts = [min(trunk_steps(PATCH_FRAMES * k), t.shape[-1] - width) for k in idx]
        wins = torch.cat([t[..., s: s + width] for s in starts], 0)          # (P'·B, 128, 6, 11)
        x = self.tagger.pool5(self.tagger.block5(wins))                      # (P'·B, 128, 1, 2)
        flat = x.permute(0, 3, 2, 1).flatten(1)                              # TF's flatten order
        return flat, self.tagger.dense(flat)
