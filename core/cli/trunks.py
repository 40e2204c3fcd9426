"""``python -m core trunk-features --out DIR [--data D …] [--trunks a,b]
[--augment-copies K]``: every pretrained trunk's pooled features and tags of
every track, one ``.npz`` per trunk, and of ``K`` augmented copies of every
track outside the test split (see :mod:`core.models.trunk_cache`)."""

from __future__ import annotations

import json
import sys

from core.cli import data_dirs_or_exit


def register(sub) -> None:
    p = sub.add_parser("trunk-features",
                       help="pooled features + tags of the wheel's pretrained trunks, one .npz per trunk")
    p.add_argument("--out", required=True, help="folder for <trunk>.npz and the per-clip cache")
    p.add_argument("--data", action="append", help="data folder (repeatable; default ../shared/data/*)")
    p.add_argument("--trunks", default=None, help="comma-separated trunk names (default: all)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--augment-copies", type=int, default=0, metavar="K",
                   help="also K augmented copies (core.audio.augment) of every non-test track, "
                        "into OUT/augmented/ (training rows that `loso` chooses whether to use)")
    p.add_argument("--augment-seed", type=int, default=0)
    p.set_defaults(func=_run)


def _run(args) -> int:
    import torch

    from core.datasets import read_datasets
    from core.models.trunk_cache import write_trunk_features
    from core.models.trunks import TrunkBank

    dirs = data_dirs_or_exit(args)
    for d in dirs:
        if not d.is_dir():
            sys.exit(f"error: --data {d} is not a folder")
    torch.set_num_threads(max(1, args.threads))
    tracks = read_datasets(dirs)
    bank = TrunkBank(args.trunks.split(",") if args.trunks else None)

    def progress(done: int, total: int) -> None:
        if done % 25 == 0 or done == total:
            print(f"{done}/{total}", file=sys.stderr, flush=True)

    paths = write_trunk_features(tracks, args.out, bank, progress)
    summary = {"tracks": len(tracks), "key": bank.key(), "files": {k: str(v) for k, v in paths.items()}}
    if args.augment_copies > 0:
        from core.models.trunk_cache import write_augmented_features
        from core.training.loso import TEST_SPLIT

        train = [t for t in tracks if t.split != TEST_SPLIT]
        print(f"augmented copies: {args.augment_copies} of {len(train)} non-test tracks", file=sys.stderr)
        aug = write_augmented_features(train, args.out, bank, args.augment_copies, seed=args.augment_seed,
                                       progress=progress)
        summary["augmented"] = {"tracks": len(train), "copies": args.augment_copies,
                                "files": {k: str(v) for k, v in aug.items()}}
    print(json.dumps(summary))
    return 0
