"""Wrong predictions, most confident first: the rows a person reads to see what a model gets wrong.

A task knows what a mistake is (a wrong label, a wrong set of labels, a sentence with wrong
entities) and how sure the model was of it (``Task.mistakes``); this module only holds the shape
they share, so the report shows every task's mistakes in one table without asking which task it
is, and writes all of them to ``mistakes.csv`` beside the report (Excel and pandas open it).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tunelab.atomic import atomic_write_text
from tunelab.csv_lines import line_end

SHOWN = 20
"""Mistakes shown in the report; ``mistakes.csv`` holds them all."""
_CELL = 200  # characters of a text shown in a report cell


@dataclass(frozen=True)
class Mistake:
    """One wrong prediction.

    Attributes:
        text: the input as a person reads it (a text, a sentence); a pair's first text.
        gold: what it should have been (a label, a JSON list of labels, entities).
        predicted: what the model said, in the same form.
        confidence: how sure the model was of what it got wrong, 0..1 (the task's
            ``Mistakes.confidence`` says how it is measured).
        pair: a pair's second text, None for one text. Kept apart from ``text``: joined into one
            cell, a relabelled ``mistakes.csv`` could not be read back as pairs.
    """

    text: str
    gold: str
    predicted: str
    confidence: float
    pair: str | None = None

    def shown(self) -> str:
        """The input on one line as the report shows it (``text ⟂ pair`` for a pair)."""
        return self.text if self.pair is None else f"{self.text} ⟂ {self.pair}"


@dataclass(frozen=True)
class Mistakes:
    """A task's wrong predictions on one split, sorted most confident first.

    Attributes:
        rows: every mistake, most confident first.
        total: examples scored (so a reader sees ``len(rows)`` of how many).
        example: what one row is (``text``, ``sentence``).
        confidence: one sentence saying what the confidence column measures.
    """

    rows: list[Mistake]
    total: int
    example: str = "text"
    confidence: str = "the probability the model gave its wrong prediction"

    @staticmethod
    def sorted(rows: Sequence[Mistake], **kwargs: object) -> Mistakes:
        """``Mistakes`` with ``rows`` ordered most confident first (ties keep their input order)."""
        return Mistakes(rows=sorted(rows, key=lambda m: -m.confidence), **kwargs)  # type: ignore[arg-type]


def short(text: str, limit: int = _CELL) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_csv(path: Path, mistakes: Mistakes) -> Path:
    """Every mistake as CSV (``text,gold,predicted,confidence``; ``text,text_pair,...`` for pairs),
    written atomically.

    A cell starting with ``=``, ``+``, ``-`` or ``@`` gets a leading ``'``: a spreadsheet opening the
    file ran a text such as ``=HYPERLINK(...)`` as a formula (OWASP's CSV injection advice). A plain
    number (``-1``, ``+2.5``, ``-1e3``) is left as it is: a spreadsheet reads it as a number, and
    numeric labels came back as ``'-1``.
    """
    paired = any(m.pair is not None for m in mistakes.rows)
    inputs = [mistakes.example, f"{mistakes.example}_pair"] if paired else [mistakes.example]
    rows = [[*inputs, "gold", "predicted", "confidence"]]
    for m in mistakes.rows:
        texts = [_inert(m.text), _inert(m.pair or "")] if paired else [_inert(m.text)]
        rows.append([*texts, _inert(m.gold), _inert(m.predicted), f"{m.confidence:.4f}"])
    buffer = io.StringIO()
    # "\r\n" where a text holds a "\r": with "\n" it was written bare and split its row (csv_lines)
    csv.writer(buffer, lineterminator=line_end(cell for row in rows for cell in row)).writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def _inert(cell: str) -> str:
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(cell) else cell


def _is_number(cell: str) -> bool:
    """``-1``, ``+0.5``, ``-2e3``: what ``float`` reads, but not ``-inf``/``nan`` words and not a cell
    with spaces or underscores around or inside (``-1 ``, ``-1_0``), which a formula could hide in."""
    if cell != cell.strip() or "_" in cell:
        return False
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False
