"""Ideas for source shift, measured leave-one-source-out and not adopted
(issue 16, items 3 and 4).

    python -m benchmarks.shift_probes [--features .cache/trunk_features] [--mid-end] [--json out.json]

Both probes read the shipped ``fused_trunks`` head's inputs: its trunk set
(from the safetensors metadata in ``--artifacts``), the clip-pooled head's
``C`` (step 1c's choice in ``loso.json``: the probes change that form; the
head that ships may be the per-patch one of step 1d), and the cached trunk
features that ``python -m core trunk-features`` writes. No audio is decoded
here.

**Heads.** The clip-pooled head ("shipped" in the rows: standardised
logistic regression, genres balanced; the shipped form before step 1d)
against three changes aimed at the confound of genre and source:

- ``per-source standardised``: each training source standardised on its own
  tracks, and the held-out source on its own tracks. This is transductive:
  it uses the held-out source's features, never its labels;
- ``source × genre balanced``: sample weights that give every (source,
  genre) cell of the training tracks the same total weight;
- ``signed sqrt``: ``sign(x)·√|x|`` before standardising.

Each row gives the LOSO mean as in ``loso.json``, and its accuracy minus the
shipped head's over every held-out track, with a paired bootstrap interval.

**An earlier layer** (``--mid-end``): MSD_musicnn's pooled mid end (the
``(1506,)`` vector before its dense layer, per 3 s patch, from the served
copy), averaged over a clip's patches, in place of or beside the shipped
features. Earlier layers are often said to transfer better than a tagger's
last ones. This decodes every clip once (about 3 CPU-min) and keeps the
result in ``<features>/probes/mid_end.npz``, a folder that
``python -m core loso`` does not read.

**Calibration.** Does one logit scale fit both music like the training
sources ("in") and a new source ("out")? Per fold, a head is trained on the
*train split* of the two other sources. "In" is their val split, and "out"
is every non-test track of the held-out source. Each map is fitted on the
other two folds' tracks of seen genres and scored on this fold:

- ``temperature, out``: the shipped protocol (a temperature fitted on
  held-out sources);
- ``temperature, in + out``: one temperature fitted on both kinds;
- ``distance-aware, in + out``: logits × exp(a + b·d), where d is the mean
  distance to the ``K`` nearest training tracks in the head's standardised
  feature space, divided by √D. It scales confidence with how far a
  track lies from the training music.

The head trained on the train split of every source is then scored on the
test split with each map fitted on all folds.

**Genre priors of the new source** (``priors``): the sources hold genres in
different proportions, so each held-out source's genre mix is estimated
from the head's own calibrated probabilities on its tracks, without labels,
by EM (Saerens, Latinne & Decaestecker, "Adjusting the outputs of a
classifier to new a priori probabilities", Neural Computation 2002), and
the probabilities are re-weighted by it. The head was fitted with genres
balanced, so its prior is uniform. ``α`` pulls the estimate toward that
prior (a Dirichlet weight in tracks; 0 is plain EM). This is transductive:
it needs the whole library before it answers for one track.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from core.datasets import genres_of, read_datasets
from core.training.calibration import ece_sampling_floor, expected_calibration_error, fit_temperature, log_loss
from core.training.linear_head import LinearHead, fit_linear_head, standardiser
from core.training.loso import loso_folds
from core.training.loso_data import SourceData, read_trunk_files
from core.training.loso_eval import FoldLogits, cross_fold_temperatures, fold_accuracy, loso_report, seen_genres
from core.training.metrics import mean_diff_ci

CS = (0.00003, 0.0001, 0.0003)
K = 10
PRIOR_ALPHAS = (0.0, 10.0, 30.0, 100.0, 300.0)


class Probe:
    """The tracks with the shipped head's features ``x`` ``(N, D)`` (its
    first ``vgg_dim`` columns MSD_vgg's), labels ``y``, ``split`` and
    ``source`` ``(N,)``, the LOSO ``folds``, and each trunk's feature file
    read once (:meth:`source_data`)."""

    def __init__(self, dirs: Sequence[str | Path], feature_dir: str | Path, trunks: Sequence[str]):
        self.tracks = read_datasets(dirs)
        self.labels = genres_of([t for t in self.tracks if t.split == "train"])
        self.features, self.patches = read_trunk_files(feature_dir, trunks, [t.track_id for t in self.tracks])
        self.x = np.concatenate(list(self.features.values()), axis=1).astype(np.float64)
        self.vgg_dim = self.features["msd_vgg"].shape[1] if trunks[0] == "msd_vgg" else 0
        self.y = np.array([self.labels.index(t.genre) for t in self.tracks])
        self.split = np.array([t.split for t in self.tracks])
        self.source = np.array([t.source for t in self.tracks])
        self.folds = loso_folds(self.tracks)

    def source_data(self) -> SourceData:
        """The tracks as the LOSO code reads them: each trunk's pooled and per-patch features."""
        return SourceData(tracks=self.tracks, labels=self.labels, y=self.y, features=dict(self.features),
                          patches=dict(self.patches))


Fit = Callable[[np.ndarray, np.ndarray], np.ndarray]    # (train rows, held-out rows) → held-out logits


def fold_logits(p: Probe, fit: Fit) -> list[FoldLogits]:
    """Every LOSO fold's held-out logits from ``fit``."""
    return [FoldLogits(f.held_out, fit(f.train, f.val), p.y[f.val], seen_genres(p.y[f.train], p.y[f.val]))
            for f in p.folds]


def linear(p: Probe, x: np.ndarray, c: float, weights: Callable[[np.ndarray], np.ndarray] | None = None) -> Fit:
    """The shipped head's fit (:func:`fit_linear_head`) on features ``x``;
    ``weights``: training rows → sample weights, in place of balanced genres."""
    return lambda tr, va: fit_linear_head(x[tr], p.y[tr], len(p.labels), c=c,
                                          sample_weight=None if weights is None else weights(tr)).logits(x[va])


def _row(fl: Sequence[FoldLogits], shipped: Sequence[FoldLogits], per_fold: bool = False, **keys) -> dict:
    """``keys``, (with ``per_fold``) each fold's accuracy, the LOSO mean of
    ``fl`` and its accuracy minus ``shipped``'s over every held-out track, with
    a paired bootstrap 95 % interval."""
    delta, ci = mean_diff_ci(_right(fl) - _right(shipped), 2000, 0)
    report = loso_report(fl)
    folds = {"fold_accuracy": fold_accuracy(report)} if per_fold else {}
    return {**keys, **folds, "mean": report["mean"], "delta_accuracy": delta, "ci95": ci}


def _right(folds: Sequence[FoldLogits]) -> np.ndarray:
    """``(n,)`` 1.0 where the argmax genre is right, over every fold's held-out tracks."""
    return np.concatenate([f.logits.argmax(1) == f.y for f in folds]).astype(float)


def cell_weights(source: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(n,)`` weights, mean 1, equal in total for every (source, genre) cell."""
    _, inv, count = np.unique(np.char.add(source.astype(str), y.astype(str)), return_inverse=True,
                              return_counts=True)
    w = 1.0 / count[inv]
    return w * len(w) / w.sum()


def per_source_standardised(x: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``x`` with each source's rows standardised on that source's rows."""
    out = np.empty_like(x)
    for s in np.unique(source):
        rows = source == s
        mean, scale = standardiser(x[rows])
        out[rows] = (x[rows] - mean) / scale
    return out


def head_rows(p: Probe, shipped: Sequence[FoldLogits], shipped_c: float, cs: Sequence[float] = CS) -> list[dict]:
    """The heads of the module docstring, each at every ``C`` of ``cs`` and
    ``shipped_c``; deltas against ``shipped`` (the shipped head's fold logits)."""
    def per_source(c: float) -> Fit:     # each fold's training and held-out rows standardised apart
        def fit(tr: np.ndarray, va: np.ndarray) -> np.ndarray:
            x = np.empty_like(p.x)
            for rows in (tr, va):
                x[rows] = per_source_standardised(p.x[rows], p.source[rows])
            return linear(p, x, c)(tr, va)
        return fit

    heads = {"shipped": lambda c: linear(p, p.x, c),
             "per-source standardised": per_source,
             "source × genre balanced": lambda c: linear(p, p.x, c, lambda tr: cell_weights(p.source[tr], p.y[tr])),
             "signed sqrt": lambda c: linear(p, np.sign(p.x) * np.sqrt(np.abs(p.x)), c)}
    def folds(kind: str, c: float) -> list[FoldLogits]:    # the shipped head at its own C is ``shipped``
        return shipped if (kind, c) == ("shipped", shipped_c) else fold_logits(p, heads[kind](c))

    return [_row(folds(kind, c), shipped, head=kind, C=c) for kind in heads for c in sorted({*cs, shipped_c})]


def served_musicnn(tracks, run: Callable, what: str) -> Iterator[np.ndarray]:
    """Each track of ``tracks`` decoded once (one log-mel) and cut into the
    level-normalised 3 s patches the served bank reads
    (:meth:`~core.models.trunks.TrunkBank.patch_input`) → ``run(net, patches)``
    on the served MSD_musicnn, as float32 numpy, with progress on stderr as ``what``."""
    import torch

    from core.models.trunks import clip_logmel, shared_bank

    bank = shared_bank(["msd_musicnn"])
    net, t0 = bank.models["msd_musicnn"], time.time()
    with torch.inference_mode():
        for i, t in enumerate(tracks):
            yield run(net, bank.patch_input(clip_logmel(t.path))[1]).float().numpy()
            if (i + 1) % 100 == 0:
                print(f"{what}: {i + 1}/{len(tracks)} clips, {time.time() - t0:.0f} s", file=sys.stderr)


def mid_end_features(tracks, cache: Path) -> np.ndarray:
    """``(N, 1506)``: MSD_musicnn's pooled mid end averaged over each clip's
    patches (served copy; one decode and one log-mel per clip), cached in ``cache``."""
    ids = [t.track_id for t in tracks]
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if [str(t) for t in z["track_id"]] == ids:
                return z["mid_end"]
    rows = list(served_musicnn(tracks, lambda net, x: net.mid_end(x).float().mean(0), "mid end"))
    out = np.stack(rows).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, track_id=np.array(ids), mid_end=out)
    return out


def mid_end_rows(p: Probe, mid: np.ndarray, shipped: Sequence[FoldLogits], cs: Sequence[float] = CS
                 ) -> list[dict]:
    """LOSO rows of the mid end alone and beside the shipped features or
    beside MSD_vgg's part of them (the first ``vgg_dim`` columns); deltas
    against ``shipped``."""
    mid = mid.astype(np.float64)
    sets = {"mid end": mid, "MSD_vgg + mid end": np.concatenate([p.x[:, :p.vgg_dim], mid], 1),
            "shipped + mid end": np.concatenate([p.x, mid], 1)}
    return [_row(fold_logits(p, linear(p, x, c)), shipped, features=name, C=c) for name, x in sets.items() for c in cs]


def knn_distance(head: LinearHead, x_train: np.ndarray, x: np.ndarray, k: int = K) -> np.ndarray:
    """``(n,)`` mean Euclidean distance of each row of ``x`` to its ``k``
    nearest rows of ``x_train``, in ``head``'s standardised space, over √D."""
    zt, zq = (x_train - head.mean) / head.scale, (x - head.mean) / head.scale
    d2 = (zq ** 2).sum(1)[:, None] + (zt ** 2).sum(1)[None] - 2 * zq @ zt.T
    return np.sqrt(np.maximum(np.sort(d2, 1)[:, :k], 0)).mean(1) / np.sqrt(x.shape[1])


@dataclass(frozen=True)
class LogitScale:
    """``logits (n, G)``, distances ``d (n,)`` → logits × exp(a + b·d)."""

    a: float
    b: float = 0.0

    @property
    def params(self) -> tuple[float, float]:
        return self.a, self.b

    def __call__(self, logits: np.ndarray, d: np.ndarray) -> np.ndarray:
        return logits * np.exp(self.a + self.b * d)[:, None]


def fit_scale(parts: Sequence[dict], distance: bool) -> LogitScale:
    """A temperature (b = 0, a = −log T; ``distance`` False) or both a and b,
    fitted on the tracks of seen genres in ``parts`` (dicts with logits, y, seen, d)."""
    lg, y, d = (np.concatenate([q[k][q["seen"]] for q in parts]) for k in ("logits", "y", "d"))
    if not distance:
        return LogitScale(float(-np.log(fit_temperature(lg, y))))
    nll = lambda v: -log_softmax(lg * np.exp(v[0] + v[1] * d)[:, None], 1)[np.arange(len(y)), y].mean()  # noqa: E731
    a, b = minimize(nll, np.zeros(2), method="Nelder-Mead").x
    return LogitScale(float(a), float(b))


def _scored(probs: np.ndarray, y: np.ndarray) -> dict:
    return {"n": int(len(y)), "accuracy": float((probs.argmax(1) == y).mean()),
            "mean_confidence": float(probs.max(1).mean()), "ece": expected_calibration_error(probs, y),
            "log_loss": log_loss(probs, y),
            "sampling_floor": ece_sampling_floor(probs, draws=500)["mean"]}


MAPS = {"temperature, out": (("out",), False), "temperature, in + out": (("in", "out"), False),
        "distance-aware, in + out": (("in", "out"), True)}


def calibration_rows(p: Probe, c: float) -> dict:
    """The calibration probe of the module docstring: per map, each fold's
    "in" and "out" scores and the final head's test score."""
    n, parts = len(p.labels), []
    for f in p.folds:
        others = p.source != f.held_out
        tr = np.flatnonzero(others & (p.split == "train"))
        head = fit_linear_head(p.x[tr], p.y[tr], n, c=c)
        for kind, idx in (("in", np.flatnonzero(others & (p.split == "val"))), ("out", f.val)):
            parts.append({"fold": f.held_out, "kind": kind, "logits": head.logits(p.x[idx]), "y": p.y[idx],
                          "seen": seen_genres(p.y[tr], p.y[idx]), "d": knn_distance(head, p.x[tr], p.x[idx])})
    tr, te = np.flatnonzero(p.split == "train"), np.flatnonzero(p.split == "test")
    final = fit_linear_head(p.x[tr], p.y[tr], n, c=c)
    out = {}
    for name, (kinds, distance) in MAPS.items():
        rows = {}
        cross = {f.held_out: fit_scale([o for o in parts if o["fold"] != f.held_out and o["kind"] in kinds], distance)
                 for f in p.folds}
        for q in parts:
            scale = cross[q["fold"]]
            rows[f"{q['fold']} {q['kind']}"] = {**_scored(softmax(scale(q["logits"], q["d"]), 1), q["y"]),
                                                "mean_distance": float(q["d"].mean()), "a_b": scale.params}
        scale, d = fit_scale([o for o in parts if o["kind"] in kinds], distance), knn_distance(final, p.x[tr], p.x[te])
        rows["test (head on every source's train split)"] = {
            **_scored(softmax(scale(final.logits(p.x[te]), d), 1), p.y[te]), "mean_distance": float(d.mean()),
            "a_b": scale.params}
        out[name] = rows
    return out


def head_cs(artifacts: Path, extra: dict) -> dict[str, float]:
    """The head forms the probes measure against, form → ``C``: ``clip``, the
    clip-pooled head at step 1c's choice in ``artifacts/loso.json`` (the
    reference every probe row is measured against; else the shipped ``C``),
    and ``patch``, the shipped per-patch head's, when step 1d chose it."""
    from core.files import read_json_or_none

    record = (read_json_or_none(artifacts / "loso.json") or {}).get("fused_trunks", {})
    cs = {"clip": float(record.get("augment_choice", {}).get("C", extra["C"]))}
    if record.get("head") == "patch":
        cs["patch"] = float(record["C"])
    return cs


def probe_arguments(prog: str, doc: str) -> argparse.ArgumentParser:
    """A parser with the probes' common options (:func:`probe_options`)."""
    return probe_options(argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0]))


def probe_options(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``ap`` with the probes' common options: ``--data``, ``--features``, ``--artifacts``, ``--json``."""
    ap.add_argument("--data", action="append", default=None, help="data folder (default ../shared/data/*)")
    ap.add_argument("--features", type=Path, default=Path(".cache/trunk_features"))
    ap.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    ap.add_argument("--json", type=Path, default=None)
    return ap


def open_probe(args: argparse.Namespace) -> tuple[Probe, dict, dict[str, float]]:
    """(the :class:`Probe` of the shipped ``fused_trunks``' trunks, its
    safetensors metadata, :func:`head_cs`) for :func:`probe_arguments`' options."""
    from core.config import shared_data_dirs
    from core.models.artifacts import model_extra

    extra = model_extra("fused_trunks", args.artifacts)
    # The probes study the head of steps 1–1d: its trunks, not those the tag prior adds (step 1e).
    extra = extra | {"trunks": extra.get("head_trunks", extra["trunks"])}
    probe = Probe(args.data or shared_data_dirs(), args.features, extra["trunks"])
    return probe, extra, head_cs(args.artifacts, extra)


def write_report(report: dict, path: Path | None) -> None:
    """``report`` as JSON on stdout and, with ``path``, into it."""
    text = json.dumps(report, indent=1, default=float)
    if path:
        path.write_text(text)
    print(text)


def em_prior(log_prob: np.ndarray, alpha: float = 0.0, iters: int = 200) -> np.ndarray:
    """The genre mix ``(G,)`` of the tracks whose calibrated log-probabilities
    are ``log_prob`` ``(n, G)`` under a uniform training prior, by EM with a
    Dirichlet pull of ``alpha`` tracks toward uniform."""
    g = log_prob.shape[1]
    pi = np.full(g, 1.0 / g)
    for _ in range(iters):
        q = softmax(log_prob + np.log(pi * g), 1)
        new = (q.sum(0) + alpha / g) / (len(q) + alpha)
        if np.abs(new - pi).max() < 1e-8:
            return new
        pi = new
    return pi


def prior_rows(p: Probe, shipped: Sequence[FoldLogits], alphas: Sequence[float] = PRIOR_ALPHAS) -> list[dict]:
    """The priors probe of the module docstring: per ``alpha``, each fold's
    held-out logits (at its cross-fold temperature) shifted by the EM genre
    mix of its own tracks; deltas against ``shipped``."""
    temps = cross_fold_temperatures(shipped)
    rows = []
    for alpha in alphas:
        folds = []
        for f, t in zip(shipped, temps):
            lp = log_softmax(f.logits / t, 1)
            pi = em_prior(lp, alpha)
            folds.append(FoldLogits(f.held_out, (lp + np.log(pi * len(pi))) * t, f.y, f.seen))
        rows.append(_row(folds, shipped, per_fold=True, alpha=alpha))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = probe_arguments("python -m benchmarks.shift_probes", __doc__)
    ap.add_argument("--mid-end", action="store_true", help="also the MSD_musicnn mid-end probe (decodes every clip)")
    args = ap.parse_args(argv)
    probe, extra, cs = open_probe(args)
    c = cs["clip"]
    shipped = fold_logits(probe, linear(probe, probe.x, c))
    report = {"trunks": extra["trunks"], "C": c, "heads": head_rows(probe, shipped, c),
              "calibration": calibration_rows(probe, c), "priors": prior_rows(probe, shipped)}
    if args.mid_end:
        mid = mid_end_features(probe.tracks, args.features / "probes" / "mid_end.npz")
        report["mid_end"] = mid_end_rows(probe, mid, shipped)
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
