"""The benchmark's inputs: audio files spread over the data folders, or
generated MP3 clips, and the shipped models (or untrained ones of the same
architecture)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks.config import Log
from core.config import Paths


def pick_files(dirs: list[Path], limit: int) -> list[Path]:
    """``limit`` audio files spread evenly over the sorted files of ``dirs``."""
    from core.audio.load import is_supported_name

    files = sorted(p for d in dirs for p in Path(d).rglob("*") if p.is_file() and is_supported_name(p.name))
    if len(files) <= limit:
        return files
    idx = np.linspace(0, len(files) - 1, limit).round().astype(int)
    return [files[i] for i in idx]


def generate_clips(out: Path, n: int, seconds: float = 30.0, sr: int = 22_050, seed: int = 0) -> list[Path]:
    """``n`` MP3 clips of generated music-like audio (tones, noise bursts,
    clicks), like the real data: mono, 22.05 kHz, ``seconds`` long."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        y = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in range(1, 6))
        beat = (np.sin(2 * np.pi * rng.uniform(1, 3) * t) > 0.9).astype(float)
        y = y * (0.5 + 0.5 * beat) + 0.3 * rng.standard_normal(t.size) * beat
        y = (0.3 * y / np.abs(y).max()).astype(np.float32)
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
