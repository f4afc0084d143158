"""Turn model logits into predictions and metrics, the same way for dev, test and `tunelab eval`."""

from __future__ import annotations

from typing import Any

import numpy as np

from tunelab.predict.inference import sigmoid, softmax


def multi_hot(labels: list[list[int]], num_labels: int) -> np.ndarray:
    hot = np.zeros((len(labels), num_labels), dtype=np.int64)
    for row, ids in enumerate(labels):
        hot[row, ids] = 1
    return hot


def score_logits(
    logits: np.ndarray,
    labels: list[Any],
    *,
    task: str,
    label_names: list[str],
    threshold: float | None = None,
) -> tuple[dict[str, Any], float | None]:
    """Metrics (with ``loss``) for logits against encoded labels.

    For multi-label data the decision threshold is tuned on these labels when ``threshold`` is
    None (dev), and applied as given otherwise (test, eval), so test numbers never see test labels.

    Returns:
        (metrics, threshold used; None for single-label)
    """
    from tunelab.evaluate.metrics import compute_metrics, tune_threshold

    if task == "multi_label":
        y_true = multi_hot(labels, len(label_names))
        probs = sigmoid(logits)
        eps = 1e-7
        loss = float(-np.mean(y_true * np.log(probs + eps) + (1 - y_true) * np.log(1 - probs + eps)))
        if threshold is None:
            threshold = float(tune_threshold(probs, y_true))
        y_pred = (probs >= threshold).astype(np.int64)
        metrics = compute_metrics(y_true, y_pred, label_names, task)
    else:
        y_true = np.asarray(labels, dtype=np.int64)
        probs = softmax(logits)
        loss = float(-np.mean(np.log(probs[np.arange(len(y_true)), y_true] + 1e-12)))
        metrics = compute_metrics(y_true.tolist(), probs.argmax(axis=1).tolist(), label_names, task)
    metrics["loss"] = loss
    if threshold is not None:
        metrics["threshold"] = threshold
    return metrics, threshold


HEADLINE_KEYS = ("loss", "accuracy", "macro_f1", "micro_f1", "weighted_f1", "threshold")


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics worth logging each evaluation (not the per-class tables)."""
    return {k: float(metrics[k]) for k in HEADLINE_KEYS if k in metrics and metrics[k] is not None}
