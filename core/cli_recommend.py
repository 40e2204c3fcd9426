"""CLI: ``index``, ``recommend`` and ``recommend-eval`` subcommands
(registered by :mod:`core.__main__`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .config import Paths, shared_data_dirs

EXIT_BAD_INPUT = 2


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def _data_dirs(args) -> list[Path] | None:
    dirs = [Path(d) for d in (args.data or [])] or shared_data_dirs()
    if not dirs:
        _err("no --data folder given and ../shared/data not found")
        return None
    return dirs


def _load_models(artifacts: str):
    from .artifacts import ArtifactError, load_models

    try:
        models = load_models(artifacts)
    except ArtifactError as exc:
        _err(str(exc))
        return None
    if not models:
        _err(f"no trained models in {artifacts} — run `make artifacts`")
        return None
    return models


def _bar(desc: str, unit: str):
    """A tqdm bar driven by ``progress(done, total)`` callbacks."""
    from tqdm.auto import tqdm

    bar = tqdm(total=0, desc=desc, unit=unit, disable=None, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    return bar, progress


def cmd_index(args) -> int:
    from .datasets import read_datasets
    from .index import CatalogError, CatalogIndex

    models = _load_models(args.artifacts)
    if models is None:
        return 1
    try:
        idx = CatalogIndex.open(args.out)
        stats: dict = {}
        if args.data or not args.add:
            dirs = _data_dirs(args)
            if dirs is None:
                return EXIT_BAD_INPUT
            try:
                tracks = read_datasets(dirs)
            except (FileNotFoundError, ValueError) as exc:
                _err(str(exc))
                return EXIT_BAD_INPUT
            bar, progress = _bar("indexing", "track")
            try:
                stats = idx.update(tracks, models, progress=progress, batch_size=args.batch_size)
            finally:
                bar.close()
        if args.add:
            bar, progress = _bar("adding", "file")
            try:
                added = idx.add_files(args.add, models, genre=args.genre, source=args.source,
                                      progress=progress)
            finally:
                bar.close()
            stats = {"scan": stats, "add": added} if stats else added
    except CatalogError as exc:
        _err(str(exc))
        return 1
    parts = [stats["scan"], stats["add"]] if "scan" in stats else [stats]
    for line in [f for part in parts for f in part.get("failed", [])]:
        print(f"skipped: {line}", file=sys.stderr)
    summary = {"index": str(Path(args.out)), "tracks": len(idx), "models": idx.models, **stats}
    print(json.dumps(summary))
    return 0


def cmd_recommend(args) -> int:
    from .index import CatalogError, CatalogIndex
    from .recommend import recommend

    idx = CatalogIndex.open(args.index)
    if not len(idx):
        _err(f"no index in {args.index} — build one with `python -m core index --out {args.index}`")
        return 1
    seeds = [s.strip() for s in (args.seeds or "").split(",") if s.strip()]
    seed_vectors = []
    if args.file:
        from .audio import AudioError
        from .cache import content_hash
        from .inference import analyse
        from .recommend import SeedVector

        models = _load_models(args.artifacts)
        if models is None:
            return 1
        for f in args.file:
            try:
                a = analyse(f, models)
                seed_vectors.append(SeedVector.from_analysis(a, name=Path(f).stem,
                                                             digest=content_hash(f)))
            except (AudioError, OSError) as exc:
                _err(f"{f}: {str(exc).split(': ', 1)[-1]}")
                return EXIT_BAD_INPUT
    split = lambda s: [x.strip() for x in (s or "").split(",") if x.strip()]  # noqa: E731
    try:
        recs = recommend(idx, seeds, method=args.method, k=args.k, model=args.model,
                         aggregate=args.aggregate, distance=args.distance, p=args.p,
                         genre_weight=args.genre_weight, diversity=args.diversity,
                         liked=split(args.liked), disliked=split(args.disliked),
                         seed_vectors=seed_vectors, standardise=args.standardise)
    except CatalogError as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT
    out = {"seeds": seeds + [sv.name for sv in seed_vectors], "method": args.method,
           "model": args.model, "recommendations": [
               {k: v for k, v in r.to_dict().items() if k != "extra"} for r in recs]}
    print(json.dumps(out, indent=1))
    return 0


def cmd_recommend_eval(args) -> int:
    from .artifacts import write_json
    from .cache import LogMelCache
    from .recommend_eval import EvalConfig, recommend_eval

    dirs = _data_dirs(args)
    if dirs is None:
        return EXIT_BAD_INPUT
    models = _load_models(args.artifacts)
    if models is None:
        return 1
    cfg = EvalConfig(n_listeners=args.listeners, seed=args.seed, model=args.model, k=args.k,
                     n_seeds=args.n_seeds, genre_weight=args.genre_weight, extras=not args.no_extras)
    cache = LogMelCache(next(iter(models.values())).cfg, args.cache)
    bar, progress = _bar("listeners", "listener")
    try:
        res = recommend_eval(dirs, split=args.split, cache=cache, cfg=cfg, models=models,
                             progress=progress)
    except (FileNotFoundError, ValueError) as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT
    finally:
        bar.close()
    if args.json:
        write_json(Path(args.json), res)
    for name, m in res["methods"].items():
        print(f"{name:>8}: precision@{cfg.k} {m['precision']:.3f} "
              f"[{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]  artist hits {m['artist_hit_rate']:.2f}  "
              f"diversity {m['intra_list_diversity']:.3f}  coverage {m['catalog_coverage']:.2f}")
    t = res["paired_t"]
    print(f"paired t (cosine vs genre, {res['n_listeners']} listeners): t = {t['t']:.3f}, p = {t['p']:.3g}; "
          f"ceiling precision@{cfg.k} {res['ceiling'][f'precision_at_{cfg.k}']:.3f}")
    return 0


def register(sub) -> None:
    """Add ``index``, ``recommend`` and ``recommend-eval`` to the CLI."""
    arts = str(Paths().artifacts)
    i = sub.add_parser("index", help="embed a catalog into an on-disk index (incremental)")
    i.add_argument("--data", action="append", help="data folder (repeatable; default ../shared/data/*)")
    i.add_argument("--out", default=str(Paths().index), help="index folder")
    i.add_argument("--add", action="append", metavar="FILE", help="also add this audio file (repeatable)")
    i.add_argument("--genre", default=None, help="genre label of the --add files")
    i.add_argument("--source", default="library", help="source name of the --add files")
    i.add_argument("--artifacts", default=arts)
    i.add_argument("--batch-size", type=int, default=None, help="files per batch (default: the pipeline's)")
    i.set_defaults(func=cmd_index)

    r = sub.add_parser("recommend", help="recommend catalog tracks for 1-5 seeds (JSON)")
    r.add_argument("--index", default=str(Paths().index))
    r.add_argument("--seeds", default="", help="comma-separated catalog track ids")
    r.add_argument("--file", action="append", help="an audio file as an extra seed (repeatable)")
    r.add_argument("--method", choices=["cosine", "genre"], default="cosine")
    r.add_argument("--k", type=int, default=5)
    r.add_argument("--model", choices=["crnn", "cnn", "ensemble"], default="crnn")
    r.add_argument("--aggregate", choices=["mean", "max"], default="mean")
    r.add_argument("--distance", choices=["cosine", "euclidean", "pnorm"], default="cosine")
    r.add_argument("--p", type=float, default=3.0, help="order of the p-norm")
    r.add_argument("--genre-weight", type=float, default=0.5, help="method 2's weight w")
    r.add_argument("--diversity", type=float, default=0.0, help="MMR diversity 0-1")
    r.add_argument("--standardise", action="store_true",
                   help="z-score embedding dimensions over the catalog first")
    r.add_argument("--liked", default="", help="comma-separated liked track ids")
    r.add_argument("--disliked", default="", help="comma-separated disliked track ids")
    r.add_argument("--artifacts", default=arts, help="models for --file seeds")
    r.set_defaults(func=cmd_recommend)

    e = sub.add_parser("recommend-eval", help="simulated-listener evaluation of the recommender")
    e.add_argument("--data", action="append")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--json", help="write the results here")
    e.add_argument("--artifacts", default=arts)
    e.add_argument("--listeners", type=int, default=400, help="simulated listeners (half mixed-taste)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--k", type=int, default=5, help="recommendations per listener")
    e.add_argument("--n-seeds", type=int, default=5, help="seed tracks per listener")
    e.add_argument("--model", choices=["crnn", "cnn", "ensemble"], default="crnn")
    e.add_argument("--genre-weight", type=float, default=0.5)
    e.add_argument("--no-extras", action="store_true", help="skip the beyond-the-paper variants")
    e.add_argument("--cache", default=None, help="log-mel cache folder")
    e.set_defaults(func=cmd_recommend_eval)
