"""Does onnxruntime run the served trunks faster than PyTorch? (issue 16, item 7)

    python -m benchmarks.onnx_trunks [--ort-python /tmp/ortvenv/bin/python] [--clips 4]

onnxruntime is not a project dependency. A scratch venv holds it:
``python3.11 -m venv /tmp/ortvenv && /tmp/ortvenv/bin/pip install
onnxruntime==1.31.1 onnx==1.23.2``.

This interpreter does three things:
- it exports each trunk's plain float32 port with ``torch.onnx``, importing
  ``onnx`` from the scratch venv's site-packages, which is appended to
  ``sys.path``;
- it times the served PyTorch copies (fast float32, and fast bfloat16 where
  the CPU has it) on the same patches;
- it compares every output with the plain port's.

The scratch interpreter runs this file with ``--ort-side``. It times
onnxruntime on one thread with every graph optimisation (which folds batch
norm into the convolutions and fuses the activations), in float32 and
statically quantised to int8 (QDQ, per-channel weights, calibrated on
patches of training clips).

All timings are on whole val clips (10 patches of 3 s), in CPU seconds per
clip. The fast copies do not export: MSD_musicnn's banded products use
``Unfold`` with traced sizes, and MSD_vgg's traces its first-layer branch
wrongly. They are only timed in PyTorch. The script prints JSON and exits 2
(skipped) when no onnxruntime interpreter is found.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_ORT_PYTHON = os.environ.get("GENRE_ORT_PYTHON", "/tmp/ortvenv/bin/python")
TRUNKS = ("msd_musicnn", "msd_vgg")       # the served bank's (fused_trunks)
BATCH = 10                                # one clip's patches per run


def _timed(run, x: np.ndarray, repeats: int) -> tuple[float, list]:
    """``run`` over ``x`` one clip (``BATCH`` patches) at a time, ``repeats``
    times after a warm-up: (CPU s per clip, the last pass's outputs)."""
    run(x[:BATCH])                                            # warm-up
    t0 = time.process_time()
    for _ in range(repeats):
        outs = [run(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]
    return (time.process_time() - t0) / repeats / (len(x) // BATCH), outs


def _ort_side(folder: str, repeats: str) -> None:   # pragma: no cover - runs under onnxruntime
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    d = Path(folder)
    calib, val = np.load(d / "calib.npy"), np.load(d / "val.npy")

    class Calib(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"patches": calib[i:i + BATCH]} for i in range(0, len(calib), BATCH)])

        def get_next(self):
            return next(self.it, None)

    times = {}
    for f in sorted(glob.glob(str(d / "*_float32.onnx"))):
        name = Path(f).name[: -len("_float32.onnx")]
        pre, q = d / f"{name}_pre.onnx", d / f"{name}_int8.onnx"
        quant_pre_process(f, str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(q), Calib(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        for kind, path in (("ort_float32", f), ("ort_int8", str(q))):
            so = ort.SessionOptions()
            so.intra_op_num_threads = so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            cpu, outs = _timed(lambda x, s=sess: s.run(None, {"patches": x}), val, int(repeats))
            times[f"{name}/{kind}"] = cpu
            np.savez(d / f"{name}_{kind}.npz", pen=np.concatenate([o[0] for o in outs]),
                     logits=np.concatenate([o[1] for o in outs]))
    (d / "ort_times.json").write_text(json.dumps({"onnxruntime": ort.__version__, "cpu_s_per_clip": times}))


def clip_patches(split: str, n_clips: int) -> np.ndarray:
    """All 3 s patches of ``n_clips`` clips of ``split`` spread over the shared
    data, through the served path's load, front-end and level step:
    ``(n_clips·10, 1, 96, 187)``, clip-major."""
    import torch

    from core.audio.features import normalise_level
    from core.config import shared_data_dirs
    from core.datasets import read_datasets
    from core.models.msd import MSD_FEATURES, patches
    from core.models.trunks import clip_logmel
    tracks = sorted((t for t in read_datasets(shared_data_dirs()) if t.split == split), key=lambda t: t.track_id)
    if not tracks:
        raise SystemExit(f"no {split} clips in the shared data (../shared/data or $GENRE_DATA)")
    pick = [tracks[i] for i in np.linspace(0, len(tracks) - 1, n_clips).astype(int)]
    mel = normalise_level(torch.stack([clip_logmel(t.path) for t in pick]), MSD_FEATURES)   # (N, 1, 96, T)
    return torch.cat([patches(m[None]) for m in mel]).contiguous().numpy()


def _torch_side(folder: Path, ort_python: str, val: np.ndarray, repeats: int) -> dict:
    """Export the plain ports and time the PyTorch copies: ``{"outs": {"name/kind": (pen, logits)},
    "times": {"name/kind": CPU s per clip}}``."""
    import torch
    from torch import nn

    from core.models.optimise import cpu_has_bfloat16, torch_threads
    from core.models.trunks import load_trunk, resolve
    site = glob.glob(str(Path(ort_python).parent.parent / "lib" / "python3*" / "site-packages"))
    sys.path.extend(site)                         # onnx, for the exporter only; ours come first

    class Embed(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, p):
            pen, logits = self.m.embed(p)
            return pen.float(), logits.float()

    kinds = [("torch_plain_float32", False, False), ("torch_fast_float32", True, False)]
    if cpu_has_bfloat16():
        kinds.append(("torch_fast_bfloat16", True, True))
    outs, times, x = {}, {}, torch.from_numpy(val)
    with torch_threads(1), torch.inference_mode():
        for spec in resolve(list(TRUNKS)):
            for kind, fast, bf16 in kinds:
                model = load_trunk(spec, fast=fast, bfloat16=bf16)[0].eval()
                cpu, res = _timed(lambda p, m=model: m.embed(torch.from_numpy(p)), val, repeats)
                times[f"{spec.name}/{kind}"] = cpu
                outs[f"{spec.name}/{kind}"] = (torch.cat([r[0] for r in res]).float().numpy(),
                                               torch.cat([r[1] for r in res]).float().numpy())
                if kind == "torch_plain_float32":
                    torch.onnx.export(Embed(model), (x[:BATCH],), str(folder / f"{spec.name}_float32.onnx"),
                                      input_names=["patches"], output_names=["pen", "logits"],
                                      dynamic_axes={"patches": {0: "n"}}, dynamo=False, opset_version=17)
    return {"outs": outs, "times": times}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ort-python", default=DEFAULT_ORT_PYTHON)
    ap.add_argument("--clips", type=int, default=4, help="val clips timed and compared")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    if not Path(args.ort_python).is_file():
        print(f"skipped: no onnxruntime interpreter at {args.ort_python}", file=sys.stderr)
        return 2
    from benchmarks.trunks import _cost
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        val = clip_patches("val", args.clips)
        np.save(d / "val.npy", val)
        np.save(d / "calib.npy", clip_patches("train", 2))
        ours = _torch_side(d, args.ort_python, val, args.repeats)
        subprocess.run([args.ort_python, __file__, "--ort-side", tmp, str(args.repeats)], check=True)
        ort_times = json.loads((d / "ort_times.json").read_text())
        times = {**ours["times"], **ort_times["cpu_s_per_clip"]}
        outs = dict(ours["outs"])
        for key in ort_times["cpu_s_per_clip"]:
            z = np.load(d / f"{key.replace('/', '_')}.npz")
            outs[key] = (z["pen"], z["logits"])
    sig = lambda z: 1 / (1 + np.exp(-z))   # noqa: E731
    report = {"val_clips": args.clips, "patches_per_clip": len(val) // args.clips, "threads": 1,
              "load_1min": os.getloadavg()[0], "onnxruntime": ort_times["onnxruntime"], "trunks": {}}
    for name in TRUNKS:
        ref = {name: (outs[f"{name}/torch_plain_float32"][0], sig(outs[f"{name}/torch_plain_float32"][1]))}
        report["trunks"][name] = {
            kind.split("/")[1]: {"cpu_s_per_clip": round(t, 4),
                                 **_cost(ref, {name: (outs[kind][0], sig(outs[kind][1]))})[name]}
            for kind, t in times.items() if kind.startswith(name + "/")}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--ort-side":
        _ort_side(*sys.argv[2:4])
    else:
        sys.exit(main())
