"""Confidence calibration for single-label classifiers: temperature scaling and its error measure.

A fine-tuned classifier's softmax says 1.000 / 0.000 on almost everything, which is useless as a
decision threshold (answer, look up, or hand off to a person). Temperature scaling (Guo et al.,
2017) divides the logits by one number T fitted on dev data: the arg-max and therefore accuracy are
unchanged, only the confidence becomes honest. Expected calibration error (ECE) says how far the
confidence is from the accuracy actually reached, before and after.

Why not scikit-learn's ``CalibratedClassifierCV(method="temperature")``: it fits the same thing, but
keeps T in a private attribute of a fitted estimator, while a deployed artifact needs T as a plain
number it can apply to logits anywhere (ONNX Runtime, the service) without pickling an estimator.
The fit itself is scipy's bounded scalar minimiser on the log-loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tunelab.inference.forward import softmax

#: Equal-width confidence bins for ECE, the usual choice (Guo et al. use 15).
ECE_BINS = 15
# T outside this range means the logits carry no usable confidence at all; clamp rather than fail.
_LOG_T_BOUNDS = (np.log(0.05), np.log(100.0))


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and what it did on the data it was fitted on.

    Attributes:
        temperature: divide logits by this before the softmax.
        ece_before: expected calibration error of the raw softmax (0..1).
        ece_after: the same after dividing by ``temperature``.
        nll_before: mean negative log-likelihood of the true labels, raw.
        nll_after: the same, calibrated.
    """

    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    fitted: bool = True  # False: every row right, nothing to fit (temperature 1 kept)

    def to_dict(self) -> dict[str, float | bool]:
        return {k: v if isinstance(v, bool) else round(float(v), 6) for k, v in self.__dict__.items()}


def calibrated_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / temperature)``, (N, L)."""
    return softmax(np.asarray(logits, dtype=np.float64) / temperature)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, *, bins: int = ECE_BINS) -> float:
    """Top-label ECE: the sample-weighted mean |accuracy - confidence| over confidence bins.

    Written here because scikit-learn's ``calibration_curve`` covers binary problems only.

    Args:
        probs: (N, L) class probabilities.
        labels: (N,) true class ids.
        bins: number of equal-width bins over (0, 1].
    """
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if not len(labels):
        return 0.0
    confidence = probs.max(axis=1)  # (N,)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)  # (N,)
    # Bin k holds confidences in (k/bins, (k+1)/bins]; a confidence of exactly 0 joins bin 0.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for k in range(bins):
        members = which == k
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    probs = calibrated_probabilities(logits, temperature)
    return float(-np.mean(np.log(probs[np.arange(len(labels)), labels] + 1e-12)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> Calibration:
    """Fit T on held-out (dev) logits and labels by minimising the log-loss.

    When every row is predicted right there is no minimum (T -> 0): T = 1 is kept and
    ``fitted`` is False, for the caller to say so.

    Args:
        logits: (N, L) raw model outputs on data the model was not trained on.
        labels: (N,) true class ids.

    Raises:
        ValueError: no rows, or shapes that do not match (a caller's bug, not user input).
    """
    from scipy.optimize import minimize_scalar

    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or len(logits) != len(labels) or not len(labels):
        raise ValueError(f"fit_temperature: logits {logits.shape} and labels {labels.shape} do not match")
    separable = bool((logits.argmax(axis=1) == labels).all())
    if separable:
        # Every row right: the log-loss keeps falling as T goes to 0, so the fit ended at the bound
        # (T = 0.05, 20x sharper) and made every later answer near-certain, an ambiguous one too,
        # while its ECE on these rows read ~0. Nothing to fit: T stays 1.
        temperature = 1.0
    else:
        # Optimise log T: T > 0 for free, and the loss is far better conditioned in it.
        found = minimize_scalar(
            lambda log_t: _nll(logits, labels, float(np.exp(log_t))), bounds=_LOG_T_BOUNDS, method="bounded"
        )
        temperature = float(np.exp(found.x))
    return Calibration(
        fitted=not separable,
        temperature=temperature,
        ece_before=expected_calibration_error(softmax(logits), labels),
        ece_after=expected_calibration_error(calibrated_probabilities(logits, temperature), labels),
        nll_before=_nll(logits, labels, 1.0),
        nll_after=_nll(logits, labels, temperature),
    )
