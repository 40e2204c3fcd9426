"""Command line: ``python -m core <command> --help``."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path

from .config import FeatureConfig, Paths, TrainConfig, shared_data_dirs

EXIT_BAD_INPUT = 2


def _data_dirs(args) -> list[Path]:
    dirs = [Path(d) for d in (args.data or [])] or shared_data_dirs()
    if not dirs:
        sys.exit("error: no --data folder given and ../shared/data not found")
    return dirs


def cmd_train(args) -> int:
    from .artifacts import save_model, update_manifest, write_json
    from .cache import LogMelCache
    from .datasets import genres_of, read_datasets
    from .train import load_labelled, train_model

    tracks = read_datasets(_data_dirs(args))
    train_tracks = [t for t in tracks if t.split == "train"]
    labels = genres_of(train_tracks)
    feat = FeatureConfig(chunk_frames=args.chunk_frames or FeatureConfig.chunk_frames)
    if args.full_window:
        feat = FeatureConfig(chunk_frames=feat.n_frames, window_hop_frames=feat.n_frames)
    cfg = TrainConfig(model=args.model, epochs=args.epochs, seed=args.seed,
                      max_minutes=args.max_minutes, batch_size=args.batch_size,
                      augment=not args.no_augment)
    cache = LogMelCache(feat, args.cache)
    train = load_labelled(train_tracks, labels, cache, desc="train log-mels")
    val = load_labelled([t for t in tracks if t.split == "val"], labels, cache, desc="val log-mels")
    for reason in train.skipped + val.skipped:
        print(f"skipped: {reason}", file=sys.stderr)
    print(f"{args.model}: {len(train)} train / {len(val)} val tracks, {len(labels)} genres: "
          f"{', '.join(labels)}", file=sys.stderr)
    model, history = train_model(args.model, train, val, labels, feat, cfg,
                                 log=lambda s: print(s, file=sys.stderr))
    out = Path(args.out)
    save_model(model, out, extra={"train_config": cfg.to_dict(), "best_epoch": history["best_epoch"]})
    history.update(train_config=cfg.to_dict(), feature_config=feat.to_dict(),
                   n_train=len(train), n_val=len(val), labels=labels,
                   data=[str(d) for d in _data_dirs(args)])
    write_json(out / f"{args.model}_history.json", history)
    update_manifest(out)
    print(json.dumps({"model": args.model, "best_epoch": history["best_epoch"],
                      "best_val_auc": history["best_val_auc"],
                      "train_seconds": round(history["train_seconds"], 1)}))
    return 0


def cmd_evaluate(args) -> int:
    from .artifacts import update_manifest, write_json
    from .evaluate import evaluate

    res = evaluate(_data_dirs(args), split=args.split, artifacts_dir=args.artifacts,
                   n_boot=args.bootstrap)
    if args.json:
        write_json(Path(args.json), res)
        if Path(args.json).resolve().parent == Path(args.artifacts).resolve():
            update_manifest(args.artifacts)
    for name, rep in res["models"].items():
        m = rep["macro"]
        print(f"{name:>14}: macro AUC {m['roc_auc']:.3f}  F1 {m['f1']:.3f}  "
              f"accuracy {m['accuracy']:.3f}  (n={m['n_tracks']})")
    return 0


def cmd_classify(args) -> int:
    from .artifacts import ArtifactError, load_models
    from .audio import AudioError, quiet_decoder_logs
    from .inference import analyse

    try:
        models = load_models(args.artifacts, optimise=True)
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not models:
        print("error: no trained models found — run `make artifacts`", file=sys.stderr)
        return 1
    status = 0
    for f in args.files:
        try:
            # The decoder's own notes would break "one line per bad file".
            with quiet_decoder_logs():
                a = analyse(f, models, n_excerpts=args.excerpts)
        except AudioError as exc:
            print(f"error: {f}: {str(exc).split(': ', 1)[-1]}", file=sys.stderr)
            status = EXIT_BAD_INPUT
            continue
        except (OSError, MemoryError) as exc:
            print(f"error: {f}: cannot read ({type(exc).__name__})", file=sys.stderr)
            status = EXIT_BAD_INPUT
            continue
        line = {"file": f}
        for name in models:
            line[name] = {g: round(p, 4) for g, p in a.probabilities(name).items()}
            line[f"{name}_top"] = a.top(name)[0]
        print(json.dumps(line), flush=True)
    return status


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core",
                                description="Genre-aware music recommender (CNN / CRNN on log-mels).")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one model on the train split, early-stopped on val")
    t.add_argument("--data", action="append", help="data folder (repeatable; default ../shared/data/*)")
    t.add_argument("--model", choices=["cnn", "crnn"], required=True)
    t.add_argument("--out", default=str(Paths().artifacts), help="artifacts folder")
    t.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    t.add_argument("--max-minutes", type=float, default=TrainConfig.max_minutes,
                   help="stop after this much training time")
    t.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--chunk-frames", type=int, default=None, help="training chunk length in frames")
    t.add_argument("--full-window", action="store_true",
                   help="paper setting: train and predict on the full 1366-frame window")
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--cache", default=None, help="log-mel cache folder")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="metrics of every model in artifacts/ on a split")
    e.add_argument("--data", action="append")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--json", help="write the metrics here")
    e.add_argument("--artifacts", default=str(Paths().artifacts))
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CIs")
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("classify", help="genre probabilities of audio files, one JSON line each")
    c.add_argument("files", nargs="+")
    c.add_argument("--artifacts", default=str(Paths().artifacts))
    c.add_argument("--excerpts", type=int, default=1,
                   help="average over this many excerpts of long tracks")
    c.set_defaults(func=cmd_classify)

    # Commands that live beside the module they drive register themselves.
    for module in _COMMAND_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).register(sub)
    return p


# Each module here defines ``register(subparsers)``.
_COMMAND_MODULES = ("core.cli_model_card", "core.cli_recommend", "core.cli_bench", "core.cli_study")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
