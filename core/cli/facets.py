"""CLI: ``path`` (a song path from A to B) and ``facets-eval`` (how well each
facet matches the data's own labels) (registered by :mod:`core.cli.main`)."""

from __future__ import annotations

import json

from core.cli import EXIT_BAD_INPUT, data_dirs
from core.cli.recommend import _err, open_index
from core.config import Paths

FACETS_ARTIFACT = "facets_eval.json"


def cmd_path(args) -> int:
    from core.catalog.index import CatalogError
    from core.recommend.path import song_path

    idx = open_index(args.index)
    if idx is None:
        return 1
    try:
        steps = song_path(idx, args.start, args.end, args.steps, model=args.model)
    except CatalogError as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT
    print(json.dumps({"from": args.start, "to": args.end, "steps": [s.to_dict() for s in steps]}, indent=1))
    return 0


def cmd_facets_eval(args) -> int:
    from core.config import FeatureConfig
    from core.datasets.folder import metadata_column
    from core.facets import tempo_config
    from core.facets.measure import measure
    from core.models.artifacts import write_report
    from core.models.msd import MSD_FEATURES

    idx = open_index(args.index)
    if idx is None:
        return 1
    dirs = data_dirs(args)
    snap = idx.snapshot()
    cfgs = [FeatureConfig.from_dict(m["feature_config"]) for m in snap.model_meta.values()
            if "feature_config" in m] or [MSD_FEATURES]
    report = measure(snap.facets(), metadata_column(dirs, "emotion_quadrant"),
                     metadata_column(dirs, "vocalisation"), tempo_config(cfgs))
    report["index"] = str(args.index)
    if args.json:
        write_report(args.json, report, args.artifacts)
    for group in ("arousal", "valence", "vocal"):
        for name, m in report[group]["facets"].items():
            if m:
                print(f"{group:>8} ← {name:<12} AUC {m['auc']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] n={m['n']}")
    for c in report["tempo"]["click_track"]:
        print(f"click {c['bpm']:.0f} BPM → {c['estimated']:.1f} (conf {c['confidence']:.2f})")
    return 0


def register(sub) -> None:
    """Add ``path`` and ``facets-eval`` to the CLI."""
    p = sub.add_parser("path", help="a song path from one catalog track to another (JSON)")
    p.add_argument("--index", default=str(Paths().index))
    p.add_argument("--from", dest="start", required=True, help="catalog track id of the first song")
    p.add_argument("--to", dest="end", required=True, help="catalog track id of the last song")
    p.add_argument("--steps", type=int, default=8, help="songs on the path, both ends included")
    p.add_argument("--model", default=None, help="embedding (default: the recommender's)")
    p.set_defaults(func=cmd_path)

    f = sub.add_parser("facets-eval", help="measure the index's facets against the data's mood and vocal labels")
    f.add_argument("--index", default=str(Paths().index))
    f.add_argument("--data", action="append")
    f.add_argument("--artifacts", default=str(Paths().artifacts))
    f.add_argument("--json", default=None, help=f"write the report here (e.g. artifacts/{FACETS_ARTIFACT})")
    f.set_defaults(func=cmd_facets_eval)
