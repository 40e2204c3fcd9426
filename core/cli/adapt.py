"""``python -m core adapt``: the default model's genre head adapted to a music
library without a label of it (:mod:`core.training.library_head`).

    python -m core adapt --ship [--trunk-features DIR]   # measure it LOSO, ship the replay (make artifacts)
    python -m core adapt --index DIR [--json OUT]        # adapt to an indexed library: what changes
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from core.cli import EXIT_BAD_INPUT, data_dirs_or_exit
from core.config import Paths


def register(sub) -> None:
    p = sub.add_parser("adapt", help="adapt the default model's genres to a library (self-training, no labels)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--ship", action="store_true",
                      help="measure adaptation leave-one-source-out and write the replay it needs into artifacts/")
    mode.add_argument("--index", help="an index folder (`python -m core index`): its tracks' genres, adapted")
    p.add_argument("--data", action="append", help="--ship: data folder (repeatable; default ../shared/data/*)")
    p.add_argument("--trunk-features", default=".cache/trunk_features",
                   help="--ship: the trunks' per-patch features (`python -m core trunk-features`)")
    p.add_argument("--artifacts", default=str(Paths().artifacts))
    p.add_argument("--json", help="--index: write every track's genre before and after here")
    p.set_defaults(func=_run)


def _ship(args) -> int:
    from core.models.artifacts import model_extra, read_json, update_manifest
    from core.training.library_head import features_data, ship_replay
    from core.training.tag_prior_choice import PriorSetting

    extra = model_extra("fused_trunks", args.artifacts)
    loso = read_json("loso.json", args.artifacts)
    data = features_data(data_dirs_or_exit(args), args.trunk_features, extra["trunks"], loso["labels"])
    record = loso["fused_trunks"]
    prior = PriorSetting.from_dict(record["prior"]) if "prior" in record else None
    rec = ship_replay(data, extra["trunks"], record["head"], float(extra["C"]), args.artifacts,
                      log=lambda s: print(s, file=sys.stderr), prior=prior)
    update_manifest(args.artifacts)
    print(json.dumps({k: rec[k] for k in ("trunks", "C", "head", "config", "temperature")}
                     | {w: rec[w]["mean"] for w in ("plain", "adapted")}, indent=1, default=float))
    return 0


def _index(args) -> int:
    from core.catalog.adapt import adapted_genres
    from core.catalog.index import CatalogIndex
    from core.models.artifacts import load_model

    out = adapted_genres(CatalogIndex.open(args.index), load_model("fused_trunks", args.artifacts), args.artifacts)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    print(json.dumps(out["summary"], indent=1))
    return 0


def _run(args) -> int:
    from core.errors import GenreError

    try:
        return _ship(args) if args.ship else _index(args)
    except (GenreError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
