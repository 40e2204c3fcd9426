"""The hostile-file corpus: every bad (and some merely odd) audio file the
loader, ``python -m core classify``, the batch embedder, the upload library
and the Classify page must survive. Every file is generated here (nothing
binary is committed); ``conftest.corpus`` builds it once per session.

Good files give results, bad ones one clear line, and the rest of a batch
still completes.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
from conftest import SR, synth, write_audio

from core.audio.load import AudioError

OK = None  # expectation: decodes to a full model window


@dataclass(frozen=True)
class Case:
    """One hostile file: ``expect`` is OK, a fragment of the AudioError
    message, or "either" (decoder-dependent: a result or a clean AudioError)."""

    name: str
    path: Path
    expect: str | None


def bytes_of(y: np.ndarray, fmt: str, sr: int = SR, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _synchsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def _patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def _write_hour(path: Path, sr: int = 8_000) -> Path:
    """One hour of 16-bit audio written a minute at a time (57.6 MB)."""
    block = synth("tone", 60.0, sr=sr)
    with sf.SoundFile(str(path), "w", sr, 1, subtype="PCM_16") as f:
        for _ in range(60):
            f.write(block)
    return path


def make_corpus(d: Path) -> list[Case]:
    """Write every hostile file into ``d``; one :class:`Case` each."""
    rng = np.random.default_rng(0)
    mp3 = bytes_of(synth("tone", 10.0), "MP3")
    wav = bytes_of(synth("tone", 3.0), "WAV", subtype="PCM_16")
    garbage = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    png = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + struct.pack(">II", 64, 64)
           + b"\x08\x02\x00\x00\x00" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    files: dict[str, tuple[bytes, str | None]] = {
        "zero_bytes.mp3": (b"", "file is empty"),
        "text_renamed.mp3": (b"this is not music\n" * 40, "unrecognised format"),
        "image_renamed.mp3": (png, "unrecognised format"),
        "truncated_64B.mp3": (mp3[:64], "unrecognised format"),
        "truncated_5pct.mp3": (mp3[: len(mp3) // 20], "too short"),
        "truncated_20pct.mp3": (mp3[: len(mp3) // 5], "either"),
        "truncated_50pct.mp3": (mp3[: len(mp3) // 2], OK),
        "truncated_90pct.mp3": (mp3[: len(mp3) * 9 // 10], OK),
        "garbage_id3v2.mp3": (b"ID3\x03\x00\x00" + _synchsafe(len(garbage)) + garbage + mp3, OK),
        "garbage_id3v1.mp3": (mp3 + b"TAG" + garbage[:125], OK),
        # The tag claims ~268 MB: the audio behind it is never found.
        "lying_id3_size.mp3": (b"ID3\x03\x00\x00" + _synchsafe(0x0FFFFFFF) + garbage + mp3,
                               "unrecognised format"),
        "id3_only.mp3": (b"ID3\x03\x00\x00" + _synchsafe(len(garbage)) + garbage,
                         "unrecognised format"),
        "lying_datasize.wav": (_patched(wav, 40, "<I", 10**9), OK),
        "lying_riffsize.wav": (_patched(wav, 4, "<I", 10**9), OK),
        "lying_rate_zero.wav": (_patched(wav, 24, "<I", 0), "not a readable audio file"),
        "lying_rate_10MHz.wav": (_patched(wav, 24, "<I", 10_000_000), "unsupported sample rate"),
        "lying_channels_200.wav": (_patched(wav, 22, "<H", 200), "unsupported channel count"),
        "lying_format_tag.wav": (_patched(wav, 20, "<H", 99), "not a readable audio file"),
        "header_only.wav": (wav[:44], "contains no audio samples"),
    }
    cases = []
    for name, (data, expect) in files.items():
        (d / name).write_bytes(data)
        cases.append(Case(name, d / name, expect))
    nan = synth("tone", 3.0)
    nan[1000] = np.nan
    inf = synth("tone", 3.0)
    inf[2000] = -np.inf
    t = np.arange(3 * SR)
    square = np.where((t // 50) % 2 == 0, 1.0, -1.0).astype(np.float32)
    generated = [
        ("clip_0.1s.wav", synth("tone", 0.1), SR, None, "too short"),
        ("clip_1s.wav", synth("tone", 1.0), SR, None, OK),
        ("rate_8kHz.wav", synth("tone", 3.0, sr=8_000), 8_000, None, OK),
        ("rate_192kHz.wav", synth("tone", 3.0, sr=192_000), 192_000, None, OK),
        ("six_channels.wav", synth("tone", 3.0, channels=6), SR, None, OK),
        ("silence.wav", np.zeros(3 * SR, np.float32), SR, None, "is silent"),
        ("square_full_scale.wav", square, SR, "PCM_16", OK),
        ("nan_float.wav", nan, SR, "FLOAT", "NaN or infinite"),
        ("inf_float.wav", inf, SR, "FLOAT", "NaN or infinite"),
    ]
    for name, y, sr, subtype, expect in generated:
        sf.write(str(d / name), y, sr, subtype=subtype)
        cases.append(Case(name, d / name, expect))
    # A name with unicode, reached through a path with "../" in it.
    uni = d / "sub" / "Ünïcødé — ﬁle 😀 (1).wav"
    write_audio(uni, synth("chirp", 3.0))
    cases.append(Case("unicode_dotdot", d / "sub" / ".." / "sub" / uni.name, OK))
    cases.append(Case("one_hour.wav", _write_hour(d / "one_hour.wav"), OK))
    return cases


def check(case: Case, fn: Callable[[], np.ndarray]) -> np.ndarray | AudioError:
    """Run ``fn``; assert the outcome matches the expectation; return it."""
    try:
        out = fn()
    except AudioError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.strip() == msg
        assert case.expect is not OK, f"{case.name} rejected: {msg}"
        if case.expect != "either":
            assert case.expect in msg, msg
        return exc
    assert case.expect in (OK, "either"), f"{case.name} was accepted, expected {case.expect!r}"
    return out
