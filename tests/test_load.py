"""core.audio.load: formats, resampling, windows, one excerpt per setting,
one-line errors for bad input: the hostile corpus (tests/hostile.py) and fuzzing."""

import io
import subprocess
import sys
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, synth, write_audio
from hostile import bytes_of, check
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import core.audio.load as audio
from core.audio.load import AudioError, load, load_full, load_windows, probe
from core.config import FeatureConfig

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


def test_seconds_heard_tell_a_short_file_from_a_window(tmp_path):
    """load_multi_heard: a file shorter than the window reports its own
    length (the window repeats it); a longer one reports the window, and
    also as a file object; the waves are load_multi's."""
    sr = 12_000
    short = write_audio(tmp_path / "short.wav", synth("tone", 2.5, sr=sr), sr)
    long = write_audio(tmp_path / "long.wav", synth("tone", CFG.window_seconds + 5, sr=sr), sr)
    waves, heard = audio.load_multi_heard(short, [CFG])
    assert abs(heard - 2.5) < 1e-3 and waves[0].shape == (1, CFG.window_samples)
    np.testing.assert_array_equal(waves[0], audio.load_multi(short, [CFG])[0])
    _, heard = audio.load_multi_heard(io.BytesIO(long.read_bytes()), [CFG])
    assert abs(heard - CFG.window_seconds) < 0.01
    # Two settings: the longest excerpt counts (each setting is fitted to its own window).
    longer = replace(CFG, n_frames=CFG.n_frames + 200)
    _, heard = audio.load_multi_heard(long, [CFG, longer])
    assert abs(heard - longer.window_seconds) < 0.01


def test_an_empty_file_object_is_empty_not_unreadable():
    f = io.BytesIO(b"")
    f.name = "upload.mp3"
    with pytest.raises(AudioError, match="upload.mp3: file is empty"):
        load(f, CFG)


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


# --------------------------------------------------------------------------- hostile corpus


def test_every_case_through_the_loader(corpus):
    for case in corpus:
        out = check(case, lambda: load(case.path))
        if not isinstance(out, AudioError):
            assert out.shape == (CFG.window_samples,) and out.dtype == np.float32
            assert np.all(np.isfinite(out)) and np.abs(out).max() <= 1.0
            assert np.abs(out).max() > 0.01  # loudness-normalised, not silent


def test_every_case_as_uploaded_bytes(corpus):
    """The app hands the loader bytes, not paths; same outcome, named upload."""
    for case in corpus:
        out = check(case, lambda: load(case.path.read_bytes()))
        if isinstance(out, AudioError):
            assert str(out).startswith("uploaded audio: ")


def test_multichannel_and_extreme_rates_are_downmixed_and_resampled(corpus):
    by = {c.name: c for c in corpus}
    ref = load(by["rate_8kHz.wav"].path)
    for name in ("rate_192kHz.wav", "six_channels.wav"):
        y = load(by[name].path)
        assert y.shape == ref.shape
    # The same harmonic tone at 8 kHz and 192 kHz has its energy at the same
    # frequency after resampling to the model rate.
    spec = lambda y: np.abs(np.fft.rfft(y[: CFG.sample_rate]))  # noqa: E731
    peak8 = np.argmax(spec(ref))
    peak192 = np.argmax(spec(load(by["rate_192kHz.wav"].path)))
    assert abs(int(peak8) - int(peak192)) <= 2


def test_one_hour_file_decodes_only_the_excerpts(corpus, monkeypatch):
    hour = next(c.path for c in corpus if c.name == "one_hour.wav")
    assert sf.info(str(hour)).duration == pytest.approx(3600.0)
    decoded: list[int] = []
    real_read = audio._read

    def counting_read(f, start, frames, name):
        y = real_read(f, start, frames, name)
        decoded.append(y.size)
        return y

    monkeypatch.setattr(audio, "_read", counting_read)
    tracemalloc.start()
    try:
        y = load(hour)
        _, peak_one = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        w = load_windows(hour, n_windows=3)
        _, peak_three = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert y.shape == (CFG.window_samples,) and w.shape == (3, CFG.window_samples)
    # One 30 s excerpt, then three, at 8 kHz: not the 28.8 M samples of the hour.
    need = int(np.ceil(CFG.window_seconds * 8_000)) + 1
    assert decoded == [need] * 4
    # Decoding the whole hour as float32 would take 115 MB.
    assert peak_one < 20e6 and peak_three < 40e6, (peak_one, peak_three)


# --------------------------------------------------------------------------- fuzzing


def _seed_files() -> list[bytes]:
    y = synth("tone", 1.5)
    return [bytes_of(y, "WAV", subtype="PCM_16"), bytes_of(y, "WAV", subtype="FLOAT"),
            bytes_of(y, "MP3"), bytes_of(y, "FLAC"), bytes_of(y, "OGG")]


SEEDS = _seed_files()
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _only_audio_error(data: bytes) -> None:
    for fn in (audio.probe, load):
        try:
            out = fn(data)
        except AudioError as exc:
            assert "\n" not in str(exc)
            continue
        if fn is load:
            assert out.shape == (CFG.window_samples,) and np.all(np.isfinite(out))


@FUZZ
@given(st.binary(min_size=0, max_size=4096))
def test_fuzz_random_bytes(data):
    _only_audio_error(data)


@FUZZ
@given(st.sampled_from(range(len(SEEDS))),
       st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=12),
       st.one_of(st.none(), st.integers(0, 10**6)))
def test_fuzz_mutated_valid_files(which, flips, cut):
    data = bytearray(SEEDS[which])
    for pos, value in flips:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    _only_audio_error(bytes(data))


@FUZZ
@given(st.sampled_from(range(len(SEEDS))), st.integers(0, 200), st.binary(min_size=1, max_size=64))
def test_fuzz_header_splices(which, pos, chunk):
    """Overwrite bytes in the header region, where the parsers are."""
    data = bytearray(SEEDS[which])
    data[pos: pos + len(chunk)] = chunk
    _only_audio_error(bytes(data))


def test_quiet_decoder_logs_silences_native_stderr_only():
    """libmpg123 writes straight to fd 2; the CLI keeps its own lines."""
    code = ("import os, sys\n"
            "from core.audio.load import quiet_decoder_logs\n"
            "with quiet_decoder_logs():\n"
            "    os.write(2, b'Note: native decoder noise\\n')\n"
            "    print('error: mine', file=sys.stderr)\n"
            "os.write(2, b'restored\\n')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stderr == "error: mine\nrestored\n"
