"""core.audio.load: formats, resampling, windows, and one-line errors for bad input."""

import io

import numpy as np
import pytest
import soundfile as sf

from core.audio.load import AudioError, load, load_full, load_windows, probe
from core.config import FeatureConfig
from tests.conftest import synth, write_audio

CFG = FeatureConfig()


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
def test_formats_load_to_model_rate_and_window(tmp_path, ext):
    p = write_audio(tmp_path / f"x.{ext}", synth("tone", 3.0))
    y = load(p, CFG)
    assert y.dtype == np.float32
    assert y.shape == (CFG.window_samples,)
    assert np.abs(y).max() <= 1.0
    # Loudness-normalised to the target RMS (short clip is repeated, so RMS holds).
    rms_db = 20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    assert abs(rms_db - CFG.target_rms_db) < 1.5


def test_resampling_keeps_pitch(tmp_path):
    sr = 44_100
    t = np.arange(sr * 2) / sr
    p = write_audio(tmp_path / "a440.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    y = load(p, CFG)
    spec = np.abs(np.fft.rfft(y[: CFG.sample_rate]))
    peak_hz = np.argmax(spec) * CFG.sample_rate / CFG.sample_rate
    assert abs(peak_hz - 440) <= 2


def test_multichannel_is_downmixed(tmp_path):
    p = write_audio(tmp_path / "six.wav", synth("tone", 2.0, channels=6))
    assert probe(p).channels == 6
    assert load(p, CFG).ndim == 1


def test_bytes_and_file_objects(tone_wav):
    data = tone_wav.read_bytes()
    a = load(data, CFG)
    b = load(io.BytesIO(data), CFG)
    np.testing.assert_allclose(a, b)


def test_long_track_centre_and_windows(tmp_path):
    # 40 s: a step in pitch at 20 s lets us see which excerpt was taken.
    sr = 12_000
    t = np.arange(sr * 40) / sr
    y = np.where(t < 20, np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 900 * t)) * 0.3
    p = write_audio(tmp_path / "long.wav", y.astype(np.float32), sr)
    start = load(p, CFG, position="start")
    head = load_full(p, sr)[:1000]
    assert np.allclose(start[:1000], head * (start[:1000].std() / head.std()), atol=1e-2)
    wins = load_windows(p, CFG, n_windows=3)
    assert wins.shape == (3, CFG.window_samples)
    assert not np.allclose(wins[0], wins[-1])


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "empty.mp3", "empty"),
    (lambda d: d / "text.mp3", "not a readable audio file"),
    (lambda d: d / "short.wav", "too short"),
    (lambda d: d / "silent.wav", "silent"),
    (lambda d: d / "nan.wav", "NaN"),
    (lambda d: d / "missing.wav", "not found"),
])
def test_bad_input_one_line_error(tmp_path, make, message):
    (tmp_path / "empty.mp3").write_bytes(b"")
    (tmp_path / "text.mp3").write_text("this is not audio\n" * 50)
    write_audio(tmp_path / "short.wav", synth("tone", 0.3))
    write_audio(tmp_path / "silent.wav", np.zeros(22_050 * 2, np.float32))
    bad = synth("tone", 2.0)
    bad[100] = np.nan
    sf.write(tmp_path / "nan.wav", bad, 22_050, subtype="FLOAT")
    with pytest.raises(AudioError) as err:
        load(make(tmp_path), CFG)
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_truncated_mp3_is_error_or_short_excerpt(tmp_path):
    p = write_audio(tmp_path / "full.mp3", synth("noise", 5.0))
    data = p.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 3])
    try:
        y = load(cut, CFG)
    except AudioError as exc:
        assert "\n" not in str(exc)
    else:
        assert y.shape == (CFG.window_samples,)


@pytest.mark.parametrize("seconds", [2.0, 29.5, 35.3])
@pytest.mark.parametrize("ext", ["wav", "mp3"])
@pytest.mark.parametrize("seek", [False, True])
def test_each_setting_gets_its_own_excerpt_whatever_is_decoded_with_it(tmp_path, monkeypatch, seconds, ext, seek):
    """load_multi([a, b]) gives each config exactly what load(path, config) does,
    so the cache holds one value per file and config, whoever computed it
    (29.5 s lies between the 12 kHz and the 16 kHz window)."""
    import core.audio.load as audio
    from core.audio.load import load_multi
    from core.models.msd import MSD_FEATURES

    if seek:   # the path long files take: seek to each excerpt instead of decoding the whole file
        monkeypatch.setattr(audio, "_WHOLE_UP_TO_SECONDS", 0.0)
    sr = 44_100
    p = write_audio(tmp_path / f"x.{ext}", synth("tone", seconds, sr=sr) + 0.1 * synth("noise", seconds, sr=sr), sr)
    for crop in ("centre", "start"):
        cfgs = [FeatureConfig(crop=crop), MSD_FEATURES]
        both = load_multi(p, cfgs)
        for cfg, wave in zip(cfgs, both):
            assert wave.shape == (1, cfg.window_samples)
            assert np.array_equal(wave[0], load(p, cfg)), (crop, cfg.sample_rate)
        assert np.array_equal(load_multi(p, cfgs[::-1])[0], both[1])
