"""Where the shipped ``fused_trunks`` head stands among other heads, under
leave-one-source-out (``python -m core loso --head-variants``; ``loso.json``
``"fused_trunks"`` → ``"head_variants"``). Reported, not chosen from: the
shipped head is chosen by :mod:`core.training.fused_trunks_train`'s rule.

On the shipped trunk set and patches, every fold scored as there (the
shipped head and the learning curve also with the shipped augmented copies;
the other heads on each fold's own tracks only):

- ``per-patch logistic``: one row per 3 s patch, the clip's logits the mean
  over its patches (by linearity, a head on the patch-mean features;
  :func:`~core.training.loso_eval.fit_head`'s ``patch`` form at step 1d's
  :data:`~core.training.loso_eval.PATCH_HEAD_CS`, step 1d's own fold logits
  reused where they are the same fit (no augmented copies); the shipped head's
  own setting is not repeated);
- ``clip-pooled logistic``: where the shipped head is per-patch, the
  clip-pooled head step 1d weighed it against, for its interval;
- ``ridge`` and ``shrinkage LDA``: other linear heads on the same features;
- ``+ cnn_msd``: the shipped head's log-probabilities averaged with
  ``cnn_msd``'s (retrained per fold), each at its pooled LOSO temperature;
- ``learning curve``: the shipped head on a random share of each fold's
  training tracks (five draws), which also shows how far LOSO accuracy moves
  with the draw of tracks alone.

Each row: the mean over folds as in ``loso.json``, and its accuracy minus the
shipped head's over all held-out tracks with a paired bootstrap interval.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
from scipy.special import log_softmax

from core.training.linear_head import ABSENT_BIAS, standardiser
from core.training.loso import Fold
from core.training.loso_data import SourceData
from core.training.loso_eval import (
    HEAD_NAMES,
    PATCH_HEAD_CS,
    FoldLogits,
    fit_head,
    fold_accuracy,
    linear_fold_logits,
    loso_report,
    seen_genres,
)
from core.training.metrics import mean_diff_ci

Log = Callable[[str], None]
RIDGE_ALPHAS = (1000.0, 10000.0, 100000.0)
LDA_SHRINKAGE = (0.5, 0.9)
ENSEMBLE_WEIGHTS = (0.5, 0.8)       # the shipped head's share
SHARES = (0.7, 0.85)
DRAWS = 5


def _sklearn_logits(make, data: SourceData, f: Fold, x: np.ndarray) -> np.ndarray:
    """A scikit-learn linear classifier's decision values on standardised features, ``(n_val, G)``."""
    xt, yt = x[f.train], data.y[f.train]
    mean, scale = standardiser(xt)
    clf = make().fit((xt - mean) / scale, yt)
    out = np.full((len(f.val), len(data.labels)), ABSENT_BIAS)
    out[:, clf.classes_] = clf.decision_function((x[f.val] - mean) / scale)
    return out


def _fold(data: SourceData, f: Fold, logits: np.ndarray, train: np.ndarray | None = None) -> FoldLogits:
    return FoldLogits(f.held_out, logits, data.y[f.val], seen_genres(data.y[f.train if train is None else train],
                                                                     data.y[f.val]))


def _share(data: SourceData, folds: Sequence[Fold], trunks: Sequence[str], c: float, copies: int,
           share: float, seed: int, head: str) -> list[FoldLogits]:
    rng, x, out = np.random.default_rng(seed), data.stacked(trunks), []
    for f in folds:
        tr = np.sort(rng.choice(f.train, int(round(share * len(f.train))), replace=False))
        out.append(_fold(data, f, fit_head(data, trunks, tr, c, copies, head).logits(x[f.val]), tr))
    return out


def _delta(ref: Sequence[FoldLogits], other: Sequence[FoldLogits], reps: int = 2000, seed: int = 0) -> dict:
    """Accuracy of ``other`` minus ``ref`` over every held-out track (argmax is
    temperature-free), with a paired bootstrap 95 % interval."""
    right = lambda fs: np.concatenate([f.logits.argmax(1) == f.y for f in fs]).astype(float)  # noqa: E731
    delta, ci = mean_diff_ci(right(other) - right(ref), reps, seed)
    return {"delta_accuracy": delta, "ci95": ci}


def head_variants(data: SourceData, folds: Sequence[Fold], trunks: Sequence[str], c: float, copies: int,
                  ref: Sequence[FoldLogits], cnn_msd: Sequence[FoldLogits] | None = None,
                  log: Log = print, head: str = "clip",
                  step1d: Mapping[tuple[str, float], Sequence[FoldLogits]] | None = None) -> dict:
    """The rows of the module docstring; ``ref``: the shipped head's fold logits
    (``head``: its form, :data:`~core.training.loso_eval.HEADS`); ``step1d``:
    the fold logits step 1d scored, by ``(form, C)``, with ``copies``."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import RidgeClassifier

    x = data.stacked(trunks)
    rows = []

    def add(name: str, setting: str, fold_logits: Sequence[FoldLogits]) -> dict:
        rep = loso_report(fold_logits)
        rows.append({"head": name, "setting": setting, "mean": rep["mean"],
                     "fold_accuracy": fold_accuracy(rep),
                     **_delta(ref, fold_logits)})
        m = rep["mean"]
        log(f"LOSO head variant {name} ({setting}): accuracy {m['accuracy']:.3f} AUC {m['macro_auc']:.3f} "
            f"ECE {m['ece']:.3f}")
        return rep

    t_ref = add(f"shipped: {HEAD_NAMES[head]}", f"C={c:g}, {copies} copies", ref)["pooled_temperature"]
    step1d = step1d or {}
    for (form, ck), fold_logits in step1d.items():
        if form == "clip" and (form, ck) != (head, c):
            add(HEAD_NAMES["clip"], f"C={ck:g}", fold_logits)
    for pc in PATCH_HEAD_CS:
        if (head, pc) == ("patch", c) and not copies:        # the shipped head itself
            continue
        done = None if copies else step1d.get(("patch", pc))   # step 1d's fit, the same one without copies
        add("per-patch logistic", f"C={pc:g}",
            done if done is not None else linear_fold_logits(data, folds, trunks, pc, head="patch"))
    for a in RIDGE_ALPHAS:
        add("ridge", f"alpha={a:g}", [_fold(data, f, _sklearn_logits(
            lambda a=a: RidgeClassifier(alpha=a, class_weight="balanced"), data, f, x)) for f in folds])
    for s in LDA_SHRINKAGE:
        add("shrinkage LDA", f"shrinkage={s:g}", [_fold(data, f, _sklearn_logits(
            lambda s=s: LinearDiscriminantAnalysis(solver="lsqr", shrinkage=s), data, f, x)) for f in folds])
    if cnn_msd is not None:
        t_cnn = loso_report(cnn_msd)["pooled_temperature"]
        for w in ENSEMBLE_WEIGHTS:
            add("+ cnn_msd", f"w={w:g}", [FoldLogits(a.held_out, w * log_softmax(a.logits / t_ref, axis=1)
                                                     + (1 - w) * log_softmax(b.logits / t_cnn, axis=1), a.y, a.seen)
                                          for a, b in zip(ref, cnn_msd)])
    curve = []
    for share in SHARES:
        accs = [loso_report(_share(data, folds, trunks, c, copies, share, seed, head))["mean"]["accuracy"]
                for seed in range(DRAWS)]
        curve.append({"share": share, "accuracy": accs})
        log(f"LOSO learning curve, {share:.0%} of each fold's tracks: accuracy {min(accs):.3f}–{max(accs):.3f}")
    return {"rows": rows, "learning_curve": curve,
            "note": "reported, not chosen from; delta_accuracy: minus the shipped head, over all held-out tracks"}


__all__ = ["head_variants"]
