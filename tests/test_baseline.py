"""core.training.baseline: hand-crafted features separate generated timbres."""

import numpy as np
from conftest import synth, write_audio

from core.audio.cache import LogMelCache
from core.config import FeatureConfig
from core.training.baseline import baseline_probs, handcrafted_features, train_baseline


def test_features_and_classifier(tmp_path):
    cache = LogMelCache(FeatureConfig(), tmp_path / "c")
    paths, y = [], []
    for label, kind in enumerate(["tone", "noise", "clicks"]):
        for i in range(4):
            paths.append(write_audio(tmp_path / f"{kind}{i}.wav", synth(kind, 2.0, seed=i)))
            y.append(label)
    mels, errors = cache.logmels(paths)
    assert not any(errors)
    f = handcrafted_features(mels)
    assert f.shape == (12, 90) and np.isfinite(f).all()
    y = np.array(y)
    clf = train_baseline(f, y)
    p = baseline_probs(clf, f, 4)
    assert p.shape == (12, 4) and (p[:, 3] == 0).all()
    assert (p.argmax(1) == y).mean() == 1.0


def test_shipped_form_matches_sklearn_and_round_trips_through_json(tmp_path):
    """The JSON baseline (no pickle) gives sklearn's probabilities."""
    import json

    from core.config import FeatureConfig
    from core.training.baseline import BaselineClassifier, baseline_probs, handcrafted_features, train_baseline

    rng = np.random.default_rng(0)
    cfg = FeatureConfig()
    mels = rng.normal(0.5, 0.2, (30, cfg.n_mels, 64)).astype(np.float32)
    y = np.arange(30) % 3
    mels[y == 1, :20] += 0.5                      # something to learn
    clf = train_baseline(handcrafted_features(mels, cfg), y)
    shipped = BaselineClassifier.from_sklearn(clf, ["a", "b", "c", "d"], cfg)
    again = BaselineClassifier.from_dict(json.loads(json.dumps(shipped.to_dict())))
    want = baseline_probs(clf, handcrafted_features(mels, cfg), 4)
    np.testing.assert_allclose(again.predict_logmel(mels), want, atol=1e-9)
    assert np.all(want[:, 3] == 0)                # a genre absent from training gets 0
