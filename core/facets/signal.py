"""Facets read off a log-mel: tempo with a confidence, loudness and energy.

Every function takes the log-mel the models already see (one clip,
``(n_mels, frames)``, compressed as its :class:`~core.config.FeatureConfig`
says), so a facet costs no second decode and a cached log-mel gives the same
facet as a fresh one.

* **tempo** — spectral-flux onset strength on the dB mel and its
  autocorrelation under librosa's log-normal tempo prior (around 120 BPM);
  **confidence** is the normalised autocorrelation of the onset envelope at
  that beat period (1: every onset falls where the period says, 0: no
  periodicity), so a click track scores near 1 and noise near 0. Plain
  numpy: librosa's versions compile with numba in every new worker process.
* **loudness** — mean mel power in dB (re full scale, relative), only from a
  front-end that keeps the file's level (``target_rms_db is None``; a model's
  ``level_db`` step comes after the cached log-mel and does not count); NaN
  otherwise, rather than a number that normalisation made meaningless.
* **energy** — mean positive spectral flux (onset strength, dB per frame):
  how much the sound changes, independent of the mastering level.
"""

from __future__ import annotations

import numpy as np

from core.audio.features import to_db
from core.config import FeatureConfig

TEMPO_MIN, TEMPO_MAX = 40.0, 240.0


def frame_rate(cfg: FeatureConfig) -> float:
    return cfg.sample_rate / cfg.hop_length


def onset_envelope(db: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """dB mel ``(n_mels, T)`` → onset strength ``(T,)``: librosa's spectral
    flux (mean over bands of the positive dB rise from the previous frame,
    floored 80 dB below the peak), in numpy (librosa's own version compiles
    with numba in every new worker process)."""
    db = np.maximum(db, db.max() - 80.0)
    flux = np.maximum(np.diff(db, axis=1), 0.0).mean(0)
    return np.concatenate([[0.0], flux]).astype(np.float32)


def tempo(env: np.ndarray, cfg: FeatureConfig) -> tuple[float, float]:
    """Onset envelope ``(T,)`` → ``(bpm, confidence in [0, 1])``; ``(0, 0)``
    without periodic onsets. The beat period is the lag that maximises the
    envelope's normalised autocorrelation times librosa's log-normal tempo
    prior (centre 120 BPM, one octave s.d.), refined by a parabola through
    its neighbours; the confidence is the autocorrelation at that lag."""
    fr = frame_rate(cfg)
    lo_lag, hi_lag = int(np.ceil(60.0 * fr / TEMPO_MAX)), int(np.floor(60.0 * fr / TEMPO_MIN))
    if len(env) < 2 * hi_lag or not np.any(env > 0):
        return 0.0, 0.0
    # A 3-frame smoothing: a period between two frame lags still correlates.
    x = np.convolve(env, [0.25, 0.5, 0.25], mode="same")
    x = x - x.mean()
    n = 1 << (2 * len(x) - 1).bit_length()
    ac = np.fft.irfft(np.abs(np.fft.rfft(x, n)) ** 2, n)[: hi_lag + 2]
    if ac[0] <= 0:
        return 0.0, 0.0
    ac = ac / ac[0] * len(x) / (len(x) - np.arange(len(ac)))      # unbiased: each lag's own overlap
    lags = np.arange(max(lo_lag, 2), hi_lag + 1)
    prior = np.exp(-0.5 * np.log2(60.0 * fr / lags / 120.0) ** 2)
    best = int(lags[np.argmax(np.maximum(ac[lags], 0) * prior)])
    a, b, c = ac[best - 1], ac[best], ac[best + 1]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) < 0 else 0.0
    bpm = float(np.clip(60.0 * fr / (best + float(np.clip(shift, -0.5, 0.5))), TEMPO_MIN, TEMPO_MAX))
    return bpm, float(np.clip(b, 0.0, 1.0))


def signal_facets(logmel: np.ndarray, cfg: FeatureConfig) -> dict[str, float]:
    """One clip's log-mel ``(n_mels, T)`` → ``tempo_bpm``, ``tempo_conf``,
    ``energy`` (and ``loudness_db`` when ``cfg`` keeps the level, else NaN)."""
    db = to_db(np.asarray(logmel, np.float32), cfg)
    env = onset_envelope(db, cfg)
    bpm, conf = tempo(env, cfg)
    loud = float("nan")
    if cfg.target_rms_db is None:
        power = 10.0 ** (db / 10.0)
        loud = float(10.0 * np.log10(max(float(power.mean()), cfg.amin)))
    return {"tempo_bpm": round(bpm, 2), "tempo_conf": conf, "energy": float(env.mean()) if len(env) else 0.0,
            "loudness_db": loud}
