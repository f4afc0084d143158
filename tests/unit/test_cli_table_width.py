"""The CLI's tables line up whatever the characters' display width: ``len`` counted a CJK
character as one column, so a run named ``café-日本`` pushed the rest of its row two places right."""

from __future__ import annotations

import unicodedata

from tunelab.cli.output import table


def columns(text: str) -> int:
    """Terminal columns of ``text`` (the test's own count: wide characters two, marks none)."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text
    )


def test_columns_line_up_past_wide_and_combining_characters() -> None:
    rows = [["café-日本", "finished"], ["cafe\u0301", "finished"], ["alpha", "exported"]]
    lines = table(["run", "status"], rows).splitlines()
    header, data = lines[0], lines[2:]
    starts = [columns(line[: line.index(row[1])]) for line, row in zip(data, rows, strict=True)]
    assert starts == [columns(header[: header.index("status")])] * 3, lines


def test_emoji_sequences_and_zero_width_characters() -> None:
    """An emoji joined by U+200D (``👩‍💻``, one glyph) shows as two columns and a zero-width space
    as none; ``unicodedata``'s east-asian width counted five and one, so the status column of those
    rows started three and one places right of its header."""
    rows = [
        ["dev-\U0001f469\u200d\U0001f4bb", "finished"],
        ["a\u200bb", "finished"],
        ["alphabeta", "exported"],
    ]
    lines = table(["run", "status"], rows).splitlines()
    header, data = lines[0], lines[2:]
    # the names as shown: 6, 2 and 9 columns, then padding; the status column starts where its header does
    shown = {rows[0][0]: 6, rows[1][0]: 2, "alphabeta": 9}
    starts = [
        shown[row[0]] + len(line[len(row[0]) : line.index(row[1])])
        for line, row in zip(data, rows, strict=True)
    ]
    assert starts == [header.index("status")] * 3, lines
