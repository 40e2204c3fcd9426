"""core.models.optimise: the inference copies everyone serves compute what
the plain models compute, for every model class."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GENRES, synth, write_audio

from core.audio.features import logmels
from core.audio.load import load
from core.config import FeatureConfig
from core.errors import ArtifactError
from core.models import MODELS, build_model
from core.models.inference import predict_all
from core.models.optimise import optimise_for_inference

# The stated agreement between a served (optimised) copy and its plain model:
# calibrated probabilities within 1e-5, embeddings and logits within 1e-4 of
# their scale. Measured: ~1e-7 and ~1e-6 (float32 reassociation only).
PROBS_ATOL = 1e-5
RTOL, ATOL = 1e-4, 1e-5


def with_random_bn(model):
    """Batch-norm statistics that are not the identity, so folding is tested for real."""
    g = torch.Generator().manual_seed(1)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.rand(mod.num_features, generator=g) - 0.5)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.rand(mod.num_features, generator=g) - 0.5)
    return model.eval()


@pytest.mark.parametrize("name", ["cnn", "crnn"])
def test_optimised_model_computes_the_same(name):
    model = with_random_bn(build_model(name, list(GENRES), FeatureConfig()))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimise_for_inference(model)
    x = torch.randn(2, 1, 96, 400)
    ref, got = model.predict_logmel(x), fast.predict_logmel(x)
    assert np.allclose(ref.probs, got.probs, atol=1e-5)
    assert np.allclose(ref.embedding, got.embedding, atol=1e-4)
    # The batch norms are gone from the copy, and the original is untouched.
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.convs.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _model(name: str):
    torch.manual_seed(0)
    try:
        # The MSD models' frozen trunk is the real pretrained MSD-VGG (musicnn wheel).
        return with_random_bn(build_model(name, list(GENRES)))
    except ArtifactError:
        pytest.skip("musicnn wheel not installed")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_served_copy_agrees_with_the_plain_model_on_real_log_mels(name, tmp_path):
    """Every model class, on the log-mels of generated audio, through the
    path the indexer, the app and evaluation run (predict_all)."""
    model = _model(name)
    waves = np.stack([load(write_audio(tmp_path / f"{kind}.wav", synth(kind, 8.0, seed=i)), model.cfg)
                      for i, kind in enumerate(("tone", "noise", "clicks"))])
    x = logmels(waves, model.cfg)
    fast = optimise_for_inference(model)
    assert fast is not model and fast.fingerprint() == model.fingerprint()
    assert optimise_for_inference(fast) is fast                   # already served: kept as it is
    ref = model.predict_logmel(x)
    got = predict_all({model.cfg.key(): x}, {name: fast})[name]
    np.testing.assert_allclose(got.probs, ref.probs, atol=PROBS_ATOL, rtol=0)
    for field in ("embedding", "logits"):
        a, b = getattr(ref, field), getattr(got, field)
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL * max(1.0, float(np.abs(a).max())))
    assert got.probs.argmax(1).tolist() == ref.probs.argmax(1).tolist()
    # The models are told apart, so agreement is not trivially a constant output.
    assert np.ptp(ref.embedding, axis=0).max() > 1e-3
