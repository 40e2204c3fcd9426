"""Listening study page: blind shuffled list, answers stored in SQLite, results + CSV."""

from __future__ import annotations

from conftest import no_exceptions, open_page, texts

from core.recommend import study

SEEDS = ["tones_00", "tones_01", "noise_02", "clicks_03", "tones_04"]


def _start(app) -> str:
    open_page(app, "listening_study")
    app.multiselect(key="study_seeds").set_value(SEEDS).run()
    app.button(key="study_start").click().run()
    no_exceptions(app)
    return app.session_state["study_pid"]


def test_participant_gets_a_blind_mixed_list(app):
    open_page(app, "listening_study")
    promised = texts(app)
    pid = _start(app)
    store = study.StudyStore(app.env["GENRE_STUDY_DB"])
    assert store.participants() == [pid] and store.seeds(pid) == SEEDS
    table = store.table()
    assert set(table["method"]) == {"method1", "method2", "decoy"}
    trials = store.trials(pid)
    # The page promised 10–15 tracks (two lists of 5 that may overlap, plus as many decoys).
    k = study.K_PER_METHOD
    assert f"You will hear {2 * k}–{3 * k} tracks" in promised and 2 * k <= len(trials) <= 3 * k
    like_keys = [b.key for b in app.button if b.key and b.key.startswith("study_like_")]
    assert like_keys == [f"study_like_{t.track_id}" for t in trials]
    # Blind: nothing on the page says which method a track came from (no answers
    # yet, so the results tab shows no per-method table either).
    shown = texts(app)
    for word in ("method1", "method2", "decoy", "Method 1 (cosine)", "Random decoy"):
        assert word not in shown
    assert not app.dataframe


def test_like_is_recorded_with_time_and_shown(app):
    pid = _start(app)
    store = study.StudyStore(app.env["GENRE_STUDY_DB"])
    first = store.trials(pid)[0].track_id
    app.button(key=f"study_like_{first}").click().run()
    no_exceptions(app)
    t = store.table()
    row = t[(t["track_id"] == first)].iloc[0]
    assert row["liked"] == 1 and row["answered_at"]
    second = store.trials(pid)[1].track_id
    app.button(key=f"study_dislike_{second}").click().run()
    n = len(store.trials(pid))
    assert store.progress(pid) == (2, n)
    bar = app.get("progress")[0]
    assert f"answered 2 of {n}" in bar.text and abs(bar.value - 200 / n) <= 1
    assert [t.liked for t in store.trials(pid)[:2]] == [True, False]


def test_results_show_the_paired_test_and_csv_exports(app):
    import numpy as np

    store = study.StudyStore(app.env["GENRE_STUDY_DB"])
    rng = np.random.default_rng(0)
    ids = [f"t{i}" for i in range(40)]
    for p in range(4):
        pid = store.enroll(SEEDS, ids[:5], ids[5:10], ids, rng=rng)
        for t in store.trials(pid):
            src = store.table().query("participant == @pid and track_id == @t.track_id")["method"].tolist()
            store.answer(pid, t.track_id, liked=("method1" in src) or (p % 2 == 0 and "method2" in src))
    open_page(app, "listening_study")
    no_exceptions(app)
    app.radio(key="study_view").set_value("results").run()      # the Results view
    no_exceptions(app)
    res = store.results()
    shown = {m.label: m.value for m in app.metric}
    assert shown["Paired t-test p-value"] == f"{res.main_test.p:.3g}"
    assert shown["Effect size (Cohen's d_z)"] == f"{res.main_test.d_z:.2f}"
    assert "4 participant(s)" in texts(app)
    downloads = app.get("download_button")
    assert len(downloads) == 4
    # Power note and decoy-adjusted rates, as core.recommend.study computes them.
    assert res.power["text"] in texts(app)
    assert "Decoy-adjusted like rates" in texts(app)
    tables = [d.value for d in app.dataframe]
    adj = next(t for t in tables if "adjusted_like_rate" in t)
    want = res.adjusted.set_index("method")
    assert list(adj["source"]) == list(want["label"])
    assert adj["adjusted_like_rate"].iloc[0] == want.loc["method1", "adjusted_like_rate"]
    assert adj["ci_low"].iloc[1] == want.loc["method2", "ci_low"]
    paired = next(t for t in tables if "method1_minus_method2" in t)
    assert len(paired) == 4 and list(paired["participant"]) == list(res.paired["participant"])


def test_no_answers_yet_says_so(app):
    open_page(app, "listening_study")
    no_exceptions(app)
    assert "No answers yet" not in texts(app)                   # the Take part view comes first
    app.radio(key="study_view").set_value("results").run()
    assert "No answers yet" in texts(app)


def test_participant_in_the_url_comes_back_after_a_restart(app):
    """The participant id is kept in the URL: a new session (a dropped
    connection, a restarted server) with that link continues the same list,
    with a plain welcome-back line; the finish button ends it."""
    pid = _start(app)
    assert app.query_params["participant"] == [pid] or app.query_params["participant"] == pid
    store = study.StudyStore(app.env["GENRE_STUDY_DB"])
    first = store.trials(pid)[0].track_id
    app.button(key=f"study_like_{first}").click().run()
    from conftest import APP, TIMEOUT
    from streamlit.testing.v1 import AppTest

    fresh = AppTest.from_file(APP, default_timeout=TIMEOUT)
    fresh.query_params["participant"] = pid
    fresh.run()
    fresh.switch_page("pages/listening_study.py").run()
    no_exceptions(fresh)
    assert fresh.session_state["study_pid"] == pid
    assert "Welcome back" in texts(fresh) and "your 1 answer(s) so far are saved" in texts(fresh)
    fresh.button(key="study_new").click().run()
    assert "participant" not in fresh.query_params


def test_unknown_participant_in_the_url_starts_afresh(app):
    from conftest import APP, TIMEOUT
    from streamlit.testing.v1 import AppTest

    fresh = AppTest.from_file(APP, default_timeout=TIMEOUT)
    fresh.query_params["participant"] = "p-000000000000"
    fresh.run()
    fresh.switch_page("pages/listening_study.py").run()
    no_exceptions(fresh)
    assert "Welcome back" not in texts(fresh)
    assert fresh.multiselect(key="study_seeds") is not None
