"""The index as rows for ``python -m core index --json FILE``: one per
indexed track, with its tags, its label (empty when unlabelled) and one
model's prediction with its probability."""

from __future__ import annotations

import numpy as np

ROW_KEYS = ("track_id", "path", "artist", "album", "title", "tag_genre", "year", "track_no", "duration",
            "label", "predicted_genre", "probability", "source")


def track_rows(snapshot, model: str) -> list[dict]:
    """One dict per track of ``snapshot`` (keys :data:`ROW_KEYS`), in index order;
    ``predicted_genre`` / ``probability``: ``model``'s top genre and its probability."""
    n = len(snapshot)
    if not n:
        return []
    probs = snapshot.probs(model)
    top = probs.argmax(1)
    labels = np.asarray(snapshot.model_labels(model), dtype=object)
    col = snapshot.column
    have = set(snapshot.frame.columns)
    text = {c: (col(c) if c in have else np.full(n, "", dtype=object))
            for c in ("track_id", "path", "artist", "album", "title", "tag_genre", "year", "track_no",
                      "genre", "source")}
    duration = col("duration") if "duration" in have else np.zeros(n)
    return [{"track_id": str(text["track_id"][i]), "path": str(text["path"][i]),
             "artist": str(text["artist"][i]), "album": str(text["album"][i]), "title": str(text["title"][i]),
             "tag_genre": str(text["tag_genre"][i]), "year": str(text["year"][i]),
             "track_no": str(text["track_no"][i]), "duration": round(float(duration[i] or 0.0), 3),
             "label": str(text["genre"][i]), "predicted_genre": str(labels[top[i]]),
             "probability": round(float(probs[i, top[i]]), 4), "source": str(text["source"][i])}
            for i in range(n)]
