"""Would int8 convolutions speed up the shared MSD-VGG pass? (issue 16, item 7)

    python -m benchmarks.vgg_int8 [--clips 24]

The served MSD-VGG trunk (:class:`core.models.msd_fast.FastMSDTrunk`) runs
conv 2–4 (128 → 128, 3 × 3) in bfloat16; conv 2 alone is about half of its
time. This times a copy with those three convolutions as oneDNN int8
convolutions (``torch.ops.onednn.qconv2d_pointwise``, the kernel PyTorch's
x86 quantisation lowers to): each clip's input quantised on its own to
uint8 (affine, its range widened to hold 0), each kernel per output channel
to int8, float32 out, so the exact pool-then-batch-norm order of the served
copy is kept. It is not shipped; it measures the lever.

On the first ``clips`` val clips (the shared data's loaders and the models'
own front end), one thread, it reports:

- CPU ms per clip of the trunk: float32, the served bfloat16 and the int8 copy;
- each copy's trunk output against float32 (relative error, lowest clip cosine);
- what ``cnn_msd`` and ``crnn_msd`` then predict: max |Δ probability| and the
  share of top genres that change, bfloat16 → int8.

Prints JSON; exits 2 (skipped) without the shared data or the ``musicnn`` wheel.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

from core.models.msd_fast import FastMSDTrunk, max_pool
from core.models.trunks_fast import quantise_kernel


class Int8Convs:
    """``trunk`` (a :class:`FastMSDTrunk`) with conv 2–4 as oneDNN int8
    convolutions: log-mel ``(B, 1, 96, T)`` → ``(B, 128, 6, T4)`` float32."""

    def __init__(self, trunk: FastMSDTrunk):
        self.trunk = trunk
        self.packed = {}
        for i in range(1, len(trunk.convs)):
            w = trunk.convs[i].weight.detach().float()                       # (C_out, C_in, 3, 3)
            levels, scale = quantise_kernel(w.flatten(1).T)                  # the served musicnn's quantiser
            levels = levels.T.reshape(w.shape).to(torch.int8).contiguous()
            self.packed[i] = (torch.ops.onednn.qconv_prepack(levels, scale, 1.0, 0, [1, 1], [1, 1], [1, 1], 1, None),
                              scale, torch.zeros(len(scale), dtype=torch.int64), trunk.convs[i].bias.detach().float())

    def conv(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Conv ``i`` of ``x`` ``(B, C, H, W)`` (channels-last), each clip quantised on its own."""
        out = []
        for clip in x.split(1):
            lo, hi = torch.aminmax(clip.permute(0, 2, 3, 1).reshape(-1))
            lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
            scale = max((hi - lo) / 255, 1e-12)
            zero = int(round(-lo / scale))
            q = _uint8(clip, scale, zero)
            packed, wscale, wzero, bias = self.packed[i]
            out.append(torch.ops.onednn.qconv2d_pointwise(q, scale, zero, packed, wscale, wzero, bias, [1, 1], [1, 1],
                                                          [1, 1], 1, 1.0, 0, torch.float32, "none", [], ""))
        return torch.cat(out)

    def __call__(self, logmel: torch.Tensor) -> torch.Tensor:
        tr = self.trunk
        x = tr._block1(logmel.float())
        for i in range(1, len(tr.convs)):
            x = tr._side(i, max_pool(self.conv(i, x), tr.kernels[i]))
        return x.contiguous()


def _uint8(x: torch.Tensor, scale: float, zero: int) -> torch.Tensor:
    """``x`` quantised to uint8 levels in one fused pass (the element-wise
    round / clamp / cast chain costs about as much as int8 saves)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # quantised tensor types are deprecated; only their kernel is used
        return torch.quantize_per_tensor(x, scale, zero, torch.quint8).int_repr()


def _cpu_ms(fn, x: torch.Tensor, repeats: int = 2) -> float:
    fn(x[:1])
    t0 = time.thread_time()
    for _ in range(repeats):
        fn(x)
    return round((time.thread_time() - t0) / repeats / len(x) * 1000, 1)


def _vs(ref: torch.Tensor, y: torch.Tensor) -> dict:
    cos = torch.nn.functional.cosine_similarity(ref.flatten(1), y.flatten(1))
    return {"relative_error": round(float((y - ref).norm() / ref.norm()), 4), "min_cosine": round(float(cos.min()), 5)}


def measure(clips: int = 24) -> dict:
    from core.audio.features import logmels, normalise_level
    from core.audio.load import load_multi
    from core.config import shared_data_dirs
    from core.datasets import read_datasets
    from core.models.artifacts import available_models, load_model
    from core.models.optimise import optimise_for_inference, torch_threads

    shipped = available_models()     # only the two MSD models load (not the trunk bank)
    nets = {n: optimise_for_inference(load_model(n)) for n in ("cnn_msd", "crnn_msd") if n in shipped}
    tracks = [t for t in read_datasets(shared_data_dirs()) if t.split == "val"][:clips]
    if len(nets) < 2 or not tracks:
        return {"note": "skipped: needs the shared data's val split and the shipped cnn_msd / crnn_msd"}
    first = nets["cnn_msd"]
    cfg = first.cfg
    trunk = first.trunk
    mel = logmels(torch.cat([torch.as_tensor(load_multi(str(t.path), [cfg])[0]) for t in tracks]), cfg)
    x = normalise_level(mel, cfg)

    def served(bf16: bool):
        def run(v):
            trunk.bfloat16 = bf16
            return trunk(v)
        return run

    copies = {"float32": served(False), "bfloat16": served(True), "int8": Int8Convs(trunk)}
    out: dict = {"clips": len(tracks), "cpu_ms_per_clip": {}, "vs_float32": {}}
    with torch_threads(1), torch.inference_mode():
        feats = {name: fn(x) for name, fn in copies.items()}
        for name, fn in copies.items():
            out["cpu_ms_per_clip"][name] = _cpu_ms(fn, x)
        trunk.bfloat16 = True
        for name in ("bfloat16", "int8"):
            out["vs_float32"][name] = _vs(feats["float32"], feats[name])
        out["predictions_bfloat16_to_int8"] = {}
        for n, m in nets.items():
            a, b = m.predict_trunk(feats["bfloat16"]).probs, m.predict_trunk(feats["int8"]).probs
            out["predictions_bfloat16_to_int8"][n] = {
                "max_abs_prob": round(float(np.abs(a - b).max()), 4),
                "top_genre_changed": round(float(np.mean(a.argmax(1) != b.argmax(1))), 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=24)
    r = measure(ap.parse_args(argv).clips)
    print(json.dumps(r, indent=1))
    return 2 if "note" in r else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
