"""core.baseline: hand-crafted features separate generated timbres."""

import numpy as np

from core.baseline import baseline_probs, handcrafted_features, train_baseline
from core.cache import LogMelCache
from core.config import FeatureConfig
from tests.conftest import synth, write_audio


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
