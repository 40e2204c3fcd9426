"""Genre models fine-tuned from MSD-VGG (transfer learning from the Million
Song Dataset), one CNN and one CRNN, sharing one frozen pretrained trunk.

Both take the log-mel of :data:`~core.models.msd.MSD_FEATURES` (16 kHz,
musicnn's ``log10(10000·P + 1)``), run MSD-VGG's input norm and conv blocks
1–4 (frozen, :class:`~core.models.msd.MSDTrunk`) once over the whole clip,
and cut their windows out of the trunk's output ``(B, 128, 6, T4)``, so a
catalog pays for the trunk once for both models (:func:`trunk_group`).
The trunk's weights are not stored in the project's safetensors files: they
are rebuilt from the installed ``musicnn`` wheel. Their digest is part of
:meth:`trunk_key` and of the model fingerprint, so vectors computed with a
different wheel are never mixed with these in an index or a feature cache.
"""

from __future__ import annotations

import torch
from torch import nn

from core.audio.features import normalise_level
from core.config import FeatureConfig
from core.errors import ArtifactError
from core.models.base import GenreModel, init_head
from core.models.msd import (
    MSD_FEATURES,
    MSDVGG,
    N_FILTERS,
    POOLS,
    load_msd_weights,
    msd_trunk_key,
    trunk_digest,
    trunk_steps,
)

TRUNK_PREFIX = "trunk."


class _MSDGenreModel(GenreModel):
    """Shared behaviour: frozen MSD trunk, windows in trunk steps."""

    # Pretrained layers kept frozen and rebuilt from the wheel on load (not saved).
    frozen_prefixes: tuple[str, ...] = (TRUNK_PREFIX,)

    # Trunk steps per training crop and per inference window (≈ 3.9 steps/s).
    window_steps = 40
    hop_steps = 20
    uses_block5 = False     # keep MSD-VGG's fifth conv block (pretrained) as ``block5``
    uses_tags = False       # keep MSD-VGG's tag layer (pretrained, 50 MSD tags) as ``dense``
    # Pretrained layers outside the trunk: trained at a lower learning rate.
    pretrained_prefixes: tuple[str, ...] = ()

    def __init__(self, labels: list[str], cfg: FeatureConfig | None = None, pretrained: bool = True):
        super().__init__(labels, cfg or MSD_FEATURES)
        if self.cfg.n_mels != 96 or self.cfg.compression != "log1p" or self.cfg.sample_rate != 16_000:
            raise ValueError("MSD-VGG models need MSD_FEATURES (16 kHz, 96 mels, log10(10000·P + 1))")
        vgg = MSDVGG()
        if pretrained:
            load_msd_weights(vgg)
        self.trunk = vgg.trunk
        self.trunk.requires_grad_(False)
        if self.uses_block5:
            self.block5 = vgg.block5
        if self.uses_tags:
            self.dense = vgg.dense
        self.trunk_sha = self._trunk_digest()

    # The trunk stays in eval mode (frozen batch-norm statistics) even while
    # the head trains.
    def train(self, mode: bool = True):
        super().train(mode)
        self.trunk.eval()
        return self

    def _trunk_digest(self) -> str:
        return trunk_digest(self.trunk)

    def trunk_key(self) -> str:
        """Models with the same key compute identical trunk features
        (:func:`~core.models.msd.msd_trunk_key`; an inference copy's bfloat16
        trunk is part of it)."""
        return msd_trunk_key(self.cfg, self.trunk_sha, bool(getattr(self.trunk, "bfloat16", False)))

    def trunk_features(self, logmel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(B, 1, 96, T)`` (the file's level) → trunk output
        ``(B, 128, 6, T4)``, after the model's level normalisation
        (:func:`~core.audio.features.normalise_level`, ``cfg.level_db``)."""
        return self.trunk(normalise_level(logmel, self.cfg))

    def embed_trunk(self, feats: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def embed_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.embed_trunk(self.trunk_features(logmel))

    def window_outputs(self, logmel: torch.Tensor, batch_windows: int = 64,
                       hop: int | None = None):
        """Trunk once over the clip, then windows of ``window_steps`` trunk
        steps ``hop_steps`` apart."""
        return self.window_outputs_from_trunk(self.trunk_features(logmel))

    def window_outputs_from_trunk(self, feats: torch.Tensor):
        b, t = feats.shape[0], feats.shape[-1]
        win = min(self.window_steps, t)
        starts = list(range(0, t - win + 1, self.hop_steps))
        if starts[-1] != t - win:
            starts.append(t - win)
        wins = torch.stack([feats[..., s: s + win] for s in starts], 1).flatten(0, 1)
        emb = self.embed_trunk(wins)
        logits = self.classify_embedding(emb)
        frames_per_step = self.cfg.n_frames / max(trunk_steps(self.cfg.n_frames), 1)
        return (emb.reshape(b, len(starts), -1), logits.reshape(b, len(starts), -1),
                [int(round(s * frames_per_step)) for s in starts])

    @torch.inference_mode()
    def predict_trunk(self, feats: torch.Tensor):
        """:class:`~core.models.base.Prediction` from precomputed trunk features."""
        was_training = self.training
        self.eval()
        emb, logits, starts = self.window_outputs_from_trunk(feats.to(self.temperature.device))
        self.train(was_training)
        return self.prediction(emb, logits, starts)

    def saved_state(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen pretrained layers (:attr:`frozen_prefixes`),
        which are rebuilt from the ``musicnn`` wheel, never copied into the artifact."""
        return {k: v for k, v in super().saved_state().items() if not k.startswith(self.frozen_prefixes)}

    def load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        state.setdefault("temperature", torch.ones(()))
        missing, unexpected = self.load_state_dict(state, strict=False)
        bad = [k for k in missing if not k.startswith(self.frozen_prefixes)]
        if bad or unexpected:
            raise ArtifactError(f"weights do not fit {self.name}: missing {bad[:3]}, unexpected {unexpected[:3]}")


class CNNMSD(_MSDGenreModel):
    """MSD-VGG fine-tuned for genre: the five-conv CNN of Choi et al. (ISMIR
    2016) as used by Adiyansjah et al. (2019), with MSD weights from Pons &
    Serra's musicnn (2019). Blocks 1–4 frozen; block 5 (conv 3×3 → ReLU →
    BN → 4×4 max pool) and MSD-VGG's 50-tag layer, both initialised from
    MSD, and the genre head are trained. Embedding (306-d): mean and max of
    pool 5 over time, and the mean MSD tag probabilities over 3 s pairs of
    pool-5 steps (the input the tag layer was trained on)."""

    name = "cnn_msd"
    # The shipped model trains on 10 s crops and predicts on the whole clip.
    window_steps = trunk_steps(MSD_FEATURES.n_frames)
    hop_steps = window_steps
    train_steps = 40
    uses_block5 = True
    uses_tags = True
    pretrained_prefixes = ("block5", "dense")

    def __init__(self, labels: list[str], cfg: FeatureConfig | None = None,
                 pretrained: bool = True, dropout: float = 0.5, train_steps: int | None = None):
        super().__init__(labels, cfg, pretrained)
        if train_steps:
            self.train_steps = train_steps
        self.pool5 = nn.MaxPool2d(POOLS[4], ceil_mode=True)
        self.embedding_dim = 2 * N_FILTERS + self.dense.out_features
        # Standardises the embedding for the linear head (as a scaler before
        # logistic regression would); the embedding itself is taken before it.
        self.head_norm = nn.BatchNorm1d(self.embedding_dim)
        self.head_dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.embedding_dim, len(self.labels))
        init_head(self.head)

    def embed_trunk(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.pool5(self.block5(feats)).amax(2)          # (B, 128, T5)
        b, c, t = x.shape
        n = max(t // 2, 1)
        pairs = x[..., : 2 * n] if t >= 2 else x.repeat(1, 1, 2)
        # TF's flatten of two pool-5 steps: time-major, channels fastest.
        pairs = pairs.reshape(b, c, n, 2).permute(0, 2, 3, 1).flatten(2)   # (B, n, 256)
        tags = torch.sigmoid(self.dense(pairs)).mean(1)     # (B, 50)
        return torch.cat([x.mean(-1), x.amax(-1), tags], dim=1)

    def classify_embedding(self, emb: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_dropout(self.head_norm(emb)))


class CRNNMSD(_MSDGenreModel):
    """CRNN after Choi, Fazekas, Sandler & Cho (ICASSP 2017) as used by
    Adiyansjah et al. (2019), on MSD-VGG's pretrained conv blocks 1–4
    (Pons & Serra 2019): the trunk's six mel bins are max-pooled to one and
    its ≈ 40 time steps per 10 s window feed two GRU layers; the last GRU
    state is the embedding."""

    name = "crnn_msd"
    window_steps = 40
    hop_steps = 20
    train_steps = 40

    def __init__(self, labels: list[str], cfg: FeatureConfig | None = None,
                 pretrained: bool = True, hidden: int = 128, dropout: float = 0.3,
                 train_steps: int | None = None):
        super().__init__(labels, cfg, pretrained)
        if train_steps:
            self.train_steps = train_steps
        self.gru_dropout = nn.Dropout(0.1)
        self.gru = nn.GRU(N_FILTERS, hidden, num_layers=2, batch_first=True, dropout=0.1)
        self.embedding_dim = hidden
        self.head_norm = nn.BatchNorm1d(hidden)
        self.head_dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, len(self.labels))
        init_head(self.head)

    def embed_trunk(self, feats: torch.Tensor) -> torch.Tensor:
        seq = feats.amax(2).transpose(1, 2)             # (B, T4, 128): max over the six mel bins
        out, _ = self.gru(self.gru_dropout(seq))
        return out[:, -1]                               # the final GRU state (Choi et al.)

    def classify_embedding(self, emb: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_dropout(self.head_norm(emb)))


def trunk_group(models: dict[str, GenreModel]) -> dict[str, list[str]]:
    """Model names grouped by shared trunk (``trunk_key``); models without a
    trunk are left out. Any model with ``trunk_key``, ``trunk_features`` and
    ``predict_trunk`` takes part (the MSD models here; models on
    :class:`core.models.trunks.TrunkBank`)."""
    groups: dict[str, list[str]] = {}
    for name, m in models.items():
        if all(callable(getattr(m, a, None)) for a in ("trunk_key", "trunk_features", "predict_trunk")):
            groups.setdefault(m.trunk_key(), []).append(name)
    return groups


__all__ = ["CNNMSD", "CRNNMSD", "trunk_group"]
