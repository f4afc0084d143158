"""Decision threshold for multi-label classification, tuned on the dev split.

A sigmoid output of 0.5 is a poor default when labels are rare: the model learns to keep
probabilities low and recall suffers. One global threshold picked on dev is cheap, hard to
overfit, and is what gets saved with the model for prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

DEFAULT_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""Candidate thresholds 0.05, 0.10, ..., 0.95."""


def tune_threshold(probs: ArrayLike, y_true: ArrayLike, *, grid: Sequence[float] = DEFAULT_GRID) -> float:
    """Pick the global threshold that maximises micro-F1 of ``probs >= threshold`` against ``y_true``.

    Micro-F1 rather than macro: with many rare labels macro-F1 jumps with a handful of examples,
    so the pick would be noise. Ties go to the candidate closest to 0.5 (then the lower one), so
    a flat optimum keeps the conventional default.

    Args:
        probs: Per-label probabilities, shape (n, n_labels).
        y_true: Multi-hot 0/1 gold labels, shape (n, n_labels).
        grid: Candidate thresholds.

    Returns:
        The chosen threshold as a float.

    Raises:
        ValueError: If the shapes differ or are not 2-D, ``y_true`` is not 0/1, or ``grid`` is empty.

    Example:
        >>> tune_threshold(np.array([[0.3, 0.1], [0.2, 0.4]]), np.array([[1, 0], [0, 1]]))
        0.3
    """
    scores = np.asarray(probs, dtype=float)
    gold = np.asarray(y_true)
    if scores.ndim != 2 or scores.shape != gold.shape:
        raise ValueError(
            f"probs and y_true must both have shape (n, n_labels), got {scores.shape} and {gold.shape}"
        )
    if not np.isin(gold, (0, 1)).all():
        raise ValueError("y_true must hold only 0 and 1")
    if len(grid) == 0:
        raise ValueError("grid of candidate thresholds is empty")
    positive = gold.astype(bool)

    best_threshold, best_f1 = 0.5, -1.0
    # Visit candidates nearest 0.5 first and only move on a strict improvement: that is the tie rule.
    for threshold in sorted(grid, key=lambda t: (abs(t - 0.5), t)):
        f1 = _micro_f1(scores >= threshold, positive)
        if f1 > best_f1:
            best_threshold, best_f1 = float(threshold), f1
    return best_threshold


def _micro_f1(pred: np.ndarray, gold: np.ndarray) -> float:
    true_pos = int(np.sum(pred & gold))
    wrong = int(np.sum(pred ^ gold))  # false positives + false negatives
    denominator = 2 * true_pos + wrong
    return 2 * true_pos / denominator if denominator else 0.0
