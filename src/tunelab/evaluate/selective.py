"""Selective prediction: answer only above a confidence threshold, and choose that threshold.

A support bot (or any automation) would rather hand a message to a person than answer it wrongly.
Sorting dev predictions by confidence gives, for every threshold, the share answered (coverage)
and how often those answers were right (accuracy, the precision of answering); the threshold is
then set from a target a team can state ("95% of answers right", "at most 10% handed off")
instead of being guessed. Rows whose true label the model does not have (out of scope) count as
wrong whenever they are answered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tunelab.errors import ConfigError


@dataclass(frozen=True)
class CurvePoint:
    """Answering every row with confidence >= ``threshold``.

    Attributes:
        threshold: the confidence cut-off.
        coverage: share of rows answered (0..1); 1 - coverage is the hand-off rate.
        accuracy: share of answered rows answered right (1.0 when none is answered).
        answered: number of rows answered.
    """

    threshold: float
    coverage: float
    accuracy: float
    answered: int


def coverage_curve(confidence: np.ndarray, correct: np.ndarray) -> list[CurvePoint]:
    """One point per distinct confidence, from the strictest threshold to the most lenient.

    Args:
        confidence: (N,) the model's confidence in its answer for each row (calibrated, ideally).
        correct: (N,) whether that answer is right (False for out-of-scope rows).
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError(f"coverage_curve: shapes {confidence.shape} and {correct.shape} differ")
    n = len(confidence)
    order = np.argsort(-confidence, kind="stable")
    sorted_conf, right_so_far = confidence[order], np.cumsum(correct[order])
    points = []
    for i in range(n):
        # Rows tied at this confidence are answered together: take the last of the tie.
        if i + 1 < n and sorted_conf[i + 1] == sorted_conf[i]:
            continue
        answered = i + 1
        points.append(
            CurvePoint(float(sorted_conf[i]), answered / n, float(right_so_far[i]) / answered, answered)
        )
    return points


def choose_threshold(
    curve: list[CurvePoint], *, precision: float | None = None, handoff: float | None = None
) -> CurvePoint:
    """The point meeting one target with the most answers (``precision``) or the best accuracy
    (``handoff``).

    Args:
        precision: answers must be right at least this often (0..1); the lowest threshold that
            still does, so as few messages as possible are handed off.
        handoff: at most this share of messages may be handed off (0..1); the highest threshold
            that stays within it, so answers are as accurate as that allows.

    Raises:
        ConfigError: no or both targets, one outside 0..1, or a precision no threshold reaches
            (the message gives the best the data allows).
    """
    if (precision is None) == (handoff is None):
        raise ConfigError("give one target: precision=0.95 or handoff=0.10")
    target = precision if precision is not None else handoff
    if not 0.0 <= float(target) <= 1.0:  # type: ignore[arg-type]
        raise ConfigError(f"target {target!r} must be a share between 0 and 1, e.g. 0.95")
    if not curve:
        raise ConfigError("no labelled rows to choose a threshold on")
    if precision is not None:
        meeting = [p for p in curve if p.accuracy >= precision]
        if not meeting:
            best = max(curve, key=lambda p: p.accuracy)
            raise ConfigError(
                f"no threshold reaches precision {precision:.2f} on this data (best {best.accuracy:.3f}, "
                f"answering {best.coverage:.1%}); lower the target or add training data"
            )
        return max(meeting, key=lambda p: p.coverage)
    within = [p for p in curve if 1.0 - p.coverage <= handoff + 1e-12]  # type: ignore[operator]
    return min(within, key=lambda p: p.coverage)  # the last point answers everything: never empty
