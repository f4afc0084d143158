"""Evaluation: metrics of a split, the multi-label threshold, and the human-readable report.

Example:
    >>> from tunelab.evaluate import compute_metrics, write_report
    >>> metrics = compute_metrics([0, 1, 1], [0, 1, 0], ["neg", "pos"])
    >>> metrics["accuracy"] > 0.6
    True
"""

from __future__ import annotations

from tunelab.evaluate.metrics import compute_metrics, tune_threshold
from tunelab.evaluate.report import TOP_CONFUSIONS_ABOVE, write_report

__all__ = ["TOP_CONFUSIONS_ABOVE", "compute_metrics", "tune_threshold", "write_report"]
