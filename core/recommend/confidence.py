"""How much method 2's genre term counts: in proportion to how sure the
classifier is about the seeds' genres.

Where the classifier is wrong (music from a source it never saw), a fixed
genre weight lets its mistake decide the list. With ``confidence`` set,
method 2 uses ``w_eff = w · c`` where ``c`` in [0, 1] is read from the
seeds' calibrated genre probabilities ``SP`` ``(n_seeds, G)``:

* ``"off"``: ``c = 1`` (the fixed weight);
* ``"top"``: the mean over seeds of the top-genre probability, rescaled so
  a uniform distribution gives 0: ``c = mean_s (max_g SP[s] − 1/G) / (1 − 1/G)``;
* ``"entropy"``: one minus the normalised entropy of the seeds' mean genre
  mix: ``c = 1 − H(mean_s SP[s]) / log G`` (low for seeds spread over genres);
* ``"agree"``: how much the seeds agree on their genres, the mean cosine
  between two seeds' genre distributions (1 for a single seed);
* ``"gateNN"`` (``gate50``, ``gate70``, ``gate90``): a gate on the top genre
  of the seeds' mean genre mix, ``p = max_g mean_s SP[s, g]`` (how likely a
  seed is of the seeds' most likely genre) with ``τ = NN / 100``:
  ``c = max(0, (p − τ) / (1 − τ))``. Closed (``c = 0``: exactly method 1)
  until the seeds' genre is more likely than ``τ``, then opening linearly to
  ``c = 1`` for seeds that are surely of one genre.

With unsure seeds ``c`` → 0 and method 2 becomes method 1.
"""

from __future__ import annotations

import numpy as np

GATES = (50, 70, 90)
CONFIDENCE_MODES = ("off", "top", "entropy", "agree") + tuple(f"gate{t}" for t in GATES) + ("cand", "joint")
PER_CANDIDATE = ("cand", "joint")


def _gate(mode: str) -> float | None:
    """``"gate70"`` → 0.7; ``None`` for a mode that is not a gate."""
    if mode.startswith("gate") and mode[4:].isdigit() and 0 <= int(mode[4:]) < 100:
        return int(mode[4:]) / 100.0
    return None


def is_confidence_mode(mode: str) -> bool:
    """Whether ``mode`` names a confidence weighting (the listed ones or any ``gateNN``, 0 ≤ NN < 100)."""
    return mode in CONFIDENCE_MODES or _gate(mode) is not None


def genre_confidence(seed_probs: np.ndarray, mode: str) -> float:
    """``c`` in [0, 1] of the seeds' genre probabilities ``(n_seeds, G)`` under ``mode``."""
    if not is_confidence_mode(mode):
        raise ValueError(f"unknown confidence mode {mode!r}; choose one of {', '.join(CONFIDENCE_MODES)}")
    if mode in ("off", "cand"):
        return 1.0
    p = np.clip(np.asarray(seed_probs, np.float64), 0.0, None)
    if p.ndim != 2 or not p.size:
        return 0.0
    g = p.shape[1]
    if g < 2:
        return 1.0
    p = p / np.clip(p.sum(1, keepdims=True), 1e-12, None)
    if mode == "top":
        return float(np.clip((p.max(1).mean() - 1.0 / g) / (1.0 - 1.0 / g), 0.0, 1.0))
    if mode == "entropy":
        mix = p.mean(0)
        h = -(mix[mix > 0] * np.log(mix[mix > 0])).sum()
        return float(np.clip(1.0 - h / np.log(g), 0.0, 1.0))
    if mode == "agree":
        if len(p) < 2:
            return 1.0
        u = p / np.clip(np.linalg.norm(p, axis=1, keepdims=True), 1e-12, None)
        cos = u @ u.T
        return float(np.clip(cos[np.triu_indices(len(p), 1)].mean(), 0.0, 1.0))
    if mode == "joint":
        return float(_sureness(p.mean(0, keepdims=True))[0])
    tau = _gate(mode)
    top = float(p.mean(0).max())
    return float(np.clip((top - tau) / (1.0 - tau), 0.0, 1.0))


def _sureness(p: np.ndarray) -> np.ndarray:
    """``n(p) = (‖p‖₂ − 1/√G) / (1 − 1/√G)`` per row of ``p`` ``(N, G)`` (rows sum to 1), in [0, 1]."""
    floor = 1.0 / np.sqrt(p.shape[1])
    return np.clip((np.linalg.norm(p, axis=1) - floor) / (1.0 - floor), 0.0, 1.0)


def candidate_confidence(probs: np.ndarray, mode: str) -> np.ndarray | None:
    """``q`` ``(N,)`` in [0, 1] per candidate of the genre probabilities ``(N, G)``
    under a per-candidate ``mode`` (:data:`PER_CANDIDATE`); ``None`` (``q = 1``) otherwise."""
    if mode not in PER_CANDIDATE:
        return None
    p = np.clip(np.asarray(probs, np.float64), 0.0, None)
    if p.ndim != 2 or p.shape[1] < 2:
        return np.ones(len(p))
    return _sureness(p / np.clip(p.sum(1, keepdims=True), 1e-12, None))


def describe_confidence(mode: str) -> str:
    """What ``c`` is under ``mode``, in a listener's words (one line, for the page)."""
    tau = _gate(mode)
    if tau is not None:
        return (f"c = 0 until the model puts more than {tau:.0%} of your songs' genre mix on one genre, "
                "then rising to 1")
    return {"off": "c = 1", "agree": "c = how much your songs' genres agree (0–1)",
            "cand": "c = 1; each track's genre term also × how sure the model is of its genre",
            "joint": "c = how sure the model is of your songs' genre mix; each track's genre term also × "
                     "how sure it is of that track's genre"}.get(
        mode, "c = how sure the model is of your songs' genres (0–1)")
