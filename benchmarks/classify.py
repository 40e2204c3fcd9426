"""Decode-to-probabilities latency of one file: cold (a fresh process) and warm."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.config import Log

_COLD_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
from core.models.artifacts import load_models
from core.models.inference import analyse
t1 = time.perf_counter()
models = load_models(sys.argv[1])
t2 = time.perf_counter()
analyse(sys.argv[2], models)
t3 = time.perf_counter()
print(json.dumps({"import_ms": 1000 * (t1 - t0), "load_ms": 1000 * (t2 - t1), "first_ms": 1000 * (t3 - t2)}))
"""


def bench_classify(path: Path, models, artifacts_dir: Path, repeats: int, log: Log) -> dict:
    """Decode-to-probabilities latency of :func:`core.models.inference.analyse`.

    ``cold``: a fresh process loading the models and classifying once (the
    first call also sets up oneDNN kernels); ``warm``: median of later calls.
    """
    from core.models.inference import analyse
    from core.models.optimise import optimise_for_inference, torch_threads

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", _COLD_SNIPPET, str(artifacts_dir), str(path)],
                          capture_output=True, text=True, cwd=root, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"cold classification failed: {proc.stderr.strip().splitlines()[-1:]}")
    cold = json.loads(proc.stdout.strip().splitlines()[-1])
    analyse(str(path), models)
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        analyse(str(path), models)
        warm.append(time.perf_counter() - t0)
    # The configuration the indexer uses: optimised copies, one torch thread.
    fast = {n: optimise_for_inference(m) for n, m in models.items()}
    warm_opt = []
    with torch_threads(1):
        analyse(str(path), fast)
        for _ in range(repeats):
            t0 = time.perf_counter()
            analyse(str(path), fast)
            warm_opt.append(time.perf_counter() - t0)
    out = {
        "cold": round(cold["load_ms"] + cold["first_ms"], 1),
        "warm": round(1000 * float(np.median(warm)), 1),
        "warm_optimised_1_thread": round(1000 * float(np.median(warm_opt)), 1),
        "cold_import_ms": round(cold["import_ms"], 1),
        "cold_model_load_ms": round(cold["load_ms"], 1),
        "cold_first_call_ms": round(cold["first_ms"], 1),
        "file": path.name,
    }
    log(f"classify: cold {out['cold']} ms (+{out['cold_import_ms']} ms imports), warm {out['warm']} ms, "
        f"warm with optimised models on 1 thread {out['warm_optimised_1_thread']} ms")
    return out
