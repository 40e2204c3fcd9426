"""The ``"library"`` benchmark: a generated tagged music library
(``<Artist>/<Album>/<NN Title>.<ext>``, mixed formats, some broken files)
indexed by ``python -m core index --layout library`` in a subprocess, which
is killed with SIGKILL part-way and restarted.

Measured: decode time per format, tag reading, the catalog scan, indexing
throughput (``tracks_per_s``: tracks over the wall time of both runs,
model loading included; ``embed_tracks_per_s``: the resumed run's own rate),
the indexer's peak memory (process and workers), whether the resume lost or
repeated a track (``resume_ok``), the time from the indexer's start until a
recommendation can be computed on the first committed tracks, and
recommendation latency on the final index.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.config import BenchConfig, Log
from benchmarks.library_gen import AV_FORMATS, SNDFILE_FORMATS, generate_library
from benchmarks.rss import RssSampler
from core.config import PROJECT_ROOT

FORMATS = tuple(SNDFILE_FORMATS) + tuple(AV_FORMATS)


def _ms(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1000
    return {"p50": round(float(np.median(a)), 2), "p95": round(float(np.percentile(a, 95)), 2),
            "n": int(a.size)}


def _library(cfg: BenchConfig, log: Log) -> tuple[Path, dict]:
    """The generated library, reused from ``cfg.library_dir`` when it already holds one."""
    root = Path(cfg.library_dir) if cfg.library_dir else Path(tempfile.mkdtemp(prefix="bench_library_"))
    marker = root / "generated.json"
    want = {"files": cfg.library_files, "seconds": cfg.library_seconds, "formats": list(FORMATS)}
    if marker.is_file() and json.loads(marker.read_text()).get("want") == want:
        return root / "Music", json.loads(marker.read_text())["counts"]
    shutil.rmtree(root / "Music", ignore_errors=True)
    t = time.perf_counter()
    counts = generate_library(root / "Music", cfg.library_files, seconds=cfg.library_seconds, formats=FORMATS)
    counts["generate_s"] = round(time.perf_counter() - t, 1)
    marker.write_text(json.dumps({"want": want, "counts": counts}))
    log(f"library: generated {counts['files']} files in {counts['generate_s']} s")
    return root / "Music", counts


def _decode_ms(music: Path, models: dict, per_format: int = 8) -> dict:
    """Median decode time (one load for every model setting) per format."""
    from core.audio.load import AudioError, load_multi
    from core.models.inference import distinct_configs

    cfgs = distinct_configs(models)
    by_ext: dict[str, list[Path]] = {}
    for p in sorted(music.rglob("*")):
        if p.is_file() and "Broken" not in p.name:
            key = "alac.m4a" if p.name.endswith("(alac).m4a") else p.suffix.lstrip(".")
            by_ext.setdefault(key, []).append(p)
    out = {}
    for ext, files in sorted(by_ext.items()):
        times = []
        for p in files[:per_format]:
            t = time.perf_counter()
            try:
                load_multi(p, cfgs)
            except AudioError:
                continue
            times.append(time.perf_counter() - t)
        if times:
            out[ext] = _ms(times)
    return out


def _index_cmd(music: Path, out: Path, model_dir: Path, models: list[str], checkpoint: int,
               small: bool) -> list[str]:
    """The indexer's command line (a small library: one file per batch, so it can be killed part-way)."""
    return [sys.executable, "-m", "core", "index", "--data", str(music), "--layout", "library",
            "--out", str(out), "--artifacts", str(model_dir), "--models", ",".join(models),
            "--checkpoint", str(checkpoint)] + (["--batch-size", "1"] if small else [])


def _first_recommendation(out: Path) -> bool:
    """Whether a recommendation can be computed on what is committed so far."""
    from core.catalog.index import CatalogIndex
    from core.recommend.methods import recommend
    from core.recommend.request import MAX_SEEDS

    if not (out / "CURRENT").is_file():
        return False
    idx = CatalogIndex.open(out)
    if len(idx) <= MAX_SEEDS:
        return False
    return bool(recommend(idx, list(idx.column("track_id")[:MAX_SEEDS]), k=5))


def bench_library(cfg: BenchConfig, model_dir: Path, model_names: list[str], log: Log) -> dict:
    """The ``"library"`` entry (see the module docstring)."""
    from core.catalog.index import CatalogIndex
    from core.catalog.store import indexed_tracks
    from core.datasets import read_dataset
    from core.datasets.tags import read_tags
    from core.models.artifacts import load_models
    from core.recommend.methods import recommend
    from core.recommend.request import MAX_SEEDS

    music, counts = _library(cfg, log)
    models = {n: m for n, m in load_models(model_dir).items() if n in model_names}
    report: dict = {"files": counts["files"], "broken_files": counts["broken"], "formats": counts["formats"],
                    "clip_seconds": cfg.library_seconds, "models": list(models),
                    "note": (f"generated {cfg.library_seconds:g} s clips (each still fills a full model window: "
                             "indexing cost per track is that of a full track); indexed with "
                             f"{', '.join(models)} only, to fit the 2-core machine")}
    report["decode_ms"] = _decode_ms(music, models)
    t = time.perf_counter()
    tracks = read_dataset(music, "library")
    report["scan_s"] = round(time.perf_counter() - t, 2)          # walk + tags of every file
    sample = [tr.path for tr in tracks[:200]]
    t = time.perf_counter()
    for p in sample:
        read_tags(p)
    report["tags_ms_per_file"] = round((time.perf_counter() - t) / max(len(sample), 1) * 1000, 3)
    log(f"library: {len(tracks)} files scanned in {report['scan_s']} s; decode {report['decode_ms']}")

    work = Path(tempfile.mkdtemp(prefix="bench_library_idx_"))
    out = work / "index"
    env = dict(os.environ, GENRE_CACHE=str(work / "cache"), PYTHONPATH=str(PROJECT_ROOT))
    readable = counts["files"] - counts["broken"]
    checkpoint = min(cfg.library_checkpoint, max(2, readable // 8))
    cmd = _index_cmd(music, out, model_dir, list(models), checkpoint, small=readable < 100)
    kill_at = max(MAX_SEEDS + 1, int(cfg.library_kill_at * readable))
    start = time.perf_counter()
    first_rec = None
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rss = RssSampler(proc.pid, children=True, interval=0.1).start()
    killed_at = None
    try:
        while proc.poll() is None:
            time.sleep(0.1)
            if first_rec is None and _first_recommendation(out):
                first_rec = time.perf_counter() - start
            # Killed only once the first recommendation was timed on what was committed.
            if first_rec is not None and indexed_tracks(out) >= kill_at:
                proc.send_signal(signal.SIGKILL)
                killed_at = indexed_tracks(out)
                break
    finally:
        proc.wait()
    run1 = time.perf_counter() - start
    peak1 = rss.stop()
    before = CatalogIndex.open(out)
    kept = dict(zip(before.column("track_id"), before.snapshot().frame["indexed_at"]))
    log(f"library: killed the indexer at {killed_at} committed tracks after {run1:.0f} s")

    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    rss = RssSampler(proc.pid, children=True, interval=0.1).start()
    stdout, stderr = proc.communicate()
    run2 = time.perf_counter() - t
    peak2 = rss.stop()
    stats = json.loads(stdout.strip().splitlines()[-1]) if proc.returncode == 0 and stdout.strip() else {}
    after = CatalogIndex.open(out)
    ids = list(after.column("track_id"))
    again = dict(zip(ids, after.snapshot().frame["indexed_at"]))
    resume_ok = bool(killed_at is not None and proc.returncode == 0 and len(ids) == len(set(ids)) == readable
                     and all(again.get(k) == v for k, v in kept.items())
                     and stats.get("embedded") == readable - len(kept) and stats.get("unchanged") == len(kept))
    skipped = [ln for ln in stderr.splitlines() if ln.startswith("skipped:")]
    rng = np.random.default_rng(0)
    times = []
    for _ in range(20):
        seeds = list(rng.choice(np.asarray(ids), MAX_SEEDS, replace=False))
        t = time.perf_counter()
        recommend(after, seeds, k=10)
        times.append(time.perf_counter() - t)
    shutil.rmtree(work, ignore_errors=True)
    report.update({
        "tracks": len(ids), "unreadable_reported": len(skipped),
        "tracks_per_s": round(len(ids) / (run1 + run2), 3),
        "embed_tracks_per_s": round(stats["embedded"] / stats["seconds"], 3) if stats.get("seconds") else None,
        "peak_rss_mb": round(max(peak1, peak2), 1),
        "resume_ok": resume_ok, "killed_at_tracks": killed_at, "kept_after_kill": len(kept),
        "seconds_to_first_recommendation": round(first_rec, 1) if first_rec is not None else None,
        "index_wall_s": {"until_kill": round(run1, 1), "resumed": round(run2, 1)},
        "recommend_ms": _ms(times)})
    return report
