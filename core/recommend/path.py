"""A song path: from track A to track B in N steps through embedding space
(after AudioMuse-AI's "song path").

Waypoints are spaced evenly on the straight line from A to B in the
model's cosine space (unit rows of :meth:`RecommendViews.space`, the space
method 1 ranks in). Each step takes the unused catalog track nearest its
waypoint among those strictly closer to B than the previous step, so the
path's distance to B falls at every step and no track (or copy of one)
appears twice. When no track qualifies for a waypoint, that waypoint is
skipped, so a small catalog can give a shorter path (never a wrong one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.catalog.index import CatalogIndex, IndexSnapshot
from core.recommend.request import RecommendError, resolve_model
from core.recommend.views import views_of


@dataclass(frozen=True)
class PathStep:
    """One track of a path, with its cosine distances to its waypoint and to B
    (when waypoints were skipped, ``to_waypoint`` is measured to the path's
    own evenly spaced points: step j of n at j/(n−1) of the way)."""

    track_id: str
    title: str
    artist: str
    genre: str
    to_waypoint: float
    to_end: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def song_path(index: CatalogIndex | IndexSnapshot, start: str, end: str, steps: int,
              model: str | None = None) -> list[PathStep]:
    """``steps`` tracks (≥ 2) from ``start`` to ``end`` inclusive; see the module docstring."""
    snap = index.snapshot()
    if steps < 2:
        raise RecommendError(f"a path needs at least 2 steps (start and end), not {steps}")
    if start == end:
        raise RecommendError("start and end are the same track")
    a, b = (int(r) for r in snap.rows_of([start, end]))
    model = resolve_model(snap, model)
    views = views_of(snap)
    x = views.space(model, "cosine")                        # (N, D) unit rows
    # A track's song (artist + title), or the row itself when it has no title.
    keys = np.array([k if k is not None else f"\x00{i}" for i, k in enumerate(views.song_keys())], dtype=object)
    to_end = 1.0 - x @ x[b]
    free = (keys != keys[a]) & (keys != keys[b])            # songs not on the path yet
    targets = waypoints(x[a], x[b], steps)
    rows = [a]
    for w in targets[1:-1]:
        ok = (to_end < to_end[rows[-1]]) & (to_end > to_end[b]) & free
        if not ok.any():
            continue
        dist = 1.0 - x @ w
        r = int(np.flatnonzero(ok)[np.argmin(dist[ok])])
        rows.append(r)
        free &= keys != keys[r]
    rows.append(b)
    if len(rows) < steps:      # waypoints were skipped: distances to the path's own evenly spaced points
        targets = waypoints(x[a], x[b], len(rows))
    col = {c: snap.column(c) for c in ("track_id", "title", "artist", "genre")}
    return [PathStep(str(col["track_id"][r]), str(col["title"][r]), str(col["artist"][r]), str(col["genre"][r]),
                     float(1.0 - x[r] @ w), float(to_end[r])) for r, w in zip(rows, targets)]


def waypoints(xa: np.ndarray, xb: np.ndarray, n: int) -> list[np.ndarray]:
    """``n`` (≥ 2) unit vectors evenly spaced on the line from ``xa`` (first)
    to ``xb`` (last), each ``(D,)``."""
    out = []
    for i in range(n):
        t = i / (n - 1)
        w = (1 - t) * xa + t * xb
        out.append(w / max(float(np.linalg.norm(w)), 1e-12))
    return out
