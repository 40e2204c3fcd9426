"""core.models.transfer: CNNMSD and CRNNMSD on the frozen MSD-VGG trunk,
the shared trunk, and what is (not) saved."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import ArtifactError
from core.models import build_model, trunk_group
from core.models.msd import MSD_FEATURES

LABELS = ["A", "B", "C"]


@pytest.mark.parametrize("name,dim", [("cnn_msd", 306), ("crnn_msd", 128)])
def test_genre_models_on_the_trunk(name, dim):
    torch.manual_seed(0)
    m = build_model(name, LABELS, pretrained=False).eval()
    wave = torch.randn(2, MSD_FEATURES.window_samples) * 0.1
    lm = m.logmel(wave)
    assert lm.shape == (2, 1, 96, MSD_FEATURES.n_frames)
    p = m.predict_logmel(lm)
    assert p.probs.shape == (2, 3) and p.embedding.shape == (2, dim)
    np.testing.assert_allclose(p.probs.sum(1), 1.0, atol=1e-5)   # a distribution
    assert p.sigmoid.shape == (2, 3)
    # From precomputed trunk features: the same numbers.
    q = m.predict_trunk(m.trunk_features(lm))
    np.testing.assert_allclose(p.probs, q.probs, atol=1e-6)
    # The CRNN's GRU sees at least 12 steps per window (issue: ≥ 12).
    if name == "crnn_msd":
        assert m.window_steps >= 12 and len(p.window_starts) > 1
    # The frozen trunk is not trained and not saved.
    assert not any(p.requires_grad for p in m.trunk.parameters())
    assert not any(k.startswith("trunk.") for k in m.saved_state())


def test_trunk_is_shared_and_rebuilt_on_load(tmp_path):
    from core.models.artifacts import load_model, save_model, update_manifest

    torch.manual_seed(0)
    a = build_model("cnn_msd", LABELS, pretrained=False)
    b = build_model("crnn_msd", LABELS, pretrained=False)
    b.trunk.load_state_dict(a.trunk.state_dict())
    b.trunk_sha = b._trunk_digest()
    assert list(trunk_group({"x": a, "y": b}).values()) == [["x", "y"]]
    try:
        build_model("cnn_msd", LABELS)     # needs the wheel's weights
    except ArtifactError:
        pytest.skip("musicnn wheel not installed")
    save_model(build_model("cnn_msd", LABELS), tmp_path)
    update_manifest(tmp_path)
    loaded = load_model("cnn_msd", tmp_path)
    assert loaded.trunk_sha == build_model("crnn_msd", LABELS).trunk_sha
