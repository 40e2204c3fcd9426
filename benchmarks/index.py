"""Indexing throughput of the product pipeline against a naive baseline on
the same files (wall and CPU time), per-stage CPU profile, peak memory."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.config import BenchConfig, Log
from benchmarks.rss import RssSampler
from core.config import FeatureConfig
from core.procs import tree_cpu_seconds


def naive_embed(path: str, models) -> dict[str, np.ndarray]:
    """The baseline written the obvious way, for one track: ``librosa.load``
    at default settings (only each model's sample rate is asked for; one
    load per distinct rate), ``librosa.feature.melspectrogram`` and the
    model's compression, one forward pass per model."""
    import librosa
    import torch

    from core.audio.features import compress

    waves: dict[int, np.ndarray] = {}
    out = {}
    for name, m in models.items():
        cfg = m.cfg
        if cfg.sample_rate not in waves:
            waves[cfg.sample_rate] = librosa.load(path, sr=cfg.sample_rate)[0]
        s = librosa.feature.melspectrogram(y=waves[cfg.sample_rate], sr=cfg.sample_rate, n_fft=cfg.n_fft,
                                           hop_length=cfg.hop_length, n_mels=cfg.n_mels,
                                           fmin=cfg.f_min, fmax=cfg.f_max)
        lm = compress(torch.from_numpy(s), cfg).numpy()
        if lm.shape[1] < cfg.n_frames:
            lm = np.pad(lm, ((0, 0), (0, cfg.n_frames - lm.shape[1])))
        x = torch.from_numpy(lm[:, : cfg.n_frames].astype(np.float32))[None, None]
        out[name] = m.predict_logmel(x).embedding[0]
    return out


def profile_stages(paths: list[Path], models, log: Log) -> dict[str, float]:
    """CPU milliseconds per track of each stage, one track at a time on one
    thread (thread CPU time, so other load on the machine does not inflate
    it; not the wall time of the parallel pipeline). ``load_total``
    is :func:`core.audio.load.load` end to end (decode + resample + checks +
    loudness); ``network_*`` is all sliding windows of one track."""
    import librosa
    import soundfile as sf
    import soxr
    import torch
    from threadpoolctl import threadpool_limits

    from core.audio.cache import content_hash
    from core.audio.features import LogMelFrontEnd
    from core.audio.load import load, load_multi
    from core.models.inference import distinct_configs
    from core.models.optimise import optimise_for_inference, torch_threads

    cfgs = distinct_configs(models)
    fronts = {c.key(): LogMelFrontEnd(c) for c in cfgs}
    fast = {n: optimise_for_inference(m) for n, m in models.items()}
    t: dict[str, float] = {}

    def add(key: str, start: float) -> float:
        now = time.thread_time()
        t[key] = t.get(key, 0.0) + now - start
        return now

    def rate(c: FeatureConfig) -> str:
        return f"{c.sample_rate // 1000}k"

    with torch_threads(1), threadpool_limits(1), torch.inference_mode():
        # Warm-up: first calls allocate and pick oneDNN kernels.
        for c in cfgs:
            x = fronts[c.key()](torch.from_numpy(load(str(paths[0]), c)))
            for n, m in models.items():
                if m.cfg.key() == c.key():
                    m.predict_logmel(x)
                    fast[n].predict_logmel(x)
        for p in paths:
            s = time.thread_time()
            content_hash(p)
            s = add("hash", s)
            with sf.SoundFile(str(p)) as f:
                y, sr = f.read(dtype="float32", always_2d=True), f.samplerate
            s = add("decode", s)
            for c in cfgs:   # "resample": all rates; "resample_<rate>": each
                s0 = s
                soxr.resample(y.mean(axis=1), sr, c.sample_rate, quality="HQ")
                s = add(f"resample_{rate(c)}", s)
                t["resample"] = t.get("resample", 0.0) + s - s0
            waves = load_multi(str(p), cfgs)  # all of decoding: read once, resample, checks, loudness, crop
            s = add("load_total", s)
            xs = {}
            for c, w in zip(cfgs, waves):
                s0 = s
                xs[c.key()] = fronts[c.key()](torch.from_numpy(w[0]))
                s = add(f"stft_mel_{rate(c)}", s)
                t["stft_mel"] = t.get("stft_mel", 0.0) + s - s0
            for name, m in models.items():
                m.predict_logmel(xs[m.cfg.key()])
                s = add(f"network_{name}", s)
            for name, m in fast.items():
                m.predict_logmel(xs[m.cfg.key()])
                s = add(f"network_{name}_optimised", s)
            # The naive baseline's decoding and features, for comparison.
            for c in cfgs:
                y2, sr2 = librosa.load(str(p), sr=c.sample_rate)
                s = add(f"baseline_librosa_load_{rate(c)}", s)
                librosa.feature.melspectrogram(y=y2, sr=sr2, n_fft=c.n_fft, hop_length=c.hop_length,
                                               n_mels=c.n_mels, fmin=c.f_min, fmax=c.f_max)
                s = add(f"baseline_librosa_melspectrogram_{rate(c)}", s)
    n = len(paths)
    out = {k: round(1000 * v / n, 2) for k, v in t.items()}
    log("profile (CPU ms/track, 1 thread): " + ", ".join(f"{k} {v}" for k, v in out.items()))
    return out


def bench_index(paths: list[Path], models, cfg: BenchConfig, log: Log) -> tuple[dict, float]:
    """Tracks/s of the product pipeline (cold cache, then warm) and of the
    naive baseline on the same files; also the embeddings' agreement.

    The two alternate over ``rounds`` slices of the files, so load from
    other processes on the machine hits both alike; CPU seconds per track
    (immune to such load) are reported beside the wall-clock rates.
    """
    import torch

    from core.catalog.pipeline import WORKER_PRELOAD, default_workers, embed_paths
    from core.procs import start_pool_server

    files = [str(p) for p in paths]
    # Warm both paths on one file (lazy imports, first-call allocations), and
    # start the workers' pool server (one file runs in this process, so the
    # first timed call would otherwise start it; its CPU is reported apart).
    naive_embed(files[0], models)
    with tempfile.TemporaryDirectory() as warm:
        list(embed_paths(files[:1], models, cache=warm))
    c0 = tree_cpu_seconds()
    start_pool_server(WORKER_PRELOAD)
    server_cpu = tree_cpu_seconds() - c0

    rounds = max(1, min(cfg.rounds, len(files) // max(1, cfg.batch_size)))
    slices = [list(s) for s in np.array_split(np.array(files, dtype=object), rounds)]
    t_base = t_fast = cpu_base = cpu_fast = 0.0
    base: list[dict] = []
    res = []
    load_before = os.getloadavg()[0]
    peak = 0.0
    with tempfile.TemporaryDirectory() as cache_dir:
        for part in slices:
            c0, t0 = tree_cpu_seconds(), time.perf_counter()
            base += [naive_embed(f, models) for f in part]
            t_base += time.perf_counter() - t0
            cpu_base += tree_cpu_seconds() - c0
            with RssSampler(children=True, interval=0.05) as mem:  # the pipeline's memory only
                c0, t0 = tree_cpu_seconds(), time.perf_counter()
                res += list(embed_paths(part, models, batch_size=cfg.batch_size, workers=cfg.workers,
                                        cache=cache_dir))
                t_fast += time.perf_counter() - t0
                cpu_fast += tree_cpu_seconds() - c0
            peak = max(peak, mem.peak)
        log(f"baseline: {len(files)} tracks in {t_base:.1f} s; pipeline: {t_fast:.1f} s (cold cache), "
            f"peak {peak:.0f} MB")
        t0 = time.perf_counter()
        list(embed_paths(files, models, batch_size=cfg.batch_size, workers=cfg.workers, cache=cache_dir))
        t_cached = time.perf_counter() - t0
    errors = [r.error for r in res if r.error]
    # The baseline decodes the whole file; the pipeline the model's centred,
    # loudness-normalised window, so embeddings agree closely but not exactly.
    agree = {}
    for name in models:
        sims = [float(np.dot(a[name], r.embedding[name]) /
                      (np.linalg.norm(a[name]) * np.linalg.norm(r.embedding[name]) + 1e-12))
                for a, r in zip(base, res) if not r.error]
        agree[name] = round(float(np.median(sims)), 4) if sims else None
    n = len(files)
    index = {
        "tracks": n,
        "tracks_per_s": round(n / t_fast, 3),
        "baseline_tracks_per_s": round(n / t_base, 3),
        "speedup": round(t_base / t_fast, 2),
        "tracks_per_s_cached": round(n / t_cached, 3),
        "cpu_ms_per_track": round(1000 * cpu_fast / n, 1),
        "baseline_cpu_ms_per_track": round(1000 * cpu_base / n, 1),
        "cpu_s_per_track": round(cpu_fast / n, 3),
        "baseline_cpu_s_per_track": round(cpu_base / n, 3),
        "cpu_speedup": round(cpu_base / cpu_fast, 2),
        "seconds": round(t_fast, 2),
        "baseline_seconds": round(t_base, 2),
        "rounds": rounds,
        "pool_server_start_cpu_s": round(server_cpu, 2),   # once per process, before the timing
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "errors": len(errors),
        "batch_size": cfg.batch_size,
        "workers": default_workers() if cfg.workers is None else cfg.workers,
        "torch_threads_per_worker": 1,
        "baseline_torch_threads": torch.get_num_threads(),
        "embedding_cosine_vs_baseline_median": agree,
    }
    return index, peak
