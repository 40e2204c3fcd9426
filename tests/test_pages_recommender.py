"""Recommender page: seeds → method 1 and method 2 lists, options, feedback, uploaded seeds."""

from __future__ import annotations

import pytest
from conftest import no_exceptions, open_page, synth, texts, write_audio

from ui import seeds as ui

SEEDS = ["tones_00", "tones_01", "noise_02", "clicks_03", "tones_04"]


def _lists(app) -> dict[str, list[str]]:
    """Track ids of the two result columns, from the like-button keys."""
    out = {"cosine": [], "genre": []}
    for b in app.button:
        if b.key and b.key.startswith("like_"):
            _, method, tid = b.key.split("_", 2)
            out[method].append(tid)
    return out


@pytest.fixture
def calls(monkeypatch):
    """Spy on core.recommend.methods.recommend: every call's arguments and result, in order.
    (With untrained test models many scores tie, so the test compares the page
    with what the recommender returned in the same run rather than a re-run.)"""
    import core.recommend.methods

    real, log = core.recommend.methods.recommend, []

    def spy(index, seeds, **kw):
        out = real(index, seeds, **kw)
        log.append({"seeds": list(seeds), **kw, "result": [r.track_id for r in out]})
        return out

    monkeypatch.setattr(core.recommend.methods, "recommend", spy)
    return log


def _last(calls) -> dict[str, list[str]]:
    """The ids the last page run got from the recommender, per method."""
    return {c["method"]: c["result"] for c in calls[-2:]}


def test_no_seeds_asks_for_some(app):
    open_page(app, "recommender")
    no_exceptions(app)
    assert "Choose at least one song" in texts(app)
    assert _lists(app) == {"cosine": [], "genre": []}


def test_five_seeds_give_both_methods_as_core_recommend_does(app, calls):
    open_page(app, "recommender")
    app.multiselect(key="rec_seeds_w").set_value(SEEDS).run()
    no_exceptions(app)
    shown = _lists(app)
    assert shown == _last(calls)
    assert [c["method"] for c in calls[-2:]] == ["cosine", "genre"]
    import core.recommend.methods as rec

    assert all(c["seeds"] == SEEDS and c["k"] == 5 and c["model"] == rec.PREFERRED_MODEL for c in calls[-2:])
    assert len(shown["cosine"]) == 5 and not set(shown["cosine"]) & set(SEEDS)
    assert app.session_state[ui.SEEDS_KEY] == SEEDS
    assert len(app.get("audio")) == 10
    assert "Method 1 · sound only" in texts(app) and "Method 2 · sound + genre" in texts(app)


def test_options_reach_the_recommender(app, calls):
    open_page(app, "recommender")
    app.multiselect(key="rec_seeds_w").set_value(SEEDS[:2]).run()
    app.slider(key="rec_k").set_value(8).run()
    app.selectbox(key="rec_model").set_value("ensemble").run()
    app.selectbox(key="rec_distance").set_value("euclidean").run()
    app.slider(key="rec_gw").set_value(1.0).run()
    app.radio(key="rec_agg").set_value("max").run()
    app.slider(key="rec_div").set_value(0.3).run()
    app.radio(key="rec_variant").set_value("centre").run()
    app.checkbox(key="rec_lao").check().run()
    no_exceptions(app)
    last = calls[-2:]
    for c in last:
        assert c["seeds"] == SEEDS[:2]
        assert (c["k"], c["model"], c["distance"], c["aggregate"], c["diversity"]) == \
            (8, "ensemble", "euclidean", "max", 0.3)
        # Leave-artist-out: the seeds' own artists are excluded from both lists.
        assert c["exclude_artists"] == ["Tones artist 0", "Tones artist 1"]
    assert (last[1]["method"], last[1]["genre_weight"], last[1]["variant"]) == ("genre", 1.0, "centre")
    assert "genre_weight" not in last[0] and "variant" not in last[0]
    assert _lists(app) == _last(calls) and len(_lists(app)["genre"]) == 8
    assert "centre match" in texts(app)


def test_like_and_dislike_feed_back_into_both_lists(app, calls):
    open_page(app, "recommender")
    app.multiselect(key="rec_seeds_w").set_value(SEEDS).run()
    first = _lists(app)
    liked = first["cosine"][0]
    app.button(key=f"like_cosine_{liked}").click().run()
    no_exceptions(app)
    assert app.session_state["rec_liked"] == [liked]
    after = _lists(app)
    assert liked not in after["cosine"] and liked not in after["genre"]
    assert after == _last(calls)
    assert all(c["liked"] == [liked] and c["disliked"] == [] for c in calls[-2:])
    assert "Your feedback:" in texts(app)
    disliked = after["genre"][0]
    app.button(key=f"dislike_genre_{disliked}").click().run()
    assert app.session_state["rec_disliked"] == [disliked]
    assert all(c["liked"] == [liked] and c["disliked"] == [disliked] for c in calls[-2:])
    assert _lists(app) == _last(calls)
    app.button(key="rec_clear").click().run()
    assert app.session_state["rec_liked"] == []
    assert all(c["liked"] == [] and c["disliked"] == [] for c in calls[-2:])


def test_surprise_me_picks_five_seeds(app):
    open_page(app, "recommender")
    app.button(key="rec_random").click().run()
    no_exceptions(app)
    assert len(app.session_state[ui.SEEDS_KEY]) == 5
    assert len(_lists(app)["cosine"]) == 5


def test_uploaded_song_can_be_a_seed(app, tmp_path, calls):
    open_page(app, "recommender")
    wav = write_audio(tmp_path / "mine.wav", synth("clicks", 3.0, seed=5)).read_bytes()
    app.file_uploader(key="rec_upload").set_value([("mine.wav", wav, "audio/wav"),
                                                   ("bad.wav", b"RIFFnope", "audio/wav")]).run()
    no_exceptions(app)
    assert len(app.error) == 1 and app.error[0].value.startswith("bad.wav:")
    # 3 s, a tenth of the models' window: the seed was heard looped, and the page says so.
    assert [c.value for c in app.caption if "heard it repeated" in c.value][0].startswith(
        ":material/warning: mine.wav: 3.0 s of audio")
    lists = _lists(app)
    assert len(lists["cosine"]) == 5 and len(lists["genre"]) == 5
    vectors = calls[-1]["seed_vectors"]
    assert calls[-1]["seeds"] == [] and [v.name for v in vectors] == ["mine.wav"]
    assert set(vectors[0].embedding) == {"cnn", "crnn"} and vectors[0].probs["crnn"].shape == (3,)


def test_the_page_shows_how_the_lists_differ(app, calls):
    import core.recommend.methods as rec

    open_page(app, "recommender")
    app.multiselect(key="rec_seeds_w").set_value(SEEDS).run()
    app.slider(key="rec_gw").set_value(1.0).run()        # genre only: the lists part ways
    no_exceptions(app)
    shown = _lists(app)
    shared = set(shown["cosine"]) & set(shown["genre"])
    text = texts(app)
    assert f"**{len(shared)} shared** of 5" in text
    only1 = [t for t in shown["cosine"] if t not in shared]
    only2 = [t for t in shown["genre"] if t not in shared]
    assert f"**{len(only1)}** only in method 1" in text and f"**{len(only2)}** only in method 2" in text
    if only1 or only2:
        diffs = [d.value for d in app.dataframe if "only in" in d.value.columns]
        assert len(diffs) == 1
        table = diffs[0]
        assert len(table) == len(only1) + len(only2)
        assert list(table["only in"]) == ["method 1"] * len(only1) + ["method 2"] * len(only2)
        # The "why" gives the track's rank under the other method, as core.recommend.methods.rank_of does.
        kw = {k: v for k, v in calls[-1].items() if k not in ("seeds", "result", "method")}
        if only1:
            r = rec.rank_of(app_index(app), SEEDS, only1[:1], method="genre", **kw)[only1[0]]
            assert int(table["rank in the other"].iloc[0]) == r["rank"]
            assert f"method 2 ranks it #{r['rank']}" in table["why"].iloc[0]
    assert "No offline figures yet" in text


def app_index(app):
    from core.catalog.index import CatalogIndex

    return CatalogIndex.open(app.env["GENRE_INDEX"])


def _ship_eval(app, tmp_path, monkeypatch, figures: dict, edit_after: dict | None = None) -> None:
    """Point the app at a copy of its artifacts whose recommend-eval JSON is
    ``figures`` (manifest updated; ``edit_after`` then overwrites it without
    updating the manifest, as a stale regeneration would)."""
    import shutil

    from core.models.artifacts import update_manifest, write_json
    from core.recommend.methods import EVAL_ARTIFACT

    art = tmp_path / "artifacts"
    shutil.copytree(app.env["GENRE_ARTIFACTS"], art)
    write_json(art / EVAL_ARTIFACT, figures)
    update_manifest(art)
    if edit_after is not None:
        write_json(art / EVAL_ARTIFACT, edit_after)
    monkeypatch.setenv("GENRE_ARTIFACTS", str(art))


def test_offline_figures_next_to_the_lists(app, tmp_path, monkeypatch):
    m = lambda p, lo, hi, a: {"precision": p, "precision_at_5": p, "ci95": [lo, hi], "artist_hit_rate": a}  # noqa: E731
    _ship_eval(app, tmp_path, monkeypatch, {
        "split": "test", "n_listeners": 400, "config": {"model": "crnn", "k": 5},
        "methods": {"cosine": m(0.327, 0.300, 0.353, 0.14), "genre": m(0.351, 0.322, 0.380, 0.12)},
        "resampled": {"genre_minus_cosine": {"diff": 0.024, "ci95": [0.004, 0.044], "p": 0.02,
                                             "unit": "track", "n_units": 100}}})
    open_page(app, "recommender")
    app.multiselect(key="rec_seeds_w").set_value(SEEDS).run()
    no_exceptions(app)
    text = texts(app)
    assert "precision@5 **0.327** [0.300, 0.353]" in text and "precision@5 **0.351** [0.322, 0.380]" in text
    assert "method 2 − method 1: +0.024 precision [95% CI +0.004, +0.044], p = 0.02" in text
    assert "resampled over 100 tracks" in text and "No offline figures yet" not in text


def test_a_shipped_figure_that_does_not_verify_says_so_in_one_line(app, tmp_path, monkeypatch):
    from core.recommend.methods import EVAL_ARTIFACT

    _ship_eval(app, tmp_path, monkeypatch, {"split": "test", "methods": {}},
               edit_after={"split": "test", "methods": {"cosine": {}}})
    open_page(app, "recommender")
    app.multiselect(key="rec_seeds_w").set_value(SEEDS).run()
    no_exceptions(app)
    warned = [w.value for w in app.warning if EVAL_ARTIFACT in w.value]
    assert len(warned) == 1 and "checksum mismatch" in warned[0]
    assert "No offline figures yet" not in texts(app)


def test_options_start_at_the_recommenders_defaults(app, calls):
    import core.recommend.methods as rec

    D = rec.DEFAULTS
    open_page(app, "recommender")
    app.multiselect(key="rec_seeds_w").set_value(SEEDS[:2]).run()
    no_exceptions(app)
    widgets = {"rec_k": app.slider(key="rec_k"), "rec_p": app.slider(key="rec_p"),
               "rec_gw": app.slider(key="rec_gw"), "rec_div": app.slider(key="rec_div"),
               "rec_distance": app.selectbox(key="rec_distance"), "rec_agg": app.radio(key="rec_agg"),
               "rec_variant": app.radio(key="rec_variant")}
    assert {k: w.value for k, w in widgets.items()} == {
        "rec_k": D.k, "rec_p": D.p, "rec_gw": D.genre_weight, "rec_div": D.diversity,
        "rec_distance": D.distance, "rec_agg": D.aggregate, "rec_variant": D.variant}
    assert calls[-1]["genre_weight"] == D.genre_weight and calls[-1]["variant"] == D.variant


def test_tempo_range_steers_both_lists_and_a_song_path_is_shown(app, monkeypatch):
    from core.catalog.index import CatalogIndex
    from core.catalog.snapshot import IndexSnapshot

    copies = []
    real = IndexSnapshot.facets
    monkeypatch.setattr(IndexSnapshot, "facets", lambda self: copies.append(1) or real(self))
    open_page(app, "recommender")
    app.multiselect(key="rec_seeds_w").set_value(SEEDS[:2]).run()
    snap = CatalogIndex.open(app.env["GENRE_INDEX"]).snapshot()
    bpm = dict(zip(snap.column("track_id"), snap.facets()["tempo_bpm"]))
    assert all(b == 0 or 40 <= b <= 240 for b in bpm.values())   # 0: no periodic onsets
    lo, hi = sorted(bpm.values())[len(bpm) // 3], sorted(bpm.values())[-1]
    app.checkbox(key="rec_steer_tempo_on").check().run()
    app.slider(key="rec_steer_tempo").set_value((int(lo), int(hi) + 1)).run()
    no_exceptions(app)
    assert len(copies) == 1         # the test's own read: the page's reruns never copy the facets table
    shown = _lists(app)
    assert shown["cosine"] and shown["genre"]
    assert all(int(lo) <= bpm[t] <= int(hi) + 1 for m in shown.values() for t in m)
    # Mood steering needs the MSD tags, which the test models lack: the control says so.
    assert app.selectbox(key="rec_steer_mood").disabled
    path = [d.value for d in app.dataframe if "distance to the end" in d.value.columns]
    assert len(path) == 1
    d = list(path[0]["distance to the end"])
    assert all(a > b for a, b in zip(d, d[1:])) and len(set(path[0]["track"])) == len(d)


def test_relevance_verdicts_from_the_offline_figures(app, tmp_path, monkeypatch):
    m = lambda p: {"precision": p, "ci95": [p - 0.05, p + 0.05]}  # noqa: E731
    _ship_eval(app, tmp_path, monkeypatch, {"split": "test", "methods": {}, "relevance": {
        "mood": {"methods": {"cosine": m(0.41), "genre_soft": m(0.38), "random": m(0.27)}, "n_listeners": 200,
                 "k": 5, "verdict": "method 2 (soft) ties (interval spans 0): -0.030 [-0.080, +0.020]"}}})
    open_page(app, "recommender")
    app.multiselect(key="rec_seeds_w").set_value(SEEDS).run()
    no_exceptions(app)
    text = texts(app)
    assert "mood listeners (same AllMusic emotion quadrant), 200 listeners" in text
    assert "cosine 0.410 · genre_soft 0.380 · random 0.270" in text
    assert "method 2 (soft) ties (interval spans 0)" in text


def _labels_in_order(node, out: list[str]) -> list[str]:
    """Widget labels of ``node``'s tree in page order."""
    if isinstance(getattr(node, "label", None), str):
        out.append(node.label)
    children = getattr(node, "children", None)
    for child in children.values() if isinstance(children, dict) else ():
        _labels_in_order(child, out)
    return out


def test_the_catalog_search_reads_before_the_or_upload(app):
    """The upload's label starts with "…or": it is drawn below the search,
    though it runs first (the search's room depends on the uploads)."""
    open_page(app, "recommender")
    labels = _labels_in_order(app.main, [])
    search = next(i for i, s in enumerate(labels) if s.startswith("Search the catalog"))
    upload = next(i for i, s in enumerate(labels) if s.startswith("…or upload"))
    assert search < upload, labels
