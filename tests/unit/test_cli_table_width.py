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
