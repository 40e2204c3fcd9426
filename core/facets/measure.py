"""How well each facet matches what the data knows (``python -m core facets-eval``).

* tempo: a synthetic click track at known BPMs (error and confidence), and
  the tempo / confidence of a few real clips for listening checks;
* arousal and valence: AUC of the facet scores against AllMusic's
  ``emotion_quadrant`` (arousal: Q1+Q2 vs Q3+Q4; valence: Q1+Q4 vs Q2+Q3),
  with a 95 % bootstrap interval over clips;
* vocals: AUC of ``vocal`` against MUSIFEAST-17's ``vocalisation`` (yes / no).

The result (``artifacts/facets_eval.json``) is what the app quotes next to
each facet; a facet without a measurement says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.config import FeatureConfig
from core.facets.signal import signal_facets
from core.training.metrics import binary_auc, bootstrap_ci

CLICK_BPMS = (60.0, 80.0, 100.0, 120.0, 140.0, 170.0)
AROUSAL_HIGH, VALENCE_POSITIVE = {"Q1", "Q2"}, {"Q1", "Q4"}


def click_track(bpm: float, cfg: FeatureConfig, seconds: float | None = None) -> np.ndarray:
    """A click (a 5 ms decaying 1 kHz burst) on every beat at ``bpm``: ``(samples,)`` float32."""
    sr = cfg.sample_rate
    n = int(sr * (seconds or cfg.window_seconds))
    y = np.zeros(n, np.float32)
    burst = (np.sin(2 * np.pi * 1000 * np.arange(int(0.005 * sr)) / sr)
             * np.exp(-np.arange(int(0.005 * sr)) / (0.001 * sr))).astype(np.float32)
    for t in np.arange(0.0, n / sr, 60.0 / bpm):
        i = int(round(t * sr))
        y[i: i + len(burst)] += burst[: n - i]
    return 0.5 * y


def click_tempo(cfg: FeatureConfig, bpms=CLICK_BPMS) -> list[dict]:
    """Tempo of click tracks at ``bpms`` through the real front-end and facet code."""
    from core.audio.features import logmels

    out = []
    for bpm in bpms:
        lm = logmels(click_track(bpm, cfg)[: cfg.window_samples], cfg)[0, 0].numpy()
        f = signal_facets(lm, cfg)
        out.append({"bpm": bpm, "estimated": f["tempo_bpm"], "confidence": f["tempo_conf"],
                    "error_pct": 100.0 * abs(f["tempo_bpm"] - bpm) / bpm})
    return out


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC (Mann–Whitney, ties half) of ``scores`` for boolean ``positive``
    (clips with a non-finite score left out)."""
    s, y = np.asarray(scores, float), np.asarray(positive, bool)
    ok = np.isfinite(s)
    return binary_auc(y[ok], s[ok])


def auc_ci(scores: np.ndarray, positive: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """AUC with a 95 % percentile bootstrap interval over clips."""
    s, y = np.asarray(scores, float), np.asarray(positive, bool)
    lo, hi = bootstrap_ci(y, s, lambda yy, ss: auc(ss, yy), n_boot, seed)
    return {"auc": auc(s, y), "ci95": [lo, hi], "n": int(np.isfinite(s).sum()), "n_positive": int(y.sum())}


def facet_aucs(facets: pd.DataFrame, labels: dict[str, str], positive: set[str],
               columns: list[str]) -> dict[str, dict]:
    """AUC of each facet column for ``labels[track_id] in positive`` over the labelled tracks."""
    sel = facets["track_id"].isin(list(labels))
    f = facets[sel]
    y = np.array([labels[t] in positive for t in f["track_id"]])
    return {c: auc_ci(f[c].to_numpy(float), y) for c in columns if c in f}


def measure(facets: pd.DataFrame, quadrants: dict[str, str], vocalisation: dict[str, str],
            tempo_cfg: FeatureConfig) -> dict:
    """Every measurement of the module docstring, JSON-ready."""
    scalar = ["arousal", "valence", "energy", "loudness_db", "tempo_bpm", "vocal"]
    tags = [c for c in facets.columns if c.startswith("msd_")]
    aro = facet_aucs(facets, quadrants, AROUSAL_HIGH, scalar + tags)
    val = facet_aucs(facets, quadrants, VALENCE_POSITIVE, scalar + tags)
    voc = facet_aucs(facets, {t: v.lower() for t, v in vocalisation.items()}, {"yes"}, ["vocal"] + tags)
    best = lambda d: sorted(((k, v["auc"]) for k, v in d.items() if np.isfinite(v["auc"])),  # noqa: E731
                            key=lambda kv: -abs(kv[1] - 0.5))[:5]
    real = facets.dropna(subset=["tempo_bpm"]).head(8)
    return {
        "tempo": {"click_track": click_tempo(tempo_cfg),
                  "front_end": {"sample_rate": tempo_cfg.sample_rate, "hop_length": tempo_cfg.hop_length},
                  "real_clips": [{"track_id": r.track_id, "tempo_bpm": r.tempo_bpm, "confidence": r.tempo_conf}
                                 for r in real.itertuples()],
                  "catalog": {"median_confidence": float(facets["tempo_conf"].median()),
                              "share_confident": float((facets["tempo_conf"] >= 0.5).mean())}},
        "arousal": {"target": "emotion_quadrant Q1+Q2 (high arousal) vs Q3+Q4", "facets": {
            c: aro[c] for c in scalar if c in aro}, "strongest_tags": best({c: aro[c] for c in tags if c in aro})},
        "valence": {"target": "emotion_quadrant Q1+Q4 (positive) vs Q2+Q3", "facets": {
            c: val[c] for c in scalar if c in val}, "strongest_tags": best({c: val[c] for c in tags if c in val})},
        "vocal": {"target": "musifeast17 vocalisation yes vs no", "facets": {"vocal": voc.get("vocal")},
                  "strongest_tags": best({c: voc[c] for c in tags if c in voc})},
        "n_tracks": int(len(facets)),
    }


def facet_note(report: dict | None, facet: str) -> str:
    """One honest line for displays: what ``facet`` was measured to be good for."""
    if not report:
        return "not measured yet (python -m core facets-eval)"
    if facet == "tempo_bpm":
        ct = report.get("tempo", {}).get("click_track", [])
        err = max((c["error_pct"] for c in ct), default=float("nan"))
        return f"click tracks 60–170 BPM within {err:.1f} %; on music, trust it only when confidence ≥ 0.5"
    for group in ("arousal", "valence", "vocal"):
        m = report.get(group, {}).get("facets", {}).get(facet)
        if m and group == facet or (m and facet in ("energy", "loudness_db") and group == "arousal"):
            return (f"AUC {m['auc']:.2f} [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}] for "
                    f"{report[group]['target']} (n = {m['n']}; 0.5 = chance)")
    return "not measured against labels"
