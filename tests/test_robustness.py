"""Hostile inputs, fuzzing, artifact safety, crash and concurrency safety.

Every hostile file is generated here (nothing binary is committed). Each one
goes through the loader, ``python -m core classify``, the batch embedder and
the upload library: good files give results, bad ones one clear line, and the
rest of a batch still completes.
"""

from __future__ import annotations

import io
import json
import pickle
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, synth, write_audio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import core.audio.load as audio
from core.audio.load import AudioError, load, load_windows
from core.catalog.library import LibraryError, save_upload
from core.config import FeatureConfig
from core.models.artifacts import ArtifactError, load_model, load_models, read_json, update_manifest
from core.recommend.study import StudyStore

ROOT = Path(__file__).resolve().parent.parent
CFG = FeatureConfig()
OK = None  # expectation: decodes to a full model window


@dataclass(frozen=True)
class Case:
    """One hostile file: ``expect`` is OK, a fragment of the AudioError
    message, or "either" (decoder-dependent: a result or a clean AudioError)."""

    name: str
    path: Path
    expect: str | None


def _bytes_of(y: np.ndarray, fmt: str, sr: int = SR, subtype: str | None = None) -> bytes:
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


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Case]:
    d = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    mp3 = _bytes_of(synth("tone", 10.0), "MP3")
    wav = _bytes_of(synth("tone", 3.0), "WAV", subtype="PCM_16")
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


def _ids(cases):
    return [c.name for c in cases]


def _check(case: Case, fn) -> np.ndarray | AudioError:
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


# --------------------------------------------------------------------------- loader


def test_every_case_through_the_loader(corpus):
    for case in corpus:
        out = _check(case, lambda: load(case.path))
        if not isinstance(out, AudioError):
            assert out.shape == (CFG.window_samples,) and out.dtype == np.float32
            assert np.all(np.isfinite(out)) and np.abs(out).max() <= 1.0
            assert np.abs(out).max() > 0.01  # loudness-normalised, not silent


def test_every_case_as_uploaded_bytes(corpus):
    """The app hands the loader bytes, not paths; same outcome, named upload."""
    for case in corpus:
        out = _check(case, lambda: load(case.path.read_bytes()))
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


# --------------------------------------------------------------------------- CLI


def test_classify_cli_batch(corpus, tiny_artifacts):
    """One call, every case: each bad file is exactly one stderr line, exit 2,
    and the good files in the same call still print their results."""
    files = [str(c.path) for c in corpus]
    proc = subprocess.run([sys.executable, "-m", "core", "classify", "--artifacts",
                           str(tiny_artifacts), *files], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    errors = proc.stderr.splitlines()
    ok_files = [r["file"] for r in results]
    bad_files = [line.split(": ", 2)[1] for line in errors]
    assert sorted(ok_files + bad_files) == sorted(files), proc.stderr  # nothing else on stderr
    for case in corpus:
        if case.expect is OK:
            assert str(case.path) in ok_files
        elif case.expect != "either":
            line = errors[bad_files.index(str(case.path))]
            assert line.startswith(f"error: {case.path}: ") and case.expect in line, line
    for r in results:
        assert set(r["cnn"]) == {"Tones", "Noise", "Clicks"} and r["crnn_top"] in r["crnn"]
        assert all(0.0 <= p <= 1.0 for p in r["cnn"].values())


# --------------------------------------------------------------------------- indexing


def test_embed_paths_batch_completes_with_errors_per_item(corpus, tiny_artifacts):
    from core.catalog.pipeline import embed_paths

    # One model is enough here (the CLI test runs both); CPU is shared.
    models = {"cnn": load_model("cnn", tiny_artifacts)}
    paths = [str(c.path) for c in corpus] + [str(corpus[0].path.parent / "missing.wav")]
    seen = []
    out = list(embed_paths(paths, models, batch_size=4, progress=lambda d, n: seen.append((d, n))))
    assert [r.path for r in out] == paths
    assert seen[-1] == (len(paths), len(paths))
    for case, r in zip(corpus, out):
        if case.expect is OK:
            assert r.error is None, r.error
            for name, m in models.items():
                assert r.embedding[name].shape == (m.embedding_dim,)
                assert np.all(np.isfinite(r.embedding[name])) and np.all(np.isfinite(r.probs[name]))
        elif case.expect != "either":
            assert r.error and case.expect in r.error and "\n" not in r.error
            assert not r.embedding
    assert out[-1].error and "cannot read" in out[-1].error


# --------------------------------------------------------------------------- upload


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


# --------------------------------------------------------------------------- fuzzing


def _seed_files() -> list[bytes]:
    y = synth("tone", 1.5)
    return [_bytes_of(y, "WAV", subtype="PCM_16"), _bytes_of(y, "WAV", subtype="FLOAT"),
            _bytes_of(y, "MP3"), _bytes_of(y, "FLAC"), _bytes_of(y, "OGG")]


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


# --------------------------------------------------------------------------- artifacts


@pytest.fixture
def artifacts_copy(tiny_artifacts, tmp_path) -> Path:
    out = tmp_path / "artifacts"
    out.mkdir()
    for p in tiny_artifacts.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    return out


def _assert_names(exc: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(exc.value)
    assert str(path) in msg and "make artifacts" in msg and "\n" not in msg


def test_tampered_artifact_is_refused(artifacts_copy):
    path = artifacts_copy / "crnn.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # one bit pattern in the weights
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch") as exc:
        load_model("crnn", artifacts_copy)
    _assert_names(exc, path)
    with pytest.raises(ArtifactError):
        load_models(artifacts_copy)
    load_model("cnn", artifacts_copy)  # the untouched one still loads


def test_missing_artifact_and_manifest(artifacts_copy):
    (artifacts_copy / "cnn.safetensors").unlink()
    with pytest.raises(ArtifactError, match="artifact missing") as exc:
        load_model("cnn", artifacts_copy)
    _assert_names(exc, artifacts_copy / "cnn.safetensors")
    (artifacts_copy / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest missing") as exc:
        load_model("crnn", artifacts_copy)
    _assert_names(exc, artifacts_copy / "manifest.json")


def test_artifact_not_in_manifest_and_tampered_json(artifacts_copy):
    (artifacts_copy / "metrics.json").write_text('{"macro": 1}')
    with pytest.raises(ArtifactError, match="not in manifest") as exc:
        read_json("metrics.json", artifacts_copy)
    _assert_names(exc, artifacts_copy / "metrics.json")
    update_manifest(artifacts_copy)
    assert read_json("metrics.json", artifacts_copy) == {"macro": 1}
    (artifacts_copy / "metrics.json").write_text('{"macro": 2}')
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        read_json("metrics.json", artifacts_copy)


class _Exploit:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickle_disguised_as_safetensors_is_never_unpickled(artifacts_copy, tmp_path):
    marker = tmp_path / "pwned"
    path = artifacts_copy / "cnn.safetensors"
    path.write_bytes(pickle.dumps(_Exploit(str(marker))))
    update_manifest(artifacts_copy)  # even with a matching checksum
    with pytest.raises(ArtifactError, match="artifact unreadable") as exc:
        load_model("cnn", artifacts_copy)
    _assert_names(exc, path)
    assert not marker.exists()


def test_no_pickle_loading_in_the_code_or_the_repository():
    for src in (ROOT / "core").rglob("*.py"):
        text = src.read_text(encoding="utf-8")
        assert "import pickle" not in text and "joblib" not in text, src
        for part in text.split("torch.load(")[1:]:
            assert "weights_only=True" in part.split(")")[0], src
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout
    risky = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".bin")
    assert not [f for f in tracked.splitlines() if f.endswith(risky)]


def test_classify_cli_with_tampered_artifacts(artifacts_copy, tone_wav):
    path = artifacts_copy / "cnn.safetensors"
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    proc = subprocess.run([sys.executable, "-m", "core", "classify", "--artifacts",
                           str(artifacts_copy), str(tone_wav)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert "checksum mismatch" in proc.stderr and str(path) in proc.stderr
    assert "make artifacts" in proc.stderr


# --------------------------------------------------------------------------- study DB


_WRITER = r"""
import sys
import numpy as np
from core.recommend.study import StudyStore
store = StudyStore(sys.argv[1])
catalog = [f"t{i}" for i in range(400)]
rng = np.random.default_rng(0)
k = 0
while True:
    seeds = [catalog[(5 * k + j) % 400] for j in range(5)]
    recs = [t for t in catalog if t not in seeds]
    pid = store.enroll(seeds, recs[:10], recs[5:15], catalog, rng=rng, n_decoys=200)
    print("enrolled", pid, flush=True)
    for t in store.trials(pid)[:20]:
        store.answer(pid, t.track_id, bool(rng.integers(2)))
        print("answered", pid, t.track_id, flush=True)
    k += 1
"""


def test_study_db_survives_a_killed_writer(tmp_path):
    """SIGKILL a process that is writing as fast as it can: every write it
    reported committed is there, the file is intact, and no participant is
    left without a complete trial list (enrolment is one transaction)."""
    db = tmp_path / "study.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(db)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reported = []
    try:
        for line in proc.stdout:
            reported.append(line.split())
            if len(reported) >= 60:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    store = StudyStore(db)
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    enrolled = [r[1] for r in reported if r[0] == "enrolled"]
    answered = [(r[1], r[2]) for r in reported if r[0] == "answered"]
    pids = store.participants()
    assert set(enrolled) <= set(pids) and len(pids) <= len(enrolled) + 1
    for pid in pids:
        assert len(store.seeds(pid)) == 5
        assert len(store.trials(pid)) == 215  # 15 distinct recommendations + 200 decoys
    table = store.table()
    stored = set(zip(table.loc[table["liked"].notna(), "participant"],
                     table.loc[table["liked"].notna(), "track_id"]))
    assert set(answered) <= stored
    assert len(answered) <= store.count_answers() <= len(answered) + 1
    # And the database keeps working after the crash.
    store.answer(pids[0], store.trials(pids[0])[-1].track_id, True)


def _enroll_one(store: StudyStore, pid: str) -> list[str]:
    catalog = [f"t{i}" for i in range(60)]
    store.enroll(catalog[:5], catalog[5:15], catalog[10:20], catalog, rng=1, participant=pid)
    return [t.track_id for t in store.trials(pid)]


def test_concurrent_threads_lose_no_likes(tmp_path):
    store = StudyStore(tmp_path / "study.sqlite")
    errors: list[BaseException] = []

    def session(i: int) -> None:
        try:
            tracks = _enroll_one(store, f"thread-{i}")
            for n in range(24):
                store.answer(f"thread-{i}", tracks[n % len(tracks)], n % 3 != 0)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert store.count_answers() == 8 * 24
    assert len(store.participants()) == 8
    per = store.results().per_participant
    assert per.groupby("participant")["answered"].sum().min() > 0


_PROC_WRITER = r"""
import sys
from core.recommend.study import StudyStore
store = StudyStore(sys.argv[1])
pid, n = sys.argv[2], int(sys.argv[3])
tracks = [t.track_id for t in store.trials(pid)]
for i in range(n):
    store.answer(pid, tracks[i % len(tracks)], True)
"""


def test_concurrent_processes_lose_no_likes(tmp_path):
    db = tmp_path / "study.sqlite"
    store = StudyStore(db)
    pids = [f"proc-{i}" for i in range(3)]
    for pid in pids:
        _enroll_one(store, pid)
    procs = [subprocess.Popen([sys.executable, "-c", _PROC_WRITER, str(db), pid, "40"], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for pid in pids]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    assert store.count_answers() == 3 * 40


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


# --------------------------------------------------------------------------- app upload

from test_app import app, app_env  # noqa: E402,F401  (AppTest fixtures)


def test_every_case_through_the_app_upload(corpus, app):
    """The whole hostile corpus uploaded at once on the Classify page: each bad
    file is one error line naming it, every good file still gets its result,
    and the app raises nothing. (The one-hour file is over the upload limit.)"""
    from test_app import no_exceptions, open_page

    small = [c for c in corpus if c.name != "one_hour.wav"]
    files = [(c.path.name, c.path.read_bytes(), "application/octet-stream") for c in small]
    open_page(app, "classify")
    app.file_uploader(key="classify_files").set_value(files).run()
    no_exceptions(app)
    errors = [e.value for e in app.error]
    assert all("\n" not in e for e in errors)
    shown = {s.value for s in app.subheader}
    for c in small:
        named = [e for e in errors if e.startswith(c.path.name + ":")]
        if c.expect is OK:
            assert c.path.name in shown and not named, (c.name, named)
        elif c.expect != "either":
            assert len(named) == 1 and c.path.name not in shown, (c.name, errors)
    # Nothing else broke: the next page still renders.
    app.switch_page("pages/overview.py").run()
    no_exceptions(app)
