"""Small helpers for what the CLI prints: percentages and aligned tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import wcwidth

from tunelab.evaluate.metrics import headline_names


def pct(value: Any) -> str:
    return f"{100 * float(value):.2f}%" if isinstance(value, int | float) else "-"


def printable(text: str) -> str:
    """``text`` on one line of a terminal: control characters, line breaks and bidi overrides
    written as escapes (``data.scripts.escape_controls``), the rest as it is. For text a client sent
    to ``tunelab serve`` (a recommender item added over HTTP): printed raw, it could clear the
    operator's screen, set the window title or print a forged line."""
    from tunelab.data.scripts import escape_controls  # here: tunelab.data imports pandas (--help must not)

    return escape_controls(text)


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: a wide (CJK) character or an emoji two, a combining
    mark, a zero-width joiner sequence's joined parts or a variation selector none. ``len`` and
    ``str.ljust`` count characters, so a run named ``café-日本`` pushed every later column of its
    row two places right; wcwidth (the library terminals' own tables come from) also knows emoji
    presentation (``❤️`` is two columns, ``❤`` one), which ``unicodedata`` does not."""
    return wcwidth.width(text)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers]] + [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(display_width(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c + " " * (w - display_width(c)) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in cells
    ]
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
