"""Step 1e of the ``fused_trunks`` model (:mod:`core.training.fused_trunks_train`):
whether a zero-shot genre prior from the served trunks' genre-named tags
(:mod:`core.models.tag_prior`) follows the head, from which trunks, and how
strongly.

Candidates: the head's trunk set of steps 1–1d alone, or with MTT_vgg,
MTT_musicnn or both added (their tags name Classical, which MSD's do not;
the head is refitted on every served trunk's vector at the same ``C``,
form and copies), each without the prior and with it at every tag scale
(:data:`SCALES`) × form (:data:`FORMS`) × ``β`` (:data:`BETAS`). Each is
scored leave-one-source-out (the prior's statistics from the fold's
training tracks) and on the in-source val split (the head fitted on the
train split of every source, as it ships).

Rule: the most LOSO mean accuracy, then mean macro AUC, among the candidates
whose in-source val accuracy and macro AUC are both at least those of the
step 1d head (no prior, no added trunk); ties go to fewer trunks, then to
the smaller ``β``. The guard is there because LOSO cannot price a genre that
no tag names: each such genre here (Latin, Reggae) occurs in one source
only, so a fold that holds it out has no training track of it and misses it
with or without the prior, while the in-source val split holds it.
``benchmarks.tag_prior_probe`` gives the same grid on the step 1d head's
own trunks with the per-genre recall.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.special import log_softmax, softmax

from core.models.tag_prior import genre_tag_matrix, prior_log_probs, score_stats
from core.training.loso import Fold
from core.training.loso_data import SourceData
from core.training.loso_eval import FoldLogits, fit_head, linear_fold_logits, loso_report
from core.training.metrics import macro_auc

SCALES = {"logit": True, "prob": False}
FORMS = {"add": False, "grouped": True}
BETAS = (0.25, 0.5, 1.0, 2.0, 4.0)
Log = Callable[[str], None]


@dataclass(frozen=True)
class PriorSetting:
    """The served trunks and the prior after the head (``beta`` 0: none)."""

    trunks: tuple[str, ...]
    beta: float = 0.0
    logit: bool = True
    grouped: bool = True

    def label(self) -> str:
        prior = (f"{'logit' if self.logit else 'prob'}, {'grouped' if self.grouped else 'add'}, β={self.beta:g}"
                 if self.beta else "no prior")
        return f"{'+'.join(self.trunks)}, {prior}"

    def to_dict(self) -> dict:
        return asdict(self) | {"trunks": list(self.trunks)}

    @classmethod
    def from_dict(cls, d: dict) -> "PriorSetting":
        return cls(tuple(d["trunks"]), float(d["beta"]), bool(d["logit"]), bool(d["grouped"]))


def served_sets(data: SourceData, head_trunks: Sequence[str]) -> list[tuple[str, ...]]:
    """The head's trunks, then with each other trunk that has per-patch
    features in ``data`` added, then with all of them (registry order)."""
    from core.models.trunks import TRUNKS

    others = [n for n in TRUNKS if n not in head_trunks and n in data.features and n in data.patches]
    extras = [()] + [(o,) for o in others] + ([tuple(others)] if len(others) > 1 else [])
    return [tuple(n for n in TRUNKS if n in head_trunks or n in e) for e in extras]


def settings(trunks: tuple[str, ...], betas: Sequence[float] = BETAS) -> list[PriorSetting]:
    """No prior, then every scale × form × β of ``betas``, on ``trunks``."""
    return [PriorSetting(trunks)] + [PriorSetting(trunks, b, lg, gr) for lg in SCALES.values()
                                     for gr in FORMS.values() for b in betas]


def keeps_val(val: dict, guard: dict) -> bool:
    """The in-source guard: ``val``'s accuracy and macro AUC both ≥ ``guard``'s."""
    return val["accuracy"] >= guard["accuracy"] and val["macro_auc"] >= guard["macro_auc"]


def with_setting(logits: np.ndarray, x: np.ndarray, train_x: np.ndarray | None, labels: Sequence[str],
                 s: PriorSetting, stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Head logits ``(n, G)`` on bank vectors ``x`` ``(n, F)`` → log-probabilities
    with ``s``'s prior, its statistics from ``train_x`` ``(m, F)`` (or ``stats``,
    :func:`~core.models.tag_prior.score_stats` of them, when already computed)."""
    if not s.beta:
        return log_softmax(logits, 1)
    m = genre_tag_matrix(s.trunks, labels)
    mean, std = stats if stats is not None else score_stats(train_x, m, s.logit)
    return prior_log_probs(logits, x, m, mean, std, s.beta, s.logit, s.grouped)


def choose_prior(data: SourceData, folds: Sequence[Fold], head_trunks: Sequence[str], c: float, copies: int,
                 form: str, base: Sequence[FoldLogits], log: Log = print) -> dict:
    """``{"chosen": PriorSetting.to_dict(), "rule", "rows": [{…setting, "mean", "folds", "val"}]}`` and
    ``"_fold_logits"``, the chosen row's LOSO log-probabilities (not for the record).
    ``base``: step 1d's fold logits (the head on ``head_trunks``)."""
    rule = ("most LOSO mean accuracy, then mean macro AUC, among the candidates whose in-source val accuracy and "
            "macro AUC are both ≥ the step 1d head's; ties: fewer trunks, then smaller β")
    tr = np.flatnonzero([t.split == "train" for t in data.tracks])
    va = np.flatnonzero([t.split == "val" for t in data.tracks])
    rows, logits = [], {}
    for trunks in served_sets(data, head_trunks):
        fold_base = base if list(trunks) == list(head_trunks) else linear_fold_logits(
            data, folds, trunks, c, copies=copies, head=form)
        x = data.stacked(trunks)
        val_logits = fit_head(data, trunks, tr, c, copies, form).logits(x[va])
        m = genre_tag_matrix(trunks, data.labels)
        # The prior's statistics per training set and scale, once (not once per setting).
        stats = {(k, lg): score_stats(x[idx], m, lg) for lg in SCALES.values()
                 for k, idx in [*((f.held_out, f.train) for f in folds), ("val", tr)]}
        for s in settings(trunks):
            fl = [FoldLogits(b.held_out, with_setting(b.logits, x[f.val], None, data.labels, s,
                                                      stats[f.held_out, s.logit]), b.y, b.seen)
                  for f, b in zip(folds, fold_base)]
            lp, y = with_setting(val_logits, x[va], None, data.labels, s, stats["val", s.logit]), data.y[va]
            rep = loso_report(fl)
            rows.append(s.to_dict() | {"mean": rep["mean"],
                                       "folds": {k: v["calibrated"] for k, v in rep["folds"].items()},
                                       "val": {"n": int(len(va)), "accuracy": float((lp.argmax(1) == y).mean()),
                                               "macro_auc": macro_auc(y, softmax(lp, 1))}})
            logits[s] = fl
        log(f"LOSO fused_trunks tag prior on {'+'.join(trunks)}: best accuracy "
            f"{max(r['mean']['accuracy'] for r in rows if tuple(r['trunks']) == trunks):.3f}")
    guard = rows[0]["val"]          # the step 1d head, always a candidate
    ok = rows[:1] + [r for r in rows[1:] if keeps_val(r["val"], guard)]
    best = max(ok, key=lambda r: (r["mean"]["accuracy"], r["mean"]["macro_auc"], -len(r["trunks"]), -r["beta"]))
    chosen = PriorSetting.from_dict(best)
    m = best["mean"]
    log(f"fused_trunks tag prior: {chosen.label()}; LOSO accuracy {m['accuracy']:.3f}, AUC {m['macro_auc']:.3f}; "
        f"in-source val {best['val']['accuracy']:.3f} / {best['val']['macro_auc']:.3f} "
        f"(step 1d head {guard['accuracy']:.3f} / {guard['macro_auc']:.3f})")
    return {"chosen": chosen.to_dict(), "rule": rule, "rows": rows, "_fold_logits": logits[chosen]}


__all__ = ["BETAS", "FORMS", "SCALES", "PriorSetting", "choose_prior", "keeps_val", "served_sets", "settings",
           "with_setting"]
