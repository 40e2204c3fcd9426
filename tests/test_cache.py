"""core.audio.cache: content-addressed log-mel cache."""

import numpy as np

from core.audio.cache import LogMelCache, content_hash
from core.config import FeatureConfig
from tests.conftest import synth, write_audio


def test_cache_hit_skips_decoding(tmp_path, tone_wav, monkeypatch):
    cache = LogMelCache(FeatureConfig(), tmp_path / "c")
    first = cache.logmel(tone_wav)
    assert first.shape == (96, 1366)
    calls = []
    monkeypatch.setattr(cache, "compute", lambda src: calls.append(src))
    second = cache.logmel(tone_wav)
    assert calls == []                                   # served from disk
    np.testing.assert_allclose(first, second, atol=2e-3)  # float16 storage


def test_key_changes_with_feature_config(tmp_path):
    a = LogMelCache(FeatureConfig(), tmp_path)
    b = LogMelCache(FeatureConfig(n_fft=1024), tmp_path)
    assert a.root != b.root
    assert FeatureConfig(chunk_frames=100).key() == FeatureConfig().key()   # chunking does not change mels


def test_batch_reports_errors_per_file(tmp_path):
    good = write_audio(tmp_path / "good.wav", synth("noise", 2.0))
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"nope")
    cache = LogMelCache(FeatureConfig(), tmp_path / "c")
    seen = []
    mels, errors = cache.logmels([good, bad], progress=lambda d, t: seen.append((d, t)))
    assert errors[0] is None and "bad.mp3" in errors[1]
    assert mels[0].astype(np.float32).std() > 0 and seen[-1] == (2, 2)


def test_damaged_entry_is_recomputed(tmp_path, tone_wav):
    cache = LogMelCache(FeatureConfig(), tmp_path)
    cache.logmel(tone_wav)
    entry = cache.path_for(content_hash(tone_wav))
    entry.write_bytes(b"garbage")
    assert cache.logmel(tone_wav).shape == (96, 1366)
