"""The model card's leave-one-source-out sections: LOSO tables of ``cnn_msd``,
the fused model and ``fused_trunks``, calibration per held-out source (and the
calibration methods tried), each model's worst
genres on the test split, and the recommender's LOSO folds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.files import read_json_or_none

WORST_N = 3
LOSO_MODELS = ("cnn_msd", "fused", "fused_trunks")


def _f(x) -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.3f}"


def worst_genres(per_genre: dict, n: int = WORST_N) -> list[tuple[str, float]]:
    """The ``n`` genres with the lowest recall (genres with support only)."""
    got = [(g, v["recall"]) for g, v in per_genre.items() if v.get("support", 0) and v.get("recall") is not None]
    return sorted(got, key=lambda t: (t[1], t[0]))[:n]


def head_only_history(path: Path) -> dict:
    """For a model trained without a history file (a linear head fitted in closed
    form): its feature config and parameter count from its safetensors header
    (``{}`` when unreadable)."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            n = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys()
                    if k not in ("temperature", "trunk_set", "bank_patches", "prior.logit", "prior.grouped"))
        return {"feature_config": json.loads(meta["feature_config"]), "n_parameters": n,
                "n_trained_parameters": n}
    except (OSError, ValueError, KeyError):
        return {}


def _how(cal: dict) -> str:
    """How a fold was calibrated: a cross-fitted map's method, or its temperature."""
    return f"{cal['method']} map" if "method" in cal else f"T = {cal['temperature']:.2f}"


def calibration_lines(rec: dict, folds: list[str], name=lambda n: n) -> list[str]:
    """The calibration methods tried for a model (``rec["calibration"]``), per held-out source."""
    cal = rec.get("calibration")
    if not cal:
        return []
    out = ["", f"{name('fused_trunks')} calibration methods, each cross-fitted per fold ({cal['criterion']}); "
           "ECE per held-out source (all its tracks; seen genres only in brackets); the target is ≤ 0.05 in "
           "every fold:", "", "| method | " + " | ".join(folds) + " | mean | worst |",
           "|---|" + "---|" * (len(folds) + 2)]
    for m, r in cal["methods"].items():
        out.append(f"| {m}{' (shipped)' if m == cal['best'] else ''} | " + " | ".join(
            f"{_f(r['folds'][s]['ece'])} ({_f(r['folds'][s]['ece_seen'])})" for s in folds)
            + f" | {_f(r['mean_ece'])} | {_f(r['worst_ece'])} |")
    orc = cal.get("oracle_temperature")
    if orc:
        out.append("| floor: temperature fitted on the held-out source's own labels (not a method) | " + " | ".join(
            f"{_f(orc[s]['ece'])}" for s in folds) + f" | {_f(float(np.mean([orc[s]['ece'] for s in folds])))} | "
            f"{_f(max(orc[s]['ece'] for s in folds))} |")
    noise = cal.get("sampling_floor")
    if noise:
        out.append("| sampling floor: a perfectly calibrated model with the shipped map's confidences, "
                   "as many tracks (mean [5–95 %] of 2,000 draws) | " + " | ".join(
                       f"{_f(noise[s]['mean'])} [{_f(noise[s]['p05'])}–{_f(noise[s]['p95'])}] (n {noise[s]['n']})"
                       for s in folds) + f" | {_f(float(np.mean([noise[s]['mean'] for s in folds])))} | "
                   f"{_f(max(noise[s]['mean'] for s in folds))} |")
    return out


def _aae(m: dict, sep: str = " | ") -> str:
    """Accuracy, macro AUC and ECE of a LOSO figure set ``m``, joined by ``sep``."""
    return sep.join(_f(m[k]) for k in ("accuracy", "macro_auc", "ece"))


def _choice_table(intro: str, columns: list[str], rows: list[dict], cells) -> list[str]:
    """A LOSO choice as Markdown: ``intro``, then a row per choice, ``cells(row)``
    under ``columns`` and its mean accuracy, AUC and ECE (nothing without rows)."""
    if not rows:
        return []
    head = columns + ["mean acc", "mean AUC", "mean ECE (cross-fold T)"]
    return ["", intro, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *(f"| {cells(r)} | {_aae(r['mean'])} |" for r in rows)]


def grid_lines(choice: dict, title: str) -> list[str]:
    """Best ``C`` per feature set of a LOSO grid."""
    best: dict[str, dict] = {}
    for r in choice.get("grid", []):
        k = "+".join(r["features"])
        if k not in best or r["mean"]["accuracy"] > best[k]["mean"]["accuracy"]:
            best[k] = r
    return _choice_table(f"{title} ({choice.get('criterion')}); best C per feature set:", ["features", "C"],
                         list(best.values()), lambda r: f"{'+'.join(r['features'])} | {r['C']:g}")


def patch_lines(choice: dict, title: str) -> list[str]:
    """The patches-per-clip rows of ``fused_trunks``' LOSO record (step 1b)."""
    return _choice_table(f"{title}: 3 s patches per clip the trunks run on ({choice.get('rule')}); shipped: "
                         f"{choice.get('chosen') or 'all'}.", ["patches"], choice.get("rows") or [],
                         lambda r: f"{r['patches'] or 'all (10)'}")


def augment_lines(choice: dict, title: str) -> list[str]:
    """The augmented-copies rows of ``fused_trunks``' LOSO record (step 1c)."""
    return _choice_table(f"{title}: augmented copies of each training track as extra rows (core.audio.augment: "
                         f"re-encoding, another rate, EQ tilt, band limits, gain, noise, reverb, downmix; "
                         f"{choice.get('rule')}); shipped: {choice.get('chosen')} copies, C = {choice.get('C', 0):g}.",
                         ["copies", "C"], choice.get("rows") or [], lambda r: f"{r['copies']} | {r['C']:g}")


def head_lines(choice: dict, title: str) -> list[str]:
    """The head-form rows of ``fused_trunks``' LOSO record (step 1d)."""
    from core.training.loso_eval import HEAD_NAMES

    return _choice_table(f"{title}: the head's form ({choice.get('rule')}); shipped: "
                         f"{HEAD_NAMES.get(choice.get('chosen'), choice.get('chosen'))}, C = {choice.get('C', 0):g}.",
                         ["head", "C"], choice.get("rows") or [], lambda r: f"{HEAD_NAMES[r['head']]} | {r['C']:g}")


def prior_lines(choice: dict, title: str) -> list[str]:
    """Step 1e of ``fused_trunks``' LOSO record, per served trunk set: no prior,
    the best row the in-source guard lets through, and the best row of all."""
    from core.training.tag_prior_choice import PriorSetting, keeps_val

    rows = choice.get("rows") or []
    if not rows:
        return []
    chosen = PriorSetting.from_dict(choice["chosen"])
    guard = rows[0]["val"]

    def best(rs: list[dict]) -> dict:
        return max(rs, key=lambda r: (r["mean"]["accuracy"], r["mean"]["macro_auc"]))

    shown: list[dict] = []
    seen: set[int] = set()
    for trunks in dict.fromkeys(tuple(r["trunks"]) for r in rows):
        mine = [r for r in rows if tuple(r["trunks"]) == trunks]
        kept = [r for r in mine if keeps_val(r["val"], guard)]
        for what, r in (("no prior", mine[0]), ("best kept by the guard", best(kept or mine[:1])),
                        ("best LOSO", best(mine))):
            if id(r) not in seen:
                seen.add(id(r))
                shown.append(r | {"_what": what})

    def cells(r: dict) -> str:
        setting = PriorSetting.from_dict(r)
        mark = " (shipped)" if setting == chosen else ""
        return f"{setting.label()}{mark} | {r['_what']} | {_f(r['val']['accuracy'])} / {_f(r['val']['macro_auc'])}"
    return _choice_table(f"{title}: the zero-shot tag prior after the head ({choice.get('rule')}); shipped: "
                         f"{chosen.label()}. In-source val accuracy / macro AUC beside each row (the guard: the "
                         "first row's).", ["served trunks, prior", "row", "in-source val"], shown, cells)


def variant_lines(hv: dict, title: str) -> list[str]:
    """Other heads on the shipped features (:mod:`core.training.head_variants`), reported, not chosen from."""
    if not hv or not hv.get("rows"):
        return []
    out = ["", f"{title}: other heads on step 1d's features, each fold scored as above (reported, not chosen "
           "from; `loso --head-variants`). Δ accuracy: minus step 1d's head (before the tag prior of step 1e) "
           "over all held-out tracks, paired bootstrap 95 % interval.", "",
           "| head | setting | mean acc | mean AUC | mean ECE (cross-fold T) | Δ accuracy [95 % CI] |",
           "|---|---|---|---|---|---|"]
    for r in hv["rows"]:
        lo, hi = r["ci95"]
        out.append(f"| {r['head']} | {r['setting']} | {_aae(r['mean'])} | "
                   f"{r['delta_accuracy']:+.3f} [{lo:+.3f}, {hi:+.3f}] |")
    for c in hv.get("learning_curve", []):
        out.append(f"\nShipped head on {c['share']:.0%} of each fold's training tracks ({len(c['accuracy'])} draws): "
                   f"mean accuracy {min(c['accuracy']):.3f}–{max(c['accuracy']):.3f}.")
    return out


def loso_lines(artifacts_dir: str | Path, name=lambda n: n) -> list[str]:
    """Markdown lines (empty when ``loso.json`` is missing)."""
    out = Path(artifacts_dir)
    loso = read_json_or_none(out / "loso.json")
    lines: list[str] = []
    if loso:
        folds = [f["held_out"] for f in loso["folds"]]
        lines += ["", "## Leave-one-source-out (LOSO)", loso["protocol"] + ". Generated by "
                  "`python -m core loso` (`loso.json`). Genres per source: " + "; ".join(
                      f"{s}: {len(g)}" for s, g in loso.get("genres_per_source", {}).items())
                  + ". A held-out source's genres that the two others lack cannot be predicted "
                  "(Blues, Reggae and Latin exist only in allmusic_4q), so its accuracy is capped.", "",
                  "| model | " + " | ".join(f"{s} acc / AUC / ECE" for s in folds) + " | mean acc / AUC / ECE |",
                  "|---|" + "---|" * (len(folds) + 1)]
        for key in LOSO_MODELS:
            r = loso.get(key)
            if not r:
                continue
            cells = [_aae(r["folds"][s]["calibrated"], " / ") for s in folds]
            lines.append(f"| {name(key)} | " + " | ".join(cells) + f" | **{_aae(r['mean'], ' / ')}** |")
        lines += ["", "Calibration per held-out source: ECE (all its tracks) with the cross-fold temperature, "
                  "fitted on the other two folds' held-out tracks of seen genres; uncalibrated (T = 1) after "
                  "the semicolon. The shipped temperature is fitted on every fold's held-out tracks of seen genres:",
                  ""]
        for key in LOSO_MODELS:
            r = loso.get(key)
            if r:
                cal = {s: r["folds"][s]["calibrated"] for s in folds}
                lines.append(f"- {name(key)}: " + ", ".join(
                    f"{s} {_f(cal[s]['ece'])} ({_how(cal[s])}; "
                    f"{_f(r['folds'][s]['uncalibrated']['ece'])})" for s in folds)
                    + (f"; shipped: {r['calibration']['best']} map, pooled." if "calibration" in r
                       else f"; pooled temperature {r['pooled_temperature']:.2f}."))
        if "cnn_msd" in loso:
            lines.append(f"- cnn_msd under LOSO: {loso['cnn_msd']['how']}.")
        lines += grid_lines(loso.get("feature_choice", {}), "Fused head choices")
        lines.append(f"\nShipped fused: {', '.join(loso['fused']['features'])}, C = {loso['fused']['C']:g}.")
        ft = loso.get("fused_trunks")
        if ft:
            lines += grid_lines(ft.get("feature_choice", {}), f"{name('fused_trunks')} trunk sets")
            prior = ft.get("prior") or {}
            lines.append(f"\nShipped {name('fused_trunks')}: {' + '.join(ft['features'])}, "
                         f"{ft.get('head', 'clip')}-level head, C = {ft['C']:g}, "
                         + (f"zero-shot tag prior ({'logit' if prior['logit'] else 'prob'}, "
                            f"{'grouped' if prior['grouped'] else 'add'}, β = {prior['beta']:g}), "
                            if prior.get("beta") else "") +
                         f"calibration {ft['calibration']['best']}; in-source val accuracy "
                         f"{_f(ft['in_source_val']['accuracy'])}, macro AUC {_f(ft['in_source_val']['macro_auc'])}, "
                         f"ECE {_f(ft['in_source_val']['ece'])}.")
            fc = ft.get("feature_choice", {})
            if fc.get("eligible") and fc.get("best_any"):
                b = fc["best_any"]
                lines.append(f"Chosen among {fc['eligible']}; the best row of the whole grid was "
                             f"{' + '.join(b['features'])}, C = {b['C']:g} (mean accuracy {_f(b['mean']['accuracy'])}, "
                             f"AUC {_f(b['mean']['macro_auc'])}).")
            lines += patch_lines(ft.get("patch_choice") or {}, name("fused_trunks"))
            lines += augment_lines(ft.get("augment_choice") or {}, name("fused_trunks"))
            lines += head_lines(ft.get("head_choice") or {}, name("fused_trunks"))
            lines += prior_lines(ft.get("prior_choice") or {}, name("fused_trunks"))
            lines += variant_lines(ft.get("head_variants") or {}, name("fused_trunks"))
            lines += calibration_lines(ft, folds, name)
            lines += adaptation_lines(out, folds, name)
    metrics = read_json_or_none(out / "metrics.json")
    if metrics:
        lines += ["", "## Worst genres per model (test recall)", ""]
        for n, m in metrics["models"].items():
            w = worst_genres(m.get("per_genre", {}))
            lines.append(f"- {name(n)}: " + ", ".join(f"{g} {r:.2f}" for g, r in w))
    rec = (read_json_or_none(out / "recommend_eval.json") or {}).get("loso")
    if rec:
        k = rec.get("config", {}).get("k", 5)
        c = rec["choice"]
        lines += ["", "## Recommender, leave-one-source-out", f"Method 2 chosen LOSO ({rec['rule']}): embedding "
                  f"{c['model']}, variant {c['variant']}, w = {c['genre_weight']:g}, confidence {c['confidence']}.", "",
                  "| held-out source | tracks | method 1 | method 2 | MFCC | random | m2 − m1 [95 % CI, tracks] | "
                  "nested m2 − m1 |", "|---|---|---|---|---|---|---|---|"]
        for s, f in rec["folds"].items():
            d = f["m2_minus_m1"]
            ci = d.get("ci95", [float("nan")] * 2)
            lines.append(f"| {s} | {f['n_tracks']} | {_f(f[f'method1_precision_at_{k}'])} | "
                         f"{_f(f[f'method2_precision_at_{k}'])} | {_f(f.get(f'mfcc_precision_at_{k}'))} | "
                         f"{_f(f[f'random_precision_at_{k}'])} | {d['diff']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] | "
                         f"{_nested(rec['nested'][s])} |")
    return lines


def adaptation_lines(out: Path, folds: list[str], name=lambda n: n) -> list[str]:
    """The library adaptation's LOSO record (the replay file's header), when shipped."""
    from core.errors import GenreError
    from core.training.library_head import REPLAY_FILE, replay_record

    try:
        r = replay_record(out / REPLAY_FILE) if (out / REPLAY_FILE).is_file() else None
    except GenreError:
        r = None
    if not r:
        return []
    c, (lo, hi) = r["config"], r["delta_ci95"]
    lines = ["", f"### {name('fused_trunks')} adapted to a library (opt-in, transductive)",
             f"Self-training on the held-out source without its labels, against a per-genre replay of the "
             f"training rows (frac {c['frac']:g}, {c['rounds']} rounds, rank {c['rank']}; `python -m core adapt "
             f"--ship`). Accuracy over the {r['tracks']} held-out tracks {_f(r['plain']['mean']['accuracy'])} → "
             f"{_f(r['adapted']['mean']['accuracy'])}, {r['delta_accuracy']:+.3f} [{lo:+.3f}, {hi:+.3f}] (paired "
             f"bootstrap); shipped temperature {r['temperature']:.3f}, pooled on the adapted heads.", "",
             "| | " + " | ".join(f"{s} acc / AUC / ECE" for s in folds) + " | mean acc / AUC / ECE |",
             "|---|" + "---|" * (len(folds) + 1)]
    for key, label in (("plain", "as shipped"), ("adapted", "adapted")):
        rep = r[key]
        lines.append(f"| {label} | " + " | ".join(_aae(rep["folds"][s]["calibrated"], " / ") for s in folds)
                     + f" | {_aae(rep['mean'], ' / ')} |")
    return lines


def _nested(n: dict) -> str:
    """A nested check's m2 − m1 (a number, or a difference with its interval) and the setting it chose."""
    d = n["m2_minus_m1"]
    if not isinstance(d, dict):
        return f"{d:+.3f}"
    ci = d.get("ci95")
    c = n["chosen_on_other_folds"]
    return (f"{d['diff']:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")
            + f" ({c['variant']}, w {c['genre_weight']:g}, {c['confidence']})")
