"""benchmarks.finetune_probe: the fine-tuned tail is MSD_musicnn after its
front end, each mode trains what it names, and batch norms keep their statistics."""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.finetune_probe import Tail, trainable
from core.models.musicnn import Musicnn


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
