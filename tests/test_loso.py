"""Leave-one-source-out folds (core.training.loso) on a fixture and on the real data."""

from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_DATA, real_data

from core.datasets.track import Track
from core.training.loso import LOSOError, loso_folds


def _tracks() -> list[Track]:
    spec = [("a", "train"), ("a", "val"), ("a", "test"), ("b", "train"), ("b", "train"),
            ("b", "test"), ("c", "val"), ("c", "train")]
    return [Track(track_id=f"t{i}", path=Path(f"/x/{i}.mp3"), genre="G", split=sp, source=src)
            for i, (src, sp) in enumerate(spec)]


def test_folds_hold_out_each_source_and_never_touch_test():
    tracks = _tracks()
    folds = loso_folds(tracks)
    assert [f.held_out for f in folds] == ["a", "b", "c"]
    by = {f.held_out: f for f in folds}
    assert by["a"].val.tolist() == [0, 1]
    assert by["a"].train.tolist() == [3, 4, 6, 7]
    assert by["b"].val.tolist() == [3, 4]
    assert by["c"].train.tolist() == [0, 1, 3, 4]
    test_idx = {i for i, t in enumerate(tracks) if t.split == "test"}
    for f in folds:
        assert not test_idx & set(f.train.tolist()) and not test_idx & set(f.val.tolist())
        assert not set(f.train.tolist()) & set(f.val.tolist())
        assert {tracks[i].source for i in f.val} == {f.held_out}
        assert f.held_out not in {tracks[i].source for i in f.train}
    # every non-test track is validated exactly once
    vals = np.concatenate([f.val for f in folds])
    assert sorted(vals.tolist()) == sorted(set(range(len(tracks))) - test_idx)


def test_too_few_sources_or_missing_source_raise():
    one = [t for t in _tracks() if t.source == "a"]
    with pytest.raises(LOSOError, match="sources"):
        loso_folds(one)
    bad = _tracks() + [Track(track_id="x", path=Path("/x/x.mp3"), genre="G", split="train")]
    with pytest.raises(LOSOError, match="no source"):
        loso_folds(bad)


@real_data
def test_real_data_has_three_folds():
    from core.datasets import read_dataset

    tracks = [t for d in REAL_DATA for t in read_dataset(d)]
    folds = loso_folds(tracks)
    assert len(folds) == 3
    assert sum(len(f.val) for f in folds) == sum(t.split != "test" for t in tracks)


def test_method2_choice_maximises_the_worst_fold_gap():
    from core.recommend.loso import choose, parse_setting

    prec = {"a": {"cosine": 0.5, "genre|soft|0.9|off": 0.8, "genre|soft|0.3|top": 0.55},
            "b": {"cosine": 0.6, "genre|soft|0.9|off": 0.5, "genre|soft|0.3|top": 0.62}}
    # 0.9/off wins fold a by far but loses fold b: the worst-fold rule takes 0.3/top
    assert choose(prec) == "genre|soft|0.3|top"
    assert choose(prec, ["a"]) == "genre|soft|0.9|off"
    assert parse_setting("genre|centre|0.5|entropy") == {"variant": "centre", "genre_weight": 0.5,
                                                         "confidence": "entropy"}


def test_loso_recommend_reports_every_fold_with_intervals():
    from core.recommend.evaluation import EvalConfig
    from core.recommend.loso import FoldCatalog, LosoGrid, fold_catalog, loso_recommend

    rng = np.random.default_rng(0)
    labels = ["A", "B"]
    cats = []
    for s in ("x", "y"):
        g = np.repeat([0, 1], 12)
        emb = rng.normal(0, 1, (24, 4)) + g[:, None] * 1.5
        probs = np.where(g[:, None] == np.arange(2), 0.8, 0.2)
        rows = [{"track_id": f"{s}{i}", "genre": labels[g[i]], "artist": f"{s}art{i}"} for i in range(24)]
        cats.append(FoldCatalog(s, fold_catalog(rows, {"fused": emb}, {"fused": probs}, labels,
                                                mfcc=rng.normal(0, 1, (24, 3)))))
    rec = loso_recommend(cats, EvalConfig(), grid=LosoGrid(weights=(0.5,), n_listeners=20, n_halves=4))
    assert set(rec["folds"]) == {"x", "y"} and set(rec["nested"]) == {"x", "y"}
    for f in rec["folds"].values():
        assert {"method1_precision_at_5", "method2_precision_at_5", "mfcc_precision_at_5",
                "random_precision_at_5"} <= set(f)
        assert len(f["m2_minus_m1"]["ci95"]) == 2 and f["m2_minus_m1"]["unit"] == "track"
        # probabilities 0.8 / 0.2 and one-genre or two-genre seeds: the fixed weight counts for every listener
        assert f["genre_term"]["listeners"] == 20
    assert rec["choice"]["genre_weight"] == 0.5
    for h, n in rec["nested"].items():
        # chosen on the other fold only, scored on this one with its track-level interval
        assert n["chosen_on"] == [o for o in ("x", "y") if o != h]
        assert n["chosen_on_other_folds"]["genre_weight"] == 0.5
        assert n["m2_minus_m1"]["unit"] == "track" and len(n["m2_minus_m1"]["ci95"]) == 2
        assert n["m2_minus_m1"]["diff"] == pytest.approx(n["method2_precision_at_5"] - n["method1_precision_at_5"])


def test_a_gate_that_stays_shut_ties_method_1_and_beats_settings_that_lose_a_fold():
    from core.recommend.loso import LosoGrid, choose

    # fold b: every open setting loses; the shut gate ties (0) everywhere, so the worst-fold rule takes it,
    # and among the tied ones the best mean method 2 (joint)
    prec = {"a": {"cosine": 0.5, "genre|soft|0.3|off": 0.6, "genre|soft|0.05|gate90": 0.5,
                  "genre|soft|0.05|joint": 0.51},
            "b": {"cosine": 0.4, "genre|soft|0.3|off": 0.39, "genre|soft|0.05|gate90": 0.4,
                  "genre|soft|0.05|joint": 0.4}}
    assert choose(prec) == "genre|soft|0.05|joint"
    assert choose(prec, ["a"]) == "genre|soft|0.3|off"
    g = LosoGrid()
    assert {0.05, 0.1, 0.2} <= set(g.weights) and {"gate50", "gate90", "joint"} <= set(g.confidences)


def test_fold_model_reads_loso_json_and_defaults_to_the_fused_model(tmp_path):
    import json

    from core.recommend.loso import FUSED
    from core.recommend.loso_data import DEFAULT_C, FoldModel, fold_model

    p = tmp_path / "loso.json"
    p.write_text(json.dumps({"fused": {"features": ["MSD_vgg"], "C": 1e-4},
                             "head2": {"features": ["MSD_musicnn", "MTT_vgg"], "C": 0.1, "patches": 5,
                                       "augment": 2, "head": "patch"}}))
    assert fold_model(p) == FoldModel(FUSED, ("MSD_vgg",), 1e-4)
    assert fold_model(p, "head2") == FoldModel("head2", ("MSD_musicnn", "MTT_vgg"), 0.1, 5, 2, "patch")
    assert fold_model(tmp_path / "missing.json") == FoldModel(FUSED, ("MSD_vgg",), DEFAULT_C)
    p.write_text(json.dumps({"ft": {"features": ["msd_vgg"], "C": 0.1,
                                    "prior": {"trunks": ["msd_vgg"], "beta": 1.0, "logit": True, "grouped": True}},
                             "off": {"features": ["msd_vgg"], "C": 0.1,
                                     "prior": {"trunks": ["msd_vgg"], "beta": 0.0, "logit": True, "grouped": True}}}))
    assert fold_model(p, "ft").prior == (1.0, True, True) and fold_model(p, "off").prior is None


def test_recommender_fold_heads_carry_the_shipped_tag_prior(monkeypatch):
    """With ``prior``, each fold's genre probabilities are the head's with the
    tag prior after it (statistics from the fold's training tracks); the
    embedding stays the head's."""
    import core.recommend.loso_data as rl
    from core.datasets.track import Track
    from core.models.trunks import TRUNKS
    from core.training.loso import loso_folds
    from core.training.loso_data import SourceData
    from core.training.loso_eval import fit_head
    from core.training.tag_prior_choice import PriorSetting, with_setting
    rng = np.random.default_rng(5)
    n, labels = 90, ["Jazz", "Rock", "Pop"]
    y = np.arange(n) % 3
    pen = rng.normal(size=(n, 4, 256)).astype(np.float32)
    pen[np.arange(n), :, y] += 0.2
    tags = rng.uniform(0.05, 0.3, size=(n, 4, 50)).astype(np.float32)
    for g, label in enumerate(labels):
        tags[y == g, :, TRUNKS["msd_vgg"].tags.index(label.lower())] += 0.1
    tracks = [Track(track_id=f"t{i}", path=f"/x/{i}.wav", genre=labels[y[i]], split="train",
                    source=f"s{(i // 3) % 3}") for i in range(n)]
    data = SourceData(tracks=tracks, labels=labels, y=y, patches={"msd_vgg": (pen, tags)}).with_patches(None)
    got = []
    monkeypatch.setattr(rl, "fold_catalog", lambda rows, emb, probs, lab, mfcc=None: got.append((emb["m"], probs["m"])))
    rl.fold_catalogs(data, 0.01, None, ["msd_vgg"], "m", head_form="patch")
    rl.fold_catalogs(data, 0.01, None, ["msd_vgg"], "m", head_form="patch", prior=(2.0, True, True))
    x = data.stacked(["msd_vgg"])
    for f, (emb, probs), (emb_p, probs_p) in zip(loso_folds(tracks), got[:3], got[3:]):
        head = fit_head(data, ["msd_vgg"], f.train, 0.01, head="patch")
        want = with_setting(head.logits(x[f.val]), x[f.val], x[f.train], labels, PriorSetting(("msd_vgg",), 2.0))
        assert np.array_equal(emb, emb_p) and np.array_equal(probs_p.argmax(1), want.argmax(1))
    assert all(not np.allclose(a[1], b[1], atol=1e-3) for a, b in zip(got[:3], got[3:]))


def test_the_recommender_loso_cache_key_reads_every_feature_value():
    """recommend-eval --loso caches its record by its settings and the fold
    model's features: a change in the last trunk's columns of the last track
    (an inference copy's new rounding) gives a new key; equal inputs, the same."""
    from core.recommend.loso_data import record_key
    x = np.random.default_rng(0).normal(size=(40, 900)).astype(np.float32)
    moved = x.copy()
    moved[-1, -1] += 1e-3
    settings = [{"seed": 0}, "grid", "model", ["t0"]]
    assert record_key(settings, x) == record_key(list(settings), x.copy())
    assert record_key(settings, moved) != record_key(settings, x)
    assert record_key(settings + ["other"], x) != record_key(settings, x)


def test_model_card_loso_section_names_folds_and_worst_genres(tmp_path):
    import json

    from core.training.loso_eval import FoldLogits, loso_report
    from core.training.model_card_loso import loso_lines, worst_genres

    rng = np.random.default_rng(0)
    folds = [FoldLogits(s, rng.normal(0, 1, (30, 3)), rng.integers(0, 3, 30), np.ones(30, bool)) for s in "ab"]
    rep = loso_report(folds)
    assert set(rep["folds"]) == {"a", "b"} and 0 <= rep["mean"]["ece"] <= 1
    rec = {"protocol": "p", "folds": [{"held_out": "a"}, {"held_out": "b"}], "fused": {**rep, "features": ["x"],
           "C": 0.1}, "cnn_msd": {**rep, "how": "h"}}
    (tmp_path / "loso.json").write_text(json.dumps(rec))
    per_genre = {"Jazz": {"recall": 0.9, "support": 3}, "Rock": {"recall": 0.1, "support": 2},
                 "Pop": {"recall": 0.5, "support": 0}}
    (tmp_path / "metrics.json").write_text(json.dumps({"models": {"fused": {"per_genre": per_genre}}}))
    text = "\n".join(loso_lines(tmp_path))
    assert "| fused | " in text and "| cnn_msd | " in text and "a acc / AUC / ECE" in text
    assert "- fused: Rock 0.10, Jazz 0.90" in text            # Pop has no test clips
    assert worst_genres(per_genre, 1) == [("Rock", 0.1)]


def test_genre_term_use_reports_a_shut_gate():
    from dataclasses import replace

    from core.recommend.evaluation import EvalConfig
    from core.recommend.loso import fold_catalog, genre_term_use

    rng = np.random.default_rng(1)
    g = np.repeat([0, 1], 10)
    rows = [{"track_id": f"t{i}", "genre": "AB"[g[i]], "artist": f"a{i}"} for i in range(20)]
    flat = fold_catalog(rows, {"m": rng.normal(0, 1, (20, 3))}, {"m": np.full((20, 2), 0.5)}, ["A", "B"])
    cfg = replace(EvalConfig(), model="m", n_listeners=10, genre_weight=0.6)
    assert genre_term_use(flat, replace(cfg, confidence="gate50")) == {"listeners": 10, "open_share": 0.0,
                                                                        "mean_weight": 0.0}
    assert genre_term_use(flat, replace(cfg, confidence="off"))["mean_weight"] == pytest.approx(0.6)


def test_recommender_fold_heads_are_fitted_with_the_shipped_augmented_copies(monkeypatch):
    """fold_catalogs fits each fold's head as the shipped one was: with
    ``copies`` augmented copies of the fold's training tracks among its rows
    (the embedding is standardised by that head, so it moves with them)."""
    import core.recommend.loso_data as rl
    from core.datasets.track import Track
    from core.training.linear_head import fit_linear_head
    from core.training.loso import loso_folds
    from core.training.loso_data import SourceData
    from core.training.loso_eval import with_augmented
    rng = np.random.default_rng(3)
    n, labels = 90, ["A", "B", "C"]
    y = np.arange(n) % 3
    pen = rng.normal(size=(n, 4, 6)).astype(np.float32)
    pen[np.arange(n), :, y] += 1.0
    aug = (pen[:, None] + 5.0 + rng.normal(size=(n, 1, 4, 6))).astype(np.float32)
    tracks = [Track(track_id=f"t{i}", path=f"/x/{i}.wav", genre=labels[y[i]], split="train",
                    source=f"s{(i // 3) % 3}") for i in range(n)]
    tags = rng.uniform(size=(n, 4, 50)).astype(np.float32)
    data = SourceData(tracks=tracks, labels=labels, y=y, patches={"t": (pen, tags)},
                      augmented={"t": (aug, tags[:, None])}).with_patches(None)
    got = []
    monkeypatch.setattr(rl, "fold_catalog", lambda rows, emb, probs, lab, mfcc=None: got.append(emb["m"]))
    rl.fold_catalogs(data, 0.1, None, ["t"], "m", copies=0)
    rl.fold_catalogs(data, 0.1, None, ["t"], "m", copies=1)
    plain, with_copies = got[:3], got[3:]
    f = loso_folds(tracks)[0]
    head = fit_linear_head(*with_augmented(data, ["t"], f.train, 1), 3, c=0.1)
    assert np.allclose(with_copies[0], (data.stacked(["t"])[f.val] - head.mean) / head.scale)
    assert not np.allclose(plain[0], with_copies[0])


def test_recommender_fold_heads_self_train_for_the_genre_terms_only(monkeypatch):
    """With ``adapt`` (frac, rounds), each fold's genre probabilities come from
    its head self-trained on the held-out tracks; the embedding stays the
    plain head's; self-training refuses augmented copies it would not refit with."""
    import pytest

    import core.recommend.loso_data as rl
    from core.datasets.track import Track
    from core.training.loso import loso_folds
    from core.training.loso_data import SourceData
    from core.training.loso_eval import fit_head
    from core.training.self_train import refit_head, self_train
    rng = np.random.default_rng(4)
    n, labels = 90, ["A", "B", "C"]
    y = np.arange(n) % 3
    pen = rng.normal(size=(n, 4, 6)).astype(np.float32)
    pen[np.arange(n), :, y] += 0.6
    pen[np.arange(n) % 9 >= 6] += 0.8                                      # the third source is shifted
    tracks = [Track(track_id=f"t{i}", path=f"/x/{i}.wav", genre=labels[y[i]], split="train",
                    source=f"s{(i // 3) % 3}") for i in range(n)]
    data = SourceData(tracks=tracks, labels=labels, y=y,
                      patches={"t": (pen, rng.uniform(size=(n, 4, 2)).astype(np.float32))}).with_patches(None)
    got = []
    monkeypatch.setattr(rl, "fold_catalog", lambda rows, emb, probs, lab, mfcc=None: got.append((emb["m"], probs["m"])))
    rl.fold_catalogs(data, 0.1, None, ["t"], "m", head_form="patch")
    rl.fold_catalogs(data, 0.1, None, ["t"], "m", head_form="patch", adapt=(1.0, 2))
    plain, adapted = got[:3], got[3:]
    x = data.stacked(["t"])
    for f, (emb, _), (emb_a, probs_a) in zip(loso_folds(tracks), plain, adapted):
        head = fit_head(data, ["t"], f.train, 0.1, head="patch")
        tuned = self_train(head, x[f.val], lambda r, g: refit_head(data, ["t"], "patch", 0.1, f.train, f.val[r], g),
                           1.0, 2)[-1]
        assert np.array_equal(emb, emb_a)
        assert np.array_equal(probs_a.argmax(1), tuned.logits(x[f.val]).argmax(1))
    assert any(not np.array_equal(p[1].argmax(1), a[1].argmax(1)) for p, a in zip(plain, adapted))
    with pytest.raises(ValueError, match="augmented copies"):
        rl.fold_catalogs(data, 0.1, None, ["t"], "m", copies=1, adapt=(1.0, 1))


def test_trunk_files_are_read_once_each_in_track_order_and_gaps_refused(tmp_path):
    from core.training.loso_data import FeatureSetError, read_trunk_files

    ids = ["a", "b", "c"]
    rng = np.random.default_rng(0)
    pooled, tags, pp = rng.normal(size=(3, 4)), rng.random((3, 2)), rng.normal(size=(3, 5, 4))
    np.savez(tmp_path / "with.npz", track_id=np.array(ids[::-1]), features=pooled[::-1], tags=tags[::-1],
             patch_features=pp[::-1], patch_tags=pp[::-1, :, :2])
    np.savez(tmp_path / "pooled.npz", track_id=np.array(ids), features=pooled, tags=tags)
    feats, patches = read_trunk_files(tmp_path, ["with", "pooled"], ids)
    assert np.allclose(feats["with"], np.concatenate([pooled, tags], 1))     # reordered to ``ids``
    assert np.allclose(feats["pooled"], feats["with"]) and list(patches) == ["with"]
    assert np.allclose(patches["with"][0], pp)
    with pytest.raises(FeatureSetError, match="no per-patch features"):
        read_trunk_files(tmp_path, ["with", "pooled"], ids, need_patches=True)
    with pytest.raises(FeatureSetError, match="no trunk features at"):
        read_trunk_files(tmp_path, ["absent"], ids)
    with pytest.raises(FeatureSetError, match="lacks 1 track"):
        read_trunk_files(tmp_path, ["pooled"], ids + ["d"])
