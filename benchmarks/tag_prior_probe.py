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

import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.special import softmax

from benchmarks.self_train_probe import nested
from benchmarks.shift_probes import Probe, _row, open_probe, probe_arguments, write_report
from core.models.tag_prior import genre_tag_matrix
from core.training.loso_data import read_trunk_files
from core.training.loso_eval import FoldLogits, fit_head, per_genre_recall, seen_genres
from core.training.metrics import macro_auc
from core.training.tag_prior_choice import BETAS, PriorSetting, keeps_val, settings, with_setting

TAG_SETS = {"msd": ("msd_vgg", "msd_musicnn"), "msd+mtt_vgg": ("msd_vgg", "msd_musicnn", "mtt_vgg"),
            "msd+mtt_musicnn": ("msd_vgg", "msd_musicnn", "mtt_musicnn"),
            "msd+mtt": ("msd_vgg", "msd_musicnn", "mtt_musicnn", "mtt_vgg")}
Sets = dict[str, tuple[tuple[str, ...], np.ndarray]]     # tag set → (its trunks, their bank vectors (N, F))


def _settings(sets: Sets, betas: Sequence[float]) -> list[tuple[str, PriorSetting]]:
    return [(name, s) for name, (trunks, _) in sets.items() for s in settings(trunks, betas)[1:]]


def _key(name: str, s: PriorSetting) -> tuple:
    return name, "logit" if s.logit else "prob", "grouped" if s.grouped else "add", s.beta


def loso_runs(p: Probe, names: Sequence[str], c: float, sets: Sets,
              betas: Sequence[float] = BETAS) -> dict[tuple, list[FoldLogits]]:
    """``{("head",): the per-patch head alone, (set, scale, form, β): with the
    prior}`` → every fold's held-out logits."""
    data = p.source_data()
    x = data.stacked(names)
    out: dict[tuple, list[FoldLogits]] = {}
    for f in p.folds:
        seen = seen_genres(p.y[f.train], p.y[f.val])
        logits = fit_head(data, names, f.train, c, head="patch").logits(x[f.val])
        out.setdefault(("head",), []).append(FoldLogits(f.held_out, logits, p.y[f.val], seen))
        for name, s in _settings(sets, betas):
            v = sets[name][1]
            out.setdefault(_key(name, s), []).append(
                FoldLogits(f.held_out, with_setting(logits, v[f.val], v[f.train], p.labels, s), p.y[f.val], seen))
    return out


def in_source(p: Probe, names: Sequence[str], c: float, sets: Sets,
              betas: Sequence[float] = BETAS) -> dict[tuple, dict]:
    """The same keys as :func:`loso_runs` → ``{split: {"n", "accuracy", "macro_auc"}}``
    for the val and test splits, from the head fitted on the train split of every source."""
    data = p.source_data()
    x = data.stacked(names)
    tr = np.flatnonzero(p.split == "train")
    head = fit_head(data, names, tr, c, head="patch")
    out: dict[tuple, dict] = {}
    for split in ("val", "test"):
        rows = np.flatnonzero(p.split == split)
        logits, y = head.logits(x[rows]), p.y[rows]
        runs = [(("head",), logits)]
        for name, s in _settings(sets, betas):
            v = sets[name][1]
            runs.append((_key(name, s), with_setting(logits, v[rows], v[tr], p.labels, s)))
        for key, lp in runs:
            out.setdefault(key, {})[split] = {"n": int(len(rows)), "accuracy": float((lp.argmax(1) == y).mean()),
                                              "macro_auc": macro_auc(y, softmax(lp, 1))}
    return out


def guarded(rows: Sequence[dict], head: dict) -> dict | None:
    """The row of ``rows`` with the most LOSO mean accuracy (then macro AUC)
    among those whose in-source val accuracy and macro AUC are ≥ ``head``'s; None if none is."""
    ok = [r for r in rows if keeps_val(r["in_source"]["val"], head["val"])]
    return max(ok, key=lambda r: (r["mean"]["accuracy"], r["mean"]["macro_auc"]), default=None)


def available_sets(feature_dir: Path, track_ids: Sequence[str]) -> Sets:
    """The tag sets of :data:`TAG_SETS` whose trunks are all in ``feature_dir``, with their bank vectors."""
    out = {}
    for name, trunks in TAG_SETS.items():
        if all((feature_dir / f"{t}.npz").is_file() for t in trunks):
            features, _ = read_trunk_files(feature_dir, trunks, track_ids)
            out[name] = (trunks, np.concatenate([features[t] for t in trunks], 1).astype(np.float64))
    return out


def _recall(fl: Sequence[FoldLogits], labels: list[str]) -> dict[str, float]:
    y = np.concatenate([f.y for f in fl])
    return per_genre_recall(y, np.concatenate([f.logits.argmax(1) for f in fl]), labels)


def main(argv: list[str] | None = None) -> int:
    args = probe_arguments("python -m benchmarks.tag_prior_probe", __doc__).parse_args(argv)
    p, extra, heads = open_probe(args)
    names, c = extra["trunks"], heads["patch"]
    sets = available_sets(Path(args.features), [t.track_id for t in p.tracks])
    runs, fixed = loso_runs(p, names, c, sets), in_source(p, names, c, sets)
    ref = runs[("head",)]
    keys = ("tags", "scale", "form", "beta")
    rows = [_row(fl, ref, per_fold=True, **dict(zip(keys, k)))
            | {"recall": _recall(fl, p.labels), "in_source": fixed[k]} for k, fl in runs.items() if k != ("head",)]
    picked, chosen = nested(runs)
    report = {"trunks": names, "C": c,
              "covered": {k: [g for g, row in zip(p.labels, genre_tag_matrix(t, p.labels)) if row.any()]
                          for k, (t, _) in sets.items()},
              "reference": _row(ref, ref, per_fold=True) | {"recall": _recall(ref, p.labels),
                                                             "in_source": fixed[("head",)]},
              "rows": rows,
              "nested": _row(picked, ref, per_fold=True, chosen=[list(k) for k in chosen]) | {
                  "recall": _recall(picked, p.labels)},
              "guarded": guarded(rows, fixed[("head",)])}
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
