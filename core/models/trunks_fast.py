"""Inference copies of the wheel's taggers (:mod:`core.models.musicnn`):
same outputs, less CPU. Used by :class:`core.models.trunks.TrunkBank`.

* VGGs: :func:`core.models.optimise.optimise_for_inference` (MSD_vgg's
  conv 1–4 become :class:`~core.models.msd_fast.FastMSDTrunk`; MTT_vgg, whose
  first pool overlaps, runs channels-last).
* musicnn: see :class:`FastMusicnn`.
"""

from __future__ import annotations

import copy

from torch import nn

from core.models.musicnn import Musicnn


def fast_tagger(model: nn.Module, bfloat16: bool | None = None) -> nn.Module:
    """An inference copy of a ported tagger (``embed(patch)`` → (penultimate, logits))."""
    from core.models.optimise import optimise_for_inference, use_bfloat16
    bf16 = use_bfloat16() if bfloat16 is None else bool(bfloat16)
    if isinstance(model, Musicnn):
        return copy.deepcopy(model).eval()
    return optimise_for_inference(model, bfloat16=bf16)
