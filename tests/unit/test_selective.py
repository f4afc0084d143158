"""Choosing a confidence threshold from a target precision or hand-off rate (evaluate.selective)."""

from __future__ import annotations

import numpy as np
import pytest

from tunelab.errors import ConfigError
from tunelab.evaluate.selective import choose_threshold, coverage_curve

# Ten rows, most confident first; the 4th and 7th answers are wrong (e.g. out of scope).
CONFIDENCE = np.array([0.99, 0.97, 0.95, 0.90, 0.85, 0.80, 0.70, 0.60, 0.55, 0.50])
CORRECT = np.array([True, True, True, False, True, True, False, True, True, True])


def test_the_curve_by_hand() -> None:
    curve = coverage_curve(CONFIDENCE, CORRECT)
    assert [p.answered for p in curve] == list(range(1, 11))
    assert curve[2].accuracy == 1.0 and curve[3].accuracy == 0.75  # 3 of 4 right
    assert curve[-1].coverage == 1.0 and curve[-1].accuracy == pytest.approx(0.8)


def test_ties_are_answered_together() -> None:
    curve = coverage_curve(np.array([0.9, 0.9, 0.5]), np.array([True, False, True]))
    assert [(p.threshold, p.answered) for p in curve] == [(0.9, 2), (0.5, 3)]


def test_a_precision_target_answers_as_much_as_it_can() -> None:
    chosen = choose_threshold(coverage_curve(CONFIDENCE, CORRECT), precision=0.8)
    # 0.8 is met answering 5 (4/5), 6 (5/6) or all 10 (8/10): all 10, nothing handed off.
    assert (chosen.answered, chosen.threshold) == (10, 0.5)
    strict = choose_threshold(coverage_curve(CONFIDENCE, CORRECT), precision=0.95)
    assert (strict.answered, strict.threshold, strict.accuracy) == (3, 0.95, 1.0)


def test_a_handoff_target_is_met_with_the_best_accuracy_it_allows() -> None:
    chosen = choose_threshold(coverage_curve(CONFIDENCE, CORRECT), handoff=0.4)
    assert (chosen.answered, chosen.threshold) == (6, 0.80)  # hands off 4 of 10


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({}, "give one target"),
        ({"precision": 0.9, "handoff": 0.1}, "give one target"),
        ({"precision": 1.5}, "between 0 and 1"),
    ],
)
def test_bad_targets_fail_in_one_line(targets: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        choose_threshold(coverage_curve(CONFIDENCE, CORRECT), **targets)


def test_an_unreachable_precision_says_what_is_reachable() -> None:
    curve = coverage_curve(np.array([0.9, 0.8]), np.array([False, True]))
    with pytest.raises(ConfigError, match=r"no threshold reaches precision 0.95 on this data \(best 0.500"):
        choose_threshold(curve, precision=0.95)


def test_the_coverage_curve_plot(tmp_path) -> None:
    from dataclasses import asdict

    from tunelab.evaluate.plots import coverage_curve_png

    curve = coverage_curve(CONFIDENCE, CORRECT)
    chosen = choose_threshold(curve, precision=0.95)
    png = coverage_curve_png([asdict(p) for p in curve], asdict(chosen))
    assert png is not None and png.startswith(b"\x89PNG")
    (tmp_path / "curve.png").write_bytes(png)
    assert coverage_curve_png([]) is None
