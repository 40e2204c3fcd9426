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
  mix: ``c = 1 − H(mean_s SP[s]) / log G`` (low for seeds spread over genres).

With unsure seeds ``c`` → 0 and method 2 becomes method 1.
"""

from __future__ import annotations

import numpy as np

CONFIDENCE_MODES = ("off", "top", "entropy")


def genre_confidence(seed_probs: np.ndarray, mode: str) -> float:
    """``c`` in [0, 1] of the seeds' genre probabilities ``(n_seeds, G)`` under ``mode``."""
    if mode == "off":
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
    raise ValueError(f"unknown confidence mode {mode!r}; choose one of {', '.join(CONFIDENCE_MODES)}")
