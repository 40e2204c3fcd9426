"""Plotly figure builders for the pages (pure functions: data in, figure out)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb

# One colour per model everywhere in the app, so CNN/CRNN are recognisable at a glance.
MODEL_COLOURS = {"cnn": "#1f77b4", "crnn": "#d62728", "baseline_mfcc": "#7f7f7f"}
MODEL_NAMES = {"cnn": "CNN", "crnn": "CRNN", "baseline_mfcc": "MFCC baseline"}
_MARGIN = dict(l=10, r=10, t=40, b=10)
# Magma as rgb() strings: Streamlit's plotly front-end draws the hex "#000004"
# at the bottom of the named scale as pink instead of black.
MAGMA = [f"rgb{hex_to_rgb(c)}" for c in plotly.colors.sequential.Magma]


def model_name(key: str) -> str:
    return MODEL_NAMES.get(key, key)


def waveform(y: np.ndarray, sr: int, max_points: int = 4000) -> go.Figure:
    """Min/max envelope of a waveform (a few thousand points, whatever its length)."""
    n = max(1, int(np.ceil(y.size / max_points)))
    pad = (-y.size) % n
    blocks = np.pad(y, (0, pad)).reshape(-1, n)
    t = np.arange(blocks.shape[0]) * n / sr
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t, y=blocks.max(1).round(4), line=dict(width=0.6, color="#4c78a8"),
                             name="max", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=t, y=blocks.min(1).round(4), line=dict(width=0.6, color="#4c78a8"),
                             fill="tonexty", name="min", hoverinfo="skip"))
    fig.update_layout(height=180, showlegend=False, margin=_MARGIN, title="Waveform",
                      xaxis_title="time (s)", yaxis_title="amplitude")
    return fig


def logmel_heatmap(logmel: np.ndarray, times: np.ndarray, freqs: np.ndarray) -> go.Figure:
    """Log-mel spectrogram: x = time (s), y = mel band, labelled in Hz.

    Mel bands are spaced perceptually (close together in the bass, far apart
    in the treble), so rows stay evenly spaced and the ticks show each band's
    centre frequency rather than a linear Hz axis that would squash the bass.
    """
    # Category rows named by their Hz keep the bands evenly spaced and make the
    # hover show the frequency without shipping a second 96×1366 array.
    rows = [f"{f:.0f} Hz" for f in np.asarray(freqs)]
    fig = go.Figure(go.Heatmap(
        z=np.round(logmel, 2), x=np.round(times, 3), y=rows,
        colorscale=MAGMA, colorbar=dict(title="log-mel"),
        hovertemplate="t %{x:.2f} s<br>%{y}<br>value %{z:.2f}<extra></extra>"))
    fig.update_yaxes(type="category", nticks=8)
    fig.update_layout(height=340, margin=_MARGIN, title="Log-mel spectrogram (what the models see)",
                      xaxis_title="time (s)", yaxis_title="frequency (Hz, mel scale)")
    return fig


def window_strip(window_probs: np.ndarray, starts_s: Sequence[float], labels: Sequence[str],
                 model: str) -> go.Figure:
    """Genre over time: one column per inference window, one row per genre."""
    fig = go.Figure(go.Heatmap(
        z=np.round(np.asarray(window_probs).T, 3), x=np.round(np.asarray(starts_s), 2), y=list(labels),
        zmin=0, zmax=1, colorscale="Blues", colorbar=dict(title="p"),
        hovertemplate="window at %{x:.1f} s<br>%{y}: %{z:.2f}<extra></extra>"))
    fig.update_layout(height=70 + 22 * len(labels), margin=_MARGIN,
                      title=f"{model_name(model)}: genre over time", xaxis_title="window start (s)")
    return fig


def probability_bars(probs: Mapping[str, Mapping[str, float]], title: str = "Genre probabilities",
                     height: int = 300) -> go.Figure:
    """Grouped horizontal bars: ``{model: {genre: p}}``, genres sorted by mean p."""
    models = list(probs)
    genres = list(next(iter(probs.values())))
    mean = {g: float(np.mean([probs[m].get(g, 0.0) for m in models])) for g in genres}
    order = sorted(genres, key=mean.get)
    fig = go.Figure()
    for m in models:
        fig.add_trace(go.Bar(y=order, x=[probs[m].get(g, 0.0) for g in order], orientation="h",
                             name=model_name(m), marker_color=MODEL_COLOURS.get(m),
                             hovertemplate="%{y}: %{x:.2f}<extra>" + model_name(m) + "</extra>"))
    fig.update_layout(barmode="group", height=height, margin=_MARGIN, title=title,
                      xaxis=dict(range=[0, 1], title="probability"),
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.0, yanchor="bottom"))
    return fig


def roc_figure(curves: Mapping[str, Mapping[str, Sequence[float]]], aucs: Mapping[str, float],
               title: str, height: int = 300) -> go.Figure:
    """ROC curves, one per model (``{model: {"fpr": [...], "tpr": [...]}}``)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                             line=dict(dash="dot", color="#bbbbbb"), hoverinfo="skip"))
    for m, c in curves.items():
        auc = aucs.get(m)
        label = model_name(m) + (f" (AUC {auc:.3f})" if auc is not None and np.isfinite(auc) else "")
        fig.add_trace(go.Scatter(x=c["fpr"], y=c["tpr"], mode="lines", name=label,
                                 line=dict(color=MODEL_COLOURS.get(m), width=2),
                                 hovertemplate="FPR %{x:.2f}<br>TPR %{y:.2f}<extra>" + model_name(m)
                                 + "</extra>"))
    fig.update_layout(height=height, margin=_MARGIN, title=title,
                      xaxis=dict(title="false positive rate", range=[0, 1], constrain="domain"),
                      yaxis=dict(title="true positive rate", range=[0, 1.02]),
                      legend=dict(x=0.98, y=0.02, xanchor="right", yanchor="bottom",
                                  bgcolor="rgba(255,255,255,0.6)"))
    return fig


def macro_roc(roc: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, list[float]]:
    """Macro-average ROC: mean TPR over genres on a common FPR grid."""
    grid = np.linspace(0, 1, 101)
    tprs = [np.interp(grid, c["fpr"], c["tpr"]) for c in roc.values()]
    if not tprs:
        return {"fpr": [], "tpr": []}
    return {"fpr": grid.round(4).tolist(), "tpr": np.mean(tprs, axis=0).round(4).tolist()}


def confusion_figure(labels: Sequence[str], matrix: Sequence[Sequence[int]], model: str,
                     normalise: bool = True) -> go.Figure:
    """Confusion heatmap; rows (true genre) normalised to fractions if asked."""
    m = np.asarray(matrix, dtype=float)
    z = m / np.maximum(m.sum(1, keepdims=True), 1) if normalise else m
    text = [[f"{v:.0%}" if normalise else f"{int(v)}" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(labels), y=list(labels), colorscale="Blues", text=text, texttemplate="%{text}",
        customdata=m, zmin=0,
        hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata:.0f} tracks<extra></extra>"))
    fig.update_layout(height=120 + 28 * len(labels), margin=_MARGIN, title=model_name(model),
                      xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed")
    return fig


def training_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], metric: str,
                    title: str) -> go.Figure:
    """One line per model of ``history[metric]`` against epoch."""
    fig = go.Figure()
    for m, h in histories.items():
        if metric not in h:
            continue
        fig.add_trace(go.Scatter(x=h.get("epoch", list(range(1, len(h[metric]) + 1))), y=h[metric],
                                 mode="lines+markers", name=model_name(m),
                                 line=dict(color=MODEL_COLOURS.get(m)), marker=dict(size=4)))
        best = h.get("best_epoch")
        if best:
            fig.add_vline(x=best, line=dict(color=MODEL_COLOURS.get(m), dash="dot", width=1))
    fig.update_layout(height=280, margin=_MARGIN, title=title, xaxis_title="epoch",
                      legend=dict(orientation="h", y=-0.25))
    return fig


def embedding_scatter(df, colour: str, hover: Sequence[str], title: str):
    """2-D embedding map (plotly express; ``df`` has x, y, track_id and the hover columns)."""
    import plotly.express as px

    fig = px.scatter(df, x="x", y="y", color=colour, hover_data={c: True for c in hover} | {
        "x": False, "y": False}, custom_data=["track_id"], title=title, render_mode="webgl")
    fig.update_traces(marker=dict(size=7, opacity=0.8, line=dict(width=0)))
    fig.update_layout(height=560, margin=_MARGIN, xaxis_title="", yaxis_title="",
                      legend_title_text=colour.replace("_", " "), dragmode="lasso")
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return fig
