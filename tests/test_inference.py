"""core.models.inference: one decode, every model, window averaging."""

import numpy as np

from core.models.artifacts import load_models
from core.models.inference import analyse


def test_analyse_gives_both_models(tiny_artifacts, tone_mp3):
    models = load_models(tiny_artifacts)
    a = analyse(tone_mp3, models)
    assert set(a.predictions) == {"cnn", "crnn"}
    assert a.logmel.shape == (96, 1366)
    probs = a.probabilities("crnn")
    assert set(probs) == {"Tones", "Noise", "Clicks"}
    g, p = a.top("cnn")
    assert p == max(a.probabilities("cnn").values())
    w = a.predictions["crnn"].window_probs
    assert w.shape[0] == 1 and w.shape[1] == len(a.predictions["crnn"].window_starts)


def test_several_excerpts_are_averaged(tiny_artifacts, tmp_path):
    from tests.conftest import synth, write_audio
    p = write_audio(tmp_path / "long.wav", np.concatenate([synth("tone", 40), synth("noise", 40)]))
    models = load_models(tiny_artifacts)
    one = analyse(p, models).predictions["crnn"].probs
    three = analyse(p, models, n_excerpts=3).predictions["crnn"].probs
    assert one.shape == three.shape == (1, 3)
    assert not np.allclose(one, three)
