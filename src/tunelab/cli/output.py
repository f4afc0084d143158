"""Small helpers for what the CLI prints: percentages and aligned tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunelab.evaluate.metrics import headline_names


def pct(value: Any) -> str:
    return f"{100 * float(value):.2f}%" if isinstance(value, int | float) else "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers]] + [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def score(value: Any, key: str = "") -> str:
    """A metric's value: a percentage where it lies in [0, 1] (every built-in score), else the
    number itself, since a plug-in task's metric (an error, a count) need not be a share; a loss
    (``train.metric: loss``) is never a percentage."""
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (key == "loss" or not 0 <= value <= 1)
    ):
        return f"{value:.4g}"
    return pct(value)


def headline_lines(metrics: dict[str, Any], task: str | None = None) -> list[str]:
    """One line per score of ``metrics``: ``task``'s own headline where it is registered, else the
    built-in scores present, else every number (a plug-in task's scores printed nothing)."""
    return [f"  {k:<12} {score(metrics.get(k))}" for k in headline_names(metrics, task)]
