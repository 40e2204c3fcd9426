"""Model registry: build a genre classifier by name."""

from __future__ import annotations

from ..config import FeatureConfig
from .base import GenreModel, Prediction
from .cnn import CNN
from .crnn import CRNN

MODELS: dict[str, type[GenreModel]] = {"cnn": CNN, "crnn": CRNN}


def build_model(name: str, labels: list[str], cfg: FeatureConfig | None = None) -> GenreModel:
    """Instantiate the model called ``name`` ("cnn" or "crnn")."""
    try:
        cls = MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
    return cls(labels, cfg)


__all__ = ["CNN", "CRNN", "GenreModel", "MODELS", "Prediction", "build_model"]
