"""Spectrograms: hear a track and see it the way the models do."""


import streamlit as st

from ui import charts
from ui.analysis import ANALYSIS_ERRORS, analyse_path, analyse_upload, audio_error_line, repeated_caption
from ui.catalog import catalog, track_label
from ui.facets import beyond_genre
from ui.models import cached_figure, model_picker, models_key, shipped_models
from ui.routing import through_app
from ui.settings import file_stamp, show_how_to_add_music
from ui.uploads import UPLOAD_TYPES, check_upload, max_upload_bytes

through_app()   # a deep link as a fresh server's first request goes through app.py

st.title("Spectrograms")
st.markdown(
    "A **spectrogram** shows which frequencies sound at each moment: time runs left to right, "
    "pitch bottom to top, brighter means louder. The models use a *log-mel* spectrogram — "
    "frequencies grouped the way the ear hears them, loudness in decibels — of a ~29 s excerpt "
    "from the middle of the track. They judge it in ~5 s windows; the strips at the bottom show "
    "how the genre guess changes from window to window.")

models = shipped_models()
if not models:
    st.stop()

cat = catalog()
c1, c2 = st.columns([2, 1])
choice = c1.radio("Track to look at", ["From the catalog", "Upload a file"], horizontal=True,
                  index=0 if len(cat) else 1, key="spec_source")
model = model_picker(list(models), key="spec_model", container=c2,
                        help="Whose ears: the spectrogram is this model's own front-end, the "
                             "genre-over-time strip its answer per window. Starts on the model "
                             "that scored best on the validation split.")

view, audio, true_genre, name, tag_genre = None, None, "", "", ""
if choice == "From the catalog":
    if not len(cat):
        show_how_to_add_music("The catalog is empty, so there is nothing to pick — "
                                 "upload a file instead, or add a music folder.")
        st.stop()
    tracks = {t.track_id: t for t in cat.all_tracks}
    labels = {tid: track_label(t.title, t.artist, t.genre, tid, t.album, t.tag_genre)
              for tid, t in tracks.items()}
    tid = st.selectbox("Search the catalog (type to filter)", list(tracks), key="spec_track",
                       format_func=labels.__getitem__)
    t = tracks[tid]
    name, audio, true_genre, tag_genre = labels[tid], str(t.path), t.genre, t.tag_genre
    fig_key = (str(t.path), file_stamp(t.path), models_key())
    try:
        view = analyse_path(*fig_key, models)
    except ANALYSIS_ERRORS as exc:
        st.error(audio_error_line(exc, t.path.name))
        st.stop()
else:
    up = st.file_uploader("An audio file", type=UPLOAD_TYPES, key="spec_upload",
                          help=f"Up to {max_upload_bytes() / 2**20:.0f} MB.")
    if up is None:
        st.caption("Choose an MP3, WAV, FLAC, OGG, M4A, Opus or WMA file to see its spectrogram.")
        st.stop()
    data = up.getvalue()
    problem = check_upload(up.name, data)
    if problem:
        st.error(problem)
        st.stop()
    try:
        view = analyse_upload(up.name, data, models_key(), models, spectrograms=True)
    except ANALYSIS_ERRORS as exc:
        st.error(audio_error_line(exc, up.name))
        st.stop()
    name, audio = up.name, data
    fig_key = (up.name, view.digest, models_key())

spec = view.spectrograms[model]
c1, c2 = st.columns([2, 3])
with c1:
    st.subheader(name)
    st.audio(audio)
    repeated_caption(view)
    if true_genre:
        st.caption(f"Labelled genre: **{true_genre}**")
    if tag_genre:
        st.caption(f"The file is tagged **{tag_genre}** (its own tag, shown beside the models' answer; "
                   "never used as a label).")
with c2:
    g, p = view.top(model)
    a, b = st.columns([2, 1])
    a.metric(f"{charts.model_name(model)} hears", g)
    a.markdown(f"probability **{p:.0%}**")
    b.metric("Models agree?", "yes" if view.agree() else "no")
    others = [m for m in view.probs if m != model]
    if others:
        st.caption("Other models: " + " · ".join(
            f"{charts.model_name(m)} {view.top(m)[0]} ({view.top(m)[1]:.0%})" for m in others))

beyond_genre(view.facets)
n_genres = len(next(iter(view.labels.values())))
st.plotly_chart(cached_figure(("spec", model) + fig_key, lambda: charts.spectrogram_figure(
    spec.wave, spec.sample_rate, spec.logmel.astype("float32"), spec.times, spec.freqs)), key="spec_mel")
st.caption(f"{charts.model_name(model)}'s front-end: {spec.sample_rate / 1000:g} kHz, "
           f"{spec.logmel.shape[0]} mel bands, {len(spec.times)} frames.")
st.plotly_chart(cached_figure(("spec_probs",) + fig_key, lambda: charts.probability_bars(
    view.probs, height=120 + 28 * n_genres)), key="spec_probs")
st.caption("Each genre gets its own probability (they need not add up to 1): the models were "
           "trained, as in the paper, to answer 'is this genre present?' once per genre.")
st.plotly_chart(cached_figure(("spec_strips", model) + fig_key, lambda: charts.window_strips(
    {model: view.window_probs[model]}, {model: view.window_starts_s[model]},
    {model: view.labels[model]})), key="spec_strips")
