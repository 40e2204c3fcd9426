"""A folder with ``metadata.csv`` (track_id, path, genre, split, artist, title, …)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.datasets.track import Track, assign_splits

REQUIRED = ("track_id", "path", "genre")


def is_metadata_folder(root: Path) -> bool:
    return (Path(root) / "metadata.csv").is_file()


def read_metadata_folder(root: str | Path) -> list[Track]:
    """Read ``root/metadata.csv``; paths are relative to ``root``.

    Without a ``split`` column an artist-aware 8:1:1 split is made.
    """
    root = Path(root)
    df = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{root / 'metadata.csv'}: missing column(s) {', '.join(missing)}")
    df = df[df["genre"].str.strip() != ""]
    artists = df["artist"].tolist() if "artist" in df else [""] * len(df)
    if "split" in df and (df["split"] != "").all():
        splits = df["split"].str.lower().tolist()
    else:
        groups = [a or t for a, t in zip(artists, df["track_id"])]
        splits = assign_splits(df["track_id"].tolist(), groups, df["genre"].tolist())
    col = lambda c: df[c].tolist() if c in df else [""] * len(df)  # noqa: E731
    return [
        Track(track_id=tid, path=(root / p).resolve(), genre=g.strip(), split=s,
              artist=a, title=t, album=al, source=root.name)
        for tid, p, g, s, a, t, al in zip(df["track_id"], df["path"], df["genre"], splits,
                                          artists, col("title"), col("album"))
    ]


def metadata_column(roots, column: str) -> dict[str, str]:
    """``{track_id: value}`` of one extra ``metadata.csv`` column (e.g.
    ``emotion_quadrant``, ``vocalisation``) over the folders that have it
    (empty values left out; folders without the column or the file skipped)."""
    out: dict[str, str] = {}
    for root in roots:
        path = Path(root) / "metadata.csv"
        if not path.is_file():
            continue
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        if column in df.columns and "track_id" in df.columns:
            out.update({t: v for t, v in zip(df["track_id"], df[column]) if v})
    return out
