"""What the music feels like beyond genre: facets computed at indexing time.

For every clip, from what the index already computes (the log-mels and the
shared pretrained trunk's output; no second decode):

* tag probabilities of every registered pretrained tagger
  (:mod:`core.facets.tags`; today MSD-VGG's 50 Last.fm tags, columns ``msd_*``);
* ``tempo_bpm`` and ``tempo_conf``, ``energy`` and ``loudness_db``
  (:mod:`core.facets.signal`);
* derived scores from the tags: ``vocal`` (vocalists vs instrumental),
  ``arousal`` (party / dance / heavy vs chill / mellow / ambient) and
  ``valence`` (happy / party / catchy vs sad / mellow), each in [0, 1].

:func:`batch_facets` is the one entry point (the indexer's batches and the
app's single-track analysis); :data:`FACETS` describes the scalar facets for
displays, and :func:`facet_columns` lists every stored column. How well each
facet matches what the data knows is measured by ``python -m core facets-eval``
(``artifacts/facets_eval.json``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.config import FeatureConfig
from core.facets.signal import frame_rate, signal_facets
from core.facets.tags import TAGGERS, tag_column, trunk_taggers


@dataclass(frozen=True)
class Facet:
    """One scalar facet: its column, a label and its unit for displays."""

    column: str
    label: str
    unit: str = ""


FACETS: dict[str, Facet] = {f.column: f for f in (
    Facet("tempo_bpm", "Tempo", "BPM"),
    Facet("tempo_conf", "Tempo confidence", "0–1"),
    Facet("energy", "Energy (spectral flux)", "dB/frame"),
    Facet("loudness_db", "Loudness", "dB"),
    Facet("vocal", "Vocals", "0–1"),
    Facet("arousal", "Arousal (energetic)", "0–1"),
    Facet("valence", "Valence (positive)", "0–1"),
)}

# Tag groups of the derived scores (MSD-VGG tag names).
VOCAL_TAGS = ("female vocalists", "male vocalists", "female vocalist")
INSTRUMENTAL_TAGS = ("instrumental",)
HIGH_AROUSAL = ("party", "dance", "metal", "hard rock", "heavy metal", "punk", "electro", "House")
LOW_AROUSAL = ("chill", "chillout", "Mellow", "ambient", "easy listening", "acoustic", "beautiful")
POSITIVE = ("happy", "party", "catchy", "sexy", "dance", "funk")
NEGATIVE = ("sad", "Mellow", "beautiful", "metal", "heavy metal")


def facet_columns() -> list[str]:
    """Every facet column the index stores: the scalar facets, then each tagger's tags."""
    return list(FACETS) + [c for t in TAGGERS.values() for c in t.columns()]


def empty_facets() -> dict[str, float]:
    return {c: float("nan") for c in facet_columns()}


def derived(tags: dict[str, float]) -> dict[str, float]:
    """``vocal``, ``arousal``, ``valence`` from MSD tag probabilities
    (``{tag: p}``); NaN without them."""
    def mean(names):
        v = [tags[n] for n in names if n in tags]
        return float(np.mean(v)) if v else float("nan")

    def balance(a, b):
        return a / (a + b) if a + b > 0 else 0.5

    voc, ins = max((tags.get(n, 0.0) for n in VOCAL_TAGS), default=0.0), mean(INSTRUMENTAL_TAGS)
    if not tags:
        return {"vocal": float("nan"), "arousal": float("nan"), "valence": float("nan")}
    return {"vocal": balance(voc, ins), "arousal": balance(mean(HIGH_AROUSAL), mean(LOW_AROUSAL)),
            "valence": balance(mean(POSITIVE), mean(NEGATIVE))}


def tempo_config(cfgs: list[FeatureConfig]) -> FeatureConfig:
    """The log-mel tempo and energy are read from: the finest time resolution,
    preferring one that keeps the file's level (for loudness)."""
    return max(cfgs, key=lambda c: (c.target_rms_db is None, frame_rate(c)))


def batch_facets(mels: dict[str, np.ndarray], cfgs: list[FeatureConfig], trunk_feats: dict,
                 models: dict) -> list[dict[str, float]]:
    """Facets of a batch of clips: ``mels[cfg.key()]`` ``(B, n_mels, T)`` per
    config, ``trunk_feats[trunk_key]`` ``(B, C, F, T')`` from
    :func:`~core.models.inference.predict_all`; one dict per clip with every
    column of :func:`facet_columns` (NaN where a tagger's trunk is not loaded)."""
    cfg = tempo_config(cfgs)
    lm = mels[cfg.key()]
    out = [empty_facets() | signal_facets(lm[i], cfg) for i in range(len(lm))]
    for name, key in trunk_taggers(models).items():
        if key not in trunk_feats:
            continue
        tagger = TAGGERS[name]
        model = next(m for m in models.values() if tagger.matches(m))
        probs = tagger.tags_of(model, trunk_feats[key]).numpy()
        for i, p in enumerate(probs):
            out[i].update({tag_column(tagger.prefix, t): float(v) for t, v in zip(tagger.tags, p)})
            if name == "msd_vgg":
                out[i].update(derived(dict(zip(tagger.tags, p.tolist()))))
    return out
