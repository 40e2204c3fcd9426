"""Tag probabilities from the pretrained trunks the index already runs.

A :class:`Tagger` turns one trunk's output (the features every model on
that trunk shares, computed once per clip by
:func:`core.models.inference.predict_all`) into tag probabilities with the
trunk's own pretrained tag layers. :data:`TAGGERS` is the registry: today
MSD-VGG's 50 Last.fm tags (musicnn ``MSD_vgg``: pretrained block 5 and tag
layer, not the genre models' fine-tuned copies). Another trunk plugs in as
one more entry (a name, its tag list, which models carry its trunk, and how
to build its head); its tags become index columns ``<prefix>_<tag>``.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from core.models.msd import MSDVGG, load_msd_weights


class MSDTagHead(nn.Module):
    """MSD-VGG's pretrained block 5 and tag layer over trunk output
    ``(B, 128, 6, T4)`` → ``(B, 50)`` tag probabilities: the mean over 3 s
    pairs of pool-5 steps (the input the tag layer was trained on)."""

    def __init__(self, vgg: MSDVGG):
        super().__init__()
        # MSD_vgg's own 'valid' 4×4 pool (the first four of the six mel rows):
        # r = 0.998 with musicnn's 3 s patches on a real clip; ceil mode gave 0.62.
        self.block5, self.pool5, self.dense = vgg.block5, vgg.pool5, vgg.dense

    @torch.inference_mode()
    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.pool5(self.block5(feats.float()))[:, :, 0]     # (B, 128, T5)
        b, c, t = x.shape
        n = max(t // 2, 1)
        pairs = x[..., : 2 * n] if t >= 2 else x.repeat(1, 1, 2)
        pairs = pairs.reshape(b, c, n, 2).permute(0, 2, 3, 1).flatten(2)   # (B, n, 256)
        return torch.sigmoid(self.dense(pairs)).mean(1)


def _msd_head() -> nn.Module:
    return MSDTagHead(load_msd_weights(MSDVGG())).eval()


def _has_msd_trunk(model) -> bool:
    from core.models.transfer import _MSDGenreModel

    return isinstance(model, _MSDGenreModel)


def _bank_names(model) -> list[str]:
    """Trunks of the family bank a model serves on (:class:`~core.models.trunk_model.TrunkGenreModel`)."""
    bank = getattr(model, "bank", None)
    return list(bank().names) if callable(bank) else []


@dataclass(frozen=True)
class Tagger:
    """One pretrained tagger: ``matches(model)`` says whether a model carries
    its trunk (``model.trunk_key()`` names the shared output that
    :func:`~core.models.inference.predict_all` hands over), and
    ``tags_of(model, trunk_output)`` turns that output into ``(B, n_tags)``
    probabilities."""

    name: str
    prefix: str
    tags: tuple[str, ...]
    matches: Callable[[object], bool]
    tags_of: Callable[[object, torch.Tensor], torch.Tensor]

    def columns(self) -> list[str]:
        return [tag_column(self.prefix, t) for t in self.tags]


def tag_column(prefix: str, tag: str) -> str:
    """``("msd", "female vocalists")`` → ``"msd_female_vocalists"`` (an SQL-safe name)."""
    return f"{prefix}_" + re.sub(r"[^a-z0-9]+", "_", tag.lower()).strip("_")


def _msd_tags(model, feats: torch.Tensor) -> torch.Tensor:
    if _has_msd_trunk(model):
        return head("msd_vgg")(feats)
    return _bank_tags("msd_vgg")(model, feats)


def _bank_tags(name: str):
    """Tags of trunk ``name`` from a family bank's vectors (already averaged over patches)."""
    def tags_of(model, vec: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(model.bank().split(vec.float().numpy())[name].tags)
    return tags_of


def _family() -> dict[str, Tagger]:
    """MSD-VGG (from the genre models' MSD trunk or the family bank) and the
    other trunks of :data:`core.models.trunks.TRUNKS` (from a bank only); every
    tag list is the registry's."""
    from core.models.trunks import TRUNKS

    out = {"msd_vgg": Tagger("msd_vgg", "msd", TRUNKS["msd_vgg"].tags,
                             lambda m: _has_msd_trunk(m) or "msd_vgg" in _bank_names(m), _msd_tags)}
    for spec in TRUNKS.values():
        if spec.name not in out:
            out[spec.name] = Tagger(spec.name, spec.name, tuple(spec.tags),
                                    lambda m, n=spec.name: n in _bank_names(m), _bank_tags(spec.name))
    return out


TAGGERS: dict[str, Tagger] = _family()


def tag_columns() -> list[tuple[str, str, str]]:
    """``(tagger name, tag, index column)`` of every registered tagger's tags."""
    return [(tagger.name, t, tag_column(tagger.prefix, t)) for tagger in TAGGERS.values() for t in tagger.tags]

_HEADS: dict[str, nn.Module] = {}
_LOCK = threading.Lock()


def head(name: str) -> nn.Module:
    """MSD-VGG's pretrained tag head (``name="msd_vgg"``), built once per process."""
    with _LOCK:
        if name not in _HEADS:
            _HEADS[name] = _msd_head()
        return _HEADS[name]


def trunk_taggers(models: dict) -> dict[str, str]:
    """``{tagger name: trunk_key}`` for every registered tagger whose trunk one of ``models`` carries."""
    out: dict[str, str] = {}
    for tagger in TAGGERS.values():
        for m in models.values():
            if tagger.matches(m):
                out[tagger.name] = m.trunk_key()
                break
    return out
