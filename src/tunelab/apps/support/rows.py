"""The support bot's labelled files: dev/eval messages (``text``, ``label``) and conversations.

Messages are read with tunelab's own table reader (CSV, TSV, JSONL or Parquet; encoding detected),
so a bad file fails the same one-line way as a training file does. Conversations are JSON lines:
``{"turns": ["I ordered a card last week", "and how long does that take?"], "intent": "card_arrival"}``,
``intent`` being what the last turn asks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tunelab.data.scripts import has_visible_text
from tunelab.errors import JSON_ERRORS, DataError, json_problem


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


def read_labelled(path: str | Path) -> LabelledRows:
    """Read a labelled message file: columns ``text`` and ``label``.

    Raises:
        DataError: the file is missing, unreadable or lacks a column; the message names it.
    """
    import tunelab

    try:
        parts = tunelab.read_labelled(path, text_column="text", label_column="label", encoding="auto")
    except DataError as exc:
        if "no column" not in str(exc):
            raise
        # the data layer's advice ("set data.label_column") names an option these commands lack
        found = str(exc).split(";")[0].split(": ", 1)[-1]  # "no column 'label' (columns: ...)"
        raise DataError(
            f"{path}: the bot's files need columns 'text' and 'label' ({found}); "
            "rename the columns in the file's header"
        ) from None
    return LabelledRows(texts=parts.texts, labels=parts.labels, rows=parts.rows, source=str(path))


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
    found = []
    # "\n" only: str.splitlines also splits at U+2028, U+2029 and U+0085, which JSON holds unescaped
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except JSON_ERRORS as exc:
            raise DataError(f"{p}: line {line_no} is not JSON ({json_problem(exc)})") from None
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
