"""The support bot's labelled files: dev/eval messages (``text``, ``label``) and conversations.

Messages are read with tunelab's own table reader (CSV, TSV, JSONL or Parquet; encoding detected),
so a bad file fails the same one-line way as a training file does. Conversations are JSON lines:
``{"turns": ["I ordered a card last week", "and how long does that take?"], "intent": "card_arrival"}``,
``intent`` being what the last turn asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.data.scripts import has_visible_text
from tunelab.errors import DataError


@dataclass(frozen=True)
class LabelledRows:
    """Messages and their labels, with the file's row numbers (for messages that name a row)."""

    texts: list[str]
    labels: list[str]
    rows: list[int]
    source: str

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Conversation:
    """A conversation's user turns, oldest first, and the intent its last turn asks."""

    turns: list[str]
    intent: str
    line: int


def read_labelled(path: str | Path, run_columns: tuple[str, str] | None = None) -> LabelledRows:
    """Read a labelled message file: columns ``text`` and ``label``, else the intent run's own.

    ``run_columns``: the run's ``(data.text_column, data.label_column)``; a file with those columns
    and not ``text``/``label`` (the run's own held-out file, such as the BANKING77 sample's
    ``text,category``) is read with them, as ``eval --data`` reads it, instead of being refused.

    Raises:
        DataError: the file is missing, unreadable or lacks a column; the message names it.
    """
    import tunelab

    tried = [("text", "label")]
    if run_columns is not None and tuple(run_columns) != ("text", "label"):
        tried.append((run_columns[0], run_columns[1]))
    for n, (text_column, label_column) in enumerate(tried, start=1):
        try:
            parts = tunelab.read_labelled(
                path, text_column=text_column, label_column=label_column, encoding="auto"
            )
        except DataError as exc:
            if "no column" not in str(exc):
                raise
            if n < len(tried):
                continue
            # the data layer's advice ("set data.label_column") names an option these commands lack
            found = str(exc).split(";")[0].split(": ", 1)[-1]  # "no column 'label' (columns: ...)"
            run = f" or the intent run's {tried[1][0]!r} and {tried[1][1]!r}" if len(tried) > 1 else ""
            raise DataError(
                f"{path}: the bot's files need columns 'text' and 'label'{run} ({found}); "
                "rename the columns in the file's header"
            ) from None
        return LabelledRows(texts=parts.texts, labels=parts.labels, rows=parts.rows, source=str(path))
    raise AssertionError("unreachable: the last try returns or raises")


def run_columns_of(predictor: Any) -> tuple[str, str] | None:
    """The intent run's ``(text_column, label_column)``, or None where it does not say."""
    data = getattr(getattr(predictor, "config", None), "data", None)
    text, label = getattr(data, "text_column", None), getattr(data, "label_column", None)
    return (text, label) if isinstance(text, str) and isinstance(label, str) else None


def read_conversations(path: str | Path) -> list[Conversation]:
    """Read a JSONL file of conversations (``turns``: a list of user messages, ``intent``).

    Raises:
        DataError: the file is missing, not UTF-8, or a line is not such an object.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: conversations file not found")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{p}: not UTF-8; save the conversations file as UTF-8") from None
    from tunelab.apps.support.knowledge import _json_records

    found = []
    # JSON lines, or one JSON array of conversations (read line by line, its "[" was "not JSON" and a
    # one-line array's conversations "must be a non-empty list"), as the knowledge files are read
    for line_no, record in _json_records(text, p):
        turns = record.get("turns") if isinstance(record, dict) else None
        intent = record.get("intent") if isinstance(record, dict) else None
        if (
            not isinstance(turns, list)
            or not turns
            or not all(isinstance(t, str) and has_visible_text(t) for t in turns)  # not only U+200B
        ):
            raise DataError(f'{p}: line {line_no}: "turns" must be a non-empty list of non-empty strings')
        if not isinstance(intent, str) or not intent.strip():
            raise DataError(f'{p}: line {line_no}: "intent" must name the intent of the last turn')
        found.append(Conversation([t.strip() for t in turns], intent.strip(), line_no))
    if not found:
        raise DataError(f"{p}: no conversations (the file is empty)")
    return found
