"""What to say about a genre distribution: one genre only when it is likely enough.

A calibrated top-genre probability of 0.4 means "right about 4 times in
10"; stating it as "Classical 40 %" reads as an answer. :func:`verdict`
turns a probability vector into the words a page shows: the genre when it is
likely enough, "between A and B" when two genres share most of the mass,
otherwise "no clear genre" with the closest ones. The thresholds live in
:class:`VerdictConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from core.errors import GenreError


class VerdictError(GenreError, ValueError):
    """The probabilities cannot be read as a genre distribution."""


@dataclass(frozen=True)
class VerdictConfig:
    """Thresholds on calibrated probabilities.

    * ``min_top``: name one genre only if its probability is at least this …
    * ``min_margin``: … and it leads the second genre by at least this.
    * ``min_pair``: otherwise say "between A and B" if the top two together
      have at least this; below it, "no clear genre".
    """

    min_top: float = 0.5
    min_margin: float = 0.2
    min_pair: float = 0.6
    n_closest: int = 3

    def __post_init__(self):
        for name in ("min_top", "min_margin", "min_pair"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise VerdictError(f"{name} must be in [0, 1], got {v}")


@dataclass(frozen=True)
class Verdict:
    """``kind``: ``"genre"``, ``"between"`` or ``"unclear"``; ``genres``: the
    genre(s) named, most likely first; ``text``: the words to show."""

    kind: str
    genres: tuple[str, ...]
    probability: float          # top genre's probability ("genre"), else the named genres' sum
    text: str

    @property
    def confident(self) -> bool:
        return self.kind == "genre"


def verdict(probs: Sequence[float] | np.ndarray | Mapping[str, float], labels: Sequence[str] | None = None,
            cfg: VerdictConfig | None = None) -> Verdict:
    """``probs`` ``(G,)`` over ``labels`` (or a genre → p mapping) → :class:`Verdict`."""
    cfg = cfg or VerdictConfig()
    if isinstance(probs, Mapping):
        labels, probs = list(probs), list(probs.values())
    p = np.asarray(probs, dtype=np.float64).ravel()
    if labels is None or len(labels) != len(p) or len(p) == 0:
        raise VerdictError(f"{len(p)} probabilities for {0 if labels is None else len(labels)} genres")
    if not np.isfinite(p).all() or (p < -1e-9).any():
        raise VerdictError("probabilities must be finite and non-negative")
    order = np.argsort(-p, kind="stable")
    top = order[0]
    second = p[order[1]] if len(p) > 1 else 0.0
    if p[top] >= cfg.min_top and p[top] - second >= cfg.min_margin:
        g = labels[top]
        return Verdict("genre", (g,), float(p[top]), f"{g} — {p[top]:.0%}")
    a, b = labels[order[0]], labels[order[1]] if len(p) > 1 else labels[order[0]]
    pair = float(p[order[0]] + (second if len(p) > 1 else 0.0))
    if len(p) > 1 and pair >= cfg.min_pair:
        return Verdict("between", (a, b), pair, f"between {a} and {b}")
    closest = tuple(labels[i] for i in order[: max(1, cfg.n_closest)])
    mass = float(p[order[: len(closest)]].sum())
    return Verdict("unclear", closest, mass, f"no clear genre (closest: {', '.join(closest)})")
