"""Model comparison: CNN vs CRNN (and the MFCC baseline) on the held-out test split."""

import math

import pandas as pd
import streamlit as st

from ui import charts
from ui.models import artifact_json, artifact_json_checked, artifact_key, cached_figure
from ui.routing import through_app
from ui.settings import paths

through_app()   # a deep link as a fresh server's first request goes through app.py

st.title("Model comparison")
st.markdown(
    "How well does each model recognise genres it has never heard? All numbers come from the "
    "**test split** — tracks (and artists) kept out of training. The **ROC curve** shows, for one "
    "genre, how many true tracks of that genre a model catches (up) against how many other tracks "
    "it wrongly lets in (right) as its threshold moves; the area under it (**AUC**) is 0.5 for "
    "guessing and 1.0 for perfect. Brackets are 95% bootstrap intervals: with only about a hundred "
    "test tracks, differences smaller than the interval are not meaningful.")


def fmt(v, ci=None, pct=False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    f = (lambda x: f"{x:.1%}") if pct else (lambda x: f"{x:.3f}")
    if ci and len(ci) == 2 and all(c is not None and not math.isnan(c) for c in ci):
        return f"{f(v)} [{f(ci[0])}, {f(ci[1])}]"
    return f(v)


metrics = artifact_json("metrics.json")
# Every model with a report or a training history (no names are assumed).
_names = list(dict.fromkeys([*(metrics or {}).get("models", {}), *sorted(
    p.name[: -len("_history.json")] for p in paths().artifacts.glob("*_history.json"))]))
histories = {m: h for m in _names
             if (h := artifact_json(f"{m}_history.json", quiet=True))}


def paired_tests(comp: dict, models: list[str]) -> list[tuple[str, str, dict]]:
    """``(x, y, result)`` for every ``"<x>_vs_<y>"`` entry of metrics.json's
    comparison between two network models (x − y; the baseline rows are
    shown in their own table)."""
    out = []
    for key, v in comp.items():
        if not isinstance(v, dict) or "_vs_" not in key or key.endswith("_vs_baseline_mfcc"):
            continue
        x, y = key.split("_vs_", 1)
        if x in models and y in models:
            out.append((x, y, v))
    return out

if metrics:
    reps = metrics.get("models", {})
    comp = metrics.get("comparison", {})
    labels = comp.get("labels") or next(iter(reps.values()))["confusion"]["labels"]
    split, n = comp.get("split", "test"), comp.get("n_tracks", "?")
    st.caption(f"Evaluated on the {split} split: {n} tracks, {len(labels)} genres.")

    st.header("Overall")
    st.dataframe(pd.DataFrame([{
        "model": charts.model_name(m),
        "ROC-AUC": fmt(r["macro"].get("roc_auc"), r["macro"].get("roc_auc_ci95")),
        "F1": fmt(r["macro"].get("f1"), r["macro"].get("f1_ci95")),
        "accuracy": fmt(r["macro"].get("accuracy"), r["macro"].get("accuracy_ci95"), pct=True),
        "precision": fmt(r["macro"].get("precision")),
        "recall": fmt(r["macro"].get("recall")),
        "F1 at p ≥ 0.5 (paper)": fmt(r["macro"].get("f1_at_0.5")),
    } for m, r in reps.items()]), hide_index=True, width="stretch")
    st.caption("Macro = the average over genres, so small genres count as much as large ones. "
               "F1 and accuracy use each model's top genre; the paper's variant counts a genre as "
               "predicted when its probability is at least 0.5.")

    # ---- paired tests: every pair metrics.json compares (same tracks, paired)
    for x, y, pair in paired_tests(comp, list(reps)):
        nx, ny = charts.model_name(x), charts.model_name(y)
        st.header(f"Is the {nx} really better than the {ny}?")
        d, ci, p = pair.get("auc_diff"), pair.get("auc_diff_ci95"), pair.get("auc_diff_p_bootstrap")
        mc = pair.get("mcnemar", {})
        c1, c2, c3 = st.columns(3)
        c1.metric(f"AUC difference ({nx} − {ny})", fmt(d))
        c1.caption(f"95% interval {fmt(ci[0])} … {fmt(ci[1])}" if ci else "")
        c2.metric("Bootstrap p-value", fmt(p))
        c3.metric("McNemar p-value (accuracy)", fmt(mc.get("p")))
        verdict = ("a real difference" if p is not None and p < 0.05
                   else "no clear difference — the gap could be chance")
        st.markdown(
            f"Both models judged the same {n} tracks. The {nx}'s macro AUC is {fmt(abs(d) if d is not None else d)} "
            f"{'higher' if (d or 0) >= 0 else 'lower'}; the 95% interval of that difference is "
            f"{fmt(ci[0]) if ci else '–'} to {fmt(ci[1]) if ci else '–'}, so this is **{verdict}**. "
            f"On accuracy, only the {ny} was right on {mc.get('a_only_correct', '?')} tracks and only "
            f"the {nx} on {mc.get('b_only_correct', '?')} (McNemar's test compares those two counts).")
    if comp:
        others = {k: v for k, v in comp.items() if k.endswith("_vs_baseline_mfcc") and isinstance(v, dict)}
        if others:
            st.dataframe(pd.DataFrame([{
                "comparison": f"{charts.model_name(k.split('_vs_')[0])} vs MFCC baseline",
                "AUC difference": fmt(v.get("auc_diff"), v.get("auc_diff_ci95")),
                "bootstrap p": fmt(v.get("auc_diff_p_bootstrap")),
                "McNemar p": fmt(v.get("mcnemar", {}).get("p")),
            } for k, v in others.items()]), hide_index=True, width="stretch")

    # The detail views are lazy tabs: only the open one runs and is drawn, which
    # keeps the page fast (each plotly chart costs the browser time to draw).
    show = st.multiselect("Models to show", list(reps),
                          default=[m for m in reps if m != "baseline_mfcc"] or list(reps),
                          format_func=charts.model_name, key="cmp_models")
    mkey = artifact_key("metrics.json")
    roc_tab, genre_tab, conf_tab, source_tab, robust_tab, train_tab = st.tabs(
        ["ROC curves", "Per genre", "Confusion matrices", "Per source", "Degraded audio", "Training curves"],
        key="cmp_tab", on_change="rerun")

    if roc_tab.open:
        with roc_tab:
            st.plotly_chart(cached_figure(("roc_macro", mkey, tuple(show)), lambda: charts.roc_figure(
                {m: charts.macro_roc(reps[m].get("roc", {})) for m in show if reps[m].get("roc")},
                {m: reps[m]["macro"].get("roc_auc") for m in show}, "All genres (macro average)", height=380)),
                key="roc_macro")
            genres_with_roc = [g for g in labels if any(g in reps[m].get("roc", {}) for m in show)]
            if genres_with_roc:
                st.plotly_chart(cached_figure(("roc_grid", mkey, tuple(show)), lambda: charts.roc_grid(
                    {m: reps[m].get("roc", {}) for m in show},
                    {m: {g: v.get("roc_auc") for g, v in reps[m].get("per_genre", {}).items()} for m in show},
                    genres_with_roc)), key="roc_genres")
                st.caption("One panel per genre: that genre against all others. Hover a curve for its AUC.")

    if genre_tab.open:
        with genre_tab:
            rows = []
            for g in labels:
                for m in show:
                    pg = reps[m].get("per_genre", {}).get(g)
                    if pg:
                        rows.append({"genre": g, "model": charts.model_name(m),
                                     "precision": fmt(pg.get("precision")), "recall": fmt(pg.get("recall")),
                                     "F1 [95% CI]": fmt(pg.get("f1"), pg.get("f1_ci95")),
                                     "AUC [95% CI]": fmt(pg.get("roc_auc"), pg.get("roc_auc_ci95")),
                                     "test tracks": pg.get("support")})
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                         height=min(600, 38 + 35 * len(rows)))
            st.caption("Precision: of the tracks a model called this genre, how many were. "
                       "Recall: of the tracks of this genre, how many it found.")

    if conf_tab.open:
        with conf_tab:
            norm = st.toggle("Show fractions of each true genre", value=True, key="cmp_norm")
            cols = st.columns(max(1, min(len(show), 3)))
            for i, m in enumerate(show):
                conf = reps[m].get("confusion")
                if conf:
                    with cols[i % len(cols)]:
                        st.plotly_chart(cached_figure(("conf", mkey, m, norm), lambda: charts.confusion_figure(
                            conf["labels"], conf["matrix"], m, norm)), key=f"conf_{m}")
            st.caption("Which genres get mixed up? Rows are the true genre, columns the model's top "
                       "guess; the diagonal is correct.")

    if source_tab.open:
        with source_tab:
            src_rows = [{"model": charts.model_name(m), "collection": s, "ROC-AUC": fmt(v["macro"].get("roc_auc")),
                         "accuracy": fmt(v["macro"].get("accuracy"), pct=True),
                         "tracks": v["macro"].get("n_tracks"), "genres": ", ".join(v.get("genres", []))}
                        for m in show for s, v in reps[m].get("per_source", {}).items()]
            st.caption("Some genres come mostly from one collection, so a model can partly learn the "
                       "recording source instead of the genre; a large gap between collections is a "
                       "warning sign.")
            if src_rows:
                st.dataframe(pd.DataFrame(src_rows), hide_index=True, width="stretch")
            else:
                st.info("metrics.json has no per-source results.")
    if robust_tab.open:
        with robust_tab:
            rob, problem = artifact_json_checked("robustness.json")
            shown = [m for m in show if rob and m in rob.get("models", {})]
            if problem:
                st.warning(problem)
            elif shown:
                st.plotly_chart(cached_figure(("robust", artifact_key("robustness.json"), tuple(shown)),
                                              lambda: charts.robustness_heatmap(rob, shown)), key="robust")
                st.caption("Each test clip through one degradation at a time (the same clips, analysed "
                           "as an upload is): low-bit-rate MP3, a telephone's band, 8 kHz audio, noise, "
                           "a reverberant room, a much quieter file. 'same' is how often the model kept "
                           "the genre it gives the clean clip.")
            else:
                st.info("No robustness results for these models yet (`robustness.json`, written by "
                        "`python -m core robustness` in `make artifacts`).")
else:
    st.header("Training curves")
    train_tab = st.container()

if metrics is None or train_tab.open:
    with train_tab:
        if histories:
            st.caption("Validation scores after each pass over the training data; the dotted line marks "
                       "the epoch whose weights were kept (best validation AUC).")
            hkey = tuple(artifact_key(f"{m}_history.json") for m in histories)
            st.plotly_chart(cached_figure(("hist", hkey), lambda: charts.training_grid(histories)),
                            key="hist")
        else:
            st.info("No training history in the artifacts folder yet (`cnn_history.json`, "
                    "`crnn_history.json`) — they are written by `make artifacts`.")
