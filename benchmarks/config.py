"""What ``python -m core bench`` measures (:class:`BenchConfig`), defined once
for the harness and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from core.recommend.request import DEFAULTS, MAX_SEEDS

Log = Callable[[str], None]


def json_main(doc: str, record: Callable[..., dict], options: dict[str, int], argv: list[str] | None) -> int:
    """A small benchmark's command line: one ``--name N`` per ``options``
    entry (its default), ``record(**those)`` printed as JSON."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    for name, default in options.items():
        ap.add_argument(f"--{name}", type=int, default=default)
    print(json.dumps(record(**vars(ap.parse_args(argv))), indent=1))
    return 0


def pct(xs: list[float], q: float) -> float | None:
    """The ``q``-th percentile of ``xs`` to three decimals (``None`` when empty)."""
    return round(float(np.percentile(xs, q)), 3) if xs else None


@dataclass
class BenchConfig:
    """What to measure; the defaults are the README figures."""

    data: list[Path] = field(default_factory=list)     # empty: ../shared/data, else generated clips
    limit: int = 48                                      # clips to index (spread over folders / genres)
    batch_size: int = 8
    rounds: int = 1                                      # baseline / pipeline alternations
    workers: int | None = None                           # decode processes (None: pipeline default)
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    dims: tuple[int, ...] | None = None                  # None: the models' embedding sizes
    queries: int = 100
    seeds_per_query: int = MAX_SEEDS                    # a query is a full seed set
    k: int = DEFAULTS.k
    classify_repeats: int = 5
    artifacts: Path | None = None
    seed: int = 0
    first_run: bool = True                               # the browser run from an empty index (minutes)
    first_run_timeout_s: float = 1800.0
    load_users: int = 12                                 # the load run's users (0: no load run)
    load_rounds: int = 2
    load_batches: int = 1                                # N users, closed, then N new users… (RSS after each)
    breaking: bool = True                                # also raise N until the server breaks
    load_only: bool = False                              # only the load run (and breaking_users)
    # Trunks no shipped model serves on yet: a stand-in head on them joins the
    # index, profile and classify entries (benchmarks.standin), e.g. ("msd_musicnn",).
    with_trunks: tuple[str, ...] = ()
    trunks: bool = False                                 # also the pretrained trunks' speed / accuracy cost
    trunk_clips: int = 12
    # The "library" entry: a generated tagged library indexed, killed part-way and resumed.
    library_files: int = 2000                            # 0: skip the entry
    library_seconds: float = 3.0                         # generated clip length
    library_models: tuple[str, ...] | None = None        # None: the default model only
    library_checkpoint: int = 32                         # commit every N tracks (the app's setting)
    library_kill_at: float = 0.3                         # SIGKILL once this share is committed
    library_dir: Path | None = None                      # keep / reuse the generated files here
    only_library: bool = False                           # measure the library entry alone
