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
        m2 = ids(recommend(unsure, seeds, k=4, method="genre", model="m", genre_weight=0.9, confidence=mode,
                          variant="soft"))
        assert m2 == m1
    sure = _index(np.tile([0.98, 0.01, 0.01], (3, 1)))
    for mode in ("top", "entropy"):
        m2 = ids(recommend(sure, seeds, k=4, method="genre", model="m", genre_weight=0.9, confidence=mode,
                          variant="soft"))
        assert m2 == ["c4", "c5", "c6", "c7"]
    # with the fixed weight (confidence "off") sure seeds' genre decides as well
    fixed = recommend(sure, seeds, k=4, method="genre", model="m", genre_weight=0.9, variant="soft")
    assert ids(fixed) == ["c4", "c5", "c6", "c7"]


def test_unknown_confidence_is_a_request_error():
    with pytest.raises(RecommendError, match="confidence"):
        recommend(_index(np.full((3, 3), 1 / 3)), ["s0"], method="genre", model="m", confidence="x")


def test_gate_is_closed_below_its_threshold_and_opens_linearly():
    from core.recommend.confidence import CONFIDENCE_MODES, is_confidence_mode

    # seeds' mix top genre 0.6: gate50 opens to (0.6 − 0.5) / 0.5 = 0.2, gate70 stays shut
    seeds = np.array([[0.6, 0.3, 0.1]] * 2)
    assert genre_confidence(seeds, "gate50") == pytest.approx(0.2)
    assert genre_confidence(seeds, "gate70") == 0.0
    assert genre_confidence(np.array([[1.0, 0, 0]] * 3), "gate90") == pytest.approx(1.0)
    # two sure seeds of different genres: each is sure, the mix's top genre is 0.5 → shut
    assert genre_confidence(np.array([[1.0, 0, 0], [0, 1.0, 0]]), "gate50") == 0.0
    assert {"gate50", "gate70", "gate90", "agree", "cand", "joint"} <= set(CONFIDENCE_MODES)
    assert is_confidence_mode("gate35") and not is_confidence_mode("gate100") and not is_confidence_mode("gatex")


def test_agreement_and_per_candidate_sureness():
    from core.recommend.confidence import candidate_confidence

    same = np.array([[0.7, 0.2, 0.1]] * 3)
    apart = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    assert genre_confidence(same, "agree") == pytest.approx(1.0)
    assert genre_confidence(apart, "agree") == pytest.approx(0.0)
    assert genre_confidence(same[:1], "agree") == 1.0
    q = candidate_confidence(np.array([[1 / 3] * 3, [1.0, 0, 0], [0.5, 0.5, 0]]), "cand")
    assert q[0] == pytest.approx(0.0) and q[1] == pytest.approx(1.0) and 0 < q[2] < 1
    assert candidate_confidence(same, "top") is None
    # joint: the seeds' mix sureness; cand: no seed factor
    assert genre_confidence(np.full((2, 3), 1 / 3), "joint") == pytest.approx(0.0)
    assert genre_confidence(np.full((2, 3), 1 / 3), "cand") == 1.0


@pytest.mark.parametrize("mode", ["gate50", "gate90", "joint"])
def test_closed_gate_falls_back_exactly_to_method_1(mode):
    seeds = ["s0", "s1", "s2"]
    unsure = _index(np.tile([0.45, 0.3, 0.25], (3, 1)))     # mix top 0.45: every gate ≥ 0.5 is shut
    if mode == "joint":
        unsure = _index(np.full((3, 3), 1 / 3))
    m1 = recommend(unsure, seeds, k=6, method="cosine", model="m")
    m2 = recommend(unsure, seeds, k=6, method="genre", model="m", genre_weight=0.9, confidence=mode,
                   variant="soft")
    assert [r.track_id for r in m2] == [r.track_id for r in m1]
    assert [r.score for r in m2] == pytest.approx([r.score for r in m1], abs=1e-12)
    # the same weight with the fixed weight lets the (unsure) genre term reorder the list
    fixed = recommend(unsure, seeds, k=6, method="genre", model="m", genre_weight=0.9, confidence="off",
                      variant="soft")
    assert [r.score for r in fixed] != pytest.approx([r.score for r in m1])


@pytest.mark.parametrize("mode", ["gate50", "gate90", "joint", "cand"])
def test_sure_seeds_open_the_gate_and_the_genre_term_decides(mode):
    seeds = ["s0", "s1", "s2"]
    ids = lambda recs: [r.track_id for r in recs]  # noqa: E731
    sure = _index(np.tile([0.98, 0.01, 0.01], (3, 1)))
    m1 = ids(recommend(sure, seeds, k=4, method="cosine", model="m"))
    m2 = ids(recommend(sure, seeds, k=4, method="genre", model="m", genre_weight=0.9, confidence=mode,
                          variant="soft"))
    assert m1 == ["c0", "c1", "c2", "c3"] and m2 == ["c4", "c5", "c6", "c7"]


def test_flat_candidates_get_no_genre_credit_per_candidate():
    """``cand``: a candidate the classifier cannot place gains nothing from its genre match."""
    E = np.array([[1.0, 0, 0], [0.9, 0.1, 0], [0.8, 0.2, 0]])
    P = np.array([[0.98, 0.01, 0.01], [1 / 3, 1 / 3, 1 / 3], [0.9, 0.05, 0.05]])
    rows = [{"track_id": t, "genre": "A", "artist": t} for t in ("s", "flat", "sure")]
    idx = CatalogIndex.from_arrays(rows, {"m": E}, {"m": P}, LABELS)
    got = {r.track_id: r for r in recommend(idx, ["s"], k=2, method="genre", model="m", genre_weight=0.5,
                                            variant="soft", confidence="cand")}
    assert got["flat"].score == pytest.approx(0.5 * got["flat"].similarity)
    assert got["sure"].score > 0.5 * got["sure"].similarity
    assert "how sure of its genre" in got["sure"].reason


def test_each_mode_is_described_in_one_line():
    from core.recommend.confidence import CONFIDENCE_MODES, describe_confidence

    assert "50%" in describe_confidence("gate50") and "rising to 1" in describe_confidence("gate50")
    assert len({describe_confidence(m) for m in CONFIDENCE_MODES}) >= 6
    assert all("\n" not in describe_confidence(m) for m in CONFIDENCE_MODES)
