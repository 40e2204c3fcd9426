"""Temperature scaling: it lowers log-loss and ECE of an over-confident
model, keeps the ranking, and its measures behave at the edges."""

import numpy as np
import pytest

from core.training.calibration import (
    calibration_report,
    ece_sampling_floor,
    expected_calibration_error,
    fit_temperature,
    log_loss,
    softmax_t,
)


def _overconfident(n: int = 2000, g: int = 5, seed: int = 0):
    """Logits whose softmax is sharper than the truth: labels are drawn from
    softmax(z / 3), the model reports z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, g))
    p_true = softmax_t(z, 3.0)
    y = np.array([rng.choice(g, p=p) for p in p_true])
    return z, y


def test_temperature_recovers_the_true_scale_and_lowers_loss():
    z, y = _overconfident()
    t = fit_temperature(z, y)
    assert 2.4 < t < 3.6
    before, after = softmax_t(z, 1.0), softmax_t(z, t)
    assert log_loss(after, y) < log_loss(before, y) - 0.2
    assert expected_calibration_error(after, y) < 0.03 < expected_calibration_error(before, y)
    assert np.array_equal(before.argmax(1), after.argmax(1))          # ranking unchanged


def test_report_has_before_and_after():
    z, y = _overconfident(500, seed=1)
    sig = 1 / (1 + np.exp(-z))
    rep = calibration_report(z, sig, y, fit_temperature(z, y))
    assert rep["calibrated"]["log_loss"] < rep["uncalibrated_softmax"]["log_loss"]
    assert set(rep["sigmoid"]) == {"ece", "log_loss", "ece_top_sigmoid"}


def test_ece_edges():
    y = np.array([0, 1, 0, 1])
    perfect = np.eye(2)[y]
    assert expected_calibration_error(perfect, y) == pytest.approx(0.0)
    wrong = np.eye(2)[1 - y]
    assert expected_calibration_error(wrong, y) == pytest.approx(1.0)
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, int)) == 1.0


def _ece_by_loop(probs, y, n_bins=10):
    """The textbook definition, bin by bin (the reference for the vectorised one)."""
    conf, correct = probs.max(1), (probs.argmax(1) == y).astype(float)
    edges, ece = np.linspace(0.0, 1.0, n_bins + 1), 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return ece


def test_ece_matches_the_bin_by_bin_definition_even_on_bin_edges():
    z, y = _overconfident(700, seed=3)
    for p in (softmax_t(z, 1.0), softmax_t(z, 2.5)):
        assert expected_calibration_error(p, y) == pytest.approx(_ece_by_loop(p, y), abs=1e-12)
    edges = np.array([[0.3, 0.7], [0.5, 0.5], [0.6, 0.4], [1.0, 0.0], [0.2, 0.8]])   # confidences on bin edges
    yy = np.array([0, 1, 1, 0, 1])
    assert expected_calibration_error(edges, yy, 10) == pytest.approx(_ece_by_loop(edges, yy, 10), abs=1e-12)


def test_sampling_floor_is_what_a_calibrated_model_shows_and_shrinks_with_n():
    """A model that is calibrated by construction (labels drawn from its own
    probabilities) shows an ECE inside the floor's 5–95 % range on N tracks,
    and the floor falls roughly as 1/√N."""
    rng = np.random.default_rng(4)
    inside = 0
    for seed in range(20):
        z, _ = _overconfident(100, seed=seed)
        p = softmax_t(z, 1.0)
        y = np.array([rng.choice(p.shape[1], p=row) for row in p])
        f = ece_sampling_floor(p, draws=500, seed=seed)
        inside += f["p05"] <= expected_calibration_error(p, y) <= f["p95"]
        assert f["n"] == 100 and f["p05"] < f["mean"] < f["p95"]
    assert inside >= 15                                     # ~90 % expected
    z, _ = _overconfident(1600, seed=9)
    p = softmax_t(z, 1.0)
    small, large = ece_sampling_floor(p[:100], draws=500), ece_sampling_floor(p, draws=500)
    assert 2.5 < small["mean"] / large["mean"] < 5.5        # √16 = 4
    assert ece_sampling_floor(np.zeros((0, 3)))["n"] == 0
