"""Five-layer fully convolutional network."""

from __future__ import annotations

import torch
from torch import nn

from core.config import FeatureConfig
from core.models.base import FrequencyNorm, GenreModel, conv_block, init_head


class CNN(GenreModel):
    """FCN after Choi, Fazekas & Sandler, "Automatic tagging using deep
    convolutional neural networks", ISMIR 2016, as used by Adiyansjah,
    Gunawan & Suhartono, "Music Recommender System Based on Genre using
    Convolutional Recurrent Neural Networks", Procedia Computer Science 157
    (2019).

    Five 3×3 conv layers (stride 1, same padding) with batch norm, ReLU and
    max pooling; frequency is pooled to one band, time is max-pooled over
    the remaining frames so any chunk length works. The pooled vector is the
    embedding; a linear layer with sigmoid gives the genre probabilities.
    """

    name = "cnn"
    # Choi et al. use 64-128-128-192-256; halved so training fits a 2-core CPU budget.
    channels = (32, 64, 64, 128, 128)
    pools = ((2, 2), (2, 2), (2, 2), (3, 2), (4, 2))

    def __init__(self, labels: list[str], cfg: FeatureConfig | None = None, dropout: float = 0.3):
        super().__init__(labels, cfg or FeatureConfig())
        if self.cfg.n_mels != 96:
            raise ValueError("the CNN's pooling is laid out for 96 mel bands")
        self.input_bn = FrequencyNorm(self.cfg.n_mels)
        blocks, c_in = [], 1
        for c_out, pool in zip(self.channels, self.pools):
            blocks.append(conv_block(c_in, c_out, pool))
            c_in = c_out
        self.convs = nn.Sequential(*blocks)
        self.embedding_dim = c_in
        self.head_dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, len(self.labels))
        init_head(self.head)

    def embed_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        x = self.convs(self.input_bn(logmel))       # (B, C, 1, T')
        return x.amax(dim=(2, 3))                   # global max over time
