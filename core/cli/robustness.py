"""``python -m core robustness [--split test] [--json FILE] [--limit N]``: every
shipped model on degraded copies of a split's clips (see
:mod:`core.training.robustness`)."""

from __future__ import annotations

import sys

from core.cli import EXIT_BAD_INPUT, data_dirs_or_exit
from core.config import Paths


def register(sub) -> None:
    p = sub.add_parser("robustness", help="accuracy and agreement of every model on degraded audio "
                                          "(MP3 64 kbit/s, telephone band, 8 kHz, noise, reverb, quiet)")
    p.add_argument("--data", action="append", help="data folder (repeatable; default ../shared/data/*)")
    p.add_argument("--split", default="test", help="any split value in the metadata, or 'all'")
    p.add_argument("--artifacts", default=str(Paths().artifacts))
    p.add_argument("--json", help="write the record here (in the artifacts folder: the manifest is updated)")
    p.add_argument("--limit", type=int, default=None, help="the first N clips of the split only")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from core.models.artifacts import write_report
    from core.training.robustness import CLEAN, robustness

    def progress(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            print(f"{done}/{total} clips", file=sys.stderr, flush=True)

    try:
        rec = robustness(data_dirs_or_exit(args), args.split, args.artifacts, limit=args.limit,
                         n_boot=args.bootstrap, progress=progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        write_report(args.json, rec, args.artifacts)
    for name, rows in rec["models"].items():
        clean = rows[CLEAN]["accuracy"]
        worst = min((n for n in rows if n != CLEAN), key=lambda n: rows[n]["accuracy"], default=CLEAN)
        print(f"{name:>14}: clean accuracy {clean:.3f}; worst {worst}: {rows[worst]['accuracy']:.3f} "
              f"(agreement {rows[worst]['agreement']:.2f})")
    return 0
