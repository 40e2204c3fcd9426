"""A linear genre head over frozen pretrained features, chosen leave-one-source-out.

:class:`FusedMSD` keeps every pretrained layer of MSD-VGG frozen (the
shared trunk, conv 5 and the 50-tag layer, all from the ``musicnn``
wheel) and trains only a standardised linear layer (multinomial logistic
regression, :mod:`core.training.linear_head`) on the clip's pooled
features: pool-5 mean and max over time and the 50 MSD tags averaged over
3 s (306 values). Its choices (features, ``C``, temperature) are made on
leave-one-source-out folds (:mod:`core.training.loso_eval`), not on the
in-source val split. It shares the trunk pass with ``cnn_msd`` and
``crnn_msd`` (:func:`~core.models.transfer.trunk_group`).

The embedding (for the recommender) is the standardised feature vector,
``(x − mean) / scale`` ``(B, 306)``, so no raw unit dominates its cosine.
"""

from __future__ import annotations

import numpy as np
import torch

from core.config import FeatureConfig
from core.models.transfer import CNNMSD, TRUNK_PREFIX


class FusedMSD(CNNMSD):
    """Frozen MSD-VGG (trunk, conv 5, tag layer) → pooled features → standardise
    → linear genre layer. Log-mel ``(B, 1, 96, T)`` → logits ``(B, G)``."""

    name = "fused"
    pretrained_prefixes = ()
    # Conv 5 and the tag layer stay frozen too: rebuilt from the wheel like the
    # trunk, so the artifact holds only the standardiser, head and temperature.
    frozen_prefixes = (TRUNK_PREFIX, "block5", "dense")
    # Its temperature is fitted leave-one-source-out (core.training.fused_train);
    # ``python -m core calibrate`` keeps it instead of refitting on in-source val.
    fixed_temperature = True

    def __init__(self, labels: list[str], cfg: FeatureConfig | None = None, pretrained: bool = True):
        super().__init__(labels, cfg, pretrained, dropout=0.0)
        del self.head_norm, self.head_dropout
        self.block5.requires_grad_(False).eval()   # frozen, with its pretrained batch-norm statistics
        self.dense.requires_grad_(False)
        d = self.embedding_dim
        self.register_buffer("feat_mean", torch.zeros(d))
        self.register_buffer("feat_scale", torch.ones(d))

    def train(self, mode: bool = True):
        super().train(mode)
        self.block5.eval()     # frozen batch-norm statistics of the pretrained conv 5
        return self

    def embed_trunk(self, feats: torch.Tensor) -> torch.Tensor:
        """Trunk output ``(B, 128, 6, T4)`` → standardised pooled features ``(B, 306)``."""
        raw = super().embed_trunk(feats)
        return (raw - self.feat_mean) / self.feat_scale

    def classify_embedding(self, emb: torch.Tensor) -> torch.Tensor:
        return self.head(emb)

    def set_head(self, mean: np.ndarray, scale: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                 temperature: float = 1.0) -> None:
        """Load a fitted :class:`~core.training.linear_head.LinearHead`'s arrays:
        ``mean``, ``scale`` ``(306,)``, ``weight`` ``(G, 306)``, ``bias`` ``(G,)``."""
        if weight.shape != (len(self.labels), self.embedding_dim):
            raise ValueError(f"head weight {weight.shape} does not fit "
                             f"({len(self.labels)}, {self.embedding_dim})")
        copy_linear_head(self, mean, scale, weight, bias, temperature)


def copy_linear_head(model, mean, scale, weight, bias, temperature: float) -> None:
    """Copy a fitted standardised linear head's arrays into ``model``'s
    ``feat_mean``, ``feat_scale`` ``(D,)``, ``head`` (``weight (G, D)``,
    ``bias (G,)``) and ``temperature`` (shapes checked by the caller)."""
    f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        model.feat_mean.copy_(f(mean))
        model.feat_scale.copy_(f(scale))
        model.head.weight.copy_(f(weight))
        model.head.bias.copy_(f(bias))
        model.temperature.fill_(float(temperature))


__all__ = ["FusedMSD", "copy_linear_head"]
