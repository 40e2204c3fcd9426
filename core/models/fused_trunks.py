"""A linear genre head over the frozen trunk bank, musicnn trunks included,
chosen leave-one-source-out.

:class:`FusedTrunks` keeps every pretrained tagger of the ``musicnn`` wheel
frozen — the musically motivated ``MSD_musicnn`` / ``MTT_musicnn`` of Pons &
Serra ("musicnn: pre-trained convolutional neural networks for music audio
tagging", ISMIR LBD 2019) and the VGG-like ``MSD_vgg`` / ``MTT_vgg`` of Pons
et al. (ISMIR 2018), the transfer recipe of Choi et al. ("Transfer learning
for music classification and regression tasks", ISMIR 2017: frozen
pretrained features, a simple classifier on top) — and trains only a
standardised linear layer (multinomial logistic regression,
:mod:`core.training.linear_head`) on the clip's pooled vectors: per trunk of
its set, the penultimate layer's mean and max over the clip's 3 s patches
and the 50 tags averaged over them (:meth:`~core.models.trunks.TrunkBank.vector`).
The layer may have been fitted per 3 s patch (step 1d of the training rule):
the mean of a clip's patch logits is the same layer on the patch-mean
columns, with weight 0 on the max columns, so inference is one matrix
product either way.

Its trunk set, ``C``, head form and calibration are chosen on leave-one-source-out
folds (:mod:`core.training.fused_trunks_train`), not on the in-source val
split. The trunks run once per clip for every model on the same bank
(:class:`~core.models.trunk_model.TrunkGenreModel`).

The trunk set travels in the safetensors file as a flag vector over the
registry (``trunk_set`` ``(len(TRUNKS),)``) and the number of 3 s patches per
clip the trunks run on as ``bank_patches`` ``()`` (0: all; also chosen
leave-one-source-out), so loading needs no pickle and no extra metadata;
the trunks' weights are rebuilt from the wheel. The embedding (for the
recommender) is the standardised vector
``(x − mean) / scale`` ``(B, F)``.

A zero-shot genre prior from the served trunks' genre-named tags may follow
the head (:class:`~core.models.tag_prior.TagPrior`, buffers ``prior.*``;
step 1e of :mod:`core.training.fused_trunks_train`), with the calibration
after it; without it (``prior.beta`` 0, and in files from before it) the
calibration is folded into the head.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from core.config import FeatureConfig
from core.errors import ArtifactError
from core.models.fused import copy_linear_head
from core.models.tag_prior import TagPrior
from core.models.trunk_model import TrunkGenreModel
from core.models.trunks import TRUNKS, check_patches, resolve

# Before a LOSO choice is loaded: the trunk that did best alone under LOSO.
DEFAULT_TRUNKS = ("msd_musicnn",)


def trunk_flags(trunks: Sequence[str]) -> torch.Tensor:
    """Trunk names → ``(len(TRUNKS),)`` float flags in registry order."""
    names = {s.name for s in resolve(trunks)}
    return torch.tensor([1.0 if n in names else 0.0 for n in TRUNKS])


def flag_trunks(flags: torch.Tensor) -> list[str]:
    """Inverse of :func:`trunk_flags` (registry order)."""
    f = torch.as_tensor(flags).flatten()
    if f.numel() != len(TRUNKS) or not bool((f > 0.5).any()):
        raise ArtifactError(f"trunk_set {tuple(f.shape)} does not name trunks of {list(TRUNKS)}")
    return [n for n, v in zip(TRUNKS, f.tolist()) if v > 0.5]


class FusedTrunks(TrunkGenreModel):
    """Frozen trunk bank → vectors ``(B, F)`` → standardise → linear genre
    layer ``(B, G)``. Papers: Pons & Serra 2019 (musicnn), Pons et al. 2018,
    Choi et al. 2017 (transfer with frozen features)."""

    name = "fused_trunks"
    # Calibration is fitted leave-one-source-out (core.training.fused_trunks_train)
    # and folded into the head; ``python -m core calibrate`` keeps it.
    fixed_temperature = True

    def __init__(self, labels: list[str], cfg: FeatureConfig | None = None,
                 trunks: Sequence[str] | None = None):
        super().__init__(labels, cfg, trunks=list(trunks or DEFAULT_TRUNKS))
        self._build()

    def _build(self) -> None:
        """(Re)create the buffers and head for :attr:`trunks` (all zero: uniform output)."""
        d = self.input_dim
        self.embedding_dim = d
        self.register_buffer("trunk_set", trunk_flags(self.trunks))
        self.register_buffer("bank_patches", torch.tensor(float(self.patches or 0)))
        self.register_buffer("feat_mean", torch.zeros(d))
        self.register_buffer("feat_scale", torch.ones(d))
        self.head = nn.Linear(d, len(self.labels))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.prior = TagPrior(self.trunks, self.labels)

    def set_trunks(self, trunks: Sequence[str]) -> None:
        """Switch to another trunk set (resets the head)."""
        self.trunks = [s.name for s in resolve(trunks)]
        self._fingerprint = None
        self._build()

    def set_patches(self, patches: int | None) -> None:
        """Run the trunks on ``patches`` of each clip's 3 s patches (None: all)."""
        self.patches = check_patches(patches)
        self.bank_patches.fill_(float(self.patches or 0))
        self._fingerprint = None

    def head_outputs(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bank vectors ``(B, F)`` → (standardised embedding ``(B, F)``, logits ``(B, G)``)."""
        if vectors.dim() != 2 or vectors.shape[1] != self.input_dim:
            raise ArtifactError(f"{self.name} needs bank vectors (B, {self.input_dim}) of "
                                f"{'+'.join(self.trunks)}, got {tuple(vectors.shape)}")
        z = (vectors - self.feat_mean) / self.feat_scale
        return z, self.prior(self.head(z), vectors)

    def load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        """The file's ``trunk_set`` decides the trunks (and so every shape) first."""
        if "trunk_set" not in state:
            raise ArtifactError(f"{self.name} weights lack trunk_set")
        trunks = flag_trunks(state["trunk_set"])
        if trunks != self.trunks:
            self.set_trunks(trunks)
        state = {"bank_patches": torch.tensor(0.0), **state}     # files from before the choice: all patches
        # Files from before the tag prior: none (its buffers at their off values).
        state = dict(self.prior.state_dict(prefix="prior.")) | state
        patches = check_patches(int(round(float(state["bank_patches"]))) or None)   # checked before loading
        super().load_saved_state(state)
        self.set_patches(patches)

    def set_head(self, mean: np.ndarray, scale: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                 temperature: float = 1.0) -> None:
        """Load a fitted :class:`~core.training.linear_head.LinearHead`'s arrays:
        ``mean``, ``scale`` ``(F,)``, ``weight`` ``(G, F)``, ``bias`` ``(G,)``."""
        if np.shape(weight) != (len(self.labels), self.input_dim) or np.shape(mean) != (self.input_dim,):
            raise ArtifactError(f"head weight {np.shape(weight)} does not fit "
                                f"({len(self.labels)}, {self.input_dim}) for {'+'.join(self.trunks)}")
        copy_linear_head(self, mean, scale, weight, bias, temperature)
        self._fingerprint = None

    def set_prior(self, beta: float, logit: bool, grouped: bool, mean: np.ndarray, std: np.ndarray,
                  scale: np.ndarray, shift: np.ndarray) -> None:
        """Turn on the tag prior after the head (:meth:`TagPrior.set`; ``mean``,
        ``std``: the training tracks' tag-score statistics, ``scale``, ``shift``:
        the calibration after the prior, all ``(G,)``)."""
        self.prior.set(beta, logit, grouped, mean, std, scale, shift)
        self._fingerprint = None


__all__ = ["DEFAULT_TRUNKS", "FusedTrunks", "flag_trunks", "trunk_flags"]
