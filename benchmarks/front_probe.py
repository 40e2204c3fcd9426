"""MSD_musicnn fine-tuned from its input, front end included, measured
leave-one-source-out: the GPU leg of the fine-tuning probe (issue 16;
``benchmarks.finetune_probe`` fine-tunes after the front end on the CPU).

    python -m benchmarks.front_probe export --out .probe                 # here
    python -m benchmarks.front_probe train --inputs .probe --out DIR     # on a GPU
    python -m benchmarks.front_probe combine --inputs .probe --runs DIR [--json F]   # here

The front end holds most of the trunk's compute, so training through it is
a GPU job, and the GPU machine sees only a 64 MiB copy of the repository.
So ``export`` writes, for every non-test clip, the 5 of its 10 level-
normalised 3 s log-mel patches that a bank with ``patches=5`` reads
(:func:`~core.models.trunks.patch_choice`), quantised to uint8 (step
8/255 ≈ 0.031 of log10(10000·x + 1), xz-compressed), the LOSO folds and
the checkpoint as safetensors. ``train`` needs only torch, numpy,
safetensors and ``core.models.musicnn``: per mode, learning rate and fold
it trains :class:`~benchmarks.finetune_net.Tail` from the patch
(:func:`~benchmarks.finetune_net.train_fold`), and returns the held-out
logits of every epoch and the penultimate layer of every clip at the
``--combine-epochs``. ``combine`` puts each returned layer into the shipped
features kept to the same 5 patches and fits each head form of
``loso.json`` per fold.

Every row's reference is the same run's frozen checkpoint on the same
quantised patches (mode ``head``'s layer), so quantisation and the 5
patches cancel; how far that reference sits from the shipped features at 5
and at 10 float patches is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import lzma
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from benchmarks.finetune_net import MODES, Tail, clip_outputs, train_fold

KEEP = 5                      # patches per clip that travel
STEP = 8.0 / 255              # uint8 quantisation step of the log-mel (its maximum on the shared data: 7.3)


def export(args: argparse.Namespace) -> int:
    """The inputs of :func:`train` into ``args.out`` (46 MB; ``.probe`` is
    git-ignored, so the device tool carries it: ``carry: [".probe"]``)."""
    from safetensors.torch import save_file

    from benchmarks.finetune_probe import PATCHES
    from benchmarks.shift_probes import open_probe, served_musicnn
    from core.models.musicnn import Musicnn, load_musicnn_weights
    from core.models.trunks import patch_choice

    p, _, _ = open_probe(args)
    out = Path(args.out)
    rows = np.flatnonzero(p.split != "test")
    sel = patch_choice(PATCHES, KEEP)
    tracks = [p.tracks[i] for i in rows]
    mels = np.zeros((len(rows), KEEP, 96, 187), np.float32)
    for k, x in enumerate(served_musicnn(tracks, lambda net, x: x[:, 0], "patches")):
        if len(x) < PATCHES:
            raise SystemExit(f"{tracks[k].path}: {len(x)} patches of 3 s; this probe needs {PATCHES}")
        mels[k] = x[sel]
    pos = {int(i): k for k, i in enumerate(rows)}
    folds = {f.held_out: ([pos[i] for i in f.train], [pos[i] for i in f.val]) for f in p.folds}
    meta = write_inputs(Path(args.out), mels, {"patches": sel, "labels": p.labels, "y": p.y[rows].tolist(),
                                                "track_ids": [t.track_id for t in tracks], "folds": folds})
    save_file(load_musicnn_weights(Musicnn(), "MSD_musicnn").state_dict(), str(out / "musicnn.safetensors"))
    print(f"{len(rows)} clips × {KEEP} patches → {out} (largest quantisation error {meta['max_error']:.4f}, "
          f"{meta['clipped']} values clipped)", file=sys.stderr)
    return 0


def write_inputs(out: Path, mels: np.ndarray, meta: dict) -> dict:
    """Float log-mel patches ``(N, P, 96, T)`` → ``out/mels.u8.xz`` (uint8,
    step :data:`STEP`) and ``out/inputs.json`` (``meta`` with the shape, the
    step, how many values were clipped and the largest quantisation error)."""
    q = np.clip(np.rint(mels / STEP), 0, 255).astype(np.uint8)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mels.u8.xz").write_bytes(lzma.compress(q.tobytes()))
    meta = {**meta, "shape": list(q.shape), "step": STEP, "clipped": int((mels > 255 * STEP).sum()),
            "max_error": float(np.abs(q * STEP - mels).max())}
    (out / "inputs.json").write_text(json.dumps(meta))
    return meta


def read_inputs(folder: Path) -> tuple[dict, np.ndarray]:
    """(``inputs.json``, the uint8 patches ``(N, 5, 96, 187)``) of :func:`export`."""
    meta = json.loads((folder / "inputs.json").read_text())
    q = np.frombuffer(lzma.decompress((folder / "mels.u8.xz").read_bytes()), np.uint8)
    return meta, q.reshape(meta["shape"])


def train(args: argparse.Namespace) -> int:
    """Every (mode, lr) of ``args`` in every fold → ``run_<mode>_<lr>.npz``
    (``logits_<fold>_<epoch>``, ``features_<fold>_<epoch>``), ``frozen.npz``
    (the checkpoint's penultimate layer) and ``train.json`` (timings) in ``args.out``."""
    from safetensors.torch import load_file

    from core.models.musicnn import Musicnn

    torch.backends.cudnn.allow_tf32 = False          # float32 convolutions and products, as on the CPU
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device(args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    meta, q = read_inputs(Path(args.inputs))
    mels = torch.from_numpy(q.copy()).to(dev)
    step = float(meta["step"])

    def batch_of(clip: np.ndarray, patch: np.ndarray) -> torch.Tensor:
        return mels[torch.from_numpy(clip).to(dev), torch.from_numpy(patch).to(dev)].unsqueeze(1).float() * step

    net = Musicnn()
    net.load_state_dict(load_file(str(Path(args.inputs) / "musicnn.safetensors")))
    net.eval()
    y, n, g = np.array(meta["y"]), len(meta["y"]), len(meta["labels"])
    everyone = np.arange(n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    frozen = clip_outputs(Tail(net, g, from_input=True).to(dev), batch_of, everyone, KEEP)[0]
    np.savez(out / "frozen.npz", features=frozen.astype(np.float16))
    log: dict = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                 "torch": torch.__version__, "frozen_s": time.time() - t0, "runs": {}}
    for mode in args.modes:
        for lr in args.lr if mode != "head" else args.lr[:1]:
            key, arrays, t1 = f"{mode.replace('+', '-')}_{lr:g}", {}, time.time()   # a file name of [A-Za-z0-9._-]
            for name, (tr, va) in meta["folds"].items():
                tr, va = np.array(tr), np.array(va)

                def say(ep: int, logits: np.ndarray, wall: float, cpu: float) -> None:
                    print(f"{key} {name} epoch {ep}: held-out acc {(logits.argmax(1) == y[va]).mean():.3f}, "
                          f"{wall:.1f} s", file=sys.stderr, flush=True)

                run = train_fold(net, g, mode, batch_of, KEEP, tr, y[tr], va, everyone, args.epochs, lr,
                                 args.combine_epochs, from_input=True, device=dev, log=say)
                arrays |= {f"logits_{name}_{e + 1}": lg for e, lg in enumerate(run["logits"])}
                arrays |= {f"features_{name}_{e}": f.astype(np.float16) for e, f in run["features"].items()}
            np.savez(out / f"run_{key}.npz", **arrays)
            log["runs"][key] = {"seconds": time.time() - t1}
    earlier = json.loads((out / "train.json").read_text()) if (out / "train.json").is_file() else {}
    log["runs"] = {**earlier.get("runs", {}), **log["runs"]}          # several calls may fill one folder
    (out / "train.json").write_text(json.dumps(log, indent=1))
    print(json.dumps(log), file=sys.stderr)
    return 0


def combine(args: argparse.Namespace) -> int:
    """The runs of :func:`train` in ``args.runs``: each (mode, lr)'s held-out
    genre-layer metrics per epoch, and its fine-tuned layer in the shipped
    features kept to the same 5 patches under each head form, against the
    frozen layer's (JSON report)."""
    from benchmarks.finetune_probe import MUSICNN, combined_rows, with_penultimate
    from benchmarks.shift_probes import _row, open_probe, write_report
    from core.training.loso_eval import FoldLogits, linear_fold_logits, loso_report, seen_genres

    p, extra, heads = open_probe(args)
    meta, _ = read_inputs(Path(args.inputs))
    rows = np.flatnonzero(p.split != "test")
    if ([p.tracks[i].track_id for i in rows] != meta["track_ids"]
            or [f.held_out for f in p.folds] != list(meta["folds"])):
        raise SystemExit(f"{args.inputs} was exported from other tracks or folds; export again")
    names, sel = extra["trunks"], meta["patches"]
    full = p.source_data()
    data = full.with_patches(KEEP)
    shipped = full.patches[MUSICNN][0][rows]

    def in_place(pen: np.ndarray) -> np.ndarray:          # (N, 5, 200) → (N, 10, 200), the 5 at ``sel``
        out = shipped.copy()
        out[:, sel] = pen
        return out

    def fold_logits(d, form: str) -> list[FoldLogits]:
        return linear_fold_logits(d, p.folds, names, heads[form], head=form)

    frozen = np.load(args.runs / "frozen.npz")["features"].astype(np.float32)
    frozen_data = with_penultimate(data, rows, in_place(frozen))
    reference = {form: fold_logits(frozen_data, form) for form in heads}
    report: dict = {"heads": heads, "train": json.loads((args.runs / "train.json").read_text()),
                    "frozen_vs_served": {"max_abs": float(np.abs(frozen - shipped[:, sel]).max()),
                                         "mean_abs": float(np.abs(frozen - shipped[:, sel]).mean())},
                    "reference": {form: loso_report(fl)["mean"] for form, fl in reference.items()},
                    "shipped": [_row(fold_logits(d, form), reference[form], features=k, head=form)
                                for k, d in (("10 patches", full), ("5 patches", data)) for form in heads],
                    "epochs": {}}
    feats: dict = {}
    for path in sorted(args.runs.glob("run_*.npz")):
        key = path.stem[4:]
        with np.load(path) as z:
            eps = sorted({int(k.rsplit("_", 1)[1]) for k in z.files if k.startswith("logits_")})
            report["epochs"][key] = [{"epoch": e, **loso_report([
                FoldLogits(f.held_out, z[f"logits_{f.held_out}_{e}"], p.y[f.val], seen_genres(p.y[f.train], p.y[f.val]))
                for f in p.folds])["mean"]} for e in eps]
            for e in sorted({int(k.rsplit("_", 1)[1]) for k in z.files if k.startswith("features_")}):
                feats[(key, e)] = [in_place(z[f"features_{f.held_out}_{e}"].astype(np.float32)) for f in p.folds]
    report["combined"] = combined_rows(data, p.folds, rows, feats, heads, reference)
    write_report(report, args.json)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.front_probe", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    ex = sub.add_parser("export", help="here: the patches, folds and checkpoint the GPU leg reads")
    ex.add_argument("--out", type=Path, required=True)
    tr = sub.add_parser("train", help="on a GPU: fine-tune per mode, lr and fold")
    tr.add_argument("--inputs", type=Path, required=True)
    tr.add_argument("--out", type=Path, required=True)
    tr.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES)
    tr.add_argument("--lr", type=float, nargs="*", default=[1e-4, 1e-5])
    tr.add_argument("--epochs", type=int, default=3)
    tr.add_argument("--combine-epochs", type=int, nargs="*", default=[1, 3])
    tr.add_argument("--device", default="auto")
    co = sub.add_parser("combine", help="here: the returned layers in the shipped features")
    co.add_argument("--inputs", type=Path, required=True)
    co.add_argument("--runs", type=Path, required=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["train"]:                        # the GPU leg imports torch, numpy and safetensors alone
        from benchmarks.shift_probes import probe_options
        for sp in (ex, co):
            probe_options(sp)
    args = ap.parse_args(argv)
    return {"export": export, "train": train, "combine": combine}[args.step](args)


if __name__ == "__main__":
    raise SystemExit(main())
