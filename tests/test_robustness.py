"""The robustness report (core.training.robustness): fixed degradations that keep
length and rate, the upload path on every version, and the model card's table."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from core.audio.augment import AUGMENT_RATE
from core.training.robustness import CLEAN, DEGRADATIONS, degraded_wavs, robustness, robustness_lines


def _music(seconds: float = 4.0) -> np.ndarray:
    t = np.arange(int(seconds * AUGMENT_RATE)) / AUGMENT_RATE
    y = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate((220.0, 440.0, 1320.0, 5000.0)))
    return (0.2 * y / np.abs(y).max()).astype(np.float32)


def _read(wav: bytes) -> np.ndarray:
    return sf.read(io.BytesIO(wav), dtype="float32")[0]


def test_each_degradation_keeps_length_and_rate_is_seeded_and_changes_the_audio():
    y = _music()
    a, b = degraded_wavs(y, seed=3), degraded_wavs(y, seed=3)
    assert list(a) == [CLEAN] + [d.name for d in DEGRADATIONS]
    for k in a:                                              # the same samples in every run
        assert np.array_equal(_read(a[k]), _read(b[k])), k
    clean, sr = sf.read(io.BytesIO(a[CLEAN]), dtype="float32")
    assert sr == AUGMENT_RATE and np.allclose(clean, y)
    for d in DEGRADATIONS:
        z, sr = sf.read(io.BytesIO(a[d.name]), dtype="float32")
        assert sr == AUGMENT_RATE and z.shape == y.shape, d.name
        assert not np.allclose(z, y, atol=1e-3), d.name
    noisy = DEGRADATIONS[3].name                             # noise follows the seed
    assert not np.array_equal(_read(degraded_wavs(y, seed=4)[noisy]), _read(a[noisy]))


def test_report_runs_the_upload_path_and_a_loudness_normalised_model_ignores_gain(tiny_dataset, tiny_artifacts):
    """On the fixture models (front-end normalised to -20 dBFS RMS) a 20 dB quieter
    clip gives the same top genre as the clean one; the clean row agrees with itself."""
    rec = robustness([tiny_dataset], "test", tiny_artifacts, n_boot=50)
    assert rec["n_tracks"] == 3 and rec["unreadable"] == [] and set(rec["models"]) == {"cnn", "crnn"}
    for rows in rec["models"].values():
        assert list(rows) == rec["degradations"]
        assert rows[CLEAN]["agreement"] == 1.0 and rows[CLEAN]["delta_accuracy"] == 0.0
        assert rows["20 dB quieter"]["agreement"] == 1.0
        for r in rows.values():
            assert 0.0 <= r["accuracy"] <= 1.0 and r["ci95"][0] <= r["delta_accuracy"] <= r["ci95"][1]
    table = "\n".join(robustness_lines(rec))
    assert "## Robustness to degraded audio (test split, 3 clips)" in table
    assert "| 20 dB quieter | 0." in table and robustness_lines(None) == []


def test_a_split_the_data_lacks_is_one_clear_line(tiny_dataset, tiny_artifacts, capsys):
    from core.cli.main import main
    assert main(["robustness", "--data", str(tiny_dataset), "--artifacts", str(tiny_artifacts),
                 "--split", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no tracks in split 'nope'")


def test_limit_takes_the_first_clips_only_and_no_models_is_an_error(tiny_dataset, tiny_artifacts, tmp_path):
    assert robustness([tiny_dataset], "test", tiny_artifacts, limit=1, n_boot=10)["n_tracks"] == 1
    with pytest.raises(FileNotFoundError, match="no trained models"):
        robustness([tiny_dataset], "test", tmp_path)
