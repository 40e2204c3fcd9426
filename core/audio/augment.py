"""Waveform augmentation toward other recording sources.

Thin pure functions, each ``(samples,)`` float32 at ``sr`` in → the same
length and rate out, and :func:`augment_wave`, which chains them with the
draws of :class:`AugmentConfig` from one ``numpy`` Generator: the same seed
gives the same samples. The steps imitate what differs between sources:
lossy re-encoding (MP3 / AAC, 64–192 kbit/s), a trip through another sample
rate, EQ tilt and band-limiting, loudness, light noise, light reverb and a
mono downmix of a (pseudo-)stereo pair.

Training applies the chain to the waveform before the log-mel, for training
data only: the from-scratch models' batches (:mod:`core.training.wave_augment`)
and the frozen trunks' augmented copies (:mod:`core.models.trunk_cache`), both
through :func:`augmented_copy`.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Callable, TypeVar

import av
import numpy as np
import soxr
from scipy.signal import fftconvolve

from core.errors import GenreError

T = TypeVar("T")

# The rate the chain runs at: the development sources' own rate, so codecs and
# band limits act on the band a listener hears, above the models' 12 / 16 kHz.
AUGMENT_RATE = 22_050
CODECS = {"mp3": ("mp3", "libmp3lame"), "aac": ("adts", "aac")}
_MAX_LAG = 4096          # codec priming samples searched for when re-aligning


class AugmentError(GenreError, ValueError):
    """An augmentation asked for with settings it cannot apply."""


def _check(y: np.ndarray, sr: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise AugmentError(f"expected a non-empty mono waveform (samples,), got shape {y.shape}")
    if sr <= 0:
        raise AugmentError(f"sample rate must be positive, got {sr}")
    return y


def _fit_length(z: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad ``z`` to ``n`` samples (float32)."""
    out = np.zeros(n, np.float32)
    out[: min(n, z.size)] = z[:n]
    return out


def _lag(ref: np.ndarray, z: np.ndarray) -> int:
    """Delay (samples, 0…_MAX_LAG) of ``z`` against ``ref``, by cross-correlation."""
    m = min(ref.size, z.size, 8 * _MAX_LAG)
    n = 1 << int(np.ceil(np.log2(2 * m)))
    corr = np.fft.irfft(np.fft.rfft(z[:m], n) * np.conj(np.fft.rfft(ref[:m], n)), n)
    return int(np.argmax(corr[: _MAX_LAG + 1]))


def reencode(y: np.ndarray, sr: int, codec: str = "mp3", kbps: int = 128) -> np.ndarray:
    """Lossy round trip: encode ``(samples,)`` to an in-memory ``codec`` stream
    ("mp3" or "aac") at ``kbps`` kbit/s with PyAV and decode it back,
    realigned (encoder priming removed) to the input's length and rate."""
    y = _check(y, sr)
    if codec not in CODECS:
        raise AugmentError(f"unknown codec {codec!r}; choose one of {sorted(CODECS)}")
    fmt, encoder = CODECS[codec]
    buf = io.BytesIO()
    peak = max(1.0, float(np.abs(y).max()))   # codecs take [-1, 1]; undone after decoding
    x = (y / peak).astype(np.float32)
    try:
        with av.open(buf, "w", format=fmt) as out:
            st = out.add_stream(encoder, rate=sr, layout="mono")
            st.bit_rate = int(kbps) * 1000
            step = st.codec_context.frame_size or 1152
            for i in range(0, x.size, step):
                frame = av.AudioFrame.from_ndarray(x[None, i: i + step], format="flt", layout="mono")
                frame.sample_rate, frame.pts = sr, i
                for p in st.encode(frame):
                    out.mux(p)
            for p in st.encode(None):
                out.mux(p)
        buf.seek(0)
        parts = []
        with av.open(buf, "r") as inp:
            rs = av.AudioResampler(format="flt", layout="mono", rate=sr)
            for f in inp.decode(inp.streams.audio[0]):
                parts.extend(g.to_ndarray()[0] for g in rs.resample(f))
            parts.extend(g.to_ndarray()[0] for g in rs.resample(None))
    except av.FFmpegError as exc:
        raise AugmentError(f"{codec} at {kbps} kbit/s and {sr} Hz failed ({exc})") from None
    z = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    z = z[_lag(x, z):] if z.size else z
    return _fit_length(z * peak, y.size)


def resample_through(y: np.ndarray, sr: int, via: int) -> np.ndarray:
    """Resample to ``via`` Hz and back (a trip through another rate's band)."""
    y = _check(y, sr)
    if via == sr:
        return y.copy()
    z = soxr.resample(soxr.resample(y, sr, via, quality="HQ"), via, sr, quality="HQ")
    return _fit_length(np.asarray(z, np.float32), y.size)


def _spectral_gain(y: np.ndarray, sr: int, gain_of_hz) -> np.ndarray:
    spec = np.fft.rfft(y)
    f = np.fft.rfftfreq(y.size, 1.0 / sr)
    return np.fft.irfft(spec * gain_of_hz(f), y.size).astype(np.float32)


def eq_tilt(y: np.ndarray, sr: int, db_per_octave: float, pivot_hz: float = 1000.0) -> np.ndarray:
    """Spectral slope of ``db_per_octave`` around ``pivot_hz`` (±12 dB at most)."""
    y = _check(y, sr)

    def gain(f):
        octaves = np.log2(np.maximum(f, 20.0) / pivot_hz)
        return 10 ** (np.clip(db_per_octave * octaves, -12.0, 12.0) / 20)
    return _spectral_gain(y, sr, gain)


def band_limit(y: np.ndarray, sr: int, low_hz: float = 0.0, high_hz: float | None = None,
               order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth-shaped band-pass (magnitude applied in the
    frequency domain): nothing below ``low_hz`` or above ``high_hz`` survives."""
    y = _check(y, sr)
    high = sr / 2 if high_hz is None else min(high_hz, sr / 2)

    def gain(f):
        g = 1.0 / np.sqrt(1.0 + (f / high) ** (2 * order))
        if low_hz > 0:
            g = g / np.sqrt(1.0 + (low_hz / np.maximum(f, 1e-3)) ** (2 * order))
        return g
    return _spectral_gain(y, sr, gain)


def gain_db(y: np.ndarray, db: float) -> np.ndarray:
    """Loudness change by ``db`` decibels."""
    return (np.asarray(y, np.float32) * np.float32(10 ** (db / 20))).astype(np.float32)


def add_noise(y: np.ndarray, snr_db: float, rng: np.random.Generator, pink: bool = True) -> np.ndarray:
    """Add (pink or white) noise ``snr_db`` below the signal's RMS."""
    y = _check(y, 1)
    n = rng.standard_normal(y.size)
    if pink:   # 1/f power: scale the spectrum by 1/sqrt(f)
        spec = np.fft.rfft(n)
        spec[1:] /= np.sqrt(np.arange(1, spec.size))
        spec[0] = 0
        n = np.fft.irfft(spec, y.size)
    rms_y = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    rms_n = float(np.sqrt(np.mean(np.square(n)))) or 1.0
    return (y + n * (rms_y / rms_n) * 10 ** (-snr_db / 20)).astype(np.float32)


def reverb(y: np.ndarray, sr: int, rt60: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Light room: convolve with a synthetic impulse response (exponentially
    decaying noise, -60 dB after ``rt60`` s) and mix ``wet`` of it in."""
    y = _check(y, sr)
    n = max(1, int(rt60 * sr))
    t = np.arange(n) / sr
    ir = rng.standard_normal(n) * 10 ** (-3.0 * t / max(rt60, 1e-3))
    ir /= np.sqrt(np.sum(ir ** 2)) or 1.0
    wet_sig = fftconvolve(y, ir)[: y.size]
    return ((1 - wet) * y + wet * wet_sig).astype(np.float32)


def downmix(channels: np.ndarray) -> np.ndarray:
    """``(channels, samples)`` → mono ``(samples,)`` (the mean)."""
    x = np.asarray(channels, np.float32)
    if x.ndim == 1:
        return x.copy()
    if x.ndim != 2 or x.shape[1] == 0:
        raise AugmentError(f"expected (channels, samples), got shape {x.shape}")
    return x.mean(axis=0)


def pseudo_stereo_downmix(y: np.ndarray, sr: int, delay_ms: float) -> np.ndarray:
    """Mono downmix of a pseudo-stereo pair whose right channel lags ``delay_ms``:
    the comb filtering a downmix of a wide stereo mix brings."""
    y = _check(y, sr)
    d = int(round(delay_ms * sr / 1000))
    right = np.concatenate([np.zeros(d, np.float32), y[: y.size - d]]) if d else y
    return downmix(np.stack([y, right]))


@dataclass(frozen=True)
class AugmentConfig:
    """Probability and range of each step of :func:`augment_wave`."""

    p_downmix: float = 0.3
    delay_ms: tuple[float, float] = (0.2, 1.5)
    p_tilt: float = 0.5
    tilt_db_per_octave: tuple[float, float] = (-3.0, 3.0)
    p_band: float = 0.3
    low_hz: tuple[float, float] = (20.0, 150.0)
    high_hz: tuple[float, float] = (4000.0, 11000.0)
    p_reverb: float = 0.3
    rt60: tuple[float, float] = (0.15, 0.6)
    wet: tuple[float, float] = (0.05, 0.3)
    p_noise: float = 0.3
    snr_db: tuple[float, float] = (25.0, 45.0)
    p_resample: float = 0.3
    rates: tuple[int, ...] = (16000, 22050, 44100)
    p_codec: float = 0.5
    codecs: tuple[str, ...] = ("mp3", "aac")
    kbps: tuple[int, ...] = (64, 96, 128, 160, 192)
    p_gain: float = 1.0
    gain_db: tuple[float, float] = (-6.0, 6.0)

    def to_dict(self) -> dict:
        return asdict(self)


def augment_wave(y: np.ndarray, sr: int, cfg: AugmentConfig | None = None,
                 rng: np.random.Generator | int | None = None) -> np.ndarray:
    """The chain: downmix → EQ tilt → band-limit → reverb → noise → another
    rate → codec → gain, each step applied with its probability and a drawn
    setting. ``(samples,)`` at ``sr`` → ``(samples,)`` float32 at ``sr``;
    deterministic for a given ``rng`` seed (every draw is made, used or not,
    so one step's choice never shifts another's)."""
    cfg = cfg or AugmentConfig()
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    y = _check(y, sr)
    u = rng.random(8)
    uni = lambda r: float(rng.uniform(*r))  # noqa: E731
    delay, tilt = uni(cfg.delay_ms), uni(cfg.tilt_db_per_octave)
    low, high = uni(cfg.low_hz), uni(cfg.high_hz)
    rt60, wet, snr = uni(cfg.rt60), uni(cfg.wet), uni(cfg.snr_db)
    via = int(rng.choice(cfg.rates))
    codec, kbps = str(rng.choice(cfg.codecs)), int(rng.choice(cfg.kbps))
    gain = uni(cfg.gain_db)
    step_rng = np.random.default_rng(rng.integers(2 ** 32))
    steps = [
        (cfg.p_downmix, lambda y: pseudo_stereo_downmix(y, sr, delay)),
        (cfg.p_tilt, lambda y: eq_tilt(y, sr, tilt)),
        (cfg.p_band, lambda y: band_limit(y, sr, low, high)),
        (cfg.p_reverb, lambda y: reverb(y, sr, rt60, wet, step_rng)),
        (cfg.p_noise, lambda y: add_noise(y, snr, step_rng)),
        (cfg.p_resample, lambda y: resample_through(y, sr, via)),
        (cfg.p_codec, lambda y: reencode(y, sr, codec, kbps)),
        (cfg.p_gain, lambda y: gain_db(y, gain)),
    ]
    for draw, (p, step) in zip(u, steps):
        if draw < p:
            y = step(y)
    return y


def copy_rng(seed: int, copy: int, digest: str) -> np.random.Generator:
    """The generator of augmented copy ``copy`` of the track whose content hash
    is ``digest``: the same copy whatever the order or the other tracks."""
    return np.random.default_rng([seed, copy, int(digest[:12], 16)])


def wav_bytes(y: np.ndarray, sr: int) -> bytes:
    """``y`` ``(samples,)`` at ``sr`` as a 32-bit float WAV file, as an upload would bring it."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def augmented_copy(y: np.ndarray, feat, aug: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """One augmented log-mel ``(n_mels, n_frames)`` for the feature config
    ``feat`` of the decoded track ``y`` ``(samples,)`` at :data:`AUGMENT_RATE`
    (``y`` itself is left as it is): the chain, then the project's one load →
    log-mel path, read back from WAV bytes as an upload would be."""
    from core.audio.cache import compute_logmel

    return compute_logmel(wav_bytes(augment_wave(y.copy(), AUGMENT_RATE, aug, rng), AUGMENT_RATE), feat)


def per_copy(path: str, digest: str, copies: int, feat, aug: AugmentConfig, seed: int,
             cached: Callable[[int], T | None], make: Callable[[int, np.ndarray], T]) -> list[T]:
    """For each copy ``c`` < ``copies`` of the track at ``path`` (content hash
    ``digest``): ``cached(c)``, or else ``make(c, log-mel)`` of its augmented
    copy (:func:`augmented_copy`, drawn by :func:`copy_rng`). The track is
    decoded once, at :data:`AUGMENT_RATE`, and only when some copy is not cached."""
    from core.audio.load import load_full

    y, out = None, []
    for c in range(copies):
        v = cached(c)
        if v is None:
            if y is None:
                y = load_full(path, AUGMENT_RATE)
            v = make(c, augmented_copy(y, feat, aug, copy_rng(seed, c, digest)))
        out.append(v)
    return out
