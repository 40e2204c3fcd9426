"""Embedding map: the whole catalog on one 2-D map of sound."""

import streamlit as st

from ui import charts
from ui.adapt import adaptation_section
from ui.catalog import index_or_help, index_table, play
from ui.facets import facet_choices, facet_scatter
from ui.models import cached_figure, model_picker, shipped_models
from ui.projections import PROJECTIONS, projection
from ui.routing import through_app
from ui.seeds import MAX_SEEDS, add_seed, current_seeds, selected_track_ids
from ui.tracks import genre_note, track_name

through_app()   # a deep link as a fresh server's first request goes through app.py

st.title("Embedding map")
st.markdown(
    "Each dot is a track. A model turns every track into a list of numbers (its *embedding*); "
    "tracks that sound alike get similar numbers. To draw them on a screen the lists are squeezed "
    "to two dimensions: **PCA** keeps the broadest differences (fast, and distances mean something), "
    "**t-SNE** keeps each track's nearest neighbours together (clearer clusters, but the distances "
    "between clusters mean little), **UMAP** does the same while keeping more of the overall layout. "
    "Hover a dot to see the track; click or lasso dots to listen "
    "and use them as seeds for the Recommender.")

mods = shipped_models(quiet=True)
idx = index_or_help(mods)
if idx is None:
    st.stop()

table = index_table(idx)
models = idx.models
c1, c2, c3 = st.columns(3)
model = model_picker(models, key="map_model", container=c1)
method = c2.radio("Projection", list(PROJECTIONS), horizontal=True, key="map_method")
colour_opts = {"genre": "labelled genre", f"pred_{model}": f"{charts.model_name(model)}'s predicted genre",
               "source": "collection"}
facets = idx.snapshot().frame              # read only, not copied; row order = table order
facet_opts = facet_choices(facets)
colour_opts |= facet_opts
colour = c3.selectbox("Colour by", list(colour_opts), format_func=colour_opts.get, key="map_colour",
                      help="A genre or collection, or any facet the index computed beyond genre "
                           "(tempo, energy, mood and vocal scores, tags).")


def _map_figure():
    xy = projection(str(idx.dir), idx.version, len(idx), model, method, idx)
    df = table[["track_id", "title", "artist", "album", "genre", "tag_genre", "source",
                f"pred_{model}"]].copy()
    df["genre"] = df["genre"].replace("", "(unlabelled)")
    df["x"], df["y"] = xy[:, 0], xy[:, 1]
    if colour in facet_opts:
        df[colour] = facets[colour].to_numpy()
        return facet_scatter(df, colour, colour_opts[colour], ["title", "artist", "genre"],
                             f"{len(df):,} tracks · {charts.model_name(model)} · {method} · {colour_opts[colour]}")
    # Genre colours from the union of labelled and predicted genres, so a genre
    # keeps its colour when the map switches between the two.
    genres = set(df["genre"]) | {g for m in models for g in table[f"pred_{m}"]}
    colours = charts.genre_colours(sorted(genres if colour != "source" else set(df["source"])))
    return charts.embedding_scatter(df, colour,
                                    ["title", "artist", "album", "genre", "tag_genre", f"pred_{model}"],
                                    f"{len(df):,} tracks · {charts.model_name(model)} · {method}",
                                    colours=colours)


fig = cached_figure(("map", str(idx.dir), idx.version, len(idx), model, method, colour), _map_figure)
event = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"), key="map_chart")

picked = selected_track_ids(event)
st.caption("Tip: click a dot, or drag a lasso around several; double-click empty space to clear.")
with st.expander("…or find a track by name", expanded=not picked):
    labels = dict(zip(table["track_id"], table["label"]))
    found = st.selectbox("Track", [""] + list(labels), format_func=lambda t: labels.get(t, "—"),
                         key="map_find")
    if found and found not in picked:
        picked = [found] + picked

if picked:
    st.subheader(f"Selected: {len(picked)} track(s)" + (" — showing the first 10" if len(picked) > 10 else ""))
    rows = table.set_index("track_id")
    for tid in picked[:10]:
        r = rows.loc[tid]
        c1, c2, c3 = st.columns([3, 3, 1])
        c1.markdown(f"**{track_name(r['title'], r['artist'], r['album'], tid)}**  \n"
                    + genre_note(r["genre"], r["tag_genre"], r[f"pred_{model}"]))
        with c2:
            play(r["path"])
        in_seeds = tid in current_seeds()
        if c3.button("Seed" if in_seeds else "Use as seed",
                     icon=":material/check:" if in_seeds else ":material/add:",
                     key=f"map_seed_{tid}", disabled=in_seeds
                     or len(current_seeds()) >= MAX_SEEDS):
            add_seed(tid)
            st.rerun()
    if current_seeds():
        st.caption(f"Seeds so far: {len(current_seeds())} of {MAX_SEEDS}.")
        st.page_link("pages/recommender.py", label="Get recommendations for these seeds →", icon=":material/recommend:")

adaptation_section(idx, mods, table)
