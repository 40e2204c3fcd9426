"""Audio loading: any file or bytes → mono float32 at the model rate.

Every failure surfaces as :class:`AudioError` with a one-line message, never
a raw decoder traceback. Only the excerpt that is needed is decoded, so an
hour-long file costs no more memory than a 30 s clip.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import soundfile as sf
import soxr

from core.config import FeatureConfig
from core.errors import GenreError
from core.types import AudioSource

MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 64
SILENCE_RMS_DB = -70.0
# libsndfile's formats, then what only the PyAV fallback decodes (M4A/AAC/ALAC, Opus, WMA).
SUPPORTED_EXTENSIONS = (".mp3", ".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif",
                        ".m4a", ".m4b", ".mp4", ".aac", ".opus", ".wma", ".webm", ".mka")


class AudioError(GenreError, ValueError):
    """A file that cannot be used as music; ``str(err)`` is one readable line
    (``"name: reason"``), ``err.reason`` the reason alone."""


@dataclass(frozen=True)
class AudioInfo:
    """What the container says about a file before decoding."""

    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _name(source: AudioSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return getattr(source, "name", None) or "uploaded audio"


def _open(source: AudioSource) -> sf.SoundFile:
    """Open ``source`` with libsndfile, translating every failure."""
    name = _name(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise AudioError("file not found", name)
        if path.is_dir():
            raise AudioError("is a folder, not an audio file", name)
        size: int | None = path.stat().st_size
        handle: AudioSource = str(path)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        size = len(source)
        handle = io.BytesIO(bytes(source))
    else:                                   # a file object (an upload)
        size = _byte_size(source)
        handle = source
    if size == 0:
        raise AudioError("file is empty (0 bytes)", name)
    try:
        f = sf.SoundFile(handle)
    except Exception as exc:  # libsndfile raises several types
        f = _open_fallback(handle, name, _short(exc))
    try:
        _check_header(f.samplerate, f.channels)
    except AudioError as exc:
        f.close()
        raise AudioError(exc.reason, name) from None
    return f


def _byte_size(f) -> int | None:
    """A file object's size in bytes, its position kept (``None`` when it cannot seek)."""
    try:
        here = f.tell()
        end = f.seek(0, io.SEEK_END)
        f.seek(here)
    except (AttributeError, OSError, ValueError):
        return None
    return end


def _open_fallback(handle, name: str, sf_reason: str):
    """libsndfile failed: decode with PyAV (:mod:`core.audio.av_decode`), or
    raise one :class:`AudioError` line."""
    from core.audio.av_decode import AVDecodeError, AVFile

    if hasattr(handle, "seek"):
        handle.seek(0)
    try:
        return AVFile(handle)
    except AVDecodeError as exc:
        reason = str(exc)
    # libsndfile reports an unrecognised format as "File does not exist or
    # is not a regular file" even though the file exists: say what it means.
    if any(k in sf_reason.lower() for k in ("does not exist or is not a regular file",
                                            "format not recognised", "unknown format")) and \
            any(k in reason.lower() for k in ("invalid data", "no audio stream", "no decodable")):
        reason = "unrecognised format; accepted: MP3, WAV, FLAC, OGG, AIFF, M4A/AAC/ALAC, OPUS, WMA"
    raise AudioError(f"not a readable audio file ({reason})", name) from None


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    # libsndfile prefixes messages with the file name; keep the reason only.
    if ": " in text and text.lower().startswith(("error opening", "<_io")):
        text = text.split(": ", 1)[-1]
    return text[:160]


def _check_header(sample_rate: int, channels: int) -> None:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"unsupported sample rate {sample_rate} Hz "
                         f"(accepted: {MIN_SAMPLE_RATE}–{MAX_SAMPLE_RATE} Hz)")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"unsupported channel count {channels}")


def probe(source: AudioSource) -> AudioInfo:
    """Read the header only: sample rate, channels, frame count, format."""
    with _open(source) as f:
        return AudioInfo(f.samplerate, f.channels, f.frames, f.format)


# Files up to this long are decoded whole and sliced: MP3 seeking is
# approximate (and noisy in libmpg123), so seek only when it saves real work.
# A property of the file alone, so a file is read the same way whichever
# settings ask for it.
_WHOLE_UP_TO_SECONDS = 120.0


def _read_spans(source: AudioSource, f: sf.SoundFile, spans: list[tuple[int, int]],
                name: str) -> dict[tuple[int, int], np.ndarray]:
    """The samples of each ``(start, frames)`` span of the freshly opened ``f``:
    slices of one whole decode for a short file; otherwise each distinct span
    is read by seeking a freshly opened file (an MP3 decoder's output after a
    seek depends on what it decoded before, so a span gives the same samples
    whatever else is read, exactly as :func:`load` reads it alone)."""
    total = max(int(f.frames), 0)
    if total <= _WHOLE_UP_TO_SECONDS * f.samplerate:
        whole = _read(f, 0, -1, name)
        return {(s, n): whole[s: s + n] for s, n in spans}
    out = {}
    for k, (s, n) in enumerate(dict.fromkeys(spans)):
        if k == 0:
            out[(s, n)] = _read(f, s, n, name)
            continue
        if hasattr(source, "seek"):
            source.seek(0)
        with _open(source) as g:
            out[(s, n)] = _read(g, s, n, name)
    return out


def _read(f: sf.SoundFile, start: int, frames: int, name: str) -> np.ndarray:
    try:
        if start:
            f.seek(start)
        data = f.read(frames, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"corrupt or truncated audio ({_short(exc)})", name) from None
    return data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]


def _finish(y: np.ndarray, sr_in: int, cfg: FeatureConfig, name: str) -> np.ndarray:
    """Validate, resample to the model rate and normalise loudness."""
    if y.size == 0:
        raise AudioError("contains no audio samples", name)
    if not np.all(np.isfinite(y)):
        raise AudioError("contains NaN or infinite samples", name)
    if y.size / sr_in < cfg.min_seconds:
        raise AudioError(f"too short ({y.size / sr_in:.2f} s; at least "
                         f"{cfg.min_seconds:g} s needed)", name)
    if sr_in != cfg.sample_rate:
        y = soxr.resample(y, sr_in, cfg.sample_rate, quality="HQ").astype(np.float32)
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    if rms <= 0 or 20 * np.log10(rms) < SILENCE_RMS_DB:
        raise AudioError("is silent (no signal to analyse)", name)
    if cfg.target_rms_db is None:
        return np.clip(y, -1.0, 1.0).astype(np.float32)
    gain = 10 ** (cfg.target_rms_db / 20) / rms
    return np.clip(y * gain, -1.0, 1.0).astype(np.float32)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """Repeat a short excerpt until it fills ``n`` samples (no silent tail)."""
    if y.size >= n:
        return y[:n]
    reps = int(np.ceil(n / y.size))
    return np.tile(y, reps)[:n]


def load(source: AudioSource, cfg: FeatureConfig | None = None,
         position: str | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Decode the model's fixed-length excerpt of ``source``.

    Returns ``cfg.window_samples`` mono float32 samples at ``cfg.sample_rate``,
    loudness-normalised. ``position`` ("centre", "start", "random") picks the
    excerpt of a longer track; shorter tracks are repeated to fill the window.
    """
    cfg = cfg or FeatureConfig()
    return load_multi(source, [cfg], position=position, rng=rng)[0][0]


def load_multi(source: AudioSource, cfgs: Sequence[FeatureConfig], n_excerpts: int = 1,
               position: str | None = None,
               rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """:func:`load_multi_heard` without the seconds heard."""
    return load_multi_heard(source, cfgs, n_excerpts, position, rng)[0]


def load_multi_heard(source: AudioSource, cfgs: Sequence[FeatureConfig], n_excerpts: int = 1,
                     position: str | None = None,
                     rng: np.random.Generator | None = None) -> tuple[list[np.ndarray], float]:
    """Decode ``source`` once for several models' settings.

    Returns one array ``(n_excerpts, cfg.window_samples)`` per config in
    ``cfgs``, resampled, normalised and fitted per config. A single centred
    or start excerpt is exactly what ``load(source, cfg)`` gives, whatever
    other configs are decoded with it. ``n_excerpts > 1`` spaces the
    excerpts of a long track evenly (and a random one is drawn) for the
    longest window, each config taking its middle. ``position`` ("centre",
    "start", "random", default each config's ``crop``) places a single excerpt.
    Also returns the seconds of audio in the longest excerpt before fitting:
    below the longest ``window_seconds`` the file was shorter, and the
    windows repeat it.
    """
    if not cfgs:
        raise ValueError("no feature configuration given")
    name = _name(source)
    with _open(source) as f:
        sr_in = f.samplerate
        needs = [int(np.ceil(c.window_seconds * sr_in)) + 1 for c in cfgs]
        total = max(int(f.frames), 0)
        cuts = _excerpt_cuts(total, needs, [position or c.crop for c in cfgs], n_excerpts, rng)
        read = _read_spans(source, f, [span for per in cuts for span, _, _ in per], name)
    waves = [np.stack([_fit(_finish(read[span][off: off + n], sr_in, cfg, name), cfg.window_samples)
                       for span, off, n in per]) for cfg, per in zip(cfgs, cuts)]
    heard = max(read[span][off: off + n].size for per in cuts for span, off, n in per) / sr_in
    return waves, heard


def _excerpt_cuts(total: int, needs: list[int], crops: list[str], n_excerpts: int,
                  rng: np.random.Generator | None) -> list[list[tuple[tuple[int, int], int, int]]]:
    """Per config, for each excerpt: the ``(start, frames)`` span of the file
    to read, and the offset and length of the config's window within it.

    One centred or start excerpt is placed for each config on its own, so a
    config's samples never depend on the other configs decoded with it (the
    cache keeps one log-mel per file and config, whoever computed it). A
    random excerpt and evenly spaced excerpts are placed once for the longest
    window and read once, each config taking its middle: the same music for
    every model.
    """
    need = max(needs)
    if n_excerpts <= 1 and "random" not in crops:
        out = []
        for n, crop in zip(needs, crops):
            length = min(n, total)
            out.append([((_excerpt_start(total, n, crop, None), length), 0, length)])
        return out
    if n_excerpts > 1 and total > need:
        starts = np.linspace(0, total - need, n_excerpts).astype(int).tolist()
    else:
        starts = [_excerpt_start(total, need, "centre" if n_excerpts > 1 else crops[0], rng)]
    out = []
    for n, crop in zip(needs, crops):
        off = 0 if crop == "start" and n_excerpts <= 1 else (need - n) // 2
        per = []
        for s in starts:
            have = min(need, total - s)   # an excerpt cut short by the end of the file
            per.append(((s, have), min(off, max(have - n, 0)), min(n, have)))
        out.append(per)
    return out


def _excerpt_start(total: int, need: int, position: str, rng: np.random.Generator | None) -> int:
    if total <= need:
        return 0
    if position == "start":
        return 0
    if position == "random":
        return int((rng or np.random.default_rng()).integers(0, total - need + 1))
    if position == "centre":
        return (total - need) // 2
    raise ValueError(f"unknown crop position {position!r}")


def load_windows(source: AudioSource, cfg: FeatureConfig | None = None,
                 n_windows: int = 3) -> np.ndarray:
    """Several evenly spaced excerpts of a long track, shape ``(n, samples)``.

    For a track no longer than the window this is one excerpt. Only the
    excerpts are decoded, so memory stays bounded for any track length.
    """
    return load_multi(source, [cfg or FeatureConfig()], n_excerpts=n_windows)[0]


def load_full(source: AudioSource, sample_rate: int, max_seconds: float = 600.0) -> np.ndarray:
    """Decode up to ``max_seconds`` of mono audio at ``sample_rate`` (no normalising).

    For displays (waveform plots) and hand-crafted baselines.
    """
    name = _name(source)
    with _open(source) as f:
        sr_in = f.samplerate
        y = _read(f, 0, int(max_seconds * sr_in), name)
    if y.size == 0:
        raise AudioError("contains no audio samples", name)
    if not np.all(np.isfinite(y)):
        raise AudioError("contains NaN or infinite samples", name)
    if sr_in != sample_rate:
        y = soxr.resample(y, sr_in, sample_rate, quality="HQ").astype(np.float32)
    return y


@contextlib.contextmanager
def quiet_decoder_logs() -> Iterator[None]:
    """Send native stderr (libmpg123's "Note: Illegal Audio-MPEG-Header …",
    "Warning: Xing stream size off …") to /dev/null while Python's
    ``sys.stderr`` keeps writing to the real stream, so a CLI prints only its
    own one-line messages. Redirects file descriptor 2 process-wide: use it in
    command-line tools, not in the threaded app server.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    swap = False
    try:
        swap = sys.stderr.fileno() == 2
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass  # sys.stderr is not fd 2 (e.g. captured): leave it alone
    old_stderr = sys.stderr
    real = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    if swap:
        sys.stderr = real
    try:
        yield
    finally:
        real.flush()
        sys.stderr = old_stderr
        os.dup2(saved, 2)
        os.close(saved)
        real.close()


def is_supported_name(name: str) -> bool:
    """True if the file name has an audio extension this loader accepts."""
    return Path(name).suffix.lower() in SUPPORTED_EXTENSIONS
