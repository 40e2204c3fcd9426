"""Plotly figure builders for the pages (pure functions: data in, figure out)."""

from __future__ import annotations

import zlib
from typing import Mapping, Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb

# One colour per model everywhere in the app, so each model is recognisable at a
# glance. Names not listed get a shade of their family's colour (the part
# before the first "_": cnn_msd is a darker CNN blue) or a colour of their own.
MODEL_COLOURS = {"cnn": "#1f77b4", "crnn": "#d62728", "baseline_mfcc": "#7f7f7f", "fused": "#2ca02c"}
MODEL_NAMES = {"baseline_mfcc": "MFCC baseline", "fused": "Fused (frozen MSD)",
               "fused_trunks": "Fused trunks (musicnn)"}
_SPARE_MODEL_COLOURS = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
# Genres: 20 colours picked from a Glasbey set for a white background. Every
# pair differs by at least 41 CIELAB ΔE (1976) and every colour by 53 from
# white (tests/test_charts.py checks it); plotly's default has 10 colours, so
# the 11th genre repeated the first blue.
GENRE_PALETTE = ["#0000ff", "#ff0000", "#00c000", "#000033", "#ff00b6", "#005300", "#ffd300",
                 "#009fff", "#9a4d42", "#00ffbe", "#783fc1", "#1f9698", "#ffacfd", "#b1cc71",
                 "#f1085c", "#fe8f42", "#dd00ff", "#201a01", "#720055", "#766c95"]
OTHER_COLOUR = "#b0b0b0"   # the "(upload)" group and anything past the palette
_MARGIN = dict(l=10, r=10, t=40, b=10)


def plotly_colour(hex_colour: str) -> str:
    """``"#000033"`` → ``"rgb(0, 0, 51)"``. Streamlit's plotly theme uses the
    hex strings #000001–#000040 as placeholders and swaps them for its own
    colours in the browser: the palette's dark navy (#000033, its DECREASING
    slot) was drawn salmon, next to Classical's red. rgb() strings pass through."""
    return f"rgb{hex_to_rgb(hex_colour)}"


# The palette and Magma as rgb() strings (Magma's bottom colour is "#000004", one of those placeholders).
_GENRE_RGB = [plotly_colour(c) for c in GENRE_PALETTE]
MAGMA = [plotly_colour(c) for c in plotly.colors.sequential.Magma]


def model_name(key: str) -> str:
    """Display name of a model key: ``cnn`` → CNN, ``crnn_msd`` → CRNN (MSD)."""
    if key in MODEL_NAMES:
        return MODEL_NAMES[key]
    family, _, variant = str(key).partition("_")
    return f"{family.upper()} ({variant.replace('_', ' ').upper()})" if variant else family.upper()


def model_colour(key: str) -> str:
    """Stable colour of a model key (see MODEL_COLOURS)."""
    if key in MODEL_COLOURS:
        return MODEL_COLOURS[key]
    family = str(key).split("_", 1)[0]
    if family in MODEL_COLOURS:       # a variant: the family colour, darker
        r, g, b = hex_to_rgb(MODEL_COLOURS[family])
        return "#{:02x}{:02x}{:02x}".format(*(int(c * 0.55) for c in (r, g, b)))
    return _SPARE_MODEL_COLOURS[zlib.crc32(str(key).encode()) % len(_SPARE_MODEL_COLOURS)]


def genre_colours(genres: Sequence[str]) -> dict[str, str]:
    """One palette colour per genre, assigned in sorted order, so a genre keeps
    its colour whichever column (labelled or predicted) the map is coloured by
    (pass the union of both). Values in parentheses, like "(upload)", are grey."""
    named = sorted({str(g) for g in genres if g and not str(g).startswith("(")})
    out = {g: _GENRE_RGB[i] if i < len(_GENRE_RGB) else OTHER_COLOUR for i, g in enumerate(named)}
    out.update({str(g): OTHER_COLOUR for g in genres if str(g) not in out})
    return out


def waveform(y: np.ndarray, sr: int, max_points: int = 1500) -> go.Figure:
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


def pool_time(logmel: np.ndarray, times: np.ndarray, max_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Average adjacent frames so at most ``max_cols`` columns remain (a screen
    shows ~1000 px anyway; half the frames halves what the browser must draw)."""
    f = int(np.ceil(logmel.shape[1] / max_cols))
    if f <= 1:
        return logmel, times
    n = logmel.shape[1] // f * f
    pooled = logmel[:, :n].reshape(logmel.shape[0], -1, f).mean(-1)
    return pooled, times[:n].reshape(-1, f)[:, 0]


def _hz_to_mel(hz):
    import librosa

    return librosa.hz_to_mel(np.asarray(hz, dtype=float))


def mel_ticks(freqs: np.ndarray) -> tuple[list[float], list[str]]:
    """Tick positions (in mel) and Hz labels for a mel-frequency axis."""
    top = float(np.max(freqs))
    hz = [f for f in (0, 125, 250, 500, 1000, 2000, 3000, 4000, 6000, 8000, 11000, 16000) if f <= top * 1.001]
    return _hz_to_mel(hz).round(2).tolist(), [f"{f / 1000:g}k" if f >= 1000 else f"{f}" for f in hz]


def logmel_heatmap(logmel: np.ndarray, times: np.ndarray, freqs: np.ndarray,
                   max_cols: int = 700) -> go.Figure:
    """Log-mel spectrogram: x = time (s), y = mel frequency, ticks labelled in Hz.

    Mel bands are evenly spaced on the mel scale (close together in the bass,
    far apart in the treble), so the y axis is in mels — the rows stay evenly
    spaced — while the ticks name the frequency in Hz. (A numeric axis draws
    much faster in the browser than 96 named category rows.)
    """
    z, t = pool_time(np.asarray(logmel, np.float32), np.asarray(times), max_cols)
    tickvals, ticktext = mel_ticks(freqs)
    mels = _hz_to_mel(freqs)
    # x0/dx and y0/dy instead of coordinate arrays: evenly spaced cells let
    # plotly draw the heatmap as one image (and nothing extra is shipped).
    fig = go.Figure(go.Heatmap(
        z=z, x0=float(t[0]), dx=float(t[1] - t[0]) if len(t) > 1 else 1.0,
        y0=float(mels[0]), dy=float((mels[-1] - mels[0]) / max(len(mels) - 1, 1)),
        colorscale=MAGMA, colorbar=dict(title="log-mel"),
        hovertemplate="t %{x:.2f} s<br>%{y:.0f} mel<br>value %{z:.2f}<extra></extra>"))
    fig.update_yaxes(tickvals=tickvals, ticktext=ticktext)
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
                             name=model_name(m), marker_color=model_colour(m),
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
                                 line=dict(color=model_colour(m), width=2),
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


def embedding_scatter(df, colour: str, hover: Sequence[str], title: str, webgl_above: int = 3000,
                      colours: Mapping[str, str] | None = None):
    """2-D embedding map (plotly express; ``df`` has x, y, track_id and the hover columns).

    ``colours`` maps each value of the ``colour`` column to a colour (default:
    :func:`genre_colours` of the column's values).
    """
    import plotly.express as px

    groups = sorted(df[colour].astype(str).unique())
    cmap = dict(colours) if colours is not None else genre_colours(groups)
    fig = px.scatter(df, x="x", y="y", color=colour, hover_data={c: True for c in hover} | {
        "x": False, "y": False}, custom_data=["track_id"], title=title, color_discrete_map=cmap,
        category_orders={colour: groups},
        # SVG is quicker to draw for a few thousand points (and needs no GPU);
        # WebGL only pays off for big catalogs.
        render_mode="webgl" if len(df) > webgl_above else "svg")
    fig.update_traces(marker=dict(size=7, opacity=0.8, line=dict(width=0)))
    fig.update_layout(height=560, margin=_MARGIN, xaxis_title="", yaxis_title="",
                      legend_title_text=colour.replace("_", " "), dragmode="lasso")
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return fig


# ---------------------------------------------------------------- combined figures
# One plotly figure with several panels draws much faster in the browser than
# the same panels as separate charts (each chart is its own plotly instance).

def spectrogram_figure(y: np.ndarray, sr: int, logmel: np.ndarray, times: np.ndarray,
                       freqs: np.ndarray, max_cols: int = 700) -> go.Figure:
    """Waveform above the log-mel spectrogram, sharing the time axis (zoom one, both follow)."""
    from plotly.subplots import make_subplots

    wave, mel = waveform(y, sr), logmel_heatmap(logmel, times, freqs, max_cols)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.22, 0.78], vertical_spacing=0.08,
                        subplot_titles=["Waveform", "Log-mel spectrogram (what the models see)"])
    for tr in wave.data:
        fig.add_trace(tr, row=1, col=1)
    heat = mel.data[0]
    heat.colorbar.update(len=0.75, y=0.0, yanchor="bottom")
    fig.add_trace(heat, row=2, col=1)
    fig.update_yaxes(title_text="amplitude", row=1, col=1)
    tickvals, ticktext = mel_ticks(freqs)
    fig.update_yaxes(tickvals=tickvals, ticktext=ticktext, title_text="frequency (Hz, mel scale)", row=2, col=1)
    fig.update_xaxes(title_text="time (s)", row=2, col=1)
    fig.update_layout(height=520, margin=_MARGIN, showlegend=False)
    return fig


def window_strips(window_probs: Mapping[str, np.ndarray], starts_s: Mapping[str, Sequence[float]],
                  labels: Mapping[str, Sequence[str]]) -> go.Figure:
    """Genre over time for every model, one heat strip each, shared time axis."""
    from plotly.subplots import make_subplots

    models = list(window_probs)
    fig = make_subplots(rows=len(models), cols=1, shared_xaxes=True, vertical_spacing=0.2,
                        subplot_titles=[f"{model_name(m)}: genre over time" for m in models])
    for i, m in enumerate(models, 1):
        tr = window_strip(window_probs[m], starts_s[m], labels[m], m).data[0]
        tr.showscale = i == 1
        fig.add_trace(tr, row=i, col=1)
    n = max(len(v) for v in labels.values())
    fig.update_xaxes(title_text="window start (s)", row=len(models), col=1)
    fig.update_layout(height=60 + len(models) * (40 + 20 * n), margin=_MARGIN)
    return fig


def roc_grid(roc: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
             aucs: Mapping[str, Mapping[str, float]], genres: Sequence[str], cols: int = 4) -> go.Figure:
    """Small multiples: one ROC panel per genre, every model in each panel."""
    from plotly.subplots import make_subplots

    rows = max(1, -(-len(genres) // cols))
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.05, vertical_spacing=0.4 / rows,
                        subplot_titles=[f"{g}" for g in genres])
    for i, g in enumerate(genres):
        r, c = i // cols + 1, i % cols + 1
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#bbbbbb"),
                                 hoverinfo="skip", showlegend=False), row=r, col=c)
        for m, by_genre in roc.items():
            if g not in by_genre:
                continue
            auc = aucs.get(m, {}).get(g)
            fig.add_trace(go.Scatter(
                x=by_genre[g]["fpr"], y=by_genre[g]["tpr"], mode="lines", name=model_name(m),
                legendgroup=m, showlegend=i == 0, line=dict(color=model_colour(m), width=2),
                hovertemplate=f"{g} · {model_name(m)}" + (f" (AUC {auc:.3f})" if auc is not None
                                                          and np.isfinite(auc) else "")
                + "<br>FPR %{x:.2f}<br>TPR %{y:.2f}<extra></extra>"), row=r, col=c)
    fig.update_xaxes(range=[0, 1], showticklabels=False)
    fig.update_yaxes(range=[0, 1.02], showticklabels=False)
    fig.update_layout(height=90 + 210 * rows, margin=dict(_MARGIN, b=40),
                      legend=dict(orientation="h", y=-0.02, yanchor="top", x=1, xanchor="right"))
    return fig


def training_grid(histories: Mapping[str, Mapping[str, Sequence[float]]]) -> go.Figure:
    """The four training curves (validation AUC / accuracy, training / validation loss)."""
    from plotly.subplots import make_subplots

    panels = [("val_auc", "Validation ROC-AUC"), ("val_accuracy", "Validation accuracy"),
              ("train_loss", "Training loss"), ("val_loss", "Validation loss")]
    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for _, t in panels], vertical_spacing=0.14)
    for i, (metric, _) in enumerate(panels):
        r, c = i // 2 + 1, i % 2 + 1
        for m, h in histories.items():
            if metric not in h:
                continue
            fig.add_trace(go.Scatter(x=h.get("epoch", list(range(1, len(h[metric]) + 1))), y=h[metric],
                                     mode="lines+markers", name=model_name(m), legendgroup=m,
                                     showlegend=i == 0, line=dict(color=model_colour(m)),
                                     marker=dict(size=4)), row=r, col=c)
            if h.get("best_epoch"):
                fig.add_vline(x=h["best_epoch"], line=dict(color=model_colour(m), dash="dot", width=1),
                              row=r, col=c)
        fig.update_xaxes(title_text="epoch", row=r, col=c)
    fig.update_layout(height=560, margin=_MARGIN, legend=dict(orientation="h", y=1.06, x=1,
                                                              xanchor="right"))
    return fig


def robustness_heatmap(rec: Mapping, models: Sequence[str]) -> go.Figure:
    """Accuracy of each model (column) on each degraded version (row) of the
    clips of a ``core.training.robustness`` record; each cell also says how
    often the top genre stayed the one given to the clean clip."""
    rows = list(rec["degradations"])
    z = [[rec["models"][m][d]["accuracy"] for m in models] for d in rows]
    agree = [[rec["models"][m][d]["agreement"] for m in models] for d in rows]
    text = [[f"{a:.0%}<br>same {g:.0%}" for a, g in zip(za, ga)] for za, ga in zip(z, agree)]
    fig = go.Figure(go.Heatmap(
        z=z, x=[model_name(m) for m in models], y=rows, colorscale="Viridis", zmin=0, zmax=1,
        text=text, texttemplate="%{text}", customdata=agree, colorbar=dict(title="accuracy"),
        hovertemplate="%{y}<br>%{x}<br>accuracy %{z:.0%}<br>same top genre as clean "
                      "%{customdata:.0%}<extra></extra>"))
    fig.update_layout(height=140 + 46 * len(rows), margin=_MARGIN, yaxis_autorange="reversed",
                      title=f"Accuracy on degraded copies of the {rec.get('split', 'test')} clips "
                            f"({rec.get('n_tracks', '?')} clips)")
    return fig


def genre_shift_bars(before: Mapping[str, int], after: Mapping[str, int], title: str) -> go.Figure:
    """Tracks per genre before and after adapting (two bars per genre)."""
    genres = sorted(set(before) | set(after), key=lambda g: -(before.get(g, 0) + after.get(g, 0)))
    fig = go.Figure([go.Bar(name=name, x=genres, y=[counts.get(g, 0) for g in genres])
                     for name, counts in (("as shipped", before), ("adapted to this library", after))])
    fig.update_layout(barmode="group", title=title, yaxis_title="tracks", height=340,
                      margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=1.02, x=0))
    return fig
