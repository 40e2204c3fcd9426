"""core.audio.features: log-mel front-end against librosa, window helpers."""

import librosa
import numpy as np
import torch
from conftest import synth

from core.audio.features import LogMelFrontEnd, logmels, normalise_level, random_chunks, split_windows, window_starts
from core.config import FeatureConfig

CFG = FeatureConfig()


def test_logmel_matches_librosa():
    y = np.resize(synth("chirp", 5.0, sr=CFG.sample_rate), CFG.window_samples).astype(np.float32)
    ours = LogMelFrontEnd(CFG)(torch.from_numpy(y))[0, 0].numpy()
    ref = librosa.feature.melspectrogram(y=y, sr=CFG.sample_rate, n_fft=CFG.n_fft,
                                         hop_length=CFG.hop_length, n_mels=CFG.n_mels,
                                         window="hann", center=True, pad_mode="constant", power=2.0)
    ref_db = (10 * np.log10(np.maximum(ref, 1e-10)) + 40) / 40
    assert ours.shape == (96, 1366)
    # float32 STFT vs float64 librosa: within 0.4 dB everywhere (1e-2 scaled units)
    np.testing.assert_allclose(ours, ref_db[:, :1366], atol=1e-2)
    assert np.median(np.abs(ours - ref_db[:, :1366])) < 1e-4


def test_window_starts_cover_the_track():
    s = window_starts(1366, 256, 128)
    assert s[0] == 0 and s[-1] == 1366 - 256
    assert all(b - a <= 128 for a, b in zip(s, s[1:]))
    assert window_starts(100, 256, 128) == [0]


def test_split_windows_and_random_chunks():
    x = torch.arange(2 * 96 * 600, dtype=torch.float32).reshape(2, 1, 96, 600)
    wins, starts = split_windows(x, 256, 128)
    assert wins.shape == (2 * len(starts), 1, 96, 256)
    torch.testing.assert_close(wins[1], x[0, :, :, starts[1]: starts[1] + 256])
    short, _ = split_windows(x[..., :100], 256, 128)
    assert short.shape[-1] == 256
    c = random_chunks(x, 64, torch.Generator().manual_seed(0))
    assert c.shape == (2, 1, 96, 64)


def test_level_normalisation_undoes_a_gain_on_the_waveform_per_clip():
    """normalise_level on the log-mel of a clip 20 dB quieter and 6 dB louder gives
    the clip's own normalised log-mel; each clip's mean mel power becomes
    level_db; None leaves the log-mel as it is; a dB front-end is refused."""
    from dataclasses import replace

    import pytest

    from core.models.msd import MSD_FEATURES
    cfg = replace(MSD_FEATURES, n_frames=200)
    y = synth("noise", cfg.window_samples / cfg.sample_rate + 0.1, cfg.sample_rate)[: cfg.window_samples]
    y = 0.1 * y / np.sqrt(np.mean(y ** 2))                                    # −20 dBFS RMS
    mels = logmels(np.stack([y, 0.1 * y, 2.0 * y]), cfg)                     # (3, 1, 96, 200)
    out = normalise_level(mels, cfg)
    assert out.shape == mels.shape and out.dtype == mels.dtype
    # Equal up to the float16 rounding of the stored log-mel and of musicnn's power (values ≈ 3.5).
    for other in (out[1], out[2]):
        assert (other - out[0]).abs().max() < 1e-2 and (other - out[0]).abs().mean() < 1e-3
    assert (mels[1] - mels[0]).abs().mean() > 0.5                            # the gain did change the input
    power = (10.0 ** out.double() - 1.0) / cfg.log_c
    assert np.allclose(10 * np.log10(power.mean(dim=(-2, -1)).numpy()), cfg.level_db, atol=0.01)
    assert normalise_level(mels, replace(cfg, level_db=None)) is mels
    with pytest.raises(ValueError, match="log1p"):
        normalise_level(mels, FeatureConfig(level_db=-3.0))
