"""Temperature scaling: it lowers log-loss and ECE of an over-confident
model, keeps the ranking, and its measures behave at the edges."""

import numpy as np
import pytest

from core.training.calibration import (
    calibration_report,
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
