"""The fallback decoder: PyAV (FFmpeg's libraries, bundled in the ``av``
wheel) for what libsndfile cannot read — M4A/AAC, ALAC, Opus, WMA and odd
MP3s. libsndfile stays the fast path (:mod:`core.audio.load` tries it first).

:class:`AVFile` offers the part of ``soundfile.SoundFile`` the loader uses
(``samplerate``, ``channels``, ``frames``, ``format``, ``seek``, ``read``,
context manager). It decodes the first :data:`MAX_SECONDS` of the file once,
down-mixed to mono (the mean of the channels, as the loader does for
libsndfile), so memory is bounded by that length whatever the file.
"""

from __future__ import annotations

import io
import os

import numpy as np

# At most this much of a file is decoded (a 48 kHz track: 43 MB of float32).
MAX_SECONDS = 900.0


class AVDecodeError(Exception):
    """PyAV could not decode the file; ``str()`` is one short line."""


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    # PyAV messages end with the file name: "[Errno 1094995529] Invalid data …: '/x.mp3'"
    if "; last error log" in text:
        text = text.split("; last error log", 1)[0]
    if ": '" in text:
        text = text.split(": '", 1)[0]
    return text[:160]


class AVFile:
    """A decoded file with the read API of ``soundfile.SoundFile`` (mono)."""

    def __init__(self, source, max_seconds: float = MAX_SECONDS):
        try:
            import av
        except ImportError as exc:  # pragma: no cover - av is in requirements.txt
            raise AVDecodeError("PyAV is not installed") from exc
        handle = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source
        if isinstance(handle, os.PathLike):
            handle = os.fspath(handle)
        try:
            with av.open(handle, mode="r", metadata_errors="ignore") as container:
                streams = container.streams.audio
                if not streams:
                    raise AVDecodeError("no audio stream")
                stream = streams[0]
                self.format = (stream.codec_context.name or "unknown").upper()
                self.samplerate = int(stream.codec_context.sample_rate or 0)
                self.channels = int(stream.codec_context.channels or 0)
                self._data = self._decode(av, container, stream, max_seconds)
        except AVDecodeError:
            raise
        except Exception as exc:  # noqa: BLE001 — FFmpeg raises many types on hostile input
            raise AVDecodeError(_short(exc)) from None
        self.frames = int(self._data.size)
        self._pos = 0

    def _decode(self, av, container, stream, max_seconds: float) -> np.ndarray:
        chunks: list[np.ndarray] = []
        have = 0
        limit = None
        resampler = None
        for frame in container.decode(stream):
            if not self.samplerate:
                self.samplerate = int(frame.sample_rate)
            if limit is None:
                limit = int(max_seconds * (self.samplerate or frame.sample_rate))
            if resampler is None:
                resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate)
                self.channels = self.channels or len(frame.layout.channels)
            for out in resampler.resample(frame):
                a = out.to_ndarray()                       # (channels, n) float32, planar
                chunks.append(a.mean(axis=0) if a.shape[0] > 1 else a[0])
                have += chunks[-1].size
            if have >= limit:
                break
        if not chunks:
            raise AVDecodeError("contains no decodable audio")
        y = np.concatenate(chunks).astype(np.float32, copy=False)
        return y[:limit] if limit else y

    def seek(self, frame: int) -> int:
        self._pos = max(0, min(int(frame), self.frames))
        return self._pos

    def read(self, frames: int = -1, dtype: str = "float32", always_2d: bool = False) -> np.ndarray:
        end = self.frames if frames is None or frames < 0 else min(self.frames, self._pos + int(frames))
        out = self._data[self._pos:end].astype(dtype, copy=False)
        self._pos = end
        return out[:, None] if always_2d else out

    def close(self) -> None:
        self._data = np.zeros(0, np.float32)

    def __enter__(self) -> "AVFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
