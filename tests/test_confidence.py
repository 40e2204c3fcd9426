"""Method 2's genre term weighted by the classifier's confidence (core.recommend.confidence)."""

import numpy as np
import pytest

from core.catalog.index import CatalogIndex
from core.recommend.confidence import genre_confidence
from core.recommend.methods import RecommendError, recommend

LABELS = ["A", "B", "C"]


def test_confidence_of_sure_unsure_and_mixed_seeds():
    sure = np.array([[1.0, 0.0, 0.0]] * 3)
    flat = np.full((3, 3), 1 / 3)
    mixed = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    assert genre_confidence(sure, "top") == pytest.approx(1.0)
    assert genre_confidence(flat, "top") == pytest.approx(0.0)
    assert genre_confidence(sure, "entropy") == pytest.approx(1.0)
    assert genre_confidence(flat, "entropy") == pytest.approx(0.0)
    # three sure seeds of three genres: each is sure, the mix is not
    assert genre_confidence(mixed, "top") == pytest.approx(1.0)
    assert genre_confidence(mixed, "entropy") == pytest.approx(0.0)
    assert genre_confidence(flat, "off") == 1.0
    with pytest.raises(ValueError):
        genre_confidence(flat, "bogus")


def _index(seed_probs: np.ndarray) -> CatalogIndex:
    """Seeds s0..s2 near the origin direction e0; candidates on a circle: the
    nearest in sound (c0..c3) are predicted genre B, the far ones (c4..c7)
    genre A like the seeds' top genre."""
    rng = np.random.default_rng(0)
    seeds = np.array([[1.0, 0.02 * i, 0.0] for i in range(3)])
    angles = np.linspace(0.1, 1.2, 8)
    cands = np.stack([np.cos(angles), np.sin(angles), 0.01 * rng.standard_normal(8)], 1)
    E = np.vstack([seeds, cands])
    P = np.vstack([seed_probs, np.tile([0.05, 0.9, 0.05], (4, 1)), np.tile([0.9, 0.05, 0.05], (4, 1))])
    rows = [{"track_id": f"s{i}", "genre": "A", "artist": f"a{i}"} for i in range(3)] + \
           [{"track_id": f"c{i}", "genre": "A", "artist": f"b{i}"} for i in range(8)]
    return CatalogIndex.from_arrays(rows, {"m": E}, {"m": P}, LABELS)


def test_unsure_seeds_give_method_1_and_sure_seeds_let_genre_count():
    seeds = ["s0", "s1", "s2"]
    ids = lambda recs: [r.track_id for r in recs]  # noqa: E731
    unsure = _index(np.full((3, 3), 1 / 3))
    m1 = ids(recommend(unsure, seeds, k=4, method="cosine", model="m"))
    assert m1 == ["c0", "c1", "c2", "c3"]
    for mode in ("top", "entropy"):
        m2 = ids(recommend(unsure, seeds, k=4, method="genre", model="m", genre_weight=0.9, confidence=mode))
        assert m2 == m1
    sure = _index(np.tile([0.98, 0.01, 0.01], (3, 1)))
    for mode in ("top", "entropy"):
        m2 = ids(recommend(sure, seeds, k=4, method="genre", model="m", genre_weight=0.9, confidence=mode))
        assert m2 == ["c4", "c5", "c6", "c7"]
    # with the fixed weight (confidence "off") sure seeds' genre decides as well
    assert ids(recommend(sure, seeds, k=4, method="genre", model="m", genre_weight=0.9)) == ["c4", "c5", "c6", "c7"]


def test_unknown_confidence_is_a_request_error():
    with pytest.raises(RecommendError, match="confidence"):
        recommend(_index(np.full((3, 3), 1 / 3)), ["s0"], method="genre", model="m", confidence="x")
