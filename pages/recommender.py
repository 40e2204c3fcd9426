"""Recommender: five seed songs in, method 1 vs method 2 side by side."""

from collections import Counter

import numpy as np
import streamlit as st

from core.recommend import methods as rec
from core.recommend.confidence import describe_confidence
from core.recommend.steer import steered
from ui import charts
from ui.analysis import ANALYSIS_ERRORS, analyse_upload, audio_error_line, repeated_caption
from ui.catalog import index_or_help, index_table, play
from ui.facets import relevance_lines, song_path_section, steer_controls
from ui.models import artifact_json_checked, models_key, shipped_models
from ui.routing import through_app
from ui.seeds import MAX_SEEDS, SEEDS_KEY, current_seeds
from ui.tracks import genre_note, playlist_downloads, track_name
from ui.uploads import UPLOAD_TYPES, check_upload

through_app()   # a deep link as a fresh server's first request goes through app.py

st.title("Recommender")
st.markdown(
    "Pick up to five songs you like. **Method 1** (the paper's first method) recommends the tracks "
    "whose *sound* is closest to your songs — closeness of the models' embeddings. **Method 2** "
    "also asks the genre classifier: a track scores higher when the model hears the same genre mix "
    "as in your songs. Give a :material/thumb_up: or :material/thumb_down: to steer both lists (relevance feedback).")

mods = shipped_models(quiet=True)
idx = index_or_help(mods)
if idx is None:
    st.stop()

table = index_table(idx)
labels = dict(zip(table["track_id"], table["label"]))
rows = table.set_index("track_id")
FEEDBACK = {"liked": "rec_liked", "disliked": "rec_disliked"}
MAX_FEEDBACK = 50
for k in FEEDBACK.values():
    st.session_state.setdefault(k, [])


def _sync_seeds() -> None:
    st.session_state[SEEDS_KEY] = list(st.session_state["rec_seeds_w"])


def _random_seeds() -> None:
    rng = np.random.default_rng()
    st.session_state[SEEDS_KEY] = [str(t) for t in rng.choice(
        table["track_id"].to_numpy(), size=min(MAX_SEEDS, len(table)), replace=False)]


def _feedback(track_id: str, kind: str) -> None:
    other = "disliked" if kind == "liked" else "liked"
    cur = st.session_state[FEEDBACK[kind]]
    # Bounded per session: the latest MAX_FEEDBACK thumbs count.
    st.session_state[FEEDBACK[kind]] = ([t for t in cur if t != track_id] if track_id in cur
                                        else (cur + [track_id])[-MAX_FEEDBACK:])
    st.session_state[FEEDBACK[other]] = [t for t in st.session_state[FEEDBACK[other]] if t != track_id]


def _clear_feedback() -> None:
    for k in FEEDBACK.values():
        st.session_state[k] = []


# ---- seeds
st.subheader("1 · Your songs")
# The catalog search reads first on the page, the upload below it ("…or"); the
# upload runs first, since the search's room depends on how many songs it added.
search_area = st.container()
uploads = st.file_uploader("…or upload songs that are not in the catalog", type=UPLOAD_TYPES,
                           accept_multiple_files=True, key="rec_upload")
seed_vectors = []
if uploads and mods:
    for f in uploads[: MAX_SEEDS]:
        data = f.getvalue()
        problem = check_upload(f.name, data)
        if problem:
            st.error(problem)
            continue
        try:
            v = analyse_upload(f.name, data, models_key(), mods)
        except ANALYSIS_ERRORS as exc:   # one line per bad file, the rest still count
            st.error(audio_error_line(exc, f.name))
            continue
        repeated_caption(v, f.name)
        seed_vectors.append(rec.SeedVector(
            embedding=v.embedding, probs={m: np.array([v.probs[m][g] for g in v.labels[m]], np.float32)
                                          for m in v.probs},
            name=f.name, title=f.name.rsplit(".", 1)[0], digest=v.digest))

room = max(0, MAX_SEEDS - len(seed_vectors))
st.session_state["rec_seeds_w"] = [s for s in current_seeds() if s in labels][:room]
c1, c2 = search_area.columns([5, 1])
seeds = c1.multiselect(f"Search the catalog ({len(table):,} tracks) — up to {room} songs",
                       list(labels), format_func=labels.__getitem__, max_selections=room or None,
                       key="rec_seeds_w", on_change=_sync_seeds, disabled=room == 0,
                       placeholder="Type a title, artist or genre…")
c2.button("Surprise me", icon=":material/casino:", on_click=_random_seeds, key="rec_random", help="Five random seeds")

if not seeds and not seed_vectors:
    st.info("Choose at least one song to get recommendations (five is what the paper used).")
    st.stop()

steer = steer_controls(idx)

# ---- options
D = rec.DEFAULTS
with st.expander("Options", expanded=False):
    c1, c2, c3 = st.columns(3)
    choices = rec.model_choices(idx)
    default_model = rec.resolve_model(idx, D.model)
    model = c1.selectbox("Model", choices, index=choices.index(default_model) if default_model in choices else 0,
                         format_func=lambda m: "all models (ensemble)" if m == rec.ENSEMBLE else charts.model_name(m),
                         key="rec_model")
    k = c1.slider("How many recommendations", 3, 20, D.k, key="rec_k")
    leave_artist_out = c1.checkbox("Leave out my songs' artists", value=False, key="rec_lao",
                                   help="Never recommend another track by an artist of your songs.")
    distance = c2.selectbox("Similarity", list(rec.DISTANCES), index=list(rec.DISTANCES).index(D.distance),
                            key="rec_distance",
                            format_func={"cosine": "cosine (angle)", "euclidean": "Euclidean distance",
                                         "pnorm": "p-norm distance"}.get)
    p = c2.slider("p (for the p-norm)", 1.0, 6.0, D.p, 0.5, key="rec_p", disabled=distance != "pnorm")
    aggregate = c2.radio("Combine the seeds by", list(rec.AGGREGATES), index=list(rec.AGGREGATES).index(D.aggregate),
                         horizontal=True, key="rec_agg",
                         format_func={"mean": "average", "max": "closest seed"}.get,
                         help="'closest seed' suits five songs that span two different tastes.")
    variant = c3.radio("Method 2 uses", list(rec.VARIANTS), index=list(rec.VARIANTS).index(D.variant),
                       key="rec_variant", horizontal=True,
                       format_func={"soft": "genre mix", "centre": "genre centre songs"}.get,
                       help="Genre mix: how close the track's predicted genre mix is to your songs'. "
                            "Genre centre songs (the paper's): how close the track sounds to the most "
                            "typical song of each genre the model hears in your songs.")
    genre_weight = c3.slider("Method 2: weight of genre", 0.0, 1.0, D.genre_weight, 0.05, key="rec_gw",
                             help="0 = sound only (same as method 1), 1 = genre only.")
    diversity = c3.slider("Diversity", 0.0, 1.0, D.diversity, 0.05, key="rec_div",
                          help="Above 0, near-duplicates of tracks already in the list are pushed down.")

liked, disliked = st.session_state[FEEDBACK["liked"]], st.session_state[FEEDBACK["disliked"]]
liked = [t for t in liked if t in labels and t not in seeds]
disliked = [t for t in disliked if t in labels and t not in seeds]
if liked or disliked:
    c1, c2 = st.columns([5, 1])
    c1.caption(f"Your feedback: :material/thumb_up: {len(liked)} · :material/thumb_down: {len(disliked)} "
               "— both lists take it into account.")
    c2.button("Clear feedback", on_click=_clear_feedback, key="rec_clear")

exclude_artists = []
if leave_artist_out:
    exclude_artists = [str(rows.loc[s, "artist"]) for s in seeds if rows.loc[s, "artist"]]
common = dict(k=k, model=model, aggregate=aggregate, distance=distance, p=p, diversity=diversity,
              liked=liked, disliked=disliked, seed_vectors=seed_vectors)
settings = {"cosine": dict(method="cosine"),
            "genre": dict(method="genre", genre_weight=genre_weight, variant=variant)}
results = {}
for method, extra in settings.items():
    kw = {**extra, **common, **({"exclude_artists": exclude_artists} if exclude_artists else {})}
    try:
        results[method] = steered(idx, seeds, steer, **kw) if steer.active else rec.recommend(idx, seeds, **kw)
    except rec.RecommendError as exc:
        st.error(str(exc))
        st.stop()

offline, offline_problem = artifact_json_checked(rec.EVAL_ARTIFACT)
offline = offline or {}


def _offline_line(method: str) -> str | None:
    """The offline figures of one method from the shipped recommend-eval JSON."""
    m = offline.get("methods", {}).get(method)
    if not m:
        return None
    cfg = offline.get("config", {})
    return (f"Offline ({offline.get('split', '?')} split, {offline.get('n_listeners', '?')} simulated listeners, "
            f"{cfg.get('model') or 'default model'}): precision@{cfg.get('k', 5)} **{m['precision']:.3f}** "
            f"[{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] · same-artist share {m['artist_hit_rate']:.2f}")


# ---- results
st.subheader("2 · Recommendations")
seed_genres = Counter(rows.loc[s, "genre"] for s in seeds if rows.loc[s, "genre"])
main_genre = seed_genres.most_common(1)[0][0] if seed_genres else None
overlap = len({r.track_id for r in results["cosine"]} & {r.track_id for r in results["genre"]})
summary = f"The two lists share {overlap} of {k} tracks."
if main_genre:
    share = {m: np.mean([r.genre == main_genre for r in rs]) if rs else 0 for m, rs in results.items()}
    summary += (f" Labelled {main_genre} (your seeds' main genre): method 1 {share['cosine']:.0%}, "
                f"method 2 {share['genre']:.0%}.")
st.caption(summary)
if offline_problem:
    st.warning(offline_problem)

term = "centre match" if variant == "centre" else "genre match"
TITLES = {"cosine": ("Method 1 · sound only", "cosine similarity of the embeddings"),
          "genre": ("Method 2 · sound + genre", f"{1 - genre_weight:.2f} × sound + {genre_weight:.2f} × {term}"
                    if D.confidence == "off" else
                    f"(1 − {genre_weight:.2f}·c) × sound + {genre_weight:.2f}·c × {term}; "
                    + describe_confidence(D.confidence))}
cols = st.columns(2)
for col, (method, recs) in zip(cols, results.items()):
    with col:
        st.markdown(f"#### {TITLES[method][0]}")
        st.caption(f"score = {TITLES[method][1]}")
        line = _offline_line(method)
        if line or not offline_problem:
            st.caption(line or f"No offline figures yet (`python -m core recommend-eval --split test --json "
                               f"artifacts/{rec.EVAL_ARTIFACT}`).")
        if not recs:
            st.info("Nothing left to recommend — the catalog is too small.")
        playlist_downloads(idx, recs, f"recommendations_method{1 if method == 'cosine' else 2}",
                           key=f"rec_export_{method}")
        for r in recs:
            with st.container(border=True):
                row = rows.loc[r.track_id] if r.track_id in rows.index else None
                path = row["path"] if row is not None else ""
                name = track_name(r.title, r.artist, row["album"] if row is not None else "", r.track_id)
                note = genre_note(r.genre, row["tag_genre"] if row is not None else "", r.predicted_genre)
                st.markdown(f"**{r.rank}. {name}**  \n{note} · score {r.score:.2f}")
                play(path)
                b1, b2, b3 = st.columns([1, 1, 4])
                b1.button("", icon=":material/thumb_up:", key=f"like_{method}_{r.track_id}", on_click=_feedback,
                          args=(r.track_id, "liked"),
                          type="primary" if r.track_id in liked else "secondary", help="More like this")
                b2.button("", icon=":material/thumb_down:", key=f"dislike_{method}_{r.track_id}", on_click=_feedback,
                          args=(r.track_id, "disliked"),
                          type="primary" if r.track_id in disliked else "secondary", help="Less like this")
                with b3.popover("Why?"):
                    extra = f" · centre match {r.centre_match:.2f}" if r.centre_match is not None else ""
                    st.markdown(f"similarity {r.similarity:.2f} · genre match {r.genre_match:.2f}{extra}")
                    st.caption(r.reason)

# ---- how the lists differ
st.subheader("3 · How the two lists differ")
kw = {m: {**common, **extra, **({"exclude_artists": exclude_artists} if exclude_artists else {})}
      for m, extra in settings.items()}
try:
    diff = rec.list_differences(idx, seeds, results["cosine"], results["genre"], kw["cosine"], kw["genre"])
except rec.RecommendError as exc:
    diff = None
    st.caption(f"Cannot compare the lists: {exc}")
if diff is not None:
    n_a, n_b = len(results["cosine"]), len(results["genre"])
    st.markdown(f"**{diff.n_shared} shared** of {max(n_a, n_b)} · **{len(diff.only['a'])}** only in method 1 · "
                f"**{len(diff.only['b'])}** only in method 2.")
    if not diff.only["a"] and not diff.only["b"]:
        st.caption("Both methods agree on every track here. Raise the genre weight, try the other method-2 "
                   "variant, or pick songs from different genres to see them part ways.")
    table = [{"only in": name, "track": (d["title"] or d["track_id"]) + (f" — {d['artist']}" if d["artist"] else ""),
              "rank here": d["rank"], "rank in the other": d["other_rank"], "why": d["why"]}
             for side, name in (("a", "method 1"), ("b", "method 2")) for d in diff.only[side]]
    if table:
        st.dataframe(table, hide_index=True, width="stretch", key="rec_diff")
    gm = offline.get("resampled", {}).get("genre_minus_cosine")
    if gm:
        st.caption(f"Offline, method 2 − method 1: {gm['diff']:+.3f} precision "
                   f"[95% CI {gm['ci95'][0]:+.3f}, {gm['ci95'][1]:+.3f}], p = {gm['p']:.3g} "
                   f"(resampled over {gm.get('n_units', '?')} {gm.get('unit', 'track')}s).")
for line in relevance_lines(offline):
    st.caption(line)

# ---- song path
st.subheader("4 · A song path")
song_path_section(idx, labels, seeds[0] if seeds else None, model)
