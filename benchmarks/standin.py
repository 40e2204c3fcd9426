"""Stand-in models for trunks that no shipped model serves on yet, so
``python -m core bench --with-trunks msd_musicnn`` times the per-track cost
a model on those trunks will add before one is trained.

:class:`TrunkStandIn` is a :class:`~core.models.trunk_model.TrunkGenreModel`
with an untrained linear head: the same inference path and the same trunk
pass (:func:`~core.models.trunks.shared_bank`, the served fast copies) as a
real head, so its cost is the trunk's cost. Its head is never a prediction
anyone reads. In the naive baseline (a model not yet passed through
:func:`~core.models.optimise.optimise_for_inference`) it runs the plain
float32 ports instead, the straightforward port a naive indexer would use.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from core.config import FeatureConfig
from core.models.trunk_model import TrunkGenreModel
from core.models.trunks import TrunkBank, resolve, shared_bank


def plain_bank(trunks: Sequence[str], cfg: FeatureConfig | None = None) -> TrunkBank:
    """One plain float32 :class:`TrunkBank` (the ports as written) per process,
    trunk list and level step (``cfg``, default MSD_FEATURES)."""
    return shared_bank(trunks, fast=False, cfg=cfg)


class TrunkStandIn(TrunkGenreModel):
    """Untrained linear head over ``trunks``: bank vectors ``(B, F)`` →
    (embedding = the vectors ``(B, F)``, logits ``(B, G)``)."""

    def __init__(self, labels: list[str], trunks: Sequence[str]):
        super().__init__(labels, trunks=trunks)
        self.name = standin_name(self.trunks)
        self.embedding_dim = self.input_dim
        torch.manual_seed(0)
        self.head = nn.Linear(self.input_dim, len(labels))

    def bank(self) -> TrunkBank:
        return super().bank() if getattr(self, "_optimised", False) else plain_bank(self.trunks, self.cfg)

    def head_outputs(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return vectors, self.head(vectors)


def standin_name(trunks: Sequence[str]) -> str:
    """``["msd_musicnn"]`` → ``"standin_msd_musicnn"``."""
    return "standin_" + "+".join(s.name for s in resolve(trunks))


def add_standins(models: dict, trunks: Sequence[str]) -> dict:
    """``models`` plus one :class:`TrunkStandIn` on ``trunks``, unless a model
    in ``models`` already serves on a bank holding all of them (then the
    shipped model already pays for the trunks and nothing is added)."""
    if not trunks:
        return dict(models)
    want = {s.name for s in resolve(trunks)}
    for m in models.values():
        bank = getattr(m, "bank", None)
        if callable(bank) and isinstance(m, TrunkGenreModel) and want <= set(m.trunks):
            return dict(models)
    labels = next(iter(models.values())).labels if models else [f"genre{i}" for i in range(11)]
    stand = TrunkStandIn(list(labels), sorted(want, key=list(s.name for s in resolve(None)).index)).eval()
    return {**models, stand.name: stand}
