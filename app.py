"""Streamlit entry point: navigation over the pages in ``pages/``."""

import streamlit as st

st.set_page_config(page_title="Genre-aware music recommender", page_icon="🎧", layout="wide")
st.title("Genre-aware music recommender")
st.write("CNN and CRNN genre classifiers on log-mel spectrograms, and a recommender "
         "built on their embeddings (Adiyansjah et al., 2019).")
