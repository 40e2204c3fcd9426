"""benchmarks.finetune_probe: the fine-tuned tail is MSD_musicnn after its
front end, each mode trains what it names, batch norms keep their statistics,
and the fine-tuned layer lands in the right columns of the shipped features."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.finetune_net import PEN, Tail, trainable
from benchmarks.finetune_probe import with_penultimate
from core.models.musicnn import Musicnn
from core.training.loso_data import SourceData


def _net() -> Musicnn:
    torch.manual_seed(0)
    net = Musicnn()
    for m in net.modules():          # statistics that differ from a fresh batch norm's
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_tail_on_the_front_end_gives_musicnn_penultimate_layer():
    net = _net()
    patch = torch.randn(3, 1, 96, 187)
    tail = Tail(net, n_genres=4).eval()
    with torch.no_grad():
        pen, logits = tail(net.front(patch))
        assert torch.allclose(pen, net.embed(patch)[0], atol=1e-5)
    assert logits.shape == (3, 4)


def test_each_mode_trains_only_its_layers_and_batch_norms_stay_frozen():
    net = _net()
    expected = {"head": set(), "back": {"dense.weight", "dense.bias"},
                "mid+back": {"dense.weight", "dense.bias"} | {f"mid.{i}.conv.{p}" for i in range(3)
                                                               for p in ("weight", "bias")}}
    for mode, names in expected.items():
        tail = Tail(net, n_genres=4)
        params = trainable(tail, mode)
        live = {n for n, q in tail.net.named_parameters() if q.requires_grad}
        assert live == names and len(params) == len(names)
        tail.train()
        assert tail.training and not any(m.training for m in tail.modules()
                                         if isinstance(m, nn.modules.batchnorm._BatchNorm))
        before = tail.net.pool_bn.running_mean.clone()
        tail(torch.randn(2, 561, 187) * 3 + 1)
        assert torch.equal(before, tail.net.pool_bn.running_mean)


def test_with_penultimate_replaces_musicnn_layer_per_patch_and_pooled_and_nothing_else():
    rng = np.random.default_rng(0)
    n, p = 5, 4
    pen, tags = rng.normal(size=(n, p, PEN)).astype(np.float32), rng.random((n, p, 50)).astype(np.float32)
    vgg = rng.normal(size=(n, 562)).astype(np.float32)
    pooled = np.concatenate([pen.mean(1), pen.max(1), tags.mean(1)], 1)
    data = SourceData(tracks=[], labels=["a", "b"], y=np.zeros(n, np.int64),
                      features={"msd_vgg": vgg, "msd_musicnn": pooled}, patches={"msd_musicnn": (pen, tags)})
    rows, new = np.array([1, 3]), rng.normal(size=(2, p, PEN)).astype(np.float32)
    out = with_penultimate(data, rows, new)
    got_pen, got_tags = out.patches["msd_musicnn"]
    assert np.array_equal(got_pen[rows], new) and np.array_equal(got_pen[[0, 2, 4]], pen[[0, 2, 4]])
    assert got_tags is tags and out.features["msd_vgg"] is vgg
    f = out.features["msd_musicnn"]
    assert np.allclose(f[rows, :PEN], new.mean(1)) and np.allclose(f[rows, PEN: 2 * PEN], new.max(1))
    assert np.array_equal(f[:, 2 * PEN:], pooled[:, 2 * PEN:]) and np.array_equal(f[[0, 2, 4]], pooled[[0, 2, 4]])
    assert np.array_equal(data.patches["msd_musicnn"][0], pen)          # the input is not changed
