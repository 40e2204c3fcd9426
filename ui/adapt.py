"""The Embedding map's section on adapting the default model's genres to the
library in the index (:func:`core.catalog.adapt.adapted_genres`)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.config import AdaptConfig
from core.errors import GenreError
from ui import charts
from ui.settings import file_stamp, paths

MODEL = "fused_trunks"
CONFIG = AdaptConfig()     # the shipped choice (tests lower min_tracks for a tiny library)


@st.cache_data(show_spinner=False, max_entries=2)
def _adapted(index_dir: str, version: int, n: int, artifacts: str, stamp: float, cfg: AdaptConfig,
             _idx, _model) -> dict:
    # Keyed by the index version, the artifacts (folder and manifest stamp) and the settings; plain data.
    from core.catalog.adapt import adapted_genres

    return adapted_genres(_idx, _model, artifacts, cfg)


def _measured() -> str:
    """The shipped leave-one-source-out figures, from the replay file's own record."""
    from core.training.library_head import REPLAY_FILE, replay_record

    try:
        r = replay_record(paths().artifacts / REPLAY_FILE)
        lo, hi = r["delta_ci95"]
        before, after = r["plain"]["mean"]["accuracy"], r["adapted"]["mean"]["accuracy"]
        return (f"Tested by holding out each training collection in turn, it moved the held-out genre accuracy "
                f"from {before:.3f} to {after:.3f} over {r['tracks']} "
                f"tracks ({r['delta_accuracy']:+.3f}, 95 % interval {lo:+.3f} to {hi:+.3f}).")
    except (GenreError, KeyError, TypeError, ValueError):
        return ""


def adaptation_section(idx, mods: dict | None, table: pd.DataFrame) -> None:
    """An expander: what changes when the default model adapts to this library."""
    model = (mods or {}).get(MODEL)
    if model is None or MODEL not in idx.models:
        return
    cfg = CONFIG
    with st.expander(f"Adapt {charts.model_name(MODEL)}'s genres to this library"):
        st.markdown(
            "The default model learned its genres from three collections. On music recorded elsewhere "
            "its genre decisions transfer less well than its sense of what sounds alike. Adapting lets it "
            "label this library itself, learn from its answers and label again (self-training, without "
            "any of your labels), while a statistical replay of its training music keeps what it knew. "
            + _measured() + " A track's adapted genre depends on the rest of the library.")
        if len(idx) < cfg.min_tracks:
            st.info(f"Adapting needs at least {cfg.min_tracks} indexed tracks; this library has {len(idx)}.")
            return
        if not st.toggle("Adapt to this library", key="adapt_on"):
            return
        with st.spinner(f"Self-training the genre head on {len(idx):,} tracks…"):
            try:
                root = paths().artifacts
                out = _adapted(str(idx.dir), idx.version, len(idx), str(root), file_stamp(root / "manifest.json"),
                               cfg, idx, model)
            except GenreError as exc:
                st.warning(f"Adapting is not possible here: {exc}")
                return
        s = out["summary"]
        st.metric("Tracks whose top genre changes", f"{s['changed']:,} of {s['tracks']:,}")
        st.plotly_chart(charts.genre_shift_bars(s["before"], s["after"], "Tracks per predicted genre"),
                        key="adapt_bars")
        changed = pd.DataFrame([r for r in out["tracks"] if r["before"] != r["after"]])
        if changed.empty:
            return
        names = table.set_index("track_id")[["title", "artist"]]
        changed = changed.join(names, on="track_id")
        shown = pd.DataFrame({"track": changed["title"].fillna("") + " — " + changed["artist"].fillna(""),
                              "as shipped": changed["before"] + changed["p_before"].map(" ({:.0%})".format),
                              "adapted": changed["after"] + changed["p_after"].map(" ({:.0%})".format)})
        st.dataframe(shown, hide_index=True, width="stretch")
        st.download_button("Download every track's genre, shipped and adapted (CSV)",
                           pd.DataFrame(out["tracks"]).to_csv(index=False).encode(),
                           file_name="adapted_genres.csv", mime="text/csv", key="adapt_csv")
