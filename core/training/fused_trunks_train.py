"""The ``fused_trunks`` model's choices, made leave-one-source-out, and its artifact.

Part of ``python -m core loso`` (:func:`core.training.fused_train.run_loso`)
when every trunk's pooled features are at hand (``--trunk-features DIR``,
written by ``python -m core trunk-features``: the served bank's vectors, the
same numbers :class:`~core.models.fused_trunks.FusedTrunks` sees at inference).

1. Trunk set × ``C``: the sets of :func:`bank_sets` × :data:`TRUNK_CS`, on
   LOSO mean accuracy, then mean macro AUC, among the sets that hold a
   musicnn trunk (:data:`MUSICNN`; the VGGs alone are reported) — the fused
   model's rule (:func:`~core.training.loso_eval.choose_linear`, each row
   cached by its inputs under the cache root).
1b. Patches per clip: with that set and ``C``, the clip features pooled over
   fewer of its ten 3 s patches (:data:`PATCH_CHOICES`, spread evenly by
   :func:`~core.models.trunks.patch_choice`); the fewest patches with no loss on
   LOSO — mean accuracy and mean macro AUC both at least those of all ten
   (:data:`PATCH_ACC_TOL`, :data:`PATCH_AUC_TOL`) — ship (the trunks are most
   of the model's CPU time, and each patch costs the same). Needs the per-patch
   outputs that ``trunk-features`` writes; without them, all patches.
1c. Augmentation: 0, 1 or 2 augmented copies of every training track as extra
   rows (:data:`AUGMENT_CHOICES`, as many as ``trunk-features --augment-copies``
   wrote; :meth:`~core.training.loso_data.SourceData.augmented_rows`: the
   waveform chain toward other sources of :mod:`core.audio.augment`), each with
   ``C`` chosen again over :data:`TRUNK_CS` (more rows weaken a given ``C``);
   the most LOSO mean accuracy, then mean macro AUC, ships — ties go to fewer
   copies. A held-out source's copies are never a fold's training rows.
1d. The head's form (:data:`~core.training.loso_eval.HEADS`): the clip-pooled
   head of steps 1–1c against a per-patch head (every kept 3 s patch a row,
   its clip's logits the mean of its patches'; served as a head on the patch
   means of the same vector, :func:`~core.training.linear_head.fit_patch_head`)
   at each ``C`` of :data:`PATCH_HEAD_CS`, both with the chosen copies; the
   most LOSO mean accuracy, then mean macro AUC, ships — ties go to the
   clip-pooled head. Needs the per-patch outputs; without them, clip-pooled.
1e. A zero-shot genre prior from the served trunks' genre-named tags after
   the head, and which trunks serve it (:mod:`core.training.tag_prior_choice`:
   the most LOSO mean accuracy among the candidates that keep the in-source
   val accuracy and macro AUC of step 1d's head). The head is refitted on
   every served trunk at step 1d's ``C`` and form.
2. Calibration: temperature, per-genre bias, vector scaling
   (:mod:`core.training.loso_calibration`), each cross-fitted per fold; the
   one with the lowest mean held-out ECE ships, fitted on every fold's
   held-out logits (after the prior, when there is one) and folded into the
   head, or kept after the prior (:class:`~core.models.tag_prior.TagPrior`).
3. The head is fitted on the train split of every source, with the chosen
   copies of those tracks (the in-source val split stays unseen, for the record).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from core.training.loso import Fold
from core.training.loso_calibration import CalibrationMap, compare_methods, fold_into_head
from core.training.loso_data import SourceData
from core.training.loso_eval import (
    HEAD_NAMES,
    PATCH_HEAD_CS,
    FoldLogits,
    choose_linear,
    fit_head,
    linear_fold_logits,
    loso_report,
    per_genre_recall,
)
from core.training.tag_prior_choice import PriorSetting, choose_prior

NAME = "fused_trunks"
ANCHOR = "msd_musicnn"
# The C grid: the fused model's low end and one step below it. The fused grid's upper half
# (0.003–0.1) lost accuracy on every feature set it was run on (loso.json) and on MSD_vgg and
# MSD_musicnn here (0.337 → 0.277 and 0.364 at C = 0.003), and each of its rows costs minutes
# of logistic regressions on 2 CPUs; the best C sat at the grid's lower edge (0.0001).
TRUNK_CS = (0.00003, 0.0001, 0.0003, 0.001)
# Pons & Serra's musically motivated trunks: every shipped trunk set holds at least one.
MUSICNN = ("msd_musicnn", "mtt_musicnn")
Log = Callable[[str], None]
# Patches per clip tried in step 1b (None: all), and how much LOSO mean accuracy / macro AUC
# a cheaper choice may give up: none (issue 16: "fewer patches where val shows no loss"). A first
# run with 0.01 / 0.005 chose 2 patches at 0.009 accuracy and 0.005 AUC below all ten.
PATCH_CHOICES = (None, 5, 3, 2, 1)
PATCH_ACC_TOL = 0.0
PATCH_AUC_TOL = 0.0
# Augmented copies per training track tried in step 1c (those beyond what the features hold are skipped).
AUGMENT_CHOICES = (0, 1, 2)


def bank_sets(available: Sequence[str], anchor: str = ANCHOR) -> list[list[str]]:
    """Trunk sets tried (registry order within a set, the served vector's
    layout): ``anchor`` alone, every other trunk alone, ``anchor`` with each
    other trunk, and all of them — the shape of the ``fused`` model's old
    feature grid, around the trunk that the issue measured best alone."""
    from core.models.trunks import TRUNKS

    names = [n for n in TRUNKS if n in available]
    if anchor not in names:
        return [[n] for n in names]
    others = [n for n in names if n != anchor]
    order = lambda ns: [n for n in TRUNKS if n in ns]  # noqa: E731
    sets = [[anchor]] + [[n] for n in others] + [order([anchor, n]) for n in others]
    if len(others) > 1:
        sets.append(names)
    return sets


def train_fused_trunks(data: SourceData, trunks: Sequence[str], c: float, cmap: CalibrationMap | None = None,
                       patches: int | None = None, copies: int = 0, head_form: str = "clip",
                       prior: PriorSetting | None = None):
    """The shipped :class:`~core.models.fused_trunks.FusedTrunks`: head (of form
    ``head_form``, :func:`~core.training.loso_eval.fit_head`) fitted on the
    train split of every source (features pooled over ``patches`` per clip,
    :meth:`~core.training.loso_data.SourceData.with_patches`) and ``copies``
    augmented copies of those tracks, ``cmap`` folded into it (temperature 1);
    with ``prior`` (β > 0; its ``trunks`` are ``trunks``), the tag prior after
    the head, its statistics from those train tracks, and ``cmap`` after it."""
    from core.models.fused_trunks import FusedTrunks
    from core.models.tag_prior import genre_tag_matrix, score_stats

    tr = np.flatnonzero([t.split == "train" for t in data.tracks])
    head = fit_head(data, trunks, tr, c, copies, head_form)
    model = FusedTrunks(data.labels, trunks=trunks)
    model.set_patches(patches)
    if prior is not None and prior.beta:
        model.set_head(head.mean, head.scale, head.weight, head.bias, 1.0)
        mean, std = score_stats(data.stacked(trunks)[tr], genre_tag_matrix(trunks, data.labels), prior.logit)
        g = len(data.labels)
        scale, shift = (np.ones(g), np.zeros(g)) if cmap is None else (cmap.scale, cmap.shift)
        model.set_prior(prior.beta, prior.logit, prior.grouped, mean, std, scale, shift)
        return model.eval(), head
    weight, bias = (head.weight, head.bias) if cmap is None else fold_into_head(head.weight, head.bias, cmap)
    model.set_head(head.mean, head.scale, weight, bias, 1.0)
    return model.eval(), head


def served_probs(model, x: np.ndarray) -> np.ndarray:
    """``model``'s (a :class:`~core.models.fused_trunks.FusedTrunks`) genre
    probabilities ``(n, G)`` for bank vectors ``x`` ``(n, F)``: the served arithmetic."""
    import torch

    with torch.inference_mode():
        logits = model.head_outputs(torch.as_tensor(np.asarray(x, np.float32)))[1]
    return torch.softmax(logits.double(), 1).numpy()


def _scored(fold_logits: Sequence[FoldLogits], label: str, log: Log, **fields) -> dict:
    """A choice's row: ``fields``, then the LOSO mean and per-fold (cross-fold
    calibrated) figures of ``fold_logits``; logged as one line."""
    rep = loso_report(fold_logits)
    m = rep["mean"]
    log(f"LOSO {NAME} {label}: accuracy {m['accuracy']:.3f} AUC {m['macro_auc']:.3f} ECE {m['ece']:.3f}")
    return {**fields, "mean": m, "folds": {s: v["calibrated"] for s, v in rep["folds"].items()}}


def choose_patches(data: SourceData, folds: Sequence[Fold], trunks: Sequence[str], c: float,
                   log: Log = print) -> dict:
    """Step 1b: ``{"chosen": k or None, "rule": …, "rows": [{"patches", "mean", "folds"}]}``
    (and ``"_fold_logits"``, the chosen row's :class:`FoldLogits`, not for the record)."""
    rule = ("fewest patches with no LOSO loss: mean accuracy and mean macro AUC ≥ those of all patches"
            if PATCH_ACC_TOL == PATCH_AUC_TOL == 0 else
            f"fewest patches with LOSO mean accuracy ≥ all − {PATCH_ACC_TOL} and mean macro AUC ≥ "
            f"all − {PATCH_AUC_TOL}")
    if any(t not in data.patches for t in trunks):
        return {"chosen": None, "rule": rule, "rows": [], "note": "no per-patch features: all patches"}
    rows, logits = [], {}
    for keep in PATCH_CHOICES:
        logits[keep] = linear_fold_logits(data.with_patches(keep), folds, trunks, c)
        rows.append(_scored(logits[keep], f"patches {keep or 'all'}", log, patches=keep))
    ref = rows[0]["mean"]
    ok = [r for r in rows if r["mean"]["accuracy"] >= ref["accuracy"] - PATCH_ACC_TOL
          and r["mean"]["macro_auc"] >= ref["macro_auc"] - PATCH_AUC_TOL]
    best = min(ok, key=lambda r: r["patches"] or float("inf"))
    return {"chosen": best["patches"], "rule": rule, "rows": rows, "_fold_logits": logits[best["patches"]]}


def choose_augment(data: SourceData, folds: Sequence[Fold], trunks: Sequence[str], c: float,
                   log: Log = print, base: Sequence[FoldLogits] | None = None) -> dict:
    """Step 1c: ``{"chosen": copies, "C": …, "rule": …, "rows": [{"copies", "C", "mean", "folds"}]}``
    and ``"_fold_logits"``, the chosen row's (not for the record). ``base``:
    the fold logits without copies at ``c``, when step 1b has them. Without
    augmented copies: ``{"chosen": 0, "C": c, "rows": [], "note": …}``."""
    rule = (f"most LOSO mean accuracy, then mean macro AUC, over copies × C ({', '.join(f'{x:g}' for x in TRUNK_CS)}); "
            "ties: fewer copies")
    ks = [k for k in AUGMENT_CHOICES if k <= data.augmented_copies(trunks)]
    logits = {(0, c): base if base is not None else linear_fold_logits(data, folds, trunks, c)}
    if ks == [0]:
        return {"chosen": 0, "C": c, "rule": rule, "rows": [], "_fold_logits": logits[0, c],
                "note": "no augmented copies of these trunks' features (trunk-features --augment-copies)"}
    rows = []
    for k in ks:
        for ck in ((c,) if k == 0 else TRUNK_CS):
            if (k, ck) not in logits:
                logits[k, ck] = linear_fold_logits(data, folds, trunks, ck, copies=k)
            rows.append(_scored(logits[k, ck], f"augmented copies {k}, C={ck:g}", log, copies=k, C=ck))
    best = max(rows, key=lambda r: (r["mean"]["accuracy"], r["mean"]["macro_auc"], -r["copies"]))
    return {"chosen": best["copies"], "C": best["C"], "rule": rule, "rows": rows,
            "_fold_logits": logits[best["copies"], best["C"]]}


def choose_head(data: SourceData, folds: Sequence[Fold], trunks: Sequence[str], c: float, copies: int,
                base: Sequence[FoldLogits], log: Log = print) -> dict:
    """Step 1d: ``{"chosen": form, "C": …, "rule": …, "rows": [{"head", "C", "mean", "folds"}]}``,
    ``"_fold_logits"``, the chosen row's, and ``"_all_fold_logits"``, every
    row's by ``(form, C)`` (neither for the record). ``base``: the clip-pooled
    head's fold logits at ``c`` (step 1c's choice)."""
    rule = (f"most LOSO mean accuracy, then mean macro AUC: the clip-pooled head (C={c:g}) against a per-patch "
            f"head at C {', '.join(f'{x:g}' for x in PATCH_HEAD_CS)}; ties: clip-pooled")
    logits = {("clip", c): base}
    if any(t not in data.patches for t in trunks):
        return {"chosen": "clip", "C": c, "rule": rule, "rows": [], "_fold_logits": base,
                "_all_fold_logits": logits, "note": "no per-patch features: clip-pooled"}
    for pc in PATCH_HEAD_CS:
        logits["patch", pc] = linear_fold_logits(data, folds, trunks, pc, copies=copies, head="patch")
    rows = [_scored(lg, f"{HEAD_NAMES[h]}, C={ck:g}", log, head=h, C=ck) for (h, ck), lg in logits.items()]
    best = max(rows, key=lambda r: (r["mean"]["accuracy"], r["mean"]["macro_auc"], r["head"] == "clip"))
    return {"chosen": best["head"], "C": best["C"], "rule": rule, "rows": rows,
            "_fold_logits": logits[best["head"], best["C"]], "_all_fold_logits": logits}


def fused_trunks_loso(data: SourceData, folds: Sequence[Fold], cs: Sequence[float],
                      cache_dir: str | Path | None, log: Log = print, variants: bool = False,
                      cnn_msd: Sequence[FoldLogits] | None = None) -> tuple[dict, object] | None:
    """Steps 1–3 of the module docstring. Returns ``(record, model)``, or
    ``None`` when ``data`` lacks the bank's features. ``variants``: also the
    record's ``"head_variants"`` (:mod:`core.training.head_variants`; with
    ``cnn_msd``'s fold logits, its ensemble rows too)."""
    sets = bank_sets(list(data.features))
    if not sets:
        return None
    choice = choose_linear(data, folds, sets, cs, log=log, cache_dir=cache_dir, name=NAME)
    # The model exists to serve the musicnn trunks: MSD_vgg alone is the fused model's ground and is
    # reported, not shipped here.
    eligible = [r for r in choice["grid"] if any(n in MUSICNN for n in r["features"])]
    best = max(eligible, key=lambda r: (r["mean"]["accuracy"], r["mean"]["macro_auc"]))
    choice = {**choice, "best_any": choice["best"], "best": best,
              "eligible": f"trunk sets with a musicnn trunk ({', '.join(MUSICNN)})"}
    trunks, c = best["features"], best["C"]
    patch_choice = choose_patches(data, folds, trunks, c, log)
    keep = patch_choice["chosen"]
    data = data.with_patches(keep)
    aug_choice = choose_augment(data, folds, trunks, c, log, base=patch_choice.pop("_fold_logits", None))
    copies, c = aug_choice["chosen"], aug_choice["C"]
    head_choice = choose_head(data, folds, trunks, c, copies, aug_choice.pop("_fold_logits"), log)
    form, c = head_choice["chosen"], head_choice["C"]
    fold_logits, step1d = head_choice.pop("_fold_logits"), head_choice.pop("_all_fold_logits")
    record, model = finish_fused_trunks(data, folds, trunks, c, keep, copies, form, fold_logits, log)
    record.update(patch_choice=patch_choice, augment_choice=aug_choice, head_choice=head_choice,
                  feature_choice={k: v for k, v in choice.items() if k != "grid"} | {"grid": choice["grid"]})
    if variants:
        from core.training.head_variants import head_variants
        record["head_variants"] = head_variants(data, folds, trunks, c, copies, fold_logits, cnn_msd, log, form,
                                                 step1d)
    return record, model


def finish_fused_trunks(data: SourceData, folds: Sequence[Fold], trunks: Sequence[str], c: float,
                        keep: int | None, copies: int, form: str, fold_logits: Sequence[FoldLogits],
                        log: Log = print) -> tuple[dict, object]:
    """Steps 1e–3 after steps 1–1d chose the head's ``trunks``, ``c``, patches
    ``keep`` (``data`` already pooled over them), ``copies`` and ``form``
    (``fold_logits``: that head's LOSO logits) → (the record's choices and
    figures, the model)."""
    from core.training.calibration import expected_calibration_error
    from core.training.loso_calibration import CalibrationMap as Map
    from core.training.metrics import macro_auc

    prior_choice = choose_prior(data, folds, trunks, c, copies, form, fold_logits, log)
    fold_logits, prior = prior_choice.pop("_fold_logits"), PriorSetting.from_dict(prior_choice["chosen"])
    served = list(prior.trunks)
    rep = loso_report(fold_logits)
    calib = compare_methods(fold_logits)
    method = calib["best"]
    pooled = calib["methods"][method]["pooled"]
    cmap = Map(method, np.asarray(pooled["scale"]), np.asarray(pooled["shift"]))
    # The per-fold table with the chosen method's cross-fitted map (accuracy and AUC do not move for a
    # temperature; for bias / vector maps the argmax may).
    for f in fold_logits:
        cal = calib["methods"][method]["folds"][f.held_out]
        rep["folds"][f.held_out]["calibrated"].update(method=method, **cal)
    for k in ("accuracy", "macro_auc", "ece", "log_loss", "ece_seen"):
        rep["mean"][k] = float(np.mean([rep["folds"][s]["calibrated"][k] for s in rep["folds"]]))
    model, _ = train_fused_trunks(data, served, c, cmap, patches=keep, copies=copies, head_form=form, prior=prior)
    va = np.array([t.split == "val" for t in data.tracks])
    p_val = served_probs(model, data.stacked(served)[va])
    record = {"features": served, "C": c, "patches": keep, "augment": copies, "head": form,
              "head_features": list(trunks), "prior": prior.to_dict(), "prior_choice": prior_choice,
              **rep, "calibration": calib,
              "in_source_val": {"n": int(va.sum()), "accuracy": float((p_val.argmax(1) == data.y[va]).mean()),
                                "macro_auc": macro_auc(data.y[va], p_val),
                                "ece": expected_calibration_error(p_val, data.y[va]),
                                "per_genre_recall": per_genre_recall(data.y[va], p_val.argmax(1), data.labels)}}
    m = rep["mean"]
    log(f"{NAME}: {'+'.join(served)}, C={c:g}, patches {keep or 'all'}, augmented copies {copies}, "
        f"{HEAD_NAMES[form]}, {prior.label()}, LOSO mean "
        f"accuracy {m['accuracy']:.3f}, AUC {m['macro_auc']:.3f}, ECE {m['ece']:.3f} ({method}); in-source val "
        f"accuracy {record['in_source_val']['accuracy']:.3f}")
    return record, model


def refit_from_record(data: SourceData, folds: Sequence[Fold], old: dict, log: Log = print) -> tuple[dict, object]:
    """Steps 1e–3 again on steps 1–1d's choices as ``old`` (a ``loso.json``
    ``fused_trunks`` record) holds them; their rows (and ``head_variants``)
    are kept as recorded → (the new record, the model)."""
    trunks = old.get("head_features") or old["features"]
    data = data.with_patches(old["patches"])
    fold_logits = linear_fold_logits(data, folds, trunks, old["C"], copies=old["augment"], head=old["head"])
    record, model = finish_fused_trunks(data, folds, trunks, old["C"], old["patches"], old["augment"], old["head"],
                                        fold_logits, log)
    return {k: v for k, v in old.items() if k not in record} | record, model


__all__ = ["AUGMENT_CHOICES", "NAME", "PATCH_CHOICES", "PATCH_HEAD_CS", "bank_sets", "choose_augment", "choose_head",
           "choose_patches", "finish_fused_trunks", "fused_trunks_loso", "refit_from_record", "served_probs",
           "train_fused_trunks"]
