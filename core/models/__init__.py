"""Model registry: build a genre classifier by name."""

from __future__ import annotations

from core.config import FeatureConfig
from core.models.base import GenreModel, Prediction
from core.models.cnn import CNN
from core.models.crnn import CRNN
from core.models.fused import FusedMSD
from core.models.fused_trunks import FusedTrunks
from core.models.transfer import CNNMSD, CRNNMSD, trunk_group

# From scratch (the paper's reproduction), fine-tuned from MSD-VGG, and a linear
# head on frozen MSD-VGG features and one on the musicnn wheel's trunk bank, both chosen
# leave-one-source-out.
MODELS: dict[str, type[GenreModel]] = {"cnn": CNN, "crnn": CRNN, "cnn_msd": CNNMSD, "crnn_msd": CRNNMSD,
                                     "fused": FusedMSD, "fused_trunks": FusedTrunks}


def build_model(name: str, labels: list[str], cfg: FeatureConfig | None = None,
                **kwargs) -> GenreModel:
    """Instantiate the model called ``name`` (a key of :data:`MODELS`);
    ``kwargs`` go to its constructor (e.g. ``pretrained=False``)."""
    try:
        cls = MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
    return cls(labels, cfg, **kwargs)


__all__ = ["CNN", "CNNMSD", "CRNN", "CRNNMSD", "FusedMSD", "FusedTrunks", "trunk_group", "GenreModel", "MODELS",
           "Prediction", "build_model"]
