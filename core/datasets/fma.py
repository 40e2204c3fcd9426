"""Free Music Archive layout: ``fma_metadata/tracks.csv`` + ``fma_*/NNN/NNNNNN.mp3``.

Defferrard et al., "FMA: A Dataset for Music Analysis", ISMIR 2017.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

from core.datasets.track import Track, assign_splits

# The selection of Adiyansjah et al. (2019): seven single-genre classes.
PAPER_GENRES = ("Classical", "Electronic", "Folk", "Hip-Hop", "Instrumental", "Jazz", "Rock")


def is_fma_folder(root: Path) -> bool:
    return (Path(root) / "fma_metadata" / "tracks.csv").is_file()


def fma_audio_path(root: Path, track_id: int) -> Path | None:
    """``fma_*/NNN/NNNNNN.mp3`` for the first audio folder that holds it."""
    tid = f"{int(track_id):06d}"
    for d in sorted(Path(root).glob("fma_*")):
        if d.name == "fma_metadata" or not d.is_dir():
            continue
        p = d / tid[:3] / f"{tid}.mp3"
        if p.is_file():
            return p
    return None


def read_fma(root: str | Path, genres: tuple[str, ...] | None = PAPER_GENRES,
             per_genre: int | None = None, seed: int = 0) -> list[Track]:
    """Single-genre FMA tracks of ``genres`` (``None``: every top genre),
    balanced to ``per_genre`` each, split 8:1:1 with artists kept together.

    Tracks whose audio is not on disk are skipped.
    """
    root = Path(root)
    df = pd.read_csv(root / "fma_metadata" / "tracks.csv", header=[0, 1], index_col=0,
                     low_memory=False)
    top = df[("track", "genre_top")]
    n_genres = df[("track", "genres")].map(
        lambda s: len(ast.literal_eval(s)) if isinstance(s, str) and s.startswith("[") else 0)
    keep = top.notna() & (n_genres == 1)
    if genres is not None:
        keep &= top.isin(genres)
    sel = df[keep]
    rows = []
    for tid, row in sel.iterrows():
        path = fma_audio_path(root, tid)
        if path is None:
            continue
        rows.append((str(tid), path, row[("track", "genre_top")],
                     str(row.get(("artist", "name"), "") or ""),
                     str(row.get(("track", "title"), "") or ""),
                     str(row.get(("album", "title"), "") or "")))
    if per_genre:
        out, count = [], {}
        order = pd.Series(range(len(rows))).sample(frac=1, random_state=seed).tolist()
        for i in sorted(order, key=lambda i: (rows[i][2], order.index(i))):
            g = rows[i][2]
            if count.get(g, 0) < per_genre:
                out.append(rows[i])
                count[g] = count.get(g, 0) + 1
        rows = out
    splits = assign_splits([r[0] for r in rows], [r[3] or r[0] for r in rows],
                           [r[2] for r in rows], seed=seed)
    return [Track(track_id=f"fma_{tid}", path=p.resolve(), genre=g, split=s, artist=a,
                  title=t, album=al, source=root.name)
            for (tid, p, g, a, t, al), s in zip(rows, splits)]
