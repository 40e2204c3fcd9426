"""core.audio.melbank equals librosa's Slaney mel filterbank bit for bit,
and building a front-end no longer imports scipy.signal."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from core.audio.melbank import mel_filterbank, mel_frequencies
from core.config import FeatureConfig
from core.models.msd import MSD_FEATURES


@pytest.mark.parametrize("cfg", [FeatureConfig(), MSD_FEATURES,
                                 FeatureConfig(sample_rate=22_050, n_fft=2048, n_mels=128, f_min=30.0,
                                               f_max=8000.0)])
def test_filterbank_equals_librosa(cfg):
    librosa = pytest.importorskip("librosa")
    ours = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)
    ref = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.f_min,
                              fmax=cfg.f_max)
    assert ours.shape == (cfg.n_mels, 1 + cfg.n_fft // 2) and ours.dtype == np.float32
    assert np.array_equal(ours, ref)
    fmax = cfg.f_max or cfg.sample_rate / 2
    assert np.array_equal(mel_frequencies(cfg.n_mels, cfg.f_min, fmax),
                          librosa.mel_frequencies(n_mels=cfg.n_mels, fmin=cfg.f_min, fmax=fmax))


def test_front_end_does_not_import_scipy_signal():
    code = ("import sys; from core.audio.features import logmels; from core.config import FeatureConfig; "
            "import numpy as np; logmels(np.zeros(22050, np.float32), FeatureConfig()); "
            "print('scipy.signal' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
