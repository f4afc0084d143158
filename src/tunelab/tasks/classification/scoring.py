"""Logits -> predictions, metrics and agreement, the same way for dev, test, eval and export parity.

For multi-label data the decision threshold is tuned on dev (``threshold`` None) and applied as
given everywhere else, so test numbers never see test labels.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from tunelab.evaluate.losses import bce_loss, cross_entropy
from tunelab.inference.forward import sigmoid, softmax

if TYPE_CHECKING:
    from tunelab.evaluate.mistakes import Mistakes


def score(
    logits: np.ndarray, labels: list[Any], label_names: list[str], *, multi: bool, threshold: float | None
) -> tuple[dict[str, Any], float | None]:
    """Metrics (with ``loss``) of ``logits`` (N, L) against encoded labels; (metrics, threshold).

    The threshold is None for single-label data (the arg-max decides), whatever was given.
    """
    from tunelab.evaluate.metrics import compute_metrics, multi_hot, tune_threshold

    if multi:
        y_true = multi_hot(labels, len(label_names))
        probs = sigmoid(logits)
        loss = bce_loss(logits, y_true)
        if threshold is None:
            threshold = float(tune_threshold(probs, y_true))
        y_pred = (probs >= threshold).astype(np.int64)
        metrics = compute_metrics(y_true, y_pred, label_names, multi_label=True)
    else:
        threshold = None
        y_true_ids = np.asarray(labels, dtype=np.int64)
        probs = softmax(logits)
        loss = float(np.mean(cross_entropy(logits, y_true_ids)))
        metrics = compute_metrics(y_true_ids.tolist(), probs.argmax(axis=1).tolist(), label_names)
    metrics["loss"] = loss
    if threshold is not None:
        metrics["threshold"] = threshold
    return metrics, threshold


def agreement(before: np.ndarray, after: np.ndarray, *, multi: bool, threshold: float | None) -> float:
    """The share of rows with the same prediction: the arg-max, or the whole multi-label set."""
    if multi:
        cut = 0.5 if threshold is None else threshold
        same = ((sigmoid(before) >= cut) == (sigmoid(after) >= cut)).all(axis=1)
    else:
        same = before.argmax(axis=1) == after.argmax(axis=1)
    return float(same.mean())


def decode(
    logits: np.ndarray, label_names: list[str], *, multi: bool, threshold: float, top_k: int
) -> list[dict[str, Any]]:
    """One result per row of ``logits`` (N, L): ``label``/``score`` (the most likely), ``top_k``,
    and for multi-label ``labels``/``scores``: every label at or above ``threshold``, best first.
    """
    k = max(1, min(top_k, len(label_names)))
    probs = sigmoid(logits) if multi else softmax(logits)
    top = np.argsort(-probs, axis=1)[:, :k]
    results = []
    for row, order in zip(probs, top, strict=True):
        result: dict[str, Any] = {
            "top_k": [{"label": label_names[i], "score": round(float(row[i]), 6)} for i in order]
        }
        if multi:
            chosen = [i for i in np.argsort(-row) if row[i] >= threshold]
            result["labels"] = [label_names[i] for i in chosen]
            result["scores"] = [round(float(row[i]), 6) for i in chosen]
        result["label"] = label_names[order[0]]
        result["score"] = round(float(row[order[0]]), 6)
        results.append(result)
    return results


def mistakes(
    logits: np.ndarray,
    labels: list[Any],
    label_names: list[str],
    texts: list[str],
    pairs: list[str] | None,
    *,
    multi: bool,
    threshold: float,
) -> Mistakes:
    """The wrong rows of ``logits`` (N, L), most confident first.

    Single-label: the arg-max is not the gold label; confidence is its probability. Multi-label:
    the predicted set (probabilities at or above ``threshold``) is not the gold set; confidence is
    that of the surest wrong decision (p of a label given wrongly, 1 - p of one left out).
    """
    from tunelab.evaluate.metrics import multi_hot
    from tunelab.evaluate.mistakes import Mistake, Mistakes

    second = pairs if pairs is not None else [None] * len(texts)
    rows: list[Mistake] = []
    if multi:
        probs = sigmoid(logits)
        gold = multi_hot(labels, len(label_names)).astype(bool)
        pred = probs >= threshold
        wrong = gold != pred  # (N, L)

        def names(row: np.ndarray) -> str:
            # a JSON list, as predict --output writes a set and every reader takes it back (`[]` for
            # none): "a | b" and "(none)" came back from a relabelled mistakes.csv as labels of those
            # names, whatever the run's data.label_delimiter
            return json.dumps([label_names[i] for i in np.flatnonzero(row)], ensure_ascii=False)

        for i in np.flatnonzero(wrong.any(axis=1)):
            sure = np.where(pred[i], probs[i], 1.0 - probs[i])[wrong[i]].max()
            rows.append(Mistake(texts[i], names(gold[i]), names(pred[i]), float(sure), second[i]))
        what = "the surest wrong decision: p of a label given wrongly, 1 - p of one left out"
        return Mistakes.sorted(rows, total=len(texts), confidence=what)
    probs = softmax(logits)
    predicted = probs.argmax(axis=1)
    for i in np.flatnonzero(predicted != np.asarray(labels, dtype=np.int64)):
        rows.append(
            Mistake(
                texts[i],
                label_names[labels[i]],
                label_names[predicted[i]],
                float(probs[i, predicted[i]]),
                second[i],
            )
        )
    return Mistakes.sorted(rows, total=len(texts))
