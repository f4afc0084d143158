"""Temperature scaling and expected calibration error (tunelab.evaluate.calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from tunelab.evaluate.calibration import (
    calibrated_probabilities,
    expected_calibration_error,
    fit_temperature,
)
from tunelab.inference.forward import softmax


def _sampled(n: int = 4000, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true label distribution: perfectly calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)) * 2.0
    probs = softmax(logits)
    labels = np.array([rng.choice(classes, p=row) for row in probs])
    return logits, labels


def test_ece_by_hand() -> None:
    # Two bins used: confidence 0.9 (2 rows, 1 right -> |0.5 - 0.9| = 0.4) and 0.6 (2 rows, both right
    # -> |1.0 - 0.6| = 0.4): weighted mean 0.4.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.4)


def test_a_calibrated_model_has_small_ece_and_a_temperature_near_one() -> None:
    logits, labels = _sampled()
    fitted = fit_temperature(logits, labels)
    assert fitted.temperature == pytest.approx(1.0, abs=0.1)
    assert fitted.ece_before < 0.03


def test_an_overconfident_model_is_cooled_and_its_ece_falls() -> None:
    logits, labels = _sampled()
    fitted = fit_temperature(logits * 5.0, labels)  # five times too sure of itself
    assert fitted.temperature == pytest.approx(5.0, rel=0.15)
    assert fitted.ece_before > 0.1 and fitted.ece_after < 0.03
    assert fitted.nll_after < fitted.nll_before


def test_calibration_never_changes_the_predicted_class() -> None:
    logits, labels = _sampled(n=500)
    fitted = fit_temperature(logits * 3.0, labels)
    before = softmax(logits * 3.0).argmax(axis=1)
    after = calibrated_probabilities(logits * 3.0, fitted.temperature).argmax(axis=1)
    np.testing.assert_array_equal(before, after)


def test_mismatched_shapes_are_a_caller_error() -> None:
    with pytest.raises(ValueError, match="do not match"):
        fit_temperature(np.zeros((3, 2)), np.zeros(4, dtype=int))


def test_dev_rows_all_predicted_right_keep_the_temperature_at_one() -> None:
    """The log-loss falls without end as T goes to 0: the fit stopped at the bound, T = 0.05, and an
    ambiguous text later came out 88% sure, while the ECE on these rows read about 0."""
    logits = np.array([[0.4, 0.0, 0.0], [0.0, 0.4, 0.0], [0.0, 0.0, 0.4]] * 2)
    fitted = fit_temperature(logits, np.array([0, 1, 2] * 2))
    assert (fitted.temperature, fitted.fitted) == (1.0, False)
    assert fitted.to_dict()["fitted"] is False
    assert fit_temperature(*_sampled(n=200)).fitted is True
