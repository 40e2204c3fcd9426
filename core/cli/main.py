"""Command line: ``python -m core <command> --help``.

This module holds the model commands (train, evaluate, baseline, calibrate,
classify) and builds the parser; each other group of commands lives in its
own module beside it and adds its sub-parsers with ``register``. Heavy
modules (torch, the models) are imported inside the command that needs
them so that ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from core.cli import (
    EXIT_BAD_INPUT,
    adapt,
    bench,
    data_dirs_or_exit,
    facets,
    loso,
    model_card,
    recommend,
    robustness,
    study,
    trunks,
)
from core.config import FeatureConfig, Paths, TrainConfig
from core.errors import GenreError


def cmd_train(args) -> int:
    from core.audio.cache import LogMelCache
    from core.datasets import genres_of, read_datasets
    from core.models import MODELS
    from core.models.artifacts import save_model, update_manifest, write_json
    from core.training.train import load_labelled, train_model, train_transfer

    dirs = data_dirs_or_exit(args)
    tracks = read_datasets(dirs, labelled_only=True)
    train_tracks = [t for t in tracks if t.split == "train"]
    labels = genres_of(train_tracks)
    transfer = MODELS[args.model].__name__.endswith("MSD")
    if transfer:
        from core.models.msd import MSD_FEATURES as feat
    else:
        feat = FeatureConfig(chunk_frames=args.chunk_frames or FeatureConfig.chunk_frames)
        if args.full_window:
            feat = FeatureConfig(chunk_frames=feat.n_frames, window_hop_frames=feat.n_frames)
    cfg = TrainConfig(model=args.model, epochs=args.epochs, seed=args.seed,
                      max_minutes=args.max_minutes, batch_size=args.batch_size,
                      augment=not args.no_augment, lr=args.lr,
                      pretrained_lr_scale=args.pretrained_lr_scale,
                      feature_dropout=args.feature_dropout, weight_decay=args.weight_decay,
                      device=args.device, init_from=args.init_from,
                      wave_augment=args.wave_augment, wave_augment_p=args.wave_augment_p,
                      patience=args.patience)
    if args.recurrent_only:
        return _train_recurrent(args, dirs, tracks, labels, cfg)
    cache = LogMelCache(feat, args.cache)
    train = load_labelled(train_tracks, labels, cache, desc="train log-mels")
    val = load_labelled([t for t in tracks if t.split == "val"], labels, cache, desc="val log-mels")
    for reason in train.skipped + val.skipped:
        print(f"skipped: {reason}", file=sys.stderr)
    print(f"{args.model}: {len(train)} train / {len(val)} val tracks, {len(labels)} genres: "
          f"{', '.join(labels)}", file=sys.stderr)
    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    if transfer:
        model, history = train_transfer(args.model, train, val, labels, cfg, log=log,
                                        cache_root=args.cache)
    else:
        bank = None
        if args.wave_augment:
            from core.training.wave_augment import augmented_bank

            bank = augmented_bank(train.tracks, feat, args.wave_augment, seed=args.seed,
                                  cache_root=args.cache, log=log)
        model, history = train_model(args.model, train, val, labels, feat, cfg, log=log, aug_bank=bank)
    out = Path(args.out)
    save_model(model, out, extra={"train_config": cfg.to_dict(), "best_epoch": history["best_epoch"]})
    history.update(train_config=cfg.to_dict(), feature_config=feat.to_dict(),
                   n_train=len(train), n_val=len(val), labels=labels,
                   data=[str(d) for d in dirs])
    write_json(out / f"{args.model}_history.json", history)
    update_manifest(out)
    print(json.dumps({"model": args.model, "best_epoch": history["best_epoch"],
                      "best_val_auc": history["best_val_auc"],
                      "train_seconds": round(history["train_seconds"], 1)}))
    return 0


def _train_recurrent(args, dirs, tracks, labels, cfg) -> int:
    """Stage 2 of the CRNN: its GRU and genre layers on the frozen conv stack of
    the ``--init-from`` model (core.training.recurrent); the feature settings,
    and the stage-1 history beside the weights, carry over."""
    from core.audio.cache import LogMelCache
    from core.models.artifacts import load_model, read_json, save_model, update_manifest, write_json
    from core.training.recurrent import train_recurrent
    from core.training.train import load_labelled

    if not args.init_from:
        sys.exit("error: --recurrent-only continues a trained model: give --init-from")
    src = Path(args.init_from)
    if src.name != f"{args.model}.safetensors":
        sys.exit(f"error: --init-from must be a {args.model}.safetensors file")
    try:
        model = load_model(args.model, src.parent, check=False)
    except GenreError as exc:
        sys.exit(f"error: {exc}")
    try:
        stage1 = read_json(f"{args.model}_history.json", src.parent)
    except GenreError:
        stage1 = {}
    stage1 = stage1.get("stage1", stage1)    # a rerun keeps the end-to-end stage's record
    if model.labels != labels:
        sys.exit("error: the --init-from model's genres differ from the data's")
    cache = LogMelCache(model.cfg, args.cache)
    train = load_labelled([t for t in tracks if t.split == "train"], labels, cache, desc="train log-mels")
    val = load_labelled([t for t in tracks if t.split == "val"], labels, cache, desc="val log-mels")
    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    bank = None
    if args.wave_augment:
        from core.training.wave_augment import augmented_bank

        bank = augmented_bank(train.tracks, model.cfg, args.wave_augment, seed=args.seed,
                              cache_root=args.cache, log=log)
    model, history = train_recurrent(model, train, val, labels, cfg, log=log, min_steps=args.min_steps,
                                     aug_bank=bank)
    out = Path(args.out)
    save_model(model, out, extra={"train_config": cfg.to_dict(), "best_epoch": history["best_epoch"],
                                  "stage": "recurrent"})
    history.update(train_config=cfg.to_dict(), feature_config=model.cfg.to_dict(),
                   n_train=len(train), n_val=len(val), labels=labels,
                   data=[str(d) for d in dirs],
                   stage1={k: stage1.get(k) for k in ("best_epoch", "best_val_auc", "train_seconds",
                                                       "train_config", "epoch")})
    write_json(out / f"{args.model}_history.json", history)
    update_manifest(out)
    print(json.dumps({"model": args.model, "stage": "recurrent", "best_epoch": history["best_epoch"],
                      "best_val_auc": history["best_val_auc"],
                      "train_seconds": round(history["train_seconds"], 1)}))
    return 0


def cmd_evaluate(args) -> int:
    from core.models.artifacts import update_manifest, write_json
    from core.training.evaluate import evaluate

    try:
        res = evaluate(data_dirs_or_exit(args), split=args.split, artifacts_dir=args.artifacts,
                       n_boot=args.bootstrap, adapt=args.adapt)
    except (ValueError, GenreError) as exc:   # e.g. a split the metadata does not have; no replay file
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        write_json(Path(args.json), res)
        if Path(args.json).resolve().parent == Path(args.artifacts).resolve():
            update_manifest(args.artifacts)
    for name, rep in res["models"].items():
        m = rep["macro"]
        print(f"{name:>14}: macro AUC {m['roc_auc']:.3f}  F1 {m['f1']:.3f}  "
              f"accuracy {m['accuracy']:.3f}  (n={m['n_tracks']})")
    return 0


def cmd_baseline(args) -> int:
    from core.training.evaluate import fit_baseline

    m = fit_baseline(data_dirs_or_exit(args), args.artifacts)
    print(json.dumps({"model": m.name, "labels": m.labels, "features": len(m.mean)}))
    return 0


def cmd_calibrate(args) -> int:
    from core.training.evaluate import calibrate

    rec = calibrate(data_dirs_or_exit(args), args.artifacts, split=args.split)
    for name, sc in rec["scores"].items():
        print(f"{name:>10}: T = {sc['temperature']:.3f}  {args.split} macro AUC {sc['roc_auc']:.3f}  "
              f"accuracy {sc['accuracy']:.3f}")
    print(f"default model: {rec['best_model']} (by {rec['criterion']})")
    return 0


def cmd_classify(args) -> int:
    from core.audio.load import AudioError, quiet_decoder_logs
    from core.models.artifacts import ArtifactError, load_models
    from core.models.inference import analyse

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
            print(f"error: {f}: {exc.reason}", file=sys.stderr)
            status = EXIT_BAD_INPUT
            continue
        except (OSError, MemoryError) as exc:
            print(f"error: {f}: cannot read ({type(exc).__name__})", file=sys.stderr)
            status = EXIT_BAD_INPUT
            continue
        # Seconds of audio in the longest excerpt: under the window, the models heard it repeated.
        line = {"file": f, "seconds_heard": round(a.heard_s, 2),
                "repeated_to_fill_window": a.short_of_window() is not None}
        for name in models:
            line[name] = {g: round(p, 4) for g, p in a.probabilities(name).items()}
            line[f"{name}_top"] = a.top(name)[0]
        print(json.dumps(line), flush=True)
    return status


def _model_names() -> list[str]:
    from core.models import MODELS

    return list(MODELS)


# --precision → ($GENRE_BFLOAT16, $GENRE_INT8) (core.config.InferenceConfig).
PRECISIONS = {"auto": ("auto", "auto"), "int8": ("on", "on"), "bfloat16": ("on", "off"), "float32": ("off", "off")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core",
                                description="Genre-aware music recommender (CNN / CRNN on log-mels).")
    p.add_argument("--precision", choices=list(PRECISIONS), default=None,
                   help="conv layers of the inference models in bfloat16 or float32, and the musicnn trunks' "
                        "front end also in int8 (default: $GENRE_BFLOAT16 / $GENRE_INT8, else auto = bfloat16 "
                        "where the CPU has it natively, int8 where it has VNNI and no AMX)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one model on the train split, early-stopped on val")
    t.add_argument("--data", action="append", help="data folder (repeatable; default ../shared/data/*)")
    t.add_argument("--model", choices=list(_model_names()), required=True)
    t.add_argument("--out", default=str(Paths().artifacts), help="artifacts folder")
    t.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    t.add_argument("--max-minutes", type=float, default=TrainConfig.max_minutes,
                   help="stop after this much training time")
    t.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    t.add_argument("--lr", type=float, default=TrainConfig.lr)
    t.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    t.add_argument("--pretrained-lr-scale", type=float, default=TrainConfig.pretrained_lr_scale,
                   help="MSD models: learning-rate factor of pretrained layers outside the frozen trunk")
    t.add_argument("--feature-dropout", type=float, default=TrainConfig.feature_dropout,
                   help="MSD models: dropout on cached trunk features")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--chunk-frames", type=int, default=None, help="training chunk length in frames")
    t.add_argument("--full-window", action="store_true",
                   help="paper setting: train and predict on the full 1366-frame window")
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--wave-augment", type=int, default=0, metavar="COPIES",
                   help="from-scratch models: augmented waveform copies per training track "
                        "(re-encoding, resampling, EQ, noise, reverb, downmix; core.audio.augment)")
    t.add_argument("--wave-augment-p", type=float, default=TrainConfig.wave_augment_p,
                   help="chance a training item is swapped for an augmented copy")
    t.add_argument("--init-from", default=None,
                   help="continue from these weights (.safetensors of the same model)")
    t.add_argument("--patience", type=int, default=TrainConfig.patience,
                   help="stop after this many epochs without a better val macro AUC")
    t.add_argument("--recurrent-only", action="store_true",
                   help="CRNN stage 2: train only the GRU and genre layers of --init-from on its "
                        "frozen conv stack's outputs (random crops of at least --min-steps steps)")
    t.add_argument("--min-steps", type=int, default=12,
                   help="--recurrent-only: the fewest GRU steps a training crop has")
    t.add_argument("--device", default=TrainConfig.device, choices=["auto", "cpu", "cuda"],
                   help="auto: CUDA when a GPU is present, else the CPU")
    t.add_argument("--cache", default=None, help="log-mel cache folder")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="metrics of every model in artifacts/ on a split")
    e.add_argument("--data", action="append")
    e.add_argument("--split", default="test",
                   help="any split value in the metadata (train, val, test, holdout, …) or 'all'")
    e.add_argument("--json", help="write the metrics here")
    e.add_argument("--artifacts", default=str(Paths().artifacts))
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CIs")
    e.add_argument("--adapt", action="store_true",
                   help="also the default model adapted to the split's tracks without their labels "
                        "(fused_trunks_adapted; transductive, as `python -m core adapt --index` does for a library)")
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("baseline", help="train the MFCC baseline on the train split and ship it (JSON)")
    b.add_argument("--data", action="append")
    b.add_argument("--artifacts", default=str(Paths().artifacts))
    b.set_defaults(func=cmd_baseline)

    k = sub.add_parser("calibrate", help="fit each model's temperature on val; pick the app's default model")
    k.add_argument("--data", action="append")
    k.add_argument("--split", default="val", help="split to fit on (default val; never test)")
    k.add_argument("--artifacts", default=str(Paths().artifacts))
    k.set_defaults(func=cmd_calibrate)

    c = sub.add_parser("classify", help="genre probabilities of audio files, one JSON line each")
    c.add_argument("files", nargs="+")
    c.add_argument("--artifacts", default=str(Paths().artifacts))
    c.add_argument("--excerpts", type=int, default=1,
                   help="average over this many excerpts of long tracks")
    c.set_defaults(func=cmd_classify)

    for group in (model_card, recommend, bench, study, trunks, facets, loso, robustness, adapt):
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.precision:
        # The environment, so worker processes and every model copy see it.
        os.environ["GENRE_BFLOAT16"], os.environ["GENRE_INT8"] = PRECISIONS[args.precision]
    try:
        return args.func(args)
    except GenreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


