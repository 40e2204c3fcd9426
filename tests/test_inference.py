"""core.models.inference: one decode, every model, window averaging, and the
one data path (the same log-mel on every path)."""

import numpy as np
import torch
from conftest import GENRES, synth, write_audio

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
    p = write_audio(tmp_path / "long.wav", np.concatenate([synth("tone", 40), synth("noise", 40)]))
    models = load_models(tiny_artifacts)
    one = analyse(p, models).predictions["crnn"].probs
    three = analyse(p, models, n_excerpts=3).predictions["crnn"].probs
    assert one.shape == three.shape == (1, 3)
    assert not np.allclose(one, three)


def test_every_path_hears_the_same_log_mel(tmp_path):
    """One 29.5 s clip (between the two feature settings' windows): the app's
    and CLI's analysis, the batch indexer and the log-mel cache (as training
    and evaluation read it) see the same log-mel bits for each model, and the
    analysis and the index give the same probabilities."""
    from core.audio.cache import LogMelCache, content_hash
    from core.catalog.pipeline import embed_paths
    from core.models import build_model
    from core.models.optimise import optimise_for_inference

    torch.manual_seed(0)
    models = {n: optimise_for_inference(build_model(n, list(GENRES), pretrained=False) if "msd" in n
                                        else build_model(n, list(GENRES)))
              for n in ("cnn", "cnn_msd")}
    path = write_audio(tmp_path / "clip.mp3", synth("tone", 29.5, sr=44_100) + synth("noise", 29.5, sr=44_100) * 0.1,
                       sr=44_100)
    a = analyse(path, models)
    [indexed] = embed_paths([path], models, workers=0, cache=tmp_path / "index_cache")
    assert indexed.error is None
    for name, m in models.items():
        stored = LogMelCache(m.cfg, tmp_path / "index_cache").get(content_hash(path))
        assert np.array_equal(a.logmels[name], stored.astype(np.float32)), name
        assert np.array_equal(a.logmels[name], LogMelCache(m.cfg, tmp_path / "train_cache").logmel(path)), name
        np.testing.assert_allclose(indexed.probs[name], a.predictions[name].probs[0], atol=1e-6, rtol=0)
        np.testing.assert_allclose(indexed.embedding[name], a.predictions[name].embedding[0], atol=1e-5, rtol=0)
