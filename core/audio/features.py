"""Log-mel front-end (torch) and window / chunk helpers.

:func:`logmels` is the one log-mel of the project: the cache, training,
evaluation, batch indexing and the app's analysis all compute with it, so a
file's log-mel is the same numbers on every path, computed or cached.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.audio.melbank import mel_filterbank
from core.audio.melbank import mel_frequencies as _mel_hz
from core.config import FeatureConfig

_F16_MAX = 65504.0


def compress(mel_power: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """Mel power → the compressed magnitude the models see (``cfg.compression``)."""
    if cfg.power_float16:
        mel_power = mel_power.clamp(max=_F16_MAX).half().float()
    if cfg.compression == "db":
        db = 10.0 * torch.log10(torch.clamp(mel_power, min=cfg.amin))
        return (db + cfg.db_offset) * cfg.db_scale
    if cfg.compression == "log1p":
        return torch.log10(cfg.log_c * mel_power + 1.0)
    raise ValueError(f"unknown compression {cfg.compression!r} (use 'db' or 'log1p')")


def to_db(logmel: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Undo :func:`compress` as far as needed for dB displays and MFCCs: dB re 1."""
    x = np.asarray(logmel, dtype=np.float32)
    if cfg.compression == "db":
        return x / cfg.db_scale - cfg.db_offset
    return 10.0 * np.log10(np.maximum((10.0 ** x - 1.0) / cfg.log_c, cfg.amin))


def normalise_level(logmel: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """A model's level normalisation (``cfg.level_db``; None returns ``logmel``).

    ``logmel``: ``log1p`` log-mels ``(..., n_mels, T)``, one clip per
    ``(n_mels, T)``. Each clip's mel power P is scaled so that its mean over
    bands and frames is ``cfg.level_db`` dB. This equals a gain on the
    waveform before the log-mel (the STFT is linear), up to the storage
    rounding. It runs after the cache, so cached log-mels and the loudness
    facet keep the file's level. Same shape and dtype out.
    """
    if cfg.level_db is None:
        return logmel
    if cfg.compression != "log1p":
        raise ValueError("level normalisation of a log-mel needs compression='log1p'")
    cp = (torch.pow(10.0, logmel.float()) - 1.0).clamp_min(0.0)          # log_c · P
    mean = cp.mean(dim=(-2, -1), keepdim=True) / cfg.log_c
    gain = 10.0 ** (cfg.level_db / 10.0) / mean.clamp_min(cfg.amin)
    return torch.log10(cp * gain + 1.0).to(logmel.dtype)


class LogMelFrontEnd(nn.Module):
    """Waveform ``(batch, samples)`` → log-mel ``(batch, 1, n_mels, frames)``.

    STFT with a Hann window, power spectrum, Slaney mel filterbank (as
    librosa), then :func:`compress` (``10·log10`` with a floor, shifted and
    scaled to about unit range, or musicnn's ``log10(C·P + 1)``).
    """

    def __init__(self, cfg: FeatureConfig):
        super().__init__()
        self.cfg = cfg
        # librosa.filters.mel's numbers, without its scipy.signal import (core.audio.melbank).
        mel = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)
        # Non-persistent: derived from the config, so never stored in weights.
        self.register_buffer("mel_basis", torch.from_numpy(mel).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        spec = torch.stft(wave, n_fft=self.cfg.n_fft, hop_length=self.cfg.hop_length,
                          window=self.window, center=True, pad_mode="constant",
                          return_complex=True)
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(self.mel_basis, power)
        return compress(mel, self.cfg)[:, None, :, : self.cfg.n_frames]


_FRONTENDS: dict[str, LogMelFrontEnd] = {}


def frontend_for(cfg: FeatureConfig) -> LogMelFrontEnd:
    """A shared :class:`LogMelFrontEnd` per feature config (its filterbank is
    built once per process; the module holds no state that changes)."""
    key = cfg.key()
    if key not in _FRONTENDS:
        _FRONTENDS[key] = LogMelFrontEnd(cfg)
    return _FRONTENDS[key]


# The precision log-mels are stored (and therefore used) at: half the disk
# of float32; the models were trained on log-mels cached at this precision.
LOGMEL_DTYPE = np.float16


def logmels(waves: np.ndarray | torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """Waveforms ``(B, samples)`` (or one, ``(samples,)``) at ``cfg.sample_rate``
    → log-mels ``(B, 1, n_mels, n_frames)`` float32, rounded to
    :data:`LOGMEL_DTYPE`.

    Rounded here, not only when cached, so a log-mel computed now and one
    read back from the cache are equal bit for bit, and a track gets the same
    probabilities and embedding on every path and every run.
    """
    x = torch.as_tensor(np.asarray(waves, dtype=np.float32))
    with torch.no_grad():
        out = frontend_for(cfg)(x)
    return out.half().float()   # .half(): LOGMEL_DTYPE, with numpy's round-to-nearest-even


def mel_frequencies(cfg: FeatureConfig) -> np.ndarray:
    """Centre frequency in Hz of each mel band (for plot axes)."""
    return _mel_hz(cfg.n_mels, cfg.f_min, cfg.f_max or cfg.sample_rate / 2)


def frame_times(cfg: FeatureConfig, n_frames: int | None = None) -> np.ndarray:
    """Time in seconds of each log-mel frame."""
    n = cfg.n_frames if n_frames is None else n_frames
    return np.arange(n) * cfg.hop_length / cfg.sample_rate


def window_starts(n_frames: int, chunk: int, hop: int) -> list[int]:
    """Start frames of inference windows covering ``n_frames`` (last one flush)."""
    if n_frames <= chunk:
        return [0]
    starts = list(range(0, n_frames - chunk + 1, hop))
    if starts[-1] != n_frames - chunk:
        starts.append(n_frames - chunk)
    return starts


def split_windows(logmel: torch.Tensor, chunk: int, hop: int) -> tuple[torch.Tensor, list[int]]:
    """``(B, 1, M, T)`` → ``(B·W, 1, M, chunk)`` windows and their start frames."""
    t = logmel.shape[-1]
    if t < chunk:
        reps = -(-chunk // t)
        logmel = logmel.repeat(1, 1, 1, reps)[..., :chunk]
        t = chunk
    starts = window_starts(t, chunk, hop)
    wins = torch.stack([logmel[..., s: s + chunk] for s in starts], dim=1)
    return wins.reshape(-1, *wins.shape[2:]), starts


def random_chunks(logmels: torch.Tensor, chunk: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random ``chunk``-frame crop per item of ``(B, 1, M, T)``."""
    b, _, _, t = logmels.shape
    if t <= chunk:
        return logmels
    starts = torch.randint(0, t - chunk + 1, (b,), generator=generator)
    return torch.stack([logmels[i, :, :, s: s + chunk] for i, s in enumerate(starts.tolist())])
