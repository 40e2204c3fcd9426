"""Convolutional recurrent network."""

from __future__ import annotations

import torch
from torch import nn

from core.config import FeatureConfig
from core.models.base import FrequencyNorm, GenreModel, conv_block, init_head


class CRNN(GenreModel):
    """CRNN after Choi, Fazekas, Sandler & Cho, "Convolutional recurrent
    neural networks for music classification", ICASSP 2017, as used by
    Adiyansjah, Gunawan & Suhartono, "Music Recommender System Based on Genre
    using Convolutional Recurrent Neural Networks", Procedia Computer Science
    157 (2019).

    Four 3×3 conv layers with batch norm, ReLU, max pooling
    (2×2)-(3×3)-(4×4)-(4×4) and dropout 0.1 reduce 96 mel bands to one; the
    remaining time steps feed two GRU layers. The last GRU state is the
    embedding; a linear layer with sigmoid gives the genre probabilities.
    """

    name = "crnn"
    # Choi et al. use 64-128-128-128; halved so training fits a 2-core CPU budget.
    channels = (32, 64, 64, 64)
    pools = ((2, 2), (3, 3), (4, 4), (4, 4))

    def __init__(self, labels: list[str], cfg: FeatureConfig | None = None,
                 gru_hidden: int = 32, dropout: float = 0.3):
        super().__init__(labels, cfg or FeatureConfig())
        if self.cfg.n_mels != 96:
            raise ValueError("the CRNN's pooling is laid out for 96 mel bands")
        self.input_bn = FrequencyNorm(self.cfg.n_mels)
        blocks, c_in = [], 1
        for c_out, pool in zip(self.channels, self.pools):
            blocks.append(conv_block(c_in, c_out, pool, dropout=0.1))
            c_in = c_out
        self.convs = nn.Sequential(*blocks)
        self.gru = nn.GRU(c_in, gru_hidden, num_layers=2, batch_first=True)
        self.embedding_dim = gru_hidden
        self.head_dropout = nn.Dropout(dropout)
        self.head = nn.Linear(gru_hidden, len(self.labels))
        init_head(self.head)

    def conv_sequence(self, logmel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(B, 1, 96, T)`` → the conv stack's output as a sequence ``(B, T', C)``."""
        x = self.convs(self.input_bn(logmel))       # (B, C, 1, T')
        return x.squeeze(2).transpose(1, 2)

    def embed_sequence(self, seq: torch.Tensor) -> torch.Tensor:
        """Conv sequence ``(B, T', C)`` → the last GRU state ``(B, gru_hidden)`` (the embedding)."""
        out, _ = self.gru(seq)
        return out[:, -1]

    def embed_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.embed_sequence(self.conv_sequence(logmel))
