"""The fused model: a standardised linear head on frozen MSD-VGG features
(core.training.linear_head, core.models.fused)."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.errors import ArtifactError
from core.training.linear_head import ABSENT_BIAS, HeadError, fit_linear_head

LABELS = ["Jazz", "Rock", "Pop", "Folk"]


def _blobs(n=30, d=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (3, d)) * np.linspace(1, 100, d)   # very different scales per dim
    y = np.repeat(np.arange(3), n)
    x = centres[y] + rng.normal(0, 1, (len(y), d)) * np.linspace(1, 100, d)
    return x, y


def test_head_learns_a_separable_fixture_and_leaves_absent_genres_out():
    x, y = _blobs()
    head = fit_linear_head(x, y, n_classes=4, c=1.0)
    logits = head.logits(x)
    assert logits.shape == (90, 4)
    assert (logits.argmax(1) == y).mean() == 1.0
    assert head.bias[3] == ABSENT_BIAS and not head.weight[3].any()     # "Folk" never seen
    assert np.allclose(head.mean, x.mean(0))
    two = fit_linear_head(x[y < 2], y[y < 2], n_classes=4, c=1.0)        # sklearn's binary case
    assert (two.logits(x[y < 2]).argmax(1) == y[y < 2]).all()
    with pytest.raises(HeadError):
        fit_linear_head(x[y == 0], y[y == 0], n_classes=4)


def test_fused_model_separates_and_round_trips_through_safetensors(tmp_path):
    from core.models import build_model
    from core.models.artifacts import load_model, save_model, update_manifest

    torch.manual_seed(0)
    try:
        model = build_model("fused", LABELS)     # conv 5 and the tag layer from the musicnn wheel
    except ArtifactError:
        pytest.skip("musicnn wheel not installed (the frozen layers are rebuilt from it)")
    # Trunk outputs of two "genres": energy in the low or the high mel rows.
    gen = torch.Generator().manual_seed(1)
    feats = torch.rand(16, 128, 6, 40, generator=gen) * 0.1
    y = np.array([0, 1] * 8)
    feats[y == 0, :, :3] += 1.0
    feats[y == 1, :, 3:] += 1.0
    with torch.no_grad():
        raw = torch.cat([model.embed_trunk(feats[i: i + 4]) for i in range(0, 16, 4)]).numpy()
    head = fit_linear_head(raw, y, len(LABELS), c=1.0)
    model.set_head(head.mean, head.scale, head.weight, head.bias, temperature=1.7)
    pred = model.predict_trunk(feats)
    assert (pred.probs.argmax(1) == y).all()
    # The embedding is the standardised feature vector.
    assert np.allclose(pred.embedding, (raw - head.mean) / head.scale, atol=1e-3)
    assert pred.probs[:, 2:].max() < 1e-6                               # genres without examples
    assert not any(p.requires_grad for n, p in model.named_parameters() if not n.startswith("head"))
    path = save_model(model, tmp_path)
    update_manifest(tmp_path)
    # Only what was fitted here is written: no copy of the wheel's layers.
    assert sorted(load_file(str(path))) == ["feat_mean", "feat_scale", "head.bias", "head.weight",
                                            "temperature"]
    loaded = load_model("fused", tmp_path)
    assert float(loaded.temperature) == pytest.approx(1.7)
    assert loaded.fixed_temperature
    # The frozen layers come from the wheel, the rest from the file: same outputs on trunk features.
    again = loaded.predict_trunk(feats)
    assert np.allclose(again.logits, pred.logits, atol=1e-4)
    assert np.allclose(again.probs, pred.probs, atol=1e-5)


def test_fused_shares_the_trunk_pass_with_cnn_msd():
    from core.models import build_model, trunk_group

    torch.manual_seed(0)
    a = build_model("cnn_msd", LABELS, pretrained=False)
    b = build_model("fused", LABELS, pretrained=False)
    b.trunk.load_state_dict(a.trunk.state_dict())
    b.trunk_sha = b._trunk_digest()
    assert list(trunk_group({"x": a, "y": b}).values()) == [["x", "y"]]
    b.train()
    assert not b.block5.training and not b.trunk.training      # frozen layers keep eval statistics
