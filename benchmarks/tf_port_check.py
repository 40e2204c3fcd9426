"""Check the PyTorch ports of the musicnn wheel's four checkpoints against
TensorFlow running each checkpoint's own graph (``<name>/.meta``).

    python -m benchmarks.tf_port_check [--tf-python /tmp/tfvenv/bin/python] [--clips 20]

Runs in two interpreters: this project's (decode, front-end, PyTorch ports)
and a scratch one with TensorFlow (``python3.11 -m venv /tmp/tfvenv &&
/tmp/tfvenv/bin/pip install 'tensorflow-cpu==2.15.*'``; TensorFlow is no
project dependency). The TF side imports nothing from this project: it loads
the graph (after stripping its ``_output_shapes`` attributes, which TF 2.x
refuses), restores the checkpoint and feeds the same patches with
``is_training = False``. Prints, per checkpoint, the largest absolute
difference in logits, tag probabilities and the penultimate layer, as JSON.
Exits 2 (skipped) when no TensorFlow interpreter is found.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHECKPOINTS = ("MSD_vgg", "MSD_musicnn", "MTT_musicnn", "MTT_vgg")
# Graph tensors: (logits, penultimate layer), per architecture.
TF_OUTPUTS = {"vgg": ("model/dense/BiasAdd:0", "model/Flatten/flatten/Reshape:0"),
              "musicnn": ("model/dense_1/BiasAdd:0", "model/batch_normalization_10/batchnorm/add_1:0")}
DEFAULT_TF_PYTHON = os.environ.get("GENRE_TF_PYTHON", "/tmp/tfvenv/bin/python")


def _tf_side(inputs: str, out: str, wheel: str) -> None:   # pragma: no cover - runs under TensorFlow
    import tensorflow as tf
    tf.compat.v1.disable_eager_execution()
    x = np.load(inputs)["patches"]                   # (N, 187, 96): time × mel, as musicnn feeds it
    res = {}
    for name in CHECKPOINTS:
        prefix = str(Path(wheel) / name) + "/"
        meta = tf.compat.v1.MetaGraphDef()
        meta.ParseFromString(Path(prefix + ".meta").read_bytes())
        for node in meta.graph_def.node:
            node.attr.pop("_output_shapes", None)
        logits_t, pen_t = TF_OUTPUTS["vgg" if name.endswith("vgg") else "musicnn"]
        with tf.compat.v1.Graph().as_default() as g, tf.compat.v1.Session(graph=g) as sess:
            saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
            saver.restore(sess, prefix)
            logits, pen = sess.run([logits_t, pen_t], {"model/Placeholder:0": x,
                                                      "model/Placeholder_2:0": False})
        res[f"{name}_logits"], res[f"{name}_pen"] = logits, pen
    np.savez(out, **res)


def torch_side(patches, names=CHECKPOINTS) -> dict[str, np.ndarray]:
    """Each port on ``patches`` ``(N, 1, 96, 187)`` → its logits and penultimate
    layer, and the logits of its fast float32 inference copy (``<name>_fast``)."""
    import torch

    from core.models.musicnn import pretrained
    from core.models.trunks_fast import fast_tagger
    res = {}
    with torch.inference_mode():
        x = torch.as_tensor(patches)
        for name in names:
            model = pretrained(name)
            pen, logits = model.embed(x)
            res[f"{name}_logits"], res[f"{name}_pen"] = logits.numpy(), pen.numpy()
            res[f"{name}_fast"] = fast_tagger(model, bfloat16=False).embed(x)[1].float().numpy()
    return res


def real_patches(n_clips: int) -> tuple[np.ndarray, list[str]]:
    """One 3 s patch (the middle one) of ``n_clips`` real clips spread over
    genres and sources, through the project's load and front-end."""
    from core.audio.features import logmels
    from core.audio.load import load
    from core.config import shared_data_dirs
    from core.datasets import read_datasets
    from core.models.msd import MSD_FEATURES, PATCH_FRAMES
    tracks = sorted(read_datasets(shared_data_dirs()), key=lambda t: (t.genre, t.track_id))
    if not tracks:
        raise SystemExit("no shared data found (../shared/data or $GENRE_DATA)")
    pick = [tracks[i] for i in np.linspace(0, len(tracks) - 1, n_clips).astype(int)]
    out = []
    for t in pick:
        lm = logmels(load(t.path, MSD_FEATURES), MSD_FEATURES)[0]      # (1, 96, 1872)
        s = (lm.shape[-1] // PATCH_FRAMES // 2) * PATCH_FRAMES
        out.append(lm[..., s: s + PATCH_FRAMES].numpy())
    return np.stack(out).astype(np.float32), [t.track_id for t in pick]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tf-python", default=DEFAULT_TF_PYTHON)
    ap.add_argument("--clips", type=int, default=20)
    args = ap.parse_args(argv)
    if not Path(args.tf_python).is_file():
        print(f"skipped: no TensorFlow interpreter at {args.tf_python}", file=sys.stderr)
        return 2
    from core.models.msd import msd_checkpoint_prefix
    wheel = str(Path(msd_checkpoint_prefix()).parent)
    patches, ids = real_patches(args.clips)
    ours = torch_side(patches)
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inp, patches=patches[:, 0].transpose(0, 2, 1).copy())
        subprocess.run([args.tf_python, __file__, "--tf-side", str(inp), str(out), wheel], check=True)
        theirs = dict(np.load(out))
    report = {"clips": len(ids), "patch_frames": patches.shape[-1]}
    for name in CHECKPOINTS:
        a, b = ours[f"{name}_logits"], theirs[f"{name}_logits"]
        sig = lambda z: 1 / (1 + np.exp(-z))   # noqa: E731
        report[name] = {"max_abs_logit": float(np.abs(a - b).max()),
                        "max_abs_tag_prob": float(np.abs(sig(a) - sig(b)).max()),
                        "max_abs_penultimate": float(np.abs(ours[f"{name}_pen"] - theirs[f"{name}_pen"]).max()),
                        "fast_float32_max_abs_logit": float(np.abs(ours[f"{name}_fast"] - b).max()),
                        "logit_range": [float(b.min()), float(b.max())]}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--tf-side":
        _tf_side(*sys.argv[2:5])
    else:
        sys.exit(main())
