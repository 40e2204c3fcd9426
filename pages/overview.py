"""Overview: what the app does, the shipped models and where to go next."""

import math
import re

import pandas as pd
import streamlit as st

from ui.catalog import catalog
from ui.charts import model_name
from ui.models import artifact_json, shipped_models
from ui.routing import through_app
from ui.settings import paths, show_how_to_add_music

through_app()   # a deep link as a fresh server's first request goes through app.py

st.title("Genre-aware music recommender")
st.markdown(
    "This app listens to music with neural networks of two designs — a **CNN** and a **CRNN** (a CNN with a "
    "recurrent layer that follows the music over time) — that look at a *log-mel spectrogram*, "
    "a picture of which frequencies sound when. Each network guesses the genre of a track and, "
    "on the way, turns it into a short list of numbers (an *embedding*) in which similar-sounding "
    "tracks lie close together. The recommender uses those embeddings to suggest songs like five "
    "you pick, either by sound alone (**method 1**) or by sound plus genre (**method 2**), as in "
    "Adiyansjah et al. (2019).")


def _fmt(value, ci=None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if ci and all(c is not None and not math.isnan(c) for c in ci):
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{value:.3f}"


def _shipped_models_section() -> None:
    """The model columns, the headline metrics and the model card."""
    models = shipped_models()
    metrics = artifact_json("metrics.json", quiet=True)
    if models:
        cols = st.columns(len(models))
        for col, (name, m) in zip(cols, models.items()):
            hist = artifact_json(f"{name}_history.json", quiet=True) or {}
            with col:
                st.subheader(model_name(name))
                macro = ((metrics or {}).get("models", {}).get(name) or {}).get("macro")
                if macro:
                    st.metric("Test ROC-AUC (macro)", f"{macro['roc_auc']:.3f}")
                    st.metric("Test accuracy", f"{macro['accuracy']:.1%}")
                elif hist.get("best_val_auc") is not None:
                    st.metric("Validation ROC-AUC", f"{hist['best_val_auc']:.3f}")
                st.caption(f"{m.n_parameters():,} parameters · embedding of {m.embedding_dim} numbers · "
                           f"{len(m.labels)} genres: {', '.join(m.labels)}")
                if hist:
                    data = ", ".join(p.rstrip("/").rsplit("/", 1)[-1] for p in hist.get("data", []))
                    st.caption(f"Trained on {hist.get('n_train', '?')} tracks ({data or 'unknown data'}), "
                               f"best epoch {hist.get('best_epoch', '?')} of {len(hist.get('epoch', []))}.")

    if metrics:
        rows = []
        for name, rep in metrics.get("models", {}).items():
            mac = rep.get("macro", {})
            rows.append({"model": model_name(name),
                         "ROC-AUC [95% CI]": _fmt(mac.get("roc_auc"), mac.get("roc_auc_ci95")),
                         "F1 [95% CI]": _fmt(mac.get("f1"), mac.get("f1_ci95")),
                         "accuracy [95% CI]": _fmt(mac.get("accuracy"), mac.get("accuracy_ci95")),
                         "test tracks": mac.get("n_tracks")})
        if rows:
            st.markdown("**Headline results on the held-out test split** (no artist in the test split "
                        "was heard in training). ROC-AUC is 0.5 for guessing and 1.0 for perfect.")
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    else:
        artifact_json("metrics.json")

    card = sorted(paths().artifacts.glob("*model_card*.md")) + sorted(
        paths().artifacts.glob("MODEL_CARD*.md"))
    if card:
        with st.expander("Model card (data, intended use, limitations)"):
            # The card's figures are relative PNG links that st.markdown cannot resolve;
            # the same charts are interactive on the Model comparison page.
            text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", card[0].read_text(encoding="utf-8", errors="replace"))
            st.markdown(text)


st.header("The shipped models")
# Filled last: the rest of the page needs no models, so on a fresh server it
# shows while they load.
models_slot = st.container()

st.header("Your music")
cat = catalog()
if len(cat):
    genres = pd.Series([t.genre or "(unlabelled upload)" for t in cat.all_tracks]).value_counts()
    c1, c2, c3 = st.columns(3)
    c1.metric("Tracks in the catalog", f"{len(cat):,}")
    c2.metric("Music folders", len(cat.data_dirs))
    c3.metric("Your uploads", len(cat.library))
    st.caption("Genres: " + " · ".join(f"{g} {n}" for g, n in genres.items()))
else:
    show_how_to_add_music("No music is configured yet — the metrics, ROC curves and "
                          "classification of your own files still work.")
for problem in cat.problems:
    st.warning(problem)

st.header("Where to go next")
PAGES = [
    ("pages/spectrograms.py", ":material/graphic_eq:", "Spectrograms", "see and hear a track the way the models do"),
    ("pages/classify.py", ":material/label:", "Classify", "drop in your own files and get their genre"),
    ("pages/model_comparison.py", ":material/bar_chart:", "Model comparison",
     "CNN vs CRNN, scratch vs MSD: ROC curves, errors, training"),
    ("pages/embedding_map.py", ":material/scatter_plot:", "Embedding map", "the whole catalog on one map of sound"),
    ("pages/recommender.py", ":material/recommend:", "Recommender", "pick 5 songs, compare the two methods"),
    ("pages/listening_study.py", ":material/science:", "Listening study", "a blind test of which method people like"),
]
for path, icon, label, what in PAGES:
    c1, c2 = st.columns([1, 3])
    with c1:
        st.page_link(path, label=label, icon=icon)
    c2.markdown(what)

with models_slot:
    _shipped_models_section()
