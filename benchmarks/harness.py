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

    from core.models.optimise import use_bfloat16, use_int8

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
        shipped = list(models)
        if cfg.with_trunks and not cfg.load_only:
            from benchmarks.standin import add_standins
            models = add_standins(models, cfg.with_trunks)
        if cfg.load_only:
            return {"machine": machine(), **bench_load(dirs, model_dir, cfg, log)}
        report: dict = {
            "machine": machine(),
            "files": {"count": len(paths), "source": source},
            "models": list(models),
            "model_info": {"source": model_source,
                           "embedding_dims": {n: int(m.embedding_dim) for n, m in models.items()},
                           # Whether the inference copies ran their conv layers in bfloat16.
                           "bfloat16": use_bfloat16(),
                           # Whether the musicnn trunks' front end ran in int8.
                           "int8": use_int8(),
                           # Untrained heads standing in for models on --with-trunks (benchmarks.standin);
                           # not in the cold-classify, first-run, load or library entries (those load artifacts/).
                           "standins": [n for n in models if n not in shipped]},
        }
        report["profile_ms_per_track"] = profile_stages(paths[: min(8, len(paths))], models, log)
        report["index"], report["peak_rss_mb"] = bench_index(paths, models, cfg, log)
        report["peak_rss_mb"] = round(report["peak_rss_mb"], 1)
        clip = max(paths[:8], key=lambda p: p.stat().st_size)
        report["classify_ms"] = bench_classify(clip, models, model_dir, cfg.classify_repeats, log)
        dims = cfg.dims or tuple(sorted({int(m.embedding_dim) for n, m in models.items() if n in shipped}))
        # The headline query figures use the default model's embedding (best on
        # val, core.models.selection); other sizes are under query_ms_by_dim.
        from core.models.selection import best_model

        main_dim = int(models[best_model(shipped, model_dir)].embedding_dim)
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
            report["first_run"]["models"] = shipped
        # Then many users at once on the same folders (benchmarks/load.py).
        report.update(bench_load(dirs, model_dir, cfg, log))
        report["library"] = library_entry(cfg, {n: models[n] for n in shipped}, model_dir, log)
    report["targets"] = _targets(report)
    return report


def bench_load(dirs: list[Path], model_dir: Path, cfg: BenchConfig, log: Log) -> dict:
    """``"load"`` (cfg.load_users users) and ``"breaking_users"``, each skipped with a note when off."""
    from benchmarks.load import LoadConfig, breaking_users, load_run

    if not cfg.load_users:
        return {"load": {"note": "not measured: --load 0"}, "breaking_users": None}
    lcfg = LoadConfig(users=cfg.load_users, rounds=cfg.load_rounds, batches=cfg.load_batches)
    from benchmarks.fragment_race import fragment_race
    from benchmarks.load_floor import load_floor

    out = {"load": load_run(dirs, model_dir, lcfg, log)}
    out["load"]["targets"] = load_targets(out["load"])
    # The same users against a trivial script: the browsers' own share of the latency.
    out["load_floor"] = load_floor(cfg.load_users)
    log(f"load floor (trivial script, {cfg.load_users} users): {out['load_floor']}")
    # The load run's "lost rerun" on a trivial script, without and with the app's fix.
    out["fragment_race"] = fragment_race()
    log(f"fragment race (trivial script): {out['fragment_race']}")
    out["breaking_users"] = breaking_users(dirs, model_dir, lcfg, log, first=out["load"]) if cfg.breaking else None
    return out


def load_targets(r: dict) -> dict:
    """The load run's targets (issue 19), each with its value and pass / fail."""
    if "note" in r:
        return {}
    rss = r["server_rss_mb"]
    return {"no_errors": {"value": r["errors"] + r["exceptions_on_pages"],
                          "ok": r["errors"] + r["exceptions_on_pages"] == 0},
            "answers_stored_once": {"value": [r["study_answers_written"], r["study_answers_expected"]],
                                    "ok": r["study_answers_written"] == r["study_answers_expected"]
                                    and r["study_answers_duplicated"] == 0},
            "p95_lt_10_s": {"value": r["p95_s"], "ok": r["p95_s"] is not None and r["p95_s"] < 10},
            "rss_after_within_20_pct": {"value": round(rss["after"] / rss["start"] - 1, 3),
                                        "ok": rss["after"] <= 1.2 * rss["start"]}}
def library_entry(cfg: BenchConfig, models: dict, model_dir: Path, log: Log) -> dict | None:
    """The ``"library"`` entry with the configured models (default: the default model)."""
    from benchmarks.library import bench_library
    from core.models.selection import best_model

    if cfg.library_files < 1:
        return None
    names = list(cfg.library_models or [best_model(list(models), model_dir)])
    return bench_library(cfg, model_dir, names, log)


def machine() -> dict:
    """The ``"machine"`` entry of every bench JSON."""
    import torch

    from core.procs import available_cpus

    return {"cpus": available_cpus(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__}


def library_only(cfg: BenchConfig, log: Log) -> dict:
    """Only the ``"library"`` entry (``python -m core bench --only-library``)."""
    models, _, model_dir = bench_models(cfg.artifacts, log)
    return {"machine": machine(),
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
