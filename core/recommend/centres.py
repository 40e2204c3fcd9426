"""Genre centre points: the paper's "centre-point song" of each genre, made precise.

Among catalog tracks the classifier predicts as ``g`` (top genre), the
*confident* ones are those whose ``p_g`` is at or above the
:data:`CENTRE_QUANTILE` quantile (median) of ``p_g`` within that group (when
fewer than :data:`CENTRE_MIN_TRACKS` tracks are predicted ``g``: the
:data:`CENTRE_MIN_TRACKS` tracks with the highest ``p_g``); the centre point is
the confident track nearest to the confident tracks' mean embedding (in the
search space: unit vectors for cosine). Pure numpy; the recommender keeps one
set per snapshot and space (:meth:`core.recommend.views.RecommendViews.centres`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.recommend import search
from core.recommend.feedback import order_of

# A track predicted as genre g is "confident" when its p_g is at or above this
# quantile of p_g among the tracks predicted g; a genre with fewer predicted
# tracks takes the CENTRE_MIN_TRACKS tracks with the highest p_g.
CENTRE_QUANTILE = 0.5
CENTRE_MIN_TRACKS = 3


@dataclass(frozen=True)
class CentrePoint:
    """The centre-point song of one genre (see the module docstring)."""

    genre: str
    row: int                 # catalog row of the centre-point track
    track_id: str
    n_predicted: int         # catalog tracks whose top predicted genre is this one
    n_confident: int         # of those, the confident ones the mean is taken over
    threshold: float         # p_genre a track needed to count as confident


def centre_rows(probs: np.ndarray, space: np.ndarray, distance: str = "cosine", p: float = 3.0,
                quantile: float = CENTRE_QUANTILE, min_tracks: int = CENTRE_MIN_TRACKS
                ) -> list[tuple[int, int, int, float]]:
    """Per genre column of ``probs`` ``(N, G)``: ``(centre row, n predicted,
    n confident, threshold)``, nearest in ``space`` ``(N, D)``; row -1 when
    no track qualifies."""
    top = probs.argmax(1) if len(probs) else np.zeros(0, int)
    out = []
    for g in range(probs.shape[1]):
        pg = probs[:, g]
        members = np.flatnonzero(top == g)
        if len(members) >= min_tracks:
            thr = float(np.quantile(pg[members], quantile))
            conf = members[pg[members] >= thr]
        else:
            conf = np.argsort(-pg, kind="stable")[:min_tracks]
            thr = float(pg[conf].min()) if len(conf) else float("nan")
        if not len(conf):
            out.append((-1, len(members), 0, thr))
            continue
        v = space[conf]
        mean = v.mean(0)
        if distance == "cosine":
            near = int(np.argmax(search.normalise(v) @ search.normalise(mean[None])[0]))
        else:
            near = int(np.argmin(search.minkowski(v, mean, order_of(distance, p))))
        out.append((int(conf[near]), len(members), len(conf), thr))
    return out
