"""benchmarks.front_probe / finetune_net: the fine-tuning leg that runs on a
GPU, exercised on the CPU with a few random clips: the inputs survive
quantisation, the tail from the patch is MSD_musicnn's penultimate layer,
mode "all" trains the front end, and ``train`` writes what ``combine`` reads."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from benchmarks.finetune_net import Tail, trainable
from benchmarks.front_probe import KEEP, STEP, read_inputs, train, write_inputs
from core.models.musicnn import Musicnn


def _net() -> Musicnn:
    torch.manual_seed(0)
    return Musicnn().eval()


def test_inputs_round_trip_within_half_a_step(tmp_path):
    rng = np.random.default_rng(0)
    mels = rng.uniform(0, 6, size=(3, KEEP, 96, 20)).astype(np.float32)
    mels[0, 0, 0, 0] = 9.0                                   # above the range: clipped, and counted
    meta = write_inputs(tmp_path, mels, {"y": [0, 1, 0]})
    got_meta, q = read_inputs(tmp_path)
    assert q.shape == mels.shape and q.dtype == np.uint8 and got_meta == meta and meta["clipped"] == 1
    err = np.abs(q * STEP - mels)
    err[0, 0, 0, 0] = 0
    assert err.max() <= STEP / 2 + 1e-6


def test_tail_from_the_patch_and_mode_all_trains_the_front_end():
    net = _net()
    patch = torch.randn(2, 1, 96, 187)
    tail = Tail(net, n_genres=3, from_input=True).eval()
    with torch.no_grad():
        assert torch.allclose(tail(patch)[0], net.embed(patch)[0], atol=1e-5)
    params = trainable(tail, "all")
    live = {n for n, q in tail.net.named_parameters() if q.requires_grad}
    assert {"timbral.0.conv.weight", "temporal.2.conv.bias", "mid.0.conv.weight", "dense.weight"} <= live
    assert not any("bn" in n for n in live) and "out.weight" not in live and len(params) == len(live)
    with pytest.raises(ValueError, match="front end"):
        trainable(Tail(net, n_genres=3), "all")


def test_train_writes_frozen_layer_logits_and_features(tmp_path):
    net, rng = _net(), np.random.default_rng(1)
    n, g = 6, 3
    mels = rng.uniform(0, 5, size=(n, KEEP, 96, 48)).astype(np.float32)      # fully convolutional: any T
    meta = write_inputs(tmp_path / "in", mels, {"y": [0, 1, 2, 0, 1, 2], "labels": ["a", "b", "c"],
                                                "folds": {"s1": ([0, 1, 2], [3, 4, 5]), "s2": ([3, 4, 5], [0, 1, 2])}})
    save_file(net.state_dict(), str(tmp_path / "in" / "musicnn.safetensors"))
    args = argparse.Namespace(inputs=tmp_path / "in", out=tmp_path / "out", modes=["head", "all", "mid+back"],
                              lr=[1e-3], epochs=1, combine_epochs=[1], device="cpu")
    assert train(args) == 0
    _, q = read_inputs(tmp_path / "in")
    x = torch.from_numpy(q.reshape(-1, 1, 96, 48).astype(np.float32)) * meta["step"]
    with torch.no_grad():
        want = net.embed(x)[0].view(n, KEEP, -1).numpy()
    frozen = np.load(tmp_path / "out" / "frozen.npz")["features"]
    assert frozen.shape == (n, KEEP, 200) and np.allclose(frozen, want, atol=2e-2)
    for key in ("head_0.001", "all_0.001"):
        with np.load(tmp_path / "out" / f"run_{key}.npz") as z:
            assert z["logits_s1_1"].shape == (3, g) and z["features_s2_1"].shape == (n, KEEP, 200)
    with np.load(tmp_path / "out" / "run_head_0.001.npz") as z:      # the trunk frozen: the layer is the checkpoint's
        assert np.allclose(z["features_s1_1"], frozen, atol=1e-3)
    with np.load(tmp_path / "out" / "run_all_0.001.npz") as z:
        assert not np.allclose(z["features_s1_1"], frozen, atol=1e-3)
    runs = {"head_0.001", "all_0.001", "mid-back_0.001"}          # names the device tool hands back
    assert set(json.loads((tmp_path / "out" / "train.json").read_text())["runs"]) == runs
    assert {f.name for f in (tmp_path / "out").glob("run_*.npz")} == {f"run_{k}.npz" for k in runs}
