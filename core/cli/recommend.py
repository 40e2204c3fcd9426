"""CLI: ``index``, ``recommend`` and ``recommend-eval`` subcommands
(registered by :mod:`core.cli.main`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from core.cli import EXIT_BAD_INPUT, NO_DATA, data_dirs
from core.config import Paths


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def open_index(path):
    """The catalog index at ``path``, or ``None`` (after one line on stderr) when there is none."""
    from core.catalog.index import CatalogIndex

    idx = CatalogIndex.open(path)
    if not len(idx):
        _err(f"no index in {path} — build one with `python -m core index --out {path}`")
        return None
    return idx


def _data_dirs(args) -> list[Path] | None:
    dirs = data_dirs(args)
    if not dirs:
        _err(NO_DATA)
        return None
    return dirs


def _load_models(artifacts: str):
    from core.models.artifacts import ArtifactError, load_models

    try:
        models = load_models(artifacts, optimise=True)   # as the app serves them
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
    from core.catalog.index import CatalogError, CatalogIndex
    from core.datasets import read_datasets

    models = _load_models(args.artifacts)
    if models is None:
        return 1
    if args.models:
        want = [m.strip() for m in args.models.split(",") if m.strip()]
        missing = [m for m in want if m not in models]
        if missing:
            _err(f"--models: {', '.join(missing)} not in {args.artifacts} (have: {', '.join(models)})")
            return EXIT_BAD_INPUT
        models = {m: models[m] for m in want}
    try:
        idx = CatalogIndex.open(args.out)
        stats: dict = {}
        if args.data or not args.add:
            dirs = _data_dirs(args)
            if dirs is None:
                return EXIT_BAD_INPUT
            try:
                tracks = read_datasets(dirs, layout=args.layout)
            except (FileNotFoundError, ValueError) as exc:
                _err(str(exc))
                return EXIT_BAD_INPUT
            bar, progress = _bar("indexing", "track")
            try:
                stats = idx.update(tracks, models, progress=progress, batch_size=args.batch_size,
                                   checkpoint=args.checkpoint)
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
    failed = [f for part in parts for f in part.get("failed", [])]
    for line in failed:
        print(f"skipped: {line}", file=sys.stderr)
    summary = {"index": str(Path(args.out)), "tracks": len(idx), "models": idx.models,
               "unreadable": len(failed), **stats}
    if args.json:
        from core.cli.playlists import write_index_json

        if not write_index_json(idx.snapshot(), args.json, args.artifacts, len(failed)):
            return 1
    print(json.dumps(summary))
    return 0


def cmd_recommend(args) -> int:
    from core.catalog.index import CatalogError
    from core.recommend.methods import resolve_model
    from core.recommend.steer import Steer, parse_tempo, steered

    idx = open_index(args.index)
    if idx is None:
        return 1
    seeds = [s.strip() for s in (args.seeds or "").split(",") if s.strip()]
    seed_vectors = []
    if args.file:
        from core.audio.cache import content_hash
        from core.audio.load import AudioError
        from core.models.inference import analyse
        from core.recommend.request import SeedVector

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
        exclude = []
        if args.leave_artist_out:
            artists = idx.column("artist")
            exclude = [str(artists[r]) for r in idx.rows_of(seeds)] + [sv.artist for sv in seed_vectors]
        steer = Steer(mood=args.mood, tempo=parse_tempo(args.tempo) if args.tempo else None,
                      weight=args.mood_weight)
        recs = steered(idx, seeds, steer, method=args.method, k=args.k, model=args.model,
                         aggregate=args.aggregate, distance=args.distance, p=args.p,
                         genre_weight=args.genre_weight, diversity=args.diversity,
                         liked=split(args.liked), disliked=split(args.disliked),
                         seed_vectors=seed_vectors, standardise=args.standardise,
                         variant=args.variant, exclude_artists=exclude, confidence=args.confidence)
    except CatalogError as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT
    if args.m3u or args.csv:
        from core.cli.playlists import write_recommendations

        if not write_recommendations(idx.snapshot(), recs, args.m3u, args.csv):
            return 1
    out = {"seeds": seeds + [sv.name for sv in seed_vectors], "method": args.method,
           "model": resolve_model(idx, args.model), "variant": args.variant, "recommendations": [
               {k: v for k, v in r.to_dict().items() if k != "extra"} for r in recs]}
    print(json.dumps(out, indent=1))
    return 0


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def cmd_recommend_eval(args) -> int:
    from core.audio.cache import LogMelCache
    from core.config import FeatureConfig
    from core.models.artifacts import write_report
    from core.recommend.eval_data import recommend_eval
    from core.recommend.evaluation import EvalConfig, SelectConfig, apply_choice

    dirs = _data_dirs(args)
    if dirs is None:
        return EXIT_BAD_INPUT
    models = None
    if args.index is None:
        models = _load_models(args.artifacts)
        if models is None:
            return 1
    cfg = EvalConfig(n_listeners=args.listeners, seed=args.seed, model=args.model, k=args.k,
                     n_seeds=args.n_seeds, genre_weight=args.genre_weight, variant=args.variant,
                     confidence=args.confidence,
                     extras=not args.no_extras, artists=args.artists, resample=not args.no_resample)
    relevance = not args.no_relevance
    if args.choice:
        try:
            cfg = apply_choice(cfg, json.loads(Path(args.choice).read_text()))
        except (OSError, ValueError, KeyError) as exc:
            _err(f"cannot read the choice {args.choice}: {exc}")
            return EXIT_BAD_INPUT
    select = None
    if args.select_on:
        try:
            select = SelectConfig(weights=_floats(args.weights) if args.weights else SelectConfig.weights,
                                  models=tuple(m for m in (args.embeddings or "").split(",") if m) or None)
        except ValueError:
            _err(f"--weights must be comma-separated numbers, not {args.weights!r}")
            return EXIT_BAD_INPUT
    split = args.select_on or args.split
    fcfg = next(iter(models.values())).cfg if models else FeatureConfig()
    cache = LogMelCache(fcfg, args.cache)
    bar, progress = _bar("listeners", "listener")
    try:
        res = recommend_eval(dirs, split=split, cache=cache, cfg=cfg, models=models, progress=progress,
                             index_dir=args.index, select=select, artifacts_dir=args.artifacts,
                             relevance=relevance)
    except (FileNotFoundError, ValueError) as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT
    finally:
        bar.close()
    if args.loso and select is None:
        res["loso"] = _loso(args, dirs, cfg)
    if args.json:
        write_report(args.json, res, args.artifacts)   # and the manifest, when it is a shipped artifact
    if select is not None:
        c = res["choice"]
        print(f"chose on {split} ({res['n_listeners']} listeners, {len(res['grid'])} grid points): "
              f"model {c['model']}, variant {c['variant']}, genre weight {c['genre_weight']:g} — "
              f"precision@{cfg.k} method 1 {res['precision']['cosine']:.3f}, "
              f"method 2 {res['precision']['genre']:.3f}")
        return 0
    for name, m in res["methods"].items():
        print(f"{name:>8}: precision@{cfg.k} {m['precision']:.3f} "
              f"[{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]  artist hits {m['artist_hit_rate']:.2f}  "
              f"diversity {m['intra_list_diversity']:.3f}  coverage {m['catalog_coverage']:.2f}")
    for kind, rel in res.get("relevance", {}).items():
        if "verdict" in rel:
            print(f"{kind} listeners ({rel['n_listeners']}): " + ", ".join(
                f"{n} {m['precision']:.3f}" for n, m in rel["methods"].items()) + f" — {rel['verdict']}")
    t = res["paired_t"]
    print(f"paired t (the paper's statistic; cosine vs genre, {res['n_listeners']} listeners): "
          f"t = {t['t']:.3f}, p = {t['p']:.3g}; "
          f"ceiling precision@{cfg.k} {res['ceiling'][f'precision_at_{cfg.k}']:.3f}")
    for name, r in res.get("resampled", {}).items():
        a = r["artist"]
        print(f"{name}: {r['diff']:+.3f} resampled over tracks [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] "
              f"p = {r['p']:.3g} ({r['n_units']} tracks); over artists [{a['ci95'][0]:+.3f}, "
              f"{a['ci95'][1]:+.3f}] p = {a['p']:.3g} ({a['n_units']} artists)")
    return 0


def _loso(args, dirs, cfg) -> dict:
    """``recommend-eval --loso``: method 2 chosen and checked leave-one-source-out
    (core.recommend.loso) with ``--loso-model``'s fold heads (features and ``C``
    from ``loso.json`` when shipped)."""
    from dataclasses import replace

    from core.recommend.loso_data import fold_model, recommend_loso
    from core.training.fused_train import LOSO_FILE

    model = fold_model(Path(args.artifacts) / LOSO_FILE, args.loso_model)
    if args.loso_self_train:
        frac, rounds = args.loso_self_train
        model = replace(model, adapt=(float(frac), int(rounds)))
    root = Path(args.cache).parent if args.cache else Paths().cache.parent
    rec = recommend_loso(dirs, root, cfg, model=model, extra_features=args.loso_features)
    for s, f in rec["folds"].items():
        d = f["m2_minus_m1"]
        ci = d.get("ci95", [float("nan")] * 2)
        print(f"LOSO {s}: method 1 {f[f'method1_precision_at_{cfg.k}']:.3f}, method 2 "
              f"{f[f'method2_precision_at_{cfg.k}']:.3f}, m2 − m1 {d['diff']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]")
    return rec


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
    i.add_argument("--models", default=None,
                   help="comma-separated subset of the shipped models to index with (default: all)")
    i.add_argument("--checkpoint", type=int, default=256,
                   help="commit every N embedded tracks (a kill loses at most that much work)")
    from core.datasets import LAYOUTS

    i.add_argument("--layout", choices=list(LAYOUTS), default="auto",
                   help="how to read each --data folder: metadata.csv, FMA, genre sub-folders, or an "
                        "ordinary music library (unlabelled, tags read); auto detects it (genre folders "
                        "only when named as genres the shipped models know)")
    i.add_argument("--json", default=None, metavar="FILE",
                   help="write one row per indexed track (tags, label, predicted genre) here")
    i.set_defaults(func=cmd_index)

    from core.recommend.eval_data import SPLITS
    from core.recommend.evaluation import ARTIST_MODES, EvalConfig
    from core.recommend.request import (
        AGGREGATES,
        CONFIDENCE_MODES,
        DEFAULTS,
        DISTANCES,
        MAX_SEEDS,
        METHODS,
        PREFERRED_MODEL,
        VARIANTS,
    )

    model_help = ("embedding: a model name in the index, 'ensemble' (all of them) or 'a+b' "
                  f"(default: {PREFERRED_MODEL} if indexed, else the first)")
    r = sub.add_parser("recommend", help=f"recommend catalog tracks for 1-{MAX_SEEDS} seeds (JSON)")
    r.add_argument("--index", default=str(Paths().index))
    r.add_argument("--seeds", default="", help="comma-separated catalog track ids")
    r.add_argument("--file", action="append", help="an audio file as an extra seed (repeatable)")
    r.add_argument("--method", choices=list(METHODS), default=DEFAULTS.method)
    r.add_argument("--variant", choices=list(VARIANTS), default=DEFAULTS.variant,
                   help="method 2: 'soft' (genre-distribution match) or 'centre' (the paper's "
                        "genre centre-point songs)")
    r.add_argument("--k", type=int, default=DEFAULTS.k)
    r.add_argument("--model", default=DEFAULTS.model, help=model_help)
    r.add_argument("--aggregate", choices=list(AGGREGATES), default=DEFAULTS.aggregate)
    r.add_argument("--distance", choices=list(DISTANCES), default=DEFAULTS.distance)
    r.add_argument("--p", type=float, default=DEFAULTS.p, help="order of the p-norm")
    r.add_argument("--genre-weight", type=float, default=DEFAULTS.genre_weight, help="method 2's weight w")
    r.add_argument("--confidence", choices=list(CONFIDENCE_MODES), default=DEFAULTS.confidence,
                   help="method 2's weight × the classifier's confidence in the seeds' genres")
    r.add_argument("--diversity", type=float, default=DEFAULTS.diversity, help="MMR diversity 0-1")
    r.add_argument("--standardise", action="store_true", default=DEFAULTS.standardise,
                   help="z-score embedding dimensions over the catalog first")
    r.add_argument("--leave-artist-out", action="store_true",
                   help="never recommend tracks by the seeds' artists")
    r.add_argument("--liked", default="", help="comma-separated liked track ids")
    r.add_argument("--disliked", default="", help="comma-separated disliked track ids")
    r.add_argument("--artifacts", default=arts, help="models for --file seeds")
    r.add_argument("--m3u", default=None, metavar="FILE",
                   help="also write the list as an extended M3U playlist (UTF-8; paths relative to FILE)")
    r.add_argument("--csv", default=None, metavar="FILE", help="also write the list as CSV")
    r.add_argument("--mood", choices=["like", "calmer", "energetic"], default=None,
                   help="re-rank by mood: like the seeds', calmer or more energetic (index facets)")
    r.add_argument("--mood-weight", type=float, default=0.5, help="weight of the mood term")
    r.add_argument("--tempo", default=None, metavar="MIN:MAX", help="only tracks with tempo in this BPM range")
    r.set_defaults(func=cmd_recommend)

    d = EvalConfig()
    e = sub.add_parser("recommend-eval", help="simulated-listener evaluation of the recommender")
    e.add_argument("--data", action="append")
    e.add_argument("--split", default="test",
                   help=f"any split value in the metadata ({', '.join(SPLITS)}, holdout, …); 'all': the whole catalog")
    e.add_argument("--json", help="write the results (or the --select-on choice) here")
    e.add_argument("--artifacts", default=arts)
    e.add_argument("--index", default=None,
                   help="take the vectors from this catalog index (python -m core index) instead of "
                        "running the models")
    e.add_argument("--listeners", type=int, default=d.n_listeners, help="simulated listeners (half mixed-taste)")
    e.add_argument("--seed", type=int, default=d.seed)
    e.add_argument("--k", type=int, default=d.k, help="recommendations per listener")
    e.add_argument("--n-seeds", type=int, default=d.n_seeds, help="seed tracks per listener")
    e.add_argument("--model", default=d.model, help=model_help)
    e.add_argument("--genre-weight", type=float, default=d.genre_weight)
    e.add_argument("--variant", choices=list(VARIANTS), default=d.variant)
    e.add_argument("--confidence", choices=list(CONFIDENCE_MODES), default=d.confidence)
    e.add_argument("--artists", choices=list(ARTIST_MODES), default=d.artists,
                   help="leave-artist-out: 'exclude' never recommends a seed's artist, 'no-credit' "
                        "counts them as misses")
    e.add_argument("--no-resample", action="store_true", help="skip the track/artist jackknife")
    e.add_argument("--select-on", default=None,
                   help="grid-search embedding, variant and genre weight on this split (use val) and "
                        "write the choice to --json")
    e.add_argument("--weights", default=None, help="--select-on: comma-separated genre weights")
    e.add_argument("--embeddings", default=None,
                   help="--select-on: comma-separated model specs (default: each model, each pair, ensemble)")
    e.add_argument("--choice", default=None, help="JSON from --select-on: its model, variant and weight")
    e.add_argument("--no-extras", action="store_true", help="skip the beyond-the-paper variants")
    e.add_argument("--no-relevance", action="store_true",
                   help="skip the mood and artist listeners (relevance that is not genre)")
    e.add_argument("--cache", default=None, help="log-mel cache folder")
    e.add_argument("--loso", action="store_true",
                   help="also choose and check method 2 leave-one-source-out (adds the 'loso' key)")
    from core.recommend.loso import FUSED

    e.add_argument("--loso-model", default=FUSED,
                   help="--loso: the model whose fold heads give the genre terms and embedding (an entry "
                        "of loso.json naming its features and C)")
    e.add_argument("--loso-features", default=None, metavar="DIR",
                   help="--loso: folder of other trunks' feature files (<trunk>.npz) the model may use")
    e.add_argument("--loso-self-train", nargs=2, default=None, metavar=("FRAC", "ROUNDS"),
                   help="--loso: self-train each fold head on its held-out source's tracks for the genre "
                        "terms (transductive; README, 'Self-training on the new source')")
    e.set_defaults(func=cmd_recommend_eval)
