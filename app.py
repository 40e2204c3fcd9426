"""Streamlit entry point: page navigation plus the shared sidebar settings.

Run with ``make run`` (``streamlit run app.py``). Folders come from environment
variables (see core/config.Paths and core/catalog): GENRE_DATA, GENRE_LIBRARY,
GENRE_ARTIFACTS, GENRE_INDEX, GENRE_STUDY_DB.
"""

import streamlit as st

from pages import _common as ui

st.set_page_config(page_title="Genre-aware music recommender", page_icon="🎧", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon="🏠", default=True),
    st.Page("pages/spectrograms.py", title="Spectrograms", icon="🌈"),
    st.Page("pages/classify.py", title="Classify", icon="🏷️"),
    st.Page("pages/model_comparison.py", title="Model comparison", icon="📊"),
    st.Page("pages/embedding_map.py", title="Embedding map", icon="🗺️"),
    st.Page("pages/recommender.py", title="Recommender", icon="🎯"),
    st.Page("pages/listening_study.py", title="Listening study", icon="🧪"),
]

page = st.navigation(PAGES)
ui.sidebar()
page.run()
