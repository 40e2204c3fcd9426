"""core.models (cnn, crnn and the registry): shapes, embeddings, the papers' structure as it computes."""

import numpy as np
import pytest
import torch
from torch import nn

from core.config import FeatureConfig
from core.models import CNN, CRNN, build_model

LABELS = ["A", "B", "C", "D"]


@pytest.mark.parametrize("name", ["cnn", "crnn"])
def test_predict_shapes_and_probabilities(name):
    m = build_model(name, LABELS, FeatureConfig())
    wave = np.random.default_rng(0).standard_normal((2, FeatureConfig().window_samples)).astype(np.float32) * 0.1
    p = m.predict(wave)
    assert p.probs.shape == (2, 4)
    assert ((p.probs > 0) & (p.probs < 1)).all()          # sigmoid, not softmax
    assert p.embedding.shape == (2, m.embedding_dim)
    assert p.window_probs.shape[:2] == (2, len(p.window_starts))
    np.testing.assert_allclose(p.probs, p.window_probs.mean(1), rtol=1e-5)


def test_crnn_follows_choi_2017_layout():
    m = CRNN(LABELS)
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    pools = [mod.kernel_size for mod in m.modules() if isinstance(mod, nn.MaxPool2d)]
    assert len(convs) == 4 and all(c.kernel_size == (3, 3) for c in convs)
    assert pools == [(2, 2), (3, 3), (4, 4), (4, 4)]
    assert any(isinstance(mod, nn.Dropout) and mod.p == 0.1 for mod in m.modules())
    assert m.gru.num_layers == 2


def _hooked(m, *names: str) -> dict:
    """Outputs of the named submodules, filled in when ``m`` runs."""
    seen: dict = {}

    def keep(name):
        def hook(mod, args, out):
            seen.setdefault(name, out)   # returns None: the output itself is left alone
        return hook

    for n in names:
        getattr(m, n).register_forward_hook(keep(n))
    return seen


def test_crnn_reduces_frequency_to_one_band_and_runs_the_gru_over_time():
    """Choi et al. (2017), as Adiyansjah et al. (2019) use it: the convolutions
    leave one frequency band, the GRU reads the remaining time steps (15 over
    the full 29.1 s window) and its last state is the embedding."""
    m = CRNN(LABELS).eval()
    seen = _hooked(m, "convs", "gru")
    x = torch.randn(2, 1, 96, FeatureConfig().n_frames)
    with torch.no_grad():
        emb = m.embed_logmel(x)
    assert seen["convs"].shape[1:3] == (64, 1)
    steps = seen["gru"][0]
    assert steps.shape == (2, 15, m.embedding_dim)
    assert torch.equal(emb, steps[:, -1])


def test_cnn_has_five_conv_layers():
    m = CNN(LABELS)
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    assert len(convs) == 5 and all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in convs)
    assert sum(isinstance(mod, nn.BatchNorm2d) for mod in m.modules()) == 5


def test_cnn_pools_frequency_to_one_band_and_takes_the_global_max_over_time():
    """Choi et al. (2016)'s fully convolutional network: pooling leaves one
    frequency band; the embedding is the maximum over the remaining time."""
    m = CNN(LABELS).eval()
    seen = _hooked(m, "convs")
    x = torch.randn(2, 1, 96, FeatureConfig().n_frames)
    with torch.no_grad():
        emb = m.embed_logmel(x)
    assert seen["convs"].shape[1:3] == (128, 1) and seen["convs"].shape[3] > 1
    assert torch.equal(emb, seen["convs"].amax(dim=(2, 3)))


@pytest.mark.parametrize("frames", [256, 1366])
def test_any_chunk_length(frames):
    for cls in (CNN, CRNN):
        m = cls(LABELS).eval()
        with torch.no_grad():
            assert m(torch.randn(3, 1, 96, frames)).shape == (3, 4)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("transformer", LABELS)
