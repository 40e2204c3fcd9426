"""Classify: genre of your own files, every shipped model side by side."""

import pandas as pd
import streamlit as st

from core.models.verdict import verdict
from ui import charts
from ui.analysis import classify_files, repeated_caption
from ui.facets import beyond_genre
from ui.models import shipped_models
from ui.routing import through_app
from ui.tracks import upload_tag_line
from ui.uploads import UPLOAD_TYPES, add_to_library, max_upload_bytes

through_app()   # a deep link as a fresh server's first request goes through app.py

st.title("Classify your music")
st.markdown(
    "Drop in one or more audio files. Every model listens to ~30 s from the middle of each file and "
    "gives every genre a probability (a distribution, calibrated on validation data; see the model "
    "card for how well it holds), beside the classic MFCC baseline. When the models agree, the answer "
    "is usually more trustworthy; when they disagree, the track may sit between genres.")

models = shipped_models()
if not models:
    st.stop()

files = st.file_uploader("Audio files (MP3, WAV, FLAC, OGG, M4A, Opus, WMA)", type=UPLOAD_TYPES,
                         accept_multiple_files=True, key="classify_files",
                         help=f"Up to {max_upload_bytes() / 2**20:.0f} MB per file.")
if not files:
    st.caption(f"The models know these genres: {', '.join(next(iter(models.values())).labels)}.")
    st.stop()

results = classify_files([(f.name, f.getvalue()) for f in files], models)
ok = [r for r in results if r.view is not None]

if len(results) > 1 and ok:
    rows = []
    for r in ok:
        row = {"file": r.name}
        for m in r.view.probs:
            row[charts.model_name(m)] = r.view.verdict(m).text
        row["agree"] = "yes" if r.view.agree() else "no"
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

for i, r in enumerate(results):
    if r.error:
        st.error(r.error)
        continue
    v = r.view
    with st.container(border=True):
        c1, c2 = st.columns([2, 3])
        with c1:
            st.subheader(r.name)
            tag_line = upload_tag_line(r.data, v.digest)
            if tag_line:
                st.caption(tag_line)
            repeated_caption(v)
            with st.popover("Listen", icon=":material/play_arrow:"):   # the player is drawn when opened
                st.audio(r.data)
            verdicts = {m: v.verdict(m) for m in v.probs}
            for m, vd in verdicts.items():
                st.markdown(f"**{charts.model_name(m)}**: {vd.text}")
            if v.baseline:
                st.markdown(f"{charts.model_name('baseline_mfcc')}: {verdict(v.baseline).text}")
            if v.agree() and all(vd.confident for vd in verdicts.values()):
                who = "Both models" if len(v.probs) == 2 else f"All {len(v.probs)} models"
                st.success(f"{who} say **{v.top(next(iter(v.probs)))[0]}**.")
            elif v.agree():
                st.info(f"The models lean to **{v.top(next(iter(v.probs)))[0]}**, but no genre is "
                        "likely enough to name it alone.")
            else:
                st.warning("The models disagree — this track may mix genres.")
        with c2:
            n_genres = len(next(iter(v.labels.values())))
            bars = {**v.probs, "baseline_mfcc": v.baseline} if v.baseline else v.probs
            st.plotly_chart(charts.probability_bars(bars, height=110 + 26 * n_genres),
                            key=f"classify_bars_{i}")
        beyond_genre(v.facets)

if ok:
    st.divider()
    st.markdown("Like these tracks? Add them to your library to use them on the Embedding map, "
                "in the Recommender and in the Listening study.")
    if st.button(f"Add {len(ok)} file(s) to my library", icon=":material/library_add:", key="classify_add"):
        add_to_library([(r.name, r.data) for r in ok])
