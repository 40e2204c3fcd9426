"""What keeps a list from repeating itself: copies of a seed or of each other
(same content hash, or same normalised artist + title: the same song indexed
twice) and, with ``diversity``, near-copies (maximal marginal relevance).
Pure functions over arrays; the per-snapshot key arrays are
:meth:`core.recommend.views.RecommendViews.song_keys` and ``norm_artists``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Iterator

import numpy as np


def norm_text(s: str) -> str:
    """Case-, accent- and punctuation-folded text without version suffixes
    ("(live)", "- 2011 remaster", "feat. …")."""
    s = unicodedata.normalize("NFKD", str(s or ""))
    s = "".join(c for c in s if not unicodedata.combining(c)).casefold()
    s = re.sub(r"[\(\[\{].*?[\)\]\}]", " ", s)                 # (live), [remastered 2011]
    s = re.sub(r"\s(-|–)\s.*(remaster|version|edit|mix|live|mono|stereo).*$", " ", s)
    s = re.sub(r"\b(feat|ft|featuring)\b\.?.*$", " ", s)
    s = re.sub(r"[^0-9a-z]+", " ", s)
    return " ".join(s.split())


def song_key(artist: str, title: str) -> str | None:
    """Normalised artist + title identifying one song across copies, or ``None``
    when the title is unknown (then only the content hash identifies it)."""
    t = norm_text(title)
    return f"{norm_text(artist)}\x1f{t}" if t else None


def copies_mask(keys: np.ndarray, digests: np.ndarray, seed_rows: Iterable[int],
                extra_keys: Iterable[str | None] = (), extra_digests: Iterable[str] = ()) -> np.ndarray:
    """Boolean mask ``(N,)`` of the seed rows and every row with a seed's song
    key or content digest (``extra_*``: those of seeds outside the catalog)."""
    rows = np.asarray(list(seed_rows), dtype=int)
    seed_keys = {keys[r] for r in rows} | set(extra_keys)
    seed_keys.discard(None)
    seed_digests = {digests[r] for r in rows} | set(extra_digests)
    seed_digests.discard("")
    n = len(digests)
    excluded = np.zeros(n, bool)
    excluded[rows] = True
    excluded |= np.fromiter((d in seed_digests for d in digests), bool, n)
    if seed_keys:
        excluded |= np.fromiter((k in seed_keys for k in keys), bool, n)
    return excluded


def artists_mask(norm_artists: np.ndarray, artists: Iterable[str]) -> np.ndarray:
    """Boolean mask ``(N,)`` of rows whose normalised artist is one of
    ``artists`` (normalised here; empty names match nothing)."""
    wanted = {norm_text(a) for a in artists} - {""}
    if not wanted:
        return np.zeros(len(norm_artists), bool)
    return np.fromiter((n in wanted for n in norm_artists), bool, len(norm_artists))


def kept_flags(order: np.ndarray, keys: np.ndarray, digests: np.ndarray) -> Iterator[bool]:
    """Lazily, for each row of ``order`` in turn: ``True`` unless it is a copy
    (same content hash or same normalised artist + title) of an earlier kept row."""
    seen_keys: set = set()
    seen_digests: set = set()
    for i in map(int, order):
        if (digests[i] and digests[i] in seen_digests) or (keys[i] is not None and keys[i] in seen_keys):
            yield False
            continue
        seen_digests.add(digests[i])
        if keys[i] is not None:
            seen_keys.add(keys[i])
        yield True


def distinct(order: np.ndarray, keys: np.ndarray, digests: np.ndarray, n: int) -> list[int]:
    """The first ``n`` rows of ``order`` that are not copies (same content hash
    or same normalised artist + title) of an earlier one."""
    out: list[int] = []
    for i, kept in zip(map(int, order), kept_flags(order, keys, digests)):
        if kept:
            out.append(i)
            if len(out) >= n:
                break
    return out


def mmr(cands: list[int], score: np.ndarray, unit: np.ndarray, diversity: float, k: int) -> list[int]:
    """Maximal marginal relevance (Carbonell & Goldstein 1998) over ``cands``
    (rows of unit-norm ``unit``): pick ``argmax (1-λ)·score − λ·max cos(candidate,
    picked)`` with ``λ = diversity``, the most relevant first."""
    c = np.array(cands)
    rel = score[c].astype(np.float64)
    V = unit[c]
    pair = V @ V.T
    picked = [0]                                    # the most relevant goes first
    best_sim = pair[0].copy()
    left = np.ones(len(c), bool)
    left[0] = False
    while len(picked) < min(k, len(c)):
        scores = (1 - diversity) * rel - diversity * best_sim
        scores[~left] = -np.inf
        j = int(np.argmax(scores))
        picked.append(j)
        left[j] = False
        best_sim = np.maximum(best_sim, pair[j])
    return [int(c[j]) for j in picked]
