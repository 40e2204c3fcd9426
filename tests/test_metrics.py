"""core.training.metrics: per-genre metrics, bootstrap intervals, paired tests."""

import numpy as np
import pytest

from core.training.metrics import classification_report, macro_auc, paired_comparison


def _probs(y, n, strength, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random((len(y), n))
    p[np.arange(len(y)), y] += strength
    return p / p.sum(1, keepdims=True)


def test_perfect_and_chance():
    y = np.repeat(np.arange(3), 20)
    perfect = np.eye(3)[y]
    assert macro_auc(y, perfect) == 1.0
    rep = classification_report(y, perfect, ["a", "b", "c"], n_boot=50)
    assert rep["macro"]["f1"] == 1.0 and rep["macro"]["accuracy"] == 1.0
    assert rep["confusion"]["matrix"] == [[20, 0, 0], [0, 20, 0], [0, 0, 20]]
    chance = _probs(y, 3, 0.0)
    assert abs(macro_auc(y, chance) - 0.5) < 0.15


def test_report_fields_and_ci_contain_estimate():
    y = np.repeat(np.arange(4), 25)
    rep = classification_report(y, _probs(y, 4, 0.6), list("wxyz"), n_boot=200)
    m = rep["macro"]
    lo, hi = m["roc_auc_ci95"]
    assert lo <= m["roc_auc"] <= hi
    g = rep["per_genre"]["w"]
    assert set(g) >= {"precision", "recall", "f1", "roc_auc", "support", "f1_at_0.5"}
    assert g["support"] == 25
    assert len(rep["roc"]["w"]["fpr"]) == len(rep["roc"]["w"]["tpr"])


def test_absent_genre_does_not_crash():
    y = np.array([0, 0, 1, 1])
    rep = classification_report(y, _probs(y, 3, 0.5), ["a", "b", "c"], n_boot=10)
    assert rep["per_genre"]["c"]["support"] == 0
    assert np.isnan(rep["per_genre"]["c"]["roc_auc"])
    assert "c" not in rep["roc"]


def test_paired_comparison_detects_a_better_model():
    y = np.repeat(np.arange(3), 60)
    weak, strong = _probs(y, 3, 0.1, seed=1), _probs(y, 3, 1.5, seed=2)
    res = paired_comparison(y, weak, strong, n_boot=300)
    assert res["auc_diff"] > 0.2
    assert res["auc_diff_ci95"][0] > 0
    assert res["mcnemar"]["p"] < 0.01
    same = paired_comparison(y, weak, weak, n_boot=50)
    assert same["auc_diff"] == 0 and same["mcnemar"]["p"] == pytest.approx(1.0)


def test_fast_auc_equals_sklearn():
    from sklearn.metrics import roc_auc_score

    from core.training.metrics import binary_auc
    rng = np.random.default_rng(3)
    for _ in range(20):
        t = rng.integers(0, 2, 40)
        s = rng.integers(0, 5, 40) / 4.0      # many ties
        if 0 < t.sum() < 40:
            assert binary_auc(t, s) == pytest.approx(roc_auc_score(t, s))
    assert np.isnan(binary_auc(np.ones(5), np.arange(5)))
