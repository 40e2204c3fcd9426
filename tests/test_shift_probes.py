"""benchmarks.shift_probes: the weights, standardisation, distances, logit
scales and genre-prior estimate its probes are built from."""

from __future__ import annotations

import json

import numpy as np
from scipy.special import softmax

from benchmarks.shift_probes import cell_weights, em_prior, fit_scale, head_cs, knn_distance, per_source_standardised
from core.training.linear_head import LinearHead


def test_cell_weights_give_every_source_genre_cell_the_same_total():
    source = np.array(["a"] * 6 + ["b"] * 2)
    y = np.array([0, 0, 0, 0, 1, 1, 0, 1])
    w = cell_weights(source, y)
    assert np.isclose(w.mean(), 1.0)
    totals = {(s, g): w[(source == s) & (y == g)].sum() for s, g in {*zip(source, y)}}
    assert np.allclose(list(totals.values()), 2.0)        # 8 rows over 4 cells


def test_per_source_standardised_centres_each_source_on_itself():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(5, 2, (40, 3)), rng.normal(-3, 0.5, (30, 3))])
    source = np.array(["a"] * 40 + ["b"] * 30)
    z = per_source_standardised(x, source)
    for s in "ab":
        assert np.allclose(z[source == s].mean(0), 0, atol=1e-9)
        assert np.allclose(z[source == s].std(0), 1, atol=1e-9)


def test_knn_distance_is_zero_on_the_training_rows_and_grows_away_from_them():
    rng = np.random.default_rng(1)
    xt = rng.normal(size=(20, 4))
    head = LinearHead(mean=np.zeros(4), scale=np.ones(4), weight=np.zeros((2, 4)), bias=np.zeros(2))
    assert np.allclose(knn_distance(head, xt, xt, k=1), 0, atol=1e-6)
    d = knn_distance(head, xt, np.stack([xt[0] + 0.1, xt[0] + 10.0]), k=1)
    assert d.shape == (2,) and d[0] < d[1]
    assert np.isclose(d[0], 0.1, atol=1e-6)               # 0.1 along each of 4 axes: 0.2 / √4
    assert 5.0 < d[1] <= 10.0 + 1e-9                       # at most its distance to xt[0], 20 / √4


def _drawn(rng, n: int, sharpen: float, d: float) -> dict:
    logits = rng.normal(size=(n, 5))
    y = np.array([rng.choice(5, p=p) for p in softmax(sharpen * logits, 1)])
    return {"logits": logits, "y": y, "seen": np.ones(n, bool), "d": np.full(n, d)}


def test_fit_scale_recovers_the_sharpening_the_labels_were_drawn_with():
    rng = np.random.default_rng(2)
    near = _drawn(rng, 3000, 3.0, 0.0)
    a, b = fit_scale([near], distance=False).params
    assert b == 0 and np.isclose(np.exp(a), 3.0, rtol=0.1)
    far = _drawn(rng, 3000, 1.0, 1.0)                      # a track far away: flatter
    scale = fit_scale([near, far], distance=True)
    a, b = scale.params
    assert np.isclose(np.exp(a), 3.0, rtol=0.15) and np.isclose(np.exp(a + b), 1.0, rtol=0.15)
    x = near["logits"][:2]
    assert np.allclose(scale(x, np.array([0.0, 1.0])), x * np.exp([[a], [a + b]]))


def test_em_prior_recovers_a_shifted_genre_mix_and_alpha_pulls_it_to_uniform():
    rng = np.random.default_rng(3)
    true_mix = np.array([0.6, 0.3, 0.1])
    y = rng.choice(3, size=4000, p=true_mix)
    # Exact posteriors under a uniform prior: x ~ N(genre, 1) on a line.
    x = y + rng.normal(size=len(y))
    log_lik = -0.5 * (x[:, None] - np.arange(3)[None]) ** 2
    log_prob = log_lik - np.log(np.exp(log_lik).sum(1, keepdims=True))
    mix = em_prior(log_prob)
    assert np.allclose(mix, true_mix, atol=0.04) and np.isclose(mix.sum(), 1.0)
    pulled = em_prior(log_prob, alpha=1e6)
    assert np.allclose(pulled, 1 / 3, atol=0.01)
    halfway = em_prior(log_prob, alpha=4000)
    assert mix[0] > halfway[0] > pulled[0]


def test_head_cs_reads_step_1c_and_the_shipped_per_patch_head_from_loso_json(tmp_path):
    extra = {"C": 3e-5}
    assert head_cs(tmp_path, extra) == {"clip": 3e-5}                       # no loso.json: the shipped C
    record = {"fused_trunks": {"augment_choice": {"C": 1e-4}, "head": "clip", "C": 1e-4}}
    (tmp_path / "loso.json").write_text(json.dumps(record))
    assert head_cs(tmp_path, extra) == {"clip": 1e-4}
    record["fused_trunks"].update(head="patch", C=3e-5)
    (tmp_path / "loso.json").write_text(json.dumps(record))
    assert head_cs(tmp_path, extra) == {"clip": 1e-4, "patch": 3e-5}
