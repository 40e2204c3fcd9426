"""Base class of genre models built on the pretrained trunk family
(:mod:`core.models.trunks`), so they run on the one inference path.

A subclass implements :meth:`TrunkGenreModel.head_outputs`: the bank's
vectors ``(B, F)`` (per trunk: features mean, max, tags; see
:meth:`~core.models.trunks.TrunkBank.vector`) → (embedding ``(B, D)``,
genre logits ``(B, G)``). Everything else follows: the trunks are run once
per clip and shared by every model on the same bank
(:func:`~core.models.transfer.trunk_group` → ``predict_all``), so the
indexer, evaluation, the CLI and the app get these models' predictions and
embeddings for the price of one trunk pass; a clip is one window (the trunks
already pool over its 3 s patches). The trunks' weights come from the
musicnn wheel through :func:`~core.models.trunks.shared_bank` and are not
part of the model's own state (its safetensors hold the head only).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch

from core.config import FeatureConfig
from core.models.base import GenreModel
from core.models.msd import MSD_FEATURES
from core.models.trunks import TrunkBank, resolve, shared_bank


class TrunkGenreModel(GenreModel):
    """A genre head over the trunks ``trunks`` (default: all)."""

    name = "trunk_head"
    # How many of a clip's 3 s patches the trunks run on (None: all; see
    # core.models.trunks.patch_choice). Part of the bank's key.
    patches: int | None = None

    def __init__(self, labels: list[str], cfg: FeatureConfig | None = None,
                 trunks: Sequence[str] | None = None):
        super().__init__(labels, cfg or MSD_FEATURES)
        if self.cfg.key() != MSD_FEATURES.key():
            raise ValueError("trunk models need MSD_FEATURES (the input every trunk was trained on)")
        self.trunks = [s.name for s in resolve(trunks)]

    @property
    def input_dim(self) -> int:
        """F: width of the bank's vectors for :attr:`trunks`."""
        return sum(s.feature_dim + len(s.tags) for s in resolve(self.trunks))

    def bank(self) -> TrunkBank:
        return shared_bank(self.trunks, patches=self.patches, cfg=self.cfg)

    def head_outputs(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    # -- the shared-trunk protocol of core.models.inference.predict_all ------
    def trunk_key(self) -> str:
        return "trunks:" + self.bank().key()

    def trunk_features(self, logmel: torch.Tensor, shared: torch.Tensor | None = None) -> torch.Tensor:
        """Log-mel ``(B, 1, 96, T)`` → the bank's vectors ``(B, F)``; ``shared``:
        the MSD trunk pass over the same clips when another model made it
        (:meth:`shared_trunk_key`)."""
        return self.bank().vector(logmel, shared)

    def shared_trunk_key(self) -> str | None:
        """``trunk_key`` of another model's trunk pass that :meth:`trunk_features`
        can take (:meth:`~core.models.trunks.TrunkBank.shared_trunk_key`), or None."""
        return self.bank().shared_trunk_key()

    @torch.inference_mode()
    def predict_trunk(self, vectors: torch.Tensor):
        """:class:`~core.models.base.Prediction` from the bank's vectors."""
        was_training = self.training
        self.eval()
        emb, logits = self.head_outputs(vectors.float().to(self.temperature.device))
        self.train(was_training)
        return self.prediction(emb[:, None], logits[:, None], [0])

    # -- GenreModel -----------------------------------------------------------
    def fingerprint(self) -> str:
        """The head's fingerprint mixed with the trunks' names and checkpoint
        digests (not their precision: bfloat16 and float32 vectors are the
        same model for an index, as for the other served copies)."""
        if getattr(self, "_fingerprint", None):
            return self._fingerprint
        trunks = sorted(self.bank().digests.items())
        return hashlib.sha256(f"{super().fingerprint()}|{trunks}".encode()).hexdigest()[:16]

    def embed_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.head_outputs(self.trunk_features(logmel))[0]

    def window_outputs(self, logmel: torch.Tensor, batch_windows: int = 64, hop: int | None = None):
        """One window per clip: the trunks pool over its patches themselves."""
        emb, logits = self.head_outputs(self.trunk_features(logmel))
        return emb[:, None], logits[:, None], [0]
