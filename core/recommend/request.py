"""What a recommendation request is: its settings (:class:`RecommendConfig`,
the one definition of every default, read by :func:`core.recommend.methods.recommend`,
the CLI's flags and the Recommender page's widgets), the seed limit, uploaded
seeds, model specs and the checks that turn a bad request into one
:class:`RecommendError` line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from core.catalog.snapshot import CatalogError, IndexSnapshot
from core.recommend.confidence import CONFIDENCE_MODES, is_confidence_mode

METHODS = ("cosine", "genre")
VARIANTS = ("soft", "centre")
AGGREGATES = ("mean", "max")
DISTANCES = ("cosine", "euclidean", "pnorm")
ENSEMBLE = "ensemble"
ENSEMBLE_SEP = "+"
# Index "models" that are baselines, not genre classifiers: never part of "ensemble".
PSEUDO_MODELS = ("mfcc",)
# The model used when none is named, if the index has it (else the first indexed one).
# The embedding chosen on val (recommend-eval --select-on val, artifacts/recommend_choice.json):
# every learned model's L2-normalised embedding, concatenated.
PREFERRED_MODEL = "ensemble"
# The paper's listeners gave five songs; the page, the CLI and recommend() all stop there.
MAX_SEEDS = 5
# The artifact the app reads the offline figures of both methods from
# (``python -m core recommend-eval --split test --json artifacts/recommend_eval.json``).
EVAL_ARTIFACT = "recommend_eval.json"


@dataclass(frozen=True)
class RecommendConfig:
    """Settings of one recommendation request. The function defaults of
    :func:`~core.recommend.methods.recommend`, the CLI flags and the app's
    widgets all read :data:`DEFAULTS`.

    ``variant`` and ``genre_weight`` are method 2's; their defaults are meant
    to be the winners of ``python -m core recommend-eval --select-on val``
    (update them here after a selection run; the choice JSON records them).
    """

    method: str = "cosine"
    k: int = 5
    model: str | None = None         # None: PREFERRED_MODEL if indexed, else the first model
    aggregate: str = "mean"
    distance: str = "cosine"
    p: float = 3.0
    # Method 2's weight and variant, and its weight times the classifier's
    # confidence in the seeds' genres (core.recommend.confidence): chosen
    # leave-one-source-out with the default model's fold heads
    # (recommend-eval --loso --loso-model fused_trunks, with its tag prior and
    # MTT_vgg's FastMSDTrunk copy: soft, w = 0.2, no confidence weighting
    # maximises the worst fold's method 2 − method 1: +0.004 / +0.004 / +0.009;
    # with the earlier MTT_vgg copy soft, w = 0.1 times the seeds' calibrated
    # top-genre probability, +0.005 / +0.002 / +0.004 — neighbours in a flat
    # grid; before the tag prior, after MSD_musicnn's int8 front end: soft, w = 0.05,
    # agree; with the bfloat16 front end the rule chose soft, w = 0.3,
    # entropy (now −0.002 on allmusic_4q), before the level step soft,
    # w = 0.05, top, and before that centre, w = 0.9, gate70; the in-source val
    # choice w = 0.9 without confidence lost 0.03–0.11 precision@5 in every
    # held-out source).
    genre_weight: float = 0.2
    variant: str = "soft"
    confidence: str = "off"
    diversity: float = 0.0
    standardise: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULTS = RecommendConfig()


class RecommendError(CatalogError):
    """A request the recommender cannot serve; ``str(err)`` is one line."""


@dataclass
class SeedVector:
    """A seed that is not in the catalog (an uploaded file): its embedding and
    genre probabilities per model, plus what is known to exclude copies of it."""

    embedding: dict[str, np.ndarray]
    probs: dict[str, np.ndarray]
    name: str = "uploaded track"
    artist: str = ""
    title: str = ""
    digest: str = ""

    @classmethod
    def from_analysis(cls, analysis, name: str = "uploaded track", digest: str = "") -> "SeedVector":
        """From :func:`core.models.inference.analyse` output."""
        return cls(embedding={m: np.asarray(p.embedding[0], np.float32)
                              for m, p in analysis.predictions.items()},
                   probs={m: np.asarray(p.probs[0], np.float32) for m, p in analysis.predictions.items()},
                   name=name, title=name, digest=digest)


# --------------------------------------------------------------------------- model specs


def resolve_model(index: IndexSnapshot, model: str | None) -> str:
    """``None`` → :data:`PREFERRED_MODEL` when indexed, else the first indexed model."""
    if model:
        return model
    learned = [m for m in index.models if m not in PSEUDO_MODELS]
    if PREFERRED_MODEL in index.models or (PREFERRED_MODEL == ENSEMBLE and len(learned) >= 2):
        return PREFERRED_MODEL
    return (learned or index.models or [PREFERRED_MODEL])[0]


def ensemble_parts(index: IndexSnapshot, model: str) -> tuple[str, ...]:
    """The indexed models a model spec stands for: itself, the parts of
    ``"a+b"``, or for ``"ensemble"`` every indexed model but :data:`PSEUDO_MODELS`."""
    if model == ENSEMBLE:
        return tuple(m for m in index.models if m not in PSEUDO_MODELS)
    if ENSEMBLE_SEP in model:
        return tuple(dict.fromkeys(m.strip() for m in model.split(ENSEMBLE_SEP) if m.strip()))
    return (model,)


def model_choices(index: IndexSnapshot) -> list[str]:
    """Model specs a user can pick for this index: each model, then the ensemble."""
    learned = [m for m in index.models if m not in PSEUDO_MODELS]
    return list(index.models) + ([ENSEMBLE] if len(learned) >= 2 else [])


def is_ensemble(model: str) -> bool:
    """Whether a model spec combines several models."""
    return model == ENSEMBLE or ENSEMBLE_SEP in model


# --------------------------------------------------------------------------- checks


def check(index: IndexSnapshot, cfg: RecommendConfig) -> None:
    """Raise :class:`RecommendError` (one line) for settings ``index`` cannot
    serve; ``cfg.model`` must already be resolved."""
    if cfg.method not in METHODS:
        raise RecommendError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    if cfg.variant not in VARIANTS:
        raise RecommendError(f"unknown variant {cfg.variant!r}; choose one of {', '.join(VARIANTS)}")
    if not is_confidence_mode(cfg.confidence):
        raise RecommendError(f"unknown confidence {cfg.confidence!r}; choose one of {', '.join(CONFIDENCE_MODES)}")
    if cfg.aggregate not in AGGREGATES:
        raise RecommendError(f"unknown aggregate {cfg.aggregate!r}; choose mean or max")
    if cfg.distance not in DISTANCES:
        raise RecommendError(f"unknown distance {cfg.distance!r}; choose one of {', '.join(DISTANCES)}")
    if cfg.k < 1:
        raise RecommendError("k must be at least 1")
    if not 0.0 <= cfg.genre_weight <= 1.0:
        raise RecommendError("genre_weight must be between 0 and 1")
    if not 0.0 <= cfg.diversity <= 1.0:
        raise RecommendError("diversity must be between 0 and 1")
    if cfg.distance == "pnorm" and cfg.p < 1:
        raise RecommendError("p must be at least 1 for the p-norm")
    if not len(index):
        raise RecommendError("the catalog index is empty — index some music first")
    needed = ensemble_parts(index, cfg.model)
    missing = [m for m in needed if m not in index.models]
    if missing:
        raise RecommendError(f"model {', '.join(missing)} is not in the index "
                             f"(have: {', '.join(index.models) or 'none'})")
    if is_ensemble(cfg.model) and len(needed) < 2:
        raise RecommendError(f"an ensemble needs at least two models in the index "
                             f"(have: {', '.join(index.models)})")
