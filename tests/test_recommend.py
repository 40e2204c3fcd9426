"""recommend(): methods, exclusions, extras — on small synthetic indexes."""

from __future__ import annotations

import numpy as np
import pytest

from core.catalog.index import CatalogIndex
from core.recommend.methods import RecommendError, SeedVector, recommend, song_key

# Method 2 with its fixed weight (no confidence scaling): the formulas these tests check.
FIXED_W = dict(method="genre", confidence="off")

LABELS = ["A", "B", "C"]


def onehot(g: str, p: float = 0.9) -> np.ndarray:
    v = np.full(len(LABELS), (1 - p) / (len(LABELS) - 1), np.float32)
    v[LABELS.index(g)] = p
    return v


def make_index(items: list[tuple], dim: int | None = None, cnn: bool = True) -> CatalogIndex:
    """``items``: (track_id, embedding, predicted genre, true genre[, artist, title[, digest]])."""
    rows, emb, probs = [], [], []
    for it in items:
        tid, e, pred, genre = it[:4]
        artist, title = (it[4], it[5]) if len(it) > 5 else ("", tid)
        digest = it[6] if len(it) > 6 else f"d-{tid}"
        rows.append({"track_id": tid, "genre": genre, "artist": artist, "title": title, "digest": digest,
                     "path": f"/x/{tid}.mp3"})
        emb.append(np.asarray(e, np.float32))
        probs.append(onehot(pred))
    E, P = np.stack(emb), np.stack(probs)
    models = {"crnn": E}
    if cnn:
        models["cnn"] = E[:, ::-1].copy() * 2.0      # a second "model" for the ensemble
    return CatalogIndex.from_arrays(rows, models, {m: P for m in models}, LABELS)


def ids(recs) -> list[str]:
    return [r.track_id for r in recs]


@pytest.fixture
def clusters() -> CatalogIndex:
    """Three genre clusters of 8 tracks in 6-D, a little noise."""
    rng = np.random.default_rng(0)
    items = []
    for gi, g in enumerate(LABELS):
        centre = np.zeros(6)
        centre[2 * gi] = 1
        for j in range(8):
            items.append((f"{g}{j}", centre + 0.15 * rng.standard_normal(6), g, g, f"artist {g}{j % 3}",
                          f"song {g}{j}"))
    return make_index(items)


def test_excludes_seeds_and_returns_ranked_list(clusters):
    recs = recommend(clusters, ["A0", "A1", "A2", "A3", "A4"], k=5)
    assert len(recs) == 5 and [r.rank for r in recs] == [1, 2, 3, 4, 5]
    assert not set(ids(recs)) & {"A0", "A1", "A2", "A3", "A4"}
    assert {"A5", "A6", "A7"} <= set(ids(recs))             # the rest of the cluster first
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    r = recs[0]
    assert r.genre == "A" and r.predicted_genre == "A" and 0 <= r.genre_match <= 1
    assert "cosine similarity" in r.reason and "closest seed" in r.reason
    assert r.score == pytest.approx(r.similarity)           # method 1: score is the cosine


def test_duplicates_of_seeds_and_of_each_other_never_recommended():
    items = [
        ("seed", [1, 0, 0], "A", "A", "The Band", "Song One"),
        ("seed_copy", [1, 0, 0], "A", "A", "the band", "Song One (Remastered 2011)"),
        ("seed_bytes", [0.99, 0.01, 0], "A", "A", "Other", "Other title", "d-seed"),   # same file
        ("near", [0.95, 0.3, 0], "A", "A", "X", "Near"),
        ("near_copy", [0.95, 0.31, 0], "A", "A", "X", "near"),
        ("mid", [0.7, 0.7, 0], "B", "B", "Y", "Mid"),
        ("far", [0, 1, 0], "B", "B", "Z", "Far"),
        ("farther", [0, 0, 1], "C", "C", "W", "Farther"),
    ]
    recs = recommend(make_index(items), ["seed"], k=4)
    got = ids(recs)
    assert not {"seed", "seed_copy", "seed_bytes"} & set(got)
    assert got[0] == "near" and "near_copy" not in got
    assert got == ["near", "mid", "far", "farther"]
    # Fewer distinct tracks than k: the list is just shorter, never padded with copies.
    assert ids(recommend(make_index(items), ["seed"], k=10)) == got


def test_song_key_normalisation():
    assert song_key("Beyoncé", "Halo (Live)") == song_key("beyonce", "HALO")
    assert song_key("A", "Song - 2011 Remaster") == song_key("a", "song")
    assert song_key("A", "Song feat. B") == song_key("A", "Song")
    assert song_key("A", "") is None
    assert song_key("A", "One") != song_key("B", "One")


def test_method2_differs_from_method1_when_genres_disagree():
    # "close" is nearest in embedding space but the model hears genre B;
    # "same_genre" is a little further away but predicted A like the seeds.
    items = [
        ("s1", [1, 0.05, 0], "A", "A"), ("s2", [1, -0.05, 0], "A", "A"),
        ("close", [1, 0.2, 0], "B", "B"),
        ("same_genre", [1, 0.45, 0], "A", "A"),
        ("other", [0, 1, 0], "C", "C"),
    ]
    idx = make_index(items)
    m1 = recommend(idx, ["s1", "s2"], method="cosine", k=2)
    m2 = recommend(idx, ["s1", "s2"], method="genre", k=2, genre_weight=0.5, confidence="off", variant="soft")
    assert ids(m1) == ["close", "same_genre"]
    assert ids(m2) == ["same_genre", "close"]
    top = m2[0]
    assert top.score == pytest.approx(0.5 * top.similarity + 0.5 * top.genre_match, abs=1e-6)
    assert m2[1].genre_match < top.genre_match
    assert "score = 0.50*" in top.reason
    # w = 0 is method 1 exactly.
    assert ids(recommend(idx, ["s1", "s2"], method="genre", genre_weight=0.0, k=2)) == ids(m1)


def test_max_aggregate_serves_two_tastes(clusters):
    seeds = ["A0", "A1", "A2", "C0", "C1"]
    mean = recommend(clusters, seeds, k=6, aggregate="mean")
    mx = recommend(clusters, seeds, k=6, aggregate="max")
    genres = lambda recs: {r.genre for r in recs}  # noqa: E731
    assert genres(mx) == {"A", "C"}
    assert "B" not in genres(mx)
    assert len(mean) == 6 and "max over seeds" in mx[0].reason


def test_euclidean_and_pnorm_differ_from_cosine():
    # "scaled" points the same way as the seed but is far away; "offset" is near but off-angle.
    items = [("seed", [1, 0], "A", "A"), ("scaled", [10, 0], "A", "A"), ("offset", [1, 0.5], "A", "A"),
             ("far", [-3, 3], "B", "B")]
    idx = make_index(items, cnn=False)
    assert ids(recommend(idx, ["seed"], k=1))[0] == "scaled"
    for dist in ("euclidean", "pnorm"):
        recs = recommend(idx, ["seed"], k=3, distance=dist, p=3)
        assert ids(recs)[0] == "offset"
        assert all(0 < r.similarity <= 1 for r in recs)
        assert recs[0].similarity > recs[-1].similarity
    with pytest.raises(RecommendError, match="p must be"):
        recommend(idx, ["seed"], distance="pnorm", p=0.5)


def test_ensemble_needs_two_models(clusters):
    recs = recommend(clusters, ["B0", "B1"], model="ensemble", k=3)
    assert {r.genre for r in recs} == {"B"}
    # "a+b" names the parts; "ensemble" is every learned model in the index.
    assert ids(recommend(clusters, ["B0", "B1"], model="cnn+crnn", k=3)) == ids(recs)
    single = make_index([("a", [1, 0], "A", "A"), ("b", [0, 1], "B", "B")], cnn=False)
    with pytest.raises(RecommendError, match="at least two models"):
        recommend(single, ["a"], model="ensemble")
    with pytest.raises(RecommendError, match="cnn_msd is not in the index"):
        recommend(single, ["a"], model="crnn+cnn_msd")


def test_mmr_diversity_breaks_up_near_copies():
    items = [("seed", [1, 0, 0, 0], "A", "A")]
    items += [(f"album{i}", [0.95, 0.2, 0.001 * i, 0], "A", "A", "Same", f"Track {i}") for i in range(6)]
    items += [("alt1", [0.9, 0, 0.3, 0], "A", "A"), ("alt2", [0.9, 0, 0, 0.3], "A", "A"),
              ("alt3", [0.85, -0.3, 0, 0.1], "A", "A")]
    idx = make_index(items)
    plain = recommend(idx, ["seed"], k=5)
    diverse = recommend(idx, ["seed"], k=5, diversity=0.7)
    n_album = lambda recs: sum(t.startswith("album") for t in ids(recs))  # noqa: E731
    assert n_album(plain) == 5
    assert n_album(diverse) <= 2 and {"alt1", "alt2"} <= set(ids(diverse))
    assert ids(diverse)[0] == ids(plain)[0]                  # the best match still leads


def test_relevance_feedback_moves_the_query(clusters):
    base = recommend(clusters, ["A0", "A1"], k=6)
    assert {r.genre for r in base} == {"A"}
    fb = recommend(clusters, ["A0", "A1"], k=6, liked=["B0", "B1", "B2"], disliked=["A2"])
    got = set(ids(fb))
    assert not got & {"B0", "B1", "B2", "A2"}                 # feedback tracks are not re-recommended
    assert any(r.genre == "B" for r in fb)
    assert fb[0].similarity != pytest.approx(base[0].similarity)
    mx = recommend(clusters, ["A0", "A1"], k=6, aggregate="max", liked=["C0"])
    assert any(r.genre == "C" for r in mx)


def test_uploaded_seed_vectors(clusters):
    row = clusters.rows_of(["B3"])[0]
    sv = SeedVector(embedding={m: clusters.embeddings(m)[row] for m in ("cnn", "crnn")},
                    probs={m: clusters.probs(m)[row] for m in ("cnn", "crnn")}, name="upload")
    recs = recommend(clusters, [], seed_vectors=[sv], k=3)
    assert ids(recs)[0] == "B3" and {r.genre for r in recs} == {"B"}
    # Known to be the same file (content hash) or song: excluded.
    sv.digest = "d-B3"
    assert "B3" not in ids(recommend(clusters, [], seed_vectors=[sv], k=3))
    sv.digest, sv.artist, sv.title = "", "Artist B0", "Song B3"
    assert "B3" not in ids(recommend(clusters, [], seed_vectors=[sv], k=3, model="ensemble"))
    # Mixed catalog + upload seeds.
    assert len(recommend(clusters, ["A0"], seed_vectors=[sv], method="genre", k=3)) == 3
    bad = SeedVector(embedding={"crnn": np.zeros(3)}, probs={"crnn": np.zeros(3)})
    with pytest.raises(RecommendError, match="does not match"):
        recommend(clusters, [], seed_vectors=[bad])


@pytest.mark.parametrize("kwargs, match", [
    (dict(seeds=[]), "give 1 to 5 seed tracks"),
    (dict(seeds=["A0", "A1", "A2", "A3", "A4", "A5"]), "give 1 to 5"),
    (dict(seeds=["nope"]), "track 'nope' is not in the catalog"),
    (dict(seeds=["A0", "A0"]), "listed twice"),
    (dict(seeds=["A0"], method="magic"), "unknown method"),
    (dict(seeds=["A0"], genre_weight=2), "genre_weight"),
    (dict(seeds=["A0"], diversity=-1), "diversity"),
    (dict(seeds=["A0"], model="vgg"), "vgg is not in the index"),
])
def test_bad_requests_are_one_line_errors(clusters, kwargs, match):
    with pytest.raises(RecommendError, match=match) as err:
        recommend(clusters, **kwargs)
    assert "\n" not in str(err.value)


def test_empty_index_is_a_clear_error(tmp_path):
    with pytest.raises(RecommendError, match="empty"):
        recommend(CatalogIndex.open(tmp_path), ["x"])


def test_standardise_uses_catalog_statistics(clusters):
    # A constant offset on one dimension dominates raw cosine; z-scoring removes it.
    items = [("seed", [1, 0.2, 100], "A", "A"), ("twin", [1, 0.25, 100], "A", "A"),
             ("other", [0, 1, 100], "B", "B"), ("x", [0.1, 0.9, 101], "B", "B"),
             ("y", [0.9, 0.1, 99], "A", "A")]
    idx = make_index(items)
    raw = recommend(idx, ["seed"], k=4)
    z = recommend(idx, ["seed"], k=4, standardise=True)
    assert max(r.similarity for r in raw) - min(r.similarity for r in raw) < 0.01
    assert z[0].similarity - z[-1].similarity > 0.5
    assert z[-1].genre == "B"
    # An uploaded copy of a row lands exactly on that row in every space.
    row = idx.rows_of(["twin"])[0]
    sv = SeedVector({m: idx.embeddings(m)[row] for m in idx.models}, {m: idx.probs(m)[row] for m in idx.models})
    for kw in (dict(standardise=True), dict(distance="euclidean", standardise=True),
               dict(model="ensemble", distance="pnorm")):
        assert recommend(idx, [], seed_vectors=[sv], k=1, **kw)[0].track_id == "twin"


def test_large_catalogs_use_the_approximate_index(monkeypatch):
    import core.recommend.scoring as scoring
    from core.recommend.views import views_of

    rng = np.random.default_rng(1)
    centres = rng.standard_normal((20, 16))
    n = 3000
    g = rng.integers(0, 20, n)
    E = centres[g] + 0.3 * rng.standard_normal((n, 16))
    items = [(f"t{i}", E[i], LABELS[g[i] % 3], LABELS[g[i] % 3]) for i in range(n)]
    idx = make_index(items)
    seeds = ["t0", "t1", "t2"]
    exact = {kw: ids(recommend(idx, seeds, k=10, model="crnn", **dict(kw))) for kw in
             [(), (("method", "genre"),), (("aggregate", "max"),)]}
    monkeypatch.setattr(scoring, "APPROX_ABOVE", 1000)
    approx_idx = make_index(items)
    for kw, want in exact.items():
        got = ids(recommend(approx_idx, seeds, k=10, model="crnn", **dict(kw)))
        assert len(set(got) & set(want)) >= 9, kw
    views = views_of(approx_idx)
    assert views.sizes()["vector_indices"] == 1       # built by the requests above, kept for the next
    assert views.vector_index("crnn", False, scoring.APPROX_ABOVE).method == "ivf"


# --------------------------------------------------------------------------- centre points, variants

def _polar(deg: float) -> list[float]:
    return [float(np.cos(np.radians(deg))), float(np.sin(np.radians(deg)))]


# (track, angle in degrees, predicted probabilities over A, B, C)
GEOMETRY = [
    ("a1", 0, [0.95, 0.03, 0.02]), ("a2", 10, [0.90, 0.05, 0.05]), ("a3", 22, [0.92, 0.04, 0.04]),
    ("a4", 80, [0.40, 0.35, 0.25]), ("a5", 70, [0.45, 0.30, 0.25]),     # predicted A, unsure
    ("b1", 100, [0.20, 0.60, 0.20]),                                     # the only B prediction
    ("c1", 200, [0.1, 0.1, 0.8]), ("c2", 210, [0.1, 0.1, 0.8]), ("c3", 220, [0.1, 0.1, 0.8]),
    ("c4", 300, [0.1, 0.2, 0.7]),
]


def geometry_index(extra: list[tuple] = ()) -> CatalogIndex:
    items = list(GEOMETRY) + list(extra)
    rows = [{"track_id": t, "genre": "ABC"[int(np.argmax(p))], "artist": f"artist {t}", "title": t,
             "digest": f"d-{t}"} for t, _, p in items]
    E = np.array([_polar(a) for _, a, _ in items], np.float32)
    P = np.array([p for _, _, p in items], np.float32)
    return CatalogIndex.from_arrays(rows, {"crnn": E, "cnn": E.copy()}, {"crnn": P, "cnn": P}, LABELS)


def test_centre_points_known_geometry():
    from core.recommend.methods import genre_centres

    c = genre_centres(geometry_index())
    # A: five tracks predicted A; p_A median 0.90 → confident a1, a2, a3 (0°, 10°, 22°):
    # mean direction ≈ 10.7°, nearest a2. (All five: mean ≈ 36° → a3; most confident: a1.)
    assert c["A"].track_id == "a2"
    assert (c["A"].n_predicted, c["A"].n_confident) == (5, 3) and c["A"].threshold == pytest.approx(0.90)
    # B: predicted for one track only → the three highest p_B (b1 100°, a4 80°, a5 70°): mean ≈ 83° → a4.
    assert c["B"].track_id == "a4" and (c["B"].n_predicted, c["B"].n_confident) == (1, 3)
    # C: p_C 0.8, 0.8, 0.8, 0.7 → median 0.8 → c1, c2, c3 → c2 (c4 at 300° does not pull it).
    assert c["C"].track_id == "c2" and c["C"].n_confident == 3


def test_centre_variant_ranks_by_the_seeds_genre_centre():
    idx = geometry_index()
    # Uploaded seeds (not in the catalog, so the centre points stay as above), heard as A.
    up = [SeedVector({m: np.array(_polar(a), np.float32) for m in ("cnn", "crnn")},
                     {m: np.array([0.9, 0.05, 0.05], np.float32) for m in ("cnn", "crnn")}, name=f"s{a}")
          for a in (40, 45)]
    seeds: list[str] = []
    E = {t: np.array(_polar(a)) for t, a, _ in GEOMETRY}
    cos = lambda t, v: float(E[t] @ v / np.linalg.norm(v))  # noqa: E731
    q = np.array(_polar(40)) + np.array(_polar(45))
    # Method 1: cosine to the mean seed, nearest first (a3 at 22° beats a5 at 70°).
    m1 = recommend(idx, seeds, seed_vectors=up, k=4)
    assert ids(m1) == ["a3", "a5", "a2", "a4"]
    # Paper's method 2, w = 1: closeness to genre A's centre point a2 alone.
    centre = recommend(idx, seeds, seed_vectors=up, k=4, **FIXED_W, variant="centre", genre_weight=1.0)
    assert ids(centre) == ["a2", "a1", "a3", "a5"]
    assert centre[0].centre_match == pytest.approx(1.0, abs=1e-6)
    assert "centre points: A 100% → a2" in centre[0].reason
    # w = 0.5: score = 0.5 cosine to the seeds + 0.5 cosine to a2, for every track listed.
    half = recommend(idx, seeds, seed_vectors=up, k=6, **FIXED_W, variant="centre", genre_weight=0.5)
    for r in half:
        assert r.similarity == pytest.approx(cos(r.track_id, q), abs=1e-5)
        assert r.centre_match == pytest.approx(cos(r.track_id, E["a2"]), abs=1e-5)
        assert r.score == pytest.approx(0.5 * r.similarity + 0.5 * r.centre_match, abs=1e-6)
    want = sorted(E, key=lambda t: -(0.5 * cos(t, q) + 0.5 * cos(t, E["a2"])))[:6]
    assert ids(half) == want
    # Soft variant, w = 1: by genre-probability agreement with the seeds (a2 has their exact mix).
    soft = recommend(idx, seeds, seed_vectors=up, k=3, **FIXED_W, variant="soft", genre_weight=1.0)
    assert ids(soft)[0] == "a2" and soft[0].genre_match == pytest.approx(1.0, abs=1e-6)
    assert soft[0].centre_match is None and set(ids(soft)) == {"a1", "a2", "a3"}
    # Mixed seeds (one A, one C): equal shares of the two centre points a2 and c2.
    mixed = recommend(idx, ["c3"], seed_vectors=up[:1], k=2, **FIXED_W, variant="centre",
                      genre_weight=1.0)
    for r in mixed:
        assert r.centre_match == pytest.approx(0.5 * cos(r.track_id, E["a2"]) + 0.5 * cos(r.track_id, E["c2"]),
                                               abs=1e-5)
    mx = recommend(idx, ["c3"], seed_vectors=up[:1], k=2, **FIXED_W, variant="centre",
                   genre_weight=1.0, aggregate="max")
    assert set(ids(mx)) == {"a2", "c2"}                       # each centre point is its own best match
    with pytest.raises(RecommendError, match="unknown variant"):
        recommend(idx, ["a1"], **FIXED_W, variant="hard")


def test_leave_artist_out_excludes_the_artists():
    items = [("s", [1, 0, 0], "A", "A", "The Band", "Seed"),
             ("same1", [0.99, 0.1, 0], "A", "A", "the band", "Other song"),
             ("same2", [0.98, 0.15, 0], "A", "A", "THE BAND ", "Third song"),
             ("x", [0.9, 0.3, 0], "A", "A", "X", "x"), ("y", [0.7, 0.7, 0], "B", "B", "Y", "y"),
             ("z", [0, 1, 0], "B", "B", "Z", "z"), ("anon", [0.95, 0.2, 0], "A", "A", "", "anon")]
    idx = make_index(items)
    assert ids(recommend(idx, ["s"], k=2)) == ["same1", "same2"]
    out = recommend(idx, ["s"], k=4, exclude_artists=["The Band"])
    assert ids(out) == ["anon", "x", "y", "z"]                # no "The Band", however spelt
    assert "anon" in ids(recommend(idx, ["s"], k=4, exclude_artists=[""]))   # empty name: nothing


def test_rank_of_and_list_differences():
    from core.recommend.methods import list_differences, rank_of

    items = [("s1", [1, 0.05, 0], "A", "A"), ("s2", [1, -0.05, 0], "A", "A"),
             ("close", [1, 0.2, 0], "B", "B"), ("same_genre", [1, 0.45, 0], "A", "A"),
             ("other", [0, 1, 0], "C", "C")]
    idx = make_index(items)
    kw1, kw2 = dict(method="cosine", k=1), dict(method="genre", k=1, genre_weight=0.5, confidence="off",
                                                  variant="soft")
    m1, m2 = recommend(idx, ["s1", "s2"], **kw1), recommend(idx, ["s1", "s2"], **kw2)
    r = rank_of(idx, ["s1", "s2"], ["close", "same_genre", "s1"], **kw2)
    assert r["same_genre"]["rank"] == 1 and r["close"]["rank"] == 2 and r["s1"]["rank"] is None
    assert r["close"]["score"] == pytest.approx(0.5 * r["close"]["similarity"] + 0.5 * r["close"]["genre_match"])
    diff = list_differences(idx, ["s1", "s2"], m1, m2, kw1, kw2)
    assert diff.n_shared == 0
    (a,), (b,) = diff.only["a"], diff.only["b"]
    assert (a["track_id"], a["rank"], a["other_rank"]) == ("close", 1, 2)
    assert "method 2 ranks it #2" in a["why"] and "genre match" in a["why"] and "hears B" in a["why"]
    assert (b["track_id"], b["other_rank"]) == ("same_genre", 2)
    assert "method 1 ranks it #2" in b["why"] and "lifts it with genre match" in b["why"]
    both = list_differences(idx, ["s1", "s2"], recommend(idx, ["s1", "s2"], k=2),
                            recommend(idx, ["s1", "s2"], method="genre", k=2), kw1, kw2)
    assert both.shared == ["close", "same_genre"] and both.only == {"a": [], "b": []}


def test_ensemble_aligns_genres_by_name():
    rows = [{"track_id": t, "genre": g, "title": t} for t, g in (("a", "A"), ("b", "B"), ("c", "A"))]
    E = np.eye(3, dtype=np.float32)
    P = np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.2]], np.float32)
    idx = CatalogIndex.from_arrays(rows, {"m1": E, "m2": E}, {"m1": P, "m2": P[:, ::-1].copy()},
                                   {"m1": ["A", "B"], "m2": ["B", "A"]})
    recs = recommend(idx, ["a"], model="ensemble", method="genre", genre_weight=1.0, k=2, variant="soft")
    assert ids(recs) == ["c", "b"] and recs[0].predicted_genre == "A"
    # No model named: the preferred spec (the val winner, the ensemble) when it
    # applies; with a single learned model, that model.
    assert recommend(idx, ["a"], k=1)[0].reason.count("(ensemble,") == 1
    solo = CatalogIndex.from_arrays(rows, {"m1": E}, {"m1": P}, {"m1": ["A", "B"]})
    assert recommend(solo, ["a"], k=1)[0].reason.count("(m1,") == 1
