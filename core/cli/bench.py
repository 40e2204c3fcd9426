"""``python -m core bench``: the performance figures of README.md (Performance)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.config import BenchConfig

_D = BenchConfig()   # the defaults, defined once


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="indexing speed vs a naive baseline, classification and "
                                     "query latency, recall, peak memory → JSON")
    b.add_argument("--data", action="append", help="audio folder (repeatable; default ../shared/data/*, "
                                                   "else generated clips)")
    b.add_argument("--json", required=True, help="write the report here")
    b.add_argument("--limit", type=int, default=_D.limit, help=f"clips to index (default {_D.limit})")
    b.add_argument("--batch-size", type=int, default=_D.batch_size)
    b.add_argument("--rounds", type=int, default=_D.rounds,
                   help="alternate baseline and pipeline over this many slices of the files "
                        "(fairer on a busy machine; each pipeline round restarts its workers)")
    b.add_argument("--workers", type=int, default=_D.workers, help="decode processes (default: pipeline's)")
    b.add_argument("--sizes", default=",".join(map(str, _D.sizes)),
                   help="synthetic catalog sizes for the query benchmark, comma-separated")
    b.add_argument("--dims", default=None,
                   help="embedding sizes to test search at (default: the models' own)")
    b.add_argument("--queries", type=int, default=_D.queries, help="queries per catalog size")
    b.add_argument("--artifacts", default=None, help="model folder (default artifacts/)")
    b.add_argument("--first-run", action=argparse.BooleanOptionalAction, default=_D.first_run,
                   help="also time the app's first run in headless Chromium from an empty index on every "
                        "track of the data folders (minutes; default on)")
    b.add_argument("--first-run-timeout", type=float, default=_D.first_run_timeout_s, metavar="S",
                   help=f"give up on the first run after S seconds (default {_D.first_run_timeout_s:.0f})")
    b.add_argument("--load", type=int, default=_D.load_users, metavar="N",
                   help=f"the load run: N concurrent headless-Chromium users against the real server while it "
                        f"indexes (default {_D.load_users}; 0: skip it)")
    b.add_argument("--load-rounds", type=int, default=_D.load_rounds, help="rounds of the users' script")
    b.add_argument("--load-batches", type=int, default=_D.load_batches,
                   help="batches of N users one after another (RSS after each: does memory grow per session?)")
    b.add_argument("--breaking", action=argparse.BooleanOptionalAction, default=_D.breaking,
                   help="after the load run, raise N until p95 passes 30 s or errors appear (default on)")
    b.add_argument("--load-only", action="store_true", help="only the load run (and --breaking)")
    b.add_argument("--trunks", action=argparse.BooleanOptionalAction, default=_D.trunks,
                   help="also time the pretrained trunks (plain / fast float32 / fast bfloat16) on "
                        "real clips and state each copy's accuracy cost (benchmarks.trunks)")
    b.add_argument("--with-trunks", default="", metavar="NAMES",
                   help="comma-separated pretrained trunks (e.g. msd_musicnn) that no shipped model serves on "
                        "yet: time the index, profile and classify entries with an untrained stand-in head on "
                        "them too, so their per-track cost is known before such a model ships")
    b.add_argument("--library-files", type=int, default=_D.library_files,
                   help=f"files of the generated music library for the \"library\" entry (0: skip; "
                        f"default {_D.library_files})")
    b.add_argument("--library-seconds", type=float, default=_D.library_seconds,
                   help="length of each generated library clip")
    b.add_argument("--library-models", default=None,
                   help="comma-separated models to index the library with (default: the default model)")
    b.add_argument("--library-dir", default=None, help="generate (or reuse) the library here")
    b.add_argument("--only-library", action="store_true", help="measure the \"library\" entry alone")
    b.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from benchmarks.harness import run_bench
    from core.models.artifacts import write_json

    def ints(text: str | None) -> tuple[int, ...] | None:
        if not text:
            return None
        try:
            return tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            sys.exit(f"error: expected comma-separated integers, got {text!r}")

    cfg = BenchConfig(data=[Path(d) for d in args.data or []], limit=args.limit,
                      batch_size=args.batch_size, rounds=max(1, args.rounds), workers=args.workers,
                      sizes=ints(args.sizes) or (),
                      dims=ints(args.dims), queries=args.queries,
                      artifacts=Path(args.artifacts) if args.artifacts else None,
                      first_run=args.first_run, first_run_timeout_s=args.first_run_timeout,
                      load_users=max(0, args.load), load_rounds=max(1, args.load_rounds),
                      load_batches=max(1, args.load_batches),
                      breaking=args.breaking, load_only=args.load_only,
                      trunks=args.trunks,
                      with_trunks=tuple(t.strip() for t in args.with_trunks.split(",") if t.strip()),
                      library_files=args.library_files, library_seconds=args.library_seconds,
                      library_models=tuple(m for m in (args.library_models or "").split(",") if m) or None,
                      library_dir=Path(args.library_dir) if args.library_dir else None,
                      only_library=args.only_library)
    for d in cfg.data:
        if not d.is_dir():
            sys.exit(f"error: --data {d} is not a folder")
    if cfg.data:
        from benchmarks.inputs import pick_files
        from core.errors import GenreError

        try:    # read through the data-set readers; a folder with no audio is refused
            pick_files(cfg.data, 1)
        except (GenreError, ValueError, OSError) as exc:
            sys.exit(f"error: --data {' '.join(str(exc).split())}")
    if cfg.with_trunks:
        from core.errors import ArtifactError
        from core.models.trunks import resolve

        try:
            resolve(cfg.with_trunks)
        except ArtifactError as exc:
            sys.exit(f"error: --with-trunks: {exc}")
    if cfg.limit < 1 or cfg.queries < 1:
        sys.exit("error: --limit and --queries must be at least 1")
    report = run_bench(cfg)
    write_json(Path(args.json), report)
    if cfg.load_only:
        print(json.dumps({k: report.get(k) for k in ("load", "breaking_users")}, indent=1))
        return 0
    if cfg.only_library:
        print(json.dumps(report["library"], indent=1))
        return 0
    print(json.dumps({"index": report["index"], "classify_ms": report["classify_ms"],
                      "query_ms": {n: {k: v[k] for k in ("p50", "p95", "recall_at_5")}
                                   for n, v in report["query_ms"].items()},
                      "peak_rss_mb": report["peak_rss_mb"], "first_run": report["first_run"],
                      "load": report.get("load"), "breaking_users": report.get("breaking_users"),
                      "library": report.get("library"), "targets": report["targets"]}, indent=1))
    return 0
