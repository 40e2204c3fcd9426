"""Benchmark: indexing throughput vs a naive baseline, classification latency,
query latency and recall at 10k–1M tracks, peak memory.

Everything is measured in one run on the same files and the same machine,
so the ratios are fair. ``python -m core bench --json OUT.json`` (see
:mod:`core.cli.bench`); README.md (Performance) explains each figure.
"""

from __future__ import annotations

import platform
import sys
import tempfile
from pathlib import Path

from benchmarks.classify import bench_classify
from benchmarks.config import BenchConfig, Log
from benchmarks.first_run import first_run, not_measured
from benchmarks.index import bench_index, profile_stages
from benchmarks.inputs import bench_models, generate_clips, pick_files, write_metadata
from benchmarks.query import bench_query
from core.config import shared_data_dirs


def run_bench(cfg: BenchConfig, log: Log = lambda s: print(s, file=sys.stderr)) -> dict:
    """Every measurement; returns the JSON-ready report."""
    import torch

    from core.catalog.pipeline import available_cpus
    from core.models.optimise import use_bfloat16

    if cfg.only_library:
        return library_only(cfg, log)
    dirs = cfg.data or shared_data_dirs()
    with tempfile.TemporaryDirectory() as gen:
        paths = pick_files(dirs, cfg.limit) if dirs else []
        source = ", ".join(str(d) for d in dirs) if paths else "generated 30 s MP3 clips"
        if not paths:
            paths = generate_clips(Path(gen), cfg.limit, seed=cfg.seed)
            dirs = [write_metadata(Path(gen), paths)]
        log(f"{len(paths)} files from {source}")
        models, model_source, model_dir = bench_models(cfg.artifacts, log)
        report: dict = {
            "machine": {"cpus": available_cpus(), "processor": platform.processor() or platform.machine(),
                        "python": platform.python_version(), "torch": torch.__version__},
            "files": {"count": len(paths), "source": source},
            "models": list(models),
            "model_info": {"source": model_source,
                           "embedding_dims": {n: int(m.embedding_dim) for n, m in models.items()},
                           # Whether the inference copies ran their conv layers in bfloat16.
                           "bfloat16": use_bfloat16()},
        }
        report["profile_ms_per_track"] = profile_stages(paths[: min(8, len(paths))], models, log)
        report["index"], report["peak_rss_mb"] = bench_index(paths, models, cfg, log)
        report["peak_rss_mb"] = round(report["peak_rss_mb"], 1)
        clip = max(paths[:8], key=lambda p: p.stat().st_size)
        report["classify_ms"] = bench_classify(clip, models, model_dir, cfg.classify_repeats, log)
        dims = cfg.dims or tuple(sorted({int(m.embedding_dim) for m in models.values()}))
        # The headline query figures use the default model's embedding (best on
        # val, core.models.selection); other sizes are under query_ms_by_dim.
        from core.models.selection import best_model

        main_dim = int(models[best_model(list(models), model_dir)].embedding_dim)
        by_dim: dict[str, dict] = {}
        for dim in dims:
            by_dim[str(dim)] = {str(n): bench_query(n, dim, cfg, log) for n in cfg.sizes}
        report["query_ms"] = by_dim.get(str(main_dim)) or by_dim[str(dims[0])]
        report["query_ms_by_dim"] = by_dim
        if cfg.trunks:
            from benchmarks.trunks import bench_trunks
            report["trunks"] = bench_trunks(cfg.trunk_clips, dirs=cfg.data or None)
        # Last, with nothing else of the benchmark running: the app from an
        # empty index in a real browser, on every track of the data folders.
        report["first_run"] = (first_run(dirs, model_dir, log, cfg.first_run_timeout_s) if cfg.first_run
                               else not_measured("--no-first-run"))
        if report["first_run"]["tracks"] is not None:
            report["first_run"]["models"] = list(models)
        report["library"] = library_entry(cfg, models, model_dir, log)
    report["targets"] = _targets(report)
    return report


def library_entry(cfg: BenchConfig, models: dict, model_dir: Path, log: Log) -> dict | None:
    """The ``"library"`` entry with the configured models (default: the default model)."""
    from benchmarks.library import bench_library
    from core.models.selection import best_model

    if cfg.library_files < 1:
        return None
    names = list(cfg.library_models or [best_model(list(models), model_dir)])
    return bench_library(cfg, model_dir, names, log)


def library_only(cfg: BenchConfig, log: Log) -> dict:
    """Only the ``"library"`` entry (``python -m core bench --only-library``)."""
    import torch

    from core.catalog.pipeline import available_cpus

    models, _, model_dir = bench_models(cfg.artifacts, log)
    return {"machine": {"cpus": available_cpus(), "processor": platform.processor() or platform.machine(),
                        "python": platform.python_version(), "torch": torch.__version__},
            "library": library_entry(cfg, models, model_dir, log)}


def _targets(r: dict) -> dict:
    """The issue's targets, each with the measured value and pass / fail."""
    out = {"index_speedup_ge_3": {"value": r["index"]["speedup"], "ok": r["index"]["speedup"] >= 3},
           "index_cpu_speedup_ge_3": {"value": r["index"]["cpu_speedup"], "ok": r["index"]["cpu_speedup"] >= 3},
           "index_tracks_per_s_ge_6": {"value": r["index"]["tracks_per_s"], "ok": r["index"]["tracks_per_s"] >= 6},
           # The CLI's and the app's path: optimised models on one torch thread.
           "warm_classify_lt_500_ms": {"value": r["classify_ms"]["warm_optimised_1_thread"],
                                       "ok": r["classify_ms"]["warm_optimised_1_thread"] < 500}}
    big = r["query_ms"].get("1000000")
    if big:
        out["query_1m_p50_lt_20_ms"] = {"value": big["p50"], "ok": big["p50"] < 20}
        out["query_1m_recall_at_5_ge_0_99"] = {"value": big["recall_at_5"], "ok": big["recall_at_5"] >= 0.99}
    first = r["first_run"]
    if first["tracks"] is not None:
        out["first_page_lt_3_s"] = {"value": first["first_page_s"], "ok": first["first_page_s"] < 3}
        out["first_lists_le_30_s"] = {"value": first["first_lists_s"], "ok": first["first_lists_s"] <= 30}
        out["catalog_indexed_le_150_s"] = {"value": first["catalog_indexed_s"],
                                           "ok": first["catalog_indexed_s"] <= 150}
    return out
