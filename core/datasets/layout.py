"""Which layout a folder has: ``metadata`` (``metadata.csv``), ``fma``,
``genres`` (one sub-folder per genre) or ``library`` (any other folder of
music: unlabelled).

Detection (``auto``) must not mistake artists or albums for genres: sub-folders
count as genres only when at least half of those holding audio are named as
a genre that the shipped models know (read from the models' own label lists
in the artifacts folder, compared case- and punctuation-blind, so ``hiphop``
is ``Hip-Hop``). An explicit layout overrides detection.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

from core.config import Paths
from core.datasets.fma import is_fma_folder
from core.datasets.folder import is_metadata_folder
from core.datasets.gtzan import genre_subfolders
from core.errors import GenreError

LAYOUTS = ("auto", "metadata", "fma", "genres", "library")


class LayoutError(GenreError, ValueError):
    """A folder that cannot be read with the layout asked for."""


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def model_genres(artifacts_dir: str | Path | None = None) -> list[str]:
    """The genre labels of the shipped models (union over every
    ``*.safetensors`` header in the artifacts folder; empty without models).
    Reads the JSON header only: no torch, no weights."""
    root = Path(artifacts_dir) if artifacts_dir is not None else Paths().artifacts
    labels: list[str] = []
    for p in sorted(root.glob("*.safetensors")) if root.is_dir() else []:
        try:
            with open(p, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                if not 0 < n < 10_000_000:
                    continue
                meta = json.loads(f.read(n)).get("__metadata__", {})
            for g in json.loads(meta.get("labels", "[]")):
                if isinstance(g, str) and g not in labels:
                    labels.append(g)
        except (OSError, ValueError, AttributeError, TypeError):
            continue
    return labels


def looks_like_genres(root: Path, known_genres: Iterable[str]) -> bool:
    """Whether the audio sub-folders of ``root`` are named as known genres
    (at least half of them, and at least one)."""
    known = {_norm(g) for g in known_genres}
    subs = genre_subfolders(root)
    hits = sum(_norm(d.name) in known for d in subs)
    return bool(known) and hits >= 1 and 2 * hits >= len(subs)


def detect_layout(root: str | Path, known_genres: Iterable[str] | None = None) -> str:
    """The layout ``auto`` reads ``root`` with (``known_genres``: default the
    shipped models' labels, :func:`model_genres`)."""
    root = Path(root)
    if is_metadata_folder(root):
        return "metadata"
    if is_fma_folder(root):
        return "fma"
    genres = model_genres() if known_genres is None else known_genres
    if looks_like_genres(root, genres):
        return "genres"
    return "library"


def check_layout(layout: str) -> str:
    """``layout`` lower-cased, or a :class:`LayoutError` naming the choices."""
    name = (layout or "auto").strip().lower()
    if name not in LAYOUTS:
        raise LayoutError(f"unknown layout {layout!r} (choose from {', '.join(LAYOUTS)})")
    return name
