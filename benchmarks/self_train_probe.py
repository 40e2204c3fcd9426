"""Self-training on the new source, measured leave-one-source-out (issue 16,
"training for source shift", without a label of the new source).

    python -m benchmarks.self_train_probe [--fracs 0.4 0.55 0.7 0.85 1.0] [--rounds 2] [--method exact|replay]
        [--json out.json]
    python -m benchmarks.self_train_probe --library-sizes 25 50 100 200 [--draws 5]

Per fold, the head fitted on two sources labels the third source's tracks.
The ``frac`` it is surest of within each predicted genre join the training
rows with that genre (the per-patch head takes every patch of them), and
the head is fitted again. Each further round relabels from the last head.
The loop and the refit are :mod:`core.training.self_train`'s.
This is transductive: it needs the new source's tracks, not their labels,
before it answers, as an app would have a user's library at index time.

Each head form of ``loso.json`` (the clip-pooled head of step 1c and the
shipped per-patch head) at its C, for every ``frac`` and round. A row gives
the LOSO mean and Δ accuracy over the 646 held-out tracks against the same
head without self-training (paired bootstrap). ``nested`` is the honest
figure for a choice among them: each fold's (frac, round) is chosen on the
other two folds' mean accuracy, with no self-training as a candidate, and
scored on its own held-out source.
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np

from benchmarks.shift_probes import _row, open_probe, probe_arguments, write_report
from core.training.library_head import library_refit, training_replay
from core.training.loso_data import SourceData
from core.training.loso_eval import FoldLogits, fit_head, loso_report, seen_genres
from core.training.metrics import mean_diff_ci
from core.training.self_train import refit_head, self_train

FRACS = (0.4, 0.55, 0.7, 0.85, 1.0)


def self_trained(data: SourceData, folds, names: Sequence[str], form: str, c: float,
                 fracs: Sequence[float], rounds: int) -> dict[tuple[float, int], list[FoldLogits]]:
    """``{(0, 0): the head alone, (frac, round): self-trained}``
    (:func:`~core.training.self_train.self_train`) → every fold's held-out logits."""
    x = data.stacked(names)
    out: dict[tuple[float, int], list[FoldLogits]] = {}
    for f in folds:
        seen = seen_genres(data.y[f.train], data.y[f.val])
        base = fit_head(data, names, f.train, c, head=form)
        out.setdefault((0.0, 0), []).append(FoldLogits(f.held_out, base.logits(x[f.val]), data.y[f.val], seen))
        for frac in fracs:
            heads = self_train(base, x[f.val], lambda rows, genres: refit_head(data, names, form, c, f.train,
                                                                          f.val[rows], genres), frac, rounds)
            for r, head in enumerate(heads, 1):
                out.setdefault((frac, r), []).append(FoldLogits(f.held_out, head.logits(x[f.val]), data.y[f.val], seen))
            print(f"{form} {f.held_out} frac {frac}: done", file=sys.stderr, flush=True)
    return out


def replayed(data: SourceData, folds, names: Sequence[str], form: str, c: float,
             fracs: Sequence[float], rounds: int) -> dict[tuple[float, int], list[FoldLogits]]:
    """As :func:`self_trained`, with the training rows replaced by their
    per-genre Gaussian replay and each held-out clip joining as its patch-mean
    columns (:func:`~core.training.library_head.library_refit`): what the
    served head does on a library, where the training data is not at hand."""
    x = data.stacked(names)
    out: dict[tuple[float, int], list[FoldLogits]] = {}
    for f in folds:
        seen = seen_genres(data.y[f.train], data.y[f.val])
        base = fit_head(data, names, f.train, c, head=form)
        replay = training_replay(data, names, form, f.train, c)
        out.setdefault((0.0, 0), []).append(FoldLogits(f.held_out, base.logits(x[f.val]), data.y[f.val], seen))
        for frac in fracs:
            for r, head in enumerate(self_train(base, x[f.val], library_refit(replay, x[f.val]), frac, rounds), 1):
                out.setdefault((frac, r), []).append(FoldLogits(f.held_out, head.logits(x[f.val]), data.y[f.val], seen))
            print(f"replay {form} {f.held_out} frac {frac}: done", file=sys.stderr, flush=True)
    return out


def library_sizes(data: SourceData, folds, names: Sequence[str], c: float, sizes: Sequence[int],
                  draws: int, seed: int = 0) -> dict:
    """How the shipped adaptation (per-patch head, replay, :class:`~core.config.AdaptConfig`)
    fares on libraries of ``sizes`` tracks: per fold, ``draws`` random subsets of
    the held-out source (seeded), each adapted to and scored on itself. Per size:
    the mean accuracy before and after and Δ over all draws' tracks (paired bootstrap)."""
    from core.config import AdaptConfig
    from core.training.library_head import adapt_head

    x = data.stacked(names)
    rng = np.random.default_rng(seed)
    cfg = AdaptConfig(min_tracks=1)
    right: dict[int, list[np.ndarray]] = {n: [] for n in sizes}
    for f in folds:
        base = fit_head(data, names, f.train, c, head="patch")
        replay = training_replay(data, names, "patch", f.train, c)
        for n in sizes:
            for _ in range(draws if n < len(f.val) else 1):
                sub = np.sort(rng.choice(f.val, size=min(n, len(f.val)), replace=False))
                head = adapt_head(base, replay, x[sub], cfg, calibrate=False)
                right[n].append(np.stack([base.logits(x[sub]).argmax(1) == data.y[sub],
                                          head.logits(x[sub]).argmax(1) == data.y[sub]]).astype(float))
            print(f"sizes {f.held_out} {n}: done", file=sys.stderr, flush=True)
    out = {}
    for n, parts in right.items():
        r = np.concatenate(parts, axis=1)
        delta, ci = mean_diff_ci(r[1] - r[0], 2000, 0)
        out[str(n)] = {"libraries": len(parts), "tracks": int(r.shape[1]), "before": float(r[0].mean()),
                       "after": float(r[1].mean()), "delta_accuracy": delta, "ci95": ci}
    return out


def nested(runs: dict[tuple[float, int], list[FoldLogits]]) -> tuple[list[FoldLogits], list]:
    """Per fold, the key of ``runs`` with the best mean accuracy on the
    other folds (ties: the first key, the head alone first) → (its held-out
    logits per fold, the chosen keys)."""
    acc = {k: [float((f.logits.argmax(1) == f.y).mean()) for f in fl] for k, fl in runs.items()}
    chosen, out = [], []
    n = len(next(iter(runs.values())))
    for i in range(n):
        key = max(acc, key=lambda k: np.mean([a for j, a in enumerate(acc[k]) if j != i]))
        chosen.append(key)
        out.append(runs[key][i])
    return out, chosen


def main(argv: Sequence[str] | None = None) -> int:
    ap = probe_arguments("python -m benchmarks.self_train_probe", __doc__)
    ap.add_argument("--fracs", type=float, nargs="*", default=list(FRACS))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--method", choices=("exact", "replay"), default="exact",
                    help="exact: refit on the training rows; replay: on a per-genre Gaussian replay of them "
                         "(as the served head adapts to a library)")
    ap.add_argument("--library-sizes", type=int, nargs="*", default=None, metavar="N",
                    help="instead: the shipped adaptation on random libraries of N held-out tracks")
    ap.add_argument("--draws", type=int, default=5, help="--library-sizes: libraries per fold and size")
    args = ap.parse_args(argv)
    p, extra, heads = open_probe(args)
    data = p.source_data()
    if args.library_sizes:
        write_report({"library_sizes": library_sizes(data, p.folds, extra["trunks"], heads["patch"],
                                                     args.library_sizes, args.draws)}, args.json)
        return 0
    report: dict = {"heads": heads, "method": args.method, "forms": {}}
    for form, c in heads.items():
        loop = self_trained if args.method == "exact" else replayed
        runs = loop(data, p.folds, extra["trunks"], form, c, args.fracs, args.rounds)
        ref = runs[(0.0, 0)]
        picked, keys = nested(runs)
        report["forms"][form] = {
            "reference": {"mean": loso_report(ref)["mean"],
                          "folds": {f.held_out: float((f.logits.argmax(1) == f.y).mean()) for f in ref}},
            "rows": [_row(fl, ref, frac=k[0], round=k[1],
                          folds=[float((f.logits.argmax(1) == f.y).mean()) for f in fl])
                     for k, fl in runs.items() if k != (0.0, 0)],
            "nested": _row(picked, ref, chosen=[list(k) for k in keys],
                           folds=[float((f.logits.argmax(1) == f.y).mean()) for f in picked])}
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
