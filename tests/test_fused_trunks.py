"""The fused_trunks model: a linear head over the musicnn wheel's trunk bank
(core.models.fused_trunks), its LOSO choices and calibration
(core.training.fused_trunks_train, core.training.loso_calibration) and the
default-model choice made leave-one-source-out (core.training.default_choice)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import real_data
from safetensors.torch import load_file
from test_trunks import _stub_bank

from core.errors import ArtifactError
from core.models.msd import PATCH_FRAMES
from core.models.trunks import TRUNKS

LABELS = ["Jazz", "Rock", "Pop"]


@pytest.fixture
def stub_bank(monkeypatch):
    """Every FusedTrunks model gets a stub bank of its trunks (no wheel), and each bank run is counted."""
    import core.models.trunk_model as tm
    runs: list[int] = []
    banks: dict[tuple, object] = {}

    def shared(trunks, patches=None, cfg=None):
        key = (tuple(trunks), patches)
        if key not in banks:
            bank = _stub_bank(key[0], patches)
            real = bank.run
            bank.run = lambda x, *a, real=real: (runs.append(x.shape[0]), real(x, *a))[1]
            banks[key] = bank
        return banks[key]
    monkeypatch.setattr(tm, "shared_bank", shared)
    return runs


def _fitted(trunks=("msd_vgg", "msd_musicnn"), seed=0):
    from core.models.fused_trunks import FusedTrunks
    m = FusedTrunks(LABELS, trunks=list(trunks))
    rng = np.random.default_rng(seed)
    d = m.input_dim
    m.set_head(rng.normal(size=d), rng.uniform(0.5, 2, d), rng.normal(size=(3, d)) * 0.01, rng.normal(size=3), 1.0)
    return m.eval()


def test_shapes_and_head_round_trip_through_safetensors_without_pickle(stub_bank, tmp_path):
    from core.models import build_model
    from core.models.artifacts import load_model, save_model, update_manifest
    m = _fitted(("msd_vgg", "msd_musicnn"))
    assert m.input_dim == (512 + 50) + (400 + 50)
    mel = torch.rand(2, 1, 96, 3 * PATCH_FRAMES)
    pred = m.predict_logmel(mel)
    assert pred.probs.shape == (2, 3) and np.allclose(pred.probs.sum(1), 1)
    assert pred.embedding.shape == (2, m.input_dim)
    save_model(m, tmp_path)
    update_manifest(tmp_path)
    state = load_file(str(tmp_path / "fused_trunks.safetensors"))
    # The head only: no trunk weights in the file, and the trunk set as flags over the registry.
    assert set(state) == {"temperature", "trunk_set", "bank_patches", "feat_mean", "feat_scale", "head.weight",
                          "head.bias"} | {f"prior.{k}" for k in ("beta", "logit", "grouped", "mean", "std", "scale",
                                                                 "shift")}
    assert state["trunk_set"].tolist() == [1.0 if n in ("msd_vgg", "msd_musicnn") else 0.0 for n in TRUNKS]
    from core.training.model_card_loso import head_only_history
    d = m.input_dim
    # Standardiser, head, and the tag prior's β and (G,) statistics and calibration (off here).
    assert head_only_history(tmp_path / "fused_trunks.safetensors")["n_parameters"] == 2 * d + 3 * d + 3 + 1 + 4 * 3
    assert build_model("fused_trunks", LABELS).trunks == ["msd_musicnn"]     # the default set before loading
    loaded = load_model("fused_trunks", tmp_path)
    assert loaded.trunks == ["msd_vgg", "msd_musicnn"]
    assert np.allclose(loaded.predict_logmel(mel).probs, pred.probs, atol=1e-6)
    assert loaded.fingerprint() == m.fingerprint()
    assert loaded.patches is None and loaded.bank().patches is None
    # The LOSO patch choice travels in the file and sets the bank; a file without it runs every patch.
    m.set_patches(3)
    save_model(m, tmp_path)
    update_manifest(tmp_path)
    three = load_model("fused_trunks", tmp_path)
    assert three.patches == 3 and three.bank().patches == 3 and three.fingerprint() != loaded.fingerprint()
    mel10 = torch.rand(2, 1, 96, 10 * PATCH_FRAMES)
    # Logits, not probabilities: the random head is small, and its probabilities can agree to allclose's 1e-5.
    assert np.abs(three.predict_logmel(mel10).logits - loaded.predict_logmel(mel10).logits).max() > 1e-6
    assert np.allclose(three.predict_logmel(mel).probs, pred.probs, atol=1e-6)    # a 3-patch clip: all of them
    state.pop("bank_patches")
    old = build_model("fused_trunks", LABELS)
    old.load_saved_state(state)
    assert old.patches is None
    with pytest.raises(ArtifactError, match="patches"):
        m.set_patches(0)
    with pytest.raises(ArtifactError, match="does not fit"):
        loaded.set_head(np.zeros(3), np.ones(3), np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ArtifactError, match="bank vectors"):
        loaded.head_outputs(torch.zeros(1, 7))


def test_served_copies_share_one_trunk_pass_per_clip(stub_bank):
    """fused_trunks and another head on the same bank: predict_all runs the bank once per clip."""
    from core.models.inference import predict_all
    from core.models.optimise import optimise_for_inference
    models = {"a": optimise_for_inference(_fitted(seed=0)), "b": optimise_for_inference(_fitted(seed=1))}
    mel = torch.rand(3, 1, 96, 2 * PATCH_FRAMES)
    stub_bank.clear()
    preds = predict_all({models["a"].cfg.key(): mel}, models)
    assert sum(stub_bank) == 3
    assert not np.allclose(preds["a"].probs, preds["b"].probs)
    stub_bank.clear()
    alone = models["a"].predict_logmel(mel)
    assert sum(stub_bank) == 3 and np.allclose(alone.probs, preds["a"].probs, atol=1e-6)


def test_trained_head_with_calibration_folded_in(stub_bank):
    """train_fused_trunks: the head fitted on the train split, the calibration map folded into it."""
    from core.datasets.track import Track
    from core.training.fused_trunks_train import train_fused_trunks
    from core.training.loso_calibration import fit_map
    from core.training.loso_data import SourceData
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = rng.normal(size=(60, 450)) + y[:, None] * 0.5
    tracks = [Track(track_id=f"t{i}", path=f"/x/{i}.wav", genre=LABELS[y[i]], split="train" if i % 4 else "val",
                    source="s") for i in range(60)]
    data = SourceData(tracks=tracks, labels=LABELS, y=y, features={"msd_musicnn": x.astype(np.float32)})
    cmap = fit_map("vector", rng.normal(size=(60, 3)) * 3, y)
    model, head = train_fused_trunks(data, ["msd_musicnn"], 0.1, cmap)
    expect = cmap.probs(head.logits(x))
    with torch.no_grad():
        got = torch.softmax(model.head_outputs(torch.as_tensor(x, dtype=torch.float32))[1], 1).numpy()
    assert np.allclose(got, expect, atol=1e-4)
    assert float(model.temperature) == 1.0


def test_calibration_maps_lower_log_loss_and_cross_fit_per_fold():
    from core.training.calibration import log_loss, softmax_t
    from core.training.loso_calibration import compare_methods, fit_map
    from core.training.loso_eval import FoldLogits
    rng = np.random.default_rng(1)
    folds = []
    for k, shift in enumerate((0.0, 1.0, -1.0)):
        y = rng.integers(0, 4, 300)
        z = rng.normal(size=(300, 4)) * 4
        z[np.arange(300), y] += 3.0
        z[:, 0] += 2.0 + shift                         # over-confident and biased towards genre 0
        folds.append(FoldLogits(f"s{k}", z, y))
    z, y = np.concatenate([f.logits for f in folds]), np.concatenate([f.y for f in folds])
    raw = log_loss(softmax_t(z, 1.0), y)
    losses = {m: log_loss(fit_map(m, z, y).probs(z), y) for m in ("temperature", "bias", "vector")}
    assert losses["temperature"] < raw and losses["bias"] < losses["temperature"]
    rep = compare_methods(folds)
    assert set(rep["methods"]) == {"temperature", "bias", "vector"} and rep["best"] in rep["methods"]
    assert rep["methods"]["bias"]["mean_ece"] < rep["methods"]["temperature"]["mean_ece"]
    assert set(rep["methods"]["vector"]["folds"]) == {"s0", "s1", "s2"}
    assert set(rep["oracle_temperature"]) == {"s0", "s1", "s2"}
    assert all(0 <= o["ece"] <= 1 and 0.05 <= o["temperature"] <= 20 for o in rep["oracle_temperature"].values())
    # The sampling floor per source: 300 tracks each, below the best map's measured ECE on these
    # mis-calibrated folds, and the model card row shows it.
    floor = rep["sampling_floor"]
    assert set(floor) == {"s0", "s1", "s2"} and all(f["n"] == 300 and 0 < f["mean"] < 0.1 for f in floor.values())
    from core.training.model_card_loso import calibration_lines
    row = [ln for ln in calibration_lines({"calibration": rep}, ["s0", "s1", "s2"]) if ln.startswith("| sampling")]
    assert len(row) == 1 and "(n 300)" in row[0]
    with pytest.raises(ValueError, match="unknown calibration"):
        fit_map("isotonic", z, y)


def test_default_model_is_chosen_leave_one_source_out():
    from core.training.default_choice import LOSO_CRITERION, choose_default
    scores = {"cnn_msd": {"roc_auc": 0.93, "accuracy": 0.60}, "fused": {"roc_auc": 0.91, "accuracy": 0.55},
              "fused_trunks": {"roc_auc": 0.92, "accuracy": 0.58}, "cnn": {"roc_auc": 0.99, "accuracy": 0.9}}
    loso = {"cnn_msd": {"mean": {"accuracy": 0.28, "macro_auc": 0.76}},
            "fused": {"mean": {"accuracy": 0.36, "macro_auc": 0.77}},
            "fused_trunks": {"mean": {"accuracy": 0.40, "macro_auc": 0.81}}, "folds": []}
    rec = choose_default(scores, loso)
    # cnn has the best in-source val AUC but no LOSO figures: not a candidate.
    assert rec["best_model"] == "fused_trunks" and rec["criterion"] == LOSO_CRITERION
    assert set(rec["loso"]) == {"cnn_msd", "fused", "fused_trunks"}
    loso["fused"]["mean"]["accuracy"] = 0.40                   # tie on accuracy → LOSO macro AUC
    loso["fused"]["mean"]["macro_auc"] = 0.82
    assert choose_default(scores, loso)["best_model"] == "fused"
    loso["fused"]["mean"]["macro_auc"] = 0.81                  # tie again → in-source val AUC
    assert choose_default(scores, loso)["best_model"] == "fused_trunks"
    fallback = choose_default(scores, None)
    assert fallback["best_model"] == "cnn" and fallback["criterion"].startswith("val macro roc_auc")


def test_shipped_selection_names_a_shipped_model_by_its_recorded_criterion():
    """artifacts/selection.json: the default is the LOSO choice among models loso.json measured."""
    from core.config import Paths
    from core.training.default_choice import choose_default
    art = Paths().artifacts
    sel = json.loads((art / "selection.json").read_text())
    loso = json.loads((art / "loso.json").read_text())
    assert (art / f"{sel['best_model']}.safetensors").is_file()
    assert choose_default(sel["scores"], loso)["best_model"] == sel["best_model"]
    assert sel["criterion"].startswith("leave-one-source-out")


@real_data
def test_shipped_fused_trunks_hears_real_music():
    """The shipped model on real train clips: mostly right, tags in (0, 1), one bank pass."""
    from core.config import shared_data_dirs
    from core.datasets import read_datasets
    from core.facets.tags import TAGGERS
    from core.models.artifacts import load_model
    from core.models.inference import predict_all
    from core.models.optimise import optimise_for_inference
    from core.models.trunks import clip_logmel
    try:
        model = optimise_for_inference(load_model("fused_trunks"))
    except ArtifactError:
        pytest.skip("no shipped fused_trunks model")
    tracks = [t for t in read_datasets(shared_data_dirs()) if t.split == "train"]
    by_genre = {}
    for t in tracks:
        by_genre.setdefault(t.genre, t)
    picked = [by_genre[g] for g in sorted(by_genre)[:6]]
    mel = torch.cat([clip_logmel(t.path)[None] for t in picked])
    feats: dict = {}
    pred = predict_all({model.cfg.key(): mel}, {"fused_trunks": model}, trunk_feats=feats)["fused_trunks"]
    assert pred.probs.shape == (len(picked), len(model.labels)) and np.allclose(pred.probs.sum(1), 1, atol=1e-5)
    hits = sum(model.labels[i] == t.genre for i, t in zip(pred.probs.argmax(1), picked))
    assert hits >= len(picked) // 2, (hits, [model.labels[i] for i in pred.probs.argmax(1)])
    vec = feats[model.trunk_key()]
    for name in model.trunks:
        tags = TAGGERS[name].tags_of(model, vec).numpy()
        assert tags.shape == (len(picked), 50) and ((tags > 0) & (tags < 1)).all()


@pytest.mark.parametrize("signal_patch, chosen", [(5, 1), (0, None)])
def test_patch_count_is_chosen_leave_one_source_out_by_its_rule(signal_patch, chosen):
    """The genre is audible in one patch only: in patch 5 (the one a single-patch
    bank keeps) the fewest patches win; in patch 0 (dropped by every reduction)
    fewer patches lose accuracy, and every patch stays."""
    from core.datasets.track import Track
    from core.training.fused_trunks_train import choose_patches
    from core.training.loso import loso_folds
    from core.training.loso_data import SourceData
    rng = np.random.default_rng(2)
    n = 240
    y = np.arange(n) % 3
    pen = rng.normal(size=(n, 10, 8)).astype(np.float32)
    pen[np.arange(n), signal_patch, y] += 4.0
    tags = rng.uniform(size=(n, 10, 50)).astype(np.float32)
    tracks = [Track(track_id=f"t{i}", path=f"/x/{i}.wav", genre=LABELS[y[i]], split="train",
                    source=f"s{i % 4 // 2 + (i % 5 == 0)}") for i in range(n)]
    data = SourceData(tracks=tracks, labels=LABELS, y=y, patches={"msd_musicnn": (pen, tags)})
    data = data.with_patches(None)
    got = choose_patches(data, loso_folds(tracks), ["msd_musicnn"], 0.1, log=lambda s: None)
    assert got["chosen"] == chosen
    assert [r["patches"] for r in got["rows"]] == [None, 5, 3, 2, 1]
    acc = {r["patches"]: r["mean"]["accuracy"] for r in got["rows"]}
    assert (acc[1] > acc[None]) if signal_patch == 5 else (acc[1] < acc[None] - 0.1)
    from core.training.model_card_loso import patch_lines
    table = "\n".join(patch_lines(got, "fused_trunks"))
    assert f"shipped: {chosen or 'all'}" in table and "| all (10) |" in table and "| 1 |" in table
    assert choose_patches(SourceData(tracks=tracks, labels=LABELS, y=y, features=data.features),
                          loso_folds(tracks), ["msd_musicnn"], 0.1, log=lambda s: None)["chosen"] is None


@pytest.mark.parametrize("clean, copy, chosen_some", [(0.1, 1.0, True), (0.6, 0.0, False)])
def test_augmented_copies_are_chosen_leave_one_source_out_by_their_rule(clean, copy, chosen_some):
    """Step 1c: copies whose features carry the genre clearly (the clean ones
    weakly) are chosen; copies of pure noise beside clean features that carry it
    lose accuracy, and none ship. A fold's extra rows are copies of its training
    tracks only."""
    from core.datasets.track import Track
    from core.training.fused_trunks_train import choose_augment
    from core.training.loso import loso_folds
    from core.training.loso_data import SourceData
    from core.training.loso_eval import with_augmented
    from core.training.model_card_loso import augment_lines
    rng = np.random.default_rng(5)
    n, k = 180, 2
    y = np.arange(n) % 3
    pen = rng.normal(size=(n, 10, 8)).astype(np.float32)
    pen[np.arange(n), :, y] += clean
    tags = rng.uniform(size=(n, 10, 50)).astype(np.float32)
    aug = rng.normal(size=(n, k, 10, 8)).astype(np.float32)
    aug[np.arange(n), :, :, y] += copy
    tracks = [Track(track_id=f"t{i}", path=f"/x/{i}.wav", genre=LABELS[y[i]], split="train",
                    source=f"s{(i // 3) % 3}") for i in range(n)]
    data = SourceData(tracks=tracks, labels=LABELS, y=y, patches={"msd_musicnn": (pen, tags)},
                      augmented={"msd_musicnn": (aug, rng.uniform(size=(n, k, 10, 50)).astype(np.float32))})
    data = data.with_patches(None)
    got = choose_augment(data, loso_folds(tracks), ["msd_musicnn"], 0.001, log=lambda s: None)
    assert (got["chosen"] > 0) is chosen_some
    assert {r["copies"] for r in got["rows"]} == {0, 1, 2} and len(got["rows"]) == 9
    best = max(r["mean"]["accuracy"] for r in got["rows"])
    none = next(r for r in got["rows"] if r["copies"] == 0)["mean"]["accuracy"]
    assert (best > none + 0.1) if chosen_some else (best == none)
    assert f"shipped: {got['chosen']} copies" in "\n".join(augment_lines(got, "fused_trunks"))
    # The fold's training rows: its own tracks, then k copies of each of them, nothing of the held-out source.
    fold = loso_folds(tracks)[0]
    x, yy = with_augmented(data, ["msd_musicnn"], fold.train, copies=k)
    assert len(x) == len(fold.train) * (1 + k) and (yy[len(fold.train):] == np.repeat(y[fold.train], k)).all()
    # Without copies on file, nothing to choose: none ship, at the given C.
    plain = SourceData(tracks=tracks, labels=LABELS, y=y, features=data.features)
    assert choose_augment(plain, loso_folds(tracks), ["msd_musicnn"], 0.001, log=lambda s: None)["chosen"] == 0


def test_head_variants_score_other_heads_on_the_same_folds_against_the_shipped_one():
    """Every variant row is scored on the same folds; the shipped row is the
    reference (Δ 0); heads that read the features right all find a clear genre
    signal; a cnn_msd that knows nothing is flattened by its LOSO temperature
    and leaves the ensemble where the shipped head is; without cnn_msd's fold
    logits there is no ensemble row."""
    from core.datasets.track import Track
    from core.training.head_variants import DRAWS, head_variants
    from core.training.loso import loso_folds
    from core.training.loso_data import SourceData
    from core.training.loso_eval import FoldLogits, linear_fold_logits
    from core.training.model_card_loso import variant_lines
    rng = np.random.default_rng(7)
    n = 150
    y = np.arange(n) % 3
    pen = rng.normal(size=(n, 10, 8)).astype(np.float32)
    pen[np.arange(n), :, y] += 1.0
    tags = rng.uniform(size=(n, 10, 50)).astype(np.float32)
    tracks = [Track(track_id=f"t{i}", path=f"/x/{i}.wav", genre=LABELS[y[i]], split="train",
                    source=f"s{(i // 3) % 3}") for i in range(n)]
    data = SourceData(tracks=tracks, labels=LABELS, y=y, patches={"msd_musicnn": (pen, tags)}).with_patches(None)
    folds = loso_folds(tracks)
    ref = linear_fold_logits(data, folds, ["msd_musicnn"], 0.01)
    blind = [FoldLogits(f.held_out, rng.normal(size=f.logits.shape) * 5, f.y, f.seen) for f in ref]
    hv = head_variants(data, folds, ["msd_musicnn"], 0.01, 0, ref, blind, log=lambda s: None)
    rows = {(r["head"], r["setting"]): r for r in hv["rows"]}
    assert len(rows) == 1 + 3 + 3 + 2 + 2
    shipped = hv["rows"][0]
    assert shipped["delta_accuracy"] == 0.0 and shipped["ci95"] == [0.0, 0.0] and shipped["mean"]["accuracy"] > 0.9
    for (head, _), r in rows.items():
        if head in ("per-patch logistic", "ridge", "shrinkage LDA"):
            assert r["mean"]["accuracy"] > 0.85, head
    for w in ("w=0.5", "w=0.8"):
        r = rows["+ cnn_msd", w]
        assert abs(r["delta_accuracy"]) < 0.02 and r["ci95"][0] <= r["delta_accuracy"] <= r["ci95"][1]
    alone = head_variants(data, folds, ["msd_musicnn"], 0.01, 0, ref, None, log=lambda s: None)
    assert not any(r["head"] == "+ cnn_msd" for r in alone["rows"]) and len(alone["rows"]) == 9
    assert [len(c["accuracy"]) for c in hv["learning_curve"]] == [DRAWS, DRAWS]
    table = "\n".join(variant_lines(hv, "fused_trunks"))
    assert "| per-patch logistic | C=3e-05 |" in table and "+0.000 [+0.000, +0.000]" in table
    # A per-patch shipped head: the clip-pooled head it was weighed against gets a row, its own setting none.
    patch_ref = linear_fold_logits(data, folds, ["msd_musicnn"], 0.00003, head="patch")
    as_patch = head_variants(data, folds, ["msd_musicnn"], 0.00003, 0, patch_ref, None, log=lambda s: None,
                             head="patch", step1d={("clip", 0.01): ref})
    names = [(r["head"], r["setting"]) for r in as_patch["rows"]]
    assert names[:2] == [("shipped: per-patch logistic", "C=3e-05, 0 copies"), ("clip-pooled logistic", "C=0.01")]
    assert ("per-patch logistic", "C=3e-05") not in names and len(names) == 1 + 1 + 2 + 3 + 2
    clip_row = as_patch["rows"][1]
    assert clip_row["mean"]["accuracy"] == rows["shipped: clip-pooled logistic", "C=0.01, 0 copies"]["mean"]["accuracy"]


def _patch_data(n=150, signal=1.0, seed=11, copies=0):
    """Two trunks' per-patch outputs of ``n`` tracks in three sources; the genre
    shifts one penultimate unit of each patch by ``signal``."""
    from core.datasets.track import Track
    from core.training.loso_data import SourceData
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    patches, augmented = {}, {}
    for name, d in (("msd_vgg", 256), ("msd_musicnn", 200)):           # the trunks' penultimate widths
        pen = rng.normal(size=(n, 10, d)).astype(np.float32)
        pen[np.arange(n), :, y] += signal
        patches[name] = (pen, rng.uniform(size=(n, 10, 50)).astype(np.float32))
        if copies:
            augmented[name] = (rng.normal(size=(n, copies, 10, d)).astype(np.float32),
                               rng.uniform(size=(n, copies, 10, 50)).astype(np.float32))
    tracks = [Track(track_id=f"t{i}", path=f"/x/{i}.wav", genre=LABELS[y[i]], split="train",
                    source=f"s{(i // 3) % 3}") for i in range(n)]
    return SourceData(tracks=tracks, labels=LABELS, y=y, patches=patches, augmented=augmented)


@pytest.mark.parametrize("keep, copies", [(None, 0), (3, 1)])
def test_per_patch_head_is_served_exactly_on_the_clip_vectors(keep, copies):
    """fit_head's "patch" form: the mean of the per-patch head's logits over a
    clip's kept patches equals the served head on that clip's pooled vector
    (which also holds the max over patches, at weight 0), and the embedding's
    standardiser is the clip vectors' own, as the clip-pooled head's is."""
    from core.training.linear_head import fit_linear_head
    from core.training.loso_eval import fit_head
    data = _patch_data(copies=copies).with_patches(keep)
    names = ["msd_vgg", "msd_musicnn"]
    idx = np.arange(0, 150, 2)
    xp, yp = data.patch_rows(names, idx, copies)
    assert xp.shape == (75 * (1 + copies), keep or 10, (256 + 50) + (200 + 50)) and (yp[:75] == data.y[idx]).all()
    served = fit_head(data, names, idx, 0.01, copies, "patch")
    direct = fit_linear_head(xp.reshape(-1, xp.shape[2]), np.repeat(yp, xp.shape[1]), 3, c=0.01)
    x = data.stacked(names)
    rows = data.patch_rows(names, np.arange(150))[0]
    want = direct.logits(rows.reshape(-1, rows.shape[2])).reshape(150, rows.shape[1], 3).mean(1)
    assert np.allclose(served.logits(x), want, atol=1e-6)           # float32 features: exact up to rounding
    clip = fit_head(data, names, idx, 0.01, copies, "clip")
    assert np.allclose(served.mean, clip.mean) and np.allclose(served.scale, clip.scale)
    maxes = np.r_[256:512, 562 + 200: 562 + 400]            # each trunk's max over patches
    assert np.array_equal(np.setdiff1d(np.arange(x.shape[1]), data.patch_columns(names)), maxes)
    assert (served.weight[:, maxes] == 0).all() and not (clip.weight[:, maxes] == 0).all()
    with pytest.raises(ValueError):
        fit_head(data, names, idx, 0.01, copies, "tree")


def test_head_form_is_chosen_leave_one_source_out_and_ships_in_the_model(stub_bank):
    """Step 1d scores the clip-pooled head and a per-patch head per C on the
    same folds and keeps the best by the rule; the shipped model serves the
    chosen form; without per-patch features only the clip-pooled head runs."""
    from core.training.fused_trunks_train import PATCH_HEAD_CS, choose_head, train_fused_trunks
    from core.training.loso import loso_folds
    from core.training.loso_data import SourceData
    from core.training.loso_eval import fit_head, linear_fold_logits
    from core.training.model_card_loso import head_lines
    data = _patch_data(signal=0.4).with_patches(None)
    names = ["msd_vgg", "msd_musicnn"]
    folds = loso_folds(data.tracks)
    base = linear_fold_logits(data, folds, names, 0.001)
    got = choose_head(data, folds, names, 0.001, 0, base, log=lambda s: None)
    assert [(r["head"], r["C"]) for r in got["rows"]] == [("clip", 0.001)] + [("patch", c) for c in PATCH_HEAD_CS]
    best = max(got["rows"], key=lambda r: (r["mean"]["accuracy"], r["mean"]["macro_auc"], r["head"] == "clip"))
    assert (got["chosen"], got["C"]) == (best["head"], best["C"])
    # Here the genre is in every patch's mean and the max over patches is noise, which only the
    # clip-pooled head reads: the per-patch head wins on these folds.
    assert got["chosen"] == "patch" and best["mean"]["accuracy"] > got["rows"][0]["mean"]["accuracy"] + 0.05
    assert "| per-patch logistic | 1e-05 |" in "\n".join(head_lines(got, "fused_trunks"))
    model, head = train_fused_trunks(data, names, 3e-5, None, head_form="patch")
    tr = np.flatnonzero([t.split == "train" for t in data.tracks])
    assert np.allclose(head.weight, fit_head(data, names, tr, 3e-5, 0, "patch").weight)
    x = data.stacked(names)
    with torch.no_grad():
        served = model.head_outputs(torch.as_tensor(x))[1].numpy()
    assert np.allclose(served, head.logits(x), atol=1e-3)
    plain = SourceData(tracks=data.tracks, labels=LABELS, y=data.y, features=data.features)
    none = choose_head(plain, folds, names, 0.001, 0, base, log=lambda s: None)
    assert none["chosen"] == "clip" and none["rows"] == []
