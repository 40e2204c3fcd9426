"""Streamlit entry point: page navigation plus the shared sidebar settings.

Run with ``make run`` (``streamlit run app.py``). Folders come from environment
variables (see core/config.Paths and core/catalog): GENRE_DATA, GENRE_LIBRARY,
GENRE_ARTIFACTS, GENRE_INDEX, GENRE_STUDY_DB.
"""

# Streamlit runs this script as __main__. The indexer's spawned worker
# processes import the main script again (as __mp_main__): the guard keeps
# each of them from loading the UI and drawing a page nobody sees.
if __name__ == "__main__":
    import streamlit as st

    from ui.routing import router_ran
    from ui.serve import housekeeping
    from ui.sidebar import sidebar

    st.set_page_config(page_title="Genre-aware music recommender", page_icon="🎧", layout="wide")

    PAGES = [
        st.Page("pages/overview.py", title="Overview", icon=":material/home:", default=True),
        st.Page("pages/spectrograms.py", title="Spectrograms", icon=":material/graphic_eq:"),
        st.Page("pages/classify.py", title="Classify", icon=":material/label:"),
        st.Page("pages/model_comparison.py", title="Model comparison", icon=":material/bar_chart:"),
        st.Page("pages/embedding_map.py", title="Embedding map", icon=":material/scatter_plot:"),
        st.Page("pages/recommender.py", title="Recommender", icon=":material/recommend:"),
        st.Page("pages/listening_study.py", title="Listening study", icon=":material/science:"),
    ]

    page = st.navigation(PAGES)
    router_ran()
    housekeeping()
    sidebar()
    page.run()
