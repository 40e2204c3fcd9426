"""Shared fixtures: small generated audio (tones, noise, clicks), a tiny
labelled data folder and untrained-but-valid model artifacts."""

from __future__ import annotations

import csv
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.config import FeatureConfig, shared_data_dirs

# Tests never write into the project's own log-mel cache.
os.environ.setdefault("GENRE_CACHE", tempfile.mkdtemp(prefix="genre-test-cache-"))

SR = 22_050


def synth(kind: str, seconds: float = 3.0, sr: int = SR, seed: int = 0,
          channels: int = 1) -> np.ndarray:
    """Generated test signal: 'tone' (harmonic), 'noise', 'clicks' or 'chirp'."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    if kind == "tone":
        f0 = 220 * (1 + seed % 5)
        y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5))
    elif kind == "noise":
        y = rng.standard_normal(t.size)
    elif kind == "clicks":
        y = np.zeros(t.size)
        y[:: sr // (4 + seed % 4)] = 1.0
        y = np.convolve(y, np.exp(-np.arange(200) / 20), mode="same")
    elif kind == "chirp":
        y = np.sin(2 * np.pi * (200 + 800 * t / seconds) * t)
    else:
        raise ValueError(kind)
    y = 0.3 * y / (np.abs(y).max() + 1e-9)
    y = y.astype(np.float32)
    return np.stack([y] * channels, axis=1) if channels > 1 else y


def write_audio(path: Path, y: np.ndarray, sr: int = SR, fmt: str | None = None) -> Path:
    """Write ``y`` as WAV/FLAC/OGG/MP3 (by extension) with libsndfile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, sr, format=fmt or path.suffix.lstrip(".").upper())
    return path


GENRES = {"Tones": "tone", "Noise": "noise", "Clicks": "clicks"}


def make_dataset(root: Path, per_genre: int = 6, seconds: float = 3.0, fmt: str = "mp3") -> Path:
    """A metadata.csv data folder: 3 genres of generated audio, 4:1:1 split."""
    rows = []
    for genre, kind in GENRES.items():
        for i in range(per_genre):
            rel = Path("audio") / genre / f"{genre.lower()}_{i:02d}.{fmt}"
            write_audio(root / rel, synth(kind, seconds, seed=i))
            split = "test" if i == 0 else "val" if i == 1 else "train"
            rows.append({"track_id": f"{genre.lower()}_{i:02d}", "path": str(rel), "genre": genre,
                         "split": split, "artist": f"{genre} artist {i % 3}",
                         "title": f"{genre} piece {i}"})
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tinydata"))


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory) -> Path:
    """Untrained CNN and CRNN saved like the shipped artifacts (with manifest)."""
    import torch

    from core.models import build_model
    from core.models.artifacts import save_model, update_manifest

    out = tmp_path_factory.mktemp("artifacts")
    torch.manual_seed(0)
    for name in ("cnn", "crnn"):
        save_model(build_model(name, list(GENRES), FeatureConfig()), out)
    update_manifest(out)
    return out


@pytest.fixture
def tone_wav(tmp_path) -> Path:
    return write_audio(tmp_path / "tone.wav", synth("tone", 3.0))


@pytest.fixture
def tone_mp3(tmp_path) -> Path:
    return write_audio(tmp_path / "tone.mp3", synth("tone", 3.0))


REAL_DATA = shared_data_dirs()
real_data = pytest.mark.skipif(not REAL_DATA, reason="../shared/data not available")


def pytest_sessionfinish(session, exitstatus):
    """No process of the project outlives the suite: fail the run if any child
    process of this pytest (pool workers, Ray daemons, servers) is still alive
    a few seconds after the last test."""
    from core.procs import child_processes, wait_until_none

    left = wait_until_none(child_processes, 10)
    if left:
        lines = []
        for p in left:
            try:
                lines.append(f"  pid {p.pid}: {' '.join(p.cmdline())[:200]}")
            except Exception:  # noqa: BLE001 — it may exit while we look
                lines.append(f"  pid {p.pid}")
        sys.stderr.write("\nprocesses left running after the test suite:\n" + "\n".join(lines) + "\n")
        session.exitstatus = 1
