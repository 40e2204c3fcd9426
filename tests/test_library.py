"""Upload library: sanitised names, validation before keeping, atomic saves,
never outside the folder, never overwriting another file."""

from __future__ import annotations

import io
import os

import pytest
import soundfile as sf
from conftest import SR, synth
from hostile import OK

import core.catalog.library as library
from core.catalog.library import MAX_UPLOAD_BYTES, MAX_UPLOAD_MB, LibraryError, sanitize_filename, save_upload


def _wav(kind: str = "tone", seconds: float = 2.0, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, synth(kind, seconds, seed=seed), SR, format="WAV")
    return buf.getvalue()


def _mp3(seconds: float = 2.0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, synth("tone", seconds), SR, format="MP3")
    return buf.getvalue()


def _tree(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.mark.parametrize("name, expected", [
    ("song.mp3", "song.mp3"),
    ("../../etc/passwd.mp3", "passwd.mp3"),
    ("/absolute/path/x.wav", "x.wav"),
    ("C:\\Users\\me\\Music\\evil.WAV", "evil.wav"),
    ("..\\..\\up.flac", "up.flac"),
    ("Beyoncé – Halo (live).mp3", "Beyoncé_Halo_(live).mp3"),
    ("Beyonce\u0301.mp3", "Beyoncé.mp3"),                 # NFKC composes the accent
    ("ｆｕｌｌｗｉｄｔｈ.mp3", "fullwidth.mp3"),
    ("日本語の歌.flac", "日本語の歌.flac"),
    ("evil\u202e3pm.exe", "evil3pm.exe"),                 # right-to-left override dropped
    ("tab\tnew\nline.mp3", "tab_new_line.mp3"),
    ("nul\x00byte.mp3", "nulbyte.mp3"),
    (".hidden.mp3", "hidden.mp3"),
    ("-rf.mp3", "rf.mp3"),
    ("..", "upload"),
    ("", "upload"),
    ("foo/..", "upload"),
    ("😀😀.ogg", "upload.ogg"),
    ("CON.mp3", "CON_.mp3"),
    ("a.b.c.MP3", "a.b.c.mp3"),
    ("noext", "noext"),
])
def test_sanitize_filename(name, expected):
    assert sanitize_filename(name) == expected


def test_sanitize_caps_length_in_utf8_bytes():
    long = sanitize_filename("é" * 300 + ".mp3")
    assert long.endswith(".mp3") and len(long.encode("utf-8")) <= library.MAX_STEM_BYTES + 4
    assert set(long[:-4]) == {"é"}                      # no character cut in half


def test_save_upload_keeps_valid_audio(tmp_path):
    data = _mp3()
    saved = save_upload("My Song.mp3", data, tmp_path / "lib")
    assert saved.path == (tmp_path / "lib").resolve() / "My_Song.mp3"
    assert saved.created and saved.name == "My_Song.mp3"
    assert saved.path.read_bytes() == data
    assert saved.info.format == "MP3" and saved.info.sample_rate == SR
    assert len(saved.digest) == 64
    assert _tree(tmp_path) == ["lib", "lib/My_Song.mp3"]


def test_same_file_again_is_reused(tmp_path):
    first = save_upload("a.wav", _wav(), tmp_path)
    again = save_upload("a.wav", _wav(), tmp_path)
    assert again.path == first.path and not again.created
    assert _tree(tmp_path) == ["a.wav"]


def test_different_file_with_same_name_never_overwrites(tmp_path):
    one, two = _wav(seed=0), _wav("noise", seed=1)
    first = save_upload("a.wav", one, tmp_path)
    second = save_upload("../a.wav", two, tmp_path)
    assert second.created and second.path.name == f"a-{second.digest[:12]}.wav"
    assert first.path.read_bytes() == one and second.path.read_bytes() == two
    third = save_upload("a.wav", two, tmp_path)         # same content as the second
    assert third.path == second.path and not third.created
    assert len(list(tmp_path.iterdir())) == 2


def test_symlink_in_library_is_not_followed(tmp_path):
    outside = tmp_path / "outside.wav"
    outside.write_bytes(b"precious")
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "trap.wav").symlink_to(outside)
    saved = save_upload("trap.wav", _wav(), lib)
    assert saved.path.parent == lib.resolve() and saved.path.name != "trap.wav"
    assert outside.read_bytes() == b"precious"


@pytest.mark.parametrize("name, data, message", [
    ("empty.mp3", b"", "empty.mp3: file is empty (0 bytes)"),
    ("notes.txt", b"hello", "notes.txt: unsupported file type ('.txt'; accepted: .mp3, .wav"),
    ("noext", b"RIFF....", "noext: unsupported file type (no extension"),
    ("photo.mp3", b"\x89PNG\r\n\x1a\n" + bytes(500),
     "photo.mp3: not a readable audio file (unrecognised format; accepted: MP3"),
    ("short.wav", None, "short.wav: too short (0.20 s; at least 1 s needed)"),
    ("quiet.wav", None, "quiet.wav: is silent"),
])
def test_rejected_uploads_leave_nothing(tmp_path, name, data, message):
    if name == "short.wav":
        data = _wav(seconds=0.2)
    elif name == "quiet.wav":
        buf = io.BytesIO()
        sf.write(buf, synth("tone", 2.0) * 0, SR, format="WAV")
        data = buf.getvalue()
    with pytest.raises(LibraryError) as exc:
        save_upload(name, data, tmp_path / "lib")
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)
    assert not (tmp_path / "lib").exists() or _tree(tmp_path / "lib") == []


def test_size_limit(tmp_path):
    assert MAX_UPLOAD_BYTES == MAX_UPLOAD_MB * 2**20
    data = _wav()
    with pytest.raises(LibraryError, match=r"big.wav: too large \(0.1 MB; the limit is 0.05 MB\)"):
        save_upload("big.wav", data, tmp_path, max_bytes=int(0.05 * 2**20))
    assert _tree(tmp_path) == []
    save_upload("big.wav", data, tmp_path, max_bytes=len(data))  # exactly at the limit is fine


def test_matches_streamlit_upload_limit():
    import tomllib
    from pathlib import Path

    cfg = tomllib.loads((Path(__file__).parent.parent / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["maxUploadSize"] == MAX_UPLOAD_MB
    assert cfg["browser"]["gatherUsageStats"] is False and cfg["server"]["headless"] is True


def test_header_only_validation_skips_decoding(tmp_path):
    buf = io.BytesIO()
    sf.write(buf, synth("tone", 2.0) * 0, SR, format="WAV")
    saved = save_upload("quiet.wav", buf.getvalue(), tmp_path, decode=False)
    assert saved.created


def test_non_bytes_and_unusable_folder(tmp_path):
    with pytest.raises(LibraryError, match="must be bytes"):
        save_upload("a.wav", "text", tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LibraryError, match="a.wav: library folder .* is not usable"):
        save_upload("a.wav", _wav(), blocker)


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(library.os, "fsync", disk_full)
    with pytest.raises(LibraryError, match="a.wav: could not save \\(No space left on device\\)"):
        save_upload("a.wav", _wav(), tmp_path)
    assert _tree(tmp_path) == []


def test_without_hard_links_still_never_overwrites(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(library.os, "link", no_links)
    first = save_upload("a.wav", _wav(seed=0), tmp_path)
    second = save_upload("a.wav", _wav("noise", seed=1), tmp_path)
    assert first.path != second.path and first.path.read_bytes() == _wav(seed=0)
    assert not save_upload("a.wav", _wav(seed=0), tmp_path).created
    assert _tree(tmp_path) == sorted([first.path.name, second.path.name])


def test_catalog_lists_saved_uploads(tmp_path):
    """The library folder is what the catalog indexes (core.catalog.sources, if present)."""
    catalog = pytest.importorskip("core.catalog.sources")
    save_upload("../Good Song.mp3", _mp3(), tmp_path)
    tracks = catalog.library_tracks(tmp_path)
    assert [t.path.name for t in tracks] == ["Good_Song.mp3"]
    assert os.path.commonpath([tracks[0].path, tmp_path.resolve()]) == str(tmp_path.resolve())


# --------------------------------------------------------------------------- hostile corpus


def test_every_case_through_save_upload(corpus, tmp_path):
    lib = tmp_path / "library"
    for case in corpus:
        if case.name == "one_hour.wav":
            continue  # over the upload limit; see below
        try:
            saved = save_upload(case.path.name, case.path.read_bytes(), lib)
        except LibraryError as exc:
            msg = str(exc)
            assert "\n" not in msg
            assert case.expect is not OK, f"{case.name}: {msg}"
            if case.expect != "either":
                assert case.expect in msg, msg
            continue
        assert case.expect in (OK, "either"), case.name
        assert saved.path.parent == lib.resolve()
        assert saved.path.read_bytes() == case.path.read_bytes()
    # Only accepted files are there; no temporary leftovers; nothing beside it.
    assert all(not p.name.startswith(".") for p in lib.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["library"]


def test_one_hour_upload_is_over_the_limit(corpus, tmp_path):
    hour = next(c.path for c in corpus if c.name == "one_hour.wav")
    with pytest.raises(LibraryError, match=r"one_hour.wav: too large \(54.9 MB; the limit is 50 MB\)"):
        save_upload(hour.name, hour.read_bytes(), tmp_path / "lib")
    assert not (tmp_path / "lib").exists()  # rejected before anything is created


def test_dotdot_unicode_upload_name_stays_in_library(corpus, tmp_path):
    data = next(c.path for c in corpus if c.name == "unicode_dotdot").read_bytes()
    lib = tmp_path / "a" / "library"
    saved = save_upload("../../../Ünïcødé — ﬁle 😀 (1).wav", data, lib)
    assert saved.path == lib.resolve() / "Ünïcødé_file_(1).wav"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "a", "a/library", "a/library/Ünïcødé_file_(1).wav"]
