"""What the models hear beyond genre (Classify, Spectrograms, Embedding map):
top tags, tempo, energy and the mood / vocal scores of :mod:`core.facets`,
each with what it was measured to be good for (``artifacts/facets_eval.json``)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import streamlit as st

from core.facets import FACETS
from core.facets.measure import facet_note
from core.facets.tags import tag_columns
from core.models.trunks import TRUNKS
from ui.models import artifact_json

FACETS_ARTIFACT = "facets_eval.json"


def facets_report() -> dict | None:
    """The shipped facet measurements (``None`` when not shipped or not verifying)."""
    return artifact_json(FACETS_ARTIFACT, quiet=True)


def tagger_label(name: str) -> str:
    """A tagger's checkpoint as the wheel names it (``msd_musicnn`` → ``MSD_musicnn``)."""
    return TRUNKS[name].checkpoint if name in TRUNKS else name


def tag_values(facets: dict[str, float]) -> dict[str, dict[str, float]]:
    """``{tag: {tagger name: p}}`` for every tag a tagger gave ``facets`` a value for."""
    out: dict[str, dict[str, float]] = {}
    for name, t, col in tag_columns():
        v = facets.get(col)
        if v is not None and math.isfinite(v):
            out.setdefault(t, {})[name] = float(v)
    return out


def top_tags(facets: dict[str, float], n: int = 6) -> tuple[list[tuple[str, float]], list[str]]:
    """The ``n`` most probable tags as ``(tag, p)``, each once: a tag that
    several taggers know (MSD_vgg and MSD_musicnn share the 50 MSD tags) gets
    their mean. Also the checkpoint names of the taggers that contributed."""
    values = tag_values(facets)
    top = sorted(((t, float(np.mean(list(v.values())))) for t, v in values.items()), key=lambda tv: -tv[1])[:n]
    names = sorted({name for v in values.values() for name in v})
    return top, [tagger_label(name) for name in names]


def _fmt(col: str, v: float) -> str:
    if col == "tempo_bpm":
        return f"{v:.0f} BPM"
    if col == "loudness_db":
        return f"{v:.1f} dB"
    if col == "energy":
        return f"{v:.2f}"
    return f"{v:.0%}"


def beyond_genre(facets: dict[str, float] | None) -> None:
    """The "what it hears beyond genre" block for one track."""
    st.markdown("**What it hears beyond genre**")
    if not facets or not math.isfinite(facets.get("tempo_bpm", float("nan"))):
        st.caption("No facets for this track (it was analysed before facets existed).")
        return
    report = facets_report()
    tags, taggers = top_tags(facets)
    if tags:
        by = taggers[0] if len(taggers) == 1 else "the mean of " + " and ".join(taggers)
        st.markdown(f"Top tags (pretrained taggers; {by}): " + " · ".join(f"{t} {p:.0%}" for t, p in tags))
    else:
        st.caption("No tags: the loaded models have no pretrained tagging trunk.")
    rows = []
    for col in ("tempo_bpm", "energy", "vocal", "arousal", "valence"):
        v = facets.get(col, float("nan"))
        if not math.isfinite(v):
            continue
        value = _fmt(col, v)
        if col == "tempo_bpm":
            value += f" (confidence {facets.get('tempo_conf', 0):.2f})"
        rows.append({"facet": FACETS[col].label, "value": value, "measured": facet_note(report, col)})
    if rows:
        # A static table: the "measured" notes wrap instead of being cut at the column edge.
        st.table(pd.DataFrame(rows), hide_index=True, border="horizontal")


def facet_choices(table: pd.DataFrame) -> dict[str, str]:
    """Facet columns the map can colour by (those with values), column → label."""
    out = {c: f.label for c, f in FACETS.items() if c in table and table[c].notna().any()}
    shown = [(name, t, c) for name, t, c in tag_columns() if c in table and table[c].notna().any()]
    taggers_of = Counter(t for _, t, _ in shown)
    # A tag two taggers share (MSD_vgg and MSD_musicnn: the 50 MSD tags) names its tagger.
    out.update({c: f"tag: {t} ({tagger_label(name)})" if taggers_of[t] > 1 else f"tag: {t}" for name, t, c in shown})
    return out


def facet_scatter(df: pd.DataFrame, colour: str, label: str, hover: list[str], title: str):
    """The embedding map coloured by one numeric facet (a continuous scale; NaN grey)."""
    import plotly.express as px

    d = df.copy()
    d[label] = d[colour].astype(float)
    fig = px.scatter(d, x="x", y="y", color=label, hover_data={c: True for c in hover} | {"x": False, "y": False},
                     custom_data=["track_id"], title=title, color_continuous_scale="Viridis",
                     render_mode="svg" if len(d) <= 3000 else "webgl")
    fig.update_traces(marker=dict(size=7, opacity=0.85, line=dict(width=0)))
    fig.update_layout(height=560, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="", yaxis_title="",
                      dragmode="lasso")
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    if np.isnan(d[label].to_numpy()).all():
        fig.add_annotation(text="no values for this facet in the index", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
    return fig


# ---------------------------------------------------------------- Recommender


MOOD_LABELS = {"": "any mood", "like": "like my songs' mood", "calmer": "calmer", "energetic": "more energetic"}


def steer_controls(idx, key: str = "rec_steer"):
    """The "steer by feel" controls; returns a :class:`~core.recommend.steer.Steer`."""
    from core.recommend.steer import Steer

    facets = idx.snapshot().frame       # read only: every rerun reads it, so it is not copied
    has_mood = facets["arousal"].notna().any()
    bpm = facets["tempo_bpm"].dropna()
    c1, c2, c3 = st.columns([2, 1, 3])
    mood = c1.selectbox("Steer by mood", list(MOOD_LABELS), format_func=MOOD_LABELS.get, key=f"{key}_mood",
                        disabled=not has_mood,
                        help="Re-ranks both lists by the mood facets (arousal from the MSD tags; how well "
                             "they match AllMusic's mood quadrants is on the Classify page)."
                        if has_mood else "This index has no mood facets (no MSD model was indexed).")
    use_tempo = c2.checkbox("Tempo range", key=f"{key}_tempo_on", disabled=bpm.empty)
    lo, hi = (float(bpm.min()), float(bpm.max())) if not bpm.empty else (40.0, 240.0)
    rng = c3.slider("BPM", 40, 240, (int(max(40, lo)), int(min(240, max(hi, lo + 1)))), key=f"{key}_tempo",
                    disabled=not use_tempo,
                    help="Only tracks whose estimated tempo is in this range (the estimate can be half or "
                         "double the felt tempo; see its confidence on the Spectrograms page).")
    return Steer(mood=mood or None, tempo=(float(rng[0]), float(rng[1])) if use_tempo else None)


def song_path_section(idx, labels: dict[str, str], start: str | None, model: str | None) -> None:
    """A song path from one catalog track to another (after AudioMuse-AI's song path)."""
    from core.recommend.path import song_path
    from core.recommend.request import RecommendError

    ids = list(labels)
    if len(ids) < 2:
        return
    c1, c2, c3 = st.columns([3, 3, 1])
    a = c1.selectbox("From", ids, index=ids.index(start) if start in ids else 0, format_func=labels.get,
                     key="path_from")
    b = c2.selectbox("To", ids, index=(ids.index(a) + len(ids) // 2) % len(ids), format_func=labels.get,
                     key="path_to")
    steps = c3.number_input("Songs", 3, 20, 6, key="path_steps")
    try:
        path = song_path(idx, a, b, int(steps), model=model)
    except RecommendError as exc:
        st.caption(str(exc))
        return
    st.dataframe(pd.DataFrame([{"#": i + 1, "track": labels.get(s.track_id, s.track_id), "genre": s.genre,
                                "distance to the end": s.to_end} for i, s in enumerate(path)]),
                 hide_index=True, width="stretch", key="path_table")
    short = " (fewer than asked: no other track lies nearer the end between these two)" \
        if len(path) < steps else ""
    st.caption("Each song is the unused catalog track nearest an evenly spaced point on the line from "
               f"the first song to the last in the model's embedding space, always nearer the end{short}.")


KIND_LABEL = {"mood": "mood listeners (same AllMusic emotion quadrant)",
              "artist": "artist listeners (same artist or album)"}


def relevance_lines(offline: dict) -> list[str]:
    """Plain lines: does method 2 still win when relevance is not genre? (from recommend-eval's JSON)"""
    rel = offline.get("relevance") or {}
    out = []
    for kind in ("mood", "artist"):
        r = rel.get(kind)
        if not r or "methods" not in r:
            continue
        m = r["methods"]
        figs = " · ".join(f"{n} {m[n]['precision']:.3f}" for n in ("cosine", "genre_soft", "genre_centre", "mfcc",
                                                                    "random") if n in m)
        out.append(f"Offline, {KIND_LABEL[kind]}, {r['n_listeners']} listeners, precision@{r['k']}: {figs}. "
                   f"**{r['verdict']}** (95 % intervals resampled over tracks).")
    return out
