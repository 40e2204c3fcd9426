"""The benchmark's inputs: audio files spread over the data folders, or
generated MP3 clips, and the shipped models (or untrained ones of the same
architecture)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks.config import Log
from core.config import Paths


class NoAudioError(ValueError):
    """A ``--data`` folder with no audio file to benchmark (the bench never
    substitutes generated clips for a folder it was given)."""


def pick_files(dirs: list[Path], limit: int) -> list[Path]:
    """``limit`` audio files spread evenly over the sorted files of ``dirs``,
    read through the data-set readers (``core.datasets.read_dataset``: a
    metadata folder's listed files, wherever they are, symbolic links
    included). A folder without one existing audio file is a
    :class:`NoAudioError` naming it."""
    from core.datasets import read_dataset

    files: list[Path] = []
    for d in dirs:
        found = sorted({Path(t.path) for t in read_dataset(d) if Path(t.path).is_file()})
        if not found:
            raise NoAudioError(f"{d}: no audio files found")
        files += found
    files = sorted(files)
    if len(files) <= limit:
        return files
    idx = np.linspace(0, len(files) - 1, limit).round().astype(int)
    return [files[i] for i in idx]


def music_like(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``seconds`` of music-like mono float32 (a harmonic tone, a pulse, noise bursts)."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
    y = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in range(1, 6))
    beat = (np.sin(2 * np.pi * rng.uniform(1, 3) * t) > 0.9).astype(float)
    y = y * (0.5 + 0.5 * beat) + 0.3 * rng.standard_normal(t.size) * beat
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def generate_clips(out: Path, n: int, seconds: float = 30.0, sr: int = 22_050, seed: int = 0) -> list[Path]:
    """``n`` MP3 clips of generated music-like audio (tones, noise bursts,
    clicks), like the real data: mono, 22.05 kHz, ``seconds`` long."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        y = music_like(seconds, sr, rng)
        p = out / f"clip_{i:03d}.mp3"
        sf.write(str(p), y, sr, format="MP3")
        paths.append(p)
    return paths


def write_metadata(folder: Path, paths: list[Path], genres: tuple[str, ...] = ("Tones", "Pulses")) -> Path:
    """``folder/metadata.csv`` for generated clips (genres in turn), so the
    app can read them as a catalog."""
    import csv

    with open(folder / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["track_id", "path", "genre"])
        for i, p in enumerate(paths):
            w.writerow([p.stem, str(Path(p).relative_to(folder)), genres[i % len(genres)]])
    return folder


def bench_models(artifacts: Path | None, log: Log):
    """The shipped models, or untrained ones of the same architecture (same
    compute cost) when no artifacts exist yet. Returns (models, source, dir)."""
    from core.models import build_model
    from core.models.artifacts import ArtifactError, load_models, save_model, update_manifest

    try:
        models = load_models(artifacts)
        if models:
            return models, "artifacts", Path(artifacts or Paths().artifacts)
    except ArtifactError as exc:
        log(f"artifacts unusable ({exc}); timing untrained models of the same architecture")
    import torch

    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench_models_"))
    from core.models import MODELS

    labels = [f"genre{i}" for i in range(11)]
    for name in MODELS:
        try:
            m = build_model(name, labels)
        except ArtifactError:       # no musicnn wheel: same cost, random trunk
            m = build_model(name, labels, pretrained=False)
        save_model(m, tmp)
    update_manifest(tmp)
    return load_models(tmp), "untrained (no artifacts found)", tmp
