"""The waveform augmentation chain (core.audio.augment): deterministic under a
seed, length and rate kept by every step, and each step doing what it says."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synth

from core.audio import augment as A
from core.errors import GenreError

SR = 22_050


def _band_energy(y: np.ndarray, sr: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(y.size, 1 / sr)
    return float(spec[(f >= lo) & (f < hi)].sum())


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    """Tone plus noise, 4 s: energy in every band."""
    return (synth("tone", 4.0, SR, seed=1) + 0.05 * synth("noise", 4.0, SR, seed=2)).astype(np.float32)


def test_same_seed_same_output_and_different_seeds_differ(music):
    cfg = A.AugmentConfig(p_codec=1.0, p_reverb=1.0, p_noise=1.0, p_resample=1.0)
    a = A.augment_wave(music, SR, cfg, rng=7)
    b = A.augment_wave(music, SR, cfg, rng=np.random.default_rng(7))
    c = A.augment_wave(music, SR, cfg, rng=8)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a, music)


@pytest.mark.parametrize("step", [
    lambda y, sr, r: A.reencode(y, sr, "mp3", 64),
    lambda y, sr, r: A.reencode(y, sr, "aac", 128),
    lambda y, sr, r: A.resample_through(y, sr, 16_000),
    lambda y, sr, r: A.resample_through(y, sr, 44_100),
    lambda y, sr, r: A.eq_tilt(y, sr, 3.0),
    lambda y, sr, r: A.band_limit(y, sr, 100.0, 4000.0),
    lambda y, sr, r: A.gain_db(y, -6.0),
    lambda y, sr, r: A.add_noise(y, 30.0, r),
    lambda y, sr, r: A.reverb(y, sr, 0.4, 0.3, r),
    lambda y, sr, r: A.pseudo_stereo_downmix(y, sr, 1.0),
    lambda y, sr, r: A.augment_wave(y, sr, rng=r),
], ids=["mp3", "aac", "via16k", "via44k", "tilt", "band", "gain", "noise", "reverb", "downmix", "chain"])
@pytest.mark.parametrize("sr", [12_000, SR])
def test_every_step_keeps_length_dtype_and_changes_the_signal(step, sr, music):
    y = music[: 3 * sr] if sr != SR else music
    out = step(y, sr, np.random.default_rng(0))
    assert out.shape == y.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert not np.array_equal(out, y)


def test_reencoding_removes_the_band_above_the_codec_cutoff():
    sr = 44_100
    y = 0.1 * synth("noise", 3.0, sr, seed=3).astype(np.float32)
    for codec in ("mp3", "aac"):
        z = A.reencode(y, sr, codec, 64)
        # 64 kbit/s encoders low-pass near 17 kHz (measured: mp3 16.5, aac 17); the band below stays.
        assert _band_energy(z, sr, 18_000, 22_050) < 0.01 * _band_energy(y, sr, 18_000, 22_050)
        assert _band_energy(z, sr, 200, 4_000) > 0.5 * _band_energy(y, sr, 200, 4_000)


def test_reencoding_stays_aligned_with_the_input(music):
    for codec in ("mp3", "aac"):
        z = A.reencode(music, SR, codec, 192)
        assert np.corrcoef(music, z)[0, 1] > 0.9   # priming samples removed


def test_band_limit_and_tilt_move_energy_where_they_say(music):
    lim = A.band_limit(music, SR, 0.0, 3000.0)
    assert _band_energy(lim, SR, 6000, 11025) < 0.01 * _band_energy(music, SR, 6000, 11025)
    up = A.eq_tilt(music, SR, 3.0)
    hi_gain = _band_energy(up, SR, 4000, 8000) / _band_energy(music, SR, 4000, 8000)
    lo_gain = _band_energy(up, SR, 60, 250) / _band_energy(music, SR, 60, 250)
    assert hi_gain > 2.0 > 0.5 > lo_gain


def test_resampling_through_a_low_rate_drops_its_upper_band(music):
    z = A.resample_through(music, SR, 16_000)
    assert _band_energy(z, SR, 8500, 11025) < 0.01 * _band_energy(music, SR, 8500, 11025)


def test_noise_level_and_gain():
    y = 0.1 * synth("tone", 2.0, SR).astype(np.float32)
    n = A.add_noise(y, 20.0, np.random.default_rng(0)) - y
    snr = 20 * np.log10(np.sqrt(np.mean(y ** 2)) / np.sqrt(np.mean(n ** 2)))
    assert snr == pytest.approx(20.0, abs=0.1)
    assert np.allclose(A.gain_db(y, 20.0), 10 * y, atol=1e-6)


def test_downmix_of_channels_is_their_mean():
    x = np.stack([np.ones(10, np.float32), -np.ones(10, np.float32)])
    assert np.allclose(A.downmix(x), 0)
    assert np.array_equal(A.downmix(x[0]), x[0])


def test_bad_input_raises_a_project_error(music):
    with pytest.raises(GenreError):
        A.reencode(music, SR, "flac-ish", 64)
    with pytest.raises(GenreError):
        A.augment_wave(np.zeros((2, 10), np.float32), SR)
    with pytest.raises(GenreError):
        A.augment_wave(np.zeros(0, np.float32), SR)
    with pytest.raises(GenreError):
        A.downmix(np.zeros((2, 2, 2)))


# -- the training hook: banks of augmented log-mels ---------------------------

def test_augmented_bank_is_seeded_cached_and_differs_from_the_clean_log_mel(tmp_path):
    import soundfile as sf

    from core.audio.cache import compute_logmel
    from core.config import FeatureConfig
    from core.datasets import Track
    from core.training import wave_augment as W

    feat = FeatureConfig(n_frames=256)
    tracks = []
    for i, kind in enumerate(("tone", "chirp")):
        p = tmp_path / f"{kind}.wav"
        sf.write(p, synth(kind, 6.0, SR, seed=i), SR)
        tracks.append(Track(track_id=kind, path=p, genre="Rock"))
    cfg = A.AugmentConfig(p_codec=1.0, p_noise=1.0)
    bank = W.augmented_bank(tracks, feat, 2, cfg, seed=3, cache_root=tmp_path / "logmel")
    assert bank.shape == (2, 2, feat.n_mels, feat.n_frames)
    assert len(list((tmp_path / "wave_augment").rglob("*.npy"))) == 4
    again = W.augmented_bank(tracks[::-1], feat, 2, cfg, seed=3, cache_root=tmp_path / "other")
    assert np.array_equal(bank, again[::-1])             # order-free, recomputed equal
    assert not np.array_equal(bank[0, 0], bank[0, 1])    # copies differ
    clean = compute_logmel(tracks[0].path, feat)
    assert not np.allclose(bank[0, 0], clean, atol=1e-2)


def test_mix_batch_swaps_items_with_probability_p():
    from core.training.wave_augment import mix_batch

    clean = np.zeros((4, 2, 3), np.float16)
    bank = np.stack([np.full((2, 2, 3), i + 1, np.float16) for i in range(4)])
    idx = np.array([3, 1, 1])
    rng = np.random.default_rng(0)
    assert np.array_equal(mix_batch(clean, bank, idx, 0.0, rng), clean[idx])
    swapped = mix_batch(clean, bank, idx, 1.0, rng)
    assert swapped[:, 0, 0].tolist() == [4, 2, 2]
    assert clean.max() == 0   # the clean log-mels are untouched
