"""Small helpers for what the CLI prints: percentages and aligned tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunelab.evaluate.metrics import HEADLINE_KEYS


def pct(value: Any) -> str:
    return f"{100 * float(value):.2f}%" if isinstance(value, int | float) else "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers]] + [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def headline_lines(metrics: dict[str, Any]) -> list[str]:
    keys = HEADLINE_KEYS
    return [f"  {k:<12} {pct(metrics.get(k))}" for k in keys if k in metrics]
