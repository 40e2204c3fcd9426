"""``python -m core loso``: measure under leave-one-source-out, choose the
fused model's settings there, train it and ship it.

Steps (everything cached under the cache root; the test split is never read):

1. :func:`~core.training.loso_data.load_source_data`: MSD log-mels, the
   served MSD-VGG trunk, frozen features (plus other trunks' ``*.npz``).
2. The fused head's ``C`` chosen on LOSO mean accuracy (then AUC) over the
   feature set the served :class:`~core.models.fused.FusedMSD` computes; with
   every trunk's features at hand, the ``fused_trunks`` model's trunk set,
   ``C`` and calibration too (:mod:`core.training.fused_trunks_train`).
3. Calibration: the temperature the shipped model gets is fitted on every
   fold's held-out logits (``pooled_temperature``); the per-fold ECE uses the
   cross-fold temperature (fitted without the fold's source).
4. The shipped head is fitted on the train split of all sources (so the
   in-source val split stays unseen, for the app's default-model choice).
5. Optionally ``cnn_msd``'s head retrained per fold (the baseline of the issue's target).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from core.config import TrainConfig
from core.files import atomic_write
from core.training.calibration import expected_calibration_error, softmax_t
from core.training.fused_trunks_train import NAME as TRUNKS_NAME
from core.training.fused_trunks_train import TRUNK_CS, fused_trunks_loso
from core.training.linear_head import fit_linear_head
from core.training.loso import loso_folds
from core.training.loso_data import MSD_VGG, SourceData, load_source_data
from core.training.loso_eval import (
    choose_linear,
    cnn_msd_fold_logits,
    linear_fold_logits,
    loso_report,
    per_genre_recall,
)
from core.training.metrics import macro_auc

LOSO_FILE = "loso.json"
DEFAULT_CS = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
SERVABLE = (MSD_VGG,)     # feature sets FusedMSD computes itself

Log = Callable[[str], None]


def train_fused(data: SourceData, c: float, temperature: float):
    """The shipped :class:`~core.models.fused.FusedMSD`: head fitted on the
    train split of every source, the given temperature."""
    from core.models.fused import FusedMSD

    tr = np.array([t.split == "train" for t in data.tracks])
    head = fit_linear_head(data.stacked(SERVABLE)[tr], data.y[tr], len(data.labels), c=c)
    model = FusedMSD(data.labels)
    model.set_head(head.mean, head.scale, head.weight, head.bias, temperature)
    return model.eval(), head


def _cnn_msd_cached(data: SourceData, folds, cfg: TrainConfig, root: Path, log: Log):
    """:func:`~core.training.loso_eval.cnn_msd_fold_logits`, cached by train
    config, fold membership and the MSD models' input (the retraining costs
    minutes per fold)."""
    from core.models.msd import MSD_FEATURES
    from core.training.loso_eval import FoldLogits

    key = hashlib.sha256(json.dumps([cfg.to_dict(), [[data.tracks[i].track_id for i in f.train]
                                                     for f in folds], MSD_FEATURES.input_key()]
                                    ).encode()).hexdigest()[:12]
    path = root / f"loso_cnn_msd_{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            hist = json.loads(str(z["history"]))
            return [FoldLogits(f.held_out, z[f"logits_{i}"], z[f"y_{i}"], z[f"seen_{i}"])
                    for i, f in enumerate(folds)], hist
    logits, hist = cnn_msd_fold_logits(data, folds, cfg, log=log)
    arrays = {f"{k}_{i}": getattr(lg, k) for i, lg in enumerate(logits) for k in ("logits", "y", "seen")}
    atomic_write(path, lambda fh: np.savez(fh, history=np.array(json.dumps(hist)), **arrays))
    return logits, hist


def run_loso(dirs: Sequence[str | Path], cache_root: str | Path, artifacts_dir: str | Path,
             extra_features: str | Path | None = None, cnn_msd_minutes: float | None = None,
             cs: Sequence[float] = DEFAULT_CS, ship: bool = True, log: Log = print,
             head_variants: bool = False) -> dict:
    """Steps 1–5 of the module docstring; returns (and writes) ``loso.json``
    (``head_variants``: see :mod:`core.training.head_variants`)."""
    from core.models.artifacts import save_model, update_manifest, write_json

    data = load_source_data(dirs, cache_root, extra_features)
    folds = loso_folds(data.tracks)
    log(f"LOSO: {len(data.tracks)} tracks, folds " + ", ".join(
        f"{f.held_out} ({len(f.train)} train / {len(f.val)} held out)" for f in folds))
    # Other trunks' features are chosen among by the fused_trunks model (which serves them); the fused
    # model's grid is the feature set it computes itself.
    choice = choose_linear(data, folds, [list(SERVABLE)], cs, log=log, cache_dir=Path(cache_root) / "loso_linear",
                           name="fused")
    best = choice["best"]
    fused_rep = loso_report(linear_fold_logits(data, folds, SERVABLE, best["C"]))
    held = {f.held_out: [data.tracks[i].track_id for i in f.val] for f in folds}
    record = {"protocol": "leave-one-source-out: train on the non-test tracks of two sources, score the "
                          "third source's non-test tracks; the test split is in no fold",
              "folds": [f.to_dict() for f in folds], "labels": data.labels,
              "genres_per_source": {s: sorted({data.tracks[i].genre for i in np.flatnonzero(
                  [t.source == s for t in data.tracks])}) for s in held},
              "fused": {"features": list(SERVABLE), "C": best["C"], **fused_rep},
              "feature_choice": {k: v for k, v in choice.items() if k != "grid"} | {"grid": choice["grid"]}}
    model, head = train_fused(data, best["C"], fused_rep["pooled_temperature"])
    va = np.array([t.split == "val" for t in data.tracks])
    p_val = softmax_t(head.logits(data.stacked(SERVABLE)[va]), fused_rep["pooled_temperature"])
    record["fused"]["in_source_val"] = {
        "n": int(va.sum()), "accuracy": float((p_val.argmax(1) == data.y[va]).mean()),
        "macro_auc": macro_auc(data.y[va], p_val), "ece": expected_calibration_error(p_val, data.y[va]),
        "per_genre_recall": per_genre_recall(data.y[va], p_val.argmax(1), data.labels)}
    log(f"fused: C={best['C']:g}, LOSO mean accuracy {fused_rep['mean']['accuracy']:.3f}, AUC "
        f"{fused_rep['mean']['macro_auc']:.3f}, ECE {fused_rep['mean']['ece']:.3f}; T "
        f"{fused_rep['pooled_temperature']:.3f}; in-source val accuracy "
        f"{record['fused']['in_source_val']['accuracy']:.3f}")
    logits = None
    if cnn_msd_minutes:
        cfg = TrainConfig(model="cnn_msd", max_minutes=cnn_msd_minutes)
        logits, hist = _cnn_msd_cached(data, folds, cfg, Path(cache_root), log)
        record["cnn_msd"] = {"how": f"head (conv 5, tag layer, genre layer) retrained per fold on the cached "
                                    f"served trunk, ≤ {cnn_msd_minutes:g} min, early-stopped on the training "
                                    f"sources' val split", **loso_report(logits), "runs": hist}
        m = record["cnn_msd"]["mean"]
        log(f"cnn_msd LOSO: mean accuracy {m['accuracy']:.3f} AUC {m['macro_auc']:.3f} ECE {m['ece']:.3f}")
    trunks = fused_trunks_loso(data, folds, TRUNK_CS, Path(cache_root) / "loso_linear", log=log,
                               variants=head_variants, cnn_msd=logits)
    if trunks is not None:
        record[TRUNKS_NAME], trunks_model = trunks
    if ship:
        out = Path(artifacts_dir)
        save_model(model, out, extra={"C": best["C"], "features": list(SERVABLE),
                                      "temperature": "pooled LOSO (loso.json)", "loso_file": LOSO_FILE})
        if trunks is not None:
            r = record[TRUNKS_NAME]
            save_model(trunks_model, out, extra=_trunks_extra(r))
        write_json(out / LOSO_FILE, record)
        update_manifest(out)
    return record


def rerun_fused_trunks(dirs: Sequence[str | Path], feature_dir: str | Path, artifacts_dir: str | Path,
                       ship: bool = True, log: Log = print) -> dict:
    """Steps 1e–3 of ``fused_trunks`` again (:func:`~core.training.fused_trunks_train.refit_from_record`)
    on the choices of steps 1–1d that ``loso.json`` records, from every trunk's
    cached features in ``feature_dir`` (no audio is decoded); its ``fused_trunks``
    record and model are replaced (``ship``). Returns the new record."""
    from core.models.artifacts import read_json, save_model, update_manifest, write_json
    from core.models.trunks import TRUNKS
    from core.training.fused_trunks_train import refit_from_record
    from core.training.library_head import features_data

    record = read_json(LOSO_FILE, artifacts_dir)
    names = [n for n in TRUNKS if (Path(feature_dir) / f"{n}.npz").is_file()]
    data = features_data(dirs, feature_dir, names, record["labels"])
    r, model = refit_from_record(data, loso_folds(data.tracks), record[TRUNKS_NAME], log)
    record[TRUNKS_NAME] = r
    if ship:
        out = Path(artifacts_dir)
        save_model(model, out, extra=_trunks_extra(r))
        write_json(out / LOSO_FILE, record)
        update_manifest(out)
    return r


def _trunks_extra(r: dict) -> dict:
    """The ``fused_trunks`` file's metadata from its LOSO record ``r``."""
    where = "after the tag prior" if r.get("prior", {}).get("beta") else "folded into the head"
    return {"C": r["C"], "trunks": r["features"], "head_trunks": r.get("head_features", r["features"]),
            "loso_file": LOSO_FILE, "calibration": f"{r['calibration']['best']}, pooled LOSO, {where}"}
