"""Plain sentences about how training went, read off the run's metrics log.

Two patterns are worth a sentence because a curve alone hides them from a new user:

- over-fitting: dev loss rose after its lowest point while the training loss kept falling;
- a flat dev metric: the selection metric never beat its first evaluation, so the later epochs
  bought nothing (too high or too low a learning rate, too few examples, or a task already
  solved after one epoch).

The functions work on the JSONL records alone (``"train"`` and ``"eval"`` events), so a report
rebuilt from an old run says the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tunelab.evaluate.plots import finite_number
from tunelab.tasks.base import metric_lower_is_better

if TYPE_CHECKING:
    from tunelab.tasks.base import Task

RISE = 0.02
"""Relative rise of dev loss over its minimum that counts as rising (noise on a small dev set)."""


def training_notes(
    history: Iterable[Mapping[str, Any]], *, metric: str, split: str = "dev", task: Task | None = None
) -> list[str]:
    """The sentences that apply to this run's history; empty when nothing stands out.

    Args:
        history: records of the metrics log.
        metric: the run's selection metric (``train.metric``); one ending in ``loss`` is lower-better.
        split: the evaluated split the loop selected on.
        task: the run's task, whose ``lower_is_better`` names other lower-better metrics (a plug-in's
            ``mae``): by the name alone, a falling mae "never improved". None: the name decides.
    """
    records = [r for r in history if isinstance(r, Mapping)]
    evals = sorted(
        (r for r in records if r.get("event") == "eval" and (r.get("split") or "dev") == split),
        key=lambda r: finite_number(r.get("step")) or 0,
    )
    train = sorted(
        (step, loss)
        for r in records
        if r.get("event") == "train"
        and (step := finite_number(r.get("step"))) is not None
        and (loss := finite_number(r.get("loss"))) is not None
    )
    notes = [_overfitting(evals, train, split)]
    notes.append(_flat_metric(evals, metric, split, lower_better=metric_lower_is_better(metric, task)))
    return [n for n in notes if n]


def _when(record: Mapping[str, Any]) -> str:
    """``epoch 2``, or ``epoch 1.5 (step 12)`` for an evaluation inside an epoch."""
    epoch, step = finite_number(record.get("epoch")), finite_number(record.get("step"))
    if epoch is None:
        return f"step {step:g}" if step is not None else "an evaluation"
    if float(epoch).is_integer() or step is None:
        return f"epoch {epoch:g}"
    return f"epoch {round(epoch, 2):g} (step {step:g})"  # 12.5, not .2g's "12"


def _overfitting(evals: list[Mapping[str, Any]], train: list[tuple[float, float]], split: str) -> str | None:
    points = [(r, loss) for r in evals if (loss := finite_number(r.get("loss"))) is not None]
    if len(points) < 2:
        return None
    best = min(range(len(points)), key=lambda i: points[i][1])
    low, last = points[best][1], points[-1][1]
    if best == len(points) - 1 or last <= low * (1 + RISE):
        return None
    best_step = finite_number(points[best][0].get("step")) or 0.0
    # The training loss up to the dev minimum (the last record logged by then, else the first),
    # against the last one logged after it: records come every few steps, not every evaluation.
    before = [loss for step, loss in train if step <= best_step] or [loss for _, loss in train[:1]]
    after = [(step, loss) for step, loss in train if step > best_step]
    if not before or not after or after[-1][1] >= before[-1]:
        return None
    rose_at = points[best + 1][0]
    return (
        f"Over-fitting: {split} loss rose from {_when(rose_at)} on ({low:.4f} at its lowest, "
        f"{last:.4f} at the end) while the training loss kept falling ({before[-1]:.4f} → "
        f"{after[-1][1]:.4f}). The weights kept are the best {split} checkpoint's; fewer epochs, a "
        "lower learning rate or more data would help."
    )


def _flat_metric(
    evals: list[Mapping[str, Any]], metric: str, split: str, *, lower_better: bool
) -> str | None:
    points = [(r, v) for r in evals if (v := finite_number(r.get(metric))) is not None]
    if len(points) < 2:
        return None
    first = points[0][1]
    later = [v for _, v in points[1:]]
    improved = min(later) < first if lower_better else max(later) > first
    if improved:
        return None
    shown = f"{first:.4f}" if lower_better else f"{100 * first:.2f}%"
    if not lower_better and first >= 1.0:
        return (
            f"The {split} {metric} was already {shown} after {_when(points[0][0])}: the later "
            f"{len(later)} evaluation(s) could not improve it, so fewer epochs would do."
        )
    return (
        f"The {split} {metric} never improved after {_when(points[0][0])} ({shown} then, "
        f"{len(later)} later evaluation(s) no better): the later epochs bought nothing. Try another "
        "learning rate, or check the data (labels, size of the dev split)."
    )
