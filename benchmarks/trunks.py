"""Speed and accuracy cost of the pretrained trunks' inference copies.

    python -m benchmarks.trunks [--clips 12] [--repeats 2] [--json OUT]

On real 30 s clips (the shared data, decoded and turned into log-mels once,
outside the timing), one torch thread, in one run: CPU seconds per clip of
each trunk as ported (plain float32), as the fast float32 copy, as the fast
bfloat16 copy (where the CPU has native bfloat16) and with the musicnn trunks'
front end in int8 (``fast_int8``; the VGGs as served), and what each copy costs
in accuracy against the plain port at clip level (the outputs the head
sees): max |Δ tag probability| and the minimum cosine of the pooled
features. Also the cost of using every other 3 s patch (5 of 10).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch


def _cpu_per_clip(fn, n_clips: int, repeats: int) -> float:
    fn()                                  # warm-up (oneDNN primitive creation)
    t0 = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - t0) / repeats / n_clips


def _clip_level(bank, mel) -> dict:
    return {n: (f.numpy(), t.numpy()) for n, (f, t) in bank.run(mel).items()}


def _cost(ref: dict, other: dict) -> dict:
    out = {}
    for name, (f0, t0) in ref.items():
        f1, t1 = other[name]
        cos = (f0 * f1).sum(1) / (np.linalg.norm(f0, axis=1) * np.linalg.norm(f1, axis=1) + 1e-12)
        out[name] = {"max_abs_tag_prob": float(np.abs(t0 - t1).max()), "min_feature_cosine": float(cos.min())}
    return out


def bench_trunks(n_clips: int = 12, repeats: int = 2, dirs=None) -> dict:
    """The report (see the module docstring) on ``n_clips`` clips of ``dirs``
    (data folders read by :func:`core.datasets.read_datasets`; default ../shared/data)."""
    from core.config import shared_data_dirs
    from core.datasets import read_datasets
    from core.models.optimise import cpu_has_bfloat16, cpu_prefers_int8, torch_threads, use_int8
    from core.models.trunks import TRUNKS, TrunkBank, clip_logmel
    tracks = sorted(read_datasets(dirs or shared_data_dirs()), key=lambda t: t.track_id)
    if not tracks:
        raise SystemExit("no labelled audio to time the trunks on (--data or ../shared/data)")
    pick = [tracks[i] for i in np.linspace(0, len(tracks) - 1, n_clips).astype(int)]
    mel = torch.stack([clip_logmel(t.path) for t in pick])              # (N, 1, 96, 1872)
    half = torch.cat([mel[..., i * 187:(i + 1) * 187] for i in range(0, 10, 2)], -1)
    banks = {"plain_float32": TrunkBank(fast=False), "fast_float32": TrunkBank(bfloat16=False, int8=False)}
    if cpu_has_bfloat16():
        banks["fast_bfloat16"] = TrunkBank(bfloat16=True, int8=False)
    # The musicnn trunks' front end in int8 (the VGGs as in the bfloat16 / float32 copy).
    banks["fast_int8"] = TrunkBank(bfloat16=cpu_has_bfloat16(), int8=True)
    report = {"clips": n_clips, "patches_per_clip": 10, "threads": 1, "repeats": repeats,
              "load_1min": os.getloadavg()[0], "cpu_native_bfloat16": cpu_has_bfloat16(),
              "cpu_prefers_int8": cpu_prefers_int8(),
              "cpu_s_per_clip": {}, "accuracy_cost_vs_plain_float32": {}}
    with torch_threads(1), torch.inference_mode():
        ref = _clip_level(banks["plain_float32"], mel)
        for kind, bank in banks.items():
            report["cpu_s_per_clip"][kind] = {
                name: _cpu_per_clip(lambda b=bank, n=name: TrunkBank(models={n: b.models[n]}).run(mel),
                                    n_clips, repeats) for name in TRUNKS}
            report["cpu_s_per_clip"][kind]["all"] = sum(report["cpu_s_per_clip"][kind].values())
            if kind != "plain_float32":
                report["accuracy_cost_vs_plain_float32"][kind] = _cost(ref, _clip_level(bank, mel))
        served = banks["fast_int8"] if use_int8() else banks.get("fast_bfloat16", banks["fast_float32"])
        report["accuracy_cost_vs_plain_float32"]["every_other_patch_served"] = _cost(ref, _clip_level(served, half))
    report["load_1min_after"] = os.getloadavg()[0]
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rep = bench_trunks(args.clips, args.repeats)
    text = json.dumps(rep, indent=1)
    if args.json:
        from core.files import atomic_write_text
        atomic_write_text(args.json, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
