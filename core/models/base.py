"""Shared behaviour of the genre classifiers: waveform in, probabilities and
embedding out, window averaging for tracks longer than a training chunk."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.audio.features import logmels, split_windows
from core.config import FeatureConfig


@dataclass
class Prediction:
    """Output of a model on a batch of tracks (numpy, one row per track).

    ``probs`` is what the app, CLI, index and evaluation use: a calibrated
    distribution over genres, ``softmax(mean window logit / T)`` with the
    temperature ``T`` fitted on validation data. ``sigmoid`` keeps the
    paper's independent per-genre sigmoid outputs (window-averaged).
    """

    probs: np.ndarray          # (B, G) calibrated genre distribution (rows sum to 1)
    embedding: np.ndarray      # (B, D) penultimate-layer features, window-averaged
    window_probs: np.ndarray   # (B, W, G) per-window calibrated distributions
    window_starts: list[int]   # start frame (log-mel frames) of each window
    sigmoid: np.ndarray | None = None   # (B, G) the paper's sigmoid outputs
    logits: np.ndarray | None = None    # (B, G) window-averaged logits


def hash_state(h, module: nn.Module, as_float: bool = False):
    """Feed ``module``'s ``state_dict`` (sorted names and raw bytes; ``as_float``:
    every tensor as float32 first) into the hashlib object ``h``; returns ``h``."""
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        v = v.detach().float() if as_float else v.detach()
        h.update(v.cpu().contiguous().numpy().tobytes())
    return h


class GenreModel(nn.Module):
    """Base class: the label list, the feature settings and window averaging.

    Subclasses implement :meth:`embed_logmel` (chunk → penultimate features);
    the final linear layer + sigmoid gives independent genre probabilities,
    trained with binary cross-entropy as in the paper.
    """

    name = "base"
    embedding_dim = 0

    def __init__(self, labels: list[str], cfg: FeatureConfig):
        super().__init__()
        if not labels:
            raise ValueError("a model needs at least one genre label")
        self.labels = list(labels)
        self.cfg = cfg
        # Calibration temperature (fitted on val by core.training.calibration); 1 = none.
        self.register_buffer("temperature", torch.ones(()))

    def embed_logmel(self, logmel: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def classify_embedding(self, emb: torch.Tensor) -> torch.Tensor:
        """Penultimate features → genre logits."""
        return self.head(self.head_dropout(emb))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        """Log-mel chunk ``(B, 1, M, T)`` → genre logits ``(B, G)``."""
        return self.classify_embedding(self.embed_logmel(logmel))

    def window_outputs(self, logmel: torch.Tensor, batch_windows: int = 64,
                       hop: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Sliding windows of ``cfg.chunk_frames`` (``hop`` frames apart;
        default from the feature config) → embeddings ``(B, W, D)``, logits
        ``(B, W, G)`` and the windows' start frames."""
        b = logmel.shape[0]
        wins, starts = split_windows(logmel, self.cfg.chunk_frames, hop or self.cfg.window_hop_frames)
        embs, logits = [], []
        for i in range(0, wins.shape[0], batch_windows):
            e = self.embed_logmel(wins[i: i + batch_windows])
            embs.append(e)
            logits.append(self.classify_embedding(e))
        return (torch.cat(embs).reshape(b, len(starts), -1),
                torch.cat(logits).reshape(b, len(starts), -1), starts)

    @torch.inference_mode()
    def predict_logmel(self, logmel: torch.Tensor, batch_windows: int = 64,
                       hop: int | None = None) -> Prediction:
        """Log-mel ``(B, 1, M, T)`` → :class:`Prediction`, averaged over windows."""
        was_training = self.training
        self.eval()
        emb, logits, starts = self.window_outputs(logmel.to(self.temperature.device), batch_windows, hop)
        self.train(was_training)
        return self.prediction(emb, logits, starts)

    def prediction(self, emb: torch.Tensor, logits: torch.Tensor, starts: list[int]) -> Prediction:
        """Window outputs ``(B, W, ·)`` → :class:`Prediction` (calibrated ``probs``)."""
        emb, logits = emb.float().cpu(), logits.float().cpu()
        t = self.temperature.clamp(min=1e-3).cpu()
        mean_logit = logits.mean(1)
        return Prediction(probs=torch.softmax(mean_logit / t, -1).numpy(),
                          embedding=emb.float().mean(1).numpy(),
                          window_probs=torch.softmax(logits.float() / t, -1).numpy(),
                          window_starts=starts,
                          sigmoid=torch.sigmoid(logits.float()).mean(1).numpy(),
                          logits=mean_logit.numpy())

    def logmel(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Waveform(s) → log-mel ``(B, 1, M, T)`` of this model's settings: the
        project's one log-mel (:func:`core.audio.features.logmels`), as cached."""
        return logmels(wave, self.cfg)

    def predict(self, wave: np.ndarray | torch.Tensor) -> Prediction:
        """Waveform ``(samples,)`` or ``(B, samples)`` → :class:`Prediction`."""
        return self.predict_logmel(self.logmel(wave))

    def fingerprint(self) -> str:
        """Short hash of weights, labels and feature settings: embeddings from
        different fingerprints must never be compared. Inference-only copies
        (:func:`core.models.optimise.optimise_for_inference`) keep their source's
        fingerprint, since they compute the same vectors."""
        if getattr(self, "_fingerprint", None):
            return self._fingerprint
        h = hashlib.sha256()
        h.update(json.dumps([self.name, list(self.labels), self.cfg.to_dict()], sort_keys=True).encode())
        return hash_state(h, self).hexdigest()[:16]

    def saved_state(self) -> dict[str, torch.Tensor]:
        """The tensors written to the model's safetensors file (all of them
        here; pretrained models leave out layers they rebuild from elsewhere)."""
        return {k: v.detach().contiguous() for k, v in self.state_dict().items()}

    def load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`saved_state`. Files written before calibration
        existed have no ``temperature``: they load uncalibrated (T = 1)."""
        state = dict(state)
        state.setdefault("temperature", torch.ones(()))
        self.load_state_dict(state)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class FrequencyNorm(nn.Module):
    """Batch norm per mel band (Choi et al. normalise the input along frequency):
    low bands are far louder than high ones, so one shared scale would let the
    bass dominate the first layer."""

    def __init__(self, n_mels: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(n_mels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.squeeze(1)).unsqueeze(1)


def init_head(head: nn.Linear) -> None:
    """Start the output at the uniform prior (p = 1/G per genre) so the first
    updates learn genre, not the label frequency."""
    g = head.out_features
    nn.init.constant_(head.bias, float(torch.log(torch.tensor(1.0 / max(g - 1, 1)))))


def conv_block(c_in: int, c_out: int, pool: tuple[int, int], dropout: float = 0.0) -> nn.Sequential:
    """3×3 conv (stride 1, same padding) → batch norm → ReLU → max pool."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(pool, ceil_mode=True),
    ]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
