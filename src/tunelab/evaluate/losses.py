"""The losses evaluation reports (dev, test, eval, export parity), computed exactly from logits.

``log(softmax + 1e-12)`` in float32 capped a confident mistake at 27.6 whatever its logit gap (and
sigmoid's ``+ 1e-7`` at 16.1), where training's loss (torch) is exact: a selection on the dev loss,
the tie-break on it and the over-fitting note compared a capped number. scipy's log-softmax and
log-sigmoid in float64 need no epsilon.
"""

from __future__ import annotations

import numpy as np


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``-log softmax(logits)[target]`` per row, exact in float64 (scipy's log-softmax)."""
    from scipy.special import log_softmax

    log_probs = log_softmax(np.asarray(logits, dtype=np.float64), axis=-1)
    return -log_probs[np.arange(len(targets)), targets]


def bce_loss(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean binary cross-entropy of per-label ``logits`` against 0/1 ``targets``, exact in float64:
    ``-log sigmoid(x)`` and ``-log(1 - sigmoid(x))`` as scipy's ``log_expit(x)``, ``log_expit(-x)``."""
    from scipy.special import log_expit

    x = np.asarray(logits, dtype=np.float64)
    return float(-np.mean(targets * log_expit(x) + (1 - targets) * log_expit(-x)))
