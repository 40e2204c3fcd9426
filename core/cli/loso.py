"""``python -m core loso``: leave-one-source-out measurement, the fused model's
choices and calibration, and its artifact (see :mod:`core.training.fused_train`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from core.cli import data_dirs_or_exit
from core.config import Paths


def register(sub) -> None:
    p = sub.add_parser("loso", help="leave-one-source-out: choose, calibrate and ship the fused models; "
                                    "optionally measure cnn_msd under the same protocol")
    p.add_argument("--data", action="append", help="data folder (repeatable; default ../shared/data/*)")
    p.add_argument("--artifacts", default=str(Paths().artifacts))
    p.add_argument("--cache", default=None,
                   help="cache root (log-mels and trunk outputs; default: beside the log-mel cache)")
    p.add_argument("--trunk-features", default=None,
                   help="folder of every trunk's pooled features (<trunk>.npz: track_id, features, tags; "
                        "`python -m core trunk-features`): the fused_trunks model is chosen and shipped from them")
    p.add_argument("--cnn-msd-minutes", type=float, default=None,
                   help="also retrain cnn_msd's head per fold (minutes per fold) as the baseline")
    p.add_argument("--head-variants", action="store_true",
                   help="also score other heads on the fused_trunks features (reported, not chosen from)")
    p.add_argument("--no-ship", action="store_true", help="measure only; write no artifact")
    p.add_argument("--fused-trunks-only", action="store_true",
                   help="with --trunk-features: redo only fused_trunks' steps 1e-3 (tag prior, calibration, "
                        "fit) on the choices of steps 1-1d that loso.json records; no audio is decoded")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from core.training.fused_train import run_loso

    dirs = data_dirs_or_exit(args)
    if args.fused_trunks_only:
        return _fused_trunks_only(args, dirs)
    cache = Path(args.cache) if args.cache else Paths().cache.parent
    rec = run_loso(dirs, cache, args.artifacts, extra_features=args.trunk_features,
                   cnn_msd_minutes=args.cnn_msd_minutes, ship=not args.no_ship,
                   log=lambda s: print(s, file=sys.stderr), head_variants=args.head_variants)
    summary = {"fused": {"C": rec["fused"]["C"], "mean": rec["fused"]["mean"],
                         "temperature": rec["fused"]["pooled_temperature"]}}
    if "fused_trunks" in rec:
        r = rec["fused_trunks"]
        summary["fused_trunks"] = {"trunks": r["features"], "C": r["C"], "mean": r["mean"],
                                   "calibration": r["calibration"]["best"]}
    if "cnn_msd" in rec:
        summary["cnn_msd"] = {"mean": rec["cnn_msd"]["mean"]}
    print(json.dumps(summary, indent=1))
    return 0


def _fused_trunks_only(args, dirs) -> int:
    from core.training.fused_train import rerun_fused_trunks

    if not args.trunk_features:
        print("error: --fused-trunks-only needs --trunk-features DIR", file=sys.stderr)
        return 2
    r = rerun_fused_trunks(dirs, args.trunk_features, args.artifacts, ship=not args.no_ship,
                           log=lambda s: print(s, file=sys.stderr))
    print(json.dumps({"fused_trunks": {"trunks": r["features"], "prior": r["prior"], "C": r["C"], "mean": r["mean"],
                                       "calibration": r["calibration"]["best"],
                                       "in_source_val": r["in_source_val"]}}, indent=1))
    return 0
