"""The user's seed tracks, shared by the Embedding map and the Recommender,
and the map's point selection."""

from __future__ import annotations

import streamlit as st

from core.recommend.request import MAX_SEEDS

SEEDS_KEY = "seeds"          # the user's seed track ids, shared by the map and the recommender


def current_seeds() -> list[str]:
    """The current seed track ids (at most :data:`MAX_SEEDS`)."""
    return list(st.session_state.get(SEEDS_KEY, []))


def add_seed(track_id: str) -> bool:
    """Append a seed (max five); False if it was already there or the list is full."""
    cur = current_seeds()
    if track_id in cur or len(cur) >= MAX_SEEDS:
        return False
    st.session_state[SEEDS_KEY] = cur + [track_id]
    return True


def selected_track_ids(event) -> list[str]:
    """Track ids of the points picked in a ``st.plotly_chart(on_select="rerun")``
    event (the figure's ``custom_data`` holds the id)."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        points = getattr(getattr(event, "selection", None), "points", None) or []
    out = []
    for p in points:
        cd = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if cd is not None and str(cd) not in out:
            out.append(str(cd))
    return out
