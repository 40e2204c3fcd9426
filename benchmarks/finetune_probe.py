"""MSD_musicnn's mid and back end fine-tuned for genre, measured
leave-one-source-out (issue 16: "the features themselves").

    python -m benchmarks.finetune_probe [--features .cache/trunk_features] [--epochs 3] [--lr 1e-4]
        [--modes head back mid+back] [--seed 0] [--json out.json]

Every head the project has tried on the frozen trunks sits on one plateau
(README, "Other heads on the same features"), so what is left is the
features. This probe fine-tunes the part of MSD_musicnn that is cheap to
train: its front end (the costly convolutions, 561 channels per frame) runs
once per clip with the served copy and is cached. The rest of the trunk
(the mid end's three 1-D convs, the pooled batch norm, the dense layer and
its batch norm) starts from the checkpoint, and a new genre layer is added;
they train on every 3 s patch of each fold's two training sources. Batch
norms keep the checkpoint's statistics and do not train (a fold's few
hundred clips would move them toward its own sources).

Three ways, each in every fold, the same loop, seed, patches and schedule:

- ``head``: the trunk frozen, the genre layer alone (the baseline, same run);
- ``back``: the dense layer too (``Musicnn.dense``);
- ``mid+back``: the mid end's convs as well.

After every epoch each fold's held-out source is scored (a clip's logits are
the mean of its patches'), so the table shows where each way peaks. An
epoch count picked from it is chosen on these folds, like every C of the
project. Then, at ``--combine-epochs``, the fine-tuned penultimate layer
(per patch, and its mean and max over patches) replaces MSD_musicnn's
pretrained one in the shipped features (MSD_vgg's part and both trunks'
tags unchanged). Each head form of ``loso.json`` is fitted per fold on them:
the clip-pooled head of step 1c and, when it ships, the per-patch head of
step 1d, each at its C. Each row is compared with the same head on the
shipped features, with a paired bootstrap interval over the 646 held-out
tracks.

The front-end cache (``<features>/probes/musicnn_front.npy``, float16,
about 1.4 GB; 91 s to fill on the 2-core AMX Xeon) holds every non-test
clip's ten patches. No test clip is read. The defaults took 25 min there,
beside other probes (an epoch of one fold: 9 s ``head``, 10 s ``back``,
47–144 s ``mid+back``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from benchmarks.finetune_net import PEN, Batch, train_fold
from benchmarks.shift_probes import Probe, _row, open_probe, probe_arguments, served_musicnn, write_report
from core.training.loso_data import SourceData
from core.training.loso_eval import FoldLogits, fit_head, linear_fold_logits, loso_report, seen_genres

MODES = ("head", "back", "mid+back")      # "all" (the front end too) runs on a GPU: benchmarks.front_probe
PATCHES = 10
MUSICNN = "msd_musicnn"


def front_cache(p: Probe, rows: np.ndarray, path: Path) -> np.ndarray:
    """``(len(rows), 10, 561, 187)`` float16 memmap: the served MSD_musicnn
    front end on each clip's ten level-normalised 3 s patches
    (:func:`~benchmarks.shift_probes.served_musicnn`), computed once into ``path``."""
    from core.models.msd import PATCH_FRAMES
    from core.models.musicnn import FRONT_CHANNELS

    ids_path = path.with_suffix(".json")
    tracks = [p.tracks[i] for i in rows]
    ids = [t.track_id for t in tracks]
    if path.is_file() and ids_path.is_file() and json.loads(ids_path.read_text()) == ids:
        return np.lib.format.open_memmap(path, mode="r")
    path.parent.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16,
                                    shape=(len(rows), PATCHES, FRONT_CHANNELS, PATCH_FRAMES))
    for k, front in enumerate(served_musicnn(tracks, lambda net, x: net.front(x[:PATCHES]), "front end")):
        if len(front) < PATCHES:
            raise SystemExit(f"{tracks[k].path}: {len(front)} patches of 3 s; this probe needs {PATCHES}")
        out[k] = front
    out.flush()
    ids_path.write_text(json.dumps(ids))
    return np.lib.format.open_memmap(path, mode="r")


def front_batches(front: np.ndarray) -> Batch:
    """:data:`~benchmarks.finetune_net.Batch` of the front-end cache: patches
    ``(clip, patch)`` → ``(n, 561, 187)`` float32 on the CPU."""
    return lambda clip, patch: torch.from_numpy(np.stack([np.asarray(front[c, k], np.float32)
                                                          for c, k in zip(clip, patch)]))


def run_fold(net: nn.Module, front: np.ndarray, pos: dict, p: Probe, fold, mode: str, epochs: int,
             lr: float, combine: Sequence[int], seed: int = 0) -> dict:
    """One fold, one mode on the CPU (:func:`~benchmarks.finetune_net.train_fold`):
    per epoch the held-out :class:`FoldLogits`, and at ``combine`` epochs the
    fine-tuned penultimate layer of every non-test track's patches ``(N, 10, 200)``."""
    y_val = p.y[fold.val]
    seen = seen_genres(p.y[fold.train], y_val)

    def log(ep: int, logits: np.ndarray, wall: float, cpu: float) -> None:
        print(f"{fold.held_out} {mode} epoch {ep}: held-out acc {(logits.argmax(1) == y_val).mean():.3f}, "
              f"{wall:.0f} s wall, {cpu:.0f} s CPU", file=sys.stderr)

    run = train_fold(net, len(p.labels), mode, front_batches(front), PATCHES,
                     np.array([pos[i] for i in fold.train]), p.y[fold.train],
                     np.array([pos[i] for i in fold.val]), np.arange(len(pos)), epochs, lr, combine, seed=seed, log=log)
    return {"epochs": [FoldLogits(fold.held_out, lg, y_val, seen) for lg in run["logits"]],
            "features": run["features"]}


def with_penultimate(data: SourceData, rows: np.ndarray, pen: np.ndarray) -> SourceData:
    """``data`` with MSD_musicnn's penultimate layer of tracks ``rows``
    replaced by ``pen`` ``(len(rows), P, 200)``, per patch and pooled (mean ‖
    max over the patches ``data.keep`` chooses); its tags and every other
    trunk unchanged."""
    from core.models.trunks import patch_choice, pool_patches

    pp, tags = data.patches[MUSICNN]
    pp = pp.copy()
    pp[rows] = pen
    feats = data.features[MUSICNN].copy()
    sel = patch_choice(pen.shape[1], data.keep)
    feats[rows, : 2 * PEN] = pool_patches(pen[:, sel].transpose(1, 0, 2), tags[rows][:, sel].transpose(1, 0, 2))[0]
    return replace(data, features={**data.features, MUSICNN: feats}, patches={**data.patches, MUSICNN: (pp, tags)})


def combined_rows(data: SourceData, folds, rows: np.ndarray, feats: dict, heads: dict,
                  reference: dict) -> list[dict]:
    """Per mode, epoch and head form: the shipped features with MSD_musicnn's
    pretrained penultimate layer replaced by each fold's fine-tuned one
    (``feats[(mode, epoch)]``: per fold, ``(len(rows), P, 200)``), under each
    head of ``heads`` (form → C); deltas against ``reference[form]``, the
    same head's fold logits on the shipped features."""
    names = list(data.features)
    out = []
    for (mode, ep), per_fold in sorted(feats.items()):
        tuned = [with_penultimate(data, rows, pen) for pen in per_fold]
        for form, c in heads.items():
            fl = [FoldLogits(f.held_out, fit_head(d, names, f.train, c, head=form).logits(d.stacked(names)[f.val]),
                             d.y[f.val], seen_genres(d.y[f.train], d.y[f.val])) for f, d in zip(folds, tuned)]
            out.append(_row(fl, reference[form], mode=mode, epoch=ep, head=form, C=c))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from core.models.musicnn import Musicnn, load_musicnn_weights

    ap = probe_arguments("python -m benchmarks.finetune_probe", __doc__)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4, help="learning rate of the pretrained layers")
    ap.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES)
    ap.add_argument("--combine-epochs", type=int, nargs="*", default=[1, 3])
    ap.add_argument("--seed", type=int, default=0, help="the genre layer's initialisation and the patch order")
    args = ap.parse_args(argv)

    p, extra, heads = open_probe(args)
    if list(extra["trunks"]) != ["msd_vgg", MUSICNN]:
        raise SystemExit(f"this probe expects the shipped trunks msd_vgg + {MUSICNN}, got {extra['trunks']}")
    data = p.source_data()
    reference = {form: linear_fold_logits(data, p.folds, extra["trunks"], c, head=form)
                 for form, c in heads.items()}
    rows = np.flatnonzero(p.split != "test")
    pos = {int(i): k for k, i in enumerate(rows)}
    front = front_cache(p, rows, args.features / "probes" / "musicnn_front.npy")
    net = load_musicnn_weights(Musicnn(), "MSD_musicnn")
    report: dict = {"heads": heads, "lr": args.lr, "seed": args.seed, "epochs": {},
                    "reference": {form: loso_report(fl)["mean"] for form, fl in reference.items()}}
    feats: dict = {}
    for mode in args.modes:
        runs = [run_fold(net, front, pos, p, f, mode, args.epochs, args.lr, args.combine_epochs, args.seed)
                for f in p.folds]
        report["epochs"][mode] = [{"epoch": ep + 1, **loso_report([r["epochs"][ep] for r in runs])["mean"]}
                                  for ep in range(args.epochs)]
        for ep in args.combine_epochs:
            if ep <= args.epochs:
                feats[(mode, ep)] = [r["features"][ep] for r in runs]
        print(json.dumps(report["epochs"][mode], indent=1), file=sys.stderr)
    report["combined"] = combined_rows(data, p.folds, rows, feats, heads, reference)
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
