"""A zero-shot genre prior from the trunks' own tags, measured
leave-one-source-out and on the in-source splits (issue 16, item 3: genre
knowledge that the training sources did not shape).

    python -m benchmarks.tag_prior_probe [--features .cache/trunk_features] [--json out.json]

The MSD and MagnaTagATune taggers learnt their tags from sources that none
of the shared sets is, and some of their 50 tags are genre names ("jazz",
"hip-hop", "classical"). A genre is *covered* by a tag set when a tag's
name equals the genre's (case, spaces and hyphens ignored); its *tag
score* is the mean, over the trunks of the set that have such a tag, of
the clip's tag probability (``prob``) or of its logit (``logit``). Per
fold, each covered genre's score is z-scored on the training tracks
(``z``, 0 for an uncovered genre) and joins the shipped per-patch head's
log-probabilities ``h`` at weight β:

- ``add``: ``h + β·z``. A track whose covered genres score high takes mass
  from the uncovered genres too;
- ``grouped``: the uncovered genres keep the head's probabilities; the
  covered genres share the head's covered mass by ``softmax(h + β·z)``
  among themselves.

Tag sets: ``msd`` (MSD_vgg and MSD_musicnn: no tag names Classical),
``msd+mtt_vgg``, ``msd+mtt_musicnn`` and ``msd+mtt``. A set needs its
trunks' features in ``--features`` (``python -m core trunk-features
--trunks mtt_vgg,mtt_musicnn`` for the MTT ones); sets without them are
skipped.

Each row gives the LOSO mean, Δ accuracy against the head alone over every
held-out track (paired bootstrap), every genre's recall over the folds'
held-out tracks and, under ``in_source``, the head fitted on the train split
of every source with the prior z-scored on those tracks, scored on the val
and test splits. LOSO cannot price the uncovered genres: each occurs in
one source only, so when held out it has no training tracks and is missed
with or without the prior. The in-source val split holds them. So two
choices are reported:

- ``nested``: per fold, the row with the best mean accuracy on the other
  two folds, the head alone a candidate, scored on its own held-out source;
- ``guarded``: the row with the best LOSO mean accuracy among those whose
  in-source val accuracy and macro AUC are both at least the head's
  (the test split plays no part in either choice).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.special import log_softmax, logsumexp, softmax

from benchmarks.self_train_probe import nested
from benchmarks.shift_probes import Probe, _row, open_probe, probe_arguments, write_report
from core.models.trunks import TRUNKS
from core.training.loso_data import read_trunk_files
from core.training.loso_eval import FoldLogits, fit_head, per_genre_recall, seen_genres
from core.training.metrics import macro_auc

TAG_SETS = {"msd": ("msd_vgg", "msd_musicnn"), "msd+mtt_vgg": ("msd_vgg", "msd_musicnn", "mtt_vgg"),
            "msd+mtt_musicnn": ("msd_vgg", "msd_musicnn", "mtt_musicnn"),
            "msd+mtt": ("msd_vgg", "msd_musicnn", "mtt_vgg", "mtt_musicnn")}
SCALES = ("logit", "prob")
FORMS = ("add", "grouped")
BETAS = (0.25, 0.5, 1.0, 2.0, 4.0)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def tag_scores(tags: dict[str, np.ndarray], labels: Sequence[str], scale: str = "logit"
               ) -> tuple[np.ndarray, np.ndarray]:
    """``tags``: trunk name → clip tag probabilities ``(N, 50)`` → (``(N, G)``
    mean probability (``scale="prob"``) or logit of the tags named as each
    genre of ``labels``, 0 where none is; ``(G,)`` bool: the genre is covered)."""
    n = len(next(iter(tags.values())))
    total, count = np.zeros((n, len(labels))), np.zeros(len(labels))
    for name, probs in tags.items():
        q = np.clip(probs, 1e-4, 1 - 1e-4)
        score = np.log(q) - np.log1p(-q) if scale == "logit" else probs
        for j, tag in enumerate(TRUNKS[name].tags):
            for g, label in enumerate(labels):
                if _norm(tag) == _norm(label):
                    total[:, g] += score[:, j]
                    count[g] += 1
    return total / np.maximum(count, 1), count > 0


def prior(scores: np.ndarray, covered: np.ndarray, train: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``(len(rows), G)``: each covered genre's score z-scored on the ``train`` rows; 0 for uncovered genres."""
    mean, std = scores[train].mean(0), scores[train].std(0) + 1e-9
    return np.where(covered, (scores[rows] - mean) / std, 0.0)


def with_prior(log_prob: np.ndarray, z: np.ndarray, covered: np.ndarray, beta: float, form: str) -> np.ndarray:
    """Head log-probabilities ``(n, G)`` with the prior ``z`` ``(n, G)`` at
    ``beta``, in ``form`` (module docstring) → log-probabilities ``(n, G)``."""
    if form == "add":
        return log_softmax(log_prob + beta * z, 1)
    out = log_prob.copy()
    out[:, covered] = (logsumexp(log_prob[:, covered], 1, keepdims=True)
                       + log_softmax(log_prob[:, covered] + beta * z[:, covered], 1))
    return out


def _settings(sets: dict[str, tuple[np.ndarray, np.ndarray]], betas: Sequence[float]):
    return [(name, form, beta) for name in sets for form in FORMS for beta in betas]


def loso_runs(p: Probe, names: Sequence[str], c: float, sets: dict[str, tuple[np.ndarray, np.ndarray]],
              betas: Sequence[float] = BETAS) -> dict[tuple, list[FoldLogits]]:
    """``{("head",): the per-patch head alone, (set, form, β): with the prior}`` → every fold's held-out logits."""
    data = p.source_data()
    x = data.stacked(names)
    out: dict[tuple, list[FoldLogits]] = {}
    for f in p.folds:
        seen = seen_genres(p.y[f.train], p.y[f.val])
        base = log_softmax(fit_head(data, names, f.train, c, head="patch").logits(x[f.val]), 1)
        out.setdefault(("head",), []).append(FoldLogits(f.held_out, base, p.y[f.val], seen))
        for name, form, beta in _settings(sets, betas):
            scores, covered = sets[name]
            z = prior(scores, covered, f.train, f.val)
            out.setdefault((name, form, beta), []).append(
                FoldLogits(f.held_out, with_prior(base, z, covered, beta, form), p.y[f.val], seen))
    return out


def in_source(p: Probe, names: Sequence[str], c: float, sets: dict[str, tuple[np.ndarray, np.ndarray]],
              betas: Sequence[float] = BETAS) -> dict[tuple, dict]:
    """The same keys as :func:`loso_runs` → ``{split: {"accuracy", "macro_auc"}}``
    for the val and test splits, from the head fitted on the train split of every source."""
    data = p.source_data()
    x = data.stacked(names)
    tr = np.flatnonzero(p.split == "train")
    head = fit_head(data, names, tr, c, head="patch")
    out: dict[tuple, dict] = {}
    for split in ("val", "test"):
        rows = np.flatnonzero(p.split == split)
        base = log_softmax(head.logits(x[rows]), 1)
        for key in [("head",)] + _settings(sets, betas):
            if key == ("head",):
                lp = base
            else:
                scores, covered = sets[key[0]]
                lp = with_prior(base, prior(scores, covered, tr, rows), covered, key[2], key[1])
            y = p.y[rows]
            out.setdefault(key, {})[split] = {"n": int(len(rows)), "accuracy": float((lp.argmax(1) == y).mean()),
                                              "macro_auc": macro_auc(y, softmax(lp, 1))}
    return out


def guarded(rows: Sequence[dict], head: dict) -> dict | None:
    """The row of ``rows`` with the most LOSO mean accuracy (then macro AUC)
    among those whose in-source val accuracy and macro AUC are ≥ ``head``'s; None if none is."""
    ok = [r for r in rows if all(r["in_source"]["val"][k] >= head["val"][k] for k in ("accuracy", "macro_auc"))]
    return max(ok, key=lambda r: (r["mean"]["accuracy"], r["mean"]["macro_auc"]), default=None)


def available_sets(feature_dir: Path, track_ids: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """Tag set → trunk → clip tag probabilities ``(N, 50)``, for the sets whose trunks are all in ``feature_dir``."""
    out = {}
    for tag_set, trunks in TAG_SETS.items():
        if all((feature_dir / f"{t}.npz").is_file() for t in trunks):
            features, _ = read_trunk_files(feature_dir, trunks, track_ids)
            out[tag_set] = {t: features[t][:, -len(TRUNKS[t].tags):].astype(np.float64) for t in trunks}
    return out


def _recall(fl: Sequence[FoldLogits], labels: list[str]) -> dict[str, float]:
    y = np.concatenate([f.y for f in fl])
    return per_genre_recall(y, np.concatenate([f.logits.argmax(1) for f in fl]), labels)


def main(argv: list[str] | None = None) -> int:
    args = probe_arguments("python -m benchmarks.tag_prior_probe", __doc__).parse_args(argv)
    p, extra, heads = open_probe(args)
    names, c = extra["trunks"], heads["patch"]
    tags = available_sets(Path(args.features), [t.track_id for t in p.tracks])
    sets = {f"{k} {s}": tag_scores(v, p.labels, s) for k, v in tags.items() for s in SCALES}
    runs, fixed = loso_runs(p, names, c, sets), in_source(p, names, c, sets)
    ref = runs[("head",)]
    rows = [_row(fl, ref, per_fold=True, tags=k[0], form=k[1], beta=k[2])
            | {"recall": _recall(fl, p.labels), "in_source": fixed[k]} for k, fl in runs.items() if k != ("head",)]
    picked, keys = nested(runs)
    report = {"trunks": names, "C": c,
              "covered": {k: [g for g, cov in zip(p.labels, v[1]) if cov] for k, v in sets.items()},
              "reference": _row(ref, ref, per_fold=True) | {"recall": _recall(ref, p.labels),
                                                             "in_source": fixed[("head",)]},
              "rows": rows,
              "nested": _row(picked, ref, per_fold=True, chosen=[list(k) for k in keys]) | {
                  "recall": _recall(picked, p.labels)},
              "guarded": guarded(rows, fixed[("head",)])}
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
