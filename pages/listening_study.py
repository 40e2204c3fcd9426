"""Listening study: a blind test of method 1 vs method 2 with random decoys."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.recommend import methods as rec
from core.recommend import study
from ui.catalog import index_or_help, index_table, play
from ui.models import shipped_models
from ui.routing import through_app
from ui.seeds import current_seeds
from ui.settings import paths
from ui.study import answer, participant, results, set_participant, show_answer_error

through_app()   # a deep link as a fresh server's first request goes through app.py

st.title("Listening study")
st.markdown(
    "The paper asked listeners whether they liked the recommended songs — but every song they heard "
    "*was* a recommendation, so people may have said yes out of politeness. Here you pick five "
    "songs, then hear **one shuffled list** that mixes method 1's picks, method 2's picks and "
    "**random tracks**, without being told which is which. The random tracks show how often people "
    "like *any* song; a method is only good if it beats them.")


@st.cache_resource(show_spinner=False, max_entries=4)
def _store(path: str) -> "study.StudyStore":
    # Shared by every session: it holds only its path; SQLite's lock serialises the writes.
    return study.StudyStore(path)


try:
    store = _store(str(paths().study_db))
except study.StudyError as exc:
    st.error(str(exc))
    st.stop()

# One view at a time (not st.tabs, which computes and draws both): a participant's
# every click reran the results, two charts, four tables and four CSV exports unseen.
VIEWS = {"take_part": ":material/headphones: Take part", "results": ":material/insights: Results"}
view = st.radio("View", list(VIEWS), format_func=VIEWS.__getitem__, horizontal=True, key="study_view",
                label_visibility="collapsed")

if view == "take_part":
    mods = shipped_models(quiet=True)
    idx = index_or_help(mods)
    if idx is not None:
        table = index_table(idx)
        rows = table.set_index("track_id")
        pid = participant(store)
        if pid is None:
            labels = dict(zip(table["track_id"], table["label"]))
            pre = current_seeds() if len(current_seeds()) == study.N_SEEDS else []
            seeds = st.multiselect(f"Pick exactly {study.N_SEEDS} songs you like", list(labels),
                                   default=[s for s in pre if s in labels], format_func=labels.__getitem__,
                                   max_selections=study.N_SEEDS, key="study_seeds",
                                   placeholder="Type a title, artist or genre…")
            model = rec.resolve_model(idx, rec.DEFAULTS.model)
            variant = rec.DEFAULTS.variant
            if st.button("Start listening", type="primary", key="study_start",
                         disabled=len(seeds) != study.N_SEEDS):
                try:
                    lists = {m: [r.track_id for r in rec.recommend(idx, seeds, method=m, k=study.K_PER_METHOD,
                                                                   model=model, variant=variant)]
                             for m in ("cosine", "genre")}
                    pid = store.enroll(seeds, lists["cosine"], lists["genre"], table["track_id"].tolist(),
                                       rng=np.random.default_rng(),
                                       note=f"model={model}; method2={variant}, w={rec.DEFAULTS.genre_weight:g}")
                except (study.StudyError, rec.RecommendError) as exc:
                    st.error(str(exc))
                else:
                    set_participant(pid)
                    st.rerun()
            st.caption(f"You will hear {2 * study.K_PER_METHOD}–{3 * study.K_PER_METHOD} tracks (a track both "
                       "methods pick is heard once). Your answers are stored under a random participant id, "
                       "with the time of each answer — nothing else about you.")
        else:
            try:
                trials = store.trials(pid)
            except study.StudyError as exc:  # e.g. the database was replaced meanwhile
                st.error(str(exc))
                set_participant(None)
                trials = []
            done = sum(t.liked is not None for t in trials)
            st.progress(done / max(len(trials), 1), text=f"Participant `{pid}` · answered {done} of {len(trials)}")

            show_answer_error()
            for t in trials:
                r = rows.loc[t.track_id] if t.track_id in rows.index else None
                with st.container(border=True):
                    c1, c2, c3, c4 = st.columns([3, 4, 1, 1])
                    title = (r["title"] or t.track_id) if r is not None else t.track_id
                    artist = r["artist"] if r is not None else ""
                    album = r["album"] if r is not None else ""
                    c1.markdown(f"**{t.position + 1}. {title}**" + (f"  \n{artist}" if artist else "")
                                + (f" ({album})" if album else ""))
                    with c2:
                        play(r["path"] if r is not None else "")
                    c3.button("", icon=":material/thumb_up:", key=f"study_like_{t.track_id}", on_click=answer,
                              args=(store, t.track_id, True),
                              type="primary" if t.liked is True else "secondary", help="I like it")
                    c4.button("", icon=":material/thumb_down:", key=f"study_dislike_{t.track_id}", on_click=answer,
                              args=(store, t.track_id, False), type="primary" if t.liked is False else "secondary",
                              help="Not for me")
            if done == len(trials):
                st.success("Thank you — all answered! Have a look at the Results view (top of the page).")
            if st.button("Finish and start a new participant", key="study_new"):
                set_participant(None)
                st.rerun()

if view == "results":
    res, csv_text = results(store)
    if not store.count_answers():
        st.info("No answers yet — the results appear here once participants have answered.")
    else:
        s = res.summary
        st.markdown(f"**{res.n_participants} participant(s)**. Like rate = likes ÷ answered tracks.")
        fig = go.Figure(go.Bar(x=s["label"], y=s["like_rate"],
                               text=[f"{v:.0%}" if v == v else "–" for v in s["like_rate"]],
                               marker_color=["#1f77b4", "#d62728", "#9e9e9e"][: len(s)],
                               hovertemplate="%{x}: %{y:.1%}<extra></extra>"))
        fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), yaxis=dict(range=[0, 1], title="like rate"),
                          title="Likes per source (pooled over participants)")
        st.plotly_chart(fig, key="study_bars")
        st.dataframe(s.drop(columns=["method"]).rename(columns={"label": "source"}), hide_index=True,
                     width="stretch")
        t = res.main_test
        st.subheader("Method 1 vs method 2")
        if t.note:
            st.info(f"Paired t-test not available yet: {t.note}.")
        else:
            c1, c2, c3 = st.columns(3)
            c1.metric("Difference in like rate (1 − 2)", f"{t.mean_diff:+.1%}",
                      f"95% CI {t.ci_low:+.1%} … {t.ci_high:+.1%}", delta_color="off")
            c2.metric("Paired t-test p-value", f"{t.p:.3g}", f"t = {t.t:.2f}, n = {t.n}", delta_color="off")
            c3.metric("Effect size (Cohen's d_z)", f"{t.d_z:.2f}",
                      "small ≈ 0.2 · medium ≈ 0.5 · large ≈ 0.8", delta_color="off")
        st.caption("Each participant rated tracks from both methods, so the test compares each person's "
                   "two like rates (a *paired* t-test). p < 0.05 suggests a real difference; the effect "
                   "size says how big it is in units of the spread between people.")
        st.markdown("\n".join(f"* {x.describe()}" for x in res.tests.values()))
        st.info(res.power["text"], icon=":material/functions:")

        st.subheader("Decoy-adjusted like rates")
        st.caption("Each participant's like rate for a method minus the same participant's like rate for the "
                   "random decoys: how much more than *any* song they liked it. Means over participants with "
                   "95 % t-intervals; p from the paired t-test against the decoys.")
        adj = res.adjusted
        shown = adj[adj["method"] != study.DECOY]
        fig = go.Figure()
        fig.add_bar(x=adj["label"], y=adj["like_rate"], name="like rate",
                    error_y=dict(type="data", symmetric=False, array=(adj["ci_high"] - adj["like_rate"]).tolist(),
                                 arrayminus=(adj["like_rate"] - adj["ci_low"]).tolist()),
                    marker_color="#9ecae1")
        fig.add_bar(x=shown["label"], y=shown["adjusted_like_rate"], name="minus decoys",
                    error_y=dict(type="data", symmetric=False,
                                 array=(shown["adjusted_ci_high"] - shown["adjusted_like_rate"]).tolist(),
                                 arrayminus=(shown["adjusted_like_rate"] - shown["adjusted_ci_low"]).tolist()),
                    marker_color="#1f77b4")
        fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), barmode="group",
                          yaxis=dict(title="like rate", tickformat=".0%"),
                          title="Mean over participants, 95 % CI")
        st.plotly_chart(fig, key="study_adjusted")
        st.dataframe(adj.drop(columns=["method"]).rename(columns={"label": "source"}), hide_index=True,
                     width="stretch", key="study_adjusted_table")
        with st.expander("Per participant (paired: both methods and the decoys for each person)"):
            st.dataframe(res.paired, hide_index=True, width="stretch")
        with st.expander("Per participant and source"):
            st.dataframe(res.per_participant, hide_index=True, width="stretch")
    c1, c2, c3, c4 = st.columns(4)
    c1.download_button("All answers (CSV)", csv_text["answers"], file_name="study_answers.csv",
                       mime="text/csv", key="study_csv", icon=":material/download:")
    c2.download_button("Likes per participant (CSV)", csv_text["per_participant"],
                       file_name="study_per_participant.csv", mime="text/csv", key="study_csv_pp",
                       icon=":material/download:")
    c3.download_button("Paired per participant (CSV)", csv_text["paired"],
                       file_name="study_paired.csv", mime="text/csv", key="study_csv_paired",
                       icon=":material/download:")
    c4.download_button("Results report (CSV)", csv_text["report"],
                       file_name="study_report.csv", mime="text/csv", key="study_csv_report",
                       icon=":material/download:",
                       help="Like rates and decoy-adjusted rates with 95 % CIs, the paired tests, the power note.")
    st.caption(f"Stored in `{paths().study_db}` (SQLite; set $GENRE_STUDY_DB to move it).")
