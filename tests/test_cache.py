"""core.audio.cache: content-addressed log-mel cache."""

import dataclasses

import numpy as np
from conftest import synth, write_audio

from core.audio.cache import LogMelCache, content_hash
from core.audio.features import LOGMEL_DTYPE, logmels
from core.audio.load import load
from core.config import FeatureConfig
from core.models.msd import MSD_FEATURES


def test_cache_hit_skips_decoding(tmp_path, tone_wav, monkeypatch):
    cache = LogMelCache(FeatureConfig(), tmp_path / "c")
    first = cache.logmel(tone_wav)
    assert first.shape == (96, 1366)
    calls = []
    monkeypatch.setattr(cache, "compute", lambda src: calls.append(src))
    second = cache.logmel(tone_wav)
    assert calls == []                                   # served from disk
    np.testing.assert_allclose(first, second, atol=2e-3)  # float16 storage
    assert first.dtype == second.dtype == np.float32
    assert np.array_equal(first, second)                 # and bit for bit what the miss returned


def test_hit_equals_miss_bit_for_bit_on_every_path(tmp_path):
    """One file, both feature settings: the miss (computed), the hit (read
    back), the batch call and a fresh computation are the same bits."""
    path = write_audio(tmp_path / "noise.wav", synth("noise", 4.0, seed=3) + synth("tone", 4.0))
    for cfg in (FeatureConfig(), MSD_FEATURES):
        cache = LogMelCache(cfg, tmp_path / "c")
        miss = cache.logmel(path)
        hit = cache.logmel(path)
        assert np.array_equal(miss.view(np.uint32), hit.view(np.uint32))
        batch, errors = cache.logmels([path])
        assert errors == [None] and batch.dtype == LOGMEL_DTYPE
        assert np.array_equal(batch[0].astype(np.float32), miss)
        fresh = logmels(load(path, cfg), cfg)[0, 0].numpy()
        assert np.array_equal(fresh, miss)
        # The values are exact at the storage precision: storing loses nothing.
        assert np.array_equal(miss.astype(LOGMEL_DTYPE).astype(np.float32), miss)
        assert miss.std() > 0


def test_key_changes_with_feature_config(tmp_path):
    a = LogMelCache(FeatureConfig(), tmp_path)
    b = LogMelCache(FeatureConfig(n_fft=1024), tmp_path)
    assert a.root != b.root
    assert FeatureConfig(chunk_frames=100).key() == FeatureConfig().key()   # chunking does not change mels


def _changed(value):
    if isinstance(value, bool):
        return not value
    if value is None:
        return 1.0
    if isinstance(value, str):
        return {"centre": "start", "db": "log1p"}.get(value, value + "x")
    return value * 2 + 1


def test_key_covers_every_setting_that_changes_the_values():
    """Only the windowing of inference (chunk and hop) and a model's level step
    after the cache (``level_db``, which input_key covers) leave a cache entry valid."""
    base = FeatureConfig()
    for f in dataclasses.fields(FeatureConfig):
        other = dataclasses.replace(base, **{f.name: _changed(getattr(base, f.name))})
        same = f.name in ("chunk_frames", "window_hop_frames", "level_db")
        assert (other.key() == base.key()) == same, f.name
        assert (other.input_key() == base.input_key()) == (f.name in ("chunk_frames", "window_hop_frames")), f.name


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
