"""A generated music library as players and rippers leave it:
``<Artist>/<Album>/<NN Title>.<ext>`` in mixed formats, tagged with mutagen,
with some broken files. Used by the ``"library"`` benchmark and the tests
(no audio is committed: everything is written here).

MP3 / FLAC / OGG / WAV are written with libsndfile, M4A (AAC or ALAC), Opus
and WMA with PyAV (FFmpeg's encoders bundled in the ``av`` wheel).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from benchmarks.inputs import music_like
from core.datasets.tags import Tags

SNDFILE_FORMATS = {"mp3": "MP3", "flac": "FLAC", "ogg": "OGG", "wav": "WAV"}
# extension -> (container, codec) written by PyAV
AV_FORMATS = {"m4a": ("mp4", "aac"), "alac.m4a": ("mp4", "alac"), "opus": ("ogg", "libopus"),
              "wma": ("asf", "wmav2")}


def music(seconds: float, sr: int, seed: int) -> np.ndarray:
    """Music-like mono float32 (:func:`benchmarks.inputs.music_like`), one seed per track."""
    return music_like(seconds, sr, np.random.default_rng(seed))


def write_audio_av(path: Path, y: np.ndarray, sr: int, container: str, codec: str) -> Path:
    """Encode mono ``y`` with PyAV (``codec`` in ``container``)."""
    import av

    rate = 48_000 if codec == "libopus" else sr
    if rate != sr:
        import soxr

        y = soxr.resample(y, sr, rate).astype(np.float32)
    with av.open(str(path), mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        stream.bit_rate = 96_000          # wmav2 will not open without one
        fmt = stream.codec_context.codec.audio_formats[0].name
        pcm = (np.clip(y, -1, 1) * 32767).astype(np.int16) if fmt.startswith("s16") else \
            (np.clip(y, -1, 1) * 2**31 * 0.99).astype(np.int32) if fmt.startswith("s32") else y
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format=fmt, layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def write_track(path: Path, y: np.ndarray, sr: int, ext: str) -> Path:
    """Write ``y`` as ``ext`` (a key of :data:`SNDFILE_FORMATS` or :data:`AV_FORMATS`)."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    if ext in SNDFILE_FORMATS:
        sf.write(str(path), y, sr, format=SNDFILE_FORMATS[ext])
        return path
    container, codec = AV_FORMATS[ext]
    return write_audio_av(path, y, sr, container, codec)


def write_tags(path: Path, tags: Tags) -> None:
    """Tag ``path`` with mutagen (ID3 for MP3/WAV, Vorbis comments for
    FLAC/OGG/Opus, MP4 atoms for M4A, ASF for WMA)."""
    import mutagen
    from mutagen.id3 import ID3, TALB, TCON, TDRC, TIT2, TPE1, TRCK

    suffix = path.suffix.lower()
    if suffix in (".mp3", ".wav"):
        if suffix == ".wav":
            from mutagen.wave import WAVE

            f = WAVE(str(path))
            if f.tags is None:
                f.add_tags()
            id3 = f.tags
        else:
            id3 = ID3()
        for frame, value in ((TPE1, tags.artist), (TALB, tags.album), (TIT2, tags.title),
                             (TCON, tags.genre), (TDRC, tags.year), (TRCK, tags.track_no)):
            if value:
                id3.add(frame(encoding=3, text=value))
        if suffix == ".wav":
            f.save()
        else:
            id3.save(str(path))
        return
    f = mutagen.File(str(path))
    if f is None:
        raise ValueError(f"{path}: mutagen cannot open it")
    if f.tags is None:
        f.add_tags()
    if suffix in (".m4a", ".mp4"):
        keys = {"\xa9ART": tags.artist, "\xa9alb": tags.album, "\xa9nam": tags.title,
                "\xa9gen": tags.genre, "\xa9day": tags.year}
        for k, v in keys.items():
            if v:
                f.tags[k] = [v]
        if tags.track_no:
            f.tags["trkn"] = [(int(tags.track_no), 0)]
    elif suffix == ".wma":
        for k, v in {"Author": tags.artist, "WM/AlbumTitle": tags.album, "Title": tags.title,
                     "WM/Genre": tags.genre, "WM/Year": tags.year, "WM/TrackNumber": tags.track_no}.items():
            if v:
                f.tags[k] = [v]
    else:
        for k, v in {"artist": tags.artist, "album": tags.album, "title": tags.title,
                     "genre": tags.genre, "date": tags.year, "tracknumber": tags.track_no}.items():
            if v:
                f.tags[k] = [v]
    f.save()


def corrupt_id3(y: np.ndarray, sr: int) -> bytes:
    """An MP3 whose ID3v2 tag holds a frame with a lying size and garbage bytes."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, y, sr, format="MP3")
    frame = b"TIT2" + (0x7FFFFFF0).to_bytes(4, "big") + b"\x00\x00" + b"\x03\xff\xfe garbage"
    body = frame + bytes(32)
    size = len(body)
    synchsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x04\x00\x00" + synchsafe + body + buf.getvalue()


def generate_library(root: Path, n_files: int, seconds: float = 3.0, sr: int = 22_050,
                     formats: tuple[str, ...] = ("mp3", "flac", "ogg", "m4a"),
                     broken_every: int = 50, tracks_per_album: int = 10, albums_per_artist: int = 2,
                     genres: tuple[str, ...] = ("Jazz", "Rock", "Classical", "Folk"),
                     seed: int = 0) -> dict:
    """Write ``n_files`` files under ``root/<Artist>/<Album>/<NN Title>.<ext>``
    (formats in turn, tagged); every ``broken_every``-th file is broken (text
    named ``.mp3``, or a truncated header). Returns counts per kind."""
    root.mkdir(parents=True, exist_ok=True)
    counts = {"files": 0, "broken": 0, "formats": {}}
    per_artist = tracks_per_album * albums_per_artist
    for i in range(n_files):
        a, rest = divmod(i, per_artist)
        b, t = divmod(rest, tracks_per_album)
        folder = root / f"Artist {a:03d}" / f"Album {b + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        if broken_every and i % broken_every == broken_every - 1:
            p = folder / f"{t + 1:02d} Broken {i}.mp3"
            p.write_bytes(b"not music at all\n" * 30 if i % 2 else b"ID3\x04\x00\x00\x00\x00\x00\x10")
            counts["broken"] += 1
            counts["files"] += 1
            continue
        ext = formats[i % len(formats)]
        name = f"{t + 1:02d} Song {i}" + (" (alac)" if ext == "alac.m4a" else "") + "." + ext.split(".")[-1]
        p = write_track(folder / name, music(seconds, sr, seed + i), sr, ext)
        write_tags(p, Tags(artist=f"Artist {a:03d}", album=f"Album {b + 1}", title=f"Song {i}",
                             genre=genres[a % len(genres)], year=str(1990 + a % 30), track_no=str(t + 1)))
        counts["files"] += 1
        counts["formats"][ext] = counts["formats"].get(ext, 0) + 1
    return counts
