"""How each shipped model holds up on degraded audio: the reviewers' "noisy
real-world audio", measured (``python -m core robustness``;
``artifacts/robustness.json``; the model card's "Robustness" section).

Each clip of a split is decoded once at
:data:`~core.audio.augment.AUGMENT_RATE`, passed through each fixed
degradation of :data:`DEGRADATIONS` (the steps of :mod:`core.audio.augment`
at one setting each, harsher than training's draws), written as WAV bytes and
analysed as an upload is (:func:`core.models.inference.analyse`: the app's
decode → log-mel → served models path). ``clean`` is the same route with no
degradation, so every difference is the degradation's.

Per model and degradation: accuracy and macro ROC-AUC of the calibrated
distribution; ``agreement``, the share of clips whose top genre is the one
the model gives the clean clip; and accuracy minus clean with a paired
bootstrap 95 % interval over clips. Reported, not chosen from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from core.audio import augment as A
from core.audio.augment import AUGMENT_RATE
from core.errors import GenreError
from core.types import Progress

CLEAN = "clean"


@dataclass(frozen=True)
class Degradation:
    """One fixed degradation: ``apply(y (samples,), sr, rng)`` → same length and rate."""

    name: str
    apply: Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


DEGRADATIONS: tuple[Degradation, ...] = (
    Degradation("MP3 at 64 kbit/s", lambda y, sr, rng: A.reencode(y, sr, "mp3", 64)),
    Degradation("telephone band (300–3400 Hz)", lambda y, sr, rng: A.band_limit(y, sr, 300.0, 3400.0)),
    Degradation("through 8 kHz", lambda y, sr, rng: A.resample_through(y, sr, 8000)),
    Degradation("pink noise at 20 dB SNR", lambda y, sr, rng: A.add_noise(y, 20.0, rng)),
    Degradation("pink noise at 10 dB SNR", lambda y, sr, rng: A.add_noise(y, 10.0, rng)),
    Degradation("room reverb (RT60 0.8 s, 40 % wet)", lambda y, sr, rng: A.reverb(y, sr, 0.8, 0.4, rng)),
    Degradation("20 dB quieter", lambda y, sr, rng: A.gain_db(y, -20.0)),
)


def degraded_wavs(y: np.ndarray, degradations: Sequence[Degradation] = DEGRADATIONS,
                  seed: int = 0) -> dict[str, bytes]:
    """``{name: WAV bytes}``: ``y`` ``(samples,)`` at :data:`AUGMENT_RATE` as it
    is (:data:`CLEAN`) and through each degradation (each seeded by ``seed``
    and its position, so a clip's noise is the same in every run)."""
    out = {}
    for i, d in enumerate((None, *degradations)):
        z = y if d is None else d.apply(y.copy(), AUGMENT_RATE, np.random.default_rng([seed, i]))
        out[CLEAN if d is None else d.name] = A.wav_bytes(np.clip(z, -1.0, 1.0), AUGMENT_RATE)
    return out


def _scores(y: np.ndarray, probs: np.ndarray, clean: np.ndarray, n_boot: int, seed: int) -> dict:
    from core.training.metrics import macro_auc, mean_diff_ci

    right, right_clean = probs.argmax(1) == y, clean.argmax(1) == y
    delta, ci = mean_diff_ci(right.astype(float) - right_clean, n_boot, seed)
    return {"accuracy": float(right.mean()), "macro_auc": macro_auc(y, probs),
            "agreement": float((probs.argmax(1) == clean.argmax(1)).mean()),
            "delta_accuracy": delta, "ci95": ci}


def robustness(data_dirs: Sequence[str | Path], split: str = "test", artifacts_dir: str | Path | None = None,
               limit: int | None = None, seed: int = 0, n_boot: int = 1000,
               degradations: Sequence[Degradation] = DEGRADATIONS, progress: Progress | None = None) -> dict:
    """The record of the module docstring:
    ``{"split", "n_tracks", "unreadable", "degradations", "models": {name: {degradation: scores}}}``."""
    from core.audio.load import load_full
    from core.datasets import read_datasets
    from core.models.artifacts import load_models
    from core.models.inference import analyse
    from core.training.evaluate import select_split

    models = load_models(artifacts_dir, optimise=True)
    if not models:
        raise FileNotFoundError("no trained models in the artifacts folder — run `make artifacts`")
    labels = next(iter(models.values())).labels
    tracks = [t for t in select_split(read_datasets(data_dirs, labelled_only=True), split) if t.genre in labels]
    tracks = tracks[:limit] if limit else tracks
    names = [CLEAN] + [d.name for d in degradations]
    probs: dict[str, dict[str, list]] = {m: {n: [] for n in names} for m in models}
    ys, unreadable = [], []
    for i, t in enumerate(tracks):
        try:
            wavs = degraded_wavs(load_full(t.path, AUGMENT_RATE), degradations, seed)
            got = {n: analyse(w, models) for n, w in wavs.items()}
        except GenreError as e:
            unreadable.append(f"{t.track_id}: {e}")
            continue
        ys.append(labels.index(t.genre))
        for m in models:
            for n in names:
                probs[m][n].append(got[n].predictions[m].probs[0])
        if progress:
            progress(i + 1, len(tracks))
    y = np.asarray(ys, np.int64)
    out = {"split": split, "n_tracks": int(len(y)), "unreadable": unreadable, "rate": AUGMENT_RATE,
           "degradations": names, "models": {}}
    if not len(y):
        return out
    for m in models:
        p = {n: np.stack(v) for n, v in probs[m].items()}
        out["models"][m] = {n: _scores(y, p[n], p[CLEAN], n_boot, seed) for n in names}
    return out


def robustness_lines(rec: dict | None, name=lambda n: n) -> list[str]:
    """The model card's section from a :func:`robustness` record (empty without one)."""
    if not rec or not rec.get("models"):
        return []
    models = list(rec["models"])
    out = ["", f"## Robustness to degraded audio ({rec['split']} split, {rec['n_tracks']} clips)",
           "Each clip decoded at 22.05 kHz, degraded, written as WAV and analysed as an upload is "
           "(`python -m core robustness`, `robustness.json`; `core.training.robustness`). Cells: accuracy "
           "(agreement: share of clips whose top genre is the model's top genre on the clean clip); the "
           "clean row is the same route with no degradation. Reported, not chosen from.", "",
           "| degradation | " + " | ".join(name(m) for m in models) + " |", "|---|" + "---|" * len(models)]
    for d in rec["degradations"]:
        out.append(f"| {d} | " + " | ".join(f"{rec['models'][m][d]['accuracy']:.2f} "
                                            f"({rec['models'][m][d]['agreement']:.2f})" for m in models) + " |")
    out += ["", "Largest accuracy loss per model (minus clean, paired bootstrap 95 % interval over clips):", ""]
    for m in models:
        rows = {d: r for d, r in rec["models"][m].items() if d != CLEAN}
        d = min(rows, key=lambda k: rows[k]["delta_accuracy"])
        lo, hi = rows[d]["ci95"]
        out.append(f"- {name(m)}: {d}, {rows[d]['delta_accuracy']:+.2f} [{lo:+.2f}, {hi:+.2f}]")
    return out


__all__ = ["CLEAN", "DEGRADATIONS", "Degradation", "degraded_wavs", "robustness", "robustness_lines"]
