"""The zero-shot genre prior from the trunks' genre-named tags
(core.models.tag_prior), served after the fused_trunks head, and its choice
leave-one-source-out with the in-source guard (core.training.tag_prior_choice)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.special import log_softmax
from test_fused_trunks import LABELS, stub_bank  # noqa: F401  (fixture)

from core.models.tag_prior import genre_tag_matrix, prior_log_probs, score_stats, tag_scores, with_prior
from core.models.trunks import TRUNKS


def _tag_column(trunks, trunk: str, tag: str) -> int:
    """Where ``trunk``'s ``tag`` sits in the bank vector of ``trunks``."""
    offset = 0
    for name in trunks:
        spec = TRUNKS[name]
        if name == trunk:
            return offset + spec.feature_dim + spec.tags.index(tag)
        offset += spec.feature_dim + len(spec.tags)
    raise KeyError(trunk)


def test_tag_matrix_covers_genres_a_tag_names_and_averages_over_trunks():
    labels = ["Classical", "Hip-Hop", "Latin", "Jazz", "Rock"]
    msd = genre_tag_matrix(["msd_vgg", "msd_musicnn"], labels)
    assert msd.any(1).tolist() == [False, True, False, True, True]     # MSD's tags never name Classical
    trunks = ["msd_vgg", "msd_musicnn", "mtt_vgg"]
    m = genre_tag_matrix(trunks, labels)
    assert m.shape == (5, sum(TRUNKS[t].feature_dim + 50 for t in trunks))
    assert m.any(1).tolist() == [True, True, False, True, True]        # MTT's "classical"; no tag says Latin
    rock = [_tag_column(trunks, "msd_vgg", "rock"), _tag_column(trunks, "msd_musicnn", "rock"),
            _tag_column(trunks, "mtt_vgg", "rock")]
    assert np.allclose(m[4, rock], 1 / 3) and np.isclose(m[4].sum(), 1.0)
    assert m[0, _tag_column(trunks, "mtt_vgg", "classical")] == 1.0
    x = np.full((1, m.shape[1]), 0.1)
    x[0, rock] = (0.8, 0.5, 0.2)
    x[0, :10] = 7.0                                                    # penultimate columns: never read
    assert np.allclose(tag_scores(torch.tensor(x), torch.tensor(m), False)[0, 4], 0.5)
    logit = tag_scores(torch.tensor(x), torch.tensor(m), True)[0].numpy()
    assert np.isclose(logit[4], np.mean(np.log([0.8 / 0.2, 1.0, 0.2 / 0.8]))) and logit[2] == 0.0


def test_grouped_keeps_the_uncovered_genres_mass_and_add_does_not():
    head = torch.log_softmax(torch.tensor([[2.0, 1.0, 1.5]]), 1)      # genre 2 uncovered
    covered = torch.tensor([0, 1])                                     # covered genres' indices
    z = torch.tensor([[-1.0, 2.0, 5.0]])                               # an uncovered z is never read
    grouped, added = (with_prior(head, z, covered, 1.0, g).exp() for g in (True, False))
    for p in (grouped, added):
        assert torch.isclose(p.sum(), torch.tensor(1.0))
        assert p[0, 1] > p[0, 0]                                       # the tag turns the covered ranking
    assert torch.isclose(grouped[0, 2], head[0, 2].exp())              # uncovered mass kept…
    assert added[0, 2] < head[0, 2].exp() - 0.05                       # …or lost
    assert torch.allclose(with_prior(head, z, covered, 0.0, True), head)


def test_the_prior_reads_its_settings_once_per_set_or_load_and_indexes_covered_genres():
    """TagPrior keeps beta / logit / grouped as Python values (no device sync per
    call), re-read after set() and after a state load; it holds the covered
    genres as indices."""
    from core.models.tag_prior import TagPrior
    p = TagPrior(["msd_vgg"], ["Jazz", "Rock", "Latin"])
    assert not p.on and p.covered_idx.tolist() == [0, 1]
    off = {k: v.clone() for k, v in p.state_dict().items()}
    p.set(1.0, True, False, np.zeros(3), np.ones(3), np.ones(3), np.zeros(3))
    assert p.on and p.flags() == (1.0, True, False)
    p.beta.fill_(0.0)                   # a buffer written behind its back is not re-read per call…
    assert p.on
    p.load_state_dict(off)              # …a load is
    assert not p.on


def test_prior_statistics_come_from_the_given_tracks():
    m = genre_tag_matrix(["msd_vgg"], ["Jazz", "Latin"])
    col = _tag_column(["msd_vgg"], "msd_vgg", "jazz")
    x = np.full((3, m.shape[1]), 0.1)
    x[:, col] = (0.2, 0.4, 0.3)
    mean, std = score_stats(x[:2], m, False)
    assert np.isclose(mean[0], 0.3) and np.isclose(std[0], 0.1)
    lp = prior_log_probs(np.zeros((3, 2)), x, m, mean, std, 1.0, False, False)
    assert np.allclose(np.exp(lp).sum(1), 1)
    assert lp[1, 0] > lp[2, 0] > lp[0, 0] and np.isclose(lp[2, 0], np.log(0.5))   # z = +1, 0, −1


def test_prior_is_served_after_the_head_and_travels_in_the_file(stub_bank, tmp_path):  # noqa: F811
    """The model's logits are the numpy arithmetic's, calibrated after the
    prior; save and load keep it; a file from before the prior loads without one."""
    from safetensors.torch import load_file

    from core.models import build_model
    from core.models.artifacts import load_model, save_model, update_manifest
    from core.models.fused_trunks import FusedTrunks
    trunks = ["msd_vgg", "mtt_vgg"]
    model = FusedTrunks(LABELS, trunks=trunks)
    rng = np.random.default_rng(0)
    d = model.input_dim
    model.set_head(np.zeros(d), np.ones(d), rng.normal(size=(3, d)) * 0.01, rng.normal(size=3), 1.0)
    x = rng.uniform(0.01, 0.99, size=(5, d)).astype(np.float32)
    with torch.no_grad():
        plain = model.head_outputs(torch.tensor(x))[1].numpy()
    m = genre_tag_matrix(trunks, LABELS)
    mean, std = score_stats(x, m, True)
    scale, shift = np.array([0.8, 1.2, 1.0]), np.array([0.1, 0.0, -0.1])
    model.set_prior(2.0, True, True, mean, std, scale, shift)
    with torch.no_grad():
        served = model.head_outputs(torch.tensor(x))[1].numpy()
    want = prior_log_probs(plain, x, m, mean, std, 2.0, True, True) * scale + shift
    assert np.allclose(served, want, atol=1e-4) and not np.allclose(log_softmax(served, 1), log_softmax(plain, 1))
    save_model(model.eval(), tmp_path)
    update_manifest(tmp_path)
    loaded = load_model("fused_trunks", tmp_path)
    assert loaded.trunks == trunks and loaded.prior.on
    with torch.no_grad():
        assert np.allclose(loaded.head_outputs(torch.tensor(x))[1].numpy(), served, atol=1e-6)
    state = {k: v for k, v in load_file(str(tmp_path / "fused_trunks.safetensors")).items()
             if not k.startswith("prior.")}
    old = build_model("fused_trunks", LABELS)
    old.load_saved_state(state)
    with torch.no_grad():
        assert not old.prior.on and np.allclose(old.head_outputs(torch.tensor(x))[1].numpy(), plain, atol=1e-6)


def _tagged_data(n=150, seed=3, tag=0.2):
    """Two trunks' per-patch outputs of ``n`` tracks in three sources: the
    genre moves a penultimate unit that differs per source (what a head
    learns on two sources misses on the third) and raises each genre's own
    tag (MSD's "jazz", "rock", "pop") by ``tag`` on every source."""
    from test_fused_trunks import _patch_data
    data = _patch_data(n=n, signal=0.0, seed=seed)
    src = np.array([int(t.source[1:]) for t in data.tracks])
    for name in ("msd_vgg", "msd_musicnn"):
        pen, tags = data.patches[name]
        pen[np.arange(n), :, data.y + 3 * src] += 1.0
        for g, label in enumerate(LABELS):
            tags[data.y == g, :, TRUNKS[name].tags.index(label.lower())] += tag
    tracks = [replace(t, split=("train", "train", "val")[(i // 3) % 3] if i % 5 else "test")
              for i, t in enumerate(data.tracks)]
    return replace(data, tracks=tracks).with_patches(None)


def test_prior_is_chosen_leave_one_source_out_under_the_in_source_guard():
    from core.training.loso import loso_folds
    from core.training.loso_eval import linear_fold_logits
    from core.training.tag_prior_choice import BETAS, choose_prior, served_sets, settings
    data = _tagged_data()
    folds = loso_folds(data.tracks)
    assert served_sets(data, ["msd_vgg"]) == [("msd_vgg",), ("msd_vgg", "msd_musicnn")]
    assert served_sets(data, ["msd_vgg", "msd_musicnn"]) == [("msd_vgg", "msd_musicnn")]
    base = linear_fold_logits(data, folds, ["msd_vgg"], 0.01, head="patch")
    got = choose_prior(data, folds, ["msd_vgg"], 0.01, 0, "patch", base, log=lambda s: None)
    rows = got.pop("rows")
    assert len(rows) == 2 * len(settings(("msd_vgg",))) == 2 * (1 + 2 * 2 * len(BETAS))
    guard = rows[0]
    assert rows[0]["beta"] == 0 and rows[0]["trunks"] == ["msd_vgg"]
    ok = [r for r in rows if r["val"]["accuracy"] >= guard["val"]["accuracy"]
          and r["val"]["macro_auc"] >= guard["val"]["macro_auc"]]
    best = max(ok, key=lambda r: (r["mean"]["accuracy"], r["mean"]["macro_auc"], -len(r["trunks"]), -r["beta"]))
    assert got["chosen"] == {k: best[k] for k in ("trunks", "beta", "logit", "grouped")}
    # The tags hold the genre on every source, the penultimate layer not on a held-out one: the prior wins.
    assert got["chosen"]["beta"] > 0 and best["mean"]["accuracy"] > guard["mean"]["accuracy"] + 0.1
    assert [f.held_out for f in got["_fold_logits"]] == [f.held_out for f in folds]


@pytest.mark.parametrize("grouped", [True, False])
def test_trained_model_serves_the_chosen_prior(stub_bank, grouped):  # noqa: F811
    from core.training.fused_trunks_train import served_probs, train_fused_trunks
    from core.training.loso_calibration import CalibrationMap
    from core.training.loso_eval import fit_head
    from core.training.tag_prior_choice import PriorSetting, with_setting
    data = _tagged_data()
    names = ["msd_vgg", "msd_musicnn"]
    prior = PriorSetting(tuple(names), 1.0, True, grouped)
    cmap = CalibrationMap("temperature", np.full(3, 0.7), np.zeros(3))
    model, head = train_fused_trunks(data, names, 0.01, cmap, head_form="patch", prior=prior)
    tr = np.flatnonzero([t.split == "train" for t in data.tracks])
    assert np.allclose(head.weight, fit_head(data, names, tr, 0.01, 0, "patch").weight)
    x = data.stacked(names)
    want = np.exp(log_softmax(with_setting(head.logits(x), x, x[tr], LABELS, prior) * 0.7, 1))
    assert np.allclose(served_probs(model, x), want, atol=1e-4)


def test_refit_from_a_record_redoes_steps_1e_to_3_and_keeps_the_earlier_rows(stub_bank):  # noqa: F811
    from core.training.fused_trunks_train import refit_from_record, served_probs
    from core.training.loso import loso_folds
    from core.training.model_card_loso import prior_lines
    data = _tagged_data()
    old = {"features": ["msd_vgg"], "C": 0.01, "patches": None, "augment": 0, "head": "patch",
           "head_choice": {"rows": ["as recorded"]}, "calibration": {"best": "stale"}}
    record, model = refit_from_record(data, loso_folds(data.tracks), old, log=lambda s: None)
    assert record["head_choice"] == old["head_choice"] and record["head_features"] == ["msd_vgg"]
    assert record["calibration"]["best"] != "stale" and record["prior"]["beta"] > 0
    assert model.trunks == record["features"] == record["prior"]["trunks"] and model.prior.on
    va = np.flatnonzero([t.split == "val" for t in data.tracks])
    p = served_probs(model, data.stacked(model.trunks)[va])
    assert np.isclose(record["in_source_val"]["accuracy"], (p.argmax(1) == data.y[va]).mean())
    table = "\n".join(prior_lines(record["prior_choice"], "fused_trunks"))
    assert table.count("(shipped)") == 1 and "| no prior |" in table
