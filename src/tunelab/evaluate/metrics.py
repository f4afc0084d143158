"""Classification metrics for one evaluated split, and the multi-label threshold that maximises them.

scikit-learn does the arithmetic; this module fixes the conventions so that every run reports the
same keys: ``zero_division=0`` (a class never predicted scores 0, not a warning), fractions in
[0, 1] rather than percents, and plain Python numbers so ``json.dumps`` needs no custom encoder.

For multi-label runs a sigmoid output of 0.5 is a poor default when labels are rare: the model
learns to keep probabilities low and recall suffers. ``tune_threshold`` picks one global
threshold on dev, cheap and hard to overfit; it is then applied unchanged to test and prediction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

TOP_CONFUSIONS_LIMIT = 20
"""How many true -> predicted pairs ``top_confusions`` keeps."""

DEFAULT_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""Candidate thresholds 0.05, 0.10, ..., 0.95."""


def compute_metrics(
    y_true: ArrayLike, y_pred: ArrayLike, label_names: list[str], *, multi_label: bool = False
) -> dict[str, Any]:
    """Score predictions against gold labels.

    Macro averages run over the labels that occur in ``y_true`` or ``y_pred``, so a class absent
    from a small test subset does not drag macro-F1 down with a meaningless zero; ``per_class``
    still lists every label, with support 0 where absent (and precision, recall and F1 None where
    it is neither in the data nor predicted). For single-label ids this is scikit-learn's default
    (its ``labels=None`` takes the labels present in either). For multi-label it is not:
    scikit-learn's default averages over every column of the multi-hot arrays, a label neither
    in the gold rows nor predicted counting as an F1 of 0, while tunelab leaves such labels out
    (all of them only when no row has a label or a prediction, where every score is 0 anyway),
    so its multi-label macro figures can be higher, never lower, than scikit-learn's
    ``f1_score(y_true, y_pred, average="macro")`` when a label is absent from both. Micro and
    weighted averages are the same either way (an absent label has no true or false positives,
    no misses and no weight).

    Args:
        y_true: Gold labels. Single-label: a sequence of int label ids, shape (n,).
            Multi-label: a multi-hot 0/1 array, shape (n, n_labels).
        y_pred: Predictions, same form and shape as ``y_true``.
        label_names: Names of the labels, indexed by label id; fixes the order of ``per_class``
            and of the confusion matrix rows and columns.
        multi_label: ``y_true``/``y_pred`` are multi-hot rows (the ``multi_label`` task).

    Returns:
        A JSON-serialisable dict with ``n``, ``accuracy`` (subset accuracy for
        multi-label), ``{macro,micro,weighted}_{precision,recall,f1}``, ``per_class`` (list of
        ``{label, precision, recall, f1, support}``), ``confusion_matrix`` (rows = true,
        columns = predicted; None for multi-label), ``top_confusions`` (up to 20 off-diagonal
        ``{true, predicted, count}`` by count, descending; None for multi-label) and, for
        multi-label only, ``hamming_loss``.

    Raises:
        ValueError: On no examples, mismatched shapes or out-of-range labels.

    Example:
        >>> m = compute_metrics([0, 1, 1], [0, 1, 0], ["neg", "pos"])
        >>> round(m["accuracy"], 4), m["confusion_matrix"]
        (0.6667, [[1, 0], [1, 1]])
    """
    from sklearn.metrics import accuracy_score, hamming_loss

    if not isinstance(multi_label, bool):
        raise TypeError(f"multi_label must be True or False, got {multi_label!r}")
    n_labels = len(label_names)
    if n_labels == 0:
        raise ValueError("label_names is empty")
    if multi_label:
        true, pred = _multi_hot(y_true, "y_true", n_labels), _multi_hot(y_pred, "y_pred", n_labels)
    else:
        true, pred = _label_ids(y_true, "y_true", n_labels), _label_ids(y_pred, "y_pred", n_labels)
    if len(true) != len(pred):
        raise ValueError(f"y_true has {len(true)} examples but y_pred has {len(pred)}")
    if len(true) == 0:
        raise ValueError("cannot compute metrics on 0 examples")

    result: dict[str, Any] = {"n": len(true), "accuracy": float(accuracy_score(true, pred))}
    if multi_label:
        result["hamming_loss"] = float(hamming_loss(true, pred))
    labels = _present_labels(true, pred, multi_label=multi_label)
    if multi_label and n_labels == 1:
        # scikit-learn reads an (n, 1) multi-hot array as a binary target, where labels=[0] is the
        # value 0: a one-label run (a "toxic" or nothing detector) was scored on its rows WITHOUT
        # the label (F1 0 when perfect). An all-zero second column keeps it multi-label; the
        # label lists below never name that column, so no figure counts it.
        true, pred = (np.hstack([a, np.zeros_like(a)]) for a in (true, pred))
    result.update(_averages(true, pred, labels))
    result["per_class"] = _per_class(true, pred, label_names)
    if multi_label:
        result["confusion_matrix"] = None
        result["top_confusions"] = None
    else:
        matrix = _confusion_matrix(true, pred, n_labels)
        result["confusion_matrix"] = matrix
        result["top_confusions"] = _top_confusions(matrix, label_names)
    return result


def multi_hot(labels: list[list[int]], num_labels: int) -> np.ndarray:
    """Sorted label-id lists (one per row) -> a 0/1 array (n, num_labels)."""
    hot = np.zeros((len(labels), num_labels), dtype=np.int64)
    for row, ids in enumerate(labels):
        hot[row, ids] = 1
    return hot


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


def _label_ids(values: ArrayLike, name: str, n_labels: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of label ids, got shape {array.shape}")
    # Whole-valued floats (0.0, 1.0) are accepted: arrays often come back from numpy as float.
    integral = np.issubdtype(array.dtype, np.integer) or (
        np.issubdtype(array.dtype, np.number) and bool(np.all(array == np.round(array)))
    )
    if array.size and not integral:
        raise ValueError(f"{name} must hold integer label ids, got dtype {array.dtype}")
    ids = array.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n_labels):
        bad = ids[(ids < 0) | (ids >= n_labels)][0]
        raise ValueError(f"{name} holds label id {bad}, outside 0..{n_labels - 1} ({n_labels} label names)")
    return ids


def _multi_hot(values: ArrayLike, name: str, n_labels: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2 or array.shape[1] != n_labels:
        raise ValueError(f"{name} must be multi-hot with shape (n, {n_labels}), got shape {array.shape}")
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return array.astype(np.int64)


def _present_labels(true: np.ndarray, pred: np.ndarray, *, multi_label: bool) -> list[int]:
    """Label ids seen in either gold or predictions: the set macro averages run over.

    For single-label ids this is the set scikit-learn takes by default; for multi-hot arrays it is
    not (scikit-learn's default is every column), see ``compute_metrics``.
    """
    if not multi_label:
        return sorted(set(true.tolist()) | set(pred.tolist()))
    seen = np.flatnonzero(true.any(axis=0) | pred.any(axis=0)).tolist()
    # With nothing positive anywhere every score is 0 whatever the set; keep sklearn from failing.
    return seen or list(range(true.shape[1]))


def _averages(true: np.ndarray, pred: np.ndarray, labels: list[int]) -> dict[str, float]:
    from sklearn.metrics import precision_recall_fscore_support

    out: dict[str, float] = {}
    for average in ("macro", "micro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            true, pred, labels=labels, average=average, zero_division=0
        )
        out[f"{average}_precision"] = float(precision)
        out[f"{average}_recall"] = float(recall)
        out[f"{average}_f1"] = float(f1)
    return out


def _per_class(true: np.ndarray, pred: np.ndarray, label_names: list[str]) -> list[dict[str, Any]]:
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, labels=list(range(len(label_names))), average=None, zero_division=0
    )
    predicted = pred.sum(axis=0) if pred.ndim == 2 else np.bincount(pred, minlength=len(label_names))
    # A label neither in the data nor predicted has no score, not 0: shown as "0.00" it read as a
    # failure (most of 77 intents on a small file), while macro averages rightly left it out.
    absent = [int(support[i]) == 0 and int(predicted[i]) == 0 for i in range(len(label_names))]
    return [
        {
            "label": str(name),
            "precision": None if absent[i] else float(precision[i]),
            "recall": None if absent[i] else float(recall[i]),
            "f1": None if absent[i] else float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(label_names)
    ]


def _confusion_matrix(true: np.ndarray, pred: np.ndarray, n_labels: int) -> list[list[int]]:
    from sklearn.metrics import confusion_matrix

    # labels= keeps every class as a row/column even when absent, so indexes match label ids.
    matrix = confusion_matrix(true, pred, labels=list(range(n_labels)))
    return [[int(count) for count in row] for row in matrix]


def _top_confusions(matrix: list[list[int]], label_names: list[str]) -> list[dict[str, Any]]:
    cells = [
        (count, i, j) for i, row in enumerate(matrix) for j, count in enumerate(row) if i != j and count > 0
    ]
    # Ties broken by label id so the list is the same on every run.
    cells.sort(key=lambda cell: (-cell[0], cell[1], cell[2]))
    return [
        {"true": str(label_names[i]), "predicted": str(label_names[j]), "count": count}
        for count, i, j in cells[:TOP_CONFUSIONS_LIMIT]
    ]


def _micro_f1(pred: np.ndarray, gold: np.ndarray) -> float:
    # By hand rather than sklearn's f1_score over the raveled cells (the same figure): it runs once
    # per candidate threshold, and sklearn's input checks made it ~60x slower (3.2 s for 20,000 x 50).
    true_pos = int(np.sum(pred & gold))
    wrong = int(np.sum(pred ^ gold))  # false positives + false negatives
    denominator = 2 * true_pos + wrong
    return 2 * true_pos / denominator if denominator else 0.0


# The built-in tasks' percentages worth a line after training or eval, whichever of them a task's
# metrics have; ``headline_names`` falls back to them where it is not told the task.
HEADLINE_KEYS = (
    "entity_f1",
    "entity_precision",
    "entity_recall",
    "token_accuracy",
    "accuracy",
    "macro_f1",
    "micro_f1",
    "weighted_f1",
)
# Numbers in a metrics dict that are no score: logged elsewhere (loss), a tuned decision threshold,
# the row count of ``tunelab eval``.
_NOT_SCORES = frozenset({"loss", "threshold", "n"})


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def headline_names(metrics: Mapping[str, Any], task: str | None = None) -> list[str]:
    """The scores worth a line after training or eval, in the order to show them.

    A fixed list of the built-in tasks' keys showed nothing for a plug-in task's metrics, so: the
    task's own ``headline`` then its ``metrics`` where ``task`` is registered here; else the
    built-in keys present; else (a plug-in's metrics, its task not named or not imported in this
    process) every numeric entry, so its score still shows. Only keys ``metrics`` has (a None value is
    shown as "-"); never the loss, threshold or row count.
    """
    names: list[str] = []
    if task is not None:
        # Only a task already registered here (a plug-in imported by the caller, or a built-in
        # something else loaded): loading the built-ins for this imports pandas, which made
        # `tunelab eval RUN` slow; a built-in's headline keys are among HEADLINE_KEYS anyway.
        from tunelab.tasks.registry import loaded_task

        found = loaded_task(task)
        if found is not None:
            try:
                shown = list(found.headline(dict(metrics)))
            except (TypeError, ValueError):  # a damaged saved value: the numbers among its keys
                shown = list(found.headline_keys)
            names = [*shown, *found.metrics]
    if not names:
        names = [k for k in HEADLINE_KEYS if k in metrics] or [k for k, v in metrics.items() if _is_number(v)]
    return [k for k in dict.fromkeys(names) if k not in _NOT_SCORES and k in metrics]
